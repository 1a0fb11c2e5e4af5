//! A host Fjord acts on. Today only the local machine; a remote host over SSH will be another variant
//! with the same operations, so callers never care where a step runs.

use crate::cmd::{self, Cmd, CmdOutput, OutputSink};
use crate::fsops;
use crate::ExecResult;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
pub enum Host {
    #[default]
    Local,
}

impl Host {
    pub async fn run(
        &self,
        cmd: &Cmd,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<CmdOutput> {
        match self {
            Host::Local => cmd::run(cmd, sink, cancel).await,
        }
    }

    pub async fn run_checked(
        &self,
        cmd: &Cmd,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<CmdOutput> {
        match self {
            Host::Local => cmd::run_checked(cmd, sink, cancel).await,
        }
    }

    pub async fn run_pipe(
        &self,
        from: &Cmd,
        to: &Cmd,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<CmdOutput> {
        match self {
            Host::Local => cmd::run_pipe(from, to, sink, cancel).await,
        }
    }

    /// Size of a file in bytes (0 when it does not exist).
    pub fn file_len(&self, path: &Path) -> u64 {
        match self {
            Host::Local => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        }
    }

    /// The bytes of a file from `offset` on (empty when it does not exist or is shorter).
    pub fn read_from(&self, path: &Path, offset: u64) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        match self {
            Host::Local => {
                let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
                let mut buf = Vec::new();
                if f.seek(SeekFrom::Start(offset)).is_ok() {
                    let _ = f.take(1 << 20).read_to_end(&mut buf);
                }
                buf
            }
        }
    }

    pub fn write_atomic(&self, path: &Path, bytes: &[u8], mode: u32) -> ExecResult<()> {
        match self {
            Host::Local => fsops::write_atomic(path, bytes, mode),
        }
    }

    pub fn write_atomic_owned(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> ExecResult<()> {
        match self {
            Host::Local => fsops::write_atomic_owned(path, bytes, mode, owner),
        }
    }

    pub fn chown(&self, path: &Path, owner: (u32, u32)) -> ExecResult<()> {
        match self {
            Host::Local => fsops::chown(path, owner),
        }
    }

    /// See [`fsops::own_tree`].
    pub fn own_tree(&self, root: &Path, owner: (u32, u32)) -> ExecResult<Option<fsops::TreeOwnership>> {
        match self {
            Host::Local => fsops::own_tree(root, owner),
        }
    }

    /// See [`fsops::ensure_file`].
    pub fn ensure_file(&self, path: &Path, mode: u32, owner: Option<(u32, u32)>) -> ExecResult<bool> {
        match self {
            Host::Local => fsops::ensure_file(path, mode, owner),
        }
    }

    /// Owner of `path` itself (a link is not followed).
    pub fn link_owner_of(&self, path: &Path) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        match self {
            Host::Local => std::fs::symlink_metadata(path).ok().map(|m| (m.uid(), m.gid())),
        }
    }

    pub fn owner_of(&self, path: &Path) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        match self {
            Host::Local => std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid())),
        }
    }

    pub fn read(&self, path: &Path) -> ExecResult<Option<Vec<u8>>> {
        match self {
            Host::Local => fsops::read_optional(path),
        }
    }

    pub fn mode_of(&self, path: &Path) -> Option<u32> {
        match self {
            Host::Local => fsops::mode_of(path),
        }
    }

    /// Whether `path` itself (a link is not followed) is a regular file.
    pub fn is_regular_file(&self, path: &Path) -> bool {
        match self {
            Host::Local => path.symlink_metadata().is_ok_and(|m| m.file_type().is_file()),
        }
    }

    /// Permission bits of `path` itself (a link is not followed).
    pub fn link_mode_of(&self, path: &Path) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        match self {
            Host::Local => path.symlink_metadata().ok().map(|m| m.permissions().mode() & 0o7777),
        }
    }

    pub fn exists(&self, path: &Path) -> bool {
        match self {
            Host::Local => path.symlink_metadata().is_ok(),
        }
    }

    pub fn missing_dirs(&self, path: &Path) -> Vec<PathBuf> {
        match self {
            Host::Local => fsops::missing_dirs(path),
        }
    }

    pub fn create_dirs(&self, path: &Path, mode: u32) -> ExecResult<()> {
        match self {
            Host::Local => fsops::create_dirs(path, mode),
        }
    }

    /// Removes a directory only if it is empty; anything else is left alone.
    pub fn remove_empty_dir(&self, path: &Path) {
        match self {
            Host::Local => {
                let _ = std::fs::remove_dir(path);
            }
        }
    }

    pub fn remove_all(&self, path: &Path) -> ExecResult<()> {
        match self {
            Host::Local => fsops::remove_all(path),
        }
    }

    pub fn rename(&self, from: &Path, to: &Path) -> ExecResult<()> {
        match self {
            Host::Local => fsops::rename(from, to),
        }
    }
}
