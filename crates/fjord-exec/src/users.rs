//! Unix users and groups of sites: created with `useradd`, removed with `userdel`/`groupdel`, looked up
//! through NSS. Commands that change `/etc/passwd` retry for a while: `useradd` refuses when another
//! one holds the lock (several tasks, or several Fjords, at once).

use crate::cmd::{Cmd, OutputSink};
use crate::host::Host;
use crate::{ExecError, ExecResult};
use std::time::Duration;

/// Whether Unix user `name` exists.
pub fn user_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

/// Whether Unix group `name` exists.
pub fn group_exists(name: &str) -> bool {
    nix::unistd::Group::from_name(name).ok().flatten().is_some()
}

/// Whether `user` is a (supplementary) member of `group`.
pub fn in_group(group: &str, user: &str) -> bool {
    nix::unistd::Group::from_name(group).ok().flatten().is_some_and(|g| g.mem.iter().any(|m| m == user))
}

/// Runs an account command, retrying while the account database is locked by someone else.
async fn run_locked(host: &Host, argv: &[&str], sink: Option<OutputSink>) -> ExecResult<()> {
    let mut last = None;
    for attempt in 0..40 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 + 20 * attempt)).await;
        }
        let cmd = Cmd::new(argv.iter().copied()).timeout(Duration::from_secs(60));
        match host.run_checked(&cmd, sink.clone(), None).await {
            Ok(_) => return Ok(()),
            // Exit status 10 (useradd/userdel/groupdel): cannot lock or update the account files.
            Err(e @ ExecError::Failed { .. }) if e.to_string().contains("lock") || e.to_string().contains(" 10") => {
                last = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ExecError::Other(format!("{} kept failing", argv.join(" ")))))
}

/// Makes sure user `name` and its group exist (a system account without a login shell, home `home`,
/// which is not created), and that `web_user` is in the group. Returns whether the user was created.
pub async fn ensure_user(
    host: &Host,
    name: &str,
    home: &str,
    web_user: Option<&str>,
    sink: Option<OutputSink>,
) -> ExecResult<bool> {
    let created = !user_exists(name);
    if created {
        if group_exists(name) {
            // A group left from an interrupted removal: the user takes it as its own.
            run_locked(
                host,
                &[
                    "useradd",
                    "--system",
                    "--gid",
                    name,
                    "--no-create-home",
                    "--home-dir",
                    home,
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                sink.clone(),
            )
            .await?;
        } else {
            run_locked(
                host,
                &[
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    home,
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                sink.clone(),
            )
            .await?;
        }
    }
    if let Some(w) = web_user {
        if !in_group(name, w) {
            run_locked(host, &["gpasswd", "--add", w, name], sink).await?;
        }
    }
    Ok(created)
}

/// Removes user `name` and its group, whichever exist.
pub async fn remove_user(host: &Host, name: &str, sink: Option<OutputSink>) -> ExecResult<bool> {
    let mut removed = false;
    if user_exists(name) {
        // --force: a PHP-FPM worker of the pool just removed may still be exiting.
        run_locked(host, &["userdel", "--force", name], sink.clone()).await?;
        removed = true;
    }
    if group_exists(name) {
        run_locked(host, &["groupdel", name], sink).await?;
        removed = true;
    }
    Ok(removed)
}

/// Runs `argv` in the foreground as Unix user `user` (its uid and primary group, no other groups),
/// with exactly `env` as its environment, in `cwd`, with this process's stdin, stdout and stderr but
/// in a session of its own, without this process's terminal as its controlling terminal (so it cannot
/// type into it); returns its exit code. For `fjord site exec`: a command in a site's context.
pub async fn exec_as(user: &str, argv: &[String], env: &[(String, String)], cwd: &str) -> ExecResult<i32> {
    let u = crate::cmd::lookup_user(user)?;
    let mut cmd = Cmd::new(argv.iter().cloned());
    cmd.env = env.to_vec();
    cmd.cwd = Some(cwd.to_string());
    let status = crate::cmd::run_foreground(&cmd, &u).await?;
    // Killed by a signal: what a shell reports (130 after Ctrl-C).
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(128 + 9))
}
