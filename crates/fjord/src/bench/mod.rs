//! `fjord bench …`: every benchmark lives in this module (`moves`: backup, restore, clone and platform
//! migrate against their baselines; `web`: the panel and API under load; here: the queue and verify).
//! Benchmarks build their own scratch fixtures (directories, files, processes), which is why this
//! module alone outside fjord-exec may touch the file system directly.
//!
//! `fjord bench queue`: no-op tasks through the whole queue (enqueue → claim → run → log → finish)
//! against the same number of bare INSERT+UPDATE statements on the same database, in the same run. It
//! prints ratios, not verdicts: performance is measured here, never asserted in a timed test.

mod moves;
mod web;

use crate::cli::BenchCmd;
use crate::commands::Ctx;
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
    let (count, sites, workers) = match cmd {
        BenchCmd::Queue { count, sites, workers } => (count, sites, workers),
        BenchCmd::Verify { sites, files_per_site, codebase } => {
            return sites_bench::verify(ctx, sites, files_per_site, codebase).await
        }
        BenchCmd::Create { count, codebase } => return sites_bench::create(ctx, count, codebase).await,
        BenchCmd::Backup { size_mb, no_clone, env } => return moves::backup(ctx, size_mb, !no_clone, env).await,
        BenchCmd::Migrate { sites, env } => return moves::migrate(ctx, sites, env).await,
        BenchCmd::Web { sites, tasks, concurrency, requests, pages } => {
            return web::run(ctx, sites, tasks, concurrency, requests, &pages).await
        }
    };
    let dir = tempfile::tempdir()?;
    let mut results = Vec::new();
    for (label, store) in fjord_store::testing::all_backends(dir.path()).await? {
        let r = queue_bench(&store, dir.path(), count, sites.max(1), workers.max(1)).await?;
        if !ctx.out.json {
            println!(
                "{label:<9} {count} tasks, {workers} workers: {:.0} tasks/s; claim p50 {:.2} ms, p99 {:.2} ms; \
                 queue {:.0} ms (enqueue {:.0} ms)",
                r.tasks_per_sec, r.claim_p50_ms, r.claim_p99_ms, r.queue_ms, r.enqueue_ms
            );
            println!(
                "{label:<9} baseline {count}x(INSERT+UPDATE) on a bare table {:.0} ms: queue is {:.2}x; \
                 on bare task rows (same table and indexes, no queue logic) {:.0} ms: queue is {:.2}x (target <= 3)",
                r.baseline_ms,
                r.queue_ms / r.baseline_ms,
                r.baseline_tasks_ms,
                r.queue_ms / r.baseline_tasks_ms
            );
        }
        results.push(serde_json::json!({ "backend": label, "count": count, "workers": workers, "tasks_per_sec": r.tasks_per_sec,
            "claim_p50_ms": r.claim_p50_ms, "claim_p99_ms": r.claim_p99_ms, "baseline_ms": r.baseline_ms, "queue_ms": r.queue_ms, "enqueue_ms": r.enqueue_ms,
            "ratio": r.queue_ms / r.baseline_ms, "baseline_tasks_ms": r.baseline_tasks_ms,
            "ratio_tasks": r.queue_ms / r.baseline_tasks_ms }));
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
    baseline_tasks_ms: f64,
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
    let t0 = Instant::now();
    store.baseline_task_rows(count).await?;
    let baseline_tasks = t0.elapsed();

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
        let lane = Lane { server: ServerId(1), platform: Some(PlatformId(1)), site: Some(SiteId(site)) };
        store.enqueue_noop(lane, serde_json::json!({}), "bench").await?;
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
        latencies.get(((latencies.len() as f64 - 1.0) * p) as usize).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    };
    Ok(Result1 {
        tasks_per_sec: count as f64 / queue.as_secs_f64(),
        claim_p50_ms: pct(0.5),
        claim_p99_ms: pct(0.99),
        baseline_ms: baseline.as_secs_f64() * 1000.0,
        queue_ms: queue.as_secs_f64() * 1000.0,
        enqueue_ms: enqueued.as_secs_f64() * 1000.0,
        baseline_tasks_ms: baseline_tasks.as_secs_f64() * 1000.0,
    })
}

/// Benchmarks on real sites: nginx and PHP-FPM masters run by Fjord in a temp state dir.
mod sites_bench {
    use super::*;
    use anyhow::Context as _;
    use fjord_store::{NewPlatform, NewServer, NewSite};
    use std::path::Path;

    struct Bench {
        ctx: Arc<runner::Context>,
        dir: tempfile::TempDir,
    }

    impl Drop for Bench {
        fn drop(&mut self) {
            // Stop the nginx and PHP-FPM masters this bench started.
            for e in std::fs::read_dir(self.dir.path().join("run")).into_iter().flatten().flatten() {
                if let Some(pid) = std::fs::read_to_string(e.path()).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
                }
            }
        }
    }

    impl Bench {
        /// A state dir with a server (own nginx on a free port, the local PHP-FPM) and a platform.
        async fn new(codebase: Option<String>) -> Result<Bench> {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir()?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            let state = dir.path().to_string_lossy().into_owned();
            let store = fjord_store::testing::sqlite_in(dir.path()).await?;
            let mut cfg = DaemonConfig::new("bench", Layout::new(state.clone()));
            cfg.workers = 1;
            let ctx = Arc::new(runner::Context {
                store,
                executor: Executor::new(
                    Host::Local,
                    SecretStore::open(dir.path().join("secrets"))?,
                    dir.path().join("undo"),
                ),
                config: cfg,
            });
            let bench = Bench { ctx, dir };
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut services = vec![
                Service::Http(HttpService {
                    kind: HttpKind::Nginx,
                    mode: WebMode::Own,
                    version: None,
                    binary: None,
                    listen: Some("127.0.0.1".into()),
                    port,
                    https_port: None,
                    real_ip: None,
                }),
                Service::Db(DbService::sqlite()),
            ];
            let php = fjord_exec::probe::php_runtimes();
            let php = php.first().context("no php-fpm found under /usr/sbin")?;
            services.push(Service::Php(PhpRuntime {
                name: None,
                version: php.version.clone(),
                binary: php.fpm.clone(),
                cli: php.cli.clone(),
                extensions: vec![],
            }));
            let (server, _) = bench
                .ctx
                .store
                .add_server(
                    &NewServer { name: Name::parse("name", "bench")?, hostname: "localhost".into(), services },
                    "bench",
                )
                .await?;
            let source = codebase.unwrap_or_else(|| "tests/fixtures/platforms/drupal10".into());
            let root = bench.dir.path().join("code");
            let copy = fjord_exec::Cmd::new([
                "cp".to_string(),
                "-a".into(),
                source.clone(),
                root.to_string_lossy().into_owned(),
            ]);
            fjord_exec::cmd::run_checked(&copy, None, None).await.with_context(|| {
                format!("copying the codebase {source} (run from the repository root or give --codebase)")
            })?;
            bench
                .ctx
                .store
                .add_platform(
                    &NewPlatform {
                        name: Name::parse("name", "bench")?,
                        server: server.id,
                        root: root.to_string_lossy().into(),
                        source: PlatformSource::Path,
                    },
                    "bench",
                )
                .await?;
            bench.drain().await?;
            Ok(bench)
        }

        /// Runs queued tasks until none is left.
        async fn drain(&self) -> Result<()> {
            while let Some(task) = self.ctx.store.claim("bench", 600_000).await? {
                runner::run_task(&self.ctx, task).await;
            }
            Ok(())
        }

        fn new_site(&self, domain: &str) -> Result<NewSite> {
            let site = NewSite::sqlite(Domain::parse(domain)?, PlatformId(1));
            Ok(NewSite { profile: Some("minimal".into()), ..site })
        }

        /// Runs one task to its end and returns it with its log.
        async fn run_one(&self, kind: TaskKind, target: i64) -> Result<(Task, Vec<LogLine>)> {
            let t = self.ctx.store.enqueue(&NewTask::new(kind, target, serde_json::json!({}), "bench")).await?;
            self.drain().await?;
            Ok((self.ctx.store.task(t.id).await?, self.ctx.store.logs(t.id, 0).await?))
        }
    }

    /// How many times a task really reloaded nginx (a reload step not skipped as unchanged).
    fn nginx_reloads(log: &[LogLine]) -> usize {
        let steps = log.iter().filter(|l| l.text.contains(": check and reload nginx")).count();
        steps - log.iter().filter(|l| l.text.contains("no config of nginx")).count()
    }

    /// The processes a task says it started.
    fn processes(log: &[LogLine]) -> u64 {
        log.iter().rev().find_map(|l| l.text.strip_prefix("processes started: ")?.trim().parse().ok()).unwrap_or(0)
    }

    /// The peak resident memory of this process (the daemon's work runs in it), in MB, since the last
    /// [`reset_peak_memory`].
    fn peak_memory_mb() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok());
        kb.unwrap_or(0.0) / 1024.0
    }

    /// Starts a new peak for [`peak_memory_mb`] (Linux: `clear_refs` 5).
    fn reset_peak_memory() {
        #[allow(clippy::disallowed_methods)]
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }

    /// `count` empty uploads under `dir`, ten per directory, two levels deep (`d3/d7/f375`).
    fn uploads(dir: &Path, count: usize) -> Result<()> {
        for i in 0..count {
            let sub = dir.join(format!("d{}/d{}", i / 100, (i / 10) % 10));
            if i % 10 == 0 {
                std::fs::create_dir_all(&sub)?;
            }
            std::fs::File::create(sub.join(format!("f{i}")))?;
        }
        Ok(())
    }

    pub async fn verify(
        ctx: &mut Ctx,
        sites: usize,
        files_per_site: usize,
        codebase: Option<String>,
    ) -> Result<ExitCode> {
        let bench = Bench::new(codebase).await?;
        let store = &bench.ctx.store;
        let layout = &bench.ctx.config.layout;
        let platform = store.platform(PlatformId(1)).await?;
        let mut domains = Vec::new();
        for i in 0..sites {
            let (site, task) = store.create_site(&bench.new_site(&format!("s{i}.bench.example"))?, "bench").await?;
            store.cancel(task.id).await?;
            store.set_site_status(site.id, SiteStatus::Enabled).await?;
            // No Unix user per benchmark site: the benchmark measures generating and writing files.
            let shared = DesiredChange::SiteIsolation { site: site.id, isolation: Isolation::Shared };
            store.commit_change(&Change { desired: vec![shared], tasks: vec![] }).await?;
            if files_per_site > 0 {
                let files = format!("{}/sites/{}/files", layout.docroot(&platform), site.domain);
                uploads(Path::new(&files), files_per_site)?;
            }
            domains.push(site.domain);
        }
        // Baseline: write the very files the verify writes, with the same atomic writes, same run.
        let snap = store.prospective_snapshot(TaskKind::ServerVerify, 1, &serde_json::json!({})).await?;
        let planned =
            fjord_plan::plan(layout, TaskKind::ServerVerify, &serde_json::json!({}), &snap, &Default::default())?;
        let scratch = bench.dir.path().join("baseline");
        std::fs::create_dir_all(&scratch)?;
        let t0 = Instant::now();
        let mut files = 0;
        for step in &planned.plan.steps {
            if let Step::WriteFile { content: FileContent::Text { text }, mode, .. } = step {
                let text = bench.ctx.executor.resolve_secrets(text)?;
                fjord_exec::fsops::write_atomic(&scratch.join(files.to_string()), text.as_bytes(), *mode)?;
                files += 1;
            }
        }
        let baseline = t0.elapsed();
        let run = |what: &'static str| {
            let bench = &bench;
            async move {
                let t0 = Instant::now();
                let (task, log) = bench.run_one(TaskKind::ServerVerify, 1).await?;
                let took = t0.elapsed();
                anyhow::ensure!(task.status == TaskStatus::Succeeded, "{what} failed: {:?}", task.error);
                Ok::<_, anyhow::Error>((took, log))
            }
        };
        reset_peak_memory();
        let (first_time, log1) = run("the first verify").await?;
        let first_memory = peak_memory_mb();
        // One derived file per site differs from what it should be: the verify rewrites it.
        let vhost_dir = format!("{}/servers/bench/nginx/vhost.d", layout.state_dir);
        for d in &domains {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().append(true).open(format!("{vhost_dir}/{d}.conf"))?;
            writeln!(f, "# changed by hand")?;
        }
        let (changed_time, log2) = run("the verify of one changed file per site").await?;
        reset_peak_memory();
        let (noop_time, log3) = run("the verify that changes nothing").await?;
        let noop_memory = peak_memory_mb();
        let per_site = |d: Duration| d.as_secs_f64() * 1000.0 / sites as f64;
        let ratio = |d: Duration| d.as_secs_f64() / baseline.as_secs_f64().max(1e-9);
        let overhead = per_site(first_time.saturating_sub(baseline));
        let v = serde_json::json!({
            "sites": sites, "files_per_site": files_per_site, "files": files,
            "baseline_ms": baseline.as_secs_f64() * 1000.0, "baseline_per_site_ms": per_site(baseline),
            "verify_ms": first_time.as_secs_f64() * 1000.0, "verify_per_site_ms": per_site(first_time),
            "verify_ratio": ratio(first_time), "overhead_per_site_ms": overhead, "reloads": nginx_reloads(&log1),
            "processes": processes(&log1), "max_rss_mb": first_memory,
            "changed_verify_ms": changed_time.as_secs_f64() * 1000.0, "changed_per_site_ms": per_site(changed_time),
            "changed_ratio": ratio(changed_time), "changed_reloads": nginx_reloads(&log2),
            "changed_processes": processes(&log2),
            "second_verify_ms": noop_time.as_secs_f64() * 1000.0, "second_per_site_ms": per_site(noop_time),
            "second_ratio": ratio(noop_time), "second_reloads": nginx_reloads(&log3),
            "second_processes": processes(&log3), "second_max_rss_mb": noop_memory,
        });
        ctx.out.emit(&v, || {
            println!(
                "{sites} sites, {files_per_site} uploads each; baseline writing the verify's {files} files: {:.0} ms \
                 ({:.2} ms/site)",
                baseline.as_secs_f64() * 1000.0,
                per_site(baseline)
            );
            for (what, took, log, memory) in [
                ("first verify", first_time, &log1, Some(first_memory)),
                ("verify, one file per site changed", changed_time, &log2, None),
                ("verify, nothing changed", noop_time, &log3, Some(noop_memory)),
            ] {
                println!(
                    "{what}: {:.0} ms, {:.2} ms/site, {:.2}x baseline, {} nginx reload(s), {} process(es){}",
                    took.as_secs_f64() * 1000.0,
                    per_site(took),
                    ratio(took),
                    nginx_reloads(log),
                    processes(log),
                    memory.map(|m| format!(", peak RSS {m:.0} MB")).unwrap_or_default()
                );
            }
            println!("Fjord overhead of the first verify: {overhead:.2} ms/site (target <= 10)");
        });
        Ok(ExitCode::SUCCESS)
    }

    pub async fn create(ctx: &mut Ctx, count: usize, codebase: Option<String>) -> Result<ExitCode> {
        let bench = Bench::new(codebase).await?;
        let mut overheads = Vec::new();
        let mut installers = Vec::new();
        for i in 0..count {
            let (_, task) =
                bench.ctx.store.create_site(&bench.new_site(&format!("c{i}.bench.example"))?, "bench").await?;
            bench.drain().await?;
            let t = bench.ctx.store.task(task.id).await?;
            anyhow::ensure!(t.status == TaskStatus::Succeeded, "install failed: {:?}", t.error);
            let log = bench.ctx.store.logs(task.id, 0).await?;
            // The installer's time: from its step line to the next step line.
            let start = log.iter().position(|l| l.text.contains(": install ")).context("no installer step")?;
            let next =
                log[start + 1..].iter().find(|l| l.text.starts_with("step ")).context("no step after the installer")?;
            let installer = next.ts - log[start].ts;
            installers.push(installer as f64);
            overheads.push((t.duration_ms().unwrap_or(0) - installer) as f64);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max = overheads.iter().cloned().fold(0.0, f64::max);
        let v = serde_json::json!({ "count": count, "installer_mean_ms": mean(&installers), "overhead_mean_ms": mean(&overheads), "overhead_max_ms": max });
        ctx.out.emit(&v, || {
            println!(
                "site create x{count}: the app's installer {:.0} ms on average; Fjord's own work {:.0} ms on average, {:.0} ms at most (target <= 300)",
                mean(&installers),
                mean(&overheads),
                max
            )
        });
        Ok(ExitCode::SUCCESS)
    }
}
