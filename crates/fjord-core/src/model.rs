//! The entities of the hosting model. These are the desired state: everything on disk (vhosts, settings
//! files, pools, grants) is derived from them by tasks.

use crate::names::{Domain, Name};
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
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),* }
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
    /// Life-cycle of a site. `Failed` marks a site whose install did not complete (nothing of it is on disk).
    SiteStatus { Queued = "queued", Enabled = "enabled", Disabled = "disabled", Failed = "failed", Deleted = "deleted" }
);

string_enum!(HttpKind { Nginx = "nginx", Apache = "apache" });
string_enum!(DbEngine { Mariadb = "mariadb", Postgres = "postgres", Sqlite = "sqlite" });
string_enum!(HttpsMode { Off = "off", On = "on", Required = "required" });
string_enum!(Role { Admin = "admin", PlatformManager = "platform-manager", Client = "client" });
string_enum!(BackupKind { Manual = "manual", Scheduled = "scheduled", PreMigrate = "pre-migrate", PreRestore = "pre-restore", PreDelete = "pre-delete" });
string_enum!(
    /// The application a platform carries, detected by verify.
    AppKind { Drupal7 = "drupal7", Drupal = "drupal", Wordpress = "wordpress", Php = "php" }
);

/// One service a server offers. A server may have several PHP runtimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Service {
    Http {
        kind: HttpKind,
        #[serde(default)]
        version: Option<String>,
        port: u16,
        #[serde(default)]
        https_port: Option<u16>,
    },
    Db {
        engine: DbEngine,
        #[serde(default)]
        version: Option<String>,
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        port: Option<u16>,
    },
    Php {
        version: String,
        binary: String,
    },
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
    pub fn http(&self) -> Option<(HttpKind, u16)> {
        self.services.iter().find_map(|s| match s {
            Service::Http { kind, port, .. } => Some((*kind, *port)),
            _ => None,
        })
    }
    pub fn db_engines(&self) -> impl Iterator<Item = DbEngine> + '_ {
        self.services.iter().filter_map(|s| match s {
            Service::Db { engine, .. } => Some(*engine),
            _ => None,
        })
    }
    pub fn php_versions(&self) -> impl Iterator<Item = &str> + '_ {
        self.services.iter().filter_map(|s| match s {
            Service::Php { version, .. } => Some(version.as_str()),
            _ => None,
        })
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
    pub created_at: Millis,
    pub updated_at: Millis,
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
}
