//! Running commands: argv only, with a timeout, environment, optional stdin, output streamed line by
//! line to the task log, and the whole process group killed on timeout or cancel.

use crate::{io_err, ExecError, ExecResult};
use fjord_core::plan::shell_words;
use fjord_core::LogStream;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

/// Where a running command's output lines go (the daemon writes them to the task log).
pub type OutputSink = mpsc::UnboundedSender<(LogStream, String)>;

#[derive(Clone)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// Bytes written to the command's stdin; the way to hand it a secret without putting it on argv.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Send stdout to this file (created 0600) instead of the log: for database dumps.
    pub stdout_file: Option<std::path::PathBuf>,
    /// Read stdin from this file (a dump to import).
    pub stdin_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // stdin may be a secret; env values may be too.
        f.debug_struct("Cmd").field("argv", &self.argv).field("cwd", &self.cwd).finish_non_exhaustive()
    }
}

impl Cmd {
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Cmd {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout: Duration::from_secs(600),
            stdout_file: None,
            stdin_file: None,
        }
    }
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Cmd {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn stdin(mut self, bytes: Vec<u8>) -> Cmd {
        self.stdin = Some(bytes);
        self
    }
    pub fn display(&self) -> String {
        shell_words(&self.argv)
    }
}

#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Last lines of stderr, for error messages.
fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

async fn pump<R: AsyncRead + Unpin>(reader: R, stream: LogStream, sink: Option<OutputSink>) -> String {
    let mut lines = BufReader::new(reader).lines();
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(s) = &sink {
            let _ = s.send((stream, line.clone()));
        }
        all.push_str(&line);
        all.push('\n');
    }
    all
}

/// Runs `cmd` to completion. A non-zero exit is not an error here (see [`run_checked`]); a timeout or a
/// cancel kills the whole process group and is.
// The one place in Fjord that starts a process.
#[allow(clippy::disallowed_methods)]
pub async fn run(cmd: &Cmd, sink: Option<OutputSink>, cancel: Option<watch::Receiver<bool>>) -> ExecResult<CmdOutput> {
    let (program, args) = cmd.argv.split_first().ok_or_else(|| ExecError::Other("empty command".into()))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(match (&cmd.stdin_file, &cmd.stdin) {
            (Some(path), _) => {
                Stdio::from(std::fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?)
            }
            (None, Some(_)) => Stdio::piped(),
            (None, None) => Stdio::null(),
        })
        .stdout(match &cmd.stdout_file {
            Some(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io_err(format!("create {}", path.display())))?;
                Stdio::from(f)
            }
            None => Stdio::piped(),
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout kills the children it started too.
        .process_group(0);
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    if let Some(cwd) = &cmd.cwd {
        command.current_dir(cwd);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(io_err(format!("cannot start `{}`", cmd.display())))?;
    let pid = child.id();
    if let (Some(bytes), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let out = match child.stdout.take() {
        Some(stdout) => tokio::spawn(pump(stdout, LogStream::Stdout, sink.clone())),
        None => tokio::spawn(async { String::new() }),
    };
    let err = tokio::spawn(pump(child.stderr.take().expect("stderr piped"), LogStream::Stderr, sink));
    let cancelled = async {
        match cancel {
            Some(mut rx) => {
                while !*rx.borrow() {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let kill_group = |pid: Option<u32>| {
        if let Some(pid) = pid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    };
    let status = tokio::select! {
        s = child.wait() => s.map_err(io_err(format!("waiting for `{}`", cmd.display())))?,
        _ = tokio::time::sleep(cmd.timeout) => {
            kill_group(pid);
            return Err(ExecError::Timeout { command: cmd.display(), secs: cmd.timeout.as_secs() });
        }
        _ = cancelled => {
            kill_group(pid);
            return Err(ExecError::Cancelled);
        }
    };
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    Ok(CmdOutput { code: status.code(), stdout, stderr, duration: started.elapsed() })
}

/// Runs `from | to`: `from`'s stdout feeds `to`'s stdin through an OS pipe (no copy through Fjord), both
/// in their own process groups; stderr of both goes to the log. Fails unless both exit 0; a timeout or
/// cancel kills both. `to`'s stdout goes to the log.
#[allow(clippy::disallowed_methods)]
pub async fn run_pipe(
    from: &Cmd,
    to: &Cmd,
    sink: Option<OutputSink>,
    cancel: Option<watch::Receiver<bool>>,
) -> ExecResult<CmdOutput> {
    let spawn = |cmd: &Cmd, stdin: Stdio, stdout: Stdio| -> ExecResult<tokio::process::Child> {
        let (program, args) = cmd.argv.split_first().ok_or_else(|| ExecError::Other("empty command".into()))?;
        let mut command = tokio::process::Command::new(program);
        command.args(args).stdin(stdin).stdout(stdout).stderr(Stdio::piped()).kill_on_drop(true).process_group(0);
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        if let Some(cwd) = &cmd.cwd {
            command.current_dir(cwd);
        }
        command.spawn().map_err(io_err(format!("cannot start `{}`", cmd.display())))
    };
    let started = Instant::now();
    let mut producer = spawn(from, Stdio::null(), Stdio::piped())?;
    let pipe: Stdio = producer
        .stdout
        .take()
        .expect("stdout piped")
        .try_into()
        .map_err(io_err("hand the pipe to the second command".to_string()))?;
    let mut consumer = spawn(to, pipe, Stdio::piped())?;
    let pids = [producer.id(), consumer.id()];
    let err1 = tokio::spawn(pump(producer.stderr.take().expect("stderr piped"), LogStream::Stderr, sink.clone()));
    let err2 = tokio::spawn(pump(consumer.stderr.take().expect("stderr piped"), LogStream::Stderr, sink.clone()));
    let out = tokio::spawn(pump(consumer.stdout.take().expect("stdout piped"), LogStream::Stdout, sink));
    let kill_all = || {
        for pid in pids.into_iter().flatten() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    };
    let cancelled = async {
        match cancel {
            Some(mut rx) => {
                let _ = rx.wait_for(|c| *c).await;
                if !*rx.borrow() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let display = format!("{} | {}", from.display(), to.display());
    let timeout = from.timeout.max(to.timeout);
    let (s1, s2) = tokio::select! {
        r = async { (producer.wait().await, consumer.wait().await) } => r,
        _ = tokio::time::sleep(timeout) => {
            kill_all();
            return Err(ExecError::Timeout { command: display, secs: timeout.as_secs() });
        }
        _ = cancelled => {
            kill_all();
            return Err(ExecError::Cancelled);
        }
    };
    let s1 = s1.map_err(io_err(format!("waiting for `{}`", from.display())))?;
    let s2 = s2.map_err(io_err(format!("waiting for `{}`", to.display())))?;
    let stderr = format!("{}{}", err1.await.unwrap_or_default(), err2.await.unwrap_or_default());
    let stdout = out.await.unwrap_or_default();
    // The consumer's failure first: a producer killed by SIGPIPE is only its consequence.
    for (cmd, status) in [(to, s2), (from, s1)] {
        if !status.success() {
            return Err(ExecError::Failed {
                command: cmd.display(),
                status: status.code().map(|c| format!("exit code {c}")).unwrap_or_else(|| "a signal".into()),
                stderr_tail: tail(&stderr, 5),
            });
        }
    }
    Ok(CmdOutput { code: s2.code(), stdout, stderr, duration: started.elapsed() })
}

/// A command kept running while Fjord talks to it line by line through its stdin and stdout: a
/// database client session that holds a lock while Fjord does something else (see `physical.rs`).
/// Dropping it kills the process group; so does Fjord's death, since the child's stdin then closes.
pub struct Session {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    display: String,
}

impl Session {
    /// Starts `cmd` (its `stdin` is ignored) with piped stdin and stdout.
    #[allow(clippy::disallowed_methods)]
    pub fn start(cmd: &Cmd) -> ExecResult<Session> {
        let (program, args) = cmd.argv.split_first().ok_or_else(|| ExecError::Other("empty command".into()))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(io_err(format!("cannot start `{}`", cmd.display())))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let stderr = tokio::spawn(pump(child.stderr.take().expect("stderr piped"), LogStream::Stderr, None));
        Ok(Session { child, stdin, stdout, stderr, display: cmd.display() })
    }

    /// Writes `text` to the command's stdin.
    pub async fn send(&mut self, text: &str) -> ExecResult<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| ExecError::Other("session input already closed".into()))?;
        stdin.write_all(text.as_bytes()).await.map_err(io_err(format!("write to `{}`", self.display)))?;
        stdin.flush().await.map_err(io_err(format!("write to `{}`", self.display)))
    }

    /// Reads output lines until one equals `marker`, within `timeout`. If the command ends first (a
    /// failed statement ends a batch client) the error carries its stderr.
    pub async fn wait_for(&mut self, marker: &str, timeout: Duration) -> ExecResult<()> {
        let read = async {
            loop {
                match self.stdout.next_line().await {
                    Ok(Some(line)) if line.trim_end() == marker => return Ok(()),
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(None),
                    Err(e) => return Err(Some(e)),
                }
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Some(e))) => Err(io_err(format!("read from `{}`", self.display))(e)),
            Ok(Err(None)) => {
                let _ = self.child.wait().await;
                let stderr = (&mut self.stderr).await.unwrap_or_default();
                Err(ExecError::Failed {
                    command: self.display.clone(),
                    status: "an early exit".into(),
                    stderr_tail: tail(&stderr, 5),
                })
            }
            Err(_) => Err(ExecError::Timeout { command: self.display.clone(), secs: timeout.as_secs() }),
        }
    }

    /// Writes `text`, closes stdin and waits for the command to exit 0.
    pub async fn finish(mut self, text: &str) -> ExecResult<()> {
        self.send(text).await?;
        drop(self.stdin.take());
        let status = self.child.wait().await.map_err(io_err(format!("waiting for `{}`", self.display)))?;
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        if !status.success() {
            return Err(ExecError::Failed {
                command: self.display.clone(),
                status: status.code().map(|c| format!("exit code {c}")).unwrap_or_else(|| "a signal".into()),
                stderr_tail: tail(&stderr, 5),
            });
        }
        Ok(())
    }
}

/// Runs `cmd` and fails unless it exits 0.
pub async fn run_checked(
    cmd: &Cmd,
    sink: Option<OutputSink>,
    cancel: Option<watch::Receiver<bool>>,
) -> ExecResult<CmdOutput> {
    let out = run(cmd, sink, cancel).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(ExecError::Failed {
            command: cmd.display(),
            status: out.code.map(|c| format!("exit code {c}")).unwrap_or_else(|| "a signal".into()),
            stderr_tail: tail(&out.stderr, 5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_argv_without_a_shell() {
        let out = run(&Cmd::new(["echo", "$HOME; rm -rf /"]), None, None).await.expect("runs");
        assert_eq!(out.stdout, "$HOME; rm -rf /\n");
    }

    #[tokio::test]
    async fn stdin_env_and_exit_codes() {
        let out = run(&Cmd::new(["cat"]).stdin(b"secret".to_vec()), None, None).await.expect("runs");
        assert_eq!(out.stdout, "secret\n");
        let out = run(&Cmd::new(["printenv", "FJORD_X"]).env("FJORD_X", "1"), None, None).await.expect("runs");
        assert_eq!(out.stdout, "1\n");
        let err = run_checked(&Cmd::new(["ls", "/nonexistent-fjord"]), None, None).await.expect_err("fails");
        assert!(err.to_string().contains("exit code 2"), "{err}");
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let cmd = Cmd::new(["sleep", "30"]).timeout(Duration::from_millis(200));
        let started = Instant::now();
        let err = run(&cmd, None, None).await.expect_err("times out");
        assert!(matches!(err, ExecError::Timeout { .. }));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn cancel_stops_a_running_command() {
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(async move { run(&Cmd::new(["sleep", "30"]), None, Some(rx)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(true).expect("send");
        let res = handle.await.expect("joins");
        assert!(matches!(res, Err(ExecError::Cancelled)));
    }

    #[tokio::test]
    async fn pipes_one_command_into_another() {
        let out = run_pipe(&Cmd::new(["printf", "b\\na\\n"]), &Cmd::new(["sort"]), None, None).await.expect("runs");
        assert_eq!(out.stdout, "a\nb\n");
        let err = run_pipe(&Cmd::new(["false"]), &Cmd::new(["cat"]), None, None).await.expect_err("producer fails");
        assert!(err.to_string().contains("false"), "{err}");
        let err =
            run_pipe(&Cmd::new(["echo", "x"]), &Cmd::new(["false"]), None, None).await.expect_err("consumer fails");
        assert!(err.to_string().contains("false"), "{err}");
    }

    #[tokio::test]
    async fn a_session_answers_line_by_line() {
        let mut s = Session::start(&Cmd::new(["cat"])).expect("starts");
        s.send("one\nready\n").await.expect("sends");
        s.wait_for("ready", Duration::from_secs(5)).await.expect("marker");
        s.finish("bye\n").await.expect("exits 0");
        let mut s = Session::start(&Cmd::new(["sh", "-c", "echo oops >&2; exit 3"])).expect("starts");
        let err = s.wait_for("ready", Duration::from_secs(5)).await.expect_err("ends early");
        assert!(err.to_string().contains("oops"), "{err}");
    }

    #[tokio::test]
    async fn output_is_streamed() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        run(&Cmd::new(["sh", "-c", "echo out; echo err >&2"]), Some(tx), None).await.expect("runs");
        let mut got = Vec::new();
        while let Ok(line) = rx.try_recv() {
            got.push(line);
        }
        got.sort_by_key(|(s, _)| s.as_str());
        assert_eq!(got, vec![(LogStream::Stderr, "err".into()), (LogStream::Stdout, "out".into())]);
    }
}
