//! The JSON API under `/api/`. Every route is one row of [`ROUTES`], from which both the router and the
//! OpenAPI document (`/api/openapi.json`, see [`crate::openapi`]) are built, so no route can be
//! undocumented. Actions answer `202 Accepted` with the queued task; errors are problem documents.

// The UI calls these handlers for its actions (same checks, same audit record).
pub(crate) mod accounts;
pub(crate) mod objects;
pub(crate) mod site_settings;
pub(crate) mod sites;
pub(crate) mod tasks;

use crate::error::{ApiError, ApiResult};
use crate::{Actor, AppState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use fjord_core::Task;
use serde::{Deserialize, Serialize};

/// A named schema for the OpenAPI document.
pub type NamedSchema = (String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>);

/// One API route: the router and the OpenAPI document are both made from these.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Whether the route needs a logged-in user or token.
    pub auth: bool,
    /// The request body's schema (first) and those it refers to, if it takes one.
    pub body: Option<fn() -> Vec<NamedSchema>>,
    /// What a success returns: "task" (202 with the queued task), "task-or-json" (202 with the task, or
    /// 200 with a dry run's answer), "json", "sse", "none" (204).
    pub returns: &'static str,
    pub handler: fn() -> MethodRouter<AppState>,
}

fn schema<T: utoipa::ToSchema>() -> Vec<NamedSchema> {
    let mut all = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut all);
    all
}

macro_rules! route {
    ($method:literal $path:literal, $tag:literal, $summary:literal, auth = $auth:literal, body = $body:expr, returns = $returns:literal, $handler:expr) => {
        Route {
            method: $method,
            path: $path,
            summary: $summary,
            tag: $tag,
            auth: $auth,
            body: $body,
            returns: $returns,
            handler: || $handler,
        }
    };
}

/// Every API route.
pub static ROUTES: &[Route] = &[
    route!("get" "/api/health", "meta", "Liveness: the state database answers", auth = false, body = None, returns = "json", get(objects::health)),
    route!("get" "/api/openapi.json", "meta", "This API's OpenAPI document", auth = false, body = None, returns = "json", get(crate::openapi::serve)),
    // accounts
    route!("post" "/api/login", "accounts", "Log in: opens a session (cookie) and returns its CSRF token", auth = false, body = Some(schema::<accounts::LoginRequest>), returns = "json", post(accounts::login)),
    route!("post" "/api/logout", "accounts", "Log out: ends the session", auth = true, body = None, returns = "none", post(accounts::logout)),
    route!("get" "/api/me", "accounts", "The current user, role, clients and CSRF token", auth = true, body = None, returns = "json", get(accounts::me)),
    route!("post" "/api/me/password", "accounts", "Change your password (ends your other sessions)", auth = true, body = Some(schema::<accounts::PasswordChange>), returns = "none", post(accounts::change_password)),
    route!("get" "/api/tokens", "accounts", "Your API tokens (all users' for an admin with ?all=true)", auth = true, body = None, returns = "json", get(accounts::tokens)),
    route!("post" "/api/tokens", "accounts", "Create an API token; its secret is shown once", auth = true, body = Some(schema::<accounts::TokenCreate>), returns = "json", post(accounts::create_token)),
    route!("delete" "/api/tokens/{id}", "accounts", "Revoke an API token", auth = true, body = None, returns = "json", delete(accounts::revoke_token)),
    route!("get" "/api/users", "accounts", "Users (admin)", auth = true, body = None, returns = "json", get(accounts::users)),
    route!("post" "/api/users", "accounts", "Add a user (admin)", auth = true, body = Some(schema::<fjord_actions::UserCreate>), returns = "json", post(accounts::add_user)),
    route!("get" "/api/users/{name}", "accounts", "A user (admin, or yourself)", auth = true, body = None, returns = "json", get(accounts::user)),
    route!("delete" "/api/users/{name}", "accounts", "Delete a user (admin)", auth = true, body = None, returns = "none", delete(accounts::delete_user)),
    route!("post" "/api/users/{name}/password", "accounts", "Set a user's password (admin)", auth = true, body = Some(schema::<accounts::PasswordSet>), returns = "none", post(accounts::set_password)),
    route!("get" "/api/audit", "accounts", "The audit log, newest first (admin)", auth = true, body = None, returns = "json", get(accounts::audit)),
    // clients, servers, platforms
    route!("get" "/api/clients", "clients", "Clients (a client user sees their own)", auth = true, body = None, returns = "json", get(objects::clients)),
    route!("post" "/api/clients", "clients", "Add a client (admin)", auth = true, body = Some(schema::<fjord_actions::ClientCreate>), returns = "json", post(objects::add_client)),
    route!("get" "/api/servers", "servers", "Servers (admin, platform manager)", auth = true, body = None, returns = "json", get(objects::servers)),
    route!("get" "/api/servers/{name}", "servers", "A server", auth = true, body = None, returns = "json", get(objects::server)),
    route!("post" "/api/servers", "servers", "Add a server (its database admin accounts must answer) and queue its verify (admin)", auth = true, body = Some(schema::<fjord_actions::ServerCreate>), returns = "task", post(objects::add_server)),
    route!("delete" "/api/servers/{name}", "servers", "Remove a server with nothing on it (admin)", auth = true, body = None, returns = "task", delete(objects::remove_server)),
    route!("post" "/api/servers/{name}/web", "servers", "Switch the server's web server (nginx, apache): every vhost moves over (admin)", auth = true, body = Some(schema::<fjord_actions::WebSwitch>), returns = "task", post(objects::switch_web)),
    route!("post" "/api/servers/{name}/php", "servers", "Add a PHP-FPM runtime, detected from its binary (admin)", auth = true, body = Some(schema::<fjord_actions::PhpRuntimeAdd>), returns = "task", post(objects::add_php_runtime)),
    route!("delete" "/api/servers/{name}/php/{runtime}", "servers", "Remove a PHP-FPM runtime no site runs on (admin)", auth = true, body = None, returns = "task", delete(objects::remove_php_runtime)),
    route!("post" "/api/servers/{name}/real-ip", "servers", "Set the proxies trusted to say the visitor's address (admin)", auth = true, body = Some(schema::<fjord_actions::RealIpSet>), returns = "task", post(objects::set_real_ip)),
    route!("get" "/api/proxy-ranges", "servers", "Cloudflare's ranges as Fjord knows them, and since when", auth = true, body = None, returns = "json", get(objects::proxy_ranges)),
    route!("post" "/api/proxy-ranges/refresh", "servers", "Fetch Cloudflare's ranges again and queue a verify of every server trusting them whose list changed (admin)", auth = true, body = Some(schema::<objects::ProxyRangesRefresh>), returns = "json", post(objects::refresh_proxy_ranges)),
    route!("post" "/api/servers/{name}/verify", "servers", "Verify a server (admin)", auth = true, body = None, returns = "task", post(objects::verify_server)),
    route!("post" "/api/servers/{name}/stop", "servers", "Stop Fjord's own web-server and PHP-FPM masters of the server (admin)", auth = true, body = None, returns = "task", post(objects::stop_server)),
    route!("post" "/api/servers/{name}/start", "servers", "Start Fjord's own web-server and PHP-FPM masters of the server, e.g. after a reboot (admin)", auth = true, body = None, returns = "task", post(objects::start_server)),
    route!("get" "/api/platforms", "platforms", "Platforms", auth = true, body = None, returns = "json", get(objects::platforms)),
    route!("post" "/api/platforms", "platforms", "Add a platform and queue its verify", auth = true, body = Some(schema::<fjord_actions::PlatformCreate>), returns = "task", post(objects::add_platform)),
    route!("get" "/api/platforms/{name}", "platforms", "A platform with its sites count", auth = true, body = None, returns = "json", get(objects::platform)),
    route!("delete" "/api/platforms/{name}", "platforms", "Remove a platform (refused while it has sites)", auth = true, body = None, returns = "task", delete(objects::remove_platform)),
    route!("post" "/api/platforms/{name}/verify", "platforms", "Verify a platform", auth = true, body = None, returns = "task", post(objects::verify_platform)),
    route!("post" "/api/platforms/{name}/lock", "platforms", "Lock a platform (no new sites)", auth = true, body = None, returns = "json", post(objects::lock_platform)),
    route!("post" "/api/platforms/{name}/unlock", "platforms", "Unlock a platform", auth = true, body = None, returns = "json", post(objects::unlock_platform)),
    route!("post" "/api/platforms/{name}/migrate", "platforms", "Migrate every site of a platform (by name or id) to another: one platform-migrate task, parallel and canary; dry_run answers with what would happen to each site", auth = true, body = Some(schema::<fjord_actions::PlatformMigrate>), returns = "task-or-json", post(objects::migrate_platform)),
    // sites
    route!("get" "/api/sites", "sites", "Sites: paginated, filtered (status, platform, client, q), sorted by domain", auth = true, body = None, returns = "json", get(sites::list)),
    route!("post" "/api/sites", "sites", "Create a site and queue its install", auth = true, body = Some(schema::<fjord_actions::SiteCreate>), returns = "task", post(sites::create)),
    route!("post" "/api/sites/import", "sites", "Adopt an existing site with its database (kept as it is) and queue its import (platform managers)", auth = true, body = Some(schema::<fjord_actions::SiteImport>), returns = "task", post(sites::import)),
    route!("get" "/api/sites/{domain}", "sites", "A site", auth = true, body = None, returns = "json", get(sites::show)),
    route!("delete" "/api/sites/{domain}", "sites", "Delete a site (pre-delete backup unless ?backup=false)", auth = true, body = None, returns = "task", delete(sites::delete)),
    route!("post" "/api/sites/{domain}/verify", "sites", "Verify a site", auth = true, body = None, returns = "task", post(sites::verify)),
    route!("post" "/api/sites/{domain}/enable", "sites", "Enable a site", auth = true, body = None, returns = "task", post(sites::enable)),
    route!("post" "/api/sites/{domain}/disable", "sites", "Disable a site", auth = true, body = None, returns = "task", post(sites::disable)),
    route!("post" "/api/sites/{domain}/backup", "sites", "Back up a site", auth = true, body = Some(schema::<sites::BackupRequest>), returns = "task", post(sites::backup)),
    route!("post" "/api/sites/{domain}/restore", "sites", "Restore a site from one of its backups", auth = true, body = Some(schema::<sites::RestoreRequest>), returns = "task", post(sites::restore)),
    route!("post" "/api/sites/{domain}/clone", "sites", "Clone a site under a new domain", auth = true, body = Some(schema::<sites::CloneRequest>), returns = "task", post(sites::clone)),
    route!("post" "/api/sites/{domain}/migrate", "sites", "Migrate a site to another platform (or rename it)", auth = true, body = Some(schema::<sites::MigrateRequest>), returns = "task", post(sites::migrate)),
    route!("post" "/api/sites/{domain}/aliases", "sites", "Add or remove aliases", auth = true, body = Some(schema::<sites::AliasesRequest>), returns = "task", post(sites::aliases)),
    route!("post" "/api/sites/{domain}/login-link", "sites", "Queue a one-time login link (printed in the task's log)", auth = true, body = None, returns = "task", post(sites::login_link)),
    route!("post" "/api/sites/{domain}/sync", "sites", "Copy another site's database and/or files into this one, after a backup of this one", auth = true, body = Some(schema::<fjord_actions::SyncRequest>), returns = "task", post(site_settings::sync)),
    route!("post" "/api/sites/{domain}/cron", "sites", "Run the site's cron now", auth = true, body = None, returns = "task", post(site_settings::cron)),
    route!("post" "/api/sites/{domain}/php-limits", "sites", "Change the limits of the site's PHP-FPM pool (platform managers)", auth = true, body = Some(schema::<fjord_actions::PhpLimitsChange>), returns = "task", post(site_settings::php_limits)),
    route!("post" "/api/sites/{domain}/php", "sites", "Move the site to another of its server's PHP runtimes (platform managers)", auth = true, body = Some(schema::<site_settings::PhpRuntimeChoice>), returns = "task", post(site_settings::php_runtime)),
    route!("post" "/api/sites/{domain}/isolation", "sites", "Whose Unix user the site's PHP runs as: site or client (platform managers)", auth = true, body = Some(schema::<site_settings::IsolationChoice>), returns = "task", post(site_settings::isolation)),
    route!("post" "/api/sites/{domain}/health-marker", "sites", "Set the text health checks look for on the front page (platform managers)", auth = true, body = Some(schema::<site_settings::HealthMarker>), returns = "json", post(site_settings::health_marker)),
    route!("post" "/api/sites/{domain}/https", "sites", "Set the site's HTTPS mode (off, on, required) and HSTS, then get its certificate (platform managers)", auth = true, body = Some(schema::<fjord_actions::HttpsChange>), returns = "task", post(site_settings::https)),
    route!("post" "/api/sites/{domain}/cert", "sites", "A new certificate now: ACME, self-signed, or an uploaded PEM certificate and key (platform managers)", auth = true, body = Some(schema::<fjord_actions::CertChange>), returns = "json", post(site_settings::cert)),
    route!("get" "/api/sites/{domain}/tasks", "sites", "A site's tasks, newest first", auth = true, body = None, returns = "json", get(sites::tasks)),
    route!("get" "/api/sites/{domain}/backups", "sites", "A site's backups, newest first", auth = true, body = None, returns = "json", get(sites::backups)),
    // backups and tasks
    route!("get" "/api/backups", "backups", "Backups, newest first (?site=DOMAIN)", auth = true, body = None, returns = "json", get(tasks::backups)),
    route!("get" "/api/backups/{id}", "backups", "A backup", auth = true, body = None, returns = "json", get(tasks::backup)),
    route!("delete" "/api/backups/{id}", "backups", "Delete a backup: its archive, offsite copy and record (platform managers)", auth = true, body = None, returns = "json", delete(tasks::delete_backup)),
    route!("post" "/api/backups/{id}/restore", "backups", "Bring the deleted site a backup was taken of back as a new site (its old domain and platform unless given)", auth = true, body = Some(schema::<tasks::RestoreDeletedRequest>), returns = "task", post(tasks::restore_deleted)),
    route!("post" "/api/backups/{id}/verify", "backups", "Re-read a backup's archive and check its checksums (fetched back from offsite if only there)", auth = true, body = None, returns = "json", post(tasks::verify_backup)),
    route!("get" "/api/tasks", "tasks", "Tasks, newest first (?status, kind, site)", auth = true, body = None, returns = "json", get(tasks::list)),
    route!("get" "/api/tasks/{id}", "tasks", "A task with its steps", auth = true, body = None, returns = "json", get(tasks::show)),
    route!("get" "/api/tasks/{id}/log", "tasks", "A task's log as server-sent events, live until the task ends", auth = true, body = None, returns = "sse", get(tasks::log)),
    route!("post" "/api/tasks/{id}/cancel", "tasks", "Cancel a task", auth = true, body = None, returns = "json", post(tasks::cancel)),
    route!("post" "/api/tasks/{id}/retry", "tasks", "Queue a failed or cancelled task again", auth = true, body = None, returns = "task", post(tasks::retry)),
];

/// The API's routes, built from [`ROUTES`].
pub fn router() -> Router<AppState> {
    let mut r = Router::new();
    for route in ROUTES {
        r = r.route(route.path, (route.handler)());
    }
    r.fallback(|uri: axum::http::Uri| async move {
        if uri.path().starts_with("/api/") {
            ApiError::not_found("route", uri.path()).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    })
}

/// `202 Accepted` with the queued task, and where to follow it.
pub struct Queued(pub Task);

impl IntoResponse for Queued {
    fn into_response(self) -> Response {
        let mut resp = (StatusCode::ACCEPTED, Json(&self.0)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("/api/tasks/{}", self.0.id)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }
}

/// Paging parameters every list takes.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    #[serde(default)]
    pub offset: i64,
    #[serde(default)]
    pub limit: i64,
}

/// The task a change queued (the API asks for no dry runs through this path).
pub fn queued(outcome: fjord_actions::Outcome) -> ApiResult<Queued> {
    Ok(Queued(outcome.queued()?))
}

/// Runs a mutating action and records it in the audit log with its outcome, ok or not.
pub async fn act<T, E: Into<ApiError>>(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> ApiResult<T> {
    let result = f.await.map_err(Into::into);
    let (outcome, detail) = match &result {
        Ok(_) => ("ok", detail.to_string()),
        Err(e) => (e.outcome(), format!("{detail} {e}").trim().to_string()),
    };
    actor.audit(state, action, target, &detail, outcome).await;
    result
}
