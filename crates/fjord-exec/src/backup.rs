//! Backup archives: one `tar` stream compressed with multi-threaded zstd, holding `manifest.json`,
//! `database.sql` (the dump) and the site's own directories. Files are streamed from disk into the
//! archive (no temporary copy of the site); only the database dump goes through a 0600 temp file,
//! because a tar entry needs its size before its content. The archive is written beside its final
//! name and renamed when complete, with its SHA-256 in a `.sha256` file next to it.

use crate::{io_err, ExecError, ExecResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A directory to put into the archive, under `name`, leaving out the relative paths in `exclude`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Size and checksum of a finished archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    pub size: u64,
    pub sha256: String,
}

/// Writes into a file while hashing what goes through.
struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Builds the archive at `archive` (blocking; run it on a blocking thread).
pub fn write_archive(archive: &Path, manifest: &[u8], dump: Option<&Path>, trees: &[Tree]) -> ExecResult<ArchiveInfo> {
    let partial = archive.with_extension("partial");
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_err(format!("create {}", partial.display())))?;
        let writer =
            HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), written: 0 };
        let mut zst = zstd::stream::write::Encoder::new(writer, 3).map_err(io_err("start zstd"))?;
        let threads = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        zst.multithread(threads).map_err(io_err("zstd threads"))?;
        let mut tar = tar::Builder::new(zst);
        tar.follow_symlinks(false);
        append_bytes(&mut tar, "manifest.json", manifest)?;
        if let Some(dump) = dump {
            let mut f = File::open(dump).map_err(io_err(format!("open {}", dump.display())))?;
            tar.append_file("database.sql", &mut f).map_err(io_err("archive the database dump"))?;
        }
        for tree in trees {
            let root = Path::new(&tree.path);
            if root.exists() {
                append_tree(&mut tar, root, Path::new(&tree.name), Path::new(""), &tree.exclude)?;
            }
        }
        let zst = tar.into_inner().map_err(io_err("finish the tar stream"))?;
        let mut writer = zst.finish().map_err(io_err("finish the zstd stream"))?;
        writer.flush().map_err(io_err("flush the archive"))?;
        writer.inner.get_ref().sync_all().map_err(io_err("fsync the archive"))?;
        Ok(ArchiveInfo { size: writer.written, sha256: hex::encode(writer.hasher.finalize()) })
    })();
    match result {
        Ok(info) => {
            crate::fsops::write_atomic(&checksum_path(archive), format!("{}\n", info.sha256).as_bytes(), 0o600)?;
            std::fs::rename(&partial, archive).map_err(io_err(format!("rename onto {}", archive.display())))?;
            Ok(info)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Where an archive's checksum is kept.
pub fn checksum_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> ExecResult<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    );
    header.set_cksum();
    tar.append_data(&mut header, name, bytes).map_err(io_err(format!("archive {name}")))
}

fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    name: &Path,
    rel: &Path,
    exclude: &[String],
) -> ExecResult<()> {
    let dir = root.join(rel);
    tar.append_dir(name.join(rel), &dir).map_err(io_err(format!("archive {}", dir.display())))?;
    let mut entries: Vec<_> =
        std::fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let child = rel.join(e.file_name());
        if exclude.iter().any(|x| child == Path::new(x)) {
            continue;
        }
        let ft = e.file_type().map_err(io_err(format!("stat {}", e.path().display())))?;
        if ft.is_dir() {
            append_tree(tar, root, name, &child, exclude)?;
        } else if ft.is_file() || ft.is_symlink() {
            tar.append_path_with_name(e.path(), name.join(&child))
                .map_err(io_err(format!("archive {}", e.path().display())))?;
        }
    }
    Ok(())
}

/// Re-reads an archive: its checksum must match, and every entry must decompress. Returns the names
/// of its entries.
pub fn verify_archive(archive: &Path, expected_sha256: &str) -> ExecResult<Vec<String>> {
    let mut hasher = Sha256::new();
    let mut f = BufReader::new(File::open(archive).map_err(io_err(format!("open {}", archive.display())))?);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(format!("read {}", archive.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got = hex::encode(hasher.finalize());
    if got != expected_sha256 {
        return Err(ExecError::Other(format!(
            "checksum mismatch: the archive is {got}, the record says {expected_sha256}"
        )));
    }
    let zst = zstd::stream::read::Decoder::new(File::open(archive).map_err(io_err("reopen the archive"))?)
        .map_err(io_err("zstd"))?;
    let mut tar = tar::Archive::new(zst);
    let mut names = Vec::new();
    for entry in tar.entries().map_err(io_err("read the archive"))? {
        let mut entry = entry.map_err(io_err("read an archive entry"))?;
        names.push(entry.path().map_err(io_err("entry path"))?.to_string_lossy().into_owned());
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(io_err("decompress an entry"))?;
    }
    Ok(names)
}

/// Checks an archive against its checksum, then unpacks it into `dest` (created 0700; it must not
/// exist yet). Entries cannot escape `dest` (the tar crate refuses `..` and absolute paths).
pub fn unpack_archive(archive: &Path, expected_sha256: &str, dest: &Path) -> ExecResult<()> {
    verify_archive(archive, expected_sha256)?;
    std::fs::DirBuilder::new().mode(0o700).create(dest).map_err(io_err(format!("create {}", dest.display())))?;
    let zst = zstd::stream::read::Decoder::new(File::open(archive).map_err(io_err("open the archive"))?)
        .map_err(io_err("zstd"))?;
    let mut tar = tar::Archive::new(zst);
    tar.set_preserve_permissions(true);
    tar.unpack(dest).map_err(io_err(format!("unpack into {}", dest.display())))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn archives_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("files/css")).expect("mkdir");
        std::fs::write(site.join("settings.php"), "<?php").expect("write");
        std::fs::write(site.join("files/a.txt"), "a").expect("write");
        std::fs::write(site.join("files/css/cache.css"), "x").expect("write");
        let dump = dir.path().join("dump.sql");
        std::fs::write(&dump, "CREATE TABLE t (x INT);").expect("write");
        let archive = dir.path().join("b.tar.zst");
        let trees =
            [Tree { name: "site".into(), path: site.to_string_lossy().into(), exclude: vec!["files/css".into()] }];
        let info = write_archive(&archive, b"{}", Some(&dump), &trees).expect("archive");
        assert_eq!(crate::fsops::mode_of(&archive), Some(0o600));
        let names = verify_archive(&archive, &info.sha256).expect("verifies");
        for want in ["manifest.json", "database.sql", "site/settings.php", "site/files/a.txt"] {
            assert!(names.iter().any(|n| n.trim_end_matches('/') == want), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("cache.css")), "an excluded path was archived");
        let mut bytes = std::fs::read(&archive).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&archive, bytes).expect("write");
        assert!(verify_archive(&archive, &info.sha256).is_err());
    }
}
