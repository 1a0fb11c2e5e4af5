//! The daemon against a real store (SQLite, and PostgreSQL when configured), with no-op tasks.

use super::*;
use fjord_core::*;
use fjord_exec::{Host, SecretStore};
use std::path::Path;

fn executor(dir: &Path) -> Executor {
    Executor::new(Host::Local, SecretStore::open(dir.join("secrets")).expect("secrets"), dir.join("undo"))
}

fn config(dir: &Path, node: &str, workers: usize) -> DaemonConfig {
    let mut c = DaemonConfig::new(node, Layout::new(dir.to_string_lossy()));
    c.workers = workers;
    c.poll = Duration::from_millis(20);
    c.lease = Duration::from_secs(5);
    c
}

fn lane(site: Option<i64>, platform: Option<i64>) -> Lane {
    Lane { server: ServerId(1), platform: platform.map(PlatformId), site: site.map(SiteId) }
}

async fn noop(store: &Store, lane: Lane, args: serde_json::Value) -> Task {
    store.enqueue_noop(lane, args, "test").await.expect("enqueue")
}

/// Runs the daemon until the queue has no active task.
async fn drain(store: &Store, dir: &Path, workers: usize) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(run(
        store.clone(),
        executor(dir),
        config(dir, "test-node", workers),
        async {
            let _ = rx.await;
        },
        Duration::from_secs(10),
    ));
    for _ in 0..1000 {
        if store.active_task_count().await.expect("count") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tx.send(());
    daemon.await.expect("joins").expect("daemon ok");
}

fn overlaps(a: &Task, b: &Task) -> bool {
    let (a0, a1) = (a.started_at.expect("started"), a.finished_at.expect("finished"));
    let (b0, b1) = (b.started_at.expect("started"), b.finished_at.expect("finished"));
    a0 < b1 && b0 < a1
}

async fn reload(store: &Store, tasks: &[Task]) -> Vec<Task> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(store.task(t.id).await.expect("task"));
    }
    out
}

#[tokio::test]
async fn same_object_in_order_different_objects_in_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await.expect("stores") {
        let a: Vec<Task> = futures_join(&store, 3, lane(Some(1), Some(1)), 150).await;
        let b: Vec<Task> = futures_join(&store, 3, lane(Some(2), Some(1)), 150).await;
        drain(&store, dir.path(), 4).await;
        let (a, b) = (reload(&store, &a).await, reload(&store, &b).await);
        for t in a.iter().chain(b.iter()) {
            assert_eq!(t.status, TaskStatus::Succeeded, "{label}: {t:?}");
        }
        for w in a.windows(2).chain(b.windows(2)) {
            assert!(!overlaps(&w[0], &w[1]), "{label}: tasks on one site overlapped");
            assert!(w[0].finished_at <= w[1].started_at, "{label}: tasks on one site ran out of order");
        }
        assert!(
            a.iter().any(|x| b.iter().any(|y| overlaps(x, y))),
            "{label}: tasks on two sites never ran in parallel"
        );
    }
}

async fn futures_join(store: &Store, n: usize, lane: Lane, sleep_ms: u64) -> Vec<Task> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(noop(store, lane, serde_json::json!({ "sleep_ms": sleep_ms })).await);
    }
    v
}

#[tokio::test]
async fn a_platform_task_excludes_its_sites() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await.expect("stores") {
        let s1 = noop(&store, lane(Some(1), Some(1)), serde_json::json!({ "sleep_ms": 150 })).await;
        let p = noop(&store, lane(None, Some(1)), serde_json::json!({ "sleep_ms": 150 })).await;
        let s2 = noop(&store, lane(Some(2), Some(1)), serde_json::json!({ "sleep_ms": 150 })).await;
        let other = noop(&store, lane(Some(3), Some(2)), serde_json::json!({ "sleep_ms": 150 })).await;
        drain(&store, dir.path(), 4).await;
        let t = reload(&store, &[s1, p, s2, other]).await;
        assert!(!overlaps(&t[0], &t[1]) && !overlaps(&t[1], &t[2]), "{label}: platform task overlapped its sites");
        assert!(t[0].finished_at <= t[1].started_at && t[1].finished_at <= t[2].started_at, "{label}: order");
        assert!(overlaps(&t[0], &t[3]) || overlaps(&t[1], &t[3]), "{label}: another platform's site was blocked");
    }
}

#[tokio::test]
async fn a_failed_task_undoes_its_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await.expect("stores") {
        let f = dir.path().join(format!("{label}-written"));
        let t = noop(&store, lane(Some(1), Some(1)), serde_json::json!({ "files": [f], "fail": true })).await;
        drain(&store, dir.path(), 2).await;
        let t = store.task(t.id).await.expect("task");
        assert_eq!(t.status, TaskStatus::Failed, "{label}");
        assert!(!f.exists(), "{label}: the written file was not undone");
        let steps = store.steps(t.id).await.expect("steps");
        assert!(steps.iter().all(|s| s.status == StepStatus::Undone), "{label}: {steps:?}");
        let log: Vec<String> = store.logs(t.id, 0).await.expect("log").into_iter().map(|l| l.text).collect();
        assert!(log.iter().any(|l| l.contains("rolling back")), "{label}: {log:?}");
    }
}

#[tokio::test]
async fn cancel_stops_a_running_task_and_undoes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await.expect("stores") {
        let f = dir.path().join(format!("{label}-cancelled"));
        let t = noop(&store, lane(Some(1), Some(1)), serde_json::json!({ "files": [f], "sleep_ms": 20000 })).await;
        let queued = noop(&store, lane(Some(1), Some(1)), serde_json::json!({})).await;
        store.cancel(queued.id).await.expect("cancel queued");
        let s2 = store.clone();
        let id = t.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if s2.task(id).await.expect("task").status == TaskStatus::Running {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    s2.cancel(id).await.expect("cancel");
                    break;
                }
            }
        });
        drain(&store, dir.path(), 2).await;
        let t = store.task(t.id).await.expect("task");
        assert_eq!(t.status, TaskStatus::Cancelled, "{label}");
        assert!(t.duration_ms().expect("ran") < 15000, "{label}: cancel did not interrupt the sleep");
        assert!(!f.exists(), "{label}");
        assert_eq!(store.task(queued.id).await.expect("task").status, TaskStatus::Cancelled);
        let retried = store.retry(t.id, "test").await.expect("retry");
        assert_eq!(retried.status, TaskStatus::Queued);
        store.cancel(retried.id).await.expect("cancel retry");
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_requeued() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await.expect("stores") {
        let t = noop(&store, lane(Some(1), Some(1)), serde_json::json!({})).await;
        // A daemon on another node claims the task and dies at once: its 1 ms lease runs out.
        let claimed = store.claim("ghost", 1).await.expect("claim").expect("a task");
        assert_eq!(claimed.id, t.id);
        tokio::time::sleep(Duration::from_millis(10)).await;
        drain(&store, dir.path(), 2).await;
        let t = store.task(t.id).await.expect("task");
        assert_eq!(t.status, TaskStatus::Succeeded, "{label}");
        assert_eq!(t.attempts, 2, "{label}");
        let log: Vec<String> = store.logs(t.id, 0).await.expect("log").into_iter().map(|l| l.text).collect();
        assert!(log.iter().any(|l| l.contains("interrupted")), "{label}: {log:?}");
        // A task without steps logs its start and end with its final status, in one statement.
        assert!(
            log.iter().any(|l| l.contains("noop started")) && log.last().is_some_and(|l| l.contains("noop succeeded")),
            "{label}: {log:?}"
        );
    }
}

/// Polls `done` every 20 ms for up to `within`; whether it came true.
async fn eventually<F: std::future::Future<Output = bool>>(within: Duration, mut done: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// An enabled site whose cron (every second) is due at once; the tasks that come with its server and
/// platform are cancelled, so they take no worker.
async fn site_with_cron(store: &Store) -> SiteId {
    let new = fjord_store::NewServer {
        name: Name::parse("name", "s1").expect("name"),
        hostname: "localhost".into(),
        services: vec![Service::Db(DbService::sqlite())],
    };
    let (server, verify) = store.add_server(&new, "test").await.expect("server");
    store.cancel(verify.id).await.expect("cancel");
    let new = fjord_store::NewPlatform {
        name: Name::parse("name", "p1").expect("name"),
        server: server.id,
        root: "/srv/p1".into(),
        source: PlatformSource::Path,
    };
    let (platform, verify) = store.add_platform(&new, "test").await.expect("platform");
    store.cancel(verify.id).await.expect("cancel");
    let new = fjord_store::NewSite {
        cron_interval: Some(1),
        ..fjord_store::NewSite::sqlite(Domain::parse("cron.example").expect("domain"), platform.id)
    };
    let (site, _) = store.create_site_with(&new, "test", None).await.expect("site");
    store.set_site_status(site.id, SiteStatus::Enabled).await.expect("enable");
    site.id
}

/// The periodic passes do not wait for a free worker: while the only worker runs a long task, another
/// node's expired lease is still taken over and a site's cron still queued.
#[tokio::test]
async fn passes_go_on_while_every_worker_is_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await.expect("stores") {
        let long = noop(&store, lane(Some(100), Some(100)), serde_json::json!({ "sleep_ms": 60_000 })).await;
        let mut config = config(dir.path(), "test-node", 1);
        // Recovery every 500 ms, cron every 100 ms.
        config.lease = Duration::from_secs(1);
        config.cron_check = Duration::from_millis(100);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = rx.await;
        };
        let daemon = tokio::spawn(run(store.clone(), executor(dir.path()), config, shutdown, Duration::from_secs(10)));
        let st = &store;
        let running = move || async move { st.task(long.id).await.expect("task").status == TaskStatus::Running };
        assert!(eventually(Duration::from_secs(10), running).await, "{label}: the long task never started");
        // Only now, after the daemon's startup recovery: another node claims a task and dies, its 1 ms
        // lease running out at once; and a site's cron falls due.
        let dead = noop(&store, lane(Some(101), Some(100)), serde_json::json!({})).await;
        let claimed = store.claim("ghost", 1).await.expect("claim").expect("a task");
        assert_eq!(claimed.id, dead.id, "{label}");
        let site = site_with_cron(&store).await;

        // Taken over and queued again (it cannot run: the only worker is busy).
        let recovered = move || async move {
            let log = st.logs(dead.id, 0).await.expect("log");
            st.task(dead.id).await.expect("task").status == TaskStatus::Queued
                && log.iter().any(|l| l.text.contains("recovered by test-node"))
        };
        assert!(eventually(Duration::from_secs(5), recovered).await, "{label}: the expired lease was not taken over");
        let cron_queued =
            move || async move { !st.site_tasks_of_kind(site.0, TaskKind::SiteCron).await.expect("tasks").is_empty() };
        assert!(eventually(Duration::from_secs(5), cron_queued).await, "{label}: the site's cron was not queued");
        // The worker was busy all along.
        let long_now = store.task(long.id).await.expect("task");
        assert_eq!((long_now.status, long_now.lease_owner.as_deref()), (TaskStatus::Running, Some("test-node")));

        // Its cron would be refused now, should it be claimed before the daemon stops.
        store.set_site_status(site, SiteStatus::Disabled).await.expect("disable");
        let _ = tx.send(());
        store.cancel(long.id).await.expect("cancel");
        daemon.await.expect("joins").expect("daemon ok");
        assert_eq!(store.task(long.id).await.expect("task").status, TaskStatus::Cancelled, "{label}");
    }
}

/// The one heartbeat: it keeps renewing the lease after a cancel request when its holder goes on (a
/// batch waits for its running sites), and stops once the lease is lost.
#[tokio::test]
async fn heartbeat_goes_on_after_a_cancel_and_stops_on_a_lost_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await.expect("stores") {
        let t = noop(&store, lane(Some(1), Some(1)), serde_json::json!({})).await;
        let lease = Duration::from_millis(300);
        store.claim("holder", lease.as_millis() as i64).await.expect("claim").expect("a task");
        let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let _beat = heartbeat::start(&store, t.id, "holder", lease, Duration::from_millis(20), move |b| {
            let _ = tx.send(b);
            std::ops::ControlFlow::Continue(())
        });
        store.cancel(t.id).await.expect("cancel");
        let first = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await.expect("in time");
        assert_eq!(first, Some(heartbeat::Beat { cancel: true, lost: false }), "{label}");
        // Several leases later it is still held.
        tokio::time::sleep(lease * 3).await;
        let held = store.task(t.id).await.expect("task");
        assert!(held.lease_until.is_some_and(|u| u > fjord_store::now_millis()), "{label}: {held:?}");
        // The task ends under it (as when another daemon recovers it): the heartbeat says so and stops.
        store.finish(t.id, "holder", TaskStatus::Cancelled, None, &[], &[]).await.expect("finish");
        let lost = async {
            while let Some(b) = seen.recv().await {
                if b.lost {
                    return seen.recv().await.is_none();
                }
            }
            false
        };
        assert!(tokio::time::timeout(Duration::from_secs(5), lost).await.expect("in time"), "{label}");
    }
}
