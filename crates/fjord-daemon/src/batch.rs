//! Running a batch task (`platform-migrate`): it has no steps of its own. It queues one `site-migrate`
//! per site (each planned first, so a refusal is recorded and nothing is queued for that site), at most
//! `parallel` at a time and canaries first, waits for them, and stores its [`BatchSummary`] after every
//! change. The decisions are `BatchSummary::next` (pure, in fjord-core).
//!
//! A batch holds no worker slot (it only waits), renews its own lease while it waits, and survives a
//! daemon restart: the recovered batch is queued again and carries on from its stored summary, after
//! matching it against the tasks it had queued (a crash may fall between queueing a site's migrate
//! and storing the summary that says so). A cancel queues no more sites; the running ones finish.

use crate::heartbeat::{self, Beat};
use crate::runner::Context;
use fjord_core::*;
use std::time::Duration;

/// How often a batch looks at its sites' tasks.
const POLL: Duration = Duration::from_millis(250);

/// Runs a claimed batch task to its end (or until its lease is lost).
pub async fn run_batch(ctx: &Context, task: Task) {
    let log = |level: LogLevel, text: String| {
        let store = ctx.store.clone();
        async move {
            tracing::info!(task = task.id.0, "{text}");
            let _ = store.log(task.id, level, LogStream::Fjord, &text).await;
        }
    };
    let args: PlatformMigrateArgs = match serde_json::from_value(task.args.clone()) {
        Ok(a) => a,
        Err(e) => return finish(ctx, &task, TaskStatus::Failed, Some(format!("task arguments: {e}")), None).await,
    };
    let mut summary = match ctx.store.task_result(task.id).await {
        Ok(Some(v)) => match serde_json::from_value::<BatchSummary>(v) {
            Ok(s) => s,
            Err(e) => return finish(ctx, &task, TaskStatus::Failed, Some(format!("stored summary: {e}")), None).await,
        },
        _ => {
            let from = ctx.store.platform(PlatformId(task.target_id)).await.map(|p| p.name.to_string());
            let to = ctx.store.platform(PlatformId(args.to_platform)).await.map(|p| p.name.to_string());
            let (Ok(from), Ok(to)) = (from, to) else {
                let error = "a platform of the batch no longer exists".to_string();
                return finish(ctx, &task, TaskStatus::Failed, Some(error), None).await;
            };
            BatchSummary::start(&from, &to, &args.sites)
        }
    };
    if task.attempts > 1 {
        log(LogLevel::Info, format!("resuming the batch (attempt {})", task.attempts)).await;
    } else {
        log(
            LogLevel::Info,
            format!(
                "platform-migrate started on {}: {} site(s) from {} to {}, {} at a time{}",
                ctx.config.node,
                summary.sites.len(),
                summary.from,
                summary.to,
                args.parallel.max(1),
                if args.canary > 0 { format!(", {} canary site(s) first", args.canary) } else { String::new() }
            ),
        )
        .await;
    }
    // Sites whose migrate was queued before a crash but not yet recorded as running.
    if let Ok(children) = ctx.store.children(task.id).await {
        for child in children.iter().filter(|c| c.kind == TaskKind::SiteMigrate) {
            if let Some(s) =
                summary.sites.iter_mut().find(|s| s.site == child.target_id && s.result == SiteResult::Pending)
            {
                s.result = SiteResult::Running;
                s.task = Some(child.id.0);
            }
        }
    }
    // The lease, and whether someone asked the batch to stop. A cancelled batch still waits for its
    // running sites, so its heartbeat goes on until the lease is lost.
    let (beat_tx, beat_rx) = tokio::sync::watch::channel(Beat::default());
    let beat = heartbeat::start(&ctx.store, task.id, &ctx.config.node, ctx.config.lease, POLL, move |b| {
        beat_tx.send_replace(b);
        std::ops::ControlFlow::Continue(())
    });
    let mut cancelled = task.cancel_requested;
    let mut stored = None;
    loop {
        let seen = *beat_rx.borrow();
        if seen.lost {
            tracing::warn!(task = task.id.0, "batch: lease lost; another daemon carries on with it");
            return;
        }
        cancelled |= seen.cancel;
        // Sites whose migrate ended.
        for s in summary.sites.iter_mut().filter(|s| s.result == SiteResult::Running) {
            let Some(id) = s.task.map(TaskId) else { continue };
            let Ok(t) = ctx.store.task(id).await else { continue };
            if !t.status.is_final() {
                continue;
            }
            s.downtime_ms = ctx.store.task_report(id).await.ok().and_then(|r| r.downtime_ms);
            s.result = if t.status == TaskStatus::Succeeded { SiteResult::Migrated } else { SiteResult::RolledBack };
            s.detail = t.error.unwrap_or_default();
            let downtime = s.downtime_ms.map(|d| format!(", downtime {d} ms")).unwrap_or_default();
            log(
                if s.result == SiteResult::Migrated { LogLevel::Info } else { LogLevel::Warn },
                format!("{}: {} (task {}{downtime})", s.domain, s.result, id.0),
            )
            .await;
        }
        let skipped_before = summary.count(SiteResult::Skipped);
        for i in summary.next(args.parallel, args.canary, cancelled) {
            let s = &mut summary.sites[i];
            match queue_site(ctx, &task, &args, s.site).await {
                Ok(child) => {
                    s.result = SiteResult::Running;
                    s.task = Some(child.0);
                    log(LogLevel::Info, format!("{}: migrate queued as task {}", s.domain, child.0)).await;
                }
                Err((result, why)) => {
                    s.result = result;
                    s.detail = why;
                    log(LogLevel::Warn, format!("{}: {}: {}", s.domain, s.result, s.detail)).await;
                }
            }
        }
        let skipped = summary.count(SiteResult::Skipped) - skipped_before;
        if skipped > 0 {
            let why = if cancelled { "cancelled" } else { "a canary site did not migrate" };
            log(LogLevel::Warn, format!("{why}: {skipped} site(s) skipped")).await;
        }
        let now = serde_json::to_value(&summary).expect("a summary serializes");
        if stored.as_ref() != Some(&now) {
            if let Err(e) = ctx.store.set_task_result(task.id, &now).await {
                tracing::warn!(task = task.id.0, error = %e, "cannot store the batch summary");
            }
            stored = Some(now);
        }
        if summary.finished() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    drop(beat);
    for s in &summary.sites {
        let task = s.task.map(|t| format!(" task {t}")).unwrap_or_default();
        let downtime = s.downtime_ms.map(|d| format!(" downtime {d} ms")).unwrap_or_default();
        log(LogLevel::Info, format!("  {} {}{task}{downtime}", s.domain, s.result)).await;
    }
    let line = summary.counts_line();
    let (status, error) = if cancelled {
        (TaskStatus::Cancelled, Some(format!("cancelled: {line}")))
    } else if summary.all_ok() {
        (TaskStatus::Succeeded, None)
    } else {
        (TaskStatus::Failed, Some(line.clone()))
    };
    finish(ctx, &task, status, error, Some(line)).await
}

/// Plans one site's migrate against the current state and queues it as a child of the batch. A site
/// that is gone or has left the platform since the batch was asked for (a retried batch: it moved) is
/// skipped; a refusal of the planner is the site's answer.
async fn queue_site(
    ctx: &Context,
    batch: &Task,
    args: &PlatformMigrateArgs,
    site: i64,
) -> Result<TaskId, (SiteResult, String)> {
    let skipped = |why: &str| (SiteResult::Skipped, why.to_string());
    let refused = |e: String| (SiteResult::Refused, e);
    let site = ctx.store.site(SiteId(site)).await.map_err(|_| skipped("the site no longer exists"))?;
    if site.platform_id.0 != batch.target_id {
        return Err(skipped("the site is no longer on the platform"));
    }
    if !matches!(site.status, SiteStatus::Enabled | SiteStatus::Disabled) {
        return Err(skipped(&format!("the site is {}", site.status)));
    }
    let mut margs = fjord_actions::migrate_args(PlatformId(args.to_platform), None, true);
    if args.maintenance {
        margs["maintenance"] = true.into();
    }
    let new = NewTask::new(TaskKind::SiteMigrate, site.id.0, margs, batch.created_by.clone());
    fjord_actions::planning::plan_prospective(&ctx.store, &ctx.config.layout, &new, &[])
        .await
        .map_err(|e| refused(e.to_string()))?;
    Ok(ctx.store.enqueue_child(&new, batch.id).await.map_err(|e| refused(e.to_string()))?.id)
}

async fn finish(ctx: &Context, task: &Task, status: TaskStatus, error: Option<String>, line: Option<String>) {
    let last = match &error {
        None => format!("platform-migrate succeeded: {}", line.unwrap_or_default()),
        Some(e) => format!("platform-migrate {status}: {e}"),
    };
    let level = if status == TaskStatus::Succeeded { LogLevel::Info } else { LogLevel::Error };
    tracing::info!(task = task.id.0, "{last}");
    match ctx.store.finish(task.id, &ctx.config.node, status, error.as_deref(), &[], &[(level, &last)]).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(task = task.id.0, "lease lost before the batch could finish"),
        Err(e) => tracing::error!(task = task.id.0, error = %e, "cannot record the batch's end"),
    }
}
