//! One module per noun. Each command resolves its arguments into validated model values first, so bad
//! input fails before anything is written.

mod accounts;
mod admin;
mod backup;
mod bench;
mod bench_moves;
mod bench_web;
mod migrate;
mod objects;
mod proxies;
mod remote;
mod remote_objects;
mod site;
mod task;

use crate::cli::{Cli, Command, Global};
use crate::config::{self, Settings};
use crate::output::Out;
use anyhow::{Context as _, Result};
use fjord_core::*;
use fjord_exec::{Executor, Host, SecretStore};
use fjord_plan::Layout;
use fjord_store::Store;
use std::process::ExitCode;

/// What every command gets: settings, output mode, global flags, and the store (opened on demand).
pub struct Ctx {
    pub settings: Settings,
    pub global: Global,
    pub out: Out,
    pub store: Option<Store>,
}

impl Ctx {
    pub async fn store(&mut self) -> Result<Store> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        if !self.settings.state_dir.is_dir() && self.settings.database_url.starts_with("sqlite:") {
            anyhow::bail!(
                "state dir {} does not exist; run `fjord init --state {}` first",
                self.settings.state_dir.display(),
                self.settings.state_dir.display()
            );
        }
        let store = Store::open(&self.settings.database_url).await.context("opening the state database")?;
        self.store = Some(store.clone());
        Ok(store)
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.settings.state_str())
    }

    pub fn executor(&self) -> Result<Executor> {
        Ok(Executor::new(Host::Local, SecretStore::open(self.settings.secrets_dir())?, self.settings.undo_dir()))
    }

    /// Who is asking, for the task record.
    pub fn actor(&self) -> String {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| nix::unistd::getuid().to_string());
        format!("cli:{user}")
    }
}

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let settings = config::resolve(&cli.global)?;
    let mut ctx = Ctx { settings, out: Out { json: cli.global.json }, global: cli.global, store: None };
    if let Some(url) = ctx.global.remote.clone() {
        return remote::dispatch(&mut ctx, &url, cli.command).await;
    }
    match cli.command {
        Command::Init(args) => admin::init(&mut ctx, args).await,
        Command::Serve(args) => admin::serve(&mut ctx, args).await,
        Command::Health => admin::health(&mut ctx).await,
        Command::Completions { shell } => admin::completions(shell),
        Command::Man { dir } => admin::man(&dir),
        Command::Server(cmd) => objects::server(&mut ctx, cmd).await,
        Command::Platform(cmd) => objects::platform(&mut ctx, cmd).await,
        Command::Client(cmd) => objects::client(&mut ctx, cmd).await,
        Command::User(cmd) => accounts::user(&mut ctx, cmd).await,
        Command::Token(cmd) => accounts::token(&mut ctx, cmd).await,
        Command::Backup(cmd) => backup::run(&mut ctx, cmd).await,
        Command::Site(cmd) => site::run(&mut ctx, cmd).await,
        Command::Task(cmd) => task::run(&mut ctx, cmd).await,
        Command::Bench(cmd) => bench::run(&mut ctx, cmd).await,
        Command::ProxyRanges(cmd) => proxies::ranges(&mut ctx, cmd).await,
    }
}

/// A task that does not exist yet (shared with the API: fjord-web's actions layer).
pub use fjord_web::actions::prospective_task;

/// Plans `kind` against `snap`; a refusal becomes the command's error, so nothing gets queued.
pub fn plan_now(ctx: &Ctx, kind: TaskKind, args: &serde_json::Value, snap: &Snapshot) -> Result<Planned> {
    Ok(fjord_web::actions::plan_snapshot(&ctx.layout(), kind, args, snap)?)
}

/// Prints a plan for `--dry-run`.
pub fn print_plan(ctx: &Ctx, kind: TaskKind, planned: &Planned) -> Result<ExitCode> {
    let ex = ctx.executor()?;
    if ctx.out.json {
        let previews: Vec<String> = planned.plan.steps.iter().map(|s| ex.preview(s)).collect();
        let v = serde_json::json!({ "dry_run": true, "kind": kind, "steps": planned.plan.steps.iter().map(|s| s.describe()).collect::<Vec<_>>(), "previews": previews, "on_success": planned.on_success });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("dry run: {kind} would do {} step(s); nothing was changed", planned.plan.steps.len());
        for (i, step) in planned.plan.steps.iter().enumerate() {
            println!("\n[{}] {}", i + 1, ex.preview(step));
        }
        for change in &planned.on_success {
            println!("\nthen record: {}", serde_json::to_string(change)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Queues a task on an existing object, after checking it would be accepted; honours `--dry-run` and
/// `--wait`.
pub async fn queue_task(ctx: &mut Ctx, kind: TaskKind, target_id: i64, args: serde_json::Value) -> Result<ExitCode> {
    match enqueue_checked(ctx, kind, target_id, args).await? {
        Some(task) => task::queued(ctx, &task).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Plans the task now (a refusal is the command's error, and nothing is queued), then queues it; with
/// `--dry-run`, prints the plan instead and returns `None`.
pub async fn enqueue_checked(
    ctx: &mut Ctx,
    kind: TaskKind,
    target_id: i64,
    args: serde_json::Value,
) -> Result<Option<Task>> {
    // The same checks and queueing as the API's (fjord-web's actions layer).
    let store = ctx.store().await?;
    let layout = ctx.layout();
    let actions = fjord_web::actions::Actions::new(&store, &layout);
    if ctx.global.dry_run {
        let planned = actions.plan(kind, target_id, &args).await?;
        print_plan(ctx, kind, &planned)?;
        return Ok(None);
    }
    Ok(Some(actions.enqueue(kind, target_id, args, &ctx.actor()).await?))
}
