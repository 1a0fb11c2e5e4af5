//! Offsite copies of backup archives in S3-compatible storage (AWS S3, MinIO, Garage, moto), through
//! the `object_store` crate. An archive goes to `PREFIX/DOMAIN/FILE` with its checksum beside it as
//! `FILE.sha256`; its location is recorded as `s3://BUCKET/KEY`. Downloads are written beside their
//! final name, checked against the recorded SHA-256 and only then renamed into place.
//!
//! Credentials come from a 0600 file or the environment, never from argv, and are never logged.

use crate::secrets::Secret;
use crate::{io_err, ExecError, ExecResult};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where offsite copies go.
#[derive(Debug, Clone)]
pub struct OffsiteConfig {
    /// The S3 endpoint URL (`https://s3.example.org`, `http://127.0.0.1:9000`); `None` for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Key prefix inside the bucket (no leading or trailing slash), e.g. `fjord/web1`.
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Reads `access_key_id` and `secret_access_key` (`key = value` lines; `#` comments) from a file that
/// only its owner may read.
pub fn read_credentials(path: &Path) -> ExecResult<(String, Secret)> {
    let meta = std::fs::metadata(path).map_err(io_err(format!("read {}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ExecError::Other(format!(
            "{} is readable by others (mode {:o}): make it 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((k, v)) = line.split_once('=') else {
            return Err(ExecError::Other(format!("{}: expected `key = value` lines", path.display())));
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "access_key_id" => id = Some(v),
            "secret_access_key" => secret = Some(Secret::new(v)),
            other => return Err(ExecError::Other(format!("{}: unknown key {other:?}", path.display()))),
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(ExecError::Other(format!("{}: needs access_key_id and secret_access_key", path.display()))),
    }
}

/// An open connection to the offsite bucket.
#[derive(Debug)]
pub struct Offsite {
    store: AmazonS3,
    bucket: String,
    prefix: String,
}

fn s3_err(what: String) -> impl FnOnce(object_store::Error) -> ExecError {
    move |e| ExecError::Other(format!("offsite storage: {what}: {e}"))
}

impl Offsite {
    pub fn open(cfg: &OffsiteConfig) -> ExecResult<Offsite> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(cfg.secret_access_key.expose());
        if let Some(endpoint) = &cfg.endpoint {
            // Self-hosted S3 (MinIO, Garage, moto) wants path-style requests; plain HTTP only when the
            // endpoint says so (e.g. on loopback).
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(s3_err("configuration".into()))?;
        Ok(Offsite { store, bucket: cfg.bucket.clone(), prefix: cfg.prefix.trim_matches('/').to_string() })
    }

    /// The key an archive of `domain` gets.
    pub fn key_for(&self, domain: &str, archive: &Path) -> String {
        let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if self.prefix.is_empty() {
            format!("{domain}/{name}")
        } else {
            format!("{}/{domain}/{name}", self.prefix)
        }
    }

    fn key_of<'a>(&self, location: &'a str) -> ExecResult<&'a str> {
        location
            .strip_prefix("s3://")
            .and_then(|r| r.strip_prefix(self.bucket.as_str()))
            .and_then(|r| r.strip_prefix('/'))
            .filter(|k| !k.is_empty() && !k.split('/').any(|p| p.is_empty() || p == "." || p == ".."))
            .ok_or_else(|| ExecError::Other(format!("{location} is not in the configured bucket {}", self.bucket)))
    }

    /// Uploads an archive and its checksum file; returns the archive's location.
    pub async fn upload(&self, domain: &str, archive: &Path, sha256: &str) -> ExecResult<String> {
        let key = self.key_for(domain, archive);
        let path = ObjectPath::from(key.as_str());
        let upload = self.store.put_multipart(&path).await.map_err(s3_err(format!("start upload of {key}")))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut f = tokio::fs::File::open(archive).await.map_err(io_err(format!("open {}", archive.display())))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.map_err(io_err(format!("read {}", archive.display())))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await.map_err(s3_err(format!("upload {key}")))?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(s3_err(format!("finish upload of {key}")))?;
        let sum = ObjectPath::from(format!("{key}.sha256"));
        self.store
            .put(&sum, format!("{sha256}\n").into_bytes().into())
            .await
            .map_err(s3_err(format!("upload {key}.sha256")))?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }

    /// Downloads the archive at `location` to `dest` (0600), checking it against `sha256`, and writes
    /// its checksum file beside it. On any failure nothing is left at `dest`.
    pub async fn download(&self, location: &str, dest: &Path, sha256: &str) -> ExecResult<()> {
        let key = self.key_of(location)?;
        let partial = dest.with_extension("download");
        let result = async {
            let got = self.store.get(&ObjectPath::from(key)).await.map_err(s3_err(format!("download {key}")))?;
            let mut stream = got.into_stream();
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .await
                .map_err(io_err(format!("create {}", partial.display())))?;
            let mut hasher = Sha256::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(s3_err(format!("download {key}")))?;
                hasher.update(&chunk);
                f.write_all(&chunk).await.map_err(io_err(format!("write {}", partial.display())))?;
            }
            f.sync_all().await.map_err(io_err(format!("fsync {}", partial.display())))?;
            let got = hex::encode(hasher.finalize());
            if got != sha256 {
                return Err(ExecError::Other(format!(
                    "the offsite copy {location} does not match its record: sha256 {got}, expected {sha256}"
                )));
            }
            crate::fsops::write_atomic(&crate::backup::checksum_path(dest), format!("{sha256}\n").as_bytes(), 0o600)?;
            crate::fsops::rename(&partial, dest)
        }
        .await;
        if result.is_err() {
            let _ = crate::fsops::remove_all(&partial);
        }
        result
    }

    /// Removes an archive's offsite copy and its checksum (a copy already gone is not an error).
    pub async fn delete(&self, location: &str) -> ExecResult<()> {
        let key = self.key_of(location)?;
        for k in [key.to_string(), format!("{key}.sha256")] {
            match self.store.delete(&ObjectPath::from(k.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_err(format!("delete {k}"))(e)),
            }
        }
        Ok(())
    }

    /// Whether an object exists (for checks and tests).
    pub async fn exists(&self, location: &str) -> ExecResult<bool> {
        let key = self.key_of(location)?;
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(s3_err(format!("look up {key}"))(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files_must_be_private_and_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s3");
        std::fs::write(&p, "# test\naccess_key_id = AK\nsecret_access_key = \"SK\"\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(read_credentials(&p).expect_err("0644").to_string().contains("0600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let (id, secret) = read_credentials(&p).expect("reads");
        assert_eq!((id.as_str(), secret.expose()), ("AK", "SK"));
        assert!(!format!("{secret:?}").contains("SK"));
        std::fs::write(&p, "access_key_id = AK\n").expect("write");
        assert!(read_credentials(&p).is_err());
    }

    /// Against a real S3-compatible server (moto, started by `scripts/test.sh`).
    #[tokio::test]
    async fn round_trip_through_s3() {
        let Ok(url) = std::env::var("FJORD_TEST_S3_URL") else {
            eprintln!("skipped: set FJORD_TEST_S3_URL (scripts/test.sh does) to test offsite copies");
            return;
        };
        let bucket = format!("fjord-exec-{}", std::process::id());
        let made = std::process::Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("{url}/{bucket}")])
            .status()
            .expect("curl runs");
        assert!(made.success(), "cannot create bucket {bucket}");
        let cfg = OffsiteConfig {
            endpoint: Some(url),
            bucket: bucket.clone(),
            region: "us-east-1".into(),
            prefix: "t".into(),
            access_key_id: "testing".into(),
            secret_access_key: Secret::new("testing"),
        };
        let o = Offsite::open(&cfg).expect("open");
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("a.tar.zst");
        let content: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&archive, &content).expect("write");
        let sum = hex::encode(Sha256::digest(&content));
        let loc = o.upload("x.example", &archive, &sum).await.expect("upload");
        assert_eq!(loc, format!("s3://{bucket}/t/x.example/a.tar.zst"));
        assert!(o.exists(&loc).await.expect("head") && o.exists(&format!("{loc}.sha256")).await.expect("head"));
        let back = dir.path().join("back.tar.zst");
        let wrong = "0".repeat(64);
        assert!(o.download(&loc, &back, &wrong).await.expect_err("mismatch").to_string().contains("does not match"));
        assert!(!back.exists() && !back.with_extension("download").exists(), "a bad download was left behind");
        o.download(&loc, &back, &sum).await.expect("download");
        assert_eq!(std::fs::read(&back).expect("read"), content);
        assert_eq!(crate::fsops::mode_of(&back), Some(0o600));
        o.delete(&loc).await.expect("delete");
        assert!(!o.exists(&loc).await.expect("head"));
        o.delete(&loc).await.expect("deleting twice is fine");
    }

    #[test]
    fn locations_stay_in_the_bucket() {
        let cfg = OffsiteConfig {
            endpoint: Some("http://127.0.0.1:1".into()),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: "/fjord/".into(),
            access_key_id: "a".into(),
            secret_access_key: Secret::new("s"),
        };
        let o = Offsite::open(&cfg).expect("open");
        assert_eq!(o.key_for("x.example", Path::new("/s/backups/x.example/x.tar.zst")), "fjord/x.example/x.tar.zst");
        assert_eq!(o.key_of("s3://b/fjord/x/y.tar.zst").expect("key"), "fjord/x/y.tar.zst");
        for bad in ["s3://other/k", "s3://b/", "s3://b/a/../k", "/local/path", "s3://bk/x"] {
            assert!(o.key_of(bad).is_err(), "{bad}");
        }
    }
}
