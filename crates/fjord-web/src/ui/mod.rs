//! The server-rendered web UI. Owned by the UI work (branch `web-ui`); the backend only mounts it.

use crate::AppState;
use axum::Router;

/// The UI's routes, merged into the app's router beside `/api/...`.
pub fn router() -> Router<AppState> {
    Router::new()
}
