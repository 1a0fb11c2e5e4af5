//! Applying and undoing plan steps.
//!
//! The protocol, which makes a crash at any point recoverable: [`Executor::prepare`] works out and saves
//! what undoing a step needs (a copy of the file about to be overwritten, the list of directories about
//! to be created, where a removed path will be moved), the daemon records that in the task's undo log,
//! and only then [`Executor::apply`] runs the step. [`Executor::undo`] must work whether the step was
//! applied fully, partly or not at all, so the daemon can undo a step that was running when it died.

use crate::cmd::{Cmd, OutputSink};
use crate::fsops::aside_path;
use crate::host::Host;
use crate::secrets::SecretStore;
use crate::{ExecError, ExecResult};
use fjord_core::plan::{mask_secrets, SECRET_CLOSE, SECRET_OPEN};
use fjord_core::{FileContent, Step, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// What undoing one applied step needs; stored (as JSON) in the task's undo log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
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
    },
    /// Move the removed path back from where it was put aside.
    MoveBack {
        path: String,
        aside: String,
    },
    Run {
        argv: Vec<String>,
        timeout_secs: u64,
    },
}

/// Applies steps on one host. Holds what steps need beyond their own data: the secrets store (to fill
/// secret markers), where saved copies go, and how to reload each service.
#[derive(Debug, Clone)]
pub struct Executor {
    pub host: Host,
    pub secrets: SecretStore,
    /// Directory for saved copies of overwritten files, `<state>/undo`.
    pub undo_dir: PathBuf,
    /// Reload command per service name ("nginx" → argv). Unknown services are skipped with a note.
    pub reloads: BTreeMap<String, Vec<String>>,
}

impl Executor {
    fn task_undo_dir(&self, task: TaskId) -> PathBuf {
        self.undo_dir.join(task.0.to_string())
    }

    /// Works out, and saves, what undoing `step` will need. Must be called (and its result recorded)
    /// before [`Executor::apply`].
    pub fn prepare(&self, task: TaskId, idx: usize, step: &Step) -> ExecResult<StepUndo> {
        Ok(match step {
            Step::MakeDir { path, .. } => {
                let mut dirs: Vec<String> = self
                    .host
                    .missing_dirs(Path::new(path))
                    .into_iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                dirs.reverse();
                StepUndo::RemoveDirs { dirs }
            }
            Step::WriteFile { path, .. } => {
                let p = Path::new(path);
                let saved = match self.host.read(p)? {
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
                }
            }
            Step::RemovePath { path } => StepUndo::MoveBack {
                path: path.clone(),
                aside: aside_path(Path::new(path), &format!("{}-{idx}", task.0))
                    .to_string_lossy()
                    .into_owned(),
            },
            Step::Run {
                undo: Some(argv),
                timeout_secs,
                ..
            } => StepUndo::Run {
                argv: argv.clone(),
                timeout_secs: *timeout_secs,
            },
            Step::Run { undo: None, .. } | Step::Reload { .. } | Step::Sleep { .. } | Step::Fail { .. } => {
                StepUndo::Nothing
            }
        })
    }

    /// Fills secret markers in file content from the secrets store.
    pub fn resolve_secrets(&self, text: &str) -> ExecResult<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(SECRET_OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + SECRET_OPEN.len()..];
            let end = after
                .find(SECRET_CLOSE)
                .ok_or_else(|| ExecError::Other("unterminated secret marker".into()))?;
            out.push_str(self.secrets.require(&after[..end])?.expose());
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
            Step::MakeDir { path, mode } => {
                let p = Path::new(path);
                let existed = self.host.exists(p);
                self.host.create_dirs(p, *mode)?;
                Ok(existed.then(|| format!("{path} already exists")))
            }
            Step::WriteFile { path, content, mode } => {
                let FileContent::Text { text } = content;
                let bytes = self.resolve_secrets(text)?.into_bytes();
                let p = Path::new(path);
                if self.host.read(p)?.as_deref() == Some(&bytes[..]) && self.host.mode_of(p) == Some(*mode) {
                    return Ok(Some(format!("{path} is already up to date")));
                }
                self.host.write_atomic(p, &bytes, *mode)?;
                Ok(None)
            }
            Step::RemovePath { path } => {
                let p = Path::new(path);
                if !self.host.exists(p) {
                    return Ok(Some(format!("{path} is already gone")));
                }
                let aside = aside_path(p, &format!("{}-{idx}", task.0));
                self.host.rename(p, &aside)?;
                Ok(None)
            }
            Step::Run {
                argv,
                env,
                timeout_secs,
                ..
            } => {
                let mut cmd = Cmd::new(argv.clone()).timeout(Duration::from_secs(*timeout_secs));
                cmd.env = env.clone();
                self.host.run_checked(&cmd, sink, cancel).await?;
                Ok(None)
            }
            Step::Reload { service } => match self.reloads.get(service) {
                Some(argv) => {
                    self.host
                        .run_checked(&Cmd::new(argv.clone()).timeout(Duration::from_secs(60)), sink, cancel)
                        .await?;
                    Ok(None)
                }
                None => Ok(Some(format!("no reload command is configured for {service}"))),
            },
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
            StepUndo::RemoveDirs { dirs } => {
                for d in dirs {
                    self.host.remove_empty_dir(Path::new(d));
                }
                Ok(())
            }
            StepUndo::RestoreFile { path, saved, mode } => match saved {
                Some(copy) => {
                    let bytes = self
                        .host
                        .read(Path::new(copy))?
                        .ok_or_else(|| ExecError::Other(format!("saved copy {copy} is missing")))?;
                    self.host.write_atomic(Path::new(path), &bytes, mode.unwrap_or(0o644))
                }
                None => self.host.remove_all(Path::new(path)),
            },
            StepUndo::MoveBack { path, aside } => {
                let (p, a) = (Path::new(path), Path::new(aside));
                if self.host.exists(a) && !self.host.exists(p) {
                    self.host.rename(a, p)?;
                }
                Ok(())
            }
            StepUndo::Run { argv, timeout_secs } => {
                self.host
                    .run_checked(
                        &Cmd::new(argv.clone()).timeout(Duration::from_secs(*timeout_secs)),
                        sink,
                        None,
                    )
                    .await?;
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

    /// What a step would do, for `--dry-run`: a unified diff for files, the argv for commands.
    pub fn preview(&self, step: &Step) -> String {
        match step {
            Step::WriteFile { path, content, mode } => {
                let FileContent::Text { text } = content;
                let new = mask_secrets(text);
                let old = self
                    .host
                    .read(Path::new(path))
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
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
            other => other.describe(),
        }
    }
}

/// Masks the lines of `old` that correspond to secret-bearing lines of the template `new`, so a dry-run
/// diff never prints a secret that is already on disk.
fn mask_like(old: &str, new: &str) -> String {
    let secret_prefixes: Vec<&str> = new
        .lines()
        .filter_map(|l| l.find(SECRET_OPEN).map(|i| &l[..i]))
        .filter(|p| !p.trim().is_empty())
        .collect();
    let mut out = String::new();
    for line in old.lines() {
        match secret_prefixes.iter().find(|p| line.starts_with(**p)) {
            Some(p) => {
                let new_line = new
                    .lines()
                    .find(|l| l.starts_with(*p))
                    .map(mask_secrets)
                    .unwrap_or_default();
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
        Executor {
            host: Host::Local,
            secrets: SecretStore::open(dir.join("secrets")).expect("secrets"),
            undo_dir: dir.join("undo"),
            reloads: BTreeMap::new(),
        }
    }

    async fn apply_and_undo(ex: &Executor, step: &Step) {
        let undo = ex.prepare(TaskId(1), 0, step).expect("prepare");
        ex.apply(TaskId(1), 0, step, None, None).await.expect("apply");
        ex.undo(&undo, None).await.expect("undo");
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
        };
        apply_and_undo(&ex, &step).await;
        assert!(!q.exists());
    }

    #[tokio::test]
    async fn make_dir_and_remove_path_undo() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ex = executor(dir.path());
        let deep = dir.path().join("a/b/c");
        apply_and_undo(
            &ex,
            &Step::MakeDir {
                path: deep.to_string_lossy().into(),
                mode: 0o755,
            },
        )
        .await;
        assert!(!dir.path().join("a").exists());
        let keep = dir.path().join("keep");
        std::fs::create_dir(&keep).expect("mkdir");
        std::fs::write(keep.join("x"), b"1").expect("write");
        apply_and_undo(
            &ex,
            &Step::RemovePath {
                path: keep.to_string_lossy().into(),
            },
        )
        .await;
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
        };
        assert!(!ex.preview(&step).contains(pw.expose()));
        ex.apply(TaskId(1), 0, &step, None, None).await.expect("apply");
        assert!(std::fs::read_to_string(&p).expect("read").contains(pw.expose()));
        let preview = ex.preview(&step);
        assert!(preview.contains("up to date"), "{preview}");
        let changed = Step::WriteFile {
            path: p.to_string_lossy().into(),
            content: FileContent::Text {
                text: format!("{text}// more\n"),
            },
            mode: 0o600,
        };
        let preview = ex.preview(&changed);
        assert!(
            !preview.contains(pw.expose()) && preview.contains("+// more"),
            "{preview}"
        );
    }
}
