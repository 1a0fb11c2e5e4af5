//! Health, clients, servers and platforms.

use super::{act, Queued};
use crate::actions::{ClientCreate, PlatformCreate, PlatformMigrate};
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::{Actor, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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

pub async fn server(State(state): State<AppState>, actor: Actor, Path(name): Path<String>) -> ApiResult<Json<Server>> {
    actor.require_manager()?;
    Ok(Json(state.store.server_by_name(&name).await?))
}

pub async fn verify_server(State(state): State<AppState>, actor: Actor, Path(name): Path<String>) -> ApiResult<Queued> {
    actor.require_admin()?;
    let target = format!("server:{name}");
    act(&state, &actor, "server.verify", &target, "", async {
        let s = state.store.server_by_name(&name).await?;
        state.actions().enqueue(TaskKind::ServerVerify, s.id.0, serde_json::json!({}), &actor.created_by()).await
    })
    .await
    .map(Queued)
}

pub async fn platforms(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<Vec<Platform>>> {
    actor.require_manager()?;
    Ok(Json(state.store.platforms().await?))
}

pub async fn platform(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
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
    Path(name): Path<String>,
) -> ApiResult<Queued> {
    actor.require_manager()?;
    let target = format!("platform:{name}");
    act(&state, &actor, "platform.verify", &target, "", async {
        let p = state.store.platform_by_name(&name).await?;
        state.actions().enqueue(TaskKind::PlatformVerify, p.id.0, serde_json::json!({}), &actor.created_by()).await
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
        Ok(Json(state.store.platform(p.id).await?))
    })
    .await
}

pub async fn lock_platform(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<Platform>> {
    set_lock(state, actor, name, true).await
}

pub async fn unlock_platform(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<Json<Platform>> {
    set_lock(state, actor, name, false).await
}

/// How long a dry run waits for the sites' schema checks.
pub const PREVIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Migrate every site of a platform: `202` with the queued `platform-migrate` task, or, for a dry run,
/// `200` with what would happen to each site (nothing changed; its schema checks are read-only tasks).
pub async fn migrate_platform(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
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
