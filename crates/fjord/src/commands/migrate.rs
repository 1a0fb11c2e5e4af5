//! `fjord platform migrate`: every site of a platform onto another, each as its own site-migrate task
//! (with its own backup and rollback), at most `--parallel` at a time, optionally a canary batch first.
//! The CLI drives the batch; each site's migrate is a queued task the daemon runs, so the summary
//! reads straight from the tasks' outcomes and logs.

use super::{plan_now, prospective_task, site::migrate_args, Ctx};
use crate::output::table;
use anyhow::{bail, Result};
use fjord_core::*;
use fjord_store::Store;
use std::process::ExitCode;
use std::time::Duration;

/// What became of one site.
#[derive(Debug, Clone, serde::Serialize)]
struct SiteOutcome {
    domain: String,
    /// migrated, rolled-back, refused, skipped (canary stopped the batch), or for a dry run:
    /// would-migrate / would-refuse.
    result: String,
    task: Option<i64>,
    /// The maintenance window the task logged, in ms.
    downtime_ms: Option<u64>,
    detail: String,
}

pub async fn platform_migrate(
    ctx: &mut Ctx,
    name: &str,
    to: &str,
    parallel: usize,
    canary: Option<usize>,
) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let from = store.platform_by_name(name).await?;
    let target = store.platform_by_name(to).await?;
    if from.id == target.id {
        bail!("the sites of {name} are already on {to}");
    }
    if parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let sites: Vec<Site> = store
        .sites_on_platform(from.id)
        .await?
        .into_iter()
        .filter(|s| matches!(s.status, SiteStatus::Enabled | SiteStatus::Disabled))
        .collect();
    let outcomes = if ctx.global.dry_run {
        dry_run(ctx, &store, &sites, target.id, parallel).await?
    } else {
        let canary = canary.unwrap_or(0).min(sites.len());
        let mut outcomes = run_batch(ctx, &store, &sites[..canary], target.id, parallel).await?;
        if outcomes.iter().any(|o| o.result != "migrated") {
            for s in &sites[canary..] {
                outcomes.push(SiteOutcome {
                    domain: s.domain.to_string(),
                    result: "skipped".into(),
                    task: None,
                    downtime_ms: None,
                    detail: "a canary site failed: the batch stopped".into(),
                });
            }
        } else {
            outcomes.extend(run_batch(ctx, &store, &sites[canary..], target.id, parallel).await?);
        }
        outcomes
    };
    let ok = outcomes.iter().all(|o| matches!(o.result.as_str(), "migrated" | "would-migrate"));
    let summary = serde_json::json!({
        "from": from.name, "to": target.name, "dry_run": ctx.global.dry_run,
        "migrated": outcomes.iter().filter(|o| o.result == "migrated").count(),
        "rolled_back": outcomes.iter().filter(|o| o.result == "rolled-back").count(),
        "sites": outcomes,
    });
    ctx.out.emit(&summary, || {
        let rows: Vec<Vec<String>> = outcomes
            .iter()
            .map(|o| {
                vec![
                    o.domain.clone(),
                    o.result.clone(),
                    o.task.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                    o.downtime_ms.map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into()),
                    o.detail.clone(),
                ]
            })
            .collect();
        table(&["site", "result", "task", "downtime", "detail"], &rows);
        let count = |r: &str| outcomes.iter().filter(|o| o.result == r).count();
        if ctx.global.dry_run {
            println!(
                "\ndry run: {} would migrate, {} would be refused; nothing was changed",
                count("would-migrate"),
                count("would-refuse")
            );
        } else {
            println!(
                "\n{} migrated, {} rolled back, {} refused, {} skipped",
                count("migrated"),
                count("rolled-back"),
                count("refused"),
                count("skipped")
            );
        }
    });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Queues up to `parallel` migrates at a time and waits for each.
async fn run_batch(
    ctx: &Ctx,
    store: &Store,
    sites: &[Site],
    to: PlatformId,
    parallel: usize,
) -> Result<Vec<SiteOutcome>> {
    let mut outcomes = Vec::new();
    let mut running: Vec<(String, TaskId)> = Vec::new();
    let mut pending = sites.iter();
    loop {
        while running.len() < parallel {
            let Some(site) = pending.next() else { break };
            let args = migrate_args(to, None, true);
            match queue(ctx, store, TaskKind::SiteMigrate, site, args).await {
                Ok(task) => running.push((site.domain.to_string(), task)),
                Err(e) => outcomes.push(SiteOutcome {
                    domain: site.domain.to_string(),
                    result: "refused".into(),
                    task: None,
                    downtime_ms: None,
                    detail: e.to_string(),
                }),
            }
        }
        if running.is_empty() {
            return Ok(outcomes);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut still = Vec::new();
        for (domain, id) in running {
            let t = store.task(id).await?;
            if !t.status.is_final() {
                still.push((domain, id));
                continue;
            }
            let logs = store.logs(id, 0).await?;
            let downtime = logs
                .iter()
                .filter_map(|l| l.text.strip_prefix("maintenance: ")?.strip_suffix(" ms")?.parse().ok())
                .next_back();
            let migrated = t.status == TaskStatus::Succeeded;
            outcomes.push(SiteOutcome {
                domain,
                result: if migrated { "migrated" } else { "rolled-back" }.into(),
                task: Some(id.0),
                downtime_ms: downtime,
                detail: t.error.unwrap_or_default(),
            });
        }
        running = still;
    }
}

/// Runs the read-only migrate check of every site (real tasks that change nothing) and reports what a
/// migrate would do.
async fn dry_run(
    ctx: &Ctx,
    store: &Store,
    sites: &[Site],
    to: PlatformId,
    parallel: usize,
) -> Result<Vec<SiteOutcome>> {
    let mut outcomes = Vec::new();
    for chunk in sites.chunks(parallel.max(4)) {
        let mut tasks = Vec::new();
        for site in chunk {
            let args = serde_json::json!({ "to_platform": to.0 });
            match queue(ctx, store, TaskKind::SiteMigrateCheck, site, args).await {
                Ok(task) => tasks.push((site.domain.to_string(), task)),
                Err(e) => outcomes.push(SiteOutcome {
                    domain: site.domain.to_string(),
                    result: "would-refuse".into(),
                    task: None,
                    downtime_ms: None,
                    detail: e.to_string(),
                }),
            }
        }
        for (domain, id) in tasks {
            let t = loop {
                let t = store.task(id).await?;
                if t.status.is_final() {
                    break t;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let logs = store.logs(id, 0).await?;
            let lines: Vec<String> = logs
                .iter()
                .filter(|l| l.stream != LogStream::Fjord)
                .map(|l| l.text.trim().to_string())
                .filter(|l| l.starts_with("pending:") || l.starts_with("refused:"))
                .collect();
            let ok = t.status == TaskStatus::Succeeded;
            outcomes.push(SiteOutcome {
                domain,
                result: if ok { "would-migrate" } else { "would-refuse" }.into(),
                task: Some(id.0),
                downtime_ms: None,
                detail: if lines.is_empty() {
                    if ok {
                        "no pending updates".into()
                    } else {
                        t.error.unwrap_or_default()
                    }
                } else {
                    lines.join("; ")
                },
            });
        }
    }
    Ok(outcomes)
}

/// Plans the task now (a refusal comes back as the error and nothing is queued), then queues it.
async fn queue(ctx: &Ctx, store: &Store, kind: TaskKind, site: &Site, args: serde_json::Value) -> Result<TaskId> {
    let lane = store.lane_of(TargetKind::Site, site.id.0).await?;
    let snap = store.snapshot(&prospective_task(kind, site.id.0, lane, args.clone())).await?;
    plan_now(ctx, kind, &args, &snap)?;
    let t = store.enqueue(&NewTask { kind, target_id: site.id.0, lane, args, created_by: ctx.actor() }).await?;
    Ok(t.id)
}
