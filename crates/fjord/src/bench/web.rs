//! `fjord bench web`: the HTTP side under load. A scratch SQLite state database gets 10,000 sites and
//! 100,000 tasks; the server runs in this process on a loopback port; a load generator (50 concurrent
//! clients on one connection pool each) requests each page a fixed number of times. Prints p50/p99
//! latency per page, the status codes seen, and this process's peak and current RSS (server, data and
//! load generator together, so an upper bound for the server). Numbers from a debug build are
//! pessimistic; the target is p99 < 50 ms and RSS < 50 MB.

use crate::commands::Ctx;
use anyhow::{Context as _, Result};
use fjord_core::{Name, Role};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

pub async fn run(
    ctx: &mut Ctx,
    sites: i64,
    tasks: i64,
    concurrency: usize,
    requests: usize,
    only: &[String],
) -> Result<ExitCode> {
    if let Some(bad) = only.iter().find(|p| !p.starts_with('/')) {
        anyhow::bail!("--page {bad:?}: give a path starting with /");
    }
    let dir = tempfile::tempdir()?;
    let store = fjord_store::testing::sqlite_in(dir.path()).await?;
    let t0 = Instant::now();
    store.bench_fill(sites, tasks, 100).await?;
    let fill = t0.elapsed();
    let hash = fjord_web::auth::hash_password("benchmark password")?;
    let admin = store.add_user(&Name::parse("user", "bench")?, None, Role::Admin, &hash, &[]).await?;
    let secret = format!("{}{}", fjord_web::auth::TOKEN_PREFIX, fjord_web::auth::random_secret(32));
    store
        .create_token(admin.id, "bench", &fjord_web::auth::secret_hash(&secret), fjord_store::TokenScope::Read)
        .await?;
    let state = fjord_web::AppState::new(
        store.clone(),
        fjord_plan::Layout::new(dir.path().to_str().context("temp dir is UTF-8")?),
        fjord_web::WebSettings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fjord_web::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    // /api/me first: authentication alone, the floor under every other page.
    let pages = [
        "/api/me",
        "/api/sites?status=enabled",
        "/api/sites?status=enabled&limit=10",
        "/sites",
        "/sites/site1.bench.example",
    ];
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let mut results = Vec::new();
    if !ctx.out.json {
        println!(
            "{sites} sites, {tasks} tasks in SQLite (filled in {:.1} s); {concurrency} clients, {requests} requests per page",
            fill.as_secs_f64()
        );
        if cfg!(debug_assertions) {
            println!("(debug build: expect several times the latency of a release build)");
        }
    }
    let pages: Vec<&str> = if only.is_empty() { pages.to_vec() } else { only.iter().map(String::as_str).collect() };
    for page in pages {
        let url = format!("{base}{page}");
        // Warm the connection pool and SQLite's page cache.
        for _ in 0..concurrency.min(10) {
            let _ = http.get(&url).bearer_auth(&secret).send().await?.bytes().await;
        }
        let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(requests));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (http, url, secret, remaining) = (http.clone(), url.clone(), secret.clone(), remaining.clone());
            workers.push(tokio::spawn(async move {
                let mut times = Vec::new();
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                while remaining
                    .fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |n| {
                        n.checked_sub(1)
                    })
                    .is_ok()
                {
                    let t = Instant::now();
                    let status = match http.get(&url).bearer_auth(&secret).send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    times.push(t.elapsed());
                    *statuses.entry(status).or_default() += 1;
                }
                (times, statuses)
            }));
        }
        let mut times = Vec::new();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for w in workers {
            let (t, s) = w.await?;
            times.extend(t);
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
        let wall = started.elapsed();
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        let rps = times.len() as f64 / wall.as_secs_f64();
        let codes = statuses.iter().map(|(k, v)| format!("{k}x{v}")).collect::<Vec<_>>().join(" ");
        if !ctx.out.json {
            println!("GET {page:<32} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  {rps:>7.0} req/s  status {codes}");
        }
        results.push(serde_json::json!({ "page": page, "p50_ms": p50, "p99_ms": p99, "requests_per_sec": rps, "statuses": statuses }));
    }
    let (rss, peak) = (rss_kb("VmRSS:"), rss_kb("VmHWM:"));
    if !ctx.out.json {
        println!(
            "process RSS now {} MB, peak {} MB (server + load generator + data setup; target < 50 MB for the server)",
            rss.unwrap_or(0) / 1024,
            peak.unwrap_or(0) / 1024
        );
    } else {
        let v = serde_json::json!({ "sites": sites, "tasks": tasks, "concurrency": concurrency, "requests": requests,
            "debug_build": cfg!(debug_assertions), "pages": results, "rss_kb": rss, "peak_rss_kb": peak });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
