//! Who is asking: passwords (argon2id), browser sessions (a random id in an HttpOnly cookie, stored
//! hashed, with an expiry), API tokens (`Authorization: Bearer`, stored hashed, scoped, revocable), login
//! rate limiting, and the [`Actor`] extractor with the permission checks every route makes.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use fjord_core::*;
use fjord_store::Store;
use fjord_store::{AuditEntry, TokenScope};
use rand::RngCore as _;
use sha2::Digest as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "fjord_session";
/// The header a browser script sends its CSRF token in (API calls made with a session cookie).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Prefix of API tokens, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "fjt_";

/// `n` random bytes, base64url without padding.
pub fn random_secret(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The hash a session id or token is stored under. SHA-256 suffices: these are 256-bit random values,
/// not passwords, so there is nothing to brute-force.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- passwords ----------------------------------------------------------------------------------------

pub use fjord_actions::accounts::{check_password, verify_password};

/// An argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> ApiResult<String> {
    Ok(fjord_actions::accounts::hash_password(password)?)
}

/// A new random password for a first admin (printed once).
pub fn generate_password() -> String {
    random_secret(18)
}

// ---- login rate limiting ------------------------------------------------------------------------------

/// Login limits, counted apart per client address and per account, in the state database (so
/// restarting `fjord serve` does not reset them and every `fjord serve` on one database shares them):
///
/// - an address with `per_addr` failed logins within `window` (whatever the names) is refused (429)
///   until the oldest leaves the window;
/// - once an account has `per_account` failures within `window`, from any address, an address that
///   failed for it must wait 2^n seconds (n: the account's failures, at most `max_delay`) after its
///   own last failure before trying that account again.
///
/// Nothing locks an account for everyone: an address that has not failed for the account is not made
/// to wait, so an attacker cannot keep the admin (or anyone) out, while the attacker's own guesses for
/// the account slow down the more there are, wherever they come from.
#[derive(Debug)]
pub struct LoginLimiter {
    per_account: u32,
    per_addr: u32,
    window: Duration,
    max_delay: Duration,
}

/// A login attempt let through: counted as a failure until [`LoginLimiter::succeeded`].
#[derive(Debug)]
pub struct LoginAttempt {
    id: i64,
    account: String,
    addr: String,
}

impl LoginLimiter {
    pub fn new(per_account: u32, per_addr: u32, window: Duration, max_delay: Duration) -> LoginLimiter {
        LoginLimiter { per_account, per_addr, window, max_delay }
    }

    fn keys(addr: Option<IpAddr>, name: &str) -> (String, String) {
        // Names are whatever was typed: bounded, so a row stays small.
        let name: String = name.to_lowercase().chars().take(64).collect();
        (name, addr.map(|a| a.to_string()).unwrap_or_default())
    }

    fn window_ms(&self) -> i64 {
        self.window.as_millis() as i64
    }

    /// How long an account's failures make an address that failed for it wait: none below
    /// `per_account`, then 2^n seconds, at most `max_delay`.
    pub fn delay(&self, account_failures: i64) -> Duration {
        if account_failures < i64::from(self.per_account) {
            return Duration::ZERO;
        }
        let secs = u32::try_from(account_failures).ok().and_then(|n| 1u64.checked_shl(n)).unwrap_or(u64::MAX);
        Duration::from_secs(secs).min(self.max_delay)
    }

    /// Milliseconds the attempt must wait, if any.
    fn wait(&self, f: &fjord_store::LoginFailures, now: i64) -> Option<i64> {
        if f.addr >= i64::from(self.per_addr) {
            return Some(f.addr_oldest.unwrap_or(now) + self.window_ms() - now);
        }
        let last = f.pair_newest?;
        let open = last + self.delay(f.account).as_millis() as i64;
        (open > now).then_some(open - now)
    }

    /// Lets an attempt through, or refuses it with the seconds to wait.
    pub async fn begin(&self, store: &Store, addr: Option<IpAddr>, name: &str) -> ApiResult<LoginAttempt> {
        let (account, addr) = Self::keys(addr, name);
        let now = fjord_store::now_millis();
        // Recorded first, so parallel guesses count each other.
        let id = store.begin_login_attempt(&account, &addr, now, now - self.window_ms()).await?;
        let failures = store.login_failures(&account, &addr, now - self.window_ms(), id).await?;
        if let Some(ms) = self.wait(&failures, now) {
            // Refused unchecked: not a failure.
            store.forget_login_attempt(id).await?;
            let secs = (ms.max(1) as u64).div_ceil(1000);
            return Err(ApiError::TooManyRequests { retry_after: secs });
        }
        Ok(LoginAttempt { id, account, addr })
    }

    /// The password was wrong: the attempt stays counted, and the wait before the next starts now.
    pub async fn failed(&self, store: &Store, attempt: LoginAttempt) -> ApiResult<()> {
        Ok(store.login_attempt_failed(attempt.id, fjord_store::now_millis()).await?)
    }

    /// The password was right: forgets this address's failures for the account (not other addresses').
    pub async fn succeeded(&self, store: &Store, attempt: LoginAttempt) -> ApiResult<()> {
        store.forget_login_attempt(attempt.id).await?;
        Ok(store.clear_login_failures(&attempt.account, &attempt.addr).await?)
    }
}

// ---- sessions -----------------------------------------------------------------------------------------

/// A session just opened: the `Set-Cookie` value to send, and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub set_cookie: HeaderValue,
    pub csrf: String,
    pub user: User,
}

/// The audit entry of a login attempt as `name` (whatever was typed).
pub fn login_audit(
    name: &str,
    remote: Option<IpAddr>,
    user: Option<UserId>,
    outcome: &str,
    detail: &str,
) -> AuditEntry {
    crate::audit::written();
    AuditEntry {
        id: 0,
        ts: 0,
        user_id: user,
        actor: format!("web:{}", name.chars().take(64).collect::<String>()),
        action: "login".into(),
        target: format!("user:{}", name.chars().take(64).collect::<String>()),
        detail: detail.into(),
        remote_addr: remote.map(|a| a.to_string()),
        outcome: outcome.into(),
    }
}

/// Checks a user name and password (rate limited, audited) and opens a session.
pub async fn login(state: &AppState, name: &str, password: &str, remote: Option<IpAddr>) -> ApiResult<NewSession> {
    crate::audit::written();
    let audit = |user: Option<UserId>, outcome: &str, detail: &str| login_audit(name, remote, user, outcome, detail);
    let attempt = match state.limiter.begin(&state.store, remote, name).await {
        Ok(a) => a,
        Err(e) => {
            state.store.audit(&audit(None, "limited", "too many failed logins")).await?;
            return Err(e);
        }
    };
    let found = match state.store.user_auth(name).await {
        Ok(u) => Some(u),
        Err(fjord_store::StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    // Verify against a fixed hash when the user does not exist, so timing does not tell names apart.
    let hash = found.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| dummy_hash().to_string());
    let password_ok = verify_password(&hash, password) && found.is_some();
    let Some(found) = found.filter(|_| password_ok) else {
        state.limiter.failed(&state.store, attempt).await?;
        state.store.audit(&audit(None, "denied", "wrong user name or password")).await?;
        return Err(ApiError::Unauthenticated("wrong user name or password".into()));
    };
    state.limiter.succeeded(&state.store, attempt).await?;
    let id = random_secret(32);
    let csrf = random_secret(32);
    let expires = fjord_store::now_millis() + state.settings.session_ttl.as_millis() as i64;
    let addr = remote.map(|a| a.to_string());
    state.store.create_session(&secret_hash(&id), found.user.id, &csrf, addr.as_deref(), expires).await?;
    state.store.audit(&audit(Some(found.user.id), "ok", "session opened")).await?;
    Ok(NewSession { set_cookie: session_cookie(state, &id, state.settings.session_ttl), csrf, user: found.user })
}

/// An argon2id hash of a random string nobody knows, made once.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_secret(24)).unwrap_or_default())
}

/// The `Set-Cookie` value for a session id (an empty id and zero age clears it).
pub fn session_cookie(state: &AppState, id: &str, max_age: Duration) -> HeaderValue {
    let secure = if state.settings.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .expect("cookie characters are base64url")
}

/// Ends the actor's session (if they came with one) and returns the `Set-Cookie` that clears it.
pub async fn logout(state: &AppState, actor: &Actor) -> ApiResult<HeaderValue> {
    if let AuthVia::Session { id_hash, .. } = &actor.via {
        state.store.delete_session(id_hash).await?;
        actor.audit(state, "logout", &format!("user:{}", actor.user.name), "", "ok").await;
    }
    Ok(session_cookie(state, "", Duration::ZERO))
}

// ---- API tokens ---------------------------------------------------------------------------------------

/// Creates a token for `user`; the returned secret is shown once and stored only as its hash.
pub async fn create_token(
    state: &AppState,
    user: UserId,
    name: &str,
    scope: TokenScope,
) -> ApiResult<(fjord_store::ApiToken, String)> {
    if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "a token name is one line of 1 to 100 bytes"));
    }
    let secret = format!("{TOKEN_PREFIX}{}", random_secret(32));
    let token = state.store.create_token(user, name, &secret_hash(&secret), scope).await?;
    Ok((token, secret))
}

// ---- the actor ----------------------------------------------------------------------------------------

/// How the actor proved who they are.
#[derive(Debug, Clone)]
pub enum AuthVia {
    /// A browser session; state-changing requests must carry its CSRF token.
    Session { id_hash: String, csrf: String },
    /// An API token with its scope.
    Token { id: i64, scope: TokenScope },
}

/// What a user may do to a site. A client user may only view, back up, restore, get a login link,
/// enable, disable and clone (within quota) the sites of their clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteAction {
    View,
    Backup,
    Restore,
    LoginLink,
    Enable,
    Disable,
    Clone,
    Verify,
    Delete,
    Migrate,
    Aliases,
    Settings,
}

impl SiteAction {
    fn allowed_to_clients(self) -> bool {
        matches!(
            self,
            SiteAction::View
                | SiteAction::Backup
                | SiteAction::Restore
                | SiteAction::LoginLink
                | SiteAction::Enable
                | SiteAction::Disable
                | SiteAction::Clone
        )
    }
}

/// The authenticated user of a request: extract it in any handler (`actor: Actor`) and the request is
/// refused with 401 when nobody is logged in. Permission checks are methods on it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: User,
    /// The clients a client user belongs to (empty for the other roles).
    pub clients: Vec<ClientId>,
    pub via: AuthVia,
    pub remote: Option<IpAddr>,
}

impl Actor {
    pub fn role(&self) -> Role {
        self.user.role
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// Admins and platform managers: platforms, all sites, migrations.
    pub fn is_manager(&self) -> bool {
        matches!(self.user.role, Role::Admin | Role::PlatformManager)
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an admin may do this".into()))
        }
    }

    pub fn require_manager(&self) -> ApiResult<()> {
        if self.is_manager() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an admin or platform manager may do this".into()))
        }
    }

    /// The clients whose sites this actor is limited to; `None` means every site.
    pub fn only_clients(&self) -> Option<Vec<ClientId>> {
        (!self.is_manager()).then(|| self.clients.clone())
    }

    pub fn can_view_site(&self, site: &Site) -> bool {
        self.is_manager() || site.client_id.is_some_and(|c| self.clients.contains(&c))
    }

    pub fn can_site(&self, site: &Site, action: SiteAction) -> bool {
        self.can_view_site(site) && (self.is_manager() || action.allowed_to_clients())
    }

    /// Refuses a site the actor may not act on: as "not found" when they may not even see it (a client
    /// learns nothing about other clients' sites), as forbidden otherwise.
    pub fn require_site(&self, site: &Site, action: SiteAction) -> ApiResult<()> {
        if !self.can_view_site(site) {
            return Err(ApiError::not_found("site", &site.domain));
        }
        if !self.can_site(site, action) {
            return Err(ApiError::Forbidden(format!("your role may not {action:?} sites").to_lowercase()));
        }
        Ok(())
    }

    /// Refuses a client user's choice of platform for a site being built (a clone, a deleted site
    /// restored): where sites run is for admins and platform managers to say.
    pub fn require_platform_choice(&self, platform: Option<&str>) -> ApiResult<()> {
        if platform.is_some() && !self.is_manager() {
            return Err(ApiError::Forbidden("only an admin or platform manager may choose the platform".into()));
        }
        Ok(())
    }

    /// Whether a client user belongs to `client`.
    pub fn in_client(&self, client: ClientId) -> bool {
        self.is_manager() || self.clients.contains(&client)
    }

    /// The name recorded as a task's creator: `web:NAME` for a browser, `api:NAME` for a token.
    pub fn created_by(&self) -> String {
        match self.via {
            AuthVia::Session { .. } => format!("web:{}", self.user.name),
            AuthVia::Token { .. } => format!("api:{}", self.user.name),
        }
    }

    /// The session's CSRF token (None when authenticated by an API token, which needs none).
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            AuthVia::Session { csrf, .. } => Some(csrf),
            AuthVia::Token { .. } => None,
        }
    }

    /// Writes an audit record; a failure to write it is logged, never hidden from the operator.
    pub async fn audit(&self, state: &AppState, action: &str, target: &str, detail: &str, outcome: &str) {
        let entry = AuditEntry {
            id: 0,
            ts: 0,
            user_id: Some(self.user.id),
            actor: self.created_by(),
            action: action.into(),
            target: target.into(),
            detail: detail.into(),
            remote_addr: self.remote.map(|a| a.to_string()),
            outcome: outcome.into(),
        };
        crate::audit::written();
        if let Err(e) = state.store.audit(&entry).await {
            tracing::error!(error = %e, action, target, "could not write the audit log");
        }
    }
}

/// A cookie the request carries, by name.
pub(crate) fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    })
}

/// Who is asking, worked out once per request by [`client_address`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// Middleware: the client's address is the TCP peer's, or, when the peer is one of
/// [`WebSettings::trusted_proxies`](crate::WebSettings), the rightmost `X-Forwarded-For` address that is
/// not a trusted proxy (the header is anyone's to write, so it counts only from a proxy we trust).
pub async fn client_address(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let addr = peer.map(|peer| {
        let forwarded = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        fjord_core::proxies::client_address(peer, forwarded, &state.settings.trusted_proxies)
    });
    req.extensions_mut().insert(ClientAddr(addr));
    next.run(req).await
}

/// The client's address (see [`client_address`]; the TCP peer if that middleware did not run).
pub fn remote_addr(parts: &Parts) -> Option<IpAddr> {
    client_addr_in(&parts.extensions)
}

/// [`remote_addr`] from a request's extensions.
pub fn client_addr_in(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    match extensions.get::<ClientAddr>() {
        Some(c) => c.0,
        None => extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn authenticate(parts: &Parts, state: &AppState) -> ApiResult<Option<Actor>> {
    let remote = remote_addr(parts);
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let (user_id, via) = if let Some(secret) = bearer {
        let Some(token) = state.store.token_by_hash(&secret_hash(secret)).await? else {
            return Err(ApiError::Unauthenticated("unknown or revoked API token".into()));
        };
        (token.user_id, AuthVia::Token { id: token.id, scope: token.scope })
    } else if let Some(id) = cookie_value(&parts.headers, SESSION_COOKIE).filter(|v| !v.is_empty()) {
        let id_hash = secret_hash(id);
        let Some(session) = state.store.session(&id_hash).await? else {
            return Ok(None);
        };
        (session.user_id, AuthVia::Session { id_hash, csrf: session.csrf })
    } else {
        return Ok(None);
    };
    let user = match state.store.user(user_id).await {
        Ok(u) => u,
        Err(fjord_store::StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let clients = if user.role == Role::Client { state.store.user_clients(user.id).await? } else { vec![] };
    Ok(Some(Actor { user, clients, via, remote }))
}

/// Checks what does not depend on the handler: a read-only token may only read, and an API request
/// that changes something with a session cookie must carry the session's CSRF token in a header (forms
/// of the UI carry it in a field instead, checked by [`crate::csrf::CsrfForm`]).
fn check_request(parts: &Parts, actor: &Actor) -> ApiResult<()> {
    if is_safe(&parts.method) {
        return Ok(());
    }
    match &actor.via {
        AuthVia::Token { scope: TokenScope::Read, .. } => {
            Err(ApiError::Forbidden("this API token is read-only (scope read)".into()))
        }
        AuthVia::Token { .. } => Ok(()),
        AuthVia::Session { csrf, .. } => {
            if !parts.uri.path().starts_with("/api/") {
                return Ok(());
            }
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if same_secret(sent, csrf) {
                Ok(())
            } else {
                Err(ApiError::Forbidden(format!("missing or wrong CSRF token (send it in the {CSRF_HEADER} header)")))
            }
        }
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Actor> {
        if let Some(actor) = parts.extensions.get::<Actor>() {
            return Ok(actor.clone());
        }
        let Some(actor) = authenticate(parts, state).await? else {
            return Err(ApiError::Unauthenticated("log in or send an API token".into()));
        };
        crate::audit::identified(&actor);
        check_request(parts, &actor)?;
        parts.extensions.insert(actor.clone());
        Ok(actor)
    }
}

/// The actor if someone is logged in, for pages that also serve anonymous visitors (a login page, or
/// a redirect to it).
#[derive(Debug, Clone)]
pub struct MaybeActor(pub Option<Actor>);

impl FromRequestParts<AppState> for MaybeActor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<MaybeActor> {
        match Actor::from_request_parts(parts, state).await {
            Ok(a) => Ok(MaybeActor(Some(a))),
            Err(ApiError::Unauthenticated(_)) => Ok(MaybeActor(None)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "wrong horse battery"));
        assert!(hash_password("short").is_err());
        assert!(!verify_password(dummy_hash(), ""));
    }

    async fn scratch_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fjord_store::testing::sqlite_in(dir.path()).await.expect("store");
        (dir, store)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    /// The seconds a refused attempt is told to wait, or `None` if it is let through (and then fails).
    async fn fail(l: &LoginLimiter, store: &Store, addr: Option<IpAddr>, name: &str) -> Option<u64> {
        match l.begin(store, addr, name).await {
            Ok(a) => {
                l.failed(store, a).await.expect("counted");
                None
            }
            Err(ApiError::TooManyRequests { retry_after }) => Some(retry_after),
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn an_attackers_address_is_limited_but_the_accounts_it_tried_are_not() {
        let (_dir, store) = scratch_store().await;
        let l = LoginLimiter::new(5, 20, Duration::from_secs(60), Duration::from_secs(300));
        let (attacker, other) = (ip("203.0.113.66"), ip("198.51.100.7"));
        // Many wrong passwords for the admin: slowed down after five, for this address.
        for _ in 0..5 {
            assert_eq!(fail(&l, &store, attacker, "admin").await, None);
        }
        assert_eq!(fail(&l, &store, attacker, "Admin").await, Some(32));
        // Many names: the address is refused once it has 20 failures, whatever the name.
        for n in 0..15 {
            assert_eq!(fail(&l, &store, attacker, &format!("user{n}")).await, None);
        }
        assert!(fail(&l, &store, attacker, "someone-new").await.is_some_and(|s| s > 50));
        // Another address logs in as the admin, and as one of the names tried.
        let a = l.begin(&store, other, "admin").await.expect("the admin is not locked out");
        l.succeeded(&store, a).await.expect("cleared");
        let a = l.begin(&store, other, "user3").await.expect("a user is not locked out");
        l.succeeded(&store, a).await.expect("cleared");
        // The admin logging in does not reset the attacker's slow-down, nor does a restart (a new
        // limiter on the same database; one that allows the address more failures, to see the account's).
        let restarted = LoginLimiter::new(5, 1000, Duration::from_secs(60), Duration::from_secs(300));
        assert!(fail(&restarted, &store, attacker, "admin").await.is_some_and(|s| (25..=32).contains(&s)));
        // One's own failures are forgotten by one's own success.
        let l = LoginLimiter::new(2, 20, Duration::from_secs(60), Duration::from_secs(300));
        let me = ip("192.0.2.1");
        assert_eq!(fail(&l, &store, me, "carol").await, None);
        let a = l.begin(&store, me, "carol").await.expect("one failure is allowed");
        l.succeeded(&store, a).await.expect("cleared");
        assert_eq!(fail(&l, &store, me, "carol").await, None);
        assert_eq!(fail(&l, &store, me, "carol").await, None);
        assert_eq!(fail(&l, &store, me, "carol").await, Some(4));
    }

    #[tokio::test]
    async fn an_accounts_slow_down_grows_and_is_capped() {
        let l = LoginLimiter::new(3, 100, Duration::from_secs(3600), Duration::from_secs(20));
        let delays: Vec<u64> = (0..7).map(|n| l.delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 8, 16, 20, 20]);
        assert_eq!(l.delay(i64::MAX), Duration::from_secs(20));
        // Through the database: each failure (from wherever) doubles the wait of an address that
        // failed, counted from its own last failure.
        let (_dir, store) = scratch_store().await;
        let l = LoginLimiter::new(1, 100, Duration::from_secs(3600), Duration::from_secs(100));
        let a = ip("203.0.113.1");
        assert_eq!(fail(&l, &store, a, "alice").await, None);
        let mut waits = vec![fail(&l, &store, a, "alice").await];
        for other in ["203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5", "203.0.113.6"] {
            assert_eq!(fail(&l, &store, ip(other), "alice").await, None, "first try from {other}");
            waits.push(fail(&l, &store, a, "alice").await);
        }
        assert_eq!(waits, [Some(2), Some(4), Some(8), Some(16), Some(32), Some(64)]);
        assert_eq!(fail(&l, &store, ip("203.0.113.2"), "alice").await, Some(64));
        assert_eq!(fail(&l, &store, ip("203.0.113.7"), "alice").await, None);
        assert_eq!(fail(&l, &store, a, "alice").await, Some(100), "capped");
        // Failures older than the window do not count.
        let short = LoginLimiter::new(1, 100, Duration::from_millis(50), Duration::from_secs(100));
        assert_eq!(fail(&short, &store, a, "bob").await, None);
        assert!(fail(&short, &store, a, "bob").await.is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(fail(&short, &store, a, "bob").await, None);
    }

    #[tokio::test]
    async fn guesses_sent_in_parallel_count_each_other() {
        let (_dir, store) = scratch_store().await;
        let l = LoginLimiter::new(100, 3, Duration::from_secs(60), Duration::from_secs(300));
        let names: Vec<String> = (0..12).map(|n| format!("user{n}")).collect();
        let tries = names.iter().map(|n| fail(&l, &store, ip("203.0.113.9"), n));
        let through = futures::future::join_all(tries).await.iter().filter(|r| r.is_none()).count();
        assert!((1..=3).contains(&through), "{through} let through");
    }

    #[test]
    fn secrets_compare_and_hash() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert_eq!(secret_hash("x").len(), 64);
    }
}
