//! Sites: the list (search, filters, pages), the create form, the site page and its actions.

use super::tasks::task_rows;
use super::{given, page_number, query_escape, see_other, FormErrors, NoFields, Pager, UiResult, Viewer};
use crate::api::sites as api;
use crate::api::tasks as api_tasks;
use crate::csrf::CsrfForm;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::{AppState, SiteAction};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use fjord_actions::SiteCreate;
use fjord_core::*;
use fjord_store::{BackupQuery, SiteQuery, TaskQuery};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Rows per page of the sites list.
const PER_PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    platform: Option<String>,
    client: Option<String>,
    page: Option<String>,
}

pub async fn list(State(state): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> UiResult {
    let page = page_number(q.page.as_deref());
    let platforms = state.store.platforms().await?;
    let clients: Vec<Client> = state.store.clients().await?.into_iter().filter(|c| v.0.in_client(c.id)).collect();
    // Filters that name nothing the viewer can see are ignored rather than refused: this is a search.
    let status = given(&q.status).and_then(SiteStatus::parse);
    let platform = given(&q.platform).and_then(|n| platforms.iter().find(|p| p.name.as_str() == n));
    let client = given(&q.client).and_then(|n| clients.iter().find(|c| c.name.as_str() == n));
    let text: Option<String> = given(&q.q).map(|t| t.chars().take(253).collect());
    let found = state
        .store
        .list_site_summaries(&SiteQuery {
            status,
            platform: platform.map(|p| p.id),
            client: client.map(|c| c.id),
            text: text.clone(),
            only_clients: v.0.only_clients(),
            offset: (page - 1) * PER_PAGE,
            limit: PER_PAGE,
        })
        .await?;

    let platform_names: HashMap<PlatformId, &str> = platforms.iter().map(|p| (p.id, p.name.as_str())).collect();
    let client_names: HashMap<ClientId, &str> = clients.iter().map(|c| (c.id, c.name.as_str())).collect();
    let sites: Vec<Value> = found
        .items
        .iter()
        .map(|s| {
            context! {
                domain => s.domain.as_str(),
                status => s.status.as_str(),
                platform => platform_names.get(&s.platform_id).copied().unwrap_or("?"),
                client => s.client_id.and_then(|c| client_names.get(&c).copied()),
                db_engine => s.db_engine.as_str(),
                https => s.https.as_str(),
                aliases => s.aliases,
            }
        })
        .collect();

    let mut base = String::from("/sites?");
    for (k, val) in [
        ("q", text.as_deref()),
        ("status", status.map(|s| s.as_str())),
        ("platform", platform.map(|p| p.name.as_str())),
        ("client", client.map(|c| c.name.as_str())),
    ] {
        if let Some(val) = val {
            base.push_str(&format!("{k}={}&", query_escape(val)));
        }
    }
    let pager = Pager::new(&base, found.total, page, PER_PAGE, sites.len());
    let filter = context! {
        q => text, status => status.map(|s| s.as_str()),
        platform => platform.map(|p| p.name.as_str()), client => client.map(|c| c.name.as_str()),
        active => text.is_some() || status.is_some() || platform.is_some() || client.is_some(),
    };
    let statuses: Vec<&str> =
        SiteStatus::ALL.iter().filter(|s| **s != SiteStatus::Deleted).map(|s| s.as_str()).collect();
    let platform_filter: Vec<&str> =
        if v.0.is_manager() { platforms.iter().map(|p| p.name.as_str()).collect() } else { vec![] };
    let client_filter: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
    v.page(
        "sites.html",
        "sites",
        context! { sites, pager, filter, statuses, platforms => platform_filter, clients => client_filter },
    )
}

// ---- the create form ----------------------------------------------------------------------------------

/// The create form as posted: all text, so a bad value comes back to the form with its message.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CreateForm {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    db_engine: String,
    #[serde(default)]
    php: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    aliases: String,
    #[serde(default)]
    www: Option<String>,
    #[serde(default)]
    https: String,
    #[serde(default)]
    profile: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl CreateForm {
    fn request(&self) -> SiteCreate {
        SiteCreate {
            domain: self.domain.trim().to_string(),
            platform: self.platform.clone(),
            aliases: self.aliases.split_whitespace().map(str::to_string).collect(),
            www: self.www.is_some(),
            db_engine: opt(&self.db_engine).unwrap_or_else(|| "sqlite".into()),
            db_server: None,
            php: opt(&self.php),
            profile: opt(&self.profile),
            language: "en".into(),
            client: opt(&self.client),
            redirect_aliases: false,
            https: opt(&self.https).unwrap_or_else(|| "off".into()),
            cron_interval: 3600,
        }
    }
}

const CREATE_FIELDS: &[&str] = &["domain", "platform", "db_engine", "php", "client", "aliases", "https", "profile"];

async fn create_page(
    state: &AppState,
    v: &Viewer,
    status: StatusCode,
    form: &CreateForm,
    errors: FormErrors,
) -> UiResult {
    v.0.require_manager()?;
    let platforms: Vec<Platform> = state
        .store
        .platforms()
        .await?
        .into_iter()
        .filter(|p| matches!(p.status, ObjectStatus::Enabled | ObjectStatus::Queued) && !p.locked)
        .collect();
    let servers = state.store.servers().await?;
    let platform_options: Vec<(String, String)> = platforms
        .iter()
        .map(|p| {
            let app = match (&p.app, &p.app_version) {
                (Some(a), Some(ver)) => format!(" ({a} {ver})"),
                (Some(a), None) => format!(" ({a})"),
                _ => String::new(),
            };
            (p.name.to_string(), format!("{}{app}", p.name))
        })
        .collect();
    // The engines and PHP versions the servers of these platforms offer.
    let mut engines: Vec<DbEngine> = Vec::new();
    let mut php: Vec<String> = Vec::new();
    for s in servers.iter().filter(|s| platforms.iter().any(|p| p.server_id == s.id)) {
        engines.extend(s.db_engines().filter(|e| !engines.contains(e)).collect::<Vec<_>>());
        php.extend(s.php_versions().map(str::to_string).filter(|p2| !php.contains(p2)).collect::<Vec<_>>());
    }
    if engines.is_empty() {
        engines = DbEngine::ALL.to_vec();
    }
    let engine_options: Vec<(String, String)> = engines
        .iter()
        .map(|e| {
            let label = match e {
                DbEngine::Mariadb => "MariaDB",
                DbEngine::Postgres => "PostgreSQL",
                DbEngine::Sqlite => "SQLite",
            };
            (e.as_str().to_string(), label.to_string())
        })
        .collect();
    let mut php_options = vec![(String::new(), "Server default".to_string())];
    php_options.extend(php.iter().map(|p| (p.clone(), format!("PHP {p}"))));
    let mut client_options = vec![(String::new(), "None (only admins and platform managers)".to_string())];
    client_options
        .extend(state.store.clients().await?.iter().map(|c| (c.name.to_string(), format!("{} ({})", c.title, c.name))));
    let https_options: Vec<(String, String)> =
        HttpsMode::ALL.iter().map(|m| (m.as_str().into(), m.as_str().into())).collect();
    let mut form_v = serde_json::to_value(form).unwrap_or_default();
    if form.db_engine.is_empty() {
        form_v["db_engine"] = serde_json::json!(engines.first().map(|e| e.as_str()));
    }
    v.page_with_status(
        status,
        "site_new.html",
        "sites",
        context! {
            form => form_v, errors => errors.fields, general => errors.general,
            platform_options, engine_options, php_options, client_options, https_options,
        },
    )
}

pub async fn new_form(State(state): State<AppState>, v: Viewer) -> UiResult {
    create_page(&state, &v, StatusCode::OK, &CreateForm::default(), FormErrors::default()).await
}

pub async fn create(State(state): State<AppState>, v: Viewer, CsrfForm(form): CsrfForm<CreateForm>) -> UiResult {
    v.0.require_manager()?;
    match api::create(State(state.clone()), v.0.clone(), ApiJson(form.request())).await {
        Ok(queued) => Ok(see_other(&format!("/tasks/{}", queued.0.id))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_) | ApiError::BadRequest { .. })) => {
            let errors = FormErrors::from_error(
                &e,
                CREATE_FIELDS,
                &[("alias", "aliases"), ("db engine", "db_engine"), ("client_name", "client"), ("language", "general")],
            );
            create_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, &form, errors).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---- the site page ------------------------------------------------------------------------------------

/// The URL a site answers on (its main domain, the server's port unless it is the default).
fn site_url(site: &Site, server: &Server) -> String {
    let http = server.http();
    let (scheme, port, default) = if site.https == HttpsMode::Required && site.tls.installed() {
        ("https", http.and_then(|h| h.https_port).unwrap_or(443), 443)
    } else {
        ("http", http.map(|h| h.port).unwrap_or(80), 80)
    };
    if port == default {
        format!("{scheme}://{}/", site.domain)
    } else {
        format!("{scheme}://{}:{port}/", site.domain)
    }
}

/// The errors and values of the site page's forms, when one of them comes back.
#[derive(Debug, Default)]
struct SiteForms {
    form: HashMap<&'static str, String>,
    errors: HashMap<&'static str, FormErrors>,
}

async fn site_page(state: &AppState, v: &Viewer, domain: &str, status: StatusCode, forms: SiteForms) -> UiResult {
    let site = api::site_for(state, &v.0, domain, SiteAction::View).await?;
    let platform = state.store.platform(site.platform_id).await?;
    let server = state.store.server(platform.server_id).await?;
    let db_server = match site.db_server_id {
        Some(id) if id != server.id => Some(state.store.server(id).await?.name.to_string()),
        Some(_) => Some(server.name.to_string()),
        None => None,
    };
    let php = match &site.php {
        Some(p) => format!("PHP {p}"),
        None => match server.php_runtime(None) {
            Some(r) => format!("PHP {} (the server's default)", r.version),
            None => "the server's default".into(),
        },
    };
    let client = match site.client_id {
        Some(c) => Some(state.store.client(c).await?.title),
        None => None,
    };
    let cert = if site.tls.installed() {
        Some(format!(
            "certificate for {}{}",
            site.tls.names.join(", "),
            site.tls.not_after.map(|t| format!(", valid until {}", super::render::when(t))).unwrap_or_default()
        ))
    } else {
        site.tls.error.as_ref().map(|e| format!("no certificate yet: {e}"))
    };
    let only = v.0.only_clients();
    let backups = state
        .store
        .list_backups(&BackupQuery { site: Some(site.id), only_clients: only.clone(), offset: 0, limit: 100 })
        .await?;
    let tasks = state
        .store
        .list_tasks(&TaskQuery { site: Some(site.id), only_clients: only, limit: 10, ..Default::default() })
        .await?;
    let busy = tasks
        .items
        .iter()
        .find(|t| matches!(t.status, TaskStatus::Queued | TaskStatus::Running))
        .map(|t| context! { id => t.id.0, status => t.status.as_str(), kind => t.kind.as_str() });
    // A failed site's way back: the task that failed to make it, to retry (or the site is deleted).
    let failed_task = tasks
        .items
        .iter()
        .filter(|_| site.status == SiteStatus::Failed)
        .find(|t| t.status == TaskStatus::Failed && t.kind.makes_site())
        .map(|t| {
            let can_retry = v.0.can_site(&site, crate::api::tasks::site_action_of(t.kind));
            context! { id => t.id.0, kind => t.kind.as_str(), error => t.error, can_retry }
        });
    let migrate_options: Vec<(String, String)> = if v.0.can_site(&site, SiteAction::Migrate) {
        state
            .store
            .platforms()
            .await?
            .into_iter()
            .filter(|p| p.id != platform.id && p.status == ObjectStatus::Enabled)
            .map(|p| {
                let label = format!(
                    "{} ({} {})",
                    p.name,
                    p.app.map(|a| a.as_str()).unwrap_or("?"),
                    p.app_version.as_deref().unwrap_or("")
                );
                (p.name.to_string(), label.trim_end().to_string())
            })
            .collect()
    } else {
        vec![]
    };
    let can = |a| v.0.can_site(&site, a);
    let can = context! {
        login_link => can(SiteAction::LoginLink), backup => can(SiteAction::Backup), verify => can(SiteAction::Verify),
        enable => can(SiteAction::Enable), disable => can(SiteAction::Disable), clone => can(SiteAction::Clone),
        migrate => can(SiteAction::Migrate), delete => can(SiteAction::Delete), restore => can(SiteAction::Restore),
        delete_backup => v.0.require_manager().is_ok(),
    };
    let errors: HashMap<&str, Value> = forms
        .errors
        .into_iter()
        .map(|(k, e)| {
            let mut fields: std::collections::BTreeMap<String, String> = e.fields;
            if let Some(g) = e.general {
                // The page's small forms have one field each: a general error goes next to it.
                let field = match k {
                    "clone" => "new_domain",
                    "migrate" => "platform",
                    _ => "confirm",
                };
                fields.entry(field.to_string()).or_insert(g);
            }
            (k, Value::from_serialize(&fields))
        })
        .collect();
    let backups: Vec<Value> = backups
        .items
        .iter()
        .map(|b| context! { id => b.id.0, kind => b.kind.as_str(), size => b.size, created_at => b.created_at, offsite => b.offsite.is_some() })
        .collect();
    let more_tasks = (tasks.total > tasks.items.len() as i64).then_some(tasks.total);
    let site_v = context! {
        domain => site.domain.as_str(), status => site.status.as_str(), url => site_url(&site, &server),
        aliases => site.aliases.iter().map(|a| a.as_str()).collect::<Vec<_>>(), redirect_aliases => site.redirect_aliases,
        https => site.https.as_str(), db_engine => site.db_engine.as_str(), db_name => site.db_name,
        profile => site.profile, cron_interval => site.cron_interval, last_cron_at => site.last_cron_at,
        created_at => site.created_at,
    };
    let platform_v = context! {
        name => platform.name.as_str(), app => platform.app.map(|a| a.as_str()), app_version => platform.app_version,
    };
    v.page_with_status(
        status,
        "site.html",
        "sites",
        context! {
            site => site_v, platform => platform_v, db_server, php, client, cert, backups,
            tasks => task_rows(state, &tasks.items).await?, more_tasks, busy, failed_task, can, migrate_options,
            form => forms.form, errors,
        },
    )
}

pub async fn show(State(state): State<AppState>, v: Viewer, Path(domain): Path<String>) -> UiResult {
    site_page(&state, &v, &domain, StatusCode::OK, SiteForms::default()).await
}

/// What a site action's form may carry besides its CSRF token: the backup form's database copy
/// method (`auto`, `logical`, `physical`). The other actions are plain buttons.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionForm {
    #[serde(default)]
    method: Option<String>,
}

/// The one-button actions on a site: each queues a task and shows it.
pub async fn action(
    State(state): State<AppState>,
    v: Viewer,
    Path((domain, action)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ActionForm>,
) -> UiResult {
    let (s, a, d) = (State(state.clone()), v.0.clone(), ApiPath(domain));
    let queued = match action.as_str() {
        "verify" => api::verify(s, a, d).await,
        "enable" => api::enable(s, a, d).await,
        "disable" => api::disable(s, a, d).await,
        "login-link" => api::login_link(s, a, d).await,
        "backup" => {
            let method = form.method.as_deref().unwrap_or("auto");
            let request = api::BackupRequest {
                logical: method == "logical",
                physical: method == "physical",
                ..Default::default()
            };
            api::backup(s, a, d, crate::extract::OptionalJson(request)).await
        }
        _ => return Err(ApiError::not_found("action", action).into()),
    }?;
    Ok(see_other(&format!("/tasks/{}", queued.0.id)))
}

#[derive(Debug, Default, Deserialize)]
pub struct CloneForm {
    #[serde(default)]
    new_domain: String,
}

pub async fn clone(
    State(state): State<AppState>,
    v: Viewer,
    Path(domain): Path<String>,
    CsrfForm(f): CsrfForm<CloneForm>,
) -> UiResult {
    let req = api::CloneRequest { domain: f.new_domain.trim().to_string(), platform: None, aliases: vec![] };
    match api::clone(State(state.clone()), v.0.clone(), ApiPath(domain.clone()), ApiJson(req)).await {
        Ok(q) => Ok(see_other(&format!("/tasks/{}", q.0.id))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let mut forms = SiteForms::default();
            forms.form.insert("new_domain", f.new_domain);
            forms.errors.insert("clone", FormErrors::from_error(&e, &["new_domain"], &[("domain", "new_domain")]));
            site_page(&state, &v, &domain, StatusCode::UNPROCESSABLE_ENTITY, forms).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MigrateForm {
    #[serde(default)]
    platform: String,
}

pub async fn migrate(
    State(state): State<AppState>,
    v: Viewer,
    Path(domain): Path<String>,
    CsrfForm(f): CsrfForm<MigrateForm>,
) -> UiResult {
    let req =
        api::MigrateRequest { platform: f.platform.clone(), new_domain: None, keep_old_domain: true, db_server: None };
    match api::migrate(State(state.clone()), v.0.clone(), ApiPath(domain.clone()), ApiJson(req)).await {
        Ok(q) => Ok(see_other(&format!("/tasks/{}", q.0.id))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let mut forms = SiteForms::default();
            forms.form.insert("platform", f.platform);
            forms.errors.insert("migrate", FormErrors::from_error(&e, &["platform"], &[]));
            site_page(&state, &v, &domain, StatusCode::UNPROCESSABLE_ENTITY, forms).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// Deletes a site once its domain is typed to confirm; an enabled site is deleted with `force` (the
/// confirmation says so), and a backup is always taken first.
pub async fn delete(
    State(state): State<AppState>,
    v: Viewer,
    Path(domain): Path<String>,
    CsrfForm(f): CsrfForm<DeleteForm>,
) -> UiResult {
    let site = api::site_for(&state, &v.0, &domain, SiteAction::Delete).await?;
    if f.confirm.trim().to_lowercase() != site.domain.as_str() {
        let mut forms = SiteForms::default();
        let mut e = FormErrors::default();
        e.fields.insert("confirm".into(), format!("Type {} to confirm the deletion.", site.domain));
        forms.errors.insert("delete", e);
        return site_page(&state, &v, &domain, StatusCode::UNPROCESSABLE_ENTITY, forms).await;
    }
    let force = site.status == SiteStatus::Enabled;
    let target = format!("site:{}", site.domain);
    let args = fjord_actions::delete_args(force, true);
    let (actions, created_by) = (state.actions(), v.0.created_by());
    let enqueue = actions.enqueue(TaskKind::SiteDelete, site.id.0, args, &created_by);
    let task = crate::api::act(&state, &v.0, TaskKind::SiteDelete.as_str(), &target, "", enqueue).await?;
    Ok(see_other(&format!("/tasks/{}", task.id)))
}

/// Restore from one of the site's backups, or delete one.
pub async fn backup_action(
    State(state): State<AppState>,
    v: Viewer,
    Path((domain, id, action)): Path<(String, i64, String)>,
    _: CsrfForm<NoFields>,
) -> UiResult {
    match action.as_str() {
        "restore" => {
            let req = api::RestoreRequest { backup: id };
            let queued = api::restore(State(state), v.0.clone(), ApiPath(domain), ApiJson(req)).await?;
            Ok(see_other(&format!("/tasks/{}", queued.0.id)))
        }
        "delete" => {
            // The backup must be this site's: the URL names both.
            let b = state.store.backup(BackupId(id)).await.map_err(ApiError::from)?;
            let site = state.store.site(b.site_id).await.map_err(ApiError::from)?;
            if site.domain.as_str() != domain {
                return Err(ApiError::not_found("backup", id).into());
            }
            let _deleted = api_tasks::delete_backup(State(state), v.0.clone(), ApiPath(id)).await?;
            Ok(see_other(&format!("/sites/{domain}")))
        }
        _ => Err(ApiError::not_found("action", action).into()),
    }
}
