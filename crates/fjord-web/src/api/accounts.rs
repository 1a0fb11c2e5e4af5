//! Login, logout, the current user, passwords, API tokens, users and the audit log.

use super::{act, Paging};
use crate::auth::{self, remote_addr};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{Actor, AppState};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fjord_actions::UserCreate;
use fjord_core::*;
use fjord_store::TokenScope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSet {
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub name: String,
    /// `read` or `write`.
    pub scope: String,
}

/// The peer address, for handlers that run before anyone is authenticated.
pub struct Remote(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Remote, Self::Rejection> {
        Ok(Remote(remote_addr(parts)))
    }
}

#[derive(Debug, Serialize)]
struct Me {
    user: User,
    clients: Vec<Client>,
    /// Send this in the X-CSRF-Token header with state-changing requests made with the session cookie.
    csrf: Option<String>,
}

async fn me_of(state: &AppState, actor: &Actor) -> ApiResult<Me> {
    let mut clients = Vec::new();
    for c in &actor.clients {
        clients.push(state.store.client(*c).await?);
    }
    Ok(Me { user: actor.user.clone(), clients, csrf: actor.csrf().map(str::to_string) })
}

pub async fn login(
    State(state): State<AppState>,
    Remote(remote): Remote,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let s = auth::login(&state, &req.name, &req.password, remote).await?;
    let body = serde_json::json!({ "user": s.user, "csrf": s.csrf });
    Ok(([(header::SET_COOKIE, s.set_cookie)], Json(body)).into_response())
}

pub async fn logout(State(state): State<AppState>, actor: Actor) -> ApiResult<Response> {
    let cookie = auth::logout(&state, &actor).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

pub async fn me(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(serde_json::to_value(me_of(&state, &actor).await?).unwrap_or_default()))
}

pub async fn change_password(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let target = format!("user:{}", actor.user.name);
    act(&state, &actor, "password.change", &target, "", async {
        let current = state.store.user_auth(actor.user.name.as_str()).await?;
        if !current.password_hash.as_deref().is_some_and(|h| auth::verify_password(h, &req.current)) {
            return Err(ApiError::invalid("current", "the current password is wrong"));
        }
        let hash = auth::hash_password(&req.new).map_err(|_| {
            ApiError::invalid("new", "the new password must have 10 to 1024 bytes, at least 10 characters")
        })?;
        let keep = match &actor.via {
            auth::AuthVia::Session { id_hash, .. } => Some(id_hash.as_str()),
            auth::AuthVia::Token { .. } => None,
        };
        state.store.set_password_hash(actor.user.id, &hash, keep).await?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensQuery {
    #[serde(default)]
    all: bool,
}

pub async fn tokens(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<TokensQuery>,
) -> ApiResult<Json<Vec<fjord_store::ApiToken>>> {
    if q.all {
        actor.require_admin()?;
        return Ok(Json(state.store.tokens(None).await?));
    }
    Ok(Json(state.store.tokens(Some(actor.user.id)).await?))
}

pub async fn create_token(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<TokenCreate>,
) -> ApiResult<Response> {
    let (token, secret) = new_token(&state, &actor, &req).await?;
    let body = serde_json::json!({ "token": token, "secret": secret });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Creates a token of the actor's own (audited), and returns it with its secret, shown this once. Used
/// by the API's route and the account page.
pub async fn new_token(
    state: &AppState,
    actor: &Actor,
    req: &TokenCreate,
) -> ApiResult<(fjord_store::ApiToken, String)> {
    let scope: TokenScope = fjord_actions::parse_enum("scope", &req.scope)?;
    if let auth::AuthVia::Token { scope: TokenScope::Read, .. } = actor.via {
        return Err(ApiError::Forbidden("a read-only token cannot create tokens".into()));
    }
    let target = format!("user:{}", actor.user.name);
    act(state, actor, "token.create", &target, &req.name, async {
        auth::create_token(state, actor.user.id, &req.name, scope).await
    })
    .await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<fjord_store::ApiToken>> {
    let token = state.store.token(id).await?;
    if token.user_id != actor.user.id && !actor.is_admin() {
        return Err(ApiError::not_found("token", id));
    }
    let t = act(&state, &actor, "token.revoke", &format!("token:{id}"), &token.name, async {
        Ok::<_, ApiError>(state.store.revoke_token(id).await?)
    })
    .await?;
    Ok(Json(t))
}

pub async fn users(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<Vec<serde_json::Value>>> {
    actor.require_admin()?;
    let mut out = Vec::new();
    for u in state.store.users().await? {
        out.push(user_json(&state, u).await?);
    }
    Ok(Json(out))
}

async fn user_json(state: &AppState, u: User) -> ApiResult<serde_json::Value> {
    let mut clients = Vec::new();
    for c in state.store.user_clients(u.id).await? {
        clients.push(state.store.client(c).await?.name);
    }
    let mut v = serde_json::to_value(&u).unwrap_or_default();
    v["clients"] = serde_json::json!(clients);
    Ok(v)
}

async fn user_by_name(state: &AppState, name: &str) -> ApiResult<User> {
    Ok(state.store.user_auth(name).await?.user)
}

pub async fn user(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    if actor.user.name.as_str() != name {
        actor.require_admin()?;
    }
    let u = user_by_name(&state, &name).await?;
    Ok(Json(user_json(&state, u).await?))
}

pub async fn add_user(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<UserCreate>,
) -> ApiResult<Response> {
    actor.require_admin()?;
    let target = format!("user:{}", req.name);
    let u = act(&state, &actor, "user.add", &target, &req.role, state.actions().add_user(&req)).await?;
    Ok((StatusCode::CREATED, Json(user_json(&state, u).await?)).into_response())
}

pub async fn delete_user(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    actor.require_admin()?;
    let target = format!("user:{name}");
    act(&state, &actor, "user.delete", &target, "", async {
        let u = user_by_name(&state, &name).await?;
        if u.id == actor.user.id {
            return Err(ApiError::Conflict("you cannot delete yourself".into()));
        }
        if u.role == Role::Admin && state.store.user_count(Some(Role::Admin)).await? <= 1 {
            return Err(ApiError::Conflict("the last admin cannot be deleted".into()));
        }
        state.store.delete_user(u.id).await?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

pub async fn set_password(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<PasswordSet>,
) -> ApiResult<StatusCode> {
    actor.require_admin()?;
    let target = format!("user:{name}");
    act(&state, &actor, "password.set", &target, "", async {
        let u = user_by_name(&state, &name).await?;
        let hash = auth::hash_password(&req.password)?;
        state.store.set_password_hash(u.id, &hash, None).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT)
    })
    .await
}

pub async fn audit(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(p): ApiQuery<Paging>,
) -> ApiResult<Json<fjord_store::Page<fjord_store::AuditEntry>>> {
    actor.require_admin()?;
    let (offset, limit) = (p.offset.max(0), if p.limit <= 0 { 50 } else { p.limit.min(fjord_store::MAX_PAGE) });
    Ok(Json(state.store.audit_log(offset, limit).await?))
}
