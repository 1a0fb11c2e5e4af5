//! The entities of the hosting model. These are the desired state: everything on disk (vhosts, settings
//! files, pools, grants) is derived from them by tasks.

use crate::names::{Domain, Name, ValidationError};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($($name:ident),*) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { write!(f, "{}", self.0) }
        }
    )*};
}
id_type!(ServerId, PlatformId, SiteId, ClientId, UserId, BackupId, TaskId);

/// Milliseconds since the Unix epoch. Stored as a plain integer so both SQLite and PostgreSQL agree.
pub type Millis = i64;

/// Declares a string-valued enum with `as_str`/`parse` used for both storage and the CLI.
#[macro_export]
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }
        // Serialized as the same text as storage and the CLI use.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $text),* } }
            pub fn parse(s: &str) -> Option<$name> { match s { $($text => Some($name::$variant),)* _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s).ok_or_else(|| format!(
                    "{s:?} is not one of: {}",
                    [$($text),*].join(", ")
                ))
            }
        }
    };
}

string_enum!(
    /// Life-cycle of servers and platforms.
    ObjectStatus { Queued = "queued", Enabled = "enabled", Locked = "locked", Failed = "failed", Deleted = "deleted" }
);

string_enum!(
    /// Life-cycle of a site. `Failed` marks a site whose install did not complete (nothing of it is on disk);
    /// it keeps its domain, by which it is shown, retried (its failed task) and deleted.
    SiteStatus { Queued = "queued", Enabled = "enabled", Disabled = "disabled", Failed = "failed", Deleted = "deleted" }
);

string_enum!(HttpKind { Nginx = "nginx", Apache = "apache" });
string_enum!(
    /// Whose Unix user a site's PHP runs as. `site`: its own user and group; `client`: one user and
    /// group shared by the sites of its client (each site still has its own pool and `open_basedir`);
    /// `shared`: the web server's user, no `open_basedir` — the unsafe layout isolation replaces, kept
    /// only so tests can prove they see a leak.
    Isolation { Site = "site", Client = "client", Shared = "shared" }
);

// `string_enum!` takes no attributes on variants, so `#[default]` cannot mark one.
#[allow(clippy::derivable_impls)]
impl Default for Isolation {
    fn default() -> Isolation {
        Isolation::Site
    }
}
string_enum!(DbEngine { Mariadb = "mariadb", Postgres = "postgres", Sqlite = "sqlite" });
string_enum!(HttpsMode { Off = "off", On = "on", Required = "required" });
string_enum!(Role { Admin = "admin", PlatformManager = "platform-manager", Client = "client" });
string_enum!(BackupKind { Manual = "manual", Scheduled = "scheduled", PreMigrate = "pre-migrate", PreRestore = "pre-restore", PreDelete = "pre-delete", PreSync = "pre-sync" });
string_enum!(
    /// The application a platform carries, detected by verify.
    AppKind { Drupal7 = "drupal7", Drupal = "drupal", Wordpress = "wordpress", Php = "php" }
);

string_enum!(
    /// Whether Fjord runs its own web-server master with a config it owns (`own`), or drops an include
    /// into the system's web server and reloads it (`system`).
    WebMode { Own = "own", System = "system" }
);

/// The web server of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpService {
    pub kind: HttpKind,
    #[serde(default = "default_web_mode")]
    pub mode: WebMode,
    #[serde(default)]
    pub version: Option<String>,
    /// The web server's binary (e.g. `/usr/sbin/nginx`).
    #[serde(default)]
    pub binary: Option<String>,
    /// Address sites listen on; `None` for all addresses.
    #[serde(default)]
    pub listen: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub https_port: Option<u16>,
    /// Trusted proxies whose header gives the visitor's address; `None`: no proxy is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_ip: Option<crate::RealIp>,
}

fn default_web_mode() -> WebMode {
    WebMode::Own
}

/// A database server Fjord can create databases and users on. The admin password, if any, is a secret
/// (`server-<name>-<engine>-admin`), never stored here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbService {
    pub engine: DbEngine,
    #[serde(default)]
    pub version: Option<String>,
    /// TCP host sites connect to (e.g. `127.0.0.1`).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// Unix socket (MariaDB) or socket directory (PostgreSQL), preferred for the admin connection.
    #[serde(default)]
    pub socket: Option<String>,
    /// Admin account Fjord uses (`root`, `postgres`).
    #[serde(default)]
    pub admin_user: Option<String>,
    /// Whether the admin account has a password in the secrets store.
    #[serde(default)]
    pub admin_password: bool,
}

impl DbService {
    /// SQLite: no server, no admin account (each site's database is a file in its own directory).
    pub fn sqlite() -> DbService {
        DbService {
            engine: DbEngine::Sqlite,
            version: None,
            host: None,
            port: None,
            socket: None,
            admin_user: None,
            admin_password: false,
        }
    }
}

/// A PHP-FPM runtime: one PHP-FPM master Fjord runs. Several may share a binary (and version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhpRuntime {
    /// What sites and the CLI call it (a validated name); `None`: its version (runtimes found by
    /// `server add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub version: String,
    /// The php-fpm binary, e.g. `/usr/sbin/php-fpm8.2`.
    pub binary: String,
    /// The matching CLI binary, e.g. `/usr/bin/php8.2`, used to run installers.
    #[serde(default)]
    pub cli: Option<String>,
    #[serde(default)]
    pub extensions: Vec<String>,
}

impl PhpRuntime {
    /// Its name, or its version when it has none: the key of its master's files and of its sites.
    pub fn key(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.version)
    }
}

/// One service a server offers. A server may have several PHP runtimes; the first is the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Service {
    Http(HttpService),
    Db(DbService),
    Php(PhpRuntime),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub id: ServerId,
    pub name: Name,
    /// Host name or address Fjord reaches the server at (`localhost` for the local machine).
    pub hostname: String,
    pub services: Vec<Service>,
    pub status: ObjectStatus,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Server {
    pub fn http(&self) -> Option<&HttpService> {
        self.services.iter().find_map(|s| match s {
            Service::Http(h) => Some(h),
            _ => None,
        })
    }
    pub fn db(&self, engine: DbEngine) -> Option<&DbService> {
        self.services.iter().find_map(|s| match s {
            Service::Db(d) if d.engine == engine => Some(d),
            _ => None,
        })
    }
    pub fn db_engines(&self) -> impl Iterator<Item = DbEngine> + '_ {
        self.services.iter().filter_map(|s| match s {
            Service::Db(d) => Some(d.engine),
            _ => None,
        })
    }
    pub fn php_runtimes(&self) -> impl Iterator<Item = &PhpRuntime> + '_ {
        self.services.iter().filter_map(|s| match s {
            Service::Php(p) => Some(p),
            _ => None,
        })
    }
    pub fn php_versions(&self) -> impl Iterator<Item = &str> + '_ {
        self.php_runtimes().map(|p| p.version.as_str())
    }
    /// The runtime a site asks for (by name, or by version), or the server's default (the first).
    pub fn php_runtime(&self, wanted: Option<&str>) -> Option<&PhpRuntime> {
        match wanted {
            Some(v) => {
                self.php_runtimes().find(|p| p.key() == v).or_else(|| self.php_runtimes().find(|p| p.version == v))
            }
            None => self.php_runtimes().next(),
        }
    }
}

/// Where a platform's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PlatformSource {
    /// An existing directory, managed by someone else.
    Path,
    Git {
        url: String,
        #[serde(rename = "ref")]
        git_ref: String,
    },
    Composer {
        package: String,
    },
    Archive {
        file: String,
    },
}

impl PlatformSource {
    pub fn describe(&self) -> String {
        match self {
            PlatformSource::Path => "existing directory".into(),
            PlatformSource::Git { url, git_ref } => format!("git {url} @ {git_ref}"),
            PlatformSource::Composer { package } => format!("composer {package}"),
            PlatformSource::Archive { file } => format!("archive {file}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub id: PlatformId,
    pub name: Name,
    pub server_id: ServerId,
    /// Absolute path of the codebase.
    pub root: String,
    /// Directory served as the web root, relative to `root` ("" for the root itself). Detected by verify.
    pub docroot: Option<String>,
    pub source: PlatformSource,
    pub app: Option<AppKind>,
    pub app_version: Option<String>,
    pub locked: bool,
    pub status: ObjectStatus,
    pub verified_at: Option<Millis>,
    /// What the last verify found in the codebase.
    #[serde(default)]
    pub details: PlatformDetails,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The limits of a site's PHP-FPM pool, written into its pool by every verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhpLimits {
    /// `pm.max_children`: at most this many requests of the site run at once.
    pub max_children: u32,
    /// `memory_limit`, e.g. `256M`.
    pub memory_limit: String,
    /// `upload_max_filesize` and `post_max_size`, e.g. `64M`.
    pub upload_max: String,
    /// `max_execution_time`, seconds.
    pub max_execution_time: u32,
}

impl Default for PhpLimits {
    fn default() -> PhpLimits {
        PhpLimits { max_children: 5, memory_limit: "256M".into(), upload_max: "64M".into(), max_execution_time: 120 }
    }
}

impl PhpLimits {
    /// Checks every value; the error names the field (`max children`, `memory limit`, `upload max`,
    /// `max execution time`: with underscores, the request's field names).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=500).contains(&self.max_children) {
            return Err(ValidationError::new("max children", &self.max_children.to_string(), "between 1 and 500"));
        }
        if !(1..=86_400).contains(&self.max_execution_time) {
            let v = self.max_execution_time.to_string();
            return Err(ValidationError::new("max execution time", &v, "between 1 and 86400 seconds"));
        }
        for (field, v) in [("memory limit", &self.memory_limit), ("upload max", &self.upload_max)] {
            let bytes = php_size(field, v)?;
            if !(1 << 20..=64 << 30).contains(&bytes) {
                return Err(ValidationError::new(field, v, "between 1M and 64G"));
            }
        }
        Ok(())
    }
}

/// The bytes a PHP size setting (`memory_limit`, `upload_max_filesize`) stands for, accepting only
/// what every PHP reads the same way: decimal digits without a leading zero (PHP reads `0…` as octal,
/// `0x…` as hex), then at most one of the units K, M, G in either case (PHP's are case-insensitive).
/// No sign, no spaces, nothing else (PHP would skip or guess at them), and no value that overflows.
pub fn php_size(field: &'static str, v: &str) -> Result<u64, ValidationError> {
    let bad = || ValidationError::new(field, v, "a whole number of bytes, or of K, M or G (e.g. 256M)");
    let (digits, unit) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(bad());
    }
    // Digits only, so a parse error is an overflow.
    let n: u64 = digits.parse().map_err(|_| ValidationError::new(field, v, "too large"))?;
    n.checked_mul(unit).ok_or_else(|| ValidationError::new(field, v, "too large"))
}

/// What platform verify found in a codebase besides its app and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformDetails {
    /// Install profiles (Drupal), by machine name.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// The site-local drush, relative to the platform root: its PHP entry point, run with the site's
    /// `php` (or, with `drush_script`, a script that runs itself).
    #[serde(default)]
    pub drush: Option<String>,
    /// `drush` is not PHP (a shell script): it runs itself, with the site's `php` first on `PATH`.
    #[serde(default)]
    pub drush_script: bool,
    /// The PHP version the code declares it needs, for people: the constraints of
    /// `php_requirements`, joined by "; " when they differ.
    #[serde(default)]
    pub php_requirement: Option<String>,
    /// Each PHP version constraint the code declares, with where it says so (`composer.json`
    /// `require.php`, `core/composer.json`, `vendor/composer/platform_check.php`,
    /// `Drupal::MINIMUM_PHP`…). A runtime must satisfy all of them.
    #[serde(default)]
    pub php_requirements: Vec<PhpRequirement>,
    /// The PHP extensions the code requires (`ext-*` of its composer metadata), lower case.
    #[serde(default)]
    pub php_extensions: Vec<String>,
    /// Whether one of the server's PHP runtimes satisfies `php_requirements` and has
    /// `php_extensions` (`None`: no requirement, or none understood).
    #[serde(default)]
    pub php_ok: Option<bool>,
    /// The server's runtimes (their keys) the code can run on, as its last verify found.
    #[serde(default)]
    pub php_runtimes: Vec<String>,
    /// Site directories found under `sites/` that no Fjord site owns (candidates for `site import`).
    #[serde(default)]
    pub unknown_sites: Vec<String>,
}

/// A PHP version constraint a codebase declares, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhpRequirement {
    /// The file or constant that says so, e.g. `core/composer.json` or `Drupal::MINIMUM_PHP`.
    pub source: String,
    /// A composer constraint, e.g. `>=8.3`.
    pub constraint: String,
}

/// A domain alias of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub domain: Domain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub id: SiteId,
    pub domain: Domain,
    pub platform_id: PlatformId,
    pub db_server_id: Option<ServerId>,
    pub db_engine: DbEngine,
    pub db_name: String,
    pub db_user: String,
    /// The PHP runtime version this site runs on; `None` means the server's default.
    pub php: Option<String>,
    pub profile: Option<String>,
    pub language: String,
    pub client_id: Option<ClientId>,
    pub aliases: Vec<Domain>,
    /// Answer on aliases with a 301 to the main domain instead of serving them.
    pub redirect_aliases: bool,
    pub https: HttpsMode,
    pub status: SiteStatus,
    /// Seconds between cron runs; `None` disables cron.
    pub cron_interval: Option<i64>,
    pub last_cron_at: Option<Millis>,
    /// Text the front page must contain for a health check to pass; `None` checks the status only.
    #[serde(default)]
    pub health_marker: Option<String>,
    #[serde(default)]
    pub php_limits: PhpLimits,
    /// Whose Unix user the site's PHP runs as (see [`Isolation`]).
    #[serde(default)]
    pub isolation: Isolation,
    /// HTTPS settings and the installed certificate (see `tls.rs`).
    #[serde(default)]
    pub tls: crate::SiteTls,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Site {
    /// Every host name the site answers to: the main domain first, then the aliases.
    pub fn all_domains(&self) -> impl Iterator<Item = &Domain> {
        std::iter::once(&self.domain).chain(self.aliases.iter())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: ClientId,
    pub name: Name,
    pub title: String,
    /// Most sites this client may have; `None` is unlimited.
    pub site_quota: Option<i64>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: Name,
    pub email: Option<String>,
    pub role: Role,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub id: BackupId,
    pub site_id: SiteId,
    pub path: String,
    pub size: i64,
    pub checksum: String,
    pub kind: BackupKind,
    pub created_at: Millis,
    /// Where the offsite copy is (`s3://BUCKET/KEY`), once uploaded.
    #[serde(default)]
    pub offsite: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_limits_are_checked() {
        assert!(PhpLimits::default().validate().is_ok());
        let bad = |f: fn(&mut PhpLimits)| {
            let mut l = PhpLimits::default();
            f(&mut l);
            l.validate().is_err()
        };
        assert!(bad(|l| l.max_children = 0));
        assert!(bad(|l| l.memory_limit = "lots".into()));
        assert!(bad(|l| l.memory_limit = "256M; rm -rf /".into()));
        assert!(bad(|l| l.upload_max = "100".into()));
        assert!(bad(|l| l.max_execution_time = 0));
        let ok = PhpLimits { memory_limit: "1G".into(), ..Default::default() };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn php_limits_name_their_field() {
        let l = PhpLimits { upload_max: "+64M".into(), ..Default::default() };
        assert_eq!(l.validate().map_err(|e| e.field), Err("upload max"));
        let l = PhpLimits { memory_limit: "17179869185G".into(), ..Default::default() };
        assert_eq!(l.validate().map_err(|e| e.field), Err("memory limit"));
    }

    #[test]
    fn php_sizes_overflowing_u64_are_refused() {
        // 17179869185 GiB is 2^64 bytes + 1 GiB: it used to wrap around to 1G and pass.
        for v in ["17179869185G", "18446744073709551616", "18446744073709551615K", "99999999999999999999M"] {
            let l = PhpLimits { memory_limit: v.into(), ..Default::default() };
            assert!(l.validate().is_err(), "{v}");
            let l = PhpLimits { upload_max: v.into(), ..Default::default() };
            assert!(l.validate().is_err(), "{v}");
        }
    }

    #[test]
    fn php_sizes_php_would_read_differently_are_refused() {
        for v in [
            "+256M",
            "-256M",
            " 256M",
            "256M ",
            "256 M",
            "2 56M",
            "256MB",
            "256KM",
            "256B",
            "256T",
            "M",
            "",
            "0256M",
            "0x100M",
            "0o400M",
            "1.5G",
            "256\u{0}M",
            "２５６M",
            "256Ｍ",
        ] {
            let l = PhpLimits { memory_limit: v.into(), ..Default::default() };
            assert!(l.validate().is_err(), "{v:?} was accepted");
            let l = PhpLimits { upload_max: v.into(), ..Default::default() };
            assert!(l.validate().is_err(), "{v:?} was accepted");
        }
        // The units in either case, as PHP reads them, and plain bytes.
        for v in ["256M", "256m", "2g", "2048k", "65536K", "1048576", "64G"] {
            let l = PhpLimits { memory_limit: v.into(), upload_max: v.into(), ..Default::default() };
            assert!(l.validate().is_ok(), "{v:?} was refused");
        }
    }

    #[test]
    fn php_sizes_are_read_as_php_reads_them() {
        assert_eq!(php_size("memory limit", "256M").ok(), Some(256 << 20));
        assert_eq!(php_size("memory limit", "256m").ok(), Some(256 << 20));
        assert_eq!(php_size("memory limit", "2g").ok(), Some(2 << 30));
        assert_eq!(php_size("memory limit", "2048k").ok(), Some(2 << 20));
        assert_eq!(php_size("memory limit", "1048576").ok(), Some(1 << 20));
        assert_eq!(php_size("memory limit", "18446744073709551615").ok(), Some(u64::MAX));
        assert_eq!(php_size("memory limit", "16777216K").ok(), Some(16 << 30));
        assert!(php_size("memory limit", "17179869184G").is_err(), "2^64 bytes");
        assert!(php_size("memory limit", "0").is_ok_and(|n| n == 0), "out of range, but read");
    }
}
