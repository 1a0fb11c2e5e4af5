//! Remote mode: `fjord --remote URL …` acts on another Fjord through its HTTP API instead of a local
//! state database. The API token comes from `FJORD_TOKEN` or a 0600 file (`--token-file` /
//! `FJORD_TOKEN_FILE`), never from the command line, where other users could read it.

use super::task::print_tasks;
use super::Ctx;
use crate::cli::{Command, PlatformCmd, SiteCmd, TaskCmd};
use crate::output::{fields, table};
use anyhow::{bail, Context as _, Result};
use fjord_core::{BatchSummary, Site, Task, TaskStatus};
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::ExitCode;

/// A client of one Fjord's API.
pub struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Reads the token: `FJORD_TOKEN`, else the file, which must not be readable by others.
pub fn read_token(file: Option<&Path>) -> Result<String> {
    if let Ok(t) = std::env::var("FJORD_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let Some(file) = file else {
        bail!("--remote needs an API token: set FJORD_TOKEN, or FJORD_TOKEN_FILE / --token-file (a 0600 file)");
    };
    let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("{} is readable by others; chmod 600 it", file.display());
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!("{} is empty", file.display());
    }
    Ok(token)
}

fn encode(segment: &str) -> String {
    // Domains and names are plain ASCII labels; anything else is escaped rather than trusted.
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Remote {
    pub fn new(url: &str, token: String) -> Result<Remote> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--remote must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder().build().context("building the HTTP client")?;
        Ok(Remote { base: url.trim_end_matches('/').to_string(), token, http })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the answer")?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = v["detail"].as_str().map(str::to_string).unwrap_or(text);
            bail!("{} ({status})", detail);
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Streams a task's log (server-sent events), printing each line, until the task ends (or, without
    /// `follow`, until the lines so far are printed). Returns the finished task if it ended.
    async fn log(&self, id: i64, follow: bool, print: bool) -> Result<Option<Task>> {
        let resp = self
            .http
            .get(format!("{}/api/tasks/{id}/log?follow={follow}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            bail!("{} ({status})", v["detail"].as_str().unwrap_or("error"));
        }
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.context("reading the log stream")?));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let mut kind = "message";
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(k) = line.strip_prefix("event:") {
                        kind = if k.trim() == "end" {
                            "end"
                        } else if k.trim() == "log" {
                            "log"
                        } else {
                            "other"
                        };
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                match kind {
                    "log" if print => {
                        let line: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                        println!("{}", line["text"].as_str().unwrap_or(""));
                    }
                    "end" => return Ok(serde_json::from_str(&data).ok()),
                    _ => {}
                }
            }
        }
        Ok(None)
    }
}

fn print_sites(sites: &[Site]) {
    let rows = sites
        .iter()
        .map(|s| vec![s.domain.to_string(), s.db_engine.to_string(), s.status.to_string()])
        .collect::<Vec<_>>();
    table(&["domain", "db", "status"], &rows);
}

/// What a queueing command prints (and, with `--wait`, follows).
async fn queued(ctx: &Ctx, remote: &Remote, v: Value) -> Result<ExitCode> {
    let task: Task = serde_json::from_value(v).context("the server answered with something other than a task")?;
    if ctx.global.wait {
        let end = remote.log(task.id.0, true, !ctx.out.json).await?.context("the log stream ended early")?;
        ctx.out.emit(&end, || {});
        return Ok(if end.status == TaskStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    ctx.out.emit(&task, || {
        println!(
            "queued task {} ({}); follow it with `fjord --remote … task log {} --follow`",
            task.id, task.kind, task.id
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn dispatch(ctx: &mut Ctx, url: &str, command: Command) -> Result<ExitCode> {
    if ctx.global.dry_run && !matches!(command, Command::Platform(PlatformCmd::Migrate { .. })) {
        bail!("--dry-run is not available with --remote (except for platform migrate)");
    }
    let token = read_token(ctx.global.token_file.as_deref())?;
    let remote = Remote::new(url, token)?;
    match command {
        Command::Site(cmd) => site(ctx, &remote, cmd).await,
        Command::Task(cmd) => task(ctx, &remote, cmd).await,
        Command::Platform(PlatformCmd::Migrate { name, to, parallel, canary, no_wait }) => {
            platform_migrate(ctx, &remote, &name, json!({ "to": to, "parallel": parallel, "canary": canary.unwrap_or(0) }), no_wait)
                .await
        }
        Command::Health => {
            let v = remote.get("/api/health").await?;
            ctx.out.emit(&v, || println!("{url}: database ok, {} active task(s)", v["active_tasks"]));
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("this command works only locally; with --remote: site list/show/create/backup/verify/enable/disable/delete, platform migrate, task list/show/log, health"),
    }
}

/// `platform migrate` through the API: the dry run's plan, or the batch task followed to its end and
/// its summary printed as the local command prints it.
async fn platform_migrate(ctx: &Ctx, remote: &Remote, name: &str, mut body: Value, no_wait: bool) -> Result<ExitCode> {
    body["dry_run"] = json!(ctx.global.dry_run);
    let v = remote.post(&format!("/api/platforms/{}/migrate", encode(name)), body).await?;
    if ctx.global.dry_run {
        let summary: BatchSummary = serde_json::from_value(v).context("the server answered without a plan")?;
        return Ok(super::migrate::print_summary(ctx, &summary, None, true));
    }
    if no_wait {
        return queued(ctx, remote, v).await;
    }
    let id = v["id"].as_i64().context("the server answered with something other than a task")?;
    let end = remote.log(id, true, !ctx.out.json).await?.context("the log stream ended early")?;
    let task = remote.get(&format!("/api/tasks/{id}")).await?;
    let summary: BatchSummary =
        serde_json::from_value(task["result"].clone()).context("the batch task ended without a summary")?;
    Ok(super::migrate::print_summary(ctx, &summary, Some(id), end.status == TaskStatus::Succeeded))
}

async fn site(ctx: &Ctx, remote: &Remote, cmd: SiteCmd) -> Result<ExitCode> {
    let action = |domain: &str, verb: &str| format!("/api/sites/{}/{verb}", encode(domain));
    match cmd {
        SiteCmd::List { status } => {
            let mut sites: Vec<Site> = Vec::new();
            // Every page, so the output matches the local command's.
            loop {
                let mut path = format!("/api/sites?limit=500&offset={}", sites.len());
                if let Some(s) = &status {
                    path.push_str(&format!("&status={}", encode(s)));
                }
                let page = remote.get(&path).await?;
                let items: Vec<Site> = serde_json::from_value(page["items"].clone()).context("a page of sites")?;
                let total = page["total"].as_u64().unwrap_or(0) as usize;
                let done = items.is_empty();
                sites.extend(items);
                if done || sites.len() >= total {
                    break;
                }
            }
            ctx.out.emit(&sites, || print_sites(&sites));
            Ok(ExitCode::SUCCESS)
        }
        SiteCmd::Show { domain } => {
            let v = remote.get(&format!("/api/sites/{}", encode(&domain))).await?;
            ctx.out.emit(&v, || {
                let s = |k: &str| v[k].as_str().map(str::to_string).unwrap_or_else(|| "-".into());
                fields(&[
                    ("domain", s("domain")),
                    ("status", s("status")),
                    ("platform", s("platform")),
                    ("client", s("client")),
                    ("database", format!("{} {}", s("db_engine"), s("db_name"))),
                    ("https", s("https")),
                ]);
            });
            Ok(ExitCode::SUCCESS)
        }
        SiteCmd::Create(c) => {
            let body = json!({
                "domain": c.domain, "platform": c.platform, "aliases": c.aliases, "www": c.www,
                "db_engine": c.db_engine, "db_server": c.db_server, "php": c.php, "profile": c.profile,
                "language": c.language, "client": c.client, "redirect_aliases": c.redirect_aliases,
                "https": c.https, "cron_interval": c.cron_interval,
            });
            let v = remote.post("/api/sites", body).await?;
            queued(ctx, remote, v).await
        }
        SiteCmd::Backup { domain, compression } => {
            let v = remote.post(&action(&domain, "backup"), json!({ "compression": compression })).await?;
            queued(ctx, remote, v).await
        }
        SiteCmd::Verify { domain } => {
            queued(ctx, remote, remote.post(&action(&domain, "verify"), json!({})).await?).await
        }
        SiteCmd::Enable { domain } => {
            queued(ctx, remote, remote.post(&action(&domain, "enable"), json!({})).await?).await
        }
        SiteCmd::Disable { domain } => {
            queued(ctx, remote, remote.post(&action(&domain, "disable"), json!({})).await?).await
        }
        SiteCmd::Delete { domain, force, no_backup } => {
            let path = format!("/api/sites/{}?force={force}&backup={}", encode(&domain), !no_backup);
            let v = remote.call(reqwest::Method::DELETE, &path, None).await?;
            queued(ctx, remote, v).await
        }
        _ => bail!("with --remote, `site` supports list, show, create, backup, verify, enable, disable and delete"),
    }
}

async fn task(ctx: &Ctx, remote: &Remote, cmd: TaskCmd) -> Result<ExitCode> {
    match cmd {
        TaskCmd::List { status, limit } => {
            let mut path = format!("/api/tasks?limit={}", limit.clamp(1, 500));
            if let Some(s) = &status {
                path.push_str(&format!("&status={}", encode(s)));
            }
            let page = remote.get(&path).await?;
            let tasks: Vec<Task> = serde_json::from_value(page["items"].clone()).context("a page of tasks")?;
            ctx.out.emit(&tasks, || print_tasks(&tasks));
            Ok(ExitCode::SUCCESS)
        }
        TaskCmd::Show { id } => {
            let v = remote.get(&format!("/api/tasks/{id}")).await?;
            ctx.out.emit(&v, || {
                let s = |k: &str| v[k].as_str().map(str::to_string).unwrap_or_else(|| "-".into());
                fields(&[
                    ("id", v["id"].to_string()),
                    ("kind", s("kind")),
                    ("status", s("status")),
                    ("created by", s("created_by")),
                    ("error", s("error")),
                ]);
                for step in v["steps"].as_array().into_iter().flatten() {
                    println!(
                        "  [{}] {} {}",
                        step["idx"],
                        step["status"].as_str().unwrap_or(""),
                        step["description"].as_str().unwrap_or("")
                    );
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        TaskCmd::Log { id, follow } => {
            let end = remote.log(id, follow, true).await?;
            Ok(match end {
                Some(t) if t.status != TaskStatus::Succeeded => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            })
        }
        _ => bail!("with --remote, `task` supports list, show and log"),
    }
}
