//! Tasks: list, show, log (live with --follow), cancel, retry; and what every queueing command prints.

use super::{admin, Ctx};
use crate::cli::TaskCmd;
use crate::output::{duration, fields, table, when};
use anyhow::Result;
use fjord_core::*;
use fjord_store::{Store, TaskFilter};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

pub fn print_tasks(tasks: &[Task]) {
    let rows = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.kind.to_string(),
                format!("{} {}", t.target_kind, t.target_id),
                t.status.to_string(),
                when(Some(t.created_at)),
                duration(t.duration_ms()),
            ]
        })
        .collect::<Vec<_>>();
    table(&["id", "kind", "target", "status", "created", "took"], &rows);
}

/// Reports a freshly queued task; with `--wait`, follows it to its end.
pub async fn queued(ctx: &mut Ctx, task: &Task) -> Result<ExitCode> {
    if ctx.global.wait {
        let store = ctx.store().await?;
        if !admin::daemon_running(ctx) {
            eprintln!(
                "note: no `fjord serve` is running on this state dir; the task waits in the queue until one starts"
            );
        }
        let end = follow(ctx, &store, task.id).await?;
        ctx.out.emit(&end, || {});
        return Ok(if end.status == TaskStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    ctx.out.emit(task, || {
        println!("queued task {} ({}); follow it with `fjord task log {} --follow`", task.id, task.kind, task.id)
    });
    Ok(ExitCode::SUCCESS)
}

/// Prints a task's log as it grows until the task ends. On a terminal a progress bar shows the step;
/// otherwise plain lines.
pub async fn follow(ctx: &Ctx, store: &Store, id: TaskId) -> Result<Task> {
    let tty = std::io::stdout().is_terminal() && !ctx.out.json;
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut seq = 0;
    loop {
        let task = store.task(id).await?;
        let lines = store.logs(id, seq).await?;
        for l in &lines {
            seq = l.seq;
            let text = format!(
                "{} {:<5} {}",
                when(Some(l.ts)),
                if l.stream == LogStream::Fjord { l.level.as_str() } else { l.stream.as_str() },
                l.text
            );
            match &bar {
                Some(b) => {
                    if let Some((i, n)) = step_progress(&l.text) {
                        b.set_length(n);
                        b.set_position(i);
                        b.set_message(l.text.clone());
                    }
                    b.println(text);
                }
                None if !ctx.out.json => println!("{text}"),
                None => {}
            }
        }
        if task.status.is_final() && lines.is_empty() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            if !ctx.out.json {
                println!(
                    "task {} {}{}",
                    task.id,
                    task.status,
                    task.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                );
            }
            return Ok(task);
        }
        if lines.is_empty() {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// Reads "step 2/5: …" from a log line.
fn step_progress(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("step ")?;
    let (frac, _) = rest.split_once(':')?;
    let (i, n) = frac.split_once('/')?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

pub async fn run(ctx: &mut Ctx, cmd: TaskCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        TaskCmd::List { status, limit } => {
            let status = status
                .map(|s| s.parse::<TaskStatus>().map_err(|e| anyhow::anyhow!("invalid --status: {e}")))
                .transpose()?;
            let tasks = store.tasks(&TaskFilter { status, limit: Some(limit), ..Default::default() }).await?;
            ctx.out.emit(&tasks, || print_tasks(&tasks));
        }
        TaskCmd::Show { id } => {
            let t = store.task(TaskId(id)).await?;
            let steps = store.steps(t.id).await?;
            let mut v = serde_json::json!({ "task": t, "steps": steps });
            // A batch: its summary (state so far, or outcome).
            let summary = match t.kind {
                TaskKind::PlatformMigrate => {
                    store.task_result(t.id).await?.and_then(|r| serde_json::from_value::<BatchSummary>(r).ok())
                }
                _ => None,
            };
            // Another task: what it found out (a migrate's maintenance window, 0 when it switched live).
            let report = match summary {
                Some(_) => TaskReport::default(),
                None => store.task_report(t.id).await?,
            };
            if let Some(s) = &summary {
                v["result"] = s.report(Some(t.id.0));
            } else if !report.is_empty() {
                v["result"] = serde_json::to_value(&report)?;
            }
            ctx.out.emit(&v, || {
                fields(&[
                    ("id", t.id.to_string()),
                    ("kind", t.kind.to_string()),
                    ("target", format!("{} {}", t.target_kind, t.target_id)),
                    ("status", t.status.to_string()),
                    ("attempts", format!("{} of {}", t.attempts, t.max_attempts)),
                    ("created", format!("{} by {}", when(Some(t.created_at)), t.created_by)),
                    ("started", when(t.started_at)),
                    ("finished", when(t.finished_at)),
                    ("took", duration(t.duration_ms())),
                    ("error", t.error.clone().unwrap_or_else(|| "-".into())),
                    ("batch", t.parent.map(|p| format!("task {p}")).unwrap_or_else(|| "-".into())),
                ]);
                if let Some(ms) = report.downtime_ms {
                    fields(&[("maintenance", if ms == 0 { "none: switched live".into() } else { format!("{ms} ms") })]);
                }
                if let Some(s) = &summary {
                    println!("\nsites ({} -> {}):", s.from, s.to);
                    super::migrate::summary_table(s);
                    println!("{}", s.counts_line());
                }
                if !steps.is_empty() {
                    println!("\nsteps:");
                    table(
                        &["#", "step", "state", "took"],
                        &steps
                            .iter()
                            .map(|s| {
                                vec![
                                    (s.idx + 1).to_string(),
                                    s.description.clone(),
                                    s.status.to_string(),
                                    duration(s.duration_ms),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                }
            });
        }
        TaskCmd::Log { id, follow: true } => {
            let end = follow(ctx, &store, TaskId(id)).await?;
            return Ok(if end.status == TaskStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        TaskCmd::Log { id, follow: false } => {
            store.task(TaskId(id)).await?;
            let lines = store.logs(TaskId(id), 0).await?;
            ctx.out.emit(&lines, || {
                for l in &lines {
                    println!(
                        "{} {:<5} {}",
                        when(Some(l.ts)),
                        if l.stream == LogStream::Fjord { l.level.as_str() } else { l.stream.as_str() },
                        l.text
                    );
                }
            });
        }
        TaskCmd::Cancel { id } => {
            if ctx.global.dry_run {
                println!("dry run: would cancel task {id}");
                return Ok(ExitCode::SUCCESS);
            }
            let t = store.cancel(TaskId(id)).await?;
            ctx.out.emit(&t, || {
                if t.status == TaskStatus::Cancelled {
                    println!("task {} cancelled", t.id)
                } else {
                    println!("task {} asked to stop; its applied steps will be undone", t.id)
                }
            });
        }
        TaskCmd::Retry { id } => {
            if ctx.global.dry_run {
                println!("dry run: would queue task {id} again");
                return Ok(ExitCode::SUCCESS);
            }
            let t = store.retry(TaskId(id), &ctx.actor()).await?;
            return queued(ctx, &t).await;
        }
        TaskCmd::Noop { server, platform, site, sleep_ms, files, fail } => {
            let lane = Lane { server: ServerId(server), platform: platform.map(PlatformId), site: site.map(SiteId) };
            let args = serde_json::json!({ "sleep_ms": sleep_ms, "files": files, "fail": fail });
            let t = store.enqueue_noop(lane, args, &ctx.actor()).await?;
            return queued(ctx, &t).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_progress_is_read_from_log_lines() {
        assert_eq!(super::step_progress("step 2/5: write x"), Some((2, 5)));
        assert_eq!(super::step_progress("stepping"), None);
    }
}
