//! init, serve, health, completions, man.

use super::Ctx;
use crate::cli::{Cli, InitArgs, ServeArgs};
use crate::config::{self, ensure_dir};
use anyhow::{bail, Context as _, Result};
use clap::CommandFactory;
use fjord_daemon::DaemonConfig;
use std::fs::File;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub async fn init(ctx: &mut Ctx, args: InitArgs) -> Result<ExitCode> {
    let s = ctx.settings.clone();
    if let Some(url) = &ctx.global.db {
        config::check_url(url)?;
    }
    if ctx.global.dry_run {
        println!(
            "dry run: would create {} (secrets/, log/, undo/, backups/), write {} and create the state database",
            s.state_dir.display(),
            s.config_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Passed through by sites on their way to their own directories; never listed by them.
    ensure_dir(&s.state_dir, 0o711)?;
    for (dir, mode) in
        [(s.secrets_dir(), 0o700), (s.undo_dir(), 0o700), (s.state_dir.join("backups"), 0o700), (s.log_dir(), 0o750)]
    {
        ensure_dir(&dir, mode)?;
    }
    let wrote_config = if s.config_path.exists() {
        false
    } else {
        fjord_exec::fsops::write_atomic(
            &s.config_path,
            config::default_config_text(ctx.global.db.as_deref()).as_bytes(),
            0o640,
        )?;
        true
    };
    let store = ctx.store().await?;
    config::restrict_state_db(&ctx.settings)?;
    let servers = store.servers().await?.len();
    // The first admin, only while there are no users: running init again never adds another.
    let admin = if store.user_count(None).await? == 0 {
        let name = fjord_core::Name::parse("user", &args.admin)?;
        let (password, generated) = super::accounts::password_from(args.password_stdin)?;
        let hash = fjord_web::auth::hash_password(&password)?;
        store.add_user(&name, None, fjord_core::Role::Admin, &hash, &[]).await?;
        super::accounts::audit_cli(ctx, &store, "user.add", &format!("user:{name}"), "first admin (init)").await?;
        Some((name, generated.then_some(password)))
    } else {
        None
    };
    let summary = serde_json::json!({
        "state_dir": s.state_dir,
        "config": s.config_path,
        "database": store_kind(&s.database_url),
        "config_written": wrote_config,
        "servers": servers,
        "admin_created": admin.as_ref().map(|(n, _)| n.to_string()),
        "admin_password": admin.as_ref().and_then(|(_, p)| p.clone()),
    });
    ctx.out.emit(&summary, || {
        println!("Fjord state is ready in {}", s.state_dir.display());
        println!("  config:   {}{}", s.config_path.display(), if wrote_config { " (written)" } else { " (kept)" });
        println!("  database: {}", store_kind(&s.database_url));
        if let Some((name, password)) = &admin {
            match password {
                Some(p) => {
                    println!("  admin:    {name}, password {p} (shown only now; change it with `fjord user passwd`)")
                }
                None => println!("  admin:    {name} (password from stdin)"),
            }
        }
        println!("Next: `fjord serve` runs the task daemon; `fjord server add localhost` registers this machine.");
    });
    Ok(ExitCode::SUCCESS)
}

fn store_kind(url: &str) -> String {
    if url.starts_with("sqlite:") {
        format!("SQLite ({})", url.trim_start_matches("sqlite://"))
    } else {
        "PostgreSQL".into()
    }
}

/// Holds an exclusive lock on `serve.lock` while a daemon runs on this state dir.
fn try_lock(path: &Path) -> Result<Option<nix::fcntl::Flock<File>>> {
    let file = fjord_exec::fsops::open_lock_file(path)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).context("locking serve.lock"),
    }
}

/// Whether a `fjord serve` is running on this state dir.
pub fn daemon_running(ctx: &Ctx) -> bool {
    let path = ctx.settings.lock_path();
    path.exists() && matches!(try_lock(&path), Ok(None))
}

pub fn default_node() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

pub async fn serve(ctx: &mut Ctx, args: ServeArgs) -> Result<ExitCode> {
    if !ctx.settings.state_dir.is_dir() {
        bail!("state dir {} does not exist; run `fjord init` first", ctx.settings.state_dir.display());
    }
    let Some(_lock) = try_lock(&ctx.settings.lock_path())? else {
        bail!("another `fjord serve` is already running on {}", ctx.settings.state_dir.display());
    };
    let store = ctx.store().await?;
    // An older installation's database may still be readable by others: not from now on.
    config::restrict_state_db(&ctx.settings)?;
    let file = &ctx.settings.file;
    let mut cfg = DaemonConfig::new(args.node.or(file.node.clone()).unwrap_or_else(default_node), ctx.layout());
    let listen = args.listen.clone().or(file.listen.clone());
    // No workers: this process only answers HTTP (another daemon on the same database runs the tasks).
    let http_only = args.workers.or(file.workers) == Some(0);
    if let Some(w) = args.workers.or(file.workers) {
        if w == 0 && listen.is_none() {
            bail!("--workers must be at least 1 (0 only with --listen: HTTP without task workers)");
        }
        cfg.workers = w.max(1);
    }
    if let Some(l) = file.lease_seconds {
        cfg.lease = Duration::from_secs(l.max(1));
    }
    if let Ok(secs) = std::env::var("FJORD_CRON_CHECK_SECONDS") {
        cfg.cron_check = Duration::from_secs(
            secs.parse().map_err(|_| anyhow::anyhow!("FJORD_CRON_CHECK_SECONDS must be a number"))?,
        );
    }
    if let Ok(secs) = std::env::var("FJORD_BACKUP_CHECK_SECONDS") {
        cfg.backup_check = Duration::from_secs(
            secs.parse().map_err(|_| anyhow::anyhow!("FJORD_BACKUP_CHECK_SECONDS must be a number"))?,
        );
    }
    cfg.offsite = ctx.settings.offsite()?;
    let acme = ctx.settings.file.acme.clone().unwrap_or_default();
    let env_num = |k: &str| -> Result<Option<u64>> {
        match std::env::var(k) {
            Ok(v) => Ok(Some(v.parse().map_err(|_| anyhow::anyhow!("{k} must be a number"))?)),
            Err(_) => Ok(None),
        }
    };
    cfg.acme = Some(ctx.settings.acme_request(false)?);
    if let Some(s) = env_num("FJORD_CERT_CHECK_SECONDS")?.or(acme.check_hours.map(|h| h * 3600)) {
        cfg.cert_check = Duration::from_secs(s.max(1));
    }
    if let Some(d) = env_num("FJORD_CERT_RENEW_DAYS")?.or(acme.renew_days) {
        cfg.cert_renew_before = Duration::from_secs(d * 86_400);
    }
    if let Some(s) = env_num("FJORD_CERT_RETRY_SECONDS")?.or(acme.retry_minutes.map(|m| m * 60)) {
        cfg.cert_retry = Duration::from_secs(s.max(1));
    }
    if let Some(s) = env_num("FJORD_UNDO_RETRY_SECONDS")? {
        cfg.undo_retry = Duration::from_secs(s.max(1));
    }
    if let Ok(f) = std::env::var("FJORD_FAULT") {
        cfg.fault = Some(f.parse().map_err(anyhow::Error::msg)?);
    }
    fjord_exec::fsops::write_atomic(
        &ctx.settings.state_dir.join("serve.pid"),
        format!("{}\n", std::process::id()).as_bytes(),
        0o600,
    )?;
    // One signal stops both the worker pool and the HTTP server.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let web = match listen {
        Some(addr) => {
            let listener =
                tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("listening on {addr}"))?;
            let settings = fjord_web::WebSettings {
                offsite: ctx.settings.offsite()?,
                acme: ctx.settings.acme_request(false).ok(),
                ..ctx.settings.web_settings()?
            };
            let state = fjord_web::AppState::new(store.clone(), ctx.layout(), settings);
            let local = listener.local_addr()?;
            tracing::info!(%local, "serving the web UI and API");
            let mut rx = stop_rx.clone();
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            Some(tokio::spawn(fjord_web::serve(listener, state, stopped)))
        }
        None => None,
    };
    tracing::info!(workers = cfg.workers, node = %cfg.node, state = %ctx.settings.state_dir.display(), "fjord serve started");
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("signal received");
        let _ = stop_tx.send(true);
    });
    let mut rx = stop_rx.clone();
    let shutdown = async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if http_only {
        shutdown.await;
    } else {
        fjord_daemon::run(store, ctx.executor()?, cfg, shutdown, Duration::from_secs(30)).await?;
    }
    if let Some(web) = web {
        match tokio::time::timeout(Duration::from_secs(10), web).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Err(_) => tracing::warn!("HTTP server did not stop within 10 s"),
            _ => {}
        }
    }
    let _ = fjord_exec::fsops::remove_all(&ctx.settings.state_dir.join("serve.pid"));
    tracing::info!("fjord serve stopped");
    Ok(ExitCode::SUCCESS)
}

pub async fn health(ctx: &mut Ctx) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let active = store.active_task_count().await?;
    let running = daemon_running(ctx);
    let v = serde_json::json!({ "database": "ok", "daemon_running": running, "active_tasks": active });
    ctx.out.emit(&v, || {
        println!("state database: ok");
        println!("daemon:         {}", if running { "running" } else { "not running (start it with `fjord serve`)" });
        println!("active tasks:   {active}");
    });
    Ok(ExitCode::SUCCESS)
}

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "fjord", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(dir: &Path) -> Result<ExitCode> {
    fjord_exec::fsops::create_dirs(dir, 0o755)?;
    clap_mangen::generate_to(Cli::command(), dir).context("writing man pages")?;
    println!("man pages written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
