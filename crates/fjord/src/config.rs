//! Configuration in two stages (after ripgrep): the raw TOML file, then resolved [`Settings`] with
//! environment variables and flags applied on top. Precedence: flags > `FJORD_*` env > file > defaults.

use crate::cli::Global;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/fjord";

/// `fjord.toml` as written by `fjord init`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// State database URL; default: SQLite file `fjord.db` in the state dir.
    pub database_url: Option<String>,
    /// Most tasks the daemon runs at once; default: the number of CPUs.
    pub workers: Option<usize>,
    /// Name of this daemon in task leases; default: the host name.
    pub node: Option<String>,
    /// Seconds a task lease lasts without a heartbeat.
    pub lease_seconds: Option<u64>,
    /// Offsite copies of backups in S3-compatible storage.
    pub offsite: Option<OffsiteFile>,
    /// Certificates from an ACME server (Let's Encrypt by default).
    pub acme: Option<AcmeFile>,
    /// Address `fjord serve` answers HTTP on (web UI and API), e.g. `127.0.0.1:8080`; none: no HTTP.
    pub listen: Option<String>,
    /// Mark session cookies Secure: set when users reach Fjord over HTTPS (a TLS proxy in front).
    pub secure_cookies: Option<bool>,
    /// The web panel and API: trusted proxies and login limits.
    pub web: Option<WebFile>,
}

/// The `[web]` table.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    /// Proxies (CIDR blocks) whose `X-Forwarded-For` names the client, e.g. `["127.0.0.1/32"]` for a
    /// TLS proxy on the same host; the header of any other peer is ignored. Default: none.
    pub trusted_proxies: Option<Vec<String>>,
    /// Failed logins from one address (any names) within the window before it is refused (default 50).
    pub login_failures_per_address: Option<u32>,
    /// Failed logins for one account before the addresses that failed for it must wait (default 5).
    pub login_failures_per_account: Option<u32>,
    /// Seconds failed logins are counted for (default 900).
    pub login_window_seconds: Option<u64>,
    /// Longest wait between tries for an account (default 300).
    pub login_delay_max_seconds: Option<u64>,
}

/// The `[acme]` table. Environment: `FJORD_ACME_DIRECTORY`, `FJORD_ACME_CA_FILE`,
/// `FJORD_ACME_CONTACT`, and for the daemon `FJORD_CERT_CHECK_SECONDS`, `FJORD_CERT_RENEW_DAYS`,
/// `FJORD_CERT_RETRY_SECONDS`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    /// `production` (Let's Encrypt, the default), `staging`, or a directory URL (private ACME servers).
    pub directory: Option<String>,
    /// A PEM root to trust for the directory's own HTTPS (private ACME servers).
    pub ca_file: Option<PathBuf>,
    /// The account's contact e-mail.
    pub contact: Option<String>,
    /// Leave out an alias whose validation fails instead of failing the certificate (default true).
    pub drop_failing_aliases: Option<bool>,
    /// Renew this many days before expiry (default 30).
    pub renew_days: Option<u64>,
    /// Hours between renewal checks (default 24).
    pub check_hours: Option<u64>,
    /// Minutes to wait after a failure, doubled after each one in a row up to a day (default 60).
    pub retry_minutes: Option<u64>,
}

/// The `[offsite]` table: where the daemon copies each backup. Credentials come from
/// `credentials_file` (0600, `access_key_id = …` and `secret_access_key = …` lines) or from
/// `FJORD_S3_ACCESS_KEY_ID` and `FJORD_S3_SECRET_ACCESS_KEY`; never from the command line.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteFile {
    /// S3 endpoint URL; default: AWS.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Default `us-east-1`.
    pub region: Option<String>,
    /// Key prefix in the bucket; default: none.
    pub prefix: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

/// Resolved settings every command works with.
#[derive(Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub database_url: String,
    pub file: ConfigFile,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may carry a password.
        f.debug_struct("Settings").field("state_dir", &self.state_dir).finish_non_exhaustive()
    }
}

pub fn resolve(global: &Global) -> Result<Settings> {
    let state_dir = global.state.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let state_str = state_dir.to_str().context("the state dir must be valid UTF-8")?;
    fjord_core::names::validate_abs_path("state dir", state_str)?;
    let config_path = global.config.clone().unwrap_or_else(|| state_dir.join("fjord.toml"));
    let file = match std::fs::read_to_string(&config_path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", config_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", config_path.display())),
    };
    let database_url = global
        .db
        .clone()
        .or_else(|| file.database_url.clone())
        .unwrap_or_else(|| format!("sqlite://{}", state_dir.join("fjord.db").display()));
    Ok(Settings { state_dir, config_path, database_url, file })
}

impl Settings {
    /// The offsite storage configuration, with its credentials, if `[offsite]` is set.
    pub fn offsite(&self) -> Result<Option<fjord_exec::offsite::OffsiteConfig>> {
        let Some(o) = &self.file.offsite else { return Ok(None) };
        if let Some(e) = &o.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                bail!("offsite.endpoint must be an http:// or https:// URL");
            }
        }
        if o.bucket.is_empty() || !o.bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
            bail!("offsite.bucket {:?} is not a bucket name", o.bucket);
        }
        let (access_key_id, secret_access_key) = match &o.credentials_file {
            Some(f) => fjord_exec::offsite::read_credentials(f)?,
            None => match (std::env::var("FJORD_S3_ACCESS_KEY_ID"), std::env::var("FJORD_S3_SECRET_ACCESS_KEY")) {
                (Ok(id), Ok(secret)) => (id, fjord_exec::Secret::new(secret)),
                _ => bail!(
                    "offsite storage needs credentials: offsite.credentials_file, or FJORD_S3_ACCESS_KEY_ID and \
                     FJORD_S3_SECRET_ACCESS_KEY"
                ),
            },
        };
        Ok(Some(fjord_exec::offsite::OffsiteConfig {
            endpoint: o.endpoint.clone(),
            bucket: o.bucket.clone(),
            region: o.region.clone().unwrap_or_else(|| "us-east-1".into()),
            prefix: o.prefix.clone().unwrap_or_default(),
            access_key_id,
            secret_access_key,
        }))
    }

    /// The ACME request certificates are ordered with, from `[acme]` and the environment.
    pub fn acme_request(&self, revoke_old: bool) -> Result<fjord_core::CertRequest> {
        let file = self.file.acme.clone().unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let directory = match env("FJORD_ACME_DIRECTORY").or(file.directory).as_deref() {
            None | Some("production") => fjord_exec::acme::LETSENCRYPT_PRODUCTION.to_string(),
            Some("staging") => fjord_exec::acme::LETSENCRYPT_STAGING.to_string(),
            Some(url) if url.starts_with("https://") => url.to_string(),
            Some(other) => bail!("acme.directory must be production, staging or an https:// URL (got {other:?})"),
        };
        let ca_file = match env("FJORD_ACME_CA_FILE").map(PathBuf::from).or(file.ca_file) {
            Some(p) => Some(p.to_str().context("acme.ca_file must be valid UTF-8")?.to_string()),
            None => None,
        };
        Ok(fjord_core::CertRequest::Acme {
            directory,
            ca_file,
            contact: env("FJORD_ACME_CONTACT").or(file.contact),
            drop_failing_aliases: file.drop_failing_aliases.unwrap_or(true),
            revoke_old,
        })
    }

    /// The web side's settings from `[web]` and the top-level `secure_cookies` (offsite and ACME are
    /// the caller's, as they need the environment).
    pub fn web_settings(&self) -> Result<fjord_web::WebSettings> {
        let web = self.file.web.clone().unwrap_or_default();
        let mut s =
            fjord_web::WebSettings { secure_cookies: self.file.secure_cookies.unwrap_or(false), ..Default::default() };
        for block in web.trusted_proxies.unwrap_or_default() {
            let cidr = block.parse().map_err(|e| anyhow::anyhow!("web.trusted_proxies: {e}"))?;
            s.trusted_proxies.push(cidr);
        }
        s.login_per_addr = web.login_failures_per_address.unwrap_or(s.login_per_addr);
        s.login_per_account = web.login_failures_per_account.unwrap_or(s.login_per_account);
        if let Some(secs) = web.login_window_seconds {
            s.login_window = std::time::Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = web.login_delay_max_seconds {
            s.login_delay_max = std::time::Duration::from_secs(secs);
        }
        Ok(s)
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.state_dir.join("secrets")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("log")
    }
    pub fn undo_dir(&self) -> PathBuf {
        self.state_dir.join("undo")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.state_dir.join("serve.lock")
    }
    pub fn state_str(&self) -> &str {
        self.state_dir.to_str().expect("checked in resolve")
    }
}

/// The commented config `fjord init` writes.
pub fn default_config_text(database_url: Option<&str>) -> String {
    let db = match database_url {
        Some(url) => format!("database_url = {}\n", toml::Value::String(url.into())),
        None => {
            "# database_url = \"postgres://fjord@db.example.org/fjord\"   # default: SQLite in the state dir\n".into()
        }
    };
    format!(
        "# Fjord configuration. Environment variables FJORD_DB, FJORD_WORKERS, FJORD_NODE and flags override it.\n\
         {db}\
         # workers = 2          # tasks run at once; default: number of CPUs\n\
         # node = \"web1\"        # this daemon's name in task leases; default: host name\n\
         # lease_seconds = 30   # a dead daemon's tasks are taken over after this\n\
         # listen = \"127.0.0.1:8080\"   # serve the web UI and HTTP API (fjord serve --listen)\n\
         # secure_cookies = true   # when users reach it over HTTPS (a TLS proxy in front)\n\
         \n\
         # The web panel and API.\n\
         # [web]\n\
         # trusted_proxies = [\"127.0.0.1/32\"]   # a TLS proxy on this host: its X-Forwarded-For names the client\n\
         # login_failures_per_address = 50   # within the window, then that address is refused\n\
         # login_failures_per_account = 5    # then an address that failed for it waits 2^n s between tries\n\
         # login_window_seconds = 900\n\
         # login_delay_max_seconds = 300\n\
         \n\
         # Offsite copies of every backup, in S3-compatible storage (retention applies there too).\n\
         # [offsite]\n\
         # endpoint = \"https://s3.example.org\"   # default: AWS\n\
         # bucket = \"fjord-backups\"\n\
         # region = \"us-east-1\"\n\
         # prefix = \"web1\"\n\
         # credentials_file = \"/var/lib/fjord/secrets/s3\"   # 0600: access_key_id = …, secret_access_key = …\n\
         \n\
         # Site certificates (fjord site https DOMAIN --mode on|required).\n\
         # [acme]\n\
         # directory = \"production\"   # Let's Encrypt; or \"staging\", or a private CA's directory URL\n\
         # ca_file = \"/etc/ssl/private-ca.pem\"   # root to trust for a private directory's HTTPS\n\
         # contact = \"hostmaster@example.org\"\n\
         # drop_failing_aliases = true   # an alias that fails validation is left out, not fatal\n\
         # renew_days = 30   # renew this long before expiry\n\
         # check_hours = 24\n\
         # retry_minutes = 60   # after a failure; doubled each time, at most a day\n\
"
    )
}

/// The SQLite state database (and its WAL and shared-memory files, which SQLite creates with the
/// database's mode) readable by root only: it holds every site's task logs, the panel's password hashes
/// and the audit log.
pub fn restrict_state_db(settings: &Settings) -> Result<()> {
    let Some(path) = settings.database_url.strip_prefix("sqlite://") else { return Ok(()) };
    let path = path.split('?').next().unwrap_or(path);
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{path}{suffix}"));
        if file.exists() {
            fjord_exec::fsops::set_mode(&file, 0o600)?;
        }
    }
    Ok(())
}

pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    Ok(fjord_exec::fsops::create_dirs(path, mode)?)
}

pub fn check_url(url: &str) -> Result<()> {
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "database URL must start with sqlite: or postgres:// (got {:?}…)",
            url.chars().take(12).collect::<String>()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Settings {
        Settings {
            state_dir: PathBuf::from("/var/lib/fjord"),
            config_path: PathBuf::from("/var/lib/fjord/fjord.toml"),
            database_url: "sqlite:///var/lib/fjord/fjord.db".into(),
            file: toml::from_str(toml_text).expect("valid TOML"),
        }
    }

    #[test]
    fn the_web_table_sets_trusted_proxies_and_login_limits() {
        let s = settings(
            "secure_cookies = true\n[web]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
             login_failures_per_account = 3\nlogin_delay_max_seconds = 60\n",
        )
        .web_settings()
        .expect("valid");
        let proxies: Vec<String> = s.trusted_proxies.iter().map(|c| c.to_string()).collect();
        assert_eq!(proxies, ["127.0.0.1/32", "10.0.0.0/8"]);
        assert!(s.secure_cookies);
        assert_eq!((s.login_per_account, s.login_per_addr), (3, 50));
        assert_eq!(s.login_delay_max, std::time::Duration::from_secs(60));
        let defaults = settings("").web_settings().expect("valid");
        assert!(defaults.trusted_proxies.is_empty() && defaults.login_per_account == 5);
        let bad = settings("[web]\ntrusted_proxies = [\"10.0.0.1/8\"]\n").web_settings().expect_err("host bits");
        assert!(bad.to_string().contains("web.trusted_proxies"), "{bad}");
        assert!(toml::from_str::<ConfigFile>("[web]\ntrusted_proxy = []\n").is_err(), "unknown keys are refused");
        // The commented defaults `fjord init` writes parse once uncommented.
        let web: String = default_config_text(None)
            .lines()
            .skip_while(|l| !l.starts_with("# [web]"))
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches("# ").split("   #").next().unwrap_or("")))
            .collect();
        settings(&web).web_settings().expect("the documented [web] keys");
    }
}
