//! The actions layer's own error: what a caller must know to answer a refused change. The web crate
//! maps it to HTTP statuses and problem documents, the CLI to messages and exit codes.

use fjord_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Bad input: which field (if one), and why.
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    /// The request is valid but the state refuses it now (a planner's refusal, a busy site, a name
    /// taken meanwhile).
    #[error("{0}")]
    Conflict(String),
    /// Something failed that the caller cannot fix by changing the request.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ActionResult<T> = Result<T, ActionError>;

impl ActionError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ActionError {
        ActionError::Invalid { field: Some(field.into()), message: message.into() }
    }

    pub fn not_found(what: &'static str, name: impl ToString) -> ActionError {
        ActionError::NotFound { what, name: name.to_string() }
    }

    /// An error of host work (fjord-exec) while answering a request.
    pub fn internal(e: impl std::fmt::Display) -> ActionError {
        ActionError::Internal(format!("{e:#}"))
    }

    /// The field the error is about, if one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ActionError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(v) => ActionError::from(v),
            StoreError::NotFound { what, name } => ActionError::NotFound { what, name },
            StoreError::Conflict(m) => ActionError::Conflict(m),
            other => {
                tracing::error!(error = %other, "state database error");
                ActionError::Internal(other.to_string())
            }
        }
    }
}

impl From<fjord_core::ValidationError> for ActionError {
    fn from(v: fjord_core::ValidationError) -> Self {
        ActionError::Invalid { field: Some(v.field.replace(' ', "_")), message: v.to_string() }
    }
}

impl From<fjord_plan::PlanError> for ActionError {
    fn from(e: fjord_plan::PlanError) -> Self {
        match e {
            fjord_plan::PlanError::Refused(m) => ActionError::Conflict(m),
            other => ActionError::Invalid { field: None, message: other.to_string() },
        }
    }
}
