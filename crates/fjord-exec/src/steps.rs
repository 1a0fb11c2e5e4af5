//! Applying and undoing plan steps.
//!
//! The protocol, which makes a crash at any point recoverable: [`Executor::prepare`] works out and saves
//! what undoing a step needs (a copy of the file about to be overwritten, the list of directories about
//! to be created, where a removed path will be moved), the daemon records that in the task's undo log,
//! and only then [`Executor::apply`] runs the step. [`Executor::undo`] must work whether the step was
//! applied fully, partly or not at all, so the daemon can undo a step that was running when it died.

use crate::cmd::{Cmd, OutputSink};
use crate::fsops::{aside_path, resolve_owner};
use crate::host::Host;
use crate::secrets::Secret;
use crate::secrets::SecretStore;
use crate::{ExecError, ExecResult};
use fjord_core::plan::{mask_secrets, shell_words, SECRET_CLOSE, SECRET_OPEN};
use fjord_core::{CertMeta, CertRequest, CertSource, Command, FileContent, LogStream, Step, TaskId};

/// The files of an installed certificate, in its directory, with their modes.
pub const CERT_FILES: [(&str, u32); 3] = [("fullchain.pem", 0o644), ("key.pem", 0o600), ("cert.json", 0o644)];
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What undoing one applied step needs; stored (as JSON) in the task's undo log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
// Undo entries live briefly and are stored as JSON; their size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum StepUndo {
    Nothing,
    /// Remove these directories (innermost first) if they are empty.
    RemoveDirs {
        dirs: Vec<String>,
    },
    /// Put the saved copy back (or remove the file if there was none before).
    RestoreFile {
        path: String,
        saved: Option<String>,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    },
    /// Give `path` back to `owner` (with `tree`, everything in it too) and, for a file, `mode`.
    Reown {
        path: String,
        owner: (u32, u32),
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default)]
        tree: bool,
    },
    /// Move the removed path back from where it was put aside.
    MoveBack {
        path: String,
        aside: String,
    },
    Run {
        cmd: Command,
    },
    /// Move `to` back to `from` (undoing a move; unlike `MoveBack`, nothing is deleted on success).
    Unmove {
        from: String,
        to: String,
    },
    /// Remove files this step created (a backup archive and its checksum).
    RemoveFiles {
        paths: Vec<String>,
    },
    /// Remove a Unix user and its group this step created.
    RemoveUser {
        name: String,
    },
    /// Undo several things (a certificate step restores its key, chain and metadata).
    Many {
        entries: Vec<StepUndo>,
    },
    /// Reload the service again once every other step is undone (so it serves the old config), or,
    /// if this task started it, stop it (first, while its pid file is still there).
    Reload {
        service: String,
        check: Option<Command>,
        reload: Command,
        pidfile: String,
        #[serde(default = "yes")]
        was_running: bool,
    },
}

impl StepUndo {
    /// Whether undoing runs commands (dropping a database and its user, say), which can be tried
    /// again later when what they talk to was down, with nothing else that a second try could harm
    /// (removing files again is harmless).
    pub fn is_command(&self) -> bool {
        fn retryable(u: &StepUndo) -> bool {
            match u {
                StepUndo::Run { .. } | StepUndo::RemoveFiles { .. } => true,
                StepUndo::Many { entries } => entries.iter().all(retryable),
                _ => false,
            }
        }
        fn runs(u: &StepUndo) -> bool {
            match u {
                StepUndo::Run { .. } => true,
                StepUndo::Many { entries } => entries.iter().any(runs),
                _ => false,
            }
        }
        retryable(self) && runs(self)
    }
}

/// Applies steps on one host. Holds what steps need beyond their own data: the secrets store (to fill
/// secret markers), where saved copies go, and the gates that coalesce service reloads.
#[derive(Debug, Clone)]
pub struct Executor {
    pub host: Host,
    pub secrets: SecretStore,
    /// Directory for saved copies of overwritten files, `<state>/undo`.
    pub undo_dir: PathBuf,
    /// Per service: when its last reload started. See [`Executor::reload_service`].
    pub reload_gates: ReloadGates,
}

pub type ReloadGates = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>>;

/// What a `Backup` step archives of the database.
pub(crate) struct BackupDb<'a> {
    pub dump: Option<&'a Command>,
    pub physical: Option<&'a fjord_core::PhysicalDb>,
    pub cache_tables: Option<&'a fjord_core::CacheTables>,
}

/// Records (manifest, task log) the cache tables archived without their rows.
fn note_rows_left_out(sink: &Option<OutputSink>, manifest: &mut serde_json::Value, skipped: Vec<String>) {
    if !skipped.is_empty() {
        crate::physical::note(sink, format!("cache tables archived without their rows: {}", skipped.join(", ")));
    }
    manifest["tables_without_rows"] = serde_json::json!(skipped);
}

impl Executor {
    pub fn new(host: Host, secrets: SecretStore, undo_dir: PathBuf) -> Executor {
        Executor { host, secrets, undo_dir, reload_gates: Default::default() }
    }

    /// Turns a planned command into a runnable one: secret markers filled, temp files written (0600),
    /// `{tmp:NAME}` and `{pid:PATH}` replaced. The temp dir is removed when the guard drops.
    pub(crate) fn materialize(&self, c: &Command) -> ExecResult<(Cmd, Option<TempDirGuard>)> {
        // A command run as a site's user gets its temp files in a directory of that user's, under a
        // root-owned directory it may only pass through (the undo dir, root's, is closed to it).
        let owner = c.user.as_deref().map(resolve_owner).transpose()?;
        let guard = if c.files.is_empty() {
            None
        } else {
            // Named after this process, so a later daemon can tell an orphan (its process died
            // mid-command, leaving credentials behind) from a command still running.
            let name = format!("tmp-{}-{:016x}", std::process::id(), rand::random::<u64>());
            let dir = match owner {
                None => self.undo_dir.join(name),
                Some(_) => {
                    let base = self.user_tmp_dir();
                    self.host.create_dirs(&base, 0o711)?;
                    base.join(name)
                }
            };
            self.host.create_dirs(&dir, 0o700)?;
            if let Some(o) = owner {
                self.host.chown(&dir, o)?;
            }
            for f in &c.files {
                if f.name.contains('/') || f.name.starts_with('.') {
                    return Err(ExecError::Other(format!("bad temp file name {:?}", f.name)));
                }
                let content = self.resolve_secrets(&f.content)?;
                self.host.write_atomic_owned(&dir.join(&f.name), content.as_bytes(), 0o600, owner)?;
            }
            Some(TempDirGuard { host: self.host.clone(), dir })
        };
        let subst = |a: &str| -> ExecResult<String> {
            let mut out = a.to_string();
            if let Some(g) = &guard {
                for f in &c.files {
                    out = out.replace(&format!("{{tmp:{}}}", f.name), &g.dir.join(&f.name).to_string_lossy());
                }
            }
            if let Some(start) = out.find("{pid:") {
                let end =
                    out[start..].find('}').map(|e| start + e).ok_or_else(|| ExecError::Other("bad {pid:}".into()))?;
                let pidfile = &out[start + 5..end];
                let pid = read_pid(&self.host, Path::new(pidfile))
                    .ok_or_else(|| ExecError::Other(format!("no pid in {pidfile}")))?;
                out = format!("{}{pid}{}", &out[..start], &out[end + 1..]);
            }
            Ok(out)
        };
        let mut cmd = Cmd::new(c.argv.iter().map(|a| subst(a)).collect::<ExecResult<Vec<_>>>()?)
            .timeout(Duration::from_secs(c.timeout_secs));
        for (k, v) in &c.env {
            cmd = cmd.env(k.clone(), self.resolve_secrets(&subst(v)?)?);
        }
        if let Some(stdin) = &c.stdin {
            cmd = cmd.stdin(self.resolve_secrets(stdin)?.into_bytes());
        }
        cmd.stdin_file = c.stdin_file.as_ref().map(PathBuf::from);
        cmd.cwd = c.cwd.clone();
        cmd.user = c.user.clone();
        Ok((cmd, guard))
    }

    /// Where commands run as a site's user keep their temp files: beside the undo dir, root's, 0711.
    fn user_tmp_dir(&self) -> PathBuf {
        self.undo_dir.with_file_name("user-tmp")
    }

    /// Removes the temp directories of commands whose process is gone (a daemon killed mid-command
    /// leaves them behind, with the credentials they held). Returns how many it removed.
    pub fn sweep_orphan_temp_dirs(&self) -> usize {
        let mut removed = 0;
        for base in [self.undo_dir.clone(), self.user_tmp_dir()] {
            for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix("tmp-") else { continue };
                // `tmp-PID-RANDOM`; an older Fjord's `tmp-RANDOM` has no owner left either.
                let owner = rest.split_once('-').and_then(|(pid, _)| pid.parse::<i32>().ok());
                let orphan = match owner {
                    Some(pid) => pid != std::process::id() as i32 && !pid_alive(pid),
                    None => true,
                };
                if orphan && self.host.remove_all(&entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Runs a planned command; its output goes to `sink`, masked where the plan says so.
    pub async fn run_command(
        &self,
        c: &Command,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<crate::CmdOutput> {
        let (cmd, _guard) = self.materialize(c)?;
        let sink = match (sink, c.redact.is_empty()) {
            (Some(s), false) => Some(redacting(s, c.redact.clone())),
            (s, _) => s,
        };
        self.host.run_checked(&cmd, sink, cancel).await
    }

    /// Checks and reloads (or starts) a service. Reloads are coalesced: a caller whose files were
    /// written before a reload of the same service *started* needs no reload of its own, so concurrent
    /// tasks share one.
    pub async fn reload_service(
        &self,
        service: &str,
        check: Option<&Command>,
        start: &Command,
        reload: &Command,
        pidfile: &str,
        sink: Option<OutputSink>,
    ) -> ExecResult<Option<String>> {
        let requested = Instant::now();
        let gate = {
            let mut gates = self.reload_gates.lock().expect("reload gate lock");
            gates.entry(service.to_string()).or_default().clone()
        };
        let mut last = gate.lock().await;
        if last.is_some_and(|t| t > requested) {
            return Ok(Some(format!("{service} was reloaded by a concurrent task")));
        }
        *last = Some(Instant::now());
        if let Some(check) = check {
            self.run_command(check, sink.clone(), None).await?;
        }
        if let Some(master) = read_pid(&self.host, Path::new(pidfile)).filter(|p| pid_alive(*p)) {
            let before = children_of(master);
            self.run_command(reload, sink, None).await?;
            settle(master, &before).await;
            Ok(None)
        } else {
            self.run_command(start, sink, None).await?;
            Ok(Some(format!("{service} was not running: started it")))
        }
    }
    /// The `Backup` step: the database (dumped, or its tablespace files where `physical` allows) and
    /// the trees into one archive.
    #[allow(clippy::too_many_arguments)]
    async fn backup(
        &self,
        archive: &Path,
        db: BackupDb<'_>,
        trees: &[fjord_core::BackupTree],
        manifest: &serde_json::Value,
        compression: fjord_core::Compression,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<Option<String>> {
        let BackupDb { dump, physical, cache_tables } = db;
        let dump_file = archive.with_extension("dump");
        let trees: Vec<crate::backup::Tree> = trees
            .iter()
            .map(|t| crate::backup::Tree { name: t.name.clone(), path: t.path.clone(), exclude: t.exclude.clone() })
            .collect();
        // Refuse early rather than fill the disk: first for the files, then (once the dump's
        // size is known, and the dump itself took its room) for the whole archive.
        let dir = archive.parent().unwrap_or(Path::new("/")).to_path_buf();
        let files = crate::backup::trees_size(&trees);
        crate::backup::check_space(&dir, files, "site files")?;
        let mut manifest = manifest.clone();
        if let Some(cache) = cache_tables {
            manifest["cache_tables"] = serde_json::json!(cache.patterns);
        }
        if let Some(db) = physical {
            match crate::physical::probe(self, db, false).await? {
                Ok(mut layout) => {
                    manifest["db_format"] = "physical".into();
                    if let Some(cache) = cache_tables {
                        let (skipped, kept) = layout.tables.into_iter().partition(|t| cache.matches(t));
                        layout.tables = kept;
                        note_rows_left_out(&sink, &mut manifest, skipped);
                    }
                    return self.backup_physical(archive, db, layout, &manifest, trees, files, compression, sink).await;
                }
                Err(why) => crate::physical::note(&sink, format!("logical database dump: {why}")),
            }
        }
        if dump.is_some() {
            manifest["db_format"] = "logical".into();
        }
        if let Some(cmd) = dump {
            let mut cmd = cmd.clone();
            if let Some((cache, list)) = cache_tables.and_then(|c| c.list.as_ref().map(|l| (c, l))) {
                let tables = self.run_command(list, None, cancel.clone()).await?.stdout;
                let skipped: Vec<String> = tables
                    .lines()
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && cache.matches(t))
                    .map(String::from)
                    .collect();
                for t in &skipped {
                    cmd.insert_option(format!("{}{t}", cache.skip_arg));
                }
                note_rows_left_out(&sink, &mut manifest, skipped);
            }
            let (mut c, _guard) = self.materialize(&cmd)?;
            c.stdout_file = Some(dump_file.clone());
            if let Err(e) = self.host.run_checked(&c, sink, cancel).await {
                let _ = self.host.remove_all(&dump_file);
                // A dump that died because the disk filled says so.
                if crate::backup::free_bytes(&dir).is_ok_and(|free| free < 1 << 20) {
                    return Err(ExecError::Other(format!(
                        "the backups filesystem {} filled up during the database dump: the partial \
                         dump was removed ({e})",
                        dir.display()
                    )));
                }
                return Err(e);
            }
            let dumped = std::fs::metadata(&dump_file).map(|m| m.len()).unwrap_or(0);
            if let Err(e) = crate::backup::check_space(&dir, files + dumped, "database dump and site files") {
                let _ = self.host.remove_all(&dump_file);
                return Err(e);
            }
        }
        let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let has_dump = dump.is_some();
        let (a, d) = (archive.to_path_buf(), dump_file.clone());
        let info = tokio::task::spawn_blocking(move || {
            let db = if has_dump { crate::backup::ArchiveDb::Dump(&d) } else { crate::backup::ArchiveDb::None };
            crate::backup::write_archive(&a, &manifest, db, &trees, compression)
        })
        .await
        .map_err(|e| ExecError::Other(format!("backup thread: {e}")))?;
        let _ = self.host.remove_all(&dump_file);
        let info = info?;
        Ok(Some(format!("archive of {} bytes, sha256 {}", info.size, info.sha256)))
    }

    /// A backup whose database part is its structure and its tables' tablespace files, archived
    /// while the tables are flushed for export; they unlock as soon as their files are in the stream.
    #[allow(clippy::too_many_arguments)]
    async fn backup_physical(
        &self,
        archive: &Path,
        db: &fjord_core::PhysicalDb,
        layout: crate::physical::Layout,
        manifest: &serde_json::Value,
        trees: Vec<crate::backup::Tree>,
        files: u64,
        compression: fjord_core::Compression,
        sink: Option<OutputSink>,
    ) -> ExecResult<Option<String>> {
        let dir = archive.parent().unwrap_or(Path::new("/")).to_path_buf();
        let schema_file = archive.with_extension("schema");
        let schema =
            db.schema.as_ref().ok_or_else(|| ExecError::Other("no structure dump for a physical backup".into()))?;
        let (mut c, guard) = self.materialize(schema)?;
        c.stdout_file = Some(schema_file.clone());
        let dumped = self.host.run_checked(&c, sink.clone(), None).await;
        drop(guard);
        let result = async {
            dumped?;
            let mut db_files = vec![("schema.sql".to_string(), schema_file.clone())];
            db_files.extend(crate::physical::table_files(&layout.dir, &layout.tables));
            let db_bytes: u64 = db_files
                .iter()
                .filter(|(n, _)| !n.ends_with(".cfg"))
                .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum();
            crate::backup::check_space(&dir, files + db_bytes, "database files and site files")?;
            let export = crate::physical::export(self, db, &layout.tables).await?;
            let manifest = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let a = archive.to_path_buf();
            let writer = tokio::task::spawn_blocking(move || {
                let done = Box::new(move || {
                    let _ = tx.send(());
                });
                crate::backup::write_archive(
                    &a,
                    &manifest,
                    crate::backup::ArchiveDb::Files { files: db_files, done },
                    &trees,
                    compression,
                )
            });
            // The tables unlock once their files are archived (or the writer gave up).
            let _ = rx.await;
            let locked = export.release().await;
            let info = writer.await.map_err(|e| ExecError::Other(format!("backup thread: {e}")))??;
            let locked = locked?;
            crate::physical::note(&sink, format!("physical database copy: {locked}"));
            Ok(Some(format!(
                "archive of {} bytes, sha256 {}; physical database copy ({locked})",
                info.size, info.sha256
            )))
        }
        .await;
        let _ = self.host.remove_all(&schema_file);
        result
    }

    /// The `OwnTrees` step: walks a tree only when the task wrote it (`written`) or its top has
    /// another owner; says in the log what it walked and changed.
    async fn own_trees(&self, paths: &[String], owner: &str, written: bool) -> ExecResult<Option<String>> {
        let target = resolve_owner(owner)?;
        let mut notes = Vec::new();
        let mut unwalked = 0;
        for path in paths {
            let p = Path::new(path);
            match self.host.link_owner_of(p) {
                None => continue,
                Some(o) if o == target && !written => {
                    unwalked += 1;
                    continue;
                }
                Some(_) => {}
            }
            let (host, root) = (self.host.clone(), p.to_path_buf());
            let done = tokio::task::spawn_blocking(move || host.own_tree(&root, target))
                .await
                .map_err(|e| ExecError::Other(format!("ownership thread: {e}")))??;
            if let Some(d) = done {
                let mounts = match d.other_filesystems {
                    0 => String::new(),
                    n => format!(", left {n} mount point(s) alone"),
                };
                notes.push(format!("walked {path}: {} entries, gave {} to {owner}{mounts}", d.walked, d.changed));
            }
        }
        if unwalked > 0 {
            notes.push(format!("{unwalked} tree(s) already {owner}'s: left as they are"));
        }
        Ok((!notes.is_empty()).then(|| notes.join("; ")))
    }

    /// Whether applying `step` would change nothing (the directory, file, stamp or trees are already
    /// as it says): looked at in process, without acting. The runner neither records nor applies such
    /// a step, so a verify of a site whose derived state is on disk costs a few `stat`s and reads,
    /// not a write to the state database per step. Steps that act elsewhere (commands, services,
    /// HTTP checks) are never "in place".
    pub fn in_place(&self, step: &Step) -> ExecResult<bool> {
        // The same comparisons `apply` makes before it acts.
        let has = |p: &Path, mode: u32, owner: &Option<String>| -> ExecResult<bool> {
            let owner = owner.as_deref().map(resolve_owner).transpose()?;
            Ok(self.host.exists(p)
                && self.host.mode_of(p) == Some(mode)
                && owner.is_none_or(|o| self.host.owner_of(p) == Some(o)))
        };
        Ok(match step {
            Step::MakeDir { path, mode, owner } => has(Path::new(path), *mode, owner)?,
            Step::WriteFile { path, content, mode, owner } => {
                let FileContent::Text { text } = content;
                let p = Path::new(path);
                has(p, *mode, owner)? && self.host.read(p)?.as_deref() == Some(self.resolve_secrets(text)?.as_bytes())
            }
            Step::EnsureFile { path, mode, owner } => {
                let p = Path::new(path);
                let owner = owner.as_deref().map(resolve_owner).transpose()?;
                self.host.is_regular_file(p)
                    && self.host.link_mode_of(p) == Some(*mode)
                    && owner.is_none_or(|o| self.host.link_owner_of(p) == Some(o))
            }
            Step::RunOnce { cmd, stamp, .. } => {
                self.host.read(Path::new(stamp))?.as_deref() == Some(self.command_digest(cmd)?.as_bytes())
            }
            Step::OwnTrees { paths, owner, written: false } => {
                let target = resolve_owner(owner)?;
                paths.iter().all(|p| self.host.link_owner_of(Path::new(p)).is_none_or(|o| o == target))
            }
            Step::RemovePath { path } => !self.host.exists(Path::new(path)),
            _ => false,
        })
    }

    fn task_undo_dir(&self, task: TaskId) -> PathBuf {
        self.undo_dir.join(task.0.to_string())
    }

    /// Works out, and saves, what undoing `step` will need. Must be called (and its result recorded)
    /// before [`Executor::apply`].
    pub fn prepare(&self, task: TaskId, idx: usize, step: &Step) -> ExecResult<StepUndo> {
        Ok(match step {
            Step::MakeDir { path, .. } => StepUndo::RemoveDirs {
                dirs: self
                    .host
                    .missing_dirs(Path::new(path))
                    .into_iter()
                    .take(1)
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
            },
            Step::WriteFile { path, content: FileContent::Text { text }, mode, .. } => {
                let p = Path::new(path);
                let old = self.host.read(p)?;
                // A write that will change nothing needs no saved copy (verify of many sites writes
                // mostly such files).
                if old.is_some()
                    && self.host.mode_of(p) == Some(*mode)
                    && old.as_deref() == Some(self.resolve_secrets(text)?.as_bytes())
                {
                    return Ok(StepUndo::Nothing);
                }
                let saved = match old {
                    Some(old) => {
                        let dir = self.task_undo_dir(task);
                        self.host.create_dirs(&dir, 0o700)?;
                        let copy = dir.join(format!("step-{idx}"));
                        self.host.write_atomic(&copy, &old, 0o600)?;
                        Some(copy.to_string_lossy().into_owned())
                    }
                    None => None,
                };
                StepUndo::RestoreFile {
                    path: path.clone(),
                    saved,
                    mode: self.host.mode_of(p),
                    owner: self.host.owner_of(p),
                }
            }
            Step::RunOnce { stamp, undo, .. } => {
                let forget = StepUndo::RemoveFiles { paths: vec![stamp.clone()] };
                match undo {
                    None => forget,
                    Some(cmd) => StepUndo::Many { entries: vec![forget, StepUndo::Run { cmd: cmd.clone() }] },
                }
            }
            Step::EnsureFile { path, .. } => {
                let p = Path::new(path);
                match self.host.link_owner_of(p) {
                    None => StepUndo::RemoveFiles { paths: vec![path.clone()] },
                    Some(owner) => {
                        StepUndo::Reown { path: path.clone(), owner, mode: self.host.mode_of(p), tree: false }
                    }
                }
            }
            Step::OwnTrees { written: true, .. } => StepUndo::Nothing,
            Step::OwnTrees { paths, owner, written: false } => {
                let target = resolve_owner(owner)?;
                let mut entries: Vec<StepUndo> = paths
                    .iter()
                    .filter_map(|p| {
                        let was = self.host.link_owner_of(Path::new(p)).filter(|o| *o != target)?;
                        Some(StepUndo::Reown { path: p.clone(), owner: was, mode: None, tree: true })
                    })
                    .collect();
                match entries.len() {
                    0 => StepUndo::Nothing,
                    1 => entries.remove(0),
                    _ => StepUndo::Many { entries },
                }
            }
            Step::RemovePath { path } => StepUndo::MoveBack {
                path: path.clone(),
                aside: aside_path(Path::new(path), &format!("{}-{idx}", task.0)).to_string_lossy().into_owned(),
            },
            Step::Run { undo: Some(cmd), .. }
            | Step::Pipe { undo: Some(cmd), .. }
            | Step::LoadDatabase { undo: Some(cmd), .. } => StepUndo::Run { cmd: cmd.clone() },
            Step::Extract { dest, .. } => StepUndo::RemoveFiles { paths: vec![dest.clone()] },
            Step::Move { from, to } => StepUndo::Unmove { from: from.clone(), to: to.clone() },
            Step::Backup { archive, .. } => {
                let a = Path::new(archive);
                StepUndo::RemoveFiles {
                    paths: vec![
                        archive.clone(),
                        crate::backup::checksum_path(a).to_string_lossy().into_owned(),
                        a.with_extension("partial").to_string_lossy().into_owned(),
                        a.with_extension("dump").to_string_lossy().into_owned(),
                        a.with_extension("schema").to_string_lossy().into_owned(),
                    ],
                }
            }
            Step::Service { service, check, reload, pidfile, .. } => StepUndo::Reload {
                service: service.clone(),
                check: check.clone(),
                reload: reload.clone(),
                pidfile: pidfile.clone(),
                was_running: self.service_running(pidfile),
            },
            Step::Certificate { dir, .. } => {
                let mut entries = Vec::new();
                for (i, (name, mode)) in CERT_FILES.iter().enumerate() {
                    let path = format!("{dir}/{name}");
                    entries.push(self.save_for_undo(task, idx * 100 + i, &path, *mode)?);
                }
                StepUndo::Many { entries }
            }
            Step::UnixUser { name, .. } if !crate::users::user_exists(name) => {
                StepUndo::RemoveUser { name: name.clone() }
            }
            Step::UnixUser { .. }
            | Step::RemoveUnixUser { .. }
            | Step::WaitForPath { .. }
            | Step::Run { undo: None, .. }
            | Step::Pipe { undo: None, .. }
            | Step::LoadDatabase { undo: None, .. }
            | Step::RevokeReplaced { .. }
            | Step::HttpCheck { .. }
            | Step::Mark { .. }
            | Step::Sleep { .. }
            | Step::Fail { .. } => StepUndo::Nothing,
        })
    }

    /// Saves a copy of `path` (if it exists) so undo can put it back.
    fn save_for_undo(&self, task: TaskId, slot: usize, path: &str, mode: u32) -> ExecResult<StepUndo> {
        let p = Path::new(path);
        let saved = match self.host.read(p)? {
            Some(old) => {
                let dir = self.task_undo_dir(task);
                self.host.create_dirs(&dir, 0o700)?;
                let copy = dir.join(format!("step-{slot}"));
                self.host.write_atomic(&copy, &old, 0o600)?;
                Some(copy.to_string_lossy().into_owned())
            }
            None => None,
        };
        Ok(StepUndo::RestoreFile {
            path: path.to_string(),
            saved,
            mode: self.host.mode_of(p).or(Some(mode)),
            owner: self.host.owner_of(p),
        })
    }

    /// Obtains a certificate and installs it: key (0600), chain, and `cert.json` (see [`CertMeta`]).
    async fn install_certificate(
        &self,
        names: &[String],
        dir: &str,
        acme_dir: &str,
        request: &CertRequest,
        sink: Option<OutputSink>,
    ) -> ExecResult<Option<String>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let dirp = Path::new(dir);
        self.host.create_dirs(dirp, 0o700)?;
        let chain_path = dirp.join(CERT_FILES[0].0);
        let old_chain = self.host.read(&chain_path)?.map(|b| String::from_utf8_lossy(&b).into_owned());
        let (chain, key, meta) = match request {
            CertRequest::SelfSigned { days } => {
                let (chain, key) = crate::tls::self_signed(names, *days)?;
                let info = crate::tls::cert_info(&crate::tls::pem_certs(&chain)?[0])?;
                let meta = CertMeta {
                    source: CertSource::SelfSigned,
                    names: names.to_vec(),
                    failed: vec![],
                    not_after: info.not_after_ms,
                    issued_at: now,
                };
                (chain, Secret::new(key), meta)
            }
            CertRequest::Uploaded { cert_pem, key_secret } => {
                let key = self.secrets.require(key_secret)?;
                let meta = crate::tls::check_upload(cert_pem, key.expose(), names, now)?;
                (cert_pem.clone(), key, meta)
            }
            CertRequest::Acme { directory, ca_file, contact, drop_failing_aliases, .. } => {
                let req = crate::acme::AcmeRequest {
                    directory,
                    ca_file: ca_file.as_deref(),
                    contact: contact.as_deref(),
                    names,
                    acme_dir,
                    drop_failing_aliases: *drop_failing_aliases,
                };
                let issued = crate::acme::obtain(&self.host, &self.secrets, &req, &sink).await?;
                let info = crate::tls::cert_info(&crate::tls::pem_certs(&issued.chain_pem)?[0])?;
                let meta = CertMeta {
                    source: CertSource::Acme,
                    names: issued.names.clone(),
                    failed: issued.failed.iter().map(|(n, _)| n.clone()).collect(),
                    not_after: info.not_after_ms,
                    issued_at: now,
                };
                (issued.chain_pem, issued.key_pem, meta)
            }
        };
        self.host.write_atomic(&dirp.join(CERT_FILES[1].0), key.expose().as_bytes(), 0o600)?;
        self.host.write_atomic(&chain_path, chain.as_bytes(), 0o644)?;
        let json = serde_json::to_vec_pretty(&meta).expect("certificate metadata serializes");
        self.host.write_atomic(&dirp.join(CERT_FILES[2].0), &json, 0o644)?;
        if let (CertRequest::Acme { revoke_old: true, .. }, Some(old)) = (request, old_chain) {
            // Revoked by a later step, once the new certificate serves: a rollback before that puts
            // back a certificate that still works.
            self.host.write_atomic(&dirp.join(REPLACED_CERT), old.as_bytes(), 0o644)?;
        }
        let left_out =
            if meta.failed.is_empty() { String::new() } else { format!("; left out: {}", meta.failed.join(", ")) };
        Ok(Some(format!("{} certificate for {}{left_out}", meta.source, meta.names.join(", "))))
    }

    /// A digest of what running `c` would do: its argv, environment, input and files with their
    /// secrets filled in (a new password is a new command).
    fn command_digest(&self, c: &Command) -> ExecResult<String> {
        use sha2::Digest;
        let mut resolved = c.clone();
        resolved.stdin = c.stdin.as_deref().map(|s| self.resolve_secrets(s)).transpose()?;
        for f in &mut resolved.files {
            f.content = self.resolve_secrets(&f.content)?;
        }
        for (_, v) in &mut resolved.env {
            *v = self.resolve_secrets(v)?;
        }
        let json = serde_json::to_vec(&resolved).expect("a command serializes");
        Ok(hex::encode(sha2::Sha256::digest(&json)))
    }

    /// Fills secret markers in file content from the secrets store.
    pub fn resolve_secrets(&self, text: &str) -> ExecResult<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(SECRET_OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + SECRET_OPEN.len()..];
            let end = after.find(SECRET_CLOSE).ok_or_else(|| ExecError::Other("unterminated secret marker".into()))?;
            let key = &after[..end];
            let secret = match key.strip_suffix(fjord_core::plan::SECRET_GENERATE) {
                Some(k) => self.secrets.get_or_generate(k)?,
                None => self.secrets.require(key)?,
            };
            out.push_str(secret.expose());
            rest = &after[end + SECRET_CLOSE.len()..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Applies one step. `sink` receives the output of commands; `cancel` stops a running command.
    /// Returns a note for the log when the step did nothing because nothing needed doing.
    pub async fn apply(
        &self,
        task: TaskId,
        idx: usize,
        step: &Step,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<Option<String>> {
        match step {
            Step::MakeDir { path, mode, owner } => {
                let p = Path::new(path);
                let owner = owner.as_deref().map(resolve_owner).transpose()?;
                if self.host.exists(p)
                    && self.host.mode_of(p) == Some(*mode)
                    && owner.is_none_or(|o| self.host.owner_of(p) == Some(o))
                {
                    return Ok(Some(format!("{path} already exists")));
                }
                self.host.create_dirs(p, *mode)?;
                if let Some(o) = owner {
                    self.host.chown(p, o)?;
                }
                Ok(None)
            }
            Step::WriteFile { path, content, mode, owner } => {
                let FileContent::Text { text } = content;
                let bytes = self.resolve_secrets(text)?.into_bytes();
                let p = Path::new(path);
                let owner = owner.as_deref().map(resolve_owner).transpose()?;
                if self.host.read(p)?.as_deref() == Some(&bytes[..])
                    && self.host.mode_of(p) == Some(*mode)
                    && owner.is_none_or(|o| self.host.owner_of(p) == Some(o))
                {
                    return Ok(Some(format!("{path} is already up to date")));
                }
                self.host.write_atomic_owned(p, &bytes, *mode, owner)?;
                Ok(None)
            }
            Step::RunOnce { label, cmd, stamp, .. } => {
                let digest = self.command_digest(cmd)?;
                let stamp = Path::new(stamp);
                if self.host.read(stamp)?.as_deref() == Some(digest.as_bytes()) {
                    return Ok(Some(format!("{label}: done before, nothing changed since")));
                }
                self.run_command(cmd, sink, cancel).await?;
                if let Some(dir) = stamp.parent() {
                    self.host.create_dirs(dir, 0o700)?;
                }
                self.host.write_atomic(stamp, digest.as_bytes(), 0o600)?;
                Ok(None)
            }
            Step::EnsureFile { path, mode, owner } => {
                let owner = owner.as_deref().map(resolve_owner).transpose()?;
                let changed = self.host.ensure_file(Path::new(path), *mode, owner)?;
                Ok((!changed).then(|| format!("{path} is already in place")))
            }
            Step::OwnTrees { paths, owner, written } => self.own_trees(paths, owner, *written).await,
            Step::RemovePath { path } => {
                let p = Path::new(path);
                if !self.host.exists(p) {
                    return Ok(Some(format!("{path} is already gone")));
                }
                let aside = aside_path(p, &format!("{}-{idx}", task.0));
                self.host.rename(p, &aside)?;
                Ok(None)
            }
            Step::Run { cmd, .. } => {
                self.run_command(cmd, sink, cancel).await?;
                Ok(None)
            }
            Step::Service { service, check, start, reload, pidfile, .. } => {
                self.reload_service(service, check.as_ref(), start, reload, pidfile, sink).await
            }
            Step::Pipe { from, to, physical, .. } => {
                if let Some(copy) = physical {
                    match self.physical_copy(copy, to, sink.clone(), cancel.clone()).await? {
                        Ok(note) => return Ok(Some(note)),
                        Err(why) => crate::physical::note(&sink, format!("logical database copy: {why}")),
                    }
                }
                let (from, _g1) = self.materialize(from)?;
                let (to, _g2) = self.materialize(to)?;
                self.host.run_pipe(&from, &to, sink, cancel).await?;
                Ok(None)
            }
            Step::Mark { name } => Ok(Some(format!("mark {name}"))),
            Step::HttpCheck { url, host, expect, contains, error_log } => {
                // Errors the site logs from now on count against it.
                let log_offset = error_log.as_deref().map(|l| self.host.file_len(Path::new(l)));
                // A freshly started PHP-FPM or web server may need a moment: ask again, soon at first
                // (no fixed wait in a task's path), for up to five seconds.
                let mut last = String::new();
                let deadline = Instant::now() + Duration::from_secs(5);
                for attempt in 0u32.. {
                    if attempt > 0 {
                        if Instant::now() >= deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis((10u64 << attempt.min(5)).min(250))).await;
                    }
                    match crate::http::get(url, host, &[]).await {
                        Ok(a) if crate::steps::php_fatal(&a.body).is_some() => {
                            return Err(ExecError::Other(format!(
                                "{host} answered {} with a PHP error: {}",
                                a.status,
                                crate::steps::php_fatal(&a.body).unwrap_or_default()
                            )));
                        }
                        Ok(a)
                            if expect.contains(&a.status)
                                && contains.as_ref().is_none_or(|c| a.body.contains(c.as_str())) =>
                        {
                            if let (Some(log), Some(offset)) = (error_log, log_offset) {
                                let new = self.host.read_from(Path::new(log), offset);
                                if let Some(line) = crate::steps::php_fatal(&String::from_utf8_lossy(&new)) {
                                    return Err(ExecError::Other(format!(
                                        "{host} answered {} but logged a PHP error: {line}",
                                        a.status
                                    )));
                                }
                            }
                            return Ok(Some(format!("{host} answered {}", a.status)));
                        }
                        Ok(a) => {
                            // A PHP fatal error logged since the check began is the answer: no retry.
                            if let (Some(log), Some(offset)) = (error_log, log_offset) {
                                let new = self.host.read_from(Path::new(log), offset);
                                if let Some(line) = crate::steps::php_fatal(&String::from_utf8_lossy(&new)) {
                                    return Err(ExecError::Other(format!(
                                        "{host} answered {} and logged a PHP error: {line}",
                                        a.status
                                    )));
                                }
                            }
                            last = format!(
                                "{host} answered {} (expected {expect:?}{}): {}",
                                a.status,
                                contains.as_ref().map(|c| format!(" containing {c:?}")).unwrap_or_default(),
                                a.body.chars().take(300).collect::<String>()
                            )
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(ExecError::Other(last))
            }
            Step::Extract { archive, sha256, dest } => {
                let (a, s, d) = (PathBuf::from(archive), sha256.clone(), PathBuf::from(dest));
                tokio::task::spawn_blocking(move || crate::backup::unpack_archive(&a, &s, &d))
                    .await
                    .map_err(|e| ExecError::Other(format!("unpack thread: {e}")))??;
                Ok(None)
            }
            Step::Move { from, to } => {
                let (f, t) = (Path::new(from), Path::new(to));
                if !self.host.exists(f) {
                    return Ok(Some(format!("{from} does not exist: nothing to move")));
                }
                self.host.rename(f, t)?;
                Ok(None)
            }
            Step::Backup { archive, dump, trees, manifest, compression, physical, cache_tables } => {
                let archive = PathBuf::from(archive);
                let db = crate::steps::BackupDb {
                    dump: dump.as_ref(),
                    physical: physical.as_ref(),
                    cache_tables: cache_tables.as_ref(),
                };
                self.backup(&archive, db, trees, manifest, *compression, sink, cancel).await
            }
            Step::LoadDatabase { dir, import, physical, .. } => {
                self.load_database(Path::new(dir), import, physical.as_ref(), sink, cancel).await
            }
            Step::Certificate { names, dir, acme_dir, request, .. } => {
                self.install_certificate(names, dir, acme_dir, request, sink).await
            }
            Step::RevokeReplaced { dir, request } => {
                let path = Path::new(dir).join(REPLACED_CERT);
                let Some(old) = self.host.read(&path)? else {
                    return Ok(Some("no replaced certificate to revoke".into()));
                };
                let CertRequest::Acme { directory, ca_file, contact, .. } = request else {
                    return Ok(Some("not an ACME certificate: nothing to revoke".into()));
                };
                let old = String::from_utf8_lossy(&old).into_owned();
                crate::acme::revoke(&self.secrets, directory, ca_file.as_deref(), contact.as_deref(), &old).await?;
                self.host.remove_all(&path)?;
                Ok(Some("the replaced certificate is revoked".into()))
            }
            Step::UnixUser { name, home, web_user } => {
                let created = crate::users::ensure_user(&self.host, name, home, web_user.as_deref(), sink).await?;
                Ok((!created).then(|| format!("Unix user {name} exists")))
            }
            Step::WaitForPath { path, timeout_ms } => {
                let started = Instant::now();
                while !self.host.exists(Path::new(path)) {
                    if started.elapsed() > Duration::from_millis(*timeout_ms) {
                        return Err(ExecError::Other(format!("{path} did not appear within {timeout_ms} ms")));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Some(format!("{path} is there after {} ms", started.elapsed().as_millis())))
            }
            Step::RemoveUnixUser { name } => {
                let removed = crate::users::remove_user(&self.host, name, sink).await?;
                Ok((!removed).then(|| format!("Unix user {name} is already gone")))
            }
            Step::Sleep { ms } => {
                let sleep = tokio::time::sleep(Duration::from_millis(*ms));
                match cancel {
                    Some(mut rx) => tokio::select! {
                        _ = sleep => Ok(None),
                        _ = rx.wait_for(|c| *c) => Err(ExecError::Cancelled),
                    },
                    None => {
                        sleep.await;
                        Ok(None)
                    }
                }
            }
            Step::Fail { message } => Err(ExecError::Other(message.clone())),
        }
    }

    /// Undoes a step, whether it was applied fully, partly or not at all.
    pub async fn undo(&self, undo: &StepUndo, sink: Option<OutputSink>) -> ExecResult<()> {
        match undo {
            StepUndo::Nothing => Ok(()),
            StepUndo::Many { entries } => {
                for e in entries {
                    Box::pin(self.undo(e, sink.clone())).await?;
                }
                Ok(())
            }
            StepUndo::RemoveDirs { dirs } => {
                for d in dirs {
                    self.host.remove_all(Path::new(d))?;
                }
                Ok(())
            }
            StepUndo::RestoreFile { path, saved, mode, owner } => match saved {
                Some(copy) => {
                    let bytes = self
                        .host
                        .read(Path::new(copy))?
                        .ok_or_else(|| ExecError::Other(format!("saved copy {copy} is missing")))?;
                    self.host.write_atomic_owned(Path::new(path), &bytes, mode.unwrap_or(0o644), *owner)
                }
                None => self.host.remove_all(Path::new(path)),
            },
            StepUndo::Reown { path, owner, mode, tree } => {
                let p = Path::new(path);
                if *tree {
                    let (host, root, owner) = (self.host.clone(), p.to_path_buf(), *owner);
                    tokio::task::spawn_blocking(move || host.own_tree(&root, owner))
                        .await
                        .map_err(|e| ExecError::Other(format!("ownership thread: {e}")))??;
                } else if self.host.exists(p) {
                    self.host.ensure_file(p, mode.unwrap_or(0o644), Some(*owner))?;
                }
                Ok(())
            }
            StepUndo::MoveBack { path, aside } => {
                let (p, a) = (Path::new(path), Path::new(aside));
                if self.host.exists(a) && !self.host.exists(p) {
                    self.host.rename(a, p)?;
                }
                Ok(())
            }
            StepUndo::Unmove { from, to } => {
                let (f, t) = (Path::new(from), Path::new(to));
                if self.host.exists(t) && !self.host.exists(f) {
                    self.host.rename(t, f)?;
                }
                Ok(())
            }
            StepUndo::RemoveFiles { paths } => {
                for p in paths {
                    self.host.remove_all(Path::new(p))?;
                }
                Ok(())
            }
            StepUndo::Run { cmd } => {
                self.run_command(cmd, sink, None).await?;
                Ok(())
            }
            StepUndo::RemoveUser { name } => {
                crate::users::remove_user(&self.host, name, sink).await?;
                Ok(())
            }
            StepUndo::Reload { was_running: false, pidfile, service, .. } => {
                // This task started it: stop it again (SIGQUIT is a graceful stop for nginx and PHP-FPM;
                // Apache's master would die of it and leave its children: it stops on SIGTERM).
                let signal = if service.starts_with("apache:") {
                    nix::sys::signal::Signal::SIGTERM
                } else {
                    nix::sys::signal::Signal::SIGQUIT
                };
                if let Some(pid) = read_pid(&self.host, Path::new(pidfile)).filter(|p| pid_alive(*p)) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                }
                Ok(())
            }
            StepUndo::Reload { service, check, reload, pidfile, .. } => {
                // Only a running service needs to pick the old config back up.
                if let Some(master) = read_pid(&self.host, Path::new(pidfile)).filter(|p| pid_alive(*p)) {
                    if let Some(check) = check {
                        self.run_command(check, sink.clone(), None).await?;
                    }
                    let before = children_of(master);
                    self.run_command(reload, sink, None).await?;
                    *self.gate(service).lock().await = Some(Instant::now());
                    // The rollback is over only once the old config really serves again.
                    settle(master, &before).await;
                }
                Ok(())
            }
        }
    }

    /// After a task has ended for good: drop the saved copies and what removals put aside.
    pub fn forget(&self, task: TaskId, undos: &[StepUndo], succeeded: bool) {
        if succeeded {
            for u in undos {
                if let StepUndo::MoveBack { aside, .. } = u {
                    let _ = self.host.remove_all(Path::new(aside));
                }
            }
        }
        let _ = self.host.remove_all(&self.task_undo_dir(task));
    }

    /// Whether the process a pid file names is alive.
    pub fn service_running(&self, pidfile: &str) -> bool {
        read_pid(&self.host, Path::new(pidfile)).is_some_and(pid_alive)
    }

    fn gate(&self, service: &str) -> Arc<tokio::sync::Mutex<Option<Instant>>> {
        self.reload_gates.lock().expect("reload gate lock").entry(service.to_string()).or_default().clone()
    }

    /// What a step would do, for `--dry-run`: a unified diff for files, the argv for commands.
    pub fn preview(&self, step: &Step) -> String {
        match step {
            Step::WriteFile { path, content, mode, .. } => {
                let FileContent::Text { text } = content;
                let new = mask_secrets(text);
                let old =
                    self.host.read(Path::new(path)).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned());
                // The current file holds real secrets; mask the lines the new content masks.
                let old_shown = old.as_deref().map(|o| mask_like(o, text)).unwrap_or_default();
                let header = match &old {
                    None => format!("create {path} (mode {mode:o})"),
                    Some(_) if old_shown == new => return format!("{path} is up to date"),
                    Some(_) => format!("update {path} (mode {mode:o})"),
                };
                let diff = similar::TextDiff::from_lines(&old_shown, &new);
                format!(
                    "{header}\n{}",
                    diff.unified_diff()
                        .context_radius(3)
                        .header(&format!("{path} (now)"), &format!("{path} (planned)"))
                )
            }
            Step::Run { cmd, .. } | Step::RunOnce { cmd, .. } => {
                let undo = match step {
                    Step::Run { undo, .. } | Step::RunOnce { undo, .. } => undo.as_ref(),
                    _ => None,
                };
                let mut out = format!("{}\n  run: {}", step.describe(), shell_words(&cmd.argv));
                if let Some(stdin) = &cmd.stdin {
                    out.push_str(&format!("\n  stdin:\n{}", indent(&mask_secrets(stdin))));
                }
                if let Some(u) = undo {
                    out.push_str(&format!("\n  undo: {}", shell_words(&u.argv)));
                    if let Some(stdin) = &u.stdin {
                        out.push_str(&format!("\n  undo stdin:\n{}", indent(&mask_secrets(stdin))));
                    }
                }
                out
            }
            Step::Service { check, start, reload, .. } => {
                let mut out = step.describe();
                if let Some(c) = check {
                    out.push_str(&format!("\n  check: {}", shell_words(&c.argv)));
                }
                out.push_str(&format!(
                    "\n  reload: {}\n  or start: {}",
                    shell_words(&reload.argv),
                    shell_words(&start.argv)
                ));
                out
            }
            other => other.describe(),
        }
    }
}

/// Where a `Certificate` step keeps the certificate it replaced until `RevokeReplaced` revokes it.
const REPLACED_CERT: &str = "replaced.pem";

/// The first line reporting a PHP fatal or parse error in `text` (a response body or an error log).
pub fn php_fatal(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.contains("PHP Fatal error") || l.contains("PHP Parse error") || l.contains("<b>Fatal error</b>"))
        .map(|l| l.chars().take(300).collect())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

fn yes() -> bool {
    true
}

/// Removes a command's temp files when it is done.
pub(crate) struct TempDirGuard {
    host: Host,
    dir: PathBuf,
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = self.host.remove_all(&self.dir);
    }
}

fn read_pid(host: &Host, pidfile: &Path) -> Option<i32> {
    let text = host.read(pidfile).ok().flatten()?;
    String::from_utf8_lossy(&text).trim().parse().ok().filter(|p| *p > 0)
}

/// The processes whose parent is `pid` (read from /proc).
fn children_of(pid: i32) -> std::collections::HashSet<i32> {
    let mut out = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent pid is the second field after the parenthesised command name.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.insert(child);
        }
    }
    out
}

/// A reload signal returns at once, but the service takes a moment to apply it. For a master with
/// workers (nginx), wait until new workers replace the old ones, so the task ends when the new
/// config really serves.
async fn settle(master: i32, before: &std::collections::HashSet<i32>) {
    if before.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // Done when the old workers are gone: until then they may still take new connections with
        // the old config. (Workers held by a client's keep-alive connection can linger: the deadline
        // bounds the wait.)
        if !children_of(master).iter().any(|p| before.contains(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// A sink that masks output lines containing any of `needles` before passing them on.
fn redacting(sink: OutputSink, needles: Vec<String>) -> OutputSink {
    let (tx, mut rx) = mpsc::unbounded_channel::<(LogStream, String)>();
    tokio::spawn(async move {
        while let Some((stream, line)) = rx.recv().await {
            let line = if needles.iter().any(|n| line.contains(n.as_str())) {
                "[line hidden: it holds a secret]".to_string()
            } else {
                line
            };
            if sink.send((stream, line)).is_err() {
                break;
            }
        }
    });
    tx
}

/// Masks the lines of `old` that correspond to secret-bearing lines of the template `new`, so a dry-run
/// diff never prints a secret that is already on disk.
fn mask_like(old: &str, new: &str) -> String {
    let secret_prefixes: Vec<&str> =
        new.lines().filter_map(|l| l.find(SECRET_OPEN).map(|i| &l[..i])).filter(|p| !p.trim().is_empty()).collect();
    let mut out = String::new();
    for line in old.lines() {
        match secret_prefixes.iter().find(|p| line.starts_with(**p)) {
            Some(p) => {
                let new_line = new.lines().find(|l| l.starts_with(*p)).map(mask_secrets).unwrap_or_default();
                out.push_str(&new_line);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use fjord_core::plan::secret_ref;

    fn executor(dir: &Path) -> Executor {
        Executor::new(Host::Local, SecretStore::open(dir.join("secrets")).expect("secrets"), dir.join("undo"))
    }

    async fn apply_and_undo(ex: &Executor, step: &Step) {
        let undo = ex.prepare(TaskId(1), 0, step).expect("prepare");
        ex.apply(TaskId(1), 0, step, None, None).await.expect("apply");
        ex.undo(&undo, None).await.expect("undo");
    }

    /// A daemon killed mid-command leaves its command's temp files (credentials) behind: the next one
    /// removes them, and never those of a command still running.
    #[test]
    fn orphaned_temp_dirs_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = executor(dir.path());
        let dead = ex.undo_dir.join("tmp-999999999-aa");
        let dead_user = ex.user_tmp_dir().join("tmp-999999999-bb");
        let old_format = ex.undo_dir.join("tmp-00000000000000cc");
        let live = ex.undo_dir.join(format!("tmp-{}-dd", std::process::id()));
        for d in [&dead, &dead_user, &old_format, &live] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::write(d.join("site.cnf"), "[client]\npassword=secret\n").expect("write");
        }
        std::fs::create_dir_all(ex.undo_dir.join("task-1")).expect("undo data is not a temp dir");
        assert_eq!(ex.sweep_orphan_temp_dirs(), 3);
        assert!(!dead.exists() && !dead_user.exists() && !old_format.exists());
        assert!(live.join("site.cnf").exists(), "a running command's temp files were removed");
        assert!(ex.undo_dir.join("task-1").exists());
    }

    #[tokio::test]
    async fn write_file_undo_restores_previous_content_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = executor(dir.path());
        let p = dir.path().join("f.conf");
        crate::fsops::write_atomic(&p, b"old", 0o640).expect("write");
        let step = Step::WriteFile {
            path: p.to_string_lossy().into(),
            content: FileContent::Text { text: "new".into() },
            mode: 0o600,
            owner: None,
        };
        apply_and_undo(&ex, &step).await;
        assert_eq!(std::fs::read(&p).expect("read"), b"old");
        assert_eq!(crate::fsops::mode_of(&p), Some(0o640));
        // A file that did not exist is removed again.
        let q = dir.path().join("new.conf");
        let step = Step::WriteFile {
            path: q.to_string_lossy().into(),
            content: FileContent::Text { text: "x".into() },
            mode: 0o644,
            owner: None,
        };
        apply_and_undo(&ex, &step).await;
        assert!(!q.exists());
    }

    /// A tree whose top has the right owner is not walked; one whose top has another is, and its
    /// undo gives it back; a tree the task wrote is walked whatever its top says.
    #[tokio::test]
    async fn own_trees_walks_only_what_needs_it() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: giving files away needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = executor(dir.path());
        let tree = dir.path().join("files");
        std::fs::create_dir_all(tree.join("a")).expect("mkdir");
        std::fs::write(tree.join("a/f"), b"x").expect("write");
        let step = |written| Step::OwnTrees {
            paths: vec![tree.to_string_lossy().into(), dir.path().join("missing").to_string_lossy().into()],
            owner: "nobody:nogroup".into(),
            written,
        };
        let undo = ex.prepare(TaskId(1), 0, &step(false)).expect("prepare");
        let note = ex.apply(TaskId(1), 0, &step(false), None, None).await.expect("apply").expect("a note");
        assert!(note.contains("3 entries") && note.contains("gave 3"), "{note}");
        assert_ne!(std::fs::metadata(tree.join("a/f")).expect("stat").uid(), 0);
        // The top is right: nothing below is looked at, even what is not right.
        crate::fsops::chown(&tree.join("a/f"), (0, 0)).expect("chown");
        let note = ex.apply(TaskId(1), 0, &step(false), None, None).await.expect("apply").expect("a note");
        assert!(note.contains("left as they are") && !note.contains("walked"), "{note}");
        assert_eq!(std::fs::metadata(tree.join("a/f")).expect("stat").uid(), 0);
        // Written by the task: walked.
        let note = ex.apply(TaskId(1), 0, &step(true), None, None).await.expect("apply").expect("a note");
        assert!(note.contains("gave 1"), "{note}");
        ex.undo(&undo, None).await.expect("undo");
        for p in ["", "a", "a/f"] {
            assert_eq!(std::fs::metadata(tree.join(p)).expect("stat").uid(), 0, "{p}");
        }
    }

    /// A command that only makes sure of something runs again only when it changed.
    #[tokio::test]
    async fn run_once_runs_again_only_when_the_command_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = executor(dir.path());
        let stamp = dir.path().join("stamps/x").to_string_lossy().into_owned();
        let count = dir.path().join("count");
        let step = |text: &str| Step::RunOnce {
            label: "append".into(),
            cmd: Command::new(["sh", "-c", "echo x >> \"$0\"", &count.to_string_lossy()]).stdin(text),
            stamp: stamp.clone(),
            undo: None,
        };
        let before = crate::cmd::processes_started();
        assert_eq!(ex.apply(TaskId(1), 0, &step("a"), None, None).await.expect("apply"), None);
        assert!(ex.apply(TaskId(1), 0, &step("a"), None, None).await.expect("apply").is_some());
        assert_eq!(ex.apply(TaskId(1), 0, &step("b"), None, None).await.expect("apply"), None);
        assert_eq!(std::fs::read_to_string(&count).expect("read").lines().count(), 2);
        assert!(crate::cmd::processes_started() >= before + 2);
        assert_eq!(crate::fsops::mode_of(Path::new(&stamp)), Some(0o600));
    }

    #[tokio::test]
    async fn make_dir_and_remove_path_undo() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = executor(dir.path());
        let deep = dir.path().join("a/b/c");
        apply_and_undo(&ex, &Step::MakeDir { path: deep.to_string_lossy().into(), mode: 0o755, owner: None }).await;
        assert!(!dir.path().join("a").exists());
        let keep = dir.path().join("keep");
        std::fs::create_dir(&keep).expect("mkdir");
        std::fs::write(keep.join("x"), b"1").expect("write");
        apply_and_undo(&ex, &Step::RemovePath { path: keep.to_string_lossy().into() }).await;
        assert_eq!(std::fs::read(keep.join("x")).expect("read"), b"1");
    }

    #[tokio::test]
    async fn secrets_are_filled_at_write_time_and_masked_in_previews() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = executor(dir.path());
        let pw = ex.secrets.get_or_generate("db").expect("secret");
        let p = dir.path().join("settings.php");
        let text = format!("$user = 'a';\n$pass = '{}';\n", secret_ref("db"));
        let step = Step::WriteFile {
            path: p.to_string_lossy().into(),
            content: FileContent::Text { text: text.clone() },
            mode: 0o600,
            owner: None,
        };
        assert!(!ex.preview(&step).contains(pw.expose()));
        ex.apply(TaskId(1), 0, &step, None, None).await.expect("apply");
        assert!(std::fs::read_to_string(&p).expect("read").contains(pw.expose()));
        let preview = ex.preview(&step);
        assert!(preview.contains("up to date"), "{preview}");
        let changed = Step::WriteFile {
            path: p.to_string_lossy().into(),
            content: FileContent::Text { text: format!("{text}// more\n") },
            mode: 0o600,
            owner: None,
        };
        let preview = ex.preview(&changed);
        assert!(!preview.contains(pw.expose()) && preview.contains("+// more"), "{preview}");
    }
}
