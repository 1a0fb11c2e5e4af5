//! CSRF protection for the UI's forms. Each session has a random token (stored with it); a form
//! carries it in the hidden field [`FIELD`], and [`CsrfForm`] refuses a POST without the right one
//! before the handler runs. API calls made with a session cookie send it in the `X-CSRF-Token` header
//! instead (checked by the [`Actor`] extractor); calls with an API token need none.
//!
//! The login form comes before any session, so it has its own token ([`LoginToken`]): a double-submit
//! cookie. Serving the form sets a random value in an HttpOnly, `SameSite=Strict` cookie and puts the
//! same value in the form; a login is accepted only when both arrive and match. Another site can make
//! a browser post to `/login` but can neither read the cookie nor (with `SameSite=Strict`) have it sent
//! with its post. Over HTTPS the cookie is `__Host-` prefixed, so a sibling subdomain (a hosted site)
//! cannot plant one either; and a post the browser itself marks as coming from another site or
//! subdomain (`Sec-Fetch-Site`) is refused whatever it carries. Works without JavaScript.

use crate::auth::{cookie_value, random_secret, same_secret, Actor};
use crate::error::{serde_field, ApiError};
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue};
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

/// The login form's token and, when it is new, the `Set-Cookie` that gives it to the browser.
#[derive(Debug, Clone)]
pub struct LoginToken {
    pub value: String,
    pub set_cookie: Option<HeaderValue>,
}

/// Random bytes in a login token (base64url: 43 characters).
const LOGIN_TOKEN_BYTES: usize = 32;

/// The login cookie's name: `__Host-` cookies must be `Secure`, so only when the panel is reached over
/// HTTPS (`secure_cookies`).
fn login_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-fjord_login"
    } else {
        "fjord_login"
    }
}

/// The login token the browser sent in its cookie, if it has the shape of one.
fn sent_login_cookie(secure: bool, headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, login_cookie_name(secure))
        .filter(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// The token for a login form about to be served: the browser's own if it has one (so two open login
/// pages both work), else a new one with its cookie. `secure`: the settings' `secure_cookies`.
pub fn login_token(secure: bool, headers: &HeaderMap) -> LoginToken {
    if let Some(v) = sent_login_cookie(secure, headers) {
        return LoginToken { value: v.to_string(), set_cookie: None };
    }
    let value = random_secret(LOGIN_TOKEN_BYTES);
    let attrs = if secure { "; Secure" } else { "" };
    let cookie = format!("{}={value}; Path=/; HttpOnly; SameSite=Strict{attrs}", login_cookie_name(secure));
    LoginToken { value, set_cookie: HeaderValue::from_str(&cookie).ok() }
}

/// Whether a login post came from our own login form: the token `sent` in its [`FIELD`] matches its
/// cookie, and the browser does not say it was posted from another site. `Err` says why not.
pub fn check_login_token(secure: bool, headers: &HeaderMap, sent: &str) -> Result<(), &'static str> {
    // Sent by every current browser: `same-site` is a sibling subdomain (maybe a hosted site), `none`
    // a request the user made themselves.
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Err("login form posted from another site");
    }
    match sent_login_cookie(secure, headers) {
        Some(expected) if same_secret(sent, expected) => Ok(()),
        Some(_) => Err("login form with a wrong CSRF token"),
        None => Err("login form without its CSRF cookie"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::COOKIE;

    fn with_cookie(c: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(c).expect("ascii"));
        h
    }

    #[test]
    fn a_login_form_token_is_a_cookie_the_form_must_repeat() {
        for secure in [false, true] {
            let t = login_token(secure, &HeaderMap::new());
            let set = t.set_cookie.expect("a new cookie").to_str().expect("ascii").to_string();
            assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
            assert_eq!(set.starts_with("__Host-") && set.contains("; Secure") && set.contains("Path=/;"), secure);
            let cookie = with_cookie(set.split(';').next().expect("pair"));
            // The browser's own token is kept, not replaced.
            let again = login_token(secure, &cookie);
            assert_eq!((again.value.as_str(), again.set_cookie.is_none()), (t.value.as_str(), true));
            assert_eq!(check_login_token(secure, &cookie, &t.value), Ok(()));
            assert!(check_login_token(secure, &cookie, "").is_err());
            assert!(check_login_token(secure, &cookie, &random_secret(32)).is_err());
            assert!(check_login_token(secure, &HeaderMap::new(), &t.value).is_err(), "no cookie");
            // The browser says another site (or a sibling subdomain) posted it.
            for site in ["cross-site", "same-site"] {
                let mut h = cookie.clone();
                h.insert("sec-fetch-site", HeaderValue::from_static(site));
                assert!(check_login_token(secure, &h, &t.value).is_err(), "{site}");
            }
            let mut h = cookie.clone();
            h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
            assert_eq!(check_login_token(secure, &h, &t.value), Ok(()));
        }
        // A plain-HTTP cookie is not taken for the `__Host-` one, nor a malformed value for a token.
        let plain = login_token(false, &HeaderMap::new());
        let cookie = with_cookie(&format!("fjord_login={}", plain.value));
        assert!(check_login_token(true, &cookie, &plain.value).is_err());
        assert!(check_login_token(false, &with_cookie("fjord_login=short"), "short").is_err());
    }
}
