//! HTTPS for sites: where a site's certificate comes from, what the state database knows of the
//! installed one, and the pure decisions on it (is a renewal due; how long to wait after a failure).

use crate::model::Millis;
use crate::string_enum;
use serde::{Deserialize, Serialize};

string_enum!(
    /// Where a site's certificate comes from.
    CertSource { Acme = "acme", SelfSigned = "self-signed", Uploaded = "uploaded" }
);

// The enum comes from `string_enum!`, which cannot mark a variant `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for CertSource {
    fn default() -> CertSource {
        CertSource::Acme
    }
}

/// A site's HTTPS settings beside its mode, and what is known of its installed certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SiteTls {
    /// Send `Strict-Transport-Security` on HTTPS answers.
    #[serde(default)]
    pub hsts: bool,
    #[serde(default)]
    pub source: CertSource,
    /// The names the installed certificate covers; empty when none is installed.
    #[serde(default)]
    pub names: Vec<String>,
    /// Aliases left out of the installed certificate because their validation failed.
    #[serde(default)]
    pub failed: Vec<String>,
    #[serde(default)]
    pub not_after: Option<Millis>,
    #[serde(default)]
    pub issued_at: Option<Millis>,
    /// The last failure to obtain a certificate, until one is installed.
    #[serde(default)]
    pub error: Option<String>,
    /// Failures in a row; reset when a certificate is installed.
    #[serde(default)]
    pub failures: i64,
    /// No automatic attempt before this time (back-off after failures).
    #[serde(default)]
    pub retry_at: Option<Millis>,
}

impl SiteTls {
    /// A certificate is installed (the vhost serves HTTPS).
    pub fn installed(&self) -> bool {
        !self.names.is_empty()
    }
}

/// Whether the daemon should ask for a new ACME certificate now: none is installed yet or the one
/// installed expires within `renew_before`, and no back-off is running.
pub fn renewal_due(tls: &SiteTls, now: Millis, renew_before: Millis) -> bool {
    if tls.source != CertSource::Acme || tls.retry_at.is_some_and(|t| t > now) {
        return false;
    }
    match tls.not_after {
        Some(end) if tls.installed() => end - renew_before <= now,
        // Never obtained: only retried after a failure (the first attempt is the user's task).
        _ => tls.failures > 0,
    }
}

/// How long to wait after the `failures`-th failure in a row: `base`, doubling each time, at most a day.
pub fn retry_delay(failures: i64, base: Millis) -> Millis {
    let doublings = failures.clamp(1, 20) - 1;
    base.saturating_mul(1 << doublings).min(86_400_000).max(base.min(86_400_000))
}

/// Arguments of a `site-cert` task: how to get the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum CertRequest {
    /// Order one from an ACME server (RFC 8555) with HTTP-01 challenges.
    Acme {
        /// The directory URL.
        directory: String,
        /// A PEM root to trust for the directory's own HTTPS (private ACME servers); `None`: the
        /// system's roots.
        #[serde(default)]
        ca_file: Option<String>,
        #[serde(default)]
        contact: Option<String>,
        /// An alias whose validation fails is left out instead of failing the certificate.
        #[serde(default = "yes")]
        drop_failing_aliases: bool,
        /// Revoke the certificate being replaced once the new one is in place.
        #[serde(default)]
        revoke_old: bool,
    },
    /// Make a self-signed one (internal domains).
    SelfSigned {
        #[serde(default = "default_days")]
        days: u32,
    },
    /// Install one the user uploaded; its key is the secret `key_secret`.
    Uploaded { cert_pem: String, key_secret: String },
}

fn yes() -> bool {
    true
}

fn default_days() -> u32 {
    365
}

impl CertRequest {
    pub fn source(&self) -> CertSource {
        match self {
            CertRequest::Acme { .. } => CertSource::Acme,
            CertRequest::SelfSigned { .. } => CertSource::SelfSigned,
            CertRequest::Uploaded { .. } => CertSource::Uploaded,
        }
    }
}

/// What a certificate step leaves beside the certificate (`cert.json`), read back when its task ends.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CertMeta {
    pub source: CertSource,
    pub names: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
    pub not_after: Millis,
    pub issued_at: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;

    #[test]
    fn renewal_window_and_backoff() {
        let mut t = SiteTls { names: vec!["a.example".into()], not_after: Some(100 * DAY), ..Default::default() };
        assert!(!renewal_due(&t, 60 * DAY, 30 * DAY));
        assert!(renewal_due(&t, 70 * DAY, 30 * DAY));
        t.retry_at = Some(71 * DAY);
        assert!(!renewal_due(&t, 70 * DAY, 30 * DAY));
        t.source = CertSource::SelfSigned;
        t.retry_at = None;
        assert!(!renewal_due(&t, 99 * DAY, 30 * DAY), "self-signed certificates are not renewed by ACME");
        let never = SiteTls::default();
        assert!(!renewal_due(&never, 0, 30 * DAY));
        assert!(renewal_due(&SiteTls { failures: 1, ..Default::default() }, 0, 30 * DAY));
    }

    #[test]
    fn backoff_doubles_up_to_a_day() {
        assert_eq!(retry_delay(1, 1000), 1000);
        assert_eq!(retry_delay(3, 1000), 4000);
        assert_eq!(retry_delay(40, 3_600_000), DAY);
    }
}
