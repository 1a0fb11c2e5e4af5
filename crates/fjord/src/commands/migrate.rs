//! `fjord platform migrate`: every site of a platform onto another. The command queues one
//! `platform-migrate` task through the actions layer (as the API and the UI do); the daemon runs it
//! (one site-migrate per site, `--parallel` at a time, canaries first) and stores its summary, which
//! this prints once the batch ends. `--dry-run` is the actions layer's preview: each site's migrate
//! planned and its module schema check run, nothing changed.

use super::{admin, task, Ctx};
use crate::output::table;
use anyhow::Result;
use fjord_actions::{Actions, PlatformMigrate};
use fjord_core::*;
use std::process::ExitCode;
use std::time::Duration;

/// How long a dry run waits for the sites' schema checks.
const CHECK_WAIT: Duration = Duration::from_secs(600);

pub async fn platform_migrate(ctx: &mut Ctx, name: &str, req: PlatformMigrate, no_wait: bool) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    let actions = Actions::new(&store, &layout);
    let from = actions.platform_by_name_or_id(name).await?;
    if ctx.global.dry_run {
        let req = PlatformMigrate { dry_run: true, ..req };
        warn_without_daemon(ctx);
        let summary = actions.preview_platform_migrate(&from, &req, &ctx.actor(), CHECK_WAIT).await?;
        return Ok(print_summary(ctx, &summary, None, true));
    }
    let batch = actions.platform_migrate(&from, &req, &ctx.actor()).await?;
    if no_wait {
        return task::queued(ctx, &batch).await;
    }
    warn_without_daemon(ctx);
    let end = task::follow(ctx, &store, batch.id).await?;
    let summary = match store.task_result(end.id).await? {
        Some(v) => serde_json::from_value::<BatchSummary>(v)?,
        None => anyhow::bail!(
            "platform-migrate task {} {} without a summary: {}",
            end.id,
            end.status,
            end.error.unwrap_or_default()
        ),
    };
    Ok(print_summary(ctx, &summary, Some(end.id.0), end.status == TaskStatus::Succeeded))
}

fn warn_without_daemon(ctx: &Ctx) {
    if !admin::daemon_running(ctx) {
        eprintln!("note: no `fjord serve` is running on this state dir; the tasks wait in the queue until one starts");
    }
}

/// Prints a batch summary (a table, or JSON with its counts); the exit status says whether the batch
/// `succeeded` (not cancelled) and every site migrated (or would).
pub fn print_summary(ctx: &Ctx, summary: &BatchSummary, task: Option<i64>, succeeded: bool) -> ExitCode {
    ctx.out.emit(&summary.report(task), || {
        summary_table(summary);
        println!("\n{}", summary.counts_line());
    });
    if succeeded && summary.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One row per site: its result, task, downtime and why.
pub fn summary_table(summary: &BatchSummary) {
    let rows: Vec<Vec<String>> = summary
        .sites
        .iter()
        .map(|o| {
            vec![
                o.domain.clone(),
                o.result.to_string(),
                o.task.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                o.downtime_ms.map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into()),
                o.detail.clone(),
            ]
        })
        .collect();
    table(&["site", "result", "task", "downtime", "detail"], &rows);
}
