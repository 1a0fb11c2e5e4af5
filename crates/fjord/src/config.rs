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
"
    )
}

pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
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
