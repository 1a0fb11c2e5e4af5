//! Backup archives: one `tar` stream compressed with multi-threaded zstd (or gzip), holding `manifest.json`,
//! `database.sql` (the dump) — or, for a database copied physically, `database/schema.sql` and the
//! tables' tablespace files `database/NAME.ibd` + `.cfg` (see `physical.rs`) — and the site's own
//! directories. Files are streamed from disk into the
//! archive (no temporary copy of the site); only the database dump goes through a 0600 temp file,
//! because a tar entry needs its size before its content. The archive is written beside its final
//! name and renamed when complete, with its SHA-256 in a `.sha256` file next to it. Readers tell the
//! compression from the archive's first bytes. Before writing, [`check_space`] compares the free space
//! of the backups filesystem with an estimate of the archive; if the disk fills anyway, the partial
//! archive is removed and the error says so.

use crate::{io_err, ExecError, ExecResult};
use fjord_core::Compression;
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

/// The compressor in front of the archive file.
enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter>),
    Gzip(flate2::write::GzEncoder<HashingWriter>),
}

impl Encoder {
    fn new(compression: Compression, writer: HashingWriter) -> ExecResult<Encoder> {
        Ok(match compression {
            Compression::Zstd => {
                let mut zst = zstd::stream::write::Encoder::new(writer, 3).map_err(io_err("start zstd"))?;
                let threads = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
                zst.multithread(threads).map_err(io_err("zstd threads"))?;
                Encoder::Zstd(zst)
            }
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(writer, flate2::Compression::new(6))),
        })
    }

    fn finish(self) -> ExecResult<HashingWriter> {
        match self {
            Encoder::Zstd(z) => z.finish().map_err(io_err("finish the zstd stream")),
            Encoder::Gzip(g) => g.finish().map_err(io_err("finish the gzip stream")),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Zstd(z) => z.write(buf),
            Encoder::Gzip(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Zstd(z) => z.flush(),
            Encoder::Gzip(g) => g.flush(),
        }
    }
}

/// Opens an archive for reading, decompressing as its first bytes say (zstd or gzip).
fn open_decoder(archive: &Path) -> ExecResult<Box<dyn Read>> {
    let mut f = File::open(archive).map_err(io_err(format!("open {}", archive.display())))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_err(format!("read {}", archive.display())))?;
    let f = File::open(archive).map_err(io_err(format!("open {}", archive.display())))?;
    match &magic[..n] {
        [0x28, 0xb5, 0x2f, 0xfd] => Ok(Box::new(zstd::stream::read::Decoder::new(f).map_err(io_err("zstd"))?)),
        [0x1f, 0x8b, ..] => Ok(Box::new(flate2::read::GzDecoder::new(BufReader::new(f)))),
        _ => Err(ExecError::Other(format!("{} is neither a zstd nor a gzip archive", archive.display()))),
    }
}

/// Turns "no space left on device" into a message that says what happened to the archive.
fn disk_full(archive: &Path, e: ExecError) -> ExecError {
    match &e {
        ExecError::Io { source, .. } if source.raw_os_error() == Some(nix::libc::ENOSPC) => ExecError::Other(format!(
            "the backups filesystem filled up while writing {}: the partial archive was removed ({e})",
            archive.display()
        )),
        _ => e,
    }
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> ExecResult<u64> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| ExecError::Other(format!("cannot read the free space of {}: {e}", dir.display())))?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Bytes of the regular files under the trees (without their exclusions): what the archive holds at
/// most, before compression, besides the dump.
pub fn trees_size(trees: &[Tree]) -> u64 {
    fn walk(root: &Path, rel: &Path, exclude: &[String]) -> u64 {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else { return 0 };
        let mut total = 0;
        for e in rd.flatten() {
            let child = rel.join(e.file_name());
            if exclude.iter().any(|x| child == Path::new(x)) {
                continue;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => total += walk(root, &child, exclude),
                Ok(m) => total += m.len() + 512,
                Err(_) => {}
            }
        }
        total
    }
    trees.iter().map(|t| walk(Path::new(&t.path), Path::new(""), &t.exclude)).sum()
}

/// The free space a backup of `content` bytes (dump + files, uncompressed) asks for: the content
/// itself (compression usually saves much of it, but not on media that is compressed already), plus
/// 10% and 1 MiB of margin for the tar headers and the rest of the system.
pub fn space_needed(content: u64) -> u64 {
    content + content / 10 + (1 << 20)
}

/// Refuses a backup whose estimated archive would not fit in the free space of `dir`.
pub fn check_space(dir: &Path, content: u64, what: &str) -> ExecResult<()> {
    let free = free_bytes(dir)?;
    let need = space_needed(content);
    if free < need {
        return Err(ExecError::Other(format!(
            "not enough space for the backup in {}: {free} bytes free, {need} needed ({what}: {content} bytes, \
             with margin); nothing was written",
            dir.display()
        )));
    }
    Ok(())
}

/// The database part of an archive.
pub enum ArchiveDb<'a> {
    None,
    /// A SQL dump, archived as `database.sql`.
    Dump(&'a Path),
    /// Files archived under `database/` (name, path): a physical copy. `done` is called as soon as
    /// they are in the stream, before the site's files, so the tables they come from unlock early.
    Files {
        files: Vec<(String, PathBuf)>,
        done: Box<dyn FnOnce() + Send + 'a>,
    },
}

/// Builds the archive at `archive` (blocking; run it on a blocking thread).
pub fn write_archive(
    archive: &Path,
    manifest: &[u8],
    db: ArchiveDb,
    trees: &[Tree],
    compression: Compression,
) -> ExecResult<ArchiveInfo> {
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
        let mut tar = tar::Builder::new(Encoder::new(compression, writer)?);
        tar.follow_symlinks(false);
        append_bytes(&mut tar, "manifest.json", manifest)?;
        match db {
            ArchiveDb::None => {}
            ArchiveDb::Dump(dump) => {
                let mut f = File::open(dump).map_err(io_err(format!("open {}", dump.display())))?;
                tar.append_file("database.sql", &mut f).map_err(io_err("archive the database dump"))?;
            }
            ArchiveDb::Files { files, done } => {
                for (name, path) in files {
                    let mut f = File::open(&path).map_err(io_err(format!("open {}", path.display())))?;
                    tar.append_file(format!("database/{name}"), &mut f)
                        .map_err(io_err(format!("archive {}", path.display())))?;
                }
                done();
            }
        }
        for tree in trees {
            let root = Path::new(&tree.path);
            if root.exists() {
                append_tree(&mut tar, root, Path::new(&tree.name), Path::new(""), &tree.exclude)?;
            }
        }
        let encoder = tar.into_inner().map_err(io_err("finish the tar stream"))?;
        let mut writer = encoder.finish()?;
        writer.flush().map_err(io_err("flush the archive"))?;
        writer.inner.get_ref().sync_all().map_err(io_err("fsync the archive"))?;
        Ok(ArchiveInfo { size: writer.written, sha256: hex::encode(writer.hasher.finalize()) })
    })();
    let result = result.and_then(|info| {
        crate::fsops::write_atomic(&checksum_path(archive), format!("{}\n", info.sha256).as_bytes(), 0o600)?;
        std::fs::rename(&partial, archive).map_err(io_err(format!("rename onto {}", archive.display())))?;
        Ok(info)
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(checksum_path(archive));
        return Err(disk_full(archive, e));
    }
    result
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
    let mut tar = tar::Archive::new(open_decoder(archive)?);
    let mut names = Vec::new();
    for entry in tar.entries().map_err(io_err("read the archive"))? {
        let mut entry = entry.map_err(io_err("read an archive entry"))?;
        names.push(entry.path().map_err(io_err("entry path"))?.to_string_lossy().into_owned());
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(io_err("decompress an entry"))?;
    }
    Ok(names)
}

/// The manifest an archive starts with (written first, so only the archive's start is read). Its
/// checksum is not checked here: whatever restores the archive checks it as it unpacks.
pub fn read_manifest(archive: &Path) -> ExecResult<serde_json::Value> {
    let mut tar = tar::Archive::new(open_decoder(archive)?);
    let mut entry = tar
        .entries()
        .map_err(io_err("read the archive"))?
        .next()
        .ok_or_else(|| ExecError::Other(format!("{} is empty", archive.display())))?
        .map_err(io_err("read an archive entry"))?;
    if entry.path().map_err(io_err("entry path"))?.to_str() != Some("manifest.json") {
        return Err(ExecError::Other(format!("{} does not start with its manifest", archive.display())));
    }
    // A manifest is a few kilobytes; anything much larger is not one.
    let mut text = Vec::new();
    (&mut entry).take(1 << 20).read_to_end(&mut text).map_err(io_err("read the manifest"))?;
    serde_json::from_slice(&text).map_err(|e| ExecError::Other(format!("{}: bad manifest: {e}", archive.display())))
}

/// Hashes what passes through it: the archive is checked in the same pass that unpacks it.
struct HashingReader<R> {
    inner: R,
    hasher: std::rc::Rc<std::cell::RefCell<Sha256>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks an archive into `dest` (created 0700; it must not exist yet) and checks it against its
/// checksum in the same pass: on a mismatch (or any error) `dest` is removed and nothing is left.
/// Entries cannot escape `dest` (the tar crate refuses `..` and absolute paths).
pub fn unpack_archive(archive: &Path, expected_sha256: &str, dest: &Path) -> ExecResult<()> {
    let mut f = File::open(archive).map_err(io_err(format!("open {}", archive.display())))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_err(format!("read {}", archive.display())))?;
    drop(f);
    let hasher = std::rc::Rc::new(std::cell::RefCell::new(Sha256::new()));
    let file = File::open(archive).map_err(io_err(format!("open {}", archive.display())))?;
    let mut raw = BufReader::with_capacity(1 << 20, HashingReader { inner: file, hasher: hasher.clone() });
    std::fs::DirBuilder::new().mode(0o700).create(dest).map_err(io_err(format!("create {}", dest.display())))?;
    let unpacked = (|| -> ExecResult<()> {
        {
            let decoder: Box<dyn Read + '_> = match &magic[..n] {
                [0x28, 0xb5, 0x2f, 0xfd] => {
                    Box::new(zstd::stream::read::Decoder::with_buffer(&mut raw).map_err(io_err("zstd"))?)
                }
                [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(&mut raw)),
                _ => {
                    return Err(ExecError::Other(format!("{} is neither a zstd nor a gzip archive", archive.display())))
                }
            };
            let mut tar = tar::Archive::new(decoder);
            tar.set_preserve_permissions(true);
            tar.unpack(dest).map_err(io_err(format!("unpack into {}", dest.display())))?;
        }
        // Whatever follows the compressed stream counts for the checksum too.
        std::io::copy(&mut raw, &mut std::io::sink()).map_err(io_err(format!("read {}", archive.display())))?;
        let got = hex::encode(hasher.borrow_mut().clone().finalize());
        if got != expected_sha256 {
            return Err(ExecError::Other(format!(
                "checksum mismatch: the archive is {got}, the record says {expected_sha256}"
            )));
        }
        Ok(())
    })();
    if unpacked.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    unpacked
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
        let manifest = br#"{"site":{"domain":"a.example"}}"#;
        let info =
            write_archive(&archive, manifest, ArchiveDb::Dump(&dump), &trees, Compression::Zstd).expect("archive");
        assert_eq!(crate::fsops::mode_of(&archive), Some(0o600));
        assert_eq!(read_manifest(&archive).expect("manifest")["site"]["domain"], "a.example");
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
        // Unpacking checks the same checksum in its single pass, and leaves nothing behind.
        let dest = dir.path().join("unpacked");
        assert!(unpack_archive(&archive, &info.sha256, &dest).is_err());
        assert!(!dest.exists(), "a damaged archive left a partial unpack");
    }

    #[test]
    fn unpacking_checks_the_recorded_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path().join("site");
        std::fs::create_dir_all(&site).expect("mkdir");
        std::fs::write(site.join("a.txt"), "a").expect("write");
        let archive = dir.path().join("b.tar.zst");
        let trees = [Tree { name: "site".into(), path: site.to_string_lossy().into(), exclude: vec![] }];
        let info = write_archive(&archive, b"{}", ArchiveDb::None, &trees, Compression::Zstd).expect("archive");
        let dest = dir.path().join("out");
        let err = unpack_archive(&archive, &"0".repeat(64), &dest).expect_err("wrong checksum");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(!dest.exists());
        unpack_archive(&archive, &info.sha256, &dest).expect("unpacks");
        assert_eq!(std::fs::read_to_string(dest.join("site/a.txt")).expect("read"), "a");
    }

    #[test]
    fn gzip_archives_verify_and_unpack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("files")).expect("mkdir");
        std::fs::write(site.join("files/a.txt"), "gzip me").expect("write");
        let archive = dir.path().join("b.tar.gz");
        let trees = [Tree { name: "site".into(), path: site.to_string_lossy().into(), exclude: vec![] }];
        let info = write_archive(&archive, b"{}", ArchiveDb::None, &trees, Compression::Gzip).expect("archive");
        assert_eq!(&std::fs::read(&archive).expect("read")[..2], &[0x1f, 0x8b], "not gzip");
        assert!(verify_archive(&archive, &info.sha256).expect("verifies").iter().any(|n| n == "site/files/a.txt"));
        let dest = dir.path().join("out");
        unpack_archive(&archive, &info.sha256, &dest).expect("unpacks");
        assert_eq!(std::fs::read_to_string(dest.join("site/files/a.txt")).expect("read"), "gzip me");
        // Neither zstd nor gzip: refused with a clear message.
        std::fs::write(dir.path().join("x.tar.gz"), "plain").expect("write");
        let sum = hex::encode(Sha256::digest(b"plain"));
        let err = verify_archive(&dir.path().join("x.tar.gz"), &sum).expect_err("not an archive");
        assert!(err.to_string().contains("neither"), "{err}");
    }

    #[test]
    fn space_estimates() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("t/cache")).expect("mkdir");
        std::fs::write(dir.path().join("t/a"), vec![0u8; 10_000]).expect("write");
        std::fs::write(dir.path().join("t/cache/big"), vec![0u8; 50_000]).expect("write");
        let tree = |exclude: Vec<String>| Tree {
            name: "t".into(),
            path: dir.path().join("t").to_string_lossy().into(),
            exclude,
        };
        assert_eq!(trees_size(&[tree(vec!["cache".into()])]), 10_512);
        assert_eq!(trees_size(&[tree(vec![])]), 61_024);
        assert!(free_bytes(dir.path()).expect("statvfs") > 0);
        let err = check_space(dir.path(), u64::MAX / 4, "test").expect_err("too big");
        assert!(err.to_string().contains("not enough space"), "{err}");
    }

    /// Mounts a small tmpfs (needs root; skipped otherwise) and fills it while writing: the partial
    /// archive goes and the error says the disk filled.
    #[test]
    fn a_full_disk_leaves_no_partial_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(&mnt)
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        }
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
            }
        }
        let _guard = Unmount(&mnt);
        let site = dir.path().join("site");
        std::fs::create_dir_all(&site).expect("mkdir");
        // Incompressible content, larger than the filesystem.
        let mut noise = vec![0u8; 3 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::write(site.join("noise.bin"), &noise).expect("write");
        let trees = [Tree { name: "site".into(), path: site.to_string_lossy().into(), exclude: vec![] }];
        assert!(check_space(&mnt, trees_size(&trees), "files").is_err(), "the estimate should refuse");
        for compression in [Compression::Zstd, Compression::Gzip] {
            let archive = mnt.join(format!("b.{}", compression.extension()));
            let err = write_archive(&archive, b"{}", ArchiveDb::None, &trees, compression).expect_err("disk full");
            assert!(err.to_string().contains("filled up"), "{compression}: {err}");
            let left: Vec<_> = std::fs::read_dir(&mnt).expect("read").flatten().map(|e| e.file_name()).collect();
            assert!(left.is_empty(), "{compression}: left behind: {left:?}");
        }
    }
}
