//! Fjord's HTTP side, served by `fjord serve --listen ADDR` in the same process as the task daemon:
//! accounts and authentication, authorization, the JSON API under `/api/`, and the server-rendered UI.
//! It must not run processes or write host files (that is fjord-exec, reached only through the actions
//! layer and tasks), and holds no SQL (fjord-store).
//!
//! # For route authors (API and UI alike)
//!
//! **State.** Handlers get [`AppState`] (`State(state): State<AppState>`): the store, the host
//! [`Layout`], the [`WebSettings`].
//!
//! **Who is asking.** Take an [`Actor`] argument: the request is refused with 401 unless a session
//! cookie or an `Authorization: Bearer` API token identifies a user. [`auth::MaybeActor`] is the same
//! for pages anonymous visitors may see (the login page). A read-only token is refused on any
//! non-GET request before the handler runs.
//!
//! **May they?** Check on the server in every handler, before reading or changing anything:
//! `actor.require_admin()?`, `actor.require_manager()?` (admin or platform manager),
//! `actor.require_site(&site, SiteAction::Backup)?` (a site another client owns is reported as not
//! found), `actor.can_view_site(&site)` for showing buttons, and `actor.only_clients()` as the
//! `only_clients` of the store's list queries (`fjord_store::SiteQuery`, `TaskQuery`, `BackupQuery`),
//! so a client user's lists only ever hold their own sites.
//!
//! **Doing things.** Call the [`fjord_actions::Actions`] functions (`Actions::new(&state.store,
//! &state.layout)`): they validate, plan (a refusal is an error, nothing written), write the desired
//! state and queue the task, exactly as the CLI does. Record each change with `actor.audit(&state,
//! action, target, detail, outcome).await`; [`api::act`] shows the pattern.
//!
//! **Forms and CSRF.** Every form of the UI includes `<input type="hidden" name="_csrf"
//! value="{{ csrf }}">` with the token from [`csrf::token_for`]`(&actor)`; POST handlers take
//! [`csrf::CsrfForm<T>`] instead of `Form<T>`, which refuses a missing or wrong token (403). Log in
//! with [`auth::login`] (rate limited and audited; returns the `Set-Cookie` value), log out with
//! [`auth::logout`]. Errors are [`ApiError`]s: the UI may render them as pages.
//!
//! **Routes.** [`router`] merges the API routes (`api::router()`, all under `/api/`) with
//! `ui::router()` (everything else); both are `Router<AppState>` with full paths (no nesting).

pub mod api;
pub mod audit;
pub mod auth;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod ui;

pub use auth::{Actor, SiteAction};
pub use error::{ApiError, ApiResult};

use axum::Router;
use fjord_plan::Layout;
use fjord_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (JSON or form).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Mark the session cookie `Secure` (when Fjord is reached over HTTPS, e.g. behind a TLS proxy).
    pub secure_cookies: bool,
    /// How long a session lasts after login.
    pub session_ttl: Duration,
    pub body_limit: usize,
    /// Failed logins counted within `login_window`: an address with `login_per_addr` of them is refused
    /// until the oldest leaves the window; an account with `login_per_account` makes each address that
    /// failed for it wait 2^n seconds (n: the account's failures), at most `login_delay_max`, between
    /// tries (see [`auth::LoginLimiter`]).
    pub login_per_account: u32,
    pub login_per_addr: u32,
    pub login_window: Duration,
    pub login_delay_max: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (e.g. a TLS proxy on the same host); from any
    /// other peer the header is ignored.
    pub trusted_proxies: Vec<fjord_core::Cidr>,
    /// Where offsite copies live, to delete a backup's copy with the backup.
    pub offsite: Option<fjord_actions::OffsiteConfig>,
    /// The ACME account and directory certificates come from (`None`: only self-signed or uploaded).
    pub acme: Option<fjord_core::CertRequest>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            body_limit: BODY_LIMIT,
            login_per_account: 5,
            login_per_addr: 50,
            login_window: Duration::from_secs(15 * 60),
            login_delay_max: Duration::from_secs(5 * 60),
            trusted_proxies: Vec::new(),
            offsite: None,
            acme: None,
        }
    }
}

/// What every handler gets. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub layout: Arc<Layout>,
    pub settings: Arc<WebSettings>,
    pub limiter: Arc<auth::LoginLimiter>,
}

impl AppState {
    pub fn new(store: Store, layout: Layout, settings: WebSettings) -> AppState {
        let limiter = auth::LoginLimiter::new(
            settings.login_per_account,
            settings.login_per_addr,
            settings.login_window,
            settings.login_delay_max,
        );
        AppState { store, layout: Arc::new(layout), settings: Arc::new(settings), limiter: Arc::new(limiter) }
    }

    pub fn actions(&self) -> fjord_actions::Actions<'_> {
        fjord_actions::Actions::new(&self.store, &self.layout)
    }
}

/// The whole application: the API and the UI, with the body size limit and request tracing.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.body_limit;
    Router::new()
        .merge(api::router())
        .merge(ui::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::every_change))
        // Outside the audit, which records the client's address it works out.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::client_address))
        // Extractors enforce the limit, so an oversize body is refused with a problem document.
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the application on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
