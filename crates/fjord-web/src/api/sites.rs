//! Sites: list, show, create, and every action on one.

use super::{act, Queued};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::{Actor, AppState, SiteAction};
use axum::extract::State;
use axum::Json;
use fjord_actions::{self as actions, SiteCreate};
use fjord_core::*;
use fjord_store::{BackupQuery, Page, SiteQuery, TaskQuery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Finds a live site by domain (or alias) and checks the actor may do `action` to it. A site the actor
/// may not see is "not found", exactly like one that does not exist.
pub async fn site_for(state: &AppState, actor: &Actor, domain: &str, action: SiteAction) -> ApiResult<Site> {
    let domain = Domain::parse(domain).map_err(|_| ApiError::not_found("site", domain))?;
    let site = state.store.site_by_domain(&domain).await?;
    actor.require_site(&site, action)?;
    Ok(site)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    /// Platform name.
    platform: Option<String>,
    /// Client name.
    client: Option<String>,
    /// Part of the domain or an alias.
    q: Option<String>,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    limit: i64,
}

pub async fn list(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Site>>> {
    let status = q.status.as_deref().map(|s| actions::parse_enum::<SiteStatus>("status", s)).transpose()?;
    let platform = match &q.platform {
        Some(name) => Some(
            state.store.platform_by_name(name).await.map_err(|_| ApiError::invalid("platform", "no such platform"))?.id,
        ),
        None => None,
    };
    let client = match &q.client {
        Some(name) => {
            Some(state.store.client_by_name(name).await.map_err(|_| ApiError::invalid("client", "no such client"))?.id)
        }
        None => None,
    };
    if q.q.as_ref().is_some_and(|t| t.len() > 253) {
        return Err(ApiError::invalid("q", "the search text is longer than any domain"));
    }
    let query = SiteQuery {
        status,
        platform,
        client,
        text: q.q,
        only_clients: actor.only_clients(),
        offset: q.offset,
        limit: q.limit,
    };
    Ok(Json(state.store.list_sites(&query).await?))
}

pub async fn create(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<SiteCreate>,
) -> ApiResult<Queued> {
    actor.require_manager()?;
    let target = format!("site:{}", req.domain);
    let (_, task) = act(
        &state,
        &actor,
        "site.create",
        &target,
        &req.platform,
        state.actions().create_site(&req, &actor.created_by()),
    )
    .await?;
    Ok(Queued(task))
}

/// Adopts an existing site with its database (platform managers): recorded, and its import queued.
pub async fn import(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<fjord_actions::SiteImport>,
) -> ApiResult<Queued> {
    actor.require_manager()?;
    let target = format!("site:{}", req.domain);
    act(&state, &actor, "site.import", &target, &req.platform, async {
        let (_, outcome) = state.actions().import_site(&req, &actor.created_by(), false).await?;
        super::queued(outcome)
    })
    .await
}

pub async fn show(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let site = site_for(&state, &actor, &domain, SiteAction::View).await?;
    let platform = state.store.platform(site.platform_id).await?;
    let client = match site.client_id {
        Some(c) => Some(state.store.client(c).await?.name),
        None => None,
    };
    let mut v = serde_json::to_value(&site).unwrap_or_default();
    v["platform"] = serde_json::json!(platform.name);
    v["client"] = serde_json::json!(client);
    Ok(Json(v))
}

/// Checks the actor, then plans and queues `kind` on the site, audited.
async fn site_task(
    state: &AppState,
    actor: &Actor,
    domain: &str,
    action: SiteAction,
    kind: TaskKind,
    args: impl FnOnce(&Site) -> serde_json::Value,
) -> ApiResult<Queued> {
    let site = site_for(state, actor, domain, action).await?;
    let target = format!("site:{}", site.domain);
    let args = args(&site);
    act(state, actor, kind.as_str(), &target, "", state.actions().enqueue(kind, site.id.0, args, &actor.created_by()))
        .await
        .map(Queued)
}

fn no_args(_: &Site) -> serde_json::Value {
    serde_json::json!({})
}

pub async fn verify(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Queued> {
    site_task(&state, &actor, &domain, SiteAction::Verify, TaskKind::SiteVerify, no_args).await
}

pub async fn enable(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Queued> {
    site_task(&state, &actor, &domain, SiteAction::Enable, TaskKind::SiteEnable, no_args).await
}

pub async fn disable(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Queued> {
    site_task(&state, &actor, &domain, SiteAction::Disable, TaskKind::SiteDisable, no_args).await
}

pub async fn login_link(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Queued> {
    site_task(&state, &actor, &domain, SiteAction::LoginLink, TaskKind::SiteLoginLink, no_args).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// `zstd` (default) or `gzip`.
    #[serde(default)]
    pub compression: Option<String>,
    /// Dump the database as SQL whatever its size (a portable archive; default false: by size).
    #[serde(default)]
    pub logical: bool,
    /// Archive the database's InnoDB files whatever its size, where the server allows (default false).
    #[serde(default)]
    pub physical: bool,
}

pub async fn backup(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    OptionalJson(req): OptionalJson<BackupRequest>,
) -> ApiResult<Queued> {
    let compression: Compression = match &req.compression {
        Some(c) => actions::parse_enum("compression", c)?,
        None => Compression::default(),
    };
    let method = match (req.logical, req.physical) {
        (true, true) => {
            return Err(
                actions::ActionError::invalid("physical", "a backup is either logical or physical, not both").into()
            )
        }
        (true, false) => BackupMethod::Logical,
        (false, true) => BackupMethod::Physical,
        (false, false) => BackupMethod::Auto,
    };
    site_task(&state, &actor, &domain, SiteAction::Backup, TaskKind::SiteBackup, |_| {
        actions::backup_args(compression, method)
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The backup's id (one of this site's).
    pub backup: i64,
}

pub async fn restore(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> ApiResult<Queued> {
    let site = site_for(&state, &actor, &domain, SiteAction::Restore).await?;
    let target = format!("site:{}", site.domain);
    act(&state, &actor, "site-restore", &target, &format!("backup {}", req.backup), async {
        let offsite = state.settings.offsite.as_ref();
        let args = state.actions().restore_args_fetched(&site, BackupId(req.backup), offsite, false).await?;
        state.actions().enqueue(TaskKind::SiteRestore, site.id.0, args, &actor.created_by()).await
    })
    .await
    .map(Queued)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// The new site's domain.
    pub domain: String,
    /// The platform to clone onto (name); default: the source's.
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

pub async fn clone(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<CloneRequest>,
) -> ApiResult<Queued> {
    let src = site_for(&state, &actor, &domain, SiteAction::Clone).await?;
    actor.require_platform_choice(req.platform.as_deref())?;
    let target = format!("site:{}", req.domain);
    let (_, task) = act(&state, &actor, "site-clone", &target, &format!("from {}", src.domain), async {
        state.actions().clone_site(&src, &req.domain, req.platform.as_deref(), &req.aliases, &actor.created_by()).await
    })
    .await?;
    Ok(Queued(task))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The target platform's name (the site's own, with `new_domain`, renames it).
    pub platform: String,
    #[serde(default)]
    pub new_domain: Option<String>,
    /// Keep answering on the old domain as an alias after a rename (default true).
    #[serde(default = "yes")]
    pub keep_old_domain: bool,
    /// Move the database to this server (name).
    #[serde(default)]
    pub db_server: Option<String>,
}

fn yes() -> bool {
    true
}

pub async fn migrate(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<MigrateRequest>,
) -> ApiResult<Queued> {
    let site = site_for(&state, &actor, &domain, SiteAction::Migrate).await?;
    let target = format!("site:{}", site.domain);
    act(&state, &actor, "site-migrate", &target, &format!("to {}", req.platform), async {
        let args = state
            .actions()
            .migrate_args(
                &site,
                &req.platform,
                req.new_domain.as_deref(),
                req.keep_old_domain,
                req.db_server.as_deref(),
            )
            .await?;
        state.actions().enqueue(TaskKind::SiteMigrate, site.id.0, args, &actor.created_by()).await
    })
    .await
    .map(Queued)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasesRequest {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// Answer on aliases with a redirect to the main domain.
    #[serde(default)]
    pub redirect: Option<bool>,
    /// Add `www.DOMAIN`.
    #[serde(default)]
    pub www: bool,
}

pub async fn aliases(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<AliasesRequest>,
) -> ApiResult<Queued> {
    let site = site_for(&state, &actor, &domain, SiteAction::Aliases).await?;
    let target = format!("site:{}", site.domain);
    let detail = format!("add {:?} remove {:?}", req.add, req.remove);
    act(&state, &actor, "site.aliases", &target, &detail, async {
        let aliases = actions::changed_aliases(&site, &req.add, &req.remove, req.www)?;
        let redirect = req.redirect.unwrap_or(site.redirect_aliases);
        super::queued(state.actions().set_aliases(&site, &aliases, redirect, &actor.created_by(), false).await?)
    })
    .await
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete even if the site is enabled.
    #[serde(default)]
    force: bool,
    /// Take a pre-delete backup (default true).
    #[serde(default)]
    backup: Option<bool>,
}

pub async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<Queued> {
    site_task(&state, &actor, &domain, SiteAction::Delete, TaskKind::SiteDelete, |_| {
        actions::delete_args(q.force, q.backup.unwrap_or(true))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubListQuery {
    status: Option<String>,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    limit: i64,
}

pub async fn tasks(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(q): ApiQuery<SubListQuery>,
) -> ApiResult<Json<Page<Task>>> {
    let site = site_for(&state, &actor, &domain, SiteAction::View).await?;
    let status = q.status.as_deref().map(|s| actions::parse_enum::<TaskStatus>("status", s)).transpose()?;
    let query = TaskQuery {
        status,
        site: Some(site.id),
        only_clients: actor.only_clients(),
        offset: q.offset,
        limit: q.limit,
        ..Default::default()
    };
    Ok(Json(state.store.list_tasks(&query).await?))
}

pub async fn backups(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(q): ApiQuery<SubListQuery>,
) -> ApiResult<Json<Page<Backup>>> {
    let site = site_for(&state, &actor, &domain, SiteAction::View).await?;
    if q.status.is_some() {
        return Err(ApiError::invalid("status", "backups have no status"));
    }
    let query =
        BackupQuery { site: Some(site.id), only_clients: actor.only_clients(), offset: q.offset, limit: q.limit };
    Ok(Json(state.store.list_backups(&query).await?))
}
