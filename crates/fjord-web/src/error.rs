//! The one error type of the HTTP side, turned into an `application/problem+json` response (RFC 9457)
//! in a single `IntoResponse` impl. The actions layer's `ActionError` maps onto it one to one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fjord_store::StoreError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: which field (if one), and why.
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    /// A request body that is not the JSON or form we expect (syntax, unknown field, wrong type).
    #[error("{message}")]
    BadRequest { field: Option<String>, message: String },
    #[error("authentication required")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; try again in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("request body too large (at most {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid { field: Some(field.into()), message: message.into() }
    }

    pub fn not_found(what: &'static str, name: impl ToString) -> ApiError {
        ApiError::NotFound { what, name: name.to_string() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The field the error is about, if one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } | ApiError::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// A short word for the audit log's outcome column (the same word its status gives).
    pub fn outcome(&self) -> &'static str {
        crate::audit::outcome_of(self.status())
    }
}

// The state database's and validation's errors mean what they mean to the actions layer.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        fjord_actions::ActionError::from(e).into()
    }
}

impl From<fjord_actions::ActionError> for ApiError {
    fn from(e: fjord_actions::ActionError) -> Self {
        use fjord_actions::ActionError as A;
        match e {
            A::Invalid { field, message } => ApiError::Invalid { field, message },
            A::NotFound { what, name } => ApiError::NotFound { what, name },
            A::Conflict(m) => ApiError::Conflict(m),
            A::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<fjord_core::ValidationError> for ApiError {
    fn from(v: fjord_core::ValidationError) -> Self {
        fjord_actions::ActionError::from(v).into()
    }
}

/// The problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says the kind.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, in words a user can act on.
    pub detail: String,
    /// The request field at fault, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        }
        let problem = Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("error").into(),
            status: status.as_u16(),
            // Internal details stay in the server log.
            detail: if status == StatusCode::INTERNAL_SERVER_ERROR {
                "internal error".into()
            } else {
                self.to_string()
            },
            field: self.field().map(str::to_string),
        };
        let mut resp = (status, serde_json::to_string(&problem).unwrap_or_default()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let ApiError::TooManyRequests { retry_after } = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if let ApiError::Unauthenticated(_) = self {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The field serde complains about, from messages like "unknown field `foo`, expected …" or
/// "missing field `domain`".
pub fn serde_field(message: &str) -> Option<String> {
    // A path prefix ("cron_interval: invalid type …", "aliases[0]: …") names the field first.
    if let Some((path, _)) = message.split_once(": ") {
        if !path.is_empty() && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b)) {
            return Some(path.split(['.', '[']).next().unwrap_or(path).to_string());
        }
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(serde_field("unknown field `colour`, expected one of `domain`").as_deref(), Some("colour"));
        assert_eq!(serde_field("missing field `domain` at line 1").as_deref(), Some("domain"));
        assert_eq!(serde_field("expected value"), None);
        assert_eq!(serde_field("cron_interval: invalid type: string").as_deref(), Some("cron_interval"));
        assert_eq!(serde_field("aliases[0]: invalid type: integer").as_deref(), Some("aliases"));
    }
}
