//! The worker pool behind `fjord serve`: claims tasks from the queue with a lease, runs their plans step
//! by step with an undo log, rolls back on failure or cancel, and recovers tasks whose daemon died.
//!
//! Shape (after mini-redis): [`run`] takes the shutdown signal as a future; a semaphore caps the number
//! of tasks running at once; each running task has a heartbeat that renews its lease and notices a
//! cancel request. Ordering and exclusion between tasks are the queue's job (see `fjord_store::queue`).
//! The periodic passes (recovery of expired leases, cron, certificates, backups) run on their own
//! clock, whatever the workers are doing.

pub mod backups;
pub mod batch;
pub mod heartbeat;
pub mod runner;

pub use runner::Fault;

use fjord_exec::Executor;
use fjord_plan::Layout;
use fjord_store::{Store, StoreResult};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Most tasks run at once.
    pub workers: usize,
    /// How long a claim holds without a heartbeat; a dead daemon's tasks are taken over after this.
    pub lease: Duration,
    /// How often to look for work when the queue was empty.
    pub poll: Duration,
    /// This daemon's identity in leases. A restart with the same node name recovers its own tasks at
    /// once instead of waiting for their leases to run out.
    pub node: String,
    pub layout: Layout,
    /// Fault injection for tests (`FJORD_FAULT`).
    pub fault: Option<Fault>,
    /// How often to look for sites whose cron is due.
    pub cron_check: Duration,
    /// How often to queue due scheduled backups, copy new archives offsite and apply retention.
    pub backup_check: Duration,
    /// Where offsite copies of backups go, if anywhere.
    pub offsite: Option<fjord_exec::offsite::OffsiteConfig>,
    /// How often to look for certificates due for renewal.
    pub cert_check: Duration,
    /// Renew an ACME certificate this long before it expires.
    pub cert_renew_before: Duration,
    /// The first wait after a failed certificate attempt; doubled after each failure in a row.
    pub cert_retry: Duration,
    /// The request renewals are made with (the configured ACME directory); `None`: no renewals.
    pub acme: Option<fjord_core::CertRequest>,
    /// How often to retry the undos that failed in a rollback (see [`runner::retry_failed_undos`]).
    pub undo_retry: Duration,
}

impl DaemonConfig {
    pub fn new(node: impl Into<String>, layout: Layout) -> DaemonConfig {
        DaemonConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            node: node.into(),
            layout,
            fault: None,
            cron_check: Duration::from_secs(15),
            backup_check: Duration::from_secs(60),
            offsite: None,
            cert_check: Duration::from_secs(86_400),
            cert_renew_before: Duration::from_secs(30 * 86_400),
            cert_retry: Duration::from_secs(3600),
            acme: None,
            undo_retry: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] fjord_store::StoreError),
}

/// Runs the worker pool until `shutdown` resolves, then waits for running tasks to end (up to `grace`).
pub async fn run(
    store: Store,
    executor: Executor,
    config: DaemonConfig,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), DaemonError> {
    let ctx = Arc::new(runner::Context { store, executor, config });
    // Credentials a killed daemon's commands left in their temp files go first.
    let swept = ctx.executor.sweep_orphan_temp_dirs();
    if swept > 0 {
        tracing::info!(count = swept, "removed temp files of commands whose daemon died");
    }
    recover(&ctx, true).await?;
    // The periodic passes keep their own clock: they must go on while every worker is busy (a dead
    // daemon's tasks still get recovered, cron still gets queued).
    let (stop_passes, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut pass_loop = tokio::spawn(passes(ctx.clone(), stopped));
    let permits = Arc::new(Semaphore::new(ctx.config.workers.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = &mut shutdown => break,
            // The passes end only when told to: a panic in one is the daemon's, as when they ran in
            // this loop, rather than recovery and cron silently stopping.
            Err(e) = &mut pass_loop => std::panic::resume_unwind(e.into_panic()),
        };
        match ctx.store.claim(&ctx.config.node, ctx.config.lease.as_millis() as i64).await {
            Ok(Some(task)) if task.kind == fjord_core::TaskKind::PlatformMigrate => {
                // A batch only queues and waits for other tasks: it takes no worker slot, so the
                // tasks it waits for can run even with a single worker.
                drop(permit);
                let ctx = ctx.clone();
                tokio::spawn(async move { batch::run_batch(&ctx, task).await });
            }
            Ok(Some(task)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    runner::run_task(&ctx, task).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(ctx.config.poll) => {}
                    _ = &mut shutdown => break,
                }
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "claiming a task failed; retrying");
                tokio::time::sleep(ctx.config.poll * 10).await;
            }
        }
    }
    tracing::info!("shutting down: waiting for running tasks");
    let deadline = tokio::time::Instant::now() + grace;
    // A pass under way (a recovery rolling a task back) ends first; no new one starts.
    let _ = stop_passes.send(());
    if tokio::time::timeout_at(deadline, &mut pass_loop).await.is_err() {
        pass_loop.abort();
    }
    let all = ctx.config.workers.max(1) as u32;
    if tokio::time::timeout_at(deadline, permits.acquire_many(all)).await.is_err() {
        tracing::warn!("tasks still running at shutdown; they will be recovered on the next start");
    }
    Ok(())
}

/// The daemon's periodic passes, each at its own interval, until `stop` fires (or its sender is gone):
/// recovery of expired leases, cron, certificate renewals, backups, and undos that failed.
async fn passes(ctx: Arc<runner::Context>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
    let every = |first: Instant, period: Duration| -> Interval {
        // A zero period would panic; a slow pass delays the next one rather than causing a burst.
        let mut i = interval_at(first, period.max(Duration::from_millis(1)));
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    };
    let now = Instant::now();
    let config = &ctx.config;
    // Recovery has just run at startup and cron waits one interval; certificates and backups go at once.
    let mut recovery = every(now + config.lease / 2, config.lease / 2);
    let mut cron = every(now + config.cron_check, config.cron_check);
    let mut certs = every(now, config.cert_check);
    let mut backup = every(now, config.backup_check);
    let mut undo_retry = every(now + config.undo_retry, config.undo_retry);
    // How often to look whether a finished task asked for a certificate pass.
    let mut cert_soon = every(now, config.poll);
    let mut backup_pass: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let backup_idle = backup_pass.as_ref().is_none_or(|h| h.is_finished());
        tokio::select! {
            biased;
            _ = &mut stop => break,
            // Leases of other daemons may have run out: take their tasks over.
            _ = recovery.tick() => {
                if let Err(e) = recover(&ctx, false).await {
                    tracing::warn!(error = %e, "recovery pass failed");
                }
            }
            // Scheduled work: each site's cron, at its interval.
            _ = cron.tick() => match ctx.store.queue_due_cron(fjord_store::now_millis()).await {
                Ok(q) if !q.is_empty() => tracing::info!(count = q.len(), "queued cron runs"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cron scheduling failed"),
            },
            _ = certs.tick() => cert_pass(&ctx).await,
            // What a rollback could not undo (a database server was down) is tried again.
            _ = undo_retry.tick() => runner::retry_failed_undos(&ctx).await,
            // At once after a site appeared under a name that may need its first certificate.
            _ = cert_soon.tick() => {
                if runner::CERT_CHECK_SOON.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    certs.reset();
                    cert_pass(&ctx).await;
                }
            }
            // Scheduled backups, offsite copies and retention: one pass at a time, in the background
            // (uploads take a while); a pass due while one still runs waits for it.
            _ = backup.tick(), if backup_idle => {
                let ctx = ctx.clone();
                backup_pass = Some(tokio::spawn(async move { backups::pass(&ctx).await }));
            }
        }
    }
}

/// Queues certificate renewals (and retries after failures, with back-off), when renewals are set up.
async fn cert_pass(ctx: &runner::Context) {
    let Some(request) = &ctx.config.acme else { return };
    let args = serde_json::json!({ "request": request });
    let before = ctx.config.cert_renew_before.as_millis() as i64;
    match ctx.store.queue_due_certs(fjord_store::now_millis(), before, &args).await {
        Ok(q) if !q.is_empty() => tracing::info!(count = q.len(), "queued certificate renewals"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "certificate renewal scheduling failed"),
    }
}

/// Takes over the tasks a dead daemon left running: undoes their applied steps and requeues or fails
/// them according to their kind.
pub async fn recover(ctx: &runner::Context, at_startup: bool) -> StoreResult<()> {
    let orphans =
        ctx.store.take_over_orphans(&ctx.config.node, ctx.config.lease.as_millis() as i64, at_startup).await?;
    for task in orphans {
        runner::recover_task(ctx, task).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
