//! The dashboard, platforms (with "migrate all sites to…") and clients. Servers are in `servers.rs`.

use super::tasks::task_rows;
use super::{given, query_escape, see_other, FormErrors, NoFields, UiResult, Viewer};
use crate::api::objects as api;
use crate::csrf::CsrfForm;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use fjord_actions::{ClientCreate, PlatformCreate, PlatformMigrate};
use fjord_core::*;
use fjord_store::{BackupQuery, SiteQuery, TaskQuery};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

// ---- dashboard ----------------------------------------------------------------------------------------

pub async fn dashboard(State(state): State<AppState>, v: Viewer) -> UiResult {
    let only = v.0.only_clients();
    let site_counts = state.store.site_status_counts(only.as_deref()).await?;
    let sites_total: i64 = site_counts.iter().map(|(_, n)| n).sum();
    let site_counts: Vec<Value> =
        site_counts.iter().map(|(s, n)| context! { status => s.as_str(), count => n }).collect();
    let task_counts: Vec<Value> = state
        .store
        .task_status_counts(only.as_deref())
        .await?
        .iter()
        .map(|(s, n)| context! { status => s.as_str(), count => n })
        .collect();
    let backup_bytes = state.store.backup_bytes(only.as_deref()).await?;
    let backup_count = state
        .store
        .list_backups(&BackupQuery { only_clients: only.clone(), limit: 1, ..Default::default() })
        .await?
        .total;
    let tasks_with =
        |status| TaskQuery { status: Some(status), only_clients: only.clone(), limit: 8, ..Default::default() };
    let mut active = state.store.list_tasks(&tasks_with(TaskStatus::Running)).await?.items;
    active.extend(state.store.list_tasks(&tasks_with(TaskStatus::Queued)).await?.items);
    let failed = state.store.list_tasks(&tasks_with(TaskStatus::Failed)).await?.items;
    v.page(
        "dashboard.html",
        "dashboard",
        context! {
            sites_total, site_counts, task_counts, backup_bytes, backup_count,
            active => task_rows(&state, &active).await?, failed => task_rows(&state, &failed).await?,
        },
    )
}

// ---- platforms ----------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct PlatformForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    git: String,
    #[serde(default)]
    git_ref: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

async fn platforms_page(
    state: &AppState,
    v: &Viewer,
    status: StatusCode,
    form: &PlatformForm,
    errors: FormErrors,
) -> UiResult {
    v.0.require_manager()?;
    let servers = state.store.servers().await?;
    let mut platforms = Vec::new();
    for p in state.store.platforms().await? {
        let sites =
            state.store.list_sites(&SiteQuery { platform: Some(p.id), limit: 1, ..Default::default() }).await?.total;
        let server = servers.iter().find(|s| s.id == p.server_id).map(|s| s.name.to_string()).unwrap_or_default();
        platforms.push(context! {
            name => p.name.as_str(), status => p.status.as_str(), locked => p.locked, app => p.app.map(|a| a.as_str()),
            app_version => p.app_version, server, sites, root => p.root,
        });
    }
    let server_options: Vec<(String, String)> =
        servers.iter().map(|s| (s.name.to_string(), format!("{} ({})", s.name, s.hostname))).collect();
    v.page_with_status(
        status,
        "platforms.html",
        "platforms",
        context! { platforms, server_options, form => Value::from_serialize(form), errors => errors.fields, general => errors.general },
    )
}

pub async fn platforms(State(state): State<AppState>, v: Viewer) -> UiResult {
    platforms_page(&state, &v, StatusCode::OK, &PlatformForm::default(), FormErrors::default()).await
}

pub async fn add_platform(State(state): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<PlatformForm>) -> UiResult {
    let req = PlatformCreate {
        name: f.name.trim().to_string(),
        server: opt(&f.server),
        path: opt(&f.path),
        git: opt(&f.git),
        git_ref: opt(&f.git_ref),
        composer: None,
        archive: None,
    };
    match api::add_platform(State(state.clone()), v.0.clone(), ApiJson(req)).await {
        Ok(queued) => Ok(see_other(&format!("/tasks/{}", queued.0.id))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let errors = FormErrors::from_error(
                &e,
                &["name", "server", "path", "git", "git_ref"],
                &[("platform_name", "name"), ("platform name", "name")],
            );
            platforms_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, &f, errors).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PlatformQuery {
    to: Option<String>,
}

fn app_text(p: &Platform) -> String {
    p.app.map(|a| a.as_str().to_string()).unwrap_or_else(|| "not detected".into())
}

/// The "migrate all sites to…" form as last posted, and its dry run's answer.
#[derive(Debug, Default)]
struct MigrateView {
    parallel: String,
    canary: String,
    preview: Option<BatchSummary>,
}

async fn platform_page(
    state: &AppState,
    v: &Viewer,
    name: &str,
    to: Option<&str>,
    errors: FormErrors,
    migrate: MigrateView,
) -> UiResult {
    v.0.require_manager()?;
    let platform = state.store.platform_by_name(name).await?;
    let all = state.store.platforms().await?;
    let servers = state.store.servers().await?;
    let server_name =
        |id: ServerId| servers.iter().find(|s| s.id == id).map(|s| s.name.to_string()).unwrap_or_default();
    let sites =
        state.store.list_sites(&SiteQuery { platform: Some(platform.id), limit: 50, ..Default::default() }).await?;
    let clients = state.store.clients().await?;
    let site_rows: Vec<Value> = sites
        .items
        .iter()
        .map(|s| {
            context! {
                domain => s.domain.as_str(), status => s.status.as_str(), db_engine => s.db_engine.as_str(),
                client => s.client_id.and_then(|c| clients.iter().find(|k| k.id == c)).map(|c| c.name.as_str()),
            }
        })
        .collect();
    let targets: Vec<&Platform> =
        all.iter().filter(|p| p.id != platform.id && p.status == ObjectStatus::Enabled && !p.locked).collect();
    // The comparison: the chosen target, else the newest-looking one of the same application.
    let chosen = to
        .and_then(|t| targets.iter().find(|p| p.name.as_str() == t))
        .or_else(|| targets.iter().rev().find(|p| p.app == platform.app))
        .or(targets.first());
    let compare = match chosen {
        Some(t) => {
            let target_sites = state
                .store
                .list_sites(&SiteQuery { platform: Some(t.id), limit: 1, ..Default::default() })
                .await?
                .total;
            let rows = vec![
                ("Application", app_text(&platform), app_text(t)),
                (
                    "Version",
                    platform.app_version.clone().unwrap_or_default(),
                    t.app_version.clone().unwrap_or_default(),
                ),
                ("Server", server_name(platform.server_id), server_name(t.server_id)),
                (
                    "PHP required",
                    platform.details.php_requirement.clone().unwrap_or_else(|| "—".into()),
                    t.details.php_requirement.clone().unwrap_or_else(|| "—".into()),
                ),
                ("Profiles", platform.details.profiles.join(", "), t.details.profiles.join(", ")),
                ("Sites", sites.total.to_string(), target_sites.to_string()),
                ("Code", platform.root.clone(), t.root.clone()),
            ];
            let warning = if t.app != platform.app {
                Some(format!(
                    "{} runs {}, not {}: each site's migrate check will refuse it.",
                    t.name,
                    app_text(t),
                    app_text(&platform)
                ))
            } else {
                None
            };
            Some(context! { name => t.name.as_str(), rows, warning })
        }
        None => None,
    };
    let tasks: Vec<Task> = state
        .store
        .list_tasks(&TaskQuery { limit: 200, ..Default::default() })
        .await?
        .items
        .into_iter()
        .filter(|t| t.target_kind == TargetKind::Platform && t.target_id == platform.id.0)
        .take(10)
        .collect();
    // A platform that failed its first verify: why (its failed verify) and what to do.
    let failed_verify = tasks
        .iter()
        .filter(|_| platform.status == ObjectStatus::Failed)
        .find(|t| t.kind == TaskKind::PlatformVerify && t.status == TaskStatus::Failed)
        .map(|t| context! { id => t.id.0, error => t.error });
    let platform_v = context! {
        name => platform.name.as_str(), status => platform.status.as_str(), locked => platform.locked,
        app => platform.app.map(|a| a.as_str()), app_version => platform.app_version, root => platform.root,
        docroot => platform.docroot, verified_at => platform.verified_at,
        details => Value::from_serialize(&platform.details),
    };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    v.page_with_status(
        status,
        "platform.html",
        "platforms",
        context! {
            platform => platform_v, server => server_name(platform.server_id), source => platform.source.describe(),
            sites => site_rows, sites_total => sites.total, failed_verify,
            targets => targets.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), compare,
            tasks => task_rows(state, &tasks).await?, errors => errors.fields, general => errors.general,
            parallel => if migrate.parallel.is_empty() { "1".to_string() } else { migrate.parallel },
            canary => if migrate.canary.is_empty() { "0".to_string() } else { migrate.canary },
            preview => migrate.preview.as_ref().map(|p| context! {
                sites => Value::from_serialize(&p.sites), line => p.counts_line(), all_ok => p.all_ok(),
            }),
        },
    )
}

pub async fn platform(
    State(state): State<AppState>,
    v: Viewer,
    Path(name): Path<String>,
    Query(q): Query<PlatformQuery>,
) -> UiResult {
    platform_page(&state, &v, &name, given(&q.to), FormErrors::default(), MigrateView::default()).await
}

/// Verify, lock, unlock or remove a platform.
pub async fn platform_action(
    State(state): State<AppState>,
    v: Viewer,
    Path((name, action)): Path<(String, String)>,
    _: CsrfForm<NoFields>,
) -> UiResult {
    let (s, a, n) = (State(state), v.0.clone(), ApiPath(name.clone()));
    match action.as_str() {
        "verify" => {
            let queued = api::verify_platform(s, a, n).await?;
            Ok(see_other(&format!("/tasks/{}", queued.0.id)))
        }
        "lock" => {
            let _locked = api::lock_platform(s, a, n).await?;
            Ok(see_other(&format!("/platforms/{}", query_escape(&name))))
        }
        "unlock" => {
            let _unlocked = api::unlock_platform(s, a, n).await?;
            Ok(see_other(&format!("/platforms/{}", query_escape(&name))))
        }
        "remove" => {
            let queued = api::remove_platform(s, a, n).await?;
            Ok(see_other(&format!("/tasks/{}", queued.0.id)))
        }
        _ => Err(ApiError::not_found("action", action).into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MigrateAllForm {
    #[serde(default)]
    to: String,
    #[serde(default)]
    parallel: String,
    #[serde(default)]
    canary: String,
    /// Set by the "Preview" button: a dry run.
    #[serde(default)]
    dry_run: Option<String>,
}

/// "Migrate all sites to…": one `platform-migrate` task (the daemon queues a migrate per site,
/// `parallel` at a time, canaries first) through the API's handler, then its task page; or, with the
/// preview button, the platform page again with what would happen to each site.
pub async fn migrate_platform(
    State(state): State<AppState>,
    v: Viewer,
    Path(name): Path<String>,
    CsrfForm(f): CsrfForm<MigrateAllForm>,
) -> UiResult {
    v.0.require_manager()?;
    let number = |field: &str, text: &str, default: usize| -> Result<usize, ApiError> {
        match text.trim() {
            "" => Ok(default),
            t => t.parse().map_err(|_| ApiError::invalid(field, format!("{field} must be a whole number"))),
        }
    };
    let dry_run = f.dry_run.is_some();
    let req = number("parallel", &f.parallel, 1).and_then(|parallel| {
        Ok(PlatformMigrate {
            to: f.to.trim().to_string(),
            parallel,
            canary: number("canary", &f.canary, 0)?,
            maintenance: false,
            dry_run,
        })
    });
    let view = |preview| MigrateView { parallel: f.parallel.clone(), canary: f.canary.clone(), preview };
    let to = Some(f.to.trim()).filter(|t| !t.is_empty());
    let result = match req {
        Ok(req) => crate::api::objects::migrate_platform(
            State(state.clone()),
            v.0.clone(),
            ApiPath(name.clone()),
            ApiJson(req),
        )
        .await
        .map(|r| (r.status(), r)),
        Err(e) => Err(e),
    };
    match result {
        Ok((StatusCode::ACCEPTED, resp)) => {
            let location =
                resp.headers().get(axum::http::header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or_default();
            Ok(see_other(location.trim_start_matches("/api")))
        }
        Ok((_, resp)) => {
            let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .map_err(|e| ApiError::Internal(format!("reading the dry run: {e}")))?;
            let preview: BatchSummary =
                serde_json::from_slice(&body).map_err(|e| ApiError::Internal(format!("the dry run: {e}")))?;
            platform_page(&state, &v, &name, to, FormErrors::default(), view(Some(preview))).await
        }
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let errors = FormErrors::from_error(&e, &["parallel", "canary"], &[]);
            platform_page(&state, &v, &name, to, errors, view(None)).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---- clients ------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ClientForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    site_quota: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ClientsQuery {
    added: Option<String>,
}

async fn clients_page(
    state: &AppState,
    v: &Viewer,
    status: StatusCode,
    form: &ClientForm,
    errors: FormErrors,
    notice: Option<String>,
) -> UiResult {
    let mut clients = Vec::new();
    for c in state.store.clients().await?.into_iter().filter(|c| v.0.in_client(c.id)) {
        let sites = state
            .store
            .list_sites(&SiteQuery {
                client: Some(c.id),
                only_clients: v.0.only_clients(),
                limit: 1,
                ..Default::default()
            })
            .await?
            .total;
        clients.push(context! {
            name => c.name.as_str(), title => c.title, site_quota => c.site_quota, created_at => c.created_at, sites,
        });
    }
    v.page_with_status(
        status,
        "clients.html",
        "clients",
        context! { clients, form => Value::from_serialize(form), errors => errors.fields, general => errors.general, notice },
    )
}

pub async fn clients(State(state): State<AppState>, v: Viewer, Query(q): Query<ClientsQuery>) -> UiResult {
    let notice = given(&q.added).map(|n| format!("Client {n} added."));
    clients_page(&state, &v, StatusCode::OK, &ClientForm::default(), FormErrors::default(), notice).await
}

pub async fn add_client(State(state): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<ClientForm>) -> UiResult {
    v.0.require_admin()?;
    let quota = match f.site_quota.trim() {
        "" => None,
        q => match q.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let mut errors = FormErrors::default();
                errors.fields.insert("site_quota".into(), "The site quota is a whole number, or empty.".into());
                return clients_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, &f, errors, None).await;
            }
        },
    };
    let req = ClientCreate { name: f.name.trim().to_string(), title: opt(&f.title), site_quota: quota };
    match api::add_client(State(state.clone()), v.0.clone(), ApiJson(req)).await {
        Ok(_) => Ok(see_other(&format!("/clients?added={}", query_escape(f.name.trim())))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let errors = FormErrors::from_error(
                &e,
                &["name", "title", "site_quota"],
                &[("client", "name"), ("client_name", "name"), ("client name", "name")],
            );
            clients_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, &f, errors, None).await
        }
        Err(e) => Err(e.into()),
    }
}
