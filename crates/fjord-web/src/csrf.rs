//! CSRF protection for the UI's forms. Each session has a random token (stored with it); a form
//! carries it in the hidden field [`FIELD`], and [`CsrfForm`] refuses a POST without the right one
//! before the handler runs. API calls made with a session cookie send it in the `X-CSRF-Token` header
//! instead (checked by the [`Actor`] extractor); calls with an API token need none.

use crate::auth::{same_secret, Actor};
use crate::error::{serde_field, ApiError};
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use serde::de::DeserializeOwned;

/// The name of the hidden form field holding the token.
pub const FIELD: &str = "_csrf";

/// The token to put in the forms of a page shown to `actor` (empty for token-authenticated requests,
/// which do not render forms).
pub fn token_for(actor: &Actor) -> &str {
    actor.csrf().unwrap_or("")
}

/// An `application/x-www-form-urlencoded` body of type `T`, accepted only with the session's CSRF
/// token in [`FIELD`] (which is removed before `T` is read, so `T` may deny unknown fields). Extracts
/// the [`Actor`] too (cached for the handler's own `Actor` argument), so an anonymous post gets 401.
#[derive(Debug, Clone)]
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let actor = Actor::from_request_parts(&mut parts, state).await?;
        let limit = state.settings.body_limit;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
        let mut pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| ApiError::BadRequest { field: None, message: format!("bad form data: {e}") })?;
        let sent = pairs.iter().find(|(k, _)| k == FIELD).map(|(_, v)| v.clone()).unwrap_or_default();
        let ok = match actor.csrf() {
            Some(expected) => same_secret(&sent, expected),
            // A bearer token is not sent by browsers on their own, so it cannot be forged cross-site.
            None => true,
        };
        if !ok {
            actor.audit(state, "csrf", parts.uri.path(), "form without a valid CSRF token", "denied").await;
            return Err(ApiError::Forbidden("the form has expired or did not come from this site; reload it".into()));
        }
        pairs.retain(|(k, _)| k != FIELD);
        let rest = serde_urlencoded::to_string(&pairs).map_err(|e| ApiError::Internal(e.to_string()))?;
        let value = serde_urlencoded::from_str(&rest).map_err(|e| {
            let message = e.to_string();
            ApiError::BadRequest { field: serde_field(&message), message }
        })?;
        Ok(CsrfForm(value))
    }
}
