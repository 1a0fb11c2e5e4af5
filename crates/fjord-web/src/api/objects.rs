//! Health, clients, servers and platforms.

use super::{act, queued, Queued};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::{Actor, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fjord_actions::{
    ClientCreate, PhpRuntimeAdd, PlatformCreate, PlatformMigrate, RealIpSet, ServerCreate, WebSwitch, CLOUDFLARE,
};
use fjord_core::*;

pub async fn health(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let active = state.store.active_task_count().await?;
    Ok(Json(serde_json::json!({ "database": "ok", "active_tasks": active })))
}

pub async fn clients(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<Vec<Client>>> {
    let all = state.store.clients().await?;
    Ok(Json(all.into_iter().filter(|c| actor.in_client(c.id)).collect()))
}

pub async fn add_client(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<ClientCreate>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    let target = format!("client:{}", req.name);
    let c = act(&state, &actor, "client.add", &target, "", state.actions().add_client(&req)).await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

pub async fn servers(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<Vec<Server>>> {
    actor.require_manager()?;
    Ok(Json(state.store.servers().await?))
}

pub async fn server(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Server>> {
    actor.require_manager()?;
    Ok(Json(state.store.server_by_name(&name).await?))
}

pub async fn verify_server(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Queued> {
    server_task(&state, &actor, &name, "server.verify", TaskKind::ServerVerify).await
}

pub async fn stop_server(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Queued> {
    server_task(&state, &actor, &name, "server.stop", TaskKind::ServerStop).await
}

pub async fn start_server(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Queued> {
    server_task(&state, &actor, &name, "server.start", TaskKind::ServerStart).await
}

pub async fn platforms(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<Vec<Platform>>> {
    actor.require_manager()?;
    Ok(Json(state.store.platforms().await?))
}

pub async fn platform(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    actor.require_manager()?;
    let p = state.store.platform_by_name(&name).await?;
    let sites = state
        .store
        .list_sites(&fjord_store::SiteQuery { platform: Some(p.id), limit: 1, ..Default::default() })
        .await?
        .total;
    let mut v = serde_json::to_value(&p).unwrap_or_default();
    v["sites"] = serde_json::json!(sites);
    Ok(Json(v))
}

pub async fn add_platform(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<PlatformCreate>,
) -> ApiResult<Queued> {
    actor.require_manager()?;
    let target = format!("platform:{}", req.name);
    let (_, task) =
        act(&state, &actor, "platform.add", &target, "", state.actions().add_platform(&req, &actor.created_by()))
            .await?;
    Ok(Queued(task))
}

pub async fn verify_platform(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Queued> {
    platform_task(&state, &actor, &name, "platform.verify", TaskKind::PlatformVerify).await
}

/// Queues `kind` on the platform `name` (platform managers), audited as `action`.
async fn platform_task(state: &AppState, actor: &Actor, name: &str, action: &str, kind: TaskKind) -> ApiResult<Queued> {
    actor.require_manager()?;
    act(state, actor, action, &format!("platform:{name}"), "", async {
        let p = state.store.platform_by_name(name).await?;
        state.actions().enqueue(kind, p.id.0, serde_json::json!({}), &actor.created_by()).await
    })
    .await
    .map(Queued)
}

async fn set_lock(state: AppState, actor: Actor, name: String, locked: bool) -> ApiResult<Json<Platform>> {
    actor.require_manager()?;
    let target = format!("platform:{name}");
    let action = if locked { "platform.lock" } else { "platform.unlock" };
    act(&state, &actor, action, &target, "", async {
        let p = state.store.platform_by_name(&name).await?;
        state.store.set_platform_locked(p.id, locked).await?;
        Ok::<_, ApiError>(Json(state.store.platform(p.id).await?))
    })
    .await
}

pub async fn lock_platform(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Platform>> {
    set_lock(state, actor, name, true).await
}

pub async fn unlock_platform(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Platform>> {
    set_lock(state, actor, name, false).await
}

pub async fn add_server(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<ServerCreate>,
) -> ApiResult<Queued> {
    actor.require_admin()?;
    let target = format!("server:{}", req.name);
    let (_, task, _) =
        act(&state, &actor, "server.add", &target, "", state.actions().add_server(&req, &actor.created_by())).await?;
    Ok(Queued(task))
}

pub async fn remove_server(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Queued> {
    server_task(&state, &actor, &name, "server.remove", TaskKind::ServerRemove).await
}

/// Queues `kind` on the server `name` (admins only), audited as `action`.
async fn server_task(state: &AppState, actor: &Actor, name: &str, action: &str, kind: TaskKind) -> ApiResult<Queued> {
    actor.require_admin()?;
    act(state, actor, action, &format!("server:{name}"), "", async {
        let s = state.store.server_by_name(name).await?;
        state.actions().enqueue(kind, s.id.0, serde_json::json!({}), &actor.created_by()).await
    })
    .await
    .map(Queued)
}

/// Records the server's new services (computed by `change`) and queues its verify, audited as `action`.
async fn change_services<F, Fut>(
    state: &AppState,
    actor: &Actor,
    name: &str,
    action: &str,
    detail: &str,
    change: F,
) -> ApiResult<Queued>
where
    F: FnOnce(Server) -> Fut,
    Fut: std::future::Future<Output = ApiResult<(Server, Vec<Service>, serde_json::Value)>>,
{
    actor.require_admin()?;
    let target = format!("server:{name}");
    act(state, actor, action, &target, detail, async {
        let s = state.store.server_by_name(name).await?;
        let (s, services, args) = change(s).await?;
        queued(state.actions().set_services_and_verify(&s, &services, args, &actor.created_by(), false).await?)
    })
    .await
}

pub async fn switch_web(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<WebSwitch>,
) -> ApiResult<Queued> {
    let actions = state.actions();
    change_services(&state, &actor, &name, "server.web", &req.web, |s| async {
        let (services, args) = actions.web_switch(&s, &req).await?;
        Ok((s, services, args))
    })
    .await
}

pub async fn add_php_runtime(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<PhpRuntimeAdd>,
) -> ApiResult<Queued> {
    let actions = state.actions();
    change_services(&state, &actor, &name, "server.php.add", &req.name, |s| async {
        let services = actions.php_runtime_added(&s, &req).await?;
        Ok((s, services, serde_json::json!({})))
    })
    .await
}

pub async fn remove_php_runtime(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath((name, runtime)): ApiPath<(String, String)>,
) -> ApiResult<Queued> {
    let actions = state.actions();
    change_services(&state, &actor, &name, "server.php.remove", &runtime, |s| async {
        let services = actions.php_runtime_removed(&s, &runtime).await?;
        Ok((s, services, serde_json::json!({})))
    })
    .await
}

pub async fn set_real_ip(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<RealIpSet>,
) -> ApiResult<Queued> {
    let actions = state.actions();
    change_services(&state, &actor, &name, "server.real-ip", "", |s| async {
        let services = actions.real_ip_set(&s, &req).await?;
        Ok((s, services, serde_json::json!({})))
    })
    .await
}

pub async fn proxy_ranges(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<serde_json::Value>> {
    actor.require_manager()?;
    let (ranges, source, at) = state.actions().cloudflare_ranges().await?;
    Ok(Json(serde_json::json!({ "name": CLOUDFLARE, "ranges": ranges, "source": source, "updated_at": at })))
}

/// Where to fetch Cloudflare's ranges from.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyRangesRefresh {
    /// http, https or file URLs of lists of CIDR blocks (default: Cloudflare's own).
    #[serde(default)]
    pub from: Vec<String>,
}

/// Fetches Cloudflare's ranges again, records them, and queues a verify of every server trusting
/// Cloudflare whose list changed (admin).
pub async fn refresh_proxy_ranges(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<ProxyRangesRefresh>,
) -> ApiResult<Json<fjord_actions::ProxyRangesRefresh>> {
    actor.require_admin()?;
    let urls = if req.from.is_empty() { fjord_actions::cloudflare_urls() } else { req.from };
    act(&state, &actor, "proxy-ranges.update", "proxy-ranges:cloudflare", &urls.join(" "), async {
        Ok::<_, ApiError>(Json(state.actions().refresh_cloudflare_ranges(&urls, &actor.created_by()).await?))
    })
    .await
}

pub async fn remove_platform(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Queued> {
    platform_task(&state, &actor, &name, "platform.remove", TaskKind::PlatformRemove).await
}

/// How long a dry run waits for the sites' schema checks.
pub const PREVIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Migrate every site of a platform: `202` with the queued `platform-migrate` task, or, for a dry run,
/// `200` with what would happen to each site (nothing changed; its schema checks are read-only tasks).
pub async fn migrate_platform(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<PlatformMigrate>,
) -> ApiResult<Response> {
    actor.require_manager()?;
    let target = format!("platform:{name}");
    let detail = format!(
        "to {} (parallel {}, canary {}){}",
        req.to,
        req.parallel,
        req.canary,
        if req.dry_run { " dry run" } else { "" }
    );
    let actions = state.actions();
    if req.dry_run {
        let summary = act(&state, &actor, "platform.migrate", &target, &detail, async {
            let from = actions.platform_by_name_or_id(&name).await?;
            actions.preview_platform_migrate(&from, &req, &actor.created_by(), PREVIEW_WAIT).await
        })
        .await?;
        return Ok(Json(summary.report(None)).into_response());
    }
    let task = act(&state, &actor, "platform.migrate", &target, &detail, async {
        let from = actions.platform_by_name_or_id(&name).await?;
        actions.platform_migrate(&from, &req, &actor.created_by()).await
    })
    .await?;
    Ok(Queued(task).into_response())
}
