//! Logging in and out, your account (password change), and the users page (admin).

use super::{given, safe_next, see_other, FormErrors, NoFields, UiError, UiResult, Viewer};
use crate::api::accounts as api;
use crate::auth::{self, MaybeActor};
use crate::csrf::{self, CsrfForm, LoginToken};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use fjord_core::Role;
use minijinja::context;
use serde::Deserialize;

/// The peer address (for login rate limiting and the audit log).
pub struct Remote(Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Remote, Self::Rejection> {
        Ok(Remote(auth::remote_addr(parts)))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(status: StatusCode, token: &LoginToken, name: &str, next: &str, error: Option<String>) -> UiResult {
    let csrf = &token.value;
    let ctx = context! { name, next, error, csrf, asset_version => super::render::asset_version() };
    let html = super::render::env().get_template("login.html")?.render(ctx)?;
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    if let Some(cookie) = &token.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie.clone());
    }
    Ok(resp)
}

pub async fn login_form(
    State(state): State<AppState>,
    MaybeActor(actor): MaybeActor,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> UiResult {
    let next = safe_next(q.next.as_deref());
    if actor.is_some() {
        return Ok(see_other(&next));
    }
    let token = csrf::login_token(state.settings.secure_cookies, &headers);
    login_page(StatusCode::OK, &token, "", &next, None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    /// The login form's own CSRF token (see [`csrf::LoginToken`]).
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

pub async fn login(
    State(state): State<AppState>,
    Remote(remote): Remote,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> UiResult {
    let next = safe_next(f.next.as_deref());
    let secure = state.settings.secure_cookies;
    let token = csrf::login_token(secure, &headers);
    // A post that did not come from our login form is refused before the password is looked at (and
    // counts as no failed attempt); the form comes back with a token that works (its cookie's, or a
    // new one), so someone whose browser lost the cookie logs in with the next try.
    if let Err(why) = csrf::check_login_token(secure, &headers, &f.csrf) {
        let entry = auth::login_audit(f.name.trim(), remote, None, "denied", why);
        state.store.audit(&entry).await.map_err(ApiError::from)?;
        let error = "The login form had expired or did not come from this site; please log in again.";
        return login_page(StatusCode::FORBIDDEN, &token, &f.name, &next, Some(error.into()));
    }
    match auth::login(&state, f.name.trim(), &f.password, remote).await {
        Ok(session) => {
            let mut resp = see_other(&next);
            resp.headers_mut().insert(header::SET_COOKIE, session.set_cookie);
            Ok(resp)
        }
        Err(ApiError::Unauthenticated(_)) => {
            login_page(StatusCode::UNAUTHORIZED, &token, &f.name, &next, Some("Wrong user name or password.".into()))
        }
        Err(ApiError::TooManyRequests { retry_after }) => login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &token,
            &f.name,
            &next,
            Some(match retry_after {
                0..=59 => format!("Too many failed logins; try again in {retry_after} seconds."),
                _ => format!("Too many failed logins; try again in {} minutes.", retry_after.div_ceil(60)),
            }),
        ),
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(State(state): State<AppState>, Viewer(actor): Viewer, _: CsrfForm<NoFields>) -> UiResult {
    let cookie = auth::logout(&state, &actor).await?;
    let mut resp = see_other("/login");
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// What the page after a successful form says happened (`?added=NAME`): names only, the sentences are
/// ours, so a crafted link cannot put words on the page.
#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    done: Option<String>,
    added: Option<String>,
    deleted: Option<String>,
}

/// What the account page shows beside the user: the forms' errors and values, a notice, and a new API
/// token's secret (shown once, on the answer to the form that created it, never in a URL).
#[derive(Debug, Default)]
struct AccountForms {
    password: FormErrors,
    token: FormErrors,
    token_form: TokenForm,
    new_token: Option<(String, String)>,
}

async fn account_page(
    state: &AppState,
    v: &Viewer,
    status: StatusCode,
    forms: AccountForms,
    notice: Option<&str>,
) -> UiResult {
    let mut clients = Vec::new();
    for c in &v.0.clients {
        clients.push(state.store.client(*c).await?.name.to_string());
    }
    let tokens: Vec<_> = state
        .store
        .tokens(Some(v.0.user.id))
        .await?
        .into_iter()
        .map(|t| {
            context! {
                id => t.id, name => t.name, scope => t.scope.as_str(), created_at => t.created_at,
                last_used_at => t.last_used_at, revoked_at => t.revoked_at,
            }
        })
        .collect();
    let scope_options: Vec<(String, String)> = vec![
        ("read".into(), "read: look, change nothing".into()),
        ("write".into(), "write: everything you may do".into()),
    ];
    let token_form = context! {
        name => forms.token_form.name,
        scope => if forms.token_form.scope.is_empty() { "read".to_string() } else { forms.token_form.scope },
    };
    let new_token = forms.new_token.map(|(name, secret)| context! { name, secret });
    v.page_with_status(
        status,
        "account.html",
        "account",
        context! {
            clients, errors => forms.password.fields, general => forms.password.general, notice,
            tokens, scope_options, token_form, token_errors => forms.token.fields,
            token_general => forms.token.general, new_token,
        },
    )
}

pub async fn account(State(state): State<AppState>, v: Viewer, Query(q): Query<NoticeQuery>) -> UiResult {
    let notice = match given(&q.done) {
        Some("password") => Some("Your password has been changed."),
        Some("revoked") => Some("The API token has been revoked."),
        _ => None,
    };
    account_page(&state, &v, StatusCode::OK, AccountForms::default(), notice).await
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    v: Viewer,
    CsrfForm(f): CsrfForm<PasswordForm>,
) -> UiResult {
    let req = api::PasswordChange { current: f.current, new: f.new };
    match api::change_password(State(state.clone()), v.0.clone(), ApiJson(req)).await {
        Ok(_) => Ok(see_other("/account?done=password")),
        Err(e @ ApiError::Invalid { .. }) => {
            let password = FormErrors::from_error(&e, &["current", "new"], &[("password", "new")]);
            let forms = AccountForms { password, ..Default::default() };
            account_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, forms, None).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    /// `token_name`: the page's password form has fields of its own.
    #[serde(default, rename = "token_name")]
    name: String,
    #[serde(default)]
    scope: String,
}

/// Creates an API token of your own. The answer is the account page itself with the secret on it
/// (not a redirect): the secret is shown this once and must not travel in a URL.
pub async fn create_token(State(state): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<TokenForm>) -> UiResult {
    let req = api::TokenCreate { name: f.name.trim().to_string(), scope: f.scope.clone() };
    match api::new_token(&state, &v.0, &req).await {
        Ok((_token, secret)) => {
            let forms = AccountForms { new_token: Some((f.name.trim().to_string(), secret)), ..Default::default() };
            account_page(&state, &v, StatusCode::OK, forms, None).await
        }
        Err(e @ ApiError::Invalid { .. }) => {
            let token = FormErrors::from_error(&e, &["token_name", "scope"], &[("name", "token_name")]);
            let forms = AccountForms { token, token_form: f, ..Default::default() };
            account_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, forms, None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Revokes one of your API tokens (the API's handler checks it is yours).
pub async fn revoke_token(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<i64>,
    _: CsrfForm<NoFields>,
) -> UiResult {
    let token = state.store.token(id).await.map_err(ApiError::from)?;
    // Only your own from this page, even for an admin: the page lists only yours.
    if token.user_id != v.0.user.id {
        return Err(ApiError::not_found("token", id).into());
    }
    let _revoked = api::revoke_token(State(state), v.0.clone(), ApiPath(id)).await?;
    Ok(see_other("/account?done=revoked"))
}

// ---- users (admin) ------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub struct UserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    password: String,
}

async fn users_page(
    state: &AppState,
    v: &Viewer,
    status: StatusCode,
    form: &UserForm,
    errors: FormErrors,
    notice: Option<String>,
) -> UiResult {
    v.0.require_admin()?;
    let clients = state.store.clients().await?;
    let mut users = Vec::new();
    for u in state.store.users().await? {
        let mut names = Vec::new();
        for c in state.store.user_clients(u.id).await? {
            if let Some(c) = clients.iter().find(|k| k.id == c) {
                names.push(c.name.to_string());
            }
        }
        users.push(context! {
            name => u.name.as_str(), role => u.role.as_str(), email => u.email, created_at => u.created_at, clients => names,
        });
    }
    let role_options: Vec<(String, String)> =
        Role::ALL.iter().map(|r| (r.as_str().into(), r.as_str().into())).collect();
    let mut client_options = vec![(String::new(), "—".to_string())];
    client_options.extend(clients.iter().map(|c| (c.name.to_string(), format!("{} ({})", c.title, c.name))));
    let form = context! {
        name => form.name, email => form.email, client => form.client,
        role => if form.role.is_empty() { "client".to_string() } else { form.role.clone() },
    };
    v.page_with_status(
        status,
        "users.html",
        "users",
        context! { users, role_options, client_options, form, errors => errors.fields, general => errors.general, notice },
    )
}

pub async fn users(State(state): State<AppState>, v: Viewer, Query(q): Query<NoticeQuery>) -> UiResult {
    let notice = match (given(&q.added), given(&q.deleted)) {
        (Some(n), _) => Some(format!("User {n} added.")),
        (_, Some(n)) => Some(format!("User {n} deleted.")),
        _ => None,
    };
    users_page(&state, &v, StatusCode::OK, &UserForm::default(), FormErrors::default(), notice).await
}

pub async fn add_user(State(state): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<UserForm>) -> UiResult {
    v.0.require_admin()?;
    let req = fjord_actions::UserCreate {
        name: f.name.trim().to_string(),
        email: Some(f.email.trim().to_string()).filter(|e| !e.is_empty()),
        role: f.role.clone(),
        password: f.password.clone(),
        clients: Some(f.client.trim().to_string()).filter(|c| !c.is_empty()).into_iter().collect(),
    };
    match api::add_user(State(state.clone()), v.0.clone(), ApiJson(req)).await {
        Ok(_) => Ok(see_other(&format!("/users?added={}", super::query_escape(f.name.trim())))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let errors = FormErrors::from_error(
                &e,
                &["name", "email", "role", "client", "password"],
                &[("user", "name"), ("user_name", "name"), ("clients", "client")],
            );
            users_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, &f, errors, None).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_user(
    State(state): State<AppState>,
    v: Viewer,
    Path(name): Path<String>,
    _: CsrfForm<NoFields>,
) -> UiResult<Response> {
    match api::delete_user(State(state), v.0.clone(), ApiPath(name.clone())).await {
        Ok(_) => Ok(see_other(&format!("/users?deleted={}", super::query_escape(&name)))),
        Err(e) => Err(UiError::Api(e)),
    }
}
