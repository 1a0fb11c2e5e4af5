//! Every mutating request is in the audit log with its outcome, refused or not. Handlers write the
//! precise entry (`Actor::audit`, through `api::act`); this middleware writes one for any mutating
//! request that ended without one — refused before the handler's audited part (no credentials, a
//! permission check, a malformed body) or a handler that forgot — named by method and path, with the
//! outcome its status says.

use crate::{Actor, AppState};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use fjord_core::UserId;
use fjord_store::AuditEntry;
use std::cell::RefCell;

#[derive(Default)]
struct Pending {
    written: bool,
    actor: Option<(UserId, String)>,
}

tokio::task_local! {
    // The request being served: handlers run in the task of the middleware that wraps them.
    static REQUEST: RefCell<Pending>;
}

/// An audit entry was written for the request being served.
pub(crate) fn written() {
    let _ = REQUEST.try_with(|p| p.borrow_mut().written = true);
}

/// The request being served comes from `actor`.
pub(crate) fn identified(actor: &Actor) {
    let _ = REQUEST.try_with(|p| p.borrow_mut().actor = Some((actor.user.id, actor.created_by())));
}

/// The audit log's outcome word for a response status.
pub fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "ok",
        401 | 403 | 404 => "denied",
        400 | 413 | 415 | 422 => "invalid",
        409 => "refused",
        429 => "limited",
        _ => "failed",
    }
}

/// The middleware (see the module's comment).
pub async fn every_change(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let action = format!("{} {}", req.method(), req.uri().path());
    let remote = crate::auth::client_addr_in(req.extensions()).map(|a| a.to_string());
    let pending = RefCell::new(Pending::default());
    let (resp, pending) = REQUEST
        .scope(pending, async move {
            let resp = next.run(req).await;
            (resp, REQUEST.with(|p| std::mem::take(&mut *p.borrow_mut())))
        })
        .await;
    if pending.written {
        return resp;
    }
    let (user_id, actor) = match pending.actor {
        Some((id, name)) => (Some(id), name),
        None => (None, "anonymous".to_string()),
    };
    let entry = AuditEntry {
        id: 0,
        ts: 0,
        user_id,
        actor,
        target: action.split_once(' ').map(|(_, p)| p.to_string()).unwrap_or_default(),
        action,
        detail: format!("HTTP {}", resp.status().as_u16()),
        remote_addr: remote,
        outcome: outcome_of(resp.status()).into(),
    };
    if let Err(e) = state.store.audit(&entry).await {
        tracing::error!(error = %e, action = entry.action, "could not write the audit log");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_handlers_outcome_words() {
        assert_eq!(outcome_of(StatusCode::SEE_OTHER), "ok");
        assert_eq!(outcome_of(StatusCode::FORBIDDEN), "denied");
        assert_eq!(outcome_of(StatusCode::UNPROCESSABLE_ENTITY), "invalid");
        assert_eq!(outcome_of(StatusCode::CONFLICT), "refused");
        assert_eq!(outcome_of(StatusCode::INTERNAL_SERVER_ERROR), "failed");
    }
}
