//! One module per noun. Each command resolves its arguments into validated model values first, so bad
//! input fails before anything is written.

mod accounts;
mod admin;
mod backup;
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
        Command::Bench(cmd) => crate::bench::run(&mut ctx, cmd).await,
        Command::ProxyRanges(cmd) => proxies::ranges(&mut ctx, cmd).await,
    }
}

/// The actions layer, the one way every change is made (shared with the API, the UI and the daemon).
pub fn actions<'a>(store: &'a Store, layout: &'a Layout) -> fjord_actions::Actions<'a> {
    fjord_actions::Actions::new(store, layout)
}

/// What a change came to: the queued task followed (`--wait`), or the dry run's plan printed.
pub async fn outcome(ctx: &mut Ctx, kind: TaskKind, outcome: fjord_actions::Outcome) -> Result<ExitCode> {
    match outcome {
        fjord_actions::Outcome::Queued(t) => task::queued(ctx, &t).await,
        fjord_actions::Outcome::Planned(planned) => print_plan(ctx, kind, &planned),
    }
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
    let store = ctx.store().await?;
    let layout = ctx.layout();
    match actions(&store, &layout).run(kind, target_id, args, &ctx.actor(), ctx.global.dry_run).await? {
        fjord_actions::Outcome::Queued(t) => Ok(Some(t)),
        fjord_actions::Outcome::Planned(planned) => {
            print_plan(ctx, kind, &planned)?;
            Ok(None)
        }
    }
}
