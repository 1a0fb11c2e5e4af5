//! File operations on the local host: atomic writes, directory creation that remembers what it
//! created, and removal that can be undone (the path is moved aside, not deleted).

use crate::{io_err, ExecResult};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, chmod, rename. A
/// reader sees either the old file or the new one, never a half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> ExecResult<()> {
    write_atomic_owned(path, bytes, mode, None)
}

/// [`write_atomic`], with the file owned by `owner` (uid, gid) before it takes its place.
pub fn write_atomic_owned(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> ExecResult<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut tmp = tempfile_in(dir, path)?;
    let (file, tmp_path) = (&mut tmp.0, tmp.1.clone());
    let result = (|| {
        // Set the mode before any content is written so a secret is never readable by others.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("chmod {}", tmp_path.display())))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&*file, Some(uid), Some(gid))
                .map_err(io_err(format!("chown {}", tmp_path.display())))?;
        }
        file.write_all(bytes).map_err(io_err(format!("write {}", tmp_path.display())))?;
        file.sync_all().map_err(io_err(format!("fsync {}", tmp_path.display())))?;
        fs::rename(&tmp_path, path).map_err(io_err(format!("rename onto {}", path.display())))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

fn tempfile_in(dir: &Path, target: &Path) -> ExecResult<(fs::File, PathBuf)> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for _ in 0..16 {
        let candidate = dir.join(format!(".{name}.fjord-tmp-{:08x}", rand::random::<u32>()));
        match fs::OpenOptions::new().write(true).create_new(true).mode_0600().open(&candidate) {
            Ok(f) => return Ok((f, candidate)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(format!("create temp file in {}", dir.display()))(e)),
        }
    }
    Err(crate::ExecError::Other(format!("cannot create a temp file in {}", dir.display())))
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// Resolves `user:group` (or `user`, meaning its primary group) to ids.
pub fn resolve_owner(owner: &str) -> ExecResult<(u32, u32)> {
    let (user, group) = owner.split_once(':').map(|(u, g)| (u, Some(g))).unwrap_or((owner, None));
    let u = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| crate::ExecError::Other(format!("no such user {user:?}")))?;
    let gid = match group {
        Some(g) => nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .ok_or_else(|| crate::ExecError::Other(format!("no such group {g:?}")))?
            .gid
            .as_raw(),
        None => u.gid.as_raw(),
    };
    Ok((u.uid.as_raw(), gid))
}

pub fn chown(path: &Path, owner: (u32, u32)) -> ExecResult<()> {
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)).map_err(io_err(format!("chown {}", path.display())))
}

/// Reads a file, `None` if it does not exist.
pub fn read_optional(path: &Path) -> ExecResult<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
    }
}

/// The directories `create_dirs` would create for `path`, outermost first.
pub fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut p = Some(path);
    while let Some(dir) = p {
        if dir.exists() {
            break;
        }
        missing.push(dir.to_path_buf());
        p = dir.parent();
    }
    missing.reverse();
    missing
}

/// Creates `path` and its missing parents, and sets `mode` on `path` itself.
pub fn create_dirs(path: &Path, mode: u32) -> ExecResult<()> {
    fs::create_dir_all(path).map_err(io_err(format!("create directory {}", path.display())))?;
    set_mode(path, mode)
}

/// Sets a file's or directory's mode.
pub fn set_mode(path: &Path, mode: u32) -> ExecResult<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(format!("chmod {}", path.display())))
}

/// Opens (creating it if missing, never truncating) a file that is only held for its lock.
pub fn open_lock_file(path: &Path) -> ExecResult<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))?;
    // Root's alone, also when an older Fjord made it.
    set_mode(path, 0o600)?;
    Ok(file)
}

/// Where `remove_aside` puts a path: beside it, so the move is a rename on the same filesystem.
pub fn aside_path(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.fjord-removed-{tag}"))
}

/// Removes a file or tree for good.
pub fn remove_all(path: &Path) -> ExecResult<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err(format!("remove {}", path.display()))),
        Ok(_) => fs::remove_file(path).map_err(io_err(format!("remove {}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("stat {}", path.display()))(e)),
    }
}

pub fn rename(from: &Path, to: &Path) -> ExecResult<()> {
    fs::rename(from, to).map_err(io_err(format!("rename {} to {}", from.display(), to.display())))
}

pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("settings.php");
        write_atomic(&p, b"one", 0o640).expect("write");
        write_atomic(&p, b"two", 0o600).expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(mode_of(&p), Some(0o600));
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn missing_dirs_lists_outermost_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        assert_eq!(missing_dirs(&deep), vec![dir.path().join("a"), dir.path().join("a/b"), deep.clone()]);
    }
}
