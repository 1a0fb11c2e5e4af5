//! A site's settings (PHP limits, PHP runtime, isolation, health marker), cron now, and content sync
//! from another site. Platform managers and admins only, except sync between two sites a client has
//! (it overwrites content like a restore, after a backup of the target).

use super::sites::site_for;
use super::{act, Queued};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::{Actor, AppState, SiteAction};
use axum::extract::State;
use axum::Json;
use fjord_actions::{parse_isolation, CertChange, HttpsChange, PhpLimitsChange, SyncRequest};
use fjord_core::*;
use serde::Deserialize;
use utoipa::ToSchema;

/// An action that ends in a verify: audited as `action`, the task queued.
async fn settings_change<F, Fut>(
    state: &AppState,
    actor: &Actor,
    domain: &str,
    action: &str,
    detail: &str,
    f: F,
) -> ApiResult<Queued>
where
    F: FnOnce(Site) -> Fut,
    Fut: std::future::Future<Output = fjord_actions::ActionResult<fjord_actions::Outcome>>,
{
    let site = site_for(state, actor, domain, SiteAction::Settings).await?;
    let target = format!("site:{}", site.domain);
    act(state, actor, action, &target, detail, async { super::queued(f(site).await?) }).await
}

pub async fn php_limits(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<PhpLimitsChange>,
) -> ApiResult<Queued> {
    let (by, st) = (actor.created_by(), state.clone());
    settings_change(&state, &actor, &domain, "site-php-limits", "", |site| async move {
        st.actions().set_php_limits(&site, &req, false, &by).await
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhpRuntimeChoice {
    /// One of the server's PHP runtimes, by name.
    pub runtime: String,
}

pub async fn php_runtime(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<PhpRuntimeChoice>,
) -> ApiResult<Queued> {
    let (by, st) = (actor.created_by(), state.clone());
    settings_change(&state, &actor, &domain, "site-php", &req.runtime.clone(), |site| async move {
        st.actions().set_php_runtime(&site, &req.runtime, false, &by).await
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IsolationChoice {
    /// `site` (its own Unix user) or `client` (one user for its client's sites).
    pub mode: String,
}

pub async fn isolation(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<IsolationChoice>,
) -> ApiResult<Queued> {
    let (by, st) = (actor.created_by(), state.clone());
    settings_change(&state, &actor, &domain, "site-isolation", &req.mode.clone(), |site| async move {
        let mode = parse_isolation(&req.mode)?;
        st.actions().set_isolation(&site, mode, false, &by).await
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthMarker {
    /// Text the front page must contain for health checks to pass; null: the status only.
    pub text: Option<String>,
}

pub async fn health_marker(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<HealthMarker>,
) -> ApiResult<Json<serde_json::Value>> {
    let site = site_for(&state, &actor, &domain, SiteAction::Settings).await?;
    let target = format!("site:{}", site.domain);
    act(&state, &actor, "site-health-marker", &target, req.text.as_deref().unwrap_or(""), async {
        state.actions().set_health_marker(&site, req.text.as_deref()).await?;
        Ok::<_, ApiError>(Json(serde_json::json!({ "domain": site.domain, "health_marker": req.text })))
    })
    .await
}

pub async fn cron(State(state): State<AppState>, actor: Actor, ApiPath(domain): ApiPath<String>) -> ApiResult<Queued> {
    let site = site_for(&state, &actor, &domain, SiteAction::Verify).await?;
    let target = format!("site:{}", site.domain);
    act(&state, &actor, "site-cron", &target, "", async {
        state.actions().enqueue(TaskKind::SiteCron, site.id.0, serde_json::json!({}), &actor.created_by()).await
    })
    .await
    .map(Queued)
}

/// Copies `from`'s database and/or files into this site, after a backup of this site.
pub async fn sync(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<SyncRequest>,
) -> ApiResult<Queued> {
    let target_site = site_for(&state, &actor, &domain, SiteAction::Restore).await?;
    let target = format!("site:{}", target_site.domain);
    act(&state, &actor, "site-sync", &target, &format!("from {}", req.from), async {
        let source = site_for(&state, &actor, &req.from, SiteAction::View).await.map_err(|e| match e {
            ApiError::NotFound { .. } => ApiError::invalid("from", format!("site {:?} not found", req.from)),
            other => other,
        })?;
        let args = state.actions().sync_args(&source, &target_site, &req).await?;
        Ok::<_, ApiError>(
            state.actions().enqueue(TaskKind::SiteSync, target_site.id.0, args, &actor.created_by()).await?,
        )
    })
    .await
    .map(Queued)
}

/// Sets the site's HTTPS mode, then gets its certificate (ACME as configured, or self-signed).
pub async fn https(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<HttpsChange>,
) -> ApiResult<Queued> {
    let (by, st) = (actor.created_by(), state.clone());
    settings_change(&state, &actor, &domain, "site-https", &req.mode.clone(), |site| async move {
        st.actions().set_https(&site, &req, st.settings.acme.as_ref(), false, &by).await
    })
    .await
}

/// A new certificate now: ACME, self-signed, or an uploaded one (PEM in the body).
pub async fn cert(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(domain): ApiPath<String>,
    ApiJson(req): ApiJson<CertChange>,
) -> ApiResult<Json<serde_json::Value>> {
    let site = site_for(&state, &actor, &domain, SiteAction::Settings).await?;
    let target = format!("site:{}", site.domain);
    let detail = if req.cert_pem.is_some() {
        "upload"
    } else if req.self_signed {
        "self-signed"
    } else {
        "acme"
    };
    act(&state, &actor, "site-cert", &target, detail, async {
        let acme = state.settings.acme.as_ref();
        let (outcome, left_out) =
            state.actions().new_certificate(&site, &req, acme, false, &actor.created_by()).await?;
        let super::Queued(task) = super::queued(outcome)?;
        Ok::<_, ApiError>(Json(serde_json::json!({ "task": task, "not_covered": left_out })))
    })
    .await
}
