//! The lease-renewing heartbeat of a running task (a step-by-step task or a batch): renews the lease
//! every third of it and, in between, looks for a cancel request, so a cancel takes effect quickly.

use fjord_core::TaskId;
use fjord_store::Store;
use std::ops::ControlFlow;
use std::time::Duration;

/// What a heartbeat noticed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Beat {
    /// Someone asked the task to stop.
    pub cancel: bool,
    /// The lease is gone: another daemon took the task over, so its holder must stop.
    pub lost: bool,
}

/// A running heartbeat; dropping it stops it.
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts renewing `owner`'s lease on `task`, looking at the task every `poll`. Whenever a cancel
/// request or a lost lease is noticed, `noticed` is told; it decides whether the heartbeat goes on
/// (it never does once the lease is lost).
pub fn start(
    store: &Store,
    task: TaskId,
    owner: &str,
    lease: Duration,
    poll: Duration,
    mut noticed: impl FnMut(Beat) -> ControlFlow<()> + Send + 'static,
) -> Heartbeat {
    let store = store.clone();
    let owner = owner.to_string();
    Heartbeat(tokio::spawn(async move {
        let every = (lease / 3).max(Duration::from_millis(50));
        let poll = poll.min(every);
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(poll).await;
            // The lease now and then; in between only the (cheaper) cancel flag.
            let beat = if last_renewal.elapsed() >= every {
                last_renewal = tokio::time::Instant::now();
                match store.heartbeat(task, &owner, lease.as_millis() as i64).await {
                    Ok(Some(cancel)) => Beat { cancel, lost: false },
                    Ok(None) => Beat { cancel: false, lost: true },
                    Err(e) => {
                        tracing::warn!(task = task.0, error = %e, "heartbeat failed");
                        continue;
                    }
                }
            } else {
                match store.task(task).await {
                    Ok(t) => Beat { cancel: t.cancel_requested, lost: false },
                    Err(_) => continue,
                }
            };
            if !(beat.cancel || beat.lost) {
                continue;
            }
            // A lost lease always ends the heartbeat; after a cancel request its holder decides.
            if noticed(beat).is_break() || beat.lost {
                return;
            }
        }
    }))
}
