//! Running one task: plan, record, apply step by step, undo on failure, finish.

use crate::DaemonConfig;
use fjord_core::*;
use fjord_exec::{Executor, StepUndo};
use fjord_store::Store;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub struct Context {
    pub store: Store,
    pub executor: Executor,
    pub config: DaemonConfig,
}

/// Fault injection: make step `step` of tasks of `kind` fail after it was applied, or abort the whole
/// daemon process there (as a kill -9 would), to test undo and crash recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: TaskKind,
    pub step: usize,
    pub crash: bool,
}

impl std::str::FromStr for Fault {
    type Err = String;
    /// `KIND:STEP:fail` or `KIND:STEP:crash`, e.g. `site-install:2:fail`.
    fn from_str(s: &str) -> Result<Fault, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [kind, step, what] = parts[..] else {
            return Err(format!("fault {s:?}: expected KIND:STEP:fail|crash"));
        };
        Ok(Fault {
            kind: kind.parse()?,
            step: step.parse().map_err(|_| format!("fault {s:?}: step must be a number"))?,
            crash: match what {
                "crash" => true,
                "fail" => false,
                _ => return Err(format!("fault {s:?}: expected fail or crash")),
            },
        })
    }
}

/// Writes to the task log, never failing the task because logging failed.
struct Log<'a> {
    store: &'a Store,
    task: TaskId,
}

impl Log<'_> {
    async fn line(&self, level: LogLevel, text: &str) {
        match level {
            LogLevel::Error => tracing::error!(task = self.task.0, "{text}"),
            LogLevel::Warn => tracing::warn!(task = self.task.0, "{text}"),
            _ => tracing::info!(task = self.task.0, "{text}"),
        }
        if let Err(e) = self.store.log(self.task, level, LogStream::Fjord, text).await {
            tracing::warn!(task = self.task.0, error = %e, "cannot write task log");
        }
    }
    async fn info(&self, text: &str) {
        self.line(LogLevel::Info, text).await
    }
    async fn error(&self, text: &str) {
        self.line(LogLevel::Error, text).await
    }
}

/// A line of a command's output and where it came from.
type OutputLine = (LogStream, String);

/// Forwards a command's output lines to the task log while it runs; keeps them when the command
/// reports a value (`keep`), and keeps that value itself out of the log when it is a secret.
fn output_forwarder(
    store: &Store,
    task: TaskId,
    keep: Option<Report>,
) -> (mpsc::UnboundedSender<OutputLine>, tokio::task::JoinHandle<Vec<OutputLine>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<OutputLine>();
    let store = store.clone();
    let handle = tokio::spawn(async move {
        // The lines of a command whose output the task reports as data, for its report.
        let mut kept = Vec::new();
        while let Some((stream, line)) = rx.recv().await {
            let logged = match keep {
                Some(r) if r.is_secret(&line) => "[the one-time login link: in the task's result, for whoever asked]",
                _ => line.as_str(),
            };
            let _ = store.log(task, LogLevel::Info, stream, logged).await;
            if keep.is_some() {
                kept.push((stream, line));
            }
        }
        kept
    });
    (tx, handle)
}

/// The task's plan, made the one way requests plan theirs (fjord-actions), so a dry run shows what runs.
async fn plan_task(ctx: &Context, task: &Task) -> Result<Planned, String> {
    fjord_actions::planning::plan_task(&ctx.store, &ctx.config.layout, task).await.map_err(|e| e.to_string())
}

/// Renews the lease while the task runs; flips `cancel` (and stops) when the task is asked to stop or
/// the lease is lost (another daemon took it over).
fn heartbeat(ctx: &Context, task: TaskId, cancel: watch::Sender<bool>) -> crate::heartbeat::Heartbeat {
    // Cancel requests are looked at often so a cancel takes effect quickly.
    let poll = Duration::from_millis(200);
    crate::heartbeat::start(&ctx.store, task, &ctx.config.node, ctx.config.lease, poll, move |_| {
        let _ = cancel.send(true);
        std::ops::ControlFlow::Break(())
    })
}

/// Runs a claimed task to its end.
pub async fn run_task(ctx: &Context, task: Task) {
    let log = Log { store: &ctx.store, task: task.id };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let beat = heartbeat(ctx, task.id, cancel_tx);
    let mut report = TaskReport::default();
    // Counted per task, so that a test (and whoever reads the log) sees what this task alone started:
    // a verify that changes nothing starts none.
    let (outcome, processes) =
        fjord_exec::cmd::counting_processes(execute(ctx, &task, &log, cancel_rx, &mut report)).await;
    drop(beat);
    let (status, error, mut changes, undos, mut unlogged_start) = outcome;
    // A backup's size and checksum are known only once its archive is written.
    for change in &mut changes {
        if let StateChange::BackupRecorded { path, size, checksum, .. } = change {
            *size = std::fs::metadata(&*path).map(|m| m.len() as i64).unwrap_or(0);
            *checksum = std::fs::read_to_string(fjord_exec::backup::checksum_path(Path::new(&*path)))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
        }
    }
    // A certificate's names and dates are known only once it is installed; a failure is retried later.
    for change in &mut changes {
        match change {
            StateChange::CertInstalled { meta_path, meta, .. } => {
                *meta = std::fs::read(&*meta_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            }
            StateChange::CertFailed { site, error: e, retry_at } => {
                *e = error.clone().unwrap_or_else(|| status.to_string());
                let failures = ctx.store.site(*site).await.map(|s| s.tls.failures).unwrap_or(0) + 1;
                *retry_at = fjord_store::now_millis()
                    + fjord_core::tls::retry_delay(failures, ctx.config.cert_retry.as_millis() as i64);
            }
            _ => {}
        }
    }
    if status == TaskStatus::Succeeded && task.kind == TaskKind::PlatformVerify {
        if let Some(started) = unlogged_start.take() {
            log.info(&started).await;
        }
        adopt_found_sites(ctx, &task, &log).await;
    }
    let started_processes = format!("processes started: {processes}");
    let last = match &error {
        None => (LogLevel::Info, format!("{} succeeded", task.kind)),
        Some(e) => (LogLevel::Error, format!("{} {}: {e}", task.kind, status)),
    };
    tracing::info!(task = task.id.0, "{}", last.1);
    // A succeeded task's removed paths go before it is reported finished, so whoever waits for it
    // never sees them vanish later (a clone of the site right after a restore copies its directory).
    // A crash in between is safe: a recovered task whose steps all applied is finished, not undone.
    if status == TaskStatus::Succeeded {
        ctx.executor.forget(task.id, &undos, true);
    }
    // What the task found out is its result, recorded before its end so whoever waits for the end
    // finds it.
    if !report.is_empty() {
        if let Err(e) = ctx.store.set_task_report(task.id, &report).await {
            tracing::error!(task = task.id.0, error = %e, "cannot record the task's result");
        }
    }
    match ctx
        .store
        .finish(task.id, &ctx.config.node, status, error.as_deref(), &changes, &{
            let mut lines: Vec<(LogLevel, &str)> =
                unlogged_start.iter().map(|s| (LogLevel::Info, s.as_str())).collect();
            lines.push((LogLevel::Info, &started_processes));
            lines.push((last.0, &last.1));
            lines
        })
        .await
    {
        Ok(true) if status != TaskStatus::Succeeded => ctx.executor.forget(task.id, &undos, false),
        Ok(true) => {
            // A site created (or renamed) with HTTPS on gets its first certificate from the next
            // pass; only now is its new state recorded for that pass to read.
            if matches!(
                task.kind,
                TaskKind::SiteInstall
                    | TaskKind::SiteImport
                    | TaskKind::SiteClone
                    | TaskKind::SiteMigrate
                    | TaskKind::SiteRestore
            ) {
                CERT_CHECK_SOON.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(false) => tracing::warn!(task = task.id.0, "lease lost before the task could finish"),
        Err(e) => tracing::error!(task = task.id.0, error = %e, "cannot record the task's end"),
    }
}

/// Status, error, state changes, undo entries, and the "started" log line if it is still to be written.
type Outcome = (TaskStatus, Option<String>, Vec<StateChange>, Vec<StepUndo>, Option<String>);

/// Runs `task`'s plan; what it finds out as data (commit, downtime, a login link …) goes to `report`.
async fn execute(
    ctx: &Context,
    task: &Task,
    log: &Log<'_>,
    cancel: watch::Receiver<bool>,
    report: &mut TaskReport,
) -> Outcome {
    let planned = match plan_task(ctx, task).await {
        Ok(p) => p,
        Err(e) => return (TaskStatus::Failed, Some(e), vec![], vec![], None),
    };
    let started =
        format!("{} started (attempt {} of {}) on {}", task.kind, task.attempts, task.max_attempts, ctx.config.node);
    // A plan without steps has nothing to undo after a crash: it needs no stored plan, and its first
    // log line can go with its last, saving a transaction on the queue's hottest path.
    if planned.plan.steps.is_empty() {
        return (TaskStatus::Succeeded, None, planned.on_success, vec![], Some(started));
    }
    if let Err(e) = ctx.store.set_plan(task.id, &planned, &started).await {
        return (TaskStatus::Failed, Some(format!("cannot store the plan: {e}")), planned.on_failure, vec![], None);
    }
    let mut undos: Vec<(usize, StepUndo)> = Vec::new();
    let mut failure: Option<(TaskStatus, String)> = None;
    // Paths this task really changed: a service reload watching none of them is skipped, so a verify
    // that changes nothing reloads nothing.
    let mut changed: Vec<String> = Vec::new();
    // When the site stopped being served as before (a migrate's maintenance window began).
    let mut down_since: Option<std::time::Instant> = None;
    // Past a `commit` mark the new state is in place and checked: what follows is cleanup that is
    // finished, never rolled back (it may have dropped what a rollback would need).
    let mut committed = false;
    // Steps whose effect is already on disk are neither recorded nor applied: nothing to undo, and a
    // verify that changes nothing writes nothing per step to the state database.
    let mut in_place = 0usize;
    let steps = &planned.plan.steps;
    let faulty = |i: usize| ctx.config.fault.as_ref().is_some_and(|f| f.kind == task.kind && f.step == i);
    // A run of file steps (directories, files) is recorded in one transaction before the first of
    // them applies, and marked applied in one after: undo entries are still on record before their
    // step runs (undoing a step that did not run is harmless), at one commit per run, not two per step.
    let mut prerecorded: std::collections::HashMap<usize, StepUndo> = Default::default();
    let mut applied_run: Vec<(i64, i64)> = Vec::new();
    for (idx, step) in steps.iter().enumerate() {
        if !prerecorded.contains_key(&idx) && !applied_run.is_empty() {
            let _ = ctx.store.set_steps_applied(task.id, &std::mem::take(&mut applied_run)).await;
        }
        if *cancel.borrow() && !committed {
            failure = Some((TaskStatus::Cancelled, "cancelled before step ".to_string() + &(idx + 1).to_string()));
            break;
        }
        // A step of a run was looked at when the run was recorded (applying it again if it has
        // come into place since is a no-op: `apply` compares first).
        if !prerecorded.contains_key(&idx) && !faulty(idx) && ctx.executor.in_place(step).unwrap_or(false) {
            in_place += 1;
            continue;
        }
        let description = step.describe();
        if is_file_step(step) && !prerecorded.contains_key(&idx) && !faulty(idx) {
            let mut run = Vec::new();
            for (i, s) in steps.iter().enumerate().skip(idx).take(256) {
                if !is_file_step(s) || faulty(i) || (i > idx && ctx.executor.in_place(s).unwrap_or(false)) {
                    break;
                }
                // A step whose undo cannot be worked out fails on its own below.
                let Ok(undo) = ctx.executor.prepare(task.id, i, s) else { break };
                run.push((i, undo));
            }
            let rows: Vec<(i64, String, String, String)> = run
                .iter()
                .map(|(i, undo)| {
                    let d = steps[*i].describe();
                    let log = format!("step {}/{}: {d}", i + 1, steps.len());
                    (*i as i64, d, serde_json::to_string(undo).expect("undo serializes"), log)
                })
                .collect();
            if !rows.is_empty() {
                if let Err(e) = ctx.store.record_steps(task.id, &rows).await {
                    failure = Some((TaskStatus::Failed, format!("cannot record step {}: {e}", idx + 1)));
                    break;
                }
                prerecorded.extend(run);
            }
        }
        let batched = prerecorded.contains_key(&idx);
        let undo = match prerecorded.remove(&idx) {
            Some(u) => u,
            None => {
                let undo = match ctx.executor.prepare(task.id, idx, step) {
                    Ok(u) => u,
                    Err(e) => {
                        failure = Some((TaskStatus::Failed, format!("step {} ({description}): {e}", idx + 1)));
                        break;
                    }
                };
                let undo_json = serde_json::to_string(&undo).expect("undo serializes");
                let line = format!("step {}/{}: {description}", idx + 1, steps.len());
                if let Err(e) =
                    ctx.store.record_steps(task.id, &[(idx as i64, description.clone(), undo_json, line)]).await
                {
                    failure = Some((TaskStatus::Failed, format!("cannot record step {}: {e}", idx + 1)));
                    break;
                }
                undo
            }
        };
        undos.push((idx, undo));
        let step_started = std::time::Instant::now();
        let result = match step {
            Step::Service { watch, service, pidfile, .. }
                if !watch.is_empty()
                    && !changed.iter().any(|c| watch.iter().any(|w| c.starts_with(w.as_str())))
                    && ctx.executor.service_running(pidfile) =>
            {
                Ok(Some(format!("no config of {service} changed: no reload")))
            }
            _ => {
                let reported = match step {
                    Step::Run { cmd, .. } => cmd.report,
                    _ => None,
                };
                let (sink, forwarder) = output_forwarder(&ctx.store, task.id, reported);
                let result = ctx.executor.apply(task.id, idx, step, Some(sink), Some(cancel.clone())).await;
                // The forwarder ends when the last sender (held by the command) is gone.
                let lines = forwarder.await.unwrap_or_default();
                if let (Some(r), Ok(_)) = (reported, &result) {
                    report.take(r, &lines);
                }
                result
            }
        };
        if let (
            Ok(None),
            Step::WriteFile { path, .. }
            | Step::MakeDir { path, .. }
            | Step::RemovePath { path }
            | Step::UnixUser { home: path, .. },
        ) = (&result, step)
        {
            changed.push(path.clone());
        }
        let injected = ctx.config.fault.as_ref().filter(|f| f.kind == task.kind && f.step == idx);
        match result {
            Ok(note) => {
                if let Some(note) = note {
                    log.info(&format!("  {note}")).await;
                }
                match step {
                    Step::Mark { name: Mark::Commit } => {
                        committed = true;
                        report.committed = true;
                    }
                    Step::Mark { name: Mark::DowntimeStart } => down_since = Some(std::time::Instant::now()),
                    Step::Mark { name: Mark::NoDowntime } => {
                        report.downtime_ms = Some(0);
                        log.info("no maintenance window: the site is served throughout the switch").await;
                    }
                    Step::Mark { name: Mark::DowntimeEnd } => {
                        if let Some(begun) = down_since.take() {
                            let span = begun.elapsed().as_millis() as u64;
                            report.downtime_ms = Some(span);
                            log.info(&format!("maintenance: {span} ms")).await;
                        }
                    }
                    _ => {}
                }
                if batched {
                    applied_run.push((idx as i64, step_started.elapsed().as_millis() as i64));
                } else {
                    let _ = ctx.store.set_step_status(task.id, idx as i64, StepStatus::Applied).await;
                }
                if let Some(f) = injected {
                    if f.crash {
                        tracing::error!(task = task.id.0, "fault injection: aborting the daemon");
                        std::process::abort();
                    }
                    failure = Some((TaskStatus::Failed, format!("step {} ({description}): injected fault", idx + 1)));
                    break;
                }
            }
            Err(fjord_exec::ExecError::Cancelled) => {
                failure = Some((TaskStatus::Cancelled, format!("cancelled during step {}", idx + 1)));
                break;
            }
            Err(e) => {
                let _ = ctx.store.set_step_status(task.id, idx as i64, StepStatus::Failed).await;
                failure = Some((TaskStatus::Failed, format!("step {} ({description}): {e}", idx + 1)));
                break;
            }
        }
    }
    if !applied_run.is_empty() {
        let _ = ctx.store.set_steps_applied(task.id, &applied_run).await;
    }
    if in_place > 0 {
        log.info(&format!("{in_place} of {} steps already in place", planned.plan.steps.len())).await;
    }
    let all_undos: Vec<StepUndo> = undos.iter().map(|(_, u)| u.clone()).collect();
    if let (true, Some((_, error))) = (committed, &failure) {
        log.line(LogLevel::Warn, &format!("cleanup incomplete ({error}); the change itself is done and checked")).await;
        return (TaskStatus::Succeeded, None, planned.on_success, all_undos, None);
    }
    match failure {
        None => (TaskStatus::Succeeded, None, planned.on_success, all_undos, None),
        Some((status, error)) => {
            log.error(&format!("{error}; rolling back {} step(s)", undos.len())).await;
            let undo_error = roll_back(ctx, task.id, log, &undos, true).await;
            let error = match undo_error {
                Some(u) => format!("{error}; rollback incomplete (retried until it succeeds): {u}"),
                None => error,
            };
            (status, Some(error), planned.on_failure, all_undos, None)
        }
    }
}

/// Steps that only make directories and files here: recorded and marked applied in runs.
fn is_file_step(step: &Step) -> bool {
    matches!(step, Step::MakeDir { .. } | Step::WriteFile { .. } | Step::EnsureFile { .. })
}

/// Undoes steps in reverse order; service reloads go last, once the old files are all back. Returns a
/// description of undo failures, if any (logged to the task when `log_failures`).
async fn roll_back(
    ctx: &Context,
    task: TaskId,
    log: &Log<'_>,
    undos: &[(usize, StepUndo)],
    log_failures: bool,
) -> Option<String> {
    let mut failures = Vec::new();
    // Services this task started are stopped first (their pid files may go with later undos);
    // services that were running reload last, once the old files are all back.
    let (stops, rest): (Vec<_>, Vec<_>) =
        undos.iter().rev().partition(|(_, u)| matches!(u, StepUndo::Reload { was_running: false, .. }));
    let (reloads, others): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(_, u)| matches!(u, StepUndo::Reload { .. }));
    for (idx, undo) in stops.into_iter().chain(others).chain(reloads) {
        // A quiet retry keeps the task's log to what changed: its output is in the error it returns.
        let result = if log_failures {
            let (sink, forwarder) = output_forwarder(&ctx.store, task, None);
            let result = ctx.executor.undo(undo, Some(sink)).await;
            let _ = forwarder.await;
            result
        } else {
            ctx.executor.undo(undo, None).await
        };
        match result {
            Ok(()) => {
                let _ = ctx.store.set_step_status(task, *idx as i64, StepStatus::Undone).await;
                if *undo != StepUndo::Nothing {
                    log.info(&format!("undid step {}", idx + 1)).await;
                }
            }
            Err(e) => {
                let _ = ctx.store.set_step_status(task, *idx as i64, StepStatus::UndoFailed).await;
                if log_failures {
                    log.error(&format!("undoing step {} failed: {e}", idx + 1)).await;
                }
                failures.push(format!("step {}: {e}", idx + 1));
            }
        }
    }
    (!failures.is_empty()).then(|| failures.join("; "))
}

/// Retries the undos that failed in finished tasks' rollbacks: a database server that was down when a
/// failed `site create` rolled back still holds the database and user it made, and a retry of the
/// create would refuse ("exists"). Only commands are retried (dropping a database, a user): the undos
/// of files run on this machine and do not wait for anything to come back. Once another task has been
/// queued on the same target, the retry stops: that task owns the target now (a `site delete` of the
/// failed site drops what exists itself), and undoing behind its back could remove what it made.
pub async fn retry_failed_undos(ctx: &Context) {
    let pending = match ctx.store.failed_undos(100).await {
        Ok(p) => p,
        Err(e) => return tracing::warn!(error = %e, "cannot look for failed undos"),
    };
    for (task, steps) in pending {
        let log = Log { store: &ctx.store, task: task.id };
        if let Ok(Some(next)) = ctx.store.next_task_on_target(&task).await {
            for s in &steps {
                let _ = ctx.store.set_step_status(task.id, s.idx, StepStatus::UndoSuperseded).await;
            }
            log.line(
                LogLevel::Warn,
                &format!(
                    "undo of {} step(s) no longer retried: task #{} acts on this {} now",
                    steps.len(),
                    next.0,
                    task.target_kind
                ),
            )
            .await;
            continue;
        }
        let undos: Vec<(usize, StepUndo)> = steps
            .iter()
            .filter_map(|s| Some((s.idx as usize, serde_json::from_str(s.undo.as_deref()?).ok()?)))
            .filter(|(_, u): &(usize, StepUndo)| u.is_command())
            .collect();
        if undos.is_empty() {
            continue;
        }
        match roll_back(ctx, task.id, &log, &undos, false).await {
            None => log.info(&format!("rollback completed on a later try: {} step(s) undone", undos.len())).await,
            Some(e) => tracing::debug!(task = task.id.0, error = %e, "undo still failing; retried later"),
        }
    }
}

/// Recovers a task a dead daemon left running (already marked interrupted and leased to us).
pub async fn recover_task(ctx: &Context, task: Task) {
    let log = Log { store: &ctx.store, task: task.id };
    log.line(LogLevel::Warn, &format!("interrupted: the daemon running it stopped; recovered by {}", ctx.config.node))
        .await;
    if task.kind == TaskKind::PlatformMigrate {
        // A batch has no steps to undo and keeps its state in its summary: it carries on, whatever
        // its attempts (a cancel asked meanwhile is handled by the batch itself).
        log.info("queued again to carry on with the batch").await;
        if let Err(e) = ctx.store.requeue(task.id, &ctx.config.node, 0).await {
            tracing::error!(task = task.id.0, error = %e, "cannot requeue");
        }
        return;
    }
    let steps = ctx.store.steps(task.id).await.unwrap_or_default();
    if let Ok(Some(planned)) = ctx.store.plan_of(task.id).await {
        // Every step applied: the task was done, only its end was not recorded.
        let applied = steps.iter().filter(|s| s.status == StepStatus::Applied).count();
        if !planned.plan.steps.is_empty() && applied == planned.plan.steps.len() {
            let last = planned.plan.steps.len() - 1;
            return roll_forward(ctx, &task, &log, planned, last, &steps).await;
        }
        let commit = planned.plan.steps.iter().position(|s| matches!(s, Step::Mark { name: Mark::Commit }));
        if let Some(c) =
            commit.filter(|c| steps.iter().any(|s| s.idx as usize == *c && s.status == StepStatus::Applied))
        {
            return roll_forward(ctx, &task, &log, planned, c, &steps).await;
        }
    }
    let undos: Vec<(usize, StepUndo)> = steps
        .iter()
        .filter(|s| matches!(s.status, StepStatus::Pending | StepStatus::Applied | StepStatus::Failed))
        .filter_map(|s| Some((s.idx as usize, serde_json::from_str(s.undo.as_deref()?).ok()?)))
        .collect();
    let undo_error = roll_back(ctx, task.id, &log, &undos, true).await;
    let on_failure = match ctx.store.plan_of(task.id).await {
        Ok(Some(p)) => p.on_failure,
        _ => vec![],
    };
    let all: Vec<StepUndo> = undos.iter().map(|(_, u)| u.clone()).collect();
    ctx.executor.forget(task.id, &all, false);
    let requeue = undo_error.is_none()
        && !task.cancel_requested
        && task.kind.on_interrupt() == InterruptPolicy::Requeue
        && task.attempts < task.max_attempts;
    if requeue {
        let _ = ctx.store.clear_steps(task.id).await;
        log.info("rolled back; queued again").await;
        if let Err(e) = ctx.store.requeue(task.id, &ctx.config.node, 0).await {
            tracing::error!(task = task.id.0, error = %e, "cannot requeue");
        }
    } else {
        let (status, why) = if task.cancel_requested {
            (TaskStatus::Cancelled, "cancelled while its daemon was down".to_string())
        } else {
            (TaskStatus::Failed, "interrupted: its daemon stopped while it ran".to_string())
        };
        let error = match undo_error {
            Some(u) => format!("{why}; rollback incomplete: {u}"),
            None => format!("{why}; rolled back"),
        };
        tracing::error!(task = task.id.0, "{error}");
        let _ = ctx
            .store
            .finish(task.id, &ctx.config.node, status, Some(&error), &on_failure, &[(LogLevel::Error, &error)])
            .await;
    }
}

/// Set when a task may have made a site that needs its first certificate: the daemon's loop then
/// runs its certificate pass at once instead of waiting for the next daily one.
pub static CERT_CHECK_SOON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Finishes a recovered task that had passed its commit mark: its remaining (cleanup) steps run again
/// — they are idempotent — and it succeeds, since rolling back could need what the cleanup dropped.
async fn roll_forward(
    ctx: &Context,
    task: &Task,
    log: &Log<'_>,
    planned: Planned,
    commit: usize,
    steps: &[StepRecord],
) {
    log.info("it had passed its point of no return: finishing its cleanup instead of rolling back").await;
    let committed = TaskReport { committed: true, ..Default::default() };
    if let Err(e) = ctx.store.set_task_report(task.id, &committed).await {
        tracing::error!(task = task.id.0, error = %e, "cannot record the task's result");
    }
    let mut undos: Vec<StepUndo> = steps.iter().filter_map(|s| serde_json::from_str(s.undo.as_deref()?).ok()).collect();
    let total = planned.plan.steps.len();
    for (idx, step) in planned.plan.steps.iter().enumerate().skip(commit + 1) {
        let description = step.describe();
        let result = match ctx.executor.prepare(task.id, idx, step) {
            Ok(undo) => {
                let json = serde_json::to_string(&undo).expect("undo serializes");
                let line = format!("step {}/{total}: {description}", idx + 1);
                let _ = ctx.store.record_steps(task.id, &[(idx as i64, description.clone(), json, line)]).await;
                undos.push(undo);
                let (sink, forwarder) = output_forwarder(&ctx.store, task.id, None);
                let r = ctx.executor.apply(task.id, idx, step, Some(sink), None).await;
                let _ = forwarder.await;
                r
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                let _ = ctx.store.set_step_status(task.id, idx as i64, StepStatus::Applied).await;
            }
            Err(e) => {
                log.line(LogLevel::Warn, &format!("cleanup step {} ({description}) failed: {e}", idx + 1)).await;
                break;
            }
        }
    }
    let done = "finished after its daemon stopped";
    let _ = ctx
        .store
        .finish(task.id, &ctx.config.node, TaskStatus::Succeeded, None, &planned.on_success, &[(LogLevel::Info, done)])
        .await;
    ctx.executor.forget(task.id, &undos, true);
}

/// After a platform verify: adopts the Drupal sites found under `sites/` that Fjord does not know,
/// reading each one's database settings with PHP (as drush would), recording the site and queueing
/// its import. The password goes to the secrets store, never into the state database.
async fn adopt_found_sites(ctx: &Context, task: &Task, log: &Log<'_>) {
    let Ok(platform) = ctx.store.platform(PlatformId(task.target_id)).await else { return };
    if !matches!(platform.app, Some(AppKind::Drupal | AppKind::Drupal7)) {
        return;
    }
    let Ok(server) = ctx.store.server(platform.server_id).await else { return };
    let root = Path::new(&platform.root);
    let web = match platform.docroot.as_deref() {
        Some("") | None => root.to_path_buf(),
        Some(d) => root.join(d),
    };
    for dir in fjord_exec::probe::platform_details(root, Some(&web)).unknown_sites {
        let Ok(domain) = Domain::parse(&dir) else {
            log.info(&format!("found sites/{dir}: not a domain name, left alone")).await;
            continue;
        };
        if ctx.store.site_by_domain(&domain).await.is_ok() {
            continue;
        }
        match adopt_one(ctx, &server, &platform, &web, &domain).await {
            Ok(note) => log.info(&format!("found sites/{dir}: {note}")).await,
            Err(e) => log.line(LogLevel::Warn, &format!("found sites/{dir}: not adopted: {e}")).await,
        }
    }
}

async fn adopt_one(
    ctx: &Context,
    server: &Server,
    platform: &Platform,
    web: &Path,
    domain: &Domain,
) -> Result<String, String> {
    let php = server.php_runtime(None).and_then(|r| r.cli.clone()).unwrap_or_else(|| "php".into());
    let import = fjord_actions::drupal_db_settings(&php, web, domain, platform).await?;
    let actions = fjord_actions::Actions::new(&ctx.store, &ctx.config.layout);
    let (_, outcome) = actions.import_site(&import, "daemon:adopt", false).await.map_err(|e| e.to_string())?;
    let task = outcome.task().map(|t| t.id.to_string()).unwrap_or_default();
    Ok(format!("adopted as site {domain}; its import is task {task}"))
}
