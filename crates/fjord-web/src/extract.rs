//! Request extractors whose rejections are problem documents: [`ApiJson`] (size-limited, unknown fields
//! rejected by the types' `deny_unknown_fields`), [`ApiQuery`] and [`ApiPath`].

use crate::error::{serde_field, ApiError};
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON request body.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

fn json_problem(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge { limit: crate::BODY_LIMIT };
    }
    let message = match &r {
        JsonRejection::JsonDataError(e) => {
            // The inner serde message names the field; axum's outer text only says "failed to deserialize".
            std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_else(|| e.body_text())
        }
        other => other.body_text(),
    };
    ApiError::BadRequest { field: serde_field(&message), message }
}

/// Query-string parameters.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let message = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.body_text());
                Err(ApiError::BadRequest { field: serde_field(&message), message })
            }
            Err(other) => Err(ApiError::BadRequest { field: None, message: other.body_text() }),
        }
    }
}

/// Parameters of the route's path (`/api/tasks/{id}`): one that does not parse (`/api/tasks/xyz`) is a
/// 400 problem naming the parameter, not axum's plain-text answer.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                // The parameters by name, in order: a single value's or a tuple's error has no key.
                let names: Vec<String> = axum::extract::RawPathParams::from_request_parts(parts, state)
                    .await
                    .map(|p| p.iter().map(|(k, _)| k.to_string()).collect())
                    .unwrap_or_default();
                Err(path_problem(e.into_kind(), &names))
            }
            Err(other) => Err(ApiError::Internal(other.body_text())),
        }
    }
}

fn path_problem(kind: ErrorKind, names: &[String]) -> ApiError {
    let bad = |key: Option<String>, value: &str, expected: &str| {
        let what =
            if expected.starts_with(['i', 'u']) { "a whole number".to_string() } else { format!("a valid {expected}") };
        let message = match &key {
            Some(k) => format!("path parameter {k}: {value:?} is not {what}"),
            None => format!("path parameter {value:?} is not {what}"),
        };
        ApiError::BadRequest { field: key, message }
    };
    match kind {
        ErrorKind::ParseError { value, expected_type } => {
            let key = (names.len() == 1).then(|| names[0].clone());
            bad(key, &value, expected_type)
        }
        ErrorKind::ParseErrorAtIndex { index, value, expected_type } => {
            bad(names.get(index).cloned(), &value, expected_type)
        }
        ErrorKind::ParseErrorAtKey { key, value, expected_type } => bad(Some(key), &value, expected_type),
        ErrorKind::DeserializeError { key, value, message } => {
            ApiError::BadRequest { message: format!("path parameter {key}: {value:?}: {message}"), field: Some(key) }
        }
        ErrorKind::InvalidUtf8InPathParam { key } => {
            ApiError::BadRequest { message: format!("path parameter {key} is not valid UTF-8"), field: Some(key) }
        }
        // The route and its handler disagree: a bug, not the request's fault.
        other => ApiError::Internal(other.to_string()),
    }
}

/// A JSON body that may be left out entirely (an empty body is `T::default()`).
#[derive(Debug, Clone)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = req.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v == "0")
            || (req.headers().get(axum::http::header::CONTENT_TYPE).is_none()
                && req.headers().get(axum::http::header::TRANSFER_ENCODING).is_none()
                && req.headers().get(axum::http::header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        ApiJson::<T>::from_request(req, state).await.map(|ApiJson(v)| OptionalJson(v))
    }
}
