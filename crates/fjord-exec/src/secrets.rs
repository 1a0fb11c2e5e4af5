//! Secrets (database passwords, admin credentials) live in one directory, mode 0700, one 0600 file per
//! secret. They are never stored in the state database, never logged, and never put on a command line.

use crate::fsops::{read_optional, write_atomic};
use crate::{io_err, ExecError, ExecResult};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A secret value. Its `Debug` output is redacted so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// A random password of 32 characters from an alphabet safe in PHP strings, SQL literals and URLs.
    pub fn generate() -> Secret {
        use rand::Rng;
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut rng = rand::thread_rng();
        Secret((0..32).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(********)")
    }
}

#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_')
        && !key.starts_with('.')
}

impl SecretStore {
    pub fn open(dir: impl Into<PathBuf>) -> ExecResult<SecretStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod {}", dir.display())))?;
        Ok(SecretStore { dir })
    }

    fn path(&self, key: &str) -> ExecResult<PathBuf> {
        if !valid_key(key) {
            return Err(ExecError::Other(format!("invalid secret key {key:?}")));
        }
        Ok(self.dir.join(key))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn put(&self, key: &str, value: &Secret) -> ExecResult<()> {
        write_atomic(&self.path(key)?, value.0.as_bytes(), 0o600)
    }

    pub fn get(&self, key: &str) -> ExecResult<Option<Secret>> {
        Ok(read_optional(&self.path(key)?)?.map(|b| Secret(String::from_utf8_lossy(&b).into_owned())))
    }

    pub fn require(&self, key: &str) -> ExecResult<Secret> {
        self.get(key)?.ok_or_else(|| ExecError::MissingSecret(key.into()))
    }

    /// Returns the secret, creating a random one first if there is none.
    pub fn get_or_generate(&self, key: &str) -> ExecResult<Secret> {
        match self.get(key)? {
            Some(s) => Ok(s),
            None => {
                let s = Secret::generate();
                self.put(key, &s)?;
                Ok(s)
            }
        }
    }

    pub fn delete(&self, key: &str) -> ExecResult<()> {
        crate::fsops::remove_all(&self.path(key)?)
    }

    /// The sites that have secrets here (keys `site-ID-…`).
    pub fn site_ids(&self) -> ExecResult<std::collections::BTreeSet<i64>> {
        let entries = std::fs::read_dir(&self.dir).map_err(io_err(format!("list {}", self.dir.display())))?;
        Ok(entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| site_of_key(&name))
            .collect())
    }

    /// Removes every secret of one site (its database password, its app's salts, an uploaded key).
    pub fn delete_site(&self, site: i64) -> ExecResult<usize> {
        let entries = std::fs::read_dir(&self.dir).map_err(io_err(format!("list {}", self.dir.display())))?;
        let mut removed = 0;
        for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if site_of_key(&name) == Some(site) {
                self.delete(&name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The site a secret key belongs to: `site-12-db` → 12.
fn site_of_key(key: &str) -> Option<i64> {
    let (id, _) = key.strip_prefix("site-")?.split_once('-')?;
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_0600_and_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SecretStore::open(dir.path().join("secrets")).expect("open");
        let s = store.get_or_generate("site-1-db").expect("generate");
        assert_eq!(store.get_or_generate("site-1-db").expect("again"), s);
        assert_eq!(crate::fsops::mode_of(&dir.path().join("secrets/site-1-db")), Some(0o600));
        assert_eq!(crate::fsops::mode_of(&dir.path().join("secrets")), Some(0o700));
        assert_eq!(format!("{s:?}"), "Secret(********)");
        assert!(store.get("../etc/passwd").is_err());
    }

    #[test]
    fn a_sites_secrets_go_together_and_no_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SecretStore::open(dir.path().join("secrets")).expect("open");
        for key in ["site-1-db", "site-1-hash-salt", "site-12-db", "server-site-1-mariadb-admin"] {
            store.get_or_generate(key).expect("generate");
        }
        assert_eq!(store.site_ids().expect("ids").into_iter().collect::<Vec<_>>(), [1, 12]);
        assert_eq!(store.delete_site(1).expect("delete"), 2);
        assert!(store.get("site-12-db").expect("get").is_some());
        assert!(store.get("server-site-1-mariadb-admin").expect("get").is_some());
        assert_eq!(store.site_ids().expect("ids").into_iter().collect::<Vec<_>>(), [12]);
    }
}
