//! Validation of everything a user can type that ends up in a file name, a config file or a database
//! identifier. Validated values are newtypes, so code that holds a `Domain` knows it is safe to put into
//! a path or an nginx `server_name`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A rejected input: which field, and why, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, value: &str, reason: impl Into<String>) -> Self {
        // Keep the echoed value short and printable so an error message never carries junk.
        let mut shown: String = value.chars().filter(|c| !c.is_control()).take(80).collect();
        if value.chars().count() > 80 {
            shown.push('…');
        }
        ValidationError { field, value: shown, reason: reason.into() }
    }
}

/// A fully qualified host name in its ASCII (punycode) lowercase form, e.g. `www.example.org` or
/// `xn--bcher-kva.example`. Single-label names are allowed because test and intranet sites use them;
/// `localhost` itself is not a site's name (every machine answers to it, like an IP address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

/// Longest host name DNS allows in its textual form.
pub const MAX_DOMAIN_LEN: usize = 253;

impl Domain {
    pub fn parse(input: &str) -> Result<Domain, ValidationError> {
        Self::parse_field("domain", input)
    }

    /// Like [`Domain::parse`] but names the field in the error (e.g. "alias").
    pub fn parse_field(field: &'static str, input: &str) -> Result<Domain, ValidationError> {
        let domain = Self::parse_host(field, input)?;
        if domain.0 == "localhost" {
            return Err(ValidationError::new(field, input, "is this machine's own name; sites need a host name"));
        }
        Ok(domain)
    }

    /// Any host name, `localhost` included: a database server's host, and names read back from the
    /// state (recorded before `localhost` was refused as a site's name).
    pub fn parse_host(field: &'static str, input: &str) -> Result<Domain, ValidationError> {
        let err = |reason: &str| ValidationError::new(field, input, reason);
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(err("must not be empty"));
        }
        if trimmed.len() > 4 * MAX_DOMAIN_LEN {
            return Err(err("is far too long"));
        }
        if let Some(c) = trimmed.chars().find(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '/' | '\\' | ':' | '@' | '*' | '?' | '#' | '%' | '"' | '\'' | ';' | '$' | '{' | '}' | '~' | '`'
                )
        }) {
            return Err(err(&format!("must not contain {c:?}")));
        }
        let ascii = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii_strict(trimmed).map_err(|_| err("is not a valid internationalised domain name"))?
        };
        if ascii.len() > MAX_DOMAIN_LEN {
            return Err(err(&format!("is longer than {MAX_DOMAIN_LEN} characters")));
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err(err("has an empty label (two dots in a row, or a leading dot)"));
            }
            if label.len() > 63 {
                return Err(err("has a label longer than 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(err("may contain only letters, digits, hyphens and dots"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("has a label that starts or ends with a hyphen"));
            }
        }
        if ascii.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) && ascii.contains('.') {
            return Err(err("looks like an IP address; sites need a host name"));
        }
        Ok(Domain(ascii))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain with a leading `www.` added, unless it already has one.
    pub fn with_www(&self) -> Option<Domain> {
        if self.0.starts_with("www.") || !self.0.contains('.') {
            return None;
        }
        Domain::parse(&format!("www.{}", self.0)).ok()
    }
}

impl TryFrom<String> for Domain {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Domain::parse_host("domain", &value)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a server, platform, client or user: lowercase letters, digits, `-` and `_`, starting with
/// a letter or digit, at most 64 characters. Such names are used in paths and config file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 64;

    pub fn parse(field: &'static str, input: &str) -> Result<Name, ValidationError> {
        Self::parse_max(field, input, Self::MAX_LEN)
    }

    /// A client name doubles as a Unix group name, which is limited to 32 characters; we keep Aegir's
    /// stricter 16 so that derived names (`fjc-<client>`) still fit.
    pub fn parse_client(input: &str) -> Result<Name, ValidationError> {
        Self::parse_max("client", input, 16)
    }

    fn parse_max(field: &'static str, input: &str, max: usize) -> Result<Name, ValidationError> {
        let err = |reason: String| ValidationError::new(field, input, reason);
        if input.is_empty() {
            return Err(err("must not be empty".into()));
        }
        if input.len() > max {
            return Err(err(format!("is longer than {max} characters")));
        }
        let first = input.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(err("must start with a lowercase letter or a digit".into()));
        }
        if !input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err(err("may contain only lowercase letters, digits, '-' and '_'".into()));
        }
        Ok(Name(input.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Name::parse("name", &value)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a path a user gives for a platform root, a state dir and the like: absolute, printable, no
/// `..` or `.` components, no doubled slashes. Returns it without a trailing slash.
pub fn validate_abs_path(field: &'static str, input: &str) -> Result<String, ValidationError> {
    let err = |reason: &str| ValidationError::new(field, input, reason);
    if !input.starts_with('/') {
        return Err(err("must be an absolute path"));
    }
    if input.len() > 4096 {
        return Err(err("is longer than 4096 bytes"));
    }
    if input.chars().any(|c| c.is_control()) {
        return Err(err("must not contain control characters"));
    }
    let trimmed = input.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    for comp in trimmed.split('/').skip(1) {
        match comp {
            "" => return Err(err("must not contain empty components ('//')")),
            "." | ".." => return Err(err("must not contain '.' or '..' components")),
            _ => {}
        }
    }
    Ok(trimmed.to_string())
}

/// Checks a git ref or a composer package constraint: printable, no whitespace, and not starting with
/// `-` (so it can never be read as an option by the tool it is passed to).
pub fn validate_token(field: &'static str, input: &str, max: usize) -> Result<String, ValidationError> {
    let err = |reason: &str| ValidationError::new(field, input, reason);
    if input.is_empty() {
        return Err(err("must not be empty"));
    }
    if input.len() > max {
        return Err(err(&format!("is longer than {max} characters")));
    }
    if input.starts_with('-') {
        return Err(err("must not start with '-'"));
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("must not contain whitespace or control characters"));
    }
    Ok(input.to_string())
}

/// Derives a database (and database user) name from a domain the way Aegir does: letters and digits
/// only, at most `max` characters. Collisions are resolved by the store, which appends a number.
pub fn db_name_for(domain: &Domain, max: usize) -> String {
    let mut base: String = domain.as_str().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if base.is_empty() || base.as_bytes()[0].is_ascii_digit() {
        base.insert_str(0, "site");
    }
    base.truncate(max);
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_domain(input: &str, expect: Result<&str, &str>) {
        match (Domain::parse(input), expect) {
            (Ok(d), Ok(want)) => assert_eq!(d.as_str(), want, "input {input:?}"),
            (Err(e), Err(want)) => assert!(e.reason.contains(want), "input {input:?}: {e}"),
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn domains() {
        check_domain("Example.ORG", Ok("example.org"));
        check_domain("example.org.", Ok("example.org"));
        check_domain("localhost", Err("this machine's own name"));
        check_domain("LocalHost.", Err("this machine's own name"));
        check_domain("intranet", Ok("intranet"));
        check_domain("a.localhost", Ok("a.localhost"));
        assert_eq!(Domain::parse_host("host", "localhost").map(|d| d.to_string()), Ok("localhost".to_string()));
        check_domain("bücher.example", Ok("xn--bcher-kva.example"));
        check_domain("a-b.c-d.example", Ok("a-b.c-d.example"));
        check_domain("", Err("empty"));
        check_domain("../etc/passwd", Err("'/'"));
        check_domain("exa mple.org", Err("' '"));
        check_domain("a..b", Err("empty label"));
        check_domain(".a.b", Err("empty label"));
        check_domain("-a.b", Err("hyphen"));
        check_domain("a_b.org", Err("only letters"));
        check_domain(&format!("{}.org", "a".repeat(64)), Err("63"));
        check_domain(&format!("{}a", "a.".repeat(130)), Err("longer than 253"));
        check_domain("127.0.0.1", Err("IP address"));
        check_domain("example.org:80", Err("':'"));
    }

    #[test]
    fn names() {
        assert!(Name::parse("name", "d10-prod_2").is_ok());
        assert!(Name::parse("name", "D10").is_err());
        assert!(Name::parse("name", "-x").is_err());
        assert!(Name::parse("name", "a/b").is_err());
        assert!(Name::parse("name", "").is_err());
        assert!(Name::parse_client("abcdefghijklmnopq").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(validate_abs_path("path", "/var/www/").as_deref(), Ok("/var/www"));
        assert_eq!(validate_abs_path("path", "/").as_deref(), Ok("/"));
        assert!(validate_abs_path("path", "var/www").is_err());
        assert!(validate_abs_path("path", "/var/../etc").is_err());
        assert!(validate_abs_path("path", "/var//www").is_err());
        assert!(validate_abs_path("path", "/var/\nwww").is_err());
    }

    #[test]
    fn db_names() {
        let d = Domain::parse("www.my-site.example.org").expect("valid");
        assert_eq!(db_name_for(&d, 16), "wwwmysiteexample");
        let d = Domain::parse("1.example").expect("valid");
        assert_eq!(db_name_for(&d, 16), "site1example");
    }

    proptest! {
        // Whatever the input, parsing never panics, and what it accepts is safe in a path and in config.
        #[test]
        fn domain_parse_is_total_and_safe(s in "\\PC{0,300}") {
            if let Ok(d) = Domain::parse(&s) {
                prop_assert!(d.as_str().len() <= MAX_DOMAIN_LEN);
                prop_assert!(d.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
                prop_assert!(!d.as_str().contains(".."));
                // Parsing is idempotent.
                prop_assert_eq!(Domain::parse(d.as_str()).ok(), Some(d.clone()));
            }
        }

        #[test]
        fn name_parse_is_total_and_safe(s in "\\PC{0,100}") {
            if let Ok(n) = Name::parse("name", &s) {
                prop_assert!(!n.as_str().contains('/') && !n.as_str().starts_with('-'));
            }
        }

        #[test]
        fn path_parse_is_total(s in "\\PC{0,200}") {
            if let Ok(p) = validate_abs_path("path", &s) {
                prop_assert!(p.starts_with('/') && !p.contains("/../") && !p.contains("//"));
            }
        }
    }
}
