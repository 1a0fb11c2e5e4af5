//! Running commands: argv only, with a timeout, environment, optional stdin, output streamed line by
//! line to the task log, and the whole process group killed on timeout or cancel.

use crate::{io_err, ExecError, ExecResult};
use fjord_core::plan::shell_words;
use fjord_core::LogStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Run as this Unix user (its primary group, no supplementary groups, its HOME) instead of root.
    pub user: Option<String>,
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
            user: None,
        }
    }
    /// Runs as `user` instead of root.
    pub fn user(mut self, user: impl Into<String>) -> Cmd {
        self.user = Some(user.into());
        self
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

/// What a failed command's summary says: the root cause found in its output ([`root_cause`]), else
/// the last lines of its stderr. The whole output stays in the task's log.
fn failure_summary(stderr: &str, stdout: &str) -> String {
    root_cause(stderr).or_else(|| root_cause(stdout)).unwrap_or_else(|| tail(stderr, 5))
}

/// The line of a failed command's output a person can act on, rather than the end of a stack trace:
/// a composer platform check ("Your Composer dependencies require a PHP version …"), a PHP fatal or
/// parse error, an uncaught `Error:`/`…Exception:` line (drush prints the class that was not found
/// this way), drush's first `[error]` line, a database client's `ERROR nnnn`, WordPress's
/// "Error establishing a database connection". `None` when the output has none of these.
pub fn root_cause(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let first = |test: &dyn Fn(&str) -> bool| lines.iter().find(|l| test(l)).map(|l| l.to_string());
    let composer = first(&|l| l.contains("Your Composer dependencies require"));
    let cause = composer
        .map(|l| l.trim_start_matches("Composer detected issues in your platform:").trim().to_string())
        .or_else(|| crate::steps::php_fatal(output).map(|l| l.trim().to_string()))
        .or_else(|| first(&|l| l.starts_with("Fatal error:") || l.starts_with("Parse error:")))
        .or_else(|| {
            first(&|l| {
                let head = l.split(':').next().unwrap_or_default();
                l.contains(": ")
                    && !head.contains(' ')
                    && (head == "Error" || head.ends_with("Error") || head.ends_with("Exception"))
            })
        })
        .or_else(|| lines.iter().find_map(|l| l.split_once("[error]").map(|(_, rest)| rest.trim().to_string())))
        .or_else(|| first(&|l| l.strip_prefix("ERROR ").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))))
        .or_else(|| first(&|l| l.contains("Error establishing a database connection")))?;
    // Stack traces follow on the same line in some logs.
    let cause = cause.split(" Stack trace:").next().unwrap_or_default().trim();
    (!cause.is_empty()).then(|| cause.chars().take(400).collect())
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

/// Processes started so far, whichever way in.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// How many processes this Fjord has started (run, run_pipe, Session, exec_as): lets a test assert
/// that something started none.
pub fn processes_started() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

tokio::task_local! {
    /// The processes started by the future [`counting_processes`] runs (a task of the daemon).
    static STARTED_HERE: std::cell::Cell<u64>;
}

/// Runs `work` and counts the processes it starts itself (not those of other tasks running at the
/// same time, which the global [`processes_started`] would mix in): a task reports how many it started.
pub async fn counting_processes<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    STARTED_HERE
        .scope(std::cell::Cell::new(0), async {
            let out = work.await;
            (out, STARTED_HERE.with(|n| n.get()))
        })
        .await
}

/// How a process is started, besides what its [`Cmd`] says.
struct Launch<'a> {
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    /// `None`: one of Fjord's own commands, with Fjord's environment plus the Cmd's, in a process group
    /// of its own so that a timeout or cancel kills the children it started too. `Some`: a person's
    /// foreground command (`fjord site exec`) as this user, with exactly the Cmd's environment, in a
    /// session of its own through [`SETSID`]: it keeps the caller's stdin, stdout and stderr, but the
    /// caller's terminal is not its controlling terminal, so it cannot push input into it (`TIOCSTI`)
    /// for the caller's shell to run.
    user: Option<&'a nix::unistd::User>,
}

/// util-linux's `setsid(1)`, by absolute path: the command's `PATH` is the site's. The process Fjord
/// starts is never a process group leader (it stays in Fjord's group), so `setsid` calls setsid(2)
/// and execs the command in place (same pid, exit status passed on); `--wait` would keep the status
/// if it ever forked. A safe `setsid` in the child would need `pre_exec` (unsafe, forbidden here).
const SETSID: &str = "/usr/bin/setsid";

/// Sets up and starts `cmd`: the one place in Fjord that starts a process, so every way in gets the
/// same argv, environment, cwd and process group. `spawn` only starts the prepared command, with
/// tokio or synchronously.
#[allow(clippy::disallowed_methods)]
fn start<C>(
    cmd: &Cmd,
    launch: Launch<'_>,
    spawn: impl FnOnce(std::process::Command) -> std::io::Result<C>,
) -> ExecResult<C> {
    use std::os::unix::process::CommandExt;
    let (program, args) = cmd.argv.split_first().ok_or_else(|| ExecError::Other("empty command".into()))?;
    let mut command = match launch.user {
        None => {
            let mut command = std::process::Command::new(program);
            command.args(args).process_group(0);
            if let Some(name) = &cmd.user {
                // A site's code: as its user, never root. std drops supplementary groups with the uid.
                let user = lookup_user(name)?;
                command.gid(user.gid.as_raw()).uid(user.uid.as_raw());
                command.env("HOME", &user.dir).env("USER", name).env("LOGNAME", name);
            }
            command
        }
        Some(user) => {
            let mut command = std::process::Command::new(SETSID);
            command.args(["--wait", "--"]).args(&cmd.argv);
            command.env_clear().gid(user.gid.as_raw()).uid(user.uid.as_raw());
            command
        }
    };
    command.stdin(launch.stdin).stdout(launch.stdout).stderr(launch.stderr);
    command.envs(cmd.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &cmd.cwd {
        command.current_dir(cwd);
    }
    let context = match launch.user {
        None => format!("cannot start `{}`", cmd.display()),
        Some(user) => format!("cannot start `{}` as {}", cmd.display(), user.name),
    };
    let child = spawn(command).map_err(io_err(context))?;
    STARTED.fetch_add(1, Ordering::Relaxed);
    let _ = STARTED_HERE.try_with(|n| n.set(n.get() + 1));
    Ok(child)
}

/// A Unix user by name, or a clear error.
pub(crate) fn lookup_user(name: &str) -> ExecResult<nix::unistd::User> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| ExecError::Other(format!("no such user {name:?}: verify the site first")))
}

/// Starts one of Fjord's own commands with stderr piped; dropping the child kills it.
fn spawn(cmd: &Cmd, stdin: Stdio, stdout: Stdio) -> ExecResult<tokio::process::Child> {
    let launch = Launch { stdin, stdout, stderr: Stdio::piped(), user: None };
    start(cmd, launch, |command| tokio::process::Command::from(command).kill_on_drop(true).spawn())
}

/// Signals Fjord takes for a foreground command (see [`run_foreground`]) and whether it passes them
/// on. The command is in a session of its own, so what the terminal sends its foreground job
/// (`Ctrl-C`, `Ctrl-\`, a resize, a hangup) reaches Fjord alone: Fjord passes it on to the command's
/// process group. `Ctrl-Z` is taken and dropped: a stop signal does not stop a process whose group is
/// orphaned, as the command's is (its parent is in another session), and a Fjord stopped while its
/// command runs on would let the command read the input meant for the caller's shell.
const FOREGROUND_SIGNALS: [(nix::sys::signal::Signal, bool); 6] = {
    use nix::sys::signal::Signal::*;
    [(SIGINT, true), (SIGQUIT, true), (SIGTERM, true), (SIGHUP, true), (SIGWINCH, true), (SIGTSTP, false)]
};

/// Runs `cmd` in the foreground as `user`, with this process's stdin, stdout and stderr but in a new
/// session without a controlling terminal, and waits for it, passing on the terminal's signals: no
/// timeout, no log (see [`crate::users::exec_as`]).
pub(crate) async fn run_foreground(cmd: &Cmd, user: &nix::unistd::User) -> ExecResult<std::process::ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
    // Taken before the command starts, so that no Ctrl-C ends Fjord and leaves the command running.
    let mut taken = Vec::new();
    for (sig, forward) in FOREGROUND_SIGNALS {
        let stream = signal(SignalKind::from_raw(sig as i32)).map_err(io_err(format!("take {sig}")))?;
        taken.push((sig, forward, stream));
    }
    let launch =
        Launch { stdin: Stdio::inherit(), stdout: Stdio::inherit(), stderr: Stdio::inherit(), user: Some(user) };
    let mut child = start(cmd, launch, |command| tokio::process::Command::from(command).spawn())?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let relays: Vec<_> = taken
        .into_iter()
        .map(|(sig, forward, mut stream)| {
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if let (true, Some(pid)) = (forward, pid) {
                        // Its group is its session; before setsid(2) ran it is still in Fjord's group.
                        if nix::sys::signal::killpg(pid, sig).is_err() {
                            let _ = nix::sys::signal::kill(pid, sig);
                        }
                    }
                }
            })
        })
        .collect();
    let status = child.wait().await.map_err(io_err(format!("waiting for `{}`", cmd.display())));
    for relay in relays {
        relay.abort();
    }
    status
}

/// Runs `cmd` to completion. A non-zero exit is not an error here (see [`run_checked`]); a timeout or a
/// cancel kills the whole process group and is.
pub async fn run(cmd: &Cmd, sink: Option<OutputSink>, cancel: Option<watch::Receiver<bool>>) -> ExecResult<CmdOutput> {
    let stdin = match (&cmd.stdin_file, &cmd.stdin) {
        (Some(path), _) => Stdio::from(std::fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?),
        (None, Some(_)) => Stdio::piped(),
        (None, None) => Stdio::null(),
    };
    let stdout = match &cmd.stdout_file {
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
    };
    let started = Instant::now();
    let mut child = spawn(cmd, stdin, stdout)?;
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
pub async fn run_pipe(
    from: &Cmd,
    to: &Cmd,
    sink: Option<OutputSink>,
    cancel: Option<watch::Receiver<bool>>,
) -> ExecResult<CmdOutput> {
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
                stderr_tail: failure_summary(&stderr, &stdout),
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
    /// Starts `cmd` (its `stdin`, `stdin_file` and `stdout_file` are ignored) with piped stdin and stdout.
    pub fn start(cmd: &Cmd) -> ExecResult<Session> {
        let mut child = spawn(cmd, Stdio::piped(), Stdio::piped())?;
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
                    stderr_tail: failure_summary(&stderr, ""),
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
                stderr_tail: failure_summary(&stderr, ""),
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
            stderr_tail: failure_summary(&out.stderr, &out.stdout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_causes_are_found_in_the_common_shapes() {
        // Drush 12 with a class missing from vendor/: the cause, not the end of the trace.
        let drush = "PHP Fatal error:  Uncaught Error: Class \"Symfony\\Foo\" not found in /srv/d10/vendor/a.php:12\n\
            Stack trace:\n#0 /srv/d10/vendor/b.php(3): a()\n#33 {main}\n  thrown in /srv/d10/vendor/a.php on line 12\n \
            [warning] Drush command terminated abnormally.";
        assert_eq!(
            root_cause(drush).as_deref(),
            Some("PHP Fatal error:  Uncaught Error: Class \"Symfony\\Foo\" not found in /srv/d10/vendor/a.php:12")
        );
        let error = "In Kernel.php line 12:\nError: Class \"Drupal\\x\\Y\" not found in Drupal\\Core\\Z->a() (line 4 of /s/z.php).\n#0 {main}";
        assert_eq!(
            root_cause(error).as_deref(),
            Some("Error: Class \"Drupal\\x\\Y\" not found in Drupal\\Core\\Z->a() (line 4 of /s/z.php).")
        );
        let typed = "TypeError: Argument 1 passed to f() must be string in /a.php:3\n#0 {main}";
        assert!(root_cause(typed).is_some_and(|c| c.starts_with("TypeError: Argument 1")));
        // drush's own messages: the first [error] line.
        let logged = " [notice] Starting\n [error]  Unable to install modules: config x missing \n [error]  Second\n [warning] Drush command terminated abnormally.";
        assert_eq!(root_cause(logged).as_deref(), Some("Unable to install modules: config x missing"));
        // Composer's platform check, ahead of the fatal error it raises.
        let composer = "PHP Fatal error:  Uncaught RuntimeException: Composer detected issues in your platform: \
            Your Composer dependencies require a PHP version \">= 8.3.0\". You are running 8.2.7. in /v/platform_check.php:24";
        assert!(root_cause(composer)
            .is_some_and(|c| c.contains("require a PHP version \">= 8.3.0\". You are running 8.2.7")));
        let plain =
            "Composer detected issues in your platform: Your Composer dependencies require a PHP version \">= 8.3.0\".";
        assert_eq!(
            root_cause(plain).as_deref(),
            Some("Your Composer dependencies require a PHP version \">= 8.3.0\".")
        );
        // Database clients and WordPress.
        let db = "mysqldump: warning\nERROR 1045 (28000): Access denied for user 'x'@'localhost'";
        assert_eq!(root_cause(db).as_deref(), Some("ERROR 1045 (28000): Access denied for user 'x'@'localhost'"));
        assert!(root_cause("<h1>Error establishing a database connection</h1>").is_some());
        // Nothing recognisable: no cause (the summary keeps the last lines).
        assert_eq!(root_cause("something went wrong\nexit"), None);
        assert_eq!(failure_summary("a\nb", ""), "a | b");
        assert!(failure_summary("", drush).starts_with("PHP Fatal error"));
    }

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

    #[tokio::test]
    async fn a_session_starts_in_its_cwd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = dir.path().canonicalize().expect("canonical").to_str().expect("utf-8").to_string();
        let mut cmd = Cmd::new(["/bin/pwd"]);
        cmd.cwd = Some(cwd.clone());
        let mut s = Session::start(&cmd).expect("starts");
        s.wait_for(&cwd, Duration::from_secs(5)).await.expect("prints its cwd");
    }

    /// What `cmd` prints through each way in: run, either side of run_pipe, and a Session.
    async fn through_every_way(cmd: &Cmd) -> Vec<(&'static str, String)> {
        let run_out = run(cmd, None, None).await.expect("run").stdout;
        let producer = run_pipe(cmd, &Cmd::new(["cat"]), None, None).await.expect("producer").stdout;
        let consumer = run_pipe(&Cmd::new(["true"]), cmd, None, None).await.expect("consumer").stdout;
        let mut s = Session::start(cmd).expect("session");
        let mut session = String::new();
        while let Some(line) = s.stdout.next_line().await.expect("reads") {
            session.push_str(&line);
            session.push('\n');
        }
        vec![("run", run_out), ("run_pipe producer", producer), ("run_pipe consumer", consumer), ("session", session)]
    }

    #[tokio::test]
    async fn every_way_in_gets_the_same_env_and_cwd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = dir.path().canonicalize().expect("canonical").to_str().expect("utf-8").to_string();
        let with = |program: &str| {
            let mut cmd = Cmd::new([program]).env("FJORD_X", "1");
            cmd.cwd = Some(cwd.clone());
            cmd
        };
        for (way, out) in through_every_way(&with("/bin/pwd")).await {
            assert_eq!(out, format!("{cwd}\n"), "{way}");
        }
        let env = run(&with("/usr/bin/env"), None, None).await.expect("runs").stdout;
        assert!(env.lines().any(|l| l == "FJORD_X=1"), "{env}");
        // Fjord's own commands inherit its environment.
        assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
        for (way, out) in through_every_way(&with("/usr/bin/env")).await {
            assert_eq!(out, env, "{way}");
        }
        // Each in a process group of its own, which a timeout or cancel kills whole.
        for (way, out) in through_every_way(&Cmd::new(["/bin/cat", "/proc/self/stat"])).await {
            let (pid, pgrp) = pid_and_group(&out);
            assert_eq!(pid, pgrp, "{way}");
        }
    }

    /// The pid and process group in a `/proc/<pid>/stat` line.
    fn pid_and_group(stat: &str) -> (i32, i32) {
        let pid = stat.split(' ').next().and_then(|p| p.parse().ok()).expect("pid");
        let after_comm = stat.rsplit_once(") ").expect("comm").1;
        let pgrp = after_comm.split(' ').nth(2).and_then(|p| p.parse().ok()).expect("pgrp");
        (pid, pgrp)
    }

    #[tokio::test]
    async fn exec_as_runs_as_its_user_with_only_its_env_in_a_session_of_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let Some(name) = exec_test_user() else {
            eprintln!("skipped: no user to run as");
            return;
        };
        let user = nix::unistd::User::from_name(&name).ok().flatten().expect("user");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let cwd = dir.path().canonicalize().expect("canonical").to_str().expect("utf-8").to_string();
        let script = "/usr/bin/id -u > id; /usr/bin/env > env; /bin/pwd > pwd; /bin/cat /proc/self/stat > stat; exit 3";
        let argv = ["/bin/sh".to_string(), "-c".into(), script.into()];
        let before = processes_started();
        let code = crate::users::exec_as(&name, &argv, &[("FJORD_X".into(), "1".into())], &cwd).await.expect("runs");
        assert_eq!(code, 3);
        assert!(processes_started() > before);
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("written");
        assert_eq!(read("id"), format!("{}\n", user.uid));
        assert_eq!(read("pwd"), format!("{cwd}\n"));
        // In a session of its own (the shell's, whose group `cat` shares), without a controlling terminal.
        let stat = read("stat");
        let fields: Vec<&str> = stat.rsplit_once(") ").expect("comm").1.split(' ').collect();
        let (pgrp, session, tty) = (fields[2], fields[3], fields[4]);
        assert_eq!(pgrp, session, "{stat}");
        assert_ne!(session, nix::unistd::getsid(None).expect("sid").to_string(), "{stat}");
        assert_eq!(tty, "0", "no controlling terminal: {stat}");
        // Exactly the Cmd's environment (the shell adds its PWD), nothing of Fjord's.
        let env = read("env");
        let theirs: Vec<&str> = env.lines().filter(|l| !l.starts_with("PWD=")).collect();
        assert_eq!(theirs, ["FJORD_X=1"], "{env}");
    }

    /// The user `exec_as` tests run commands as: as root, a real switch to nobody; otherwise oneself.
    fn exec_test_user() -> Option<String> {
        let name = if nix::unistd::geteuid().is_root() { "nobody".to_string() } else { std::env::var("USER").ok()? };
        nix::unistd::User::from_name(&name).ok().flatten().map(|_| name)
    }

    /// Set (to the user to run as) when this test binary runs as one of the `exec_as` helpers.
    const EXEC_HELPER: &str = "FJORD_TEST_EXEC_HELPER";

    /// A site's command must not be able to type into the operator's terminal (`TIOCSTI`), which the
    /// operator's shell would run once the command exits. The operator is this test binary again, run
    /// as [`tiocsti_helper`] in a session of its own whose controlling terminal (and stdin) is a new
    /// pseudo-terminal: `setsid --ctty`, as a login shell would have it.
    #[test]
    fn exec_as_cannot_type_into_the_callers_terminal() {
        let Some(user) = exec_test_user() else {
            eprintln!("skipped: no user to run as");
            return;
        };
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let exe = std::env::current_exe().expect("test binary");
        let exe = exe.to_str().expect("utf-8 path");
        let argv =
            ["setsid", "--ctty", "--wait", exe, "--exact", "cmd::tests::tiocsti_helper", "--ignored", "--nocapture"];
        let cmd = Cmd::new(argv).env(EXEC_HELPER, user);
        let launch =
            Launch { stdin: Stdio::from(pty.slave), stdout: Stdio::piped(), stderr: Stdio::piped(), user: None };
        let out = start(&cmd, launch, |mut command| command.output()).expect("runs");
        drop(pty.master);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{report}");
        assert!(stdout.contains("exec_as: exit 0"), "the helper ran the command: {report}");
        assert!(stdout.contains("TIOCSTI refused"), "{report}");
        assert!(stdout.contains("the terminal's next input: nothing"), "{report}");
    }

    /// The operator's side of [`exec_as_cannot_type_into_the_callers_terminal`]: runs, through
    /// `exec_as`, a command that pushes `echo injected` into its stdin (the terminal), then reads what
    /// a shell would read next from the terminal.
    #[tokio::test]
    #[ignore = "run by exec_as_cannot_type_into_the_callers_terminal, with a terminal"]
    #[allow(clippy::print_stdout)] // its report to the test that runs it
    async fn tiocsti_helper() {
        let Ok(user) = std::env::var(EXEC_HELPER) else { return };
        let inject = "import fcntl, termios\n\
                      try:\n    \
                      for b in b'echo injected\\n':\n        \
                      fcntl.ioctl(0, termios.TIOCSTI, bytes([b]))\n    \
                      print('TIOCSTI worked')\n\
                      except OSError as e:\n    \
                      print('TIOCSTI refused:', e)\n";
        let argv = ["/usr/bin/python3".to_string(), "-c".into(), inject.into()];
        let code = crate::users::exec_as(&user, &argv, &[], "/").await.expect("runs");
        println!("exec_as: exit {code}");
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(0, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking stdin");
        let mut buf = [0u8; 256];
        match nix::unistd::read(0, &mut buf) {
            Ok(n) if n > 0 => println!("the terminal's next input: {:?}", String::from_utf8_lossy(&buf[..n])),
            other => println!("the terminal's next input: nothing ({other:?})"),
        }
    }

    /// The command is outside the terminal's foreground job, so Fjord passes on what the terminal
    /// sends that job: here `Ctrl-C`, a SIGINT to the process group of Fjord (this test binary again,
    /// as [`interrupt_helper`]).
    #[tokio::test]
    async fn exec_as_passes_on_the_terminals_interrupt() {
        let Some(user) = exec_test_user() else {
            eprintln!("skipped: no user to run as");
            return;
        };
        let exe = std::env::current_exe().expect("test binary");
        let exe = exe.to_str().expect("utf-8 path");
        let argv = [exe, "--exact", "cmd::tests::interrupt_helper", "--ignored", "--nocapture"];
        let cmd = Cmd::new(argv).env(EXEC_HELPER, user).timeout(Duration::from_secs(30));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let helper = tokio::spawn(async move { run(&cmd, Some(tx), None).await });
        let (mut group, mut command) = (None, None);
        while let Some((_, line)) = rx.recv().await {
            let pid = |p: &str| p.parse().ok().map(nix::unistd::Pid::from_raw);
            if let Some(g) = line.strip_prefix("group ") {
                group = pid(g);
            }
            if let Some(c) = line.strip_prefix("started ") {
                command = pid(c);
                let group = group.expect("the helper's group first");
                nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).expect("interrupt");
                break;
            }
        }
        let out = helper.await.expect("joins");
        // Had the interrupt not reached it, the command (a session of its own) would outlive the helper.
        if let Some(command) = command {
            let _ = nix::sys::signal::killpg(command, nix::sys::signal::Signal::SIGKILL);
        }
        let out = out.expect("the helper ends: the command was interrupted");
        assert!(out.stdout.contains("interrupted\n"), "{out:?}");
        assert!(out.stdout.contains("exec_as: exit 5\n"), "{out:?}");
    }

    /// The operator's side of [`exec_as_passes_on_the_terminals_interrupt`]: a command that waits for
    /// a SIGINT, through `exec_as`.
    #[tokio::test]
    #[ignore = "run by exec_as_passes_on_the_terminals_interrupt"]
    #[allow(clippy::print_stdout)] // its report to the test that runs it
    async fn interrupt_helper() {
        let Ok(user) = std::env::var(EXEC_HELPER) else { return };
        println!("group {}", nix::unistd::getpgrp());
        let script = "trap 'echo interrupted; exit 5' INT; echo started $$; while :; do sleep 0.1; done";
        let argv = ["/bin/sh".to_string(), "-c".into(), script.into()];
        let code = crate::users::exec_as(&user, &argv, &[], "/").await.expect("runs");
        println!("exec_as: exit {code}");
    }

    #[tokio::test]
    async fn started_processes_are_counted() {
        // Other tests start processes at the same time: only a lower bound holds.
        let before = processes_started();
        run(&Cmd::new(["true"]), None, None).await.expect("runs");
        assert!(processes_started() > before);
        let before = processes_started();
        run_pipe(&Cmd::new(["true"]), &Cmd::new(["true"]), None, None).await.expect("runs");
        assert!(processes_started() >= before + 2);
        let before = processes_started();
        Session::start(&Cmd::new(["true"])).expect("starts").finish("").await.expect("exits 0");
        assert!(processes_started() > before);
    }
}
