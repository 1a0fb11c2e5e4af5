//! The server-rendered web UI: HTML pages from minijinja templates embedded in the binary
//! ([`render`]), a little hand-written CSS, and one small script for the live task log. Every page
//! works without JavaScript: forms post and redirect (POST-redirect-GET), carry the session's CSRF
//! token, and show their errors next to the fields.
//!
//! The UI is a thin layer over the API's handlers: a page loads what it shows through the store's
//! list queries, restricted by the [`Actor`] exactly as the API restricts them, and an action calls
//! the API handler that does it (same permission checks, same actions layer, same audit record), then
//! redirects to the task it queued. So a client user sees only their clients' sites, by any route.

mod accounts;
mod objects;
pub mod render;
mod servers;
mod site_settings;
mod sites;
mod tasks;

use crate::error::ApiError;
use crate::{Actor, AppState};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Value;
use serde::Deserialize;

/// The UI's routes, merged into the app's router beside `/api/...`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(objects::dashboard))
        .route("/login", get(accounts::login_form).post(accounts::login))
        .route("/logout", post(accounts::logout))
        .route("/account", get(accounts::account))
        .route("/account/password", post(accounts::change_password))
        .route("/account/tokens", post(accounts::create_token))
        .route("/account/tokens/{id}/revoke", post(accounts::revoke_token))
        .route("/users", get(accounts::users).post(accounts::add_user))
        .route("/users/{name}/delete", post(accounts::delete_user))
        .route("/clients", get(objects::clients).post(objects::add_client))
        .route("/servers", get(servers::servers).post(servers::add_server))
        .route("/servers/{name}", get(servers::server))
        .route("/servers/{name}/{action}", post(servers::server_action))
        .route("/servers/{name}/php/{runtime}/remove", post(servers::remove_runtime))
        .route("/platforms", get(objects::platforms).post(objects::add_platform))
        .route("/platforms/{name}", get(objects::platform))
        .route("/platforms/{name}/migrate", post(objects::migrate_platform))
        .route("/platforms/{name}/{action}", post(objects::platform_action))
        .route("/sites", get(sites::list).post(sites::create))
        .route("/sites/new", get(sites::new_form))
        .route("/sites/{domain}", get(sites::show))
        .route("/sites/{domain}/settings", get(site_settings::show))
        .route("/sites/{domain}/settings/{form}", post(site_settings::post))
        .route("/sites/{domain}/clone", post(sites::clone))
        .route("/sites/{domain}/migrate", post(sites::migrate))
        .route("/sites/{domain}/delete", post(sites::delete))
        .route("/sites/{domain}/{action}", post(sites::action))
        .route("/sites/{domain}/backups/{id}/{action}", post(sites::backup_action))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/{action}", post(tasks::action))
        .route("/ui/assets/{file}", get(asset))
}

/// What a UI handler returns: a page, a redirect, or an error page.
pub type UiResult<T = Response> = Result<T, UiError>;

/// An error shown as a page: a visitor who is not logged in is sent to the login page, anything else
/// gets a page with the status and the message (the API's wording).
#[derive(Debug)]
pub enum UiError {
    /// Not logged in: log in, then come back to `next`.
    Login {
        next: String,
    },
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Api(e)
    }
}

impl From<fjord_store::StoreError> for UiError {
    fn from(e: fjord_store::StoreError) -> Self {
        UiError::Api(e.into())
    }
}

impl From<minijinja::Error> for UiError {
    fn from(e: minijinja::Error) -> Self {
        UiError::Api(ApiError::Internal(format!("rendering a page: {e:#}")))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login { next } => see_other(&format!("/login?next={}", query_escape(&next))),
            UiError::Api(ApiError::Unauthenticated(_)) => see_other("/login"),
            UiError::Api(e) => {
                let status = e.status();
                let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
                    tracing::error!(error = %e, "page failed");
                    "Something went wrong on the server; the details are in its log.".to_string()
                } else {
                    e.to_string()
                };
                let title = match &e {
                    ApiError::NotFound { .. } => "Not found".to_string(),
                    _ => status.canonical_reason().unwrap_or("Error").to_string(),
                };
                let ctx = minijinja::context! { title, message, asset_version => render::asset_version() };
                match render::env().get_template("error.html").and_then(|t| t.render(ctx)) {
                    Ok(html) => with_page_headers((status, axum::response::Html(html)).into_response()),
                    Err(_) => (status, message).into_response(),
                }
            }
        }
    }
}

/// The logged-in user of a page. Unlike [`Actor`], a visitor who is not logged in is redirected to the
/// login page (and back here after it) instead of getting a 401.
pub struct Viewer(pub Actor);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> UiResult<Viewer> {
        match Actor::from_request_parts(parts, state).await {
            Ok(actor) => Ok(Viewer(actor)),
            Err(ApiError::Unauthenticated(_)) => {
                let next = if parts.method == axum::http::Method::GET {
                    parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into())
                } else {
                    "/".into()
                };
                Err(UiError::Login { next })
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Viewer {
    /// The current user as the templates see them.
    fn me(&self) -> Value {
        let u = &self.0.user;
        minijinja::context! {
            name => u.name.as_str(),
            role => u.role.as_str(),
            email => u.email,
            admin => self.0.is_admin(),
            manager => self.0.is_manager(),
        }
    }

    /// Renders `template` with what every page needs (the user, the CSRF token for its forms, the
    /// current section `nav`) and `ctx`.
    pub fn page(&self, template: &str, nav: &str, ctx: Value) -> UiResult {
        self.page_with_status(StatusCode::OK, template, nav, ctx)
    }

    pub fn page_with_status(&self, status: StatusCode, template: &str, nav: &str, ctx: Value) -> UiResult {
        let common = minijinja::context! {
            me => self.me(),
            csrf => crate::csrf::token_for(&self.0),
            nav,
            asset_version => render::asset_version(),
        };
        let html = render::env().get_template(template)?.render(minijinja::context! { ..ctx, ..common })?;
        Ok(with_page_headers((status, axum::response::Html(html)).into_response()))
    }
}

/// Headers on every page: no caching of pages with private data, a strict content security policy
/// (only our own CSS and script; no inline script, no framing), no MIME sniffing.
fn with_page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    resp
}

/// `303 See Other` to `to`: the answer to every successful form post.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Percent-encodes a query parameter value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form post that carries nothing but its CSRF token (a button).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// Errors of a form, by field name, for the templates (`errors.domain`).
#[derive(Debug, Default)]
pub struct FormErrors {
    pub fields: std::collections::BTreeMap<String, String>,
    /// An error about the whole form (e.g. the planner refused it).
    pub general: Option<String>,
}

impl FormErrors {
    /// Puts an action's error next to its field when the field is one of `known` (mapped from the
    /// API's field names through `rename`), else above the form.
    pub fn from_error(e: &ApiError, known: &[&str], rename: &[(&str, &str)]) -> FormErrors {
        let mut out = FormErrors::default();
        let field = e.field().map(|f| rename.iter().find(|(from, _)| *from == f).map(|(_, to)| *to).unwrap_or(f));
        match field {
            Some(f) if known.contains(&f) => {
                out.fields.insert(f.to_string(), e.to_string());
            }
            _ => out.general = Some(e.to_string()),
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }
}

/// The links of a paginated list.
#[derive(Debug, serde::Serialize)]
pub struct Pager {
    pub total: i64,
    /// 1-based numbers of the first and last rows shown.
    pub first: i64,
    pub last: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub pages: Vec<PageLink>,
}

#[derive(Debug, serde::Serialize)]
pub struct PageLink {
    pub n: i64,
    pub href: String,
    pub current: bool,
    pub gap: bool,
}

impl Pager {
    /// `base` is the list's path with its filters (`/sites?q=x&`), to which `page=N` is added.
    pub fn new(base: &str, total: i64, page: i64, per_page: i64, shown: usize) -> Pager {
        let pages = ((total + per_page - 1) / per_page).max(1);
        let href = |n: i64| format!("{base}page={n}");
        let mut links: Vec<PageLink> = Vec::new();
        for n in 1..=pages {
            // The first, the last, and two either side of the current page; gaps between.
            if n == 1 || n == pages || (n - page).abs() <= 2 {
                links.push(PageLink { n, href: href(n), current: n == page, gap: false });
            } else if links.last().is_some_and(|l| !l.gap) {
                links.push(PageLink { n, href: String::new(), current: false, gap: true });
            }
        }
        let first = if shown == 0 { 0 } else { (page - 1) * per_page + 1 };
        Pager {
            total,
            first,
            last: first + shown as i64 - i64::from(shown > 0),
            prev: (page > 1).then(|| href(page - 1)),
            next: (page < pages).then(|| href(page + 1)),
            pages: links,
        }
    }
}

/// The page number asked for in `?page=`, at least 1.
pub fn page_number(page: Option<&str>) -> i64 {
    page.and_then(|p| p.parse::<i64>().ok()).unwrap_or(1).clamp(1, 1_000_000)
}

/// A query-string value that is present and not blank (an "Any" option sends an empty value).
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A `next` target after login: only a path on this site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    match render::ASSETS.iter().find(|a| a.name == file) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                // Versioned URLs (`?v=`): a new binary's assets have new URLs.
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_windows_and_gaps() {
        let p = Pager::new("/sites?", 10_000, 1, 50, 50);
        assert_eq!((p.first, p.last, p.total), (1, 50, 10_000));
        let ns: Vec<String> = p.pages.iter().map(|l| if l.gap { "…".into() } else { l.n.to_string() }).collect();
        assert_eq!(ns, ["1", "2", "3", "…", "200"]);
        assert_eq!(p.prev, None);
        assert_eq!(p.next.as_deref(), Some("/sites?page=2"));
        let p = Pager::new("/sites?q=a&", 120, 3, 50, 20);
        assert_eq!((p.first, p.last), (101, 120));
        assert_eq!(p.next, None);
        assert_eq!(p.prev.as_deref(), Some("/sites?q=a&page=2"));
        let p = Pager::new("/sites?", 0, 1, 50, 0);
        assert_eq!((p.first, p.last, p.pages.len()), (0, 0, 1));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/sites?q=a")), "/sites?q=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("/sites?q=a b&x"), "/sites%3Fq%3Da%20b%26x");
    }
}
