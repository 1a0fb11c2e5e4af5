//! File operations on the local host: atomic writes, directory creation that remembers what it
//! created, and removal that can be undone (the path is moved aside, not deleted).

use crate::{io_err, ExecResult};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
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

/// What giving a tree to an owner did: entries looked at, entries whose owner changed, directories
/// on other filesystems left alone.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeOwnership {
    pub walked: u64,
    pub changed: u64,
    pub other_filesystems: u64,
}

/// Gives `root` and everything below it to `owner` (uid, gid), in this process: each entry is
/// looked at (lstat) and changed (lchown) only when its owner differs, so what is already right is
/// not rewritten (its ctime stays). Symbolic links are given themselves, never followed; every
/// directory is opened beneath the root without symlinks or mount crossings (`openat2`), so a site
/// that swaps a directory for a link while the walk runs cannot lead it out of the tree; a directory
/// on another filesystem is left alone with everything in it. The root is given last: a walk cut
/// short leaves it with its old owner, so the next one walks again. `None`: `root` does not exist.
pub fn own_tree(root: &Path, owner: (u32, u32)) -> ExecResult<Option<TreeOwnership>> {
    use nix::errno::Errno;
    use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::{Mode, SFlag};
    use std::os::fd::AsRawFd;
    let err = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: Errno| io_err(what)(std::io::Error::from(e))
    };
    let (uid, gid) = (nix::unistd::Uid::from_raw(owner.0), nix::unistd::Gid::from_raw(owner.1));
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut done = TreeOwnership::default();
    let top = match nix::dir::Dir::open(root, dir_flags, Mode::empty()) {
        Ok(d) => d,
        Err(Errno::ENOENT) => return Ok(None),
        // A file, or a link (given itself, not followed).
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            let st = nix::sys::stat::fstatat(None, root, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(err("stat", root))?;
            done.walked = 1;
            if (st.st_uid, st.st_gid) != owner {
                nix::unistd::fchownat(None, root, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(err("chown", root))?;
                done.changed = 1;
            }
            return Ok(Some(done));
        }
        Err(e) => return Err(err("open", root)(e)),
    };
    let top_fd = top.as_raw_fd();
    let top_stat = nix::sys::stat::fstat(top_fd).map_err(err("stat", root))?;
    // Directories still to look into, relative to the root (the root itself is "").
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let path = root.join(&rel);
        let mut dir = if rel.as_os_str().is_empty() {
            nix::dir::Dir::openat(Some(top_fd), ".", dir_flags, Mode::empty()).map_err(err("open", &path))?
        } else {
            let how = OpenHow::new().flags(dir_flags).resolve(
                ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV,
            );
            match nix::fcntl::openat2(top_fd, &rel, how) {
                Ok(fd) => nix::dir::Dir::from_fd(fd).map_err(err("read", &path))?,
                // Gone, or swapped for a link or a mount since it was listed: not ours to follow.
                Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => continue,
                Err(e) => return Err(err("open", &path)(e)),
            }
        };
        let fd = dir.as_raw_fd();
        for entry in dir.iter() {
            let entry = entry.map_err(err("read", &path))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let st = match nix::sys::stat::fstatat(Some(fd), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(err("stat", &path.join(std::ffi::OsStr::from_bytes(name.to_bytes())))(e)),
            };
            let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            if is_dir && st.st_dev != top_stat.st_dev {
                done.other_filesystems += 1;
                continue;
            }
            done.walked += 1;
            if (st.st_uid, st.st_gid) != owner {
                match nix::unistd::fchownat(Some(fd), name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(()) => done.changed += 1,
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(err("chown", &path.join(std::ffi::OsStr::from_bytes(name.to_bytes())))(e)),
                }
            }
            if is_dir {
                pending.push(rel.join(std::ffi::OsStr::from_bytes(name.to_bytes())));
            }
        }
    }
    done.walked += 1;
    if (top_stat.st_uid, top_stat.st_gid) != owner {
        nix::unistd::fchown(top_fd, Some(uid), Some(gid)).map_err(err("chown", root))?;
        done.changed += 1;
    }
    Ok(Some(done))
}

/// Makes sure a file exists (created empty, never truncated) with `mode` and `owner`, changing only
/// what differs. Returns whether anything changed.
pub fn ensure_file(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> ExecResult<bool> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut changed = false;
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .mode(0o600)
                .open(path)
                .map_err(io_err(format!("create {}", path.display())))?;
            changed = true;
            file.metadata().map_err(io_err(format!("stat {}", path.display())))?
        }
        Err(e) => return Err(io_err(format!("stat {}", path.display()))(e)),
    };
    if !meta.file_type().is_file() {
        return Err(crate::ExecError::Other(format!("{} is not a regular file", path.display())));
    }
    if let Some(o) = owner.filter(|o| *o != (meta.uid(), meta.gid())) {
        std::os::unix::fs::lchown(path, Some(o.0), Some(o.1)).map_err(io_err(format!("chown {}", path.display())))?;
        changed = true;
    }
    if meta.mode() & 0o7777 != mode || changed {
        set_mode(path, mode)?;
        changed = true;
    }
    Ok(changed)
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
#[allow(clippy::disallowed_methods)]
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

    fn owner(p: &Path) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(p).expect("lstat");
        (m.uid(), m.gid())
    }

    fn ctime(p: &Path) -> (i64, i64) {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(p).expect("lstat");
        (m.ctime(), m.ctime_nsec())
    }

    /// Walks in process, changes only what differs, never follows a link out of the tree.
    #[test]
    fn own_tree_changes_only_what_differs_and_stays_inside() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: giving files away needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (tree, outside) = (dir.path().join("files"), dir.path().join("outside"));
        fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(tree.join("a/b/upload.txt"), b"x").expect("write");
        fs::write(outside.join("secret"), b"s").expect("write");
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).expect("symlink");
        let nobody = (65534, 65534);
        let done = own_tree(&tree, nobody).expect("walk").expect("exists");
        // files, a, a/b, a/b/upload.txt, a/link.
        assert_eq!((done.walked, done.changed), (5, 5), "{done:?}");
        for p in ["", "a", "a/b", "a/b/upload.txt", "a/link"] {
            assert_eq!(owner(&tree.join(p)), nobody, "{p}");
        }
        assert_eq!(owner(&outside), (0, 0), "followed a link out of the tree");
        assert_eq!(owner(&outside.join("secret")), (0, 0), "followed a link out of the tree");
        // Again: nothing changes, no inode is rewritten.
        let before = ctime(&tree.join("a/b/upload.txt"));
        let again = own_tree(&tree, nobody).expect("walk").expect("exists");
        assert_eq!((again.walked, again.changed), (5, 0));
        assert_eq!(ctime(&tree.join("a/b/upload.txt")), before);
        // One file of another owner: that one alone.
        chown(&tree.join("a/b/upload.txt"), (0, 0)).expect("chown");
        assert_eq!(own_tree(&tree, nobody).expect("walk").expect("exists").changed, 1);
        assert_eq!(own_tree(&dir.path().join("missing"), nobody).expect("walk"), None);
    }

    #[test]
    fn ensure_file_creates_never_truncates_and_changes_only_what_differs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("site.sqlite");
        assert!(ensure_file(&p, 0o660, None).expect("create"));
        assert_eq!(mode_of(&p), Some(0o660));
        fs::write(&p, b"data").expect("write");
        assert!(!ensure_file(&p, 0o660, None).expect("again"));
        assert_eq!(fs::read(&p).expect("read"), b"data");
        set_mode(&p, 0o644).expect("chmod");
        assert!(ensure_file(&p, 0o660, None).expect("mode"));
        assert_eq!(mode_of(&p), Some(0o660));
        std::os::unix::fs::symlink(&p, dir.path().join("link")).expect("symlink");
        assert!(ensure_file(&dir.path().join("link"), 0o660, None).is_err(), "a link is not a file");
    }

    #[test]
    fn missing_dirs_lists_outermost_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        assert_eq!(missing_dirs(&deep), vec![dir.path().join("a"), dir.path().join("a/b"), deep.clone()]);
    }
}
