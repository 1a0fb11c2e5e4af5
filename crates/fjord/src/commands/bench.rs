//! `fjord bench queue`: no-op tasks through the whole queue (enqueue → claim → run → log → finish)
//! against the same number of bare INSERT+UPDATE statements on the same database, in the same run. It
//! prints ratios, not verdicts: performance is measured here, never asserted in a timed test.

use super::Ctx;
use crate::cli::BenchCmd;
use anyhow::Result;
use fjord_core::*;
use fjord_daemon::{runner, DaemonConfig};
use fjord_exec::{Executor, Host, SecretStore};
use fjord_plan::Layout;
use fjord_store::Store;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(ctx: &mut Ctx, cmd: BenchCmd) -> Result<ExitCode> {
    let BenchCmd::Queue { count, sites, workers } = cmd;
    let dir = tempfile::tempdir()?;
    let mut results = Vec::new();
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await? {
        let r = queue_bench(&store, dir.path(), count, sites.max(1), workers.max(1)).await?;
        if !ctx.out.json {
            println!(
                "{label:<9} {count} tasks, {workers} workers: {:.0} tasks/s; claim p50 {:.2} ms, p99 {:.2} ms; \
                 baseline {count}×(INSERT+UPDATE) {:.0} ms, queue {:.0} ms: {:.2}× the baseline",
                r.tasks_per_sec,
                r.claim_p50_ms,
                r.claim_p99_ms,
                r.baseline_ms,
                r.queue_ms,
                r.queue_ms / r.baseline_ms
            );
        }
        results.push(serde_json::json!({ "backend": label, "count": count, "workers": workers, "tasks_per_sec": r.tasks_per_sec,
            "claim_p50_ms": r.claim_p50_ms, "claim_p99_ms": r.claim_p99_ms, "baseline_ms": r.baseline_ms, "queue_ms": r.queue_ms, "enqueue_ms": r.enqueue_ms,
            "ratio": r.queue_ms / r.baseline_ms }));
        store.close().await;
    }
    if ctx.out.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(ExitCode::SUCCESS)
}

struct Result1 {
    tasks_per_sec: f64,
    claim_p50_ms: f64,
    claim_p99_ms: f64,
    baseline_ms: f64,
    queue_ms: f64,
    enqueue_ms: f64,
}

async fn queue_bench(
    store: &Store,
    dir: &std::path::Path,
    count: usize,
    sites: i64,
    workers: usize,
) -> Result<Result1> {
    let t0 = Instant::now();
    store.baseline_insert_update(count).await?;
    let baseline = t0.elapsed();

    let mut cfg = DaemonConfig::new("bench", Layout::new(dir.to_string_lossy()));
    cfg.workers = workers;
    let ctx = Arc::new(runner::Context {
        store: store.clone(),
        executor: Executor::new(Host::Local, SecretStore::open(dir.join("secrets"))?, dir.join("undo")),
        config: cfg,
    });
    let t0 = Instant::now();
    for i in 0..count as i64 {
        let site = i % sites + 1;
        let lane = Lane {
            server: ServerId(1),
            platform: Some(PlatformId(1)),
            site: Some(SiteId(site)),
        };
        store
            .enqueue(&NewTask {
                kind: TaskKind::Noop,
                target_id: site,
                lane,
                args: serde_json::json!({}),
                created_by: "bench".into(),
            })
            .await?;
    }
    let enqueued = t0.elapsed();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let ctx = ctx.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let c0 = Instant::now();
                match ctx.store.claim(&ctx.config.node, 30_000).await {
                    Ok(Some(task)) => {
                        latencies.push(c0.elapsed());
                        runner::run_task(&ctx, task).await;
                    }
                    Ok(None) => {
                        if ctx.store.active_task_count().await.unwrap_or(0) == 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claim failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await?);
    }
    let queue = t0.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    Ok(Result1 {
        tasks_per_sec: count as f64 / queue.as_secs_f64(),
        claim_p50_ms: pct(0.5),
        claim_p99_ms: pct(0.99),
        baseline_ms: baseline.as_secs_f64() * 1000.0,
        queue_ms: queue.as_secs_f64() * 1000.0,
        enqueue_ms: enqueued.as_secs_f64() * 1000.0,
    })
}
