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

pub(super) fn encode(segment: &str) -> String {
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

    pub(super) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
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

    pub(super) async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub(super) async fn delete(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
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
pub(super) async fn queued(ctx: &Ctx, remote: &Remote, v: Value) -> Result<ExitCode> {
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
        Command::Platform(PlatformCmd::Migrate { name, to, parallel, canary, maintenance, no_wait }) => {
            platform_migrate(
                ctx,
                &remote,
                &name,
                json!({ "to": to, "parallel": parallel, "canary": canary.unwrap_or(0), "maintenance": maintenance }),
                no_wait,
            )
            .await
        }
        Command::Server(cmd) => super::remote_objects::server(ctx, &remote, cmd).await,
        Command::Platform(cmd) => super::remote_objects::platform(ctx, &remote, cmd).await,
        Command::Client(cmd) => super::remote_objects::client(ctx, &remote, cmd).await,
        Command::Backup(cmd) => super::remote_objects::backup(ctx, &remote, cmd).await,
        Command::User(cmd) => super::remote_objects::user(ctx, &remote, cmd).await,
        Command::ProxyRanges(crate::cli::ProxyRangesCmd::Show) => {
            let v = remote.get("/api/proxy-ranges").await?;
            ctx.out.emit(&v, || println!("{}: {} ranges", v["name"], v["ranges"].as_array().map_or(0, Vec::len)));
            Ok(ExitCode::SUCCESS)
        }
        Command::ProxyRanges(crate::cli::ProxyRangesCmd::Update { from }) => {
            let v = remote.post("/api/proxy-ranges/refresh", json!({ "from": from })).await?;
            ctx.out.emit(&v, || {
                for line in v["report"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    println!("{line}");
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Health => {
            let v = remote.get("/api/health").await?;
            ctx.out.emit(&v, || println!("{url}: database ok, {} active task(s)", v["active_tasks"]));
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("this command works only on the Fjord itself, not with --remote"),
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
        SiteCmd::Import(i) => {
            // The password travels in the body, over the API's connection, to the remote's secrets store.
            let password = std::fs::read_to_string(&i.db_password_file)
                .with_context(|| format!("reading {}", i.db_password_file))?;
            let body = json!({
                "domain": i.domain, "platform": i.platform, "db_engine": i.db_engine, "db_name": i.db_name,
                "db_user": i.db_user, "db_password": password, "aliases": i.aliases, "php": i.php,
                "client": i.client,
            });
            let v = remote.post("/api/sites/import", body).await?;
            queued(ctx, remote, v).await
        }
        SiteCmd::Backup { domain, compression, logical, physical } => {
            let body = json!({ "compression": compression, "logical": logical, "physical": physical });
            let v = remote.post(&action(&domain, "backup"), body).await?;
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
        SiteCmd::LoginLink { domain } => {
            // The link is the task's result (never in its log), handed to whoever asked.
            let task: Task = serde_json::from_value(remote.post(&action(&domain, "login-link"), json!({})).await?)
                .context("the server answered with something other than a task")?;
            let end = remote.log(task.id.0, true, false).await?.context("the log stream ended early")?;
            if end.status != TaskStatus::Succeeded {
                bail!("login link task {} {}: {}", end.id, end.status, end.error.unwrap_or_default());
            }
            let shown = remote.get(&format!("/api/tasks/{}", task.id)).await?;
            let url =
                shown["result"]["login_link"].as_str().context("the login link task reported no URL")?.to_string();
            ctx.out.emit(&json!({ "url": url, "task": task.id }), || println!("{url}"));
            Ok(ExitCode::SUCCESS)
        }
        SiteCmd::Alias { domain, add, remove, redirect, www } => {
            let redirect = match redirect.as_deref() {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => bail!("invalid --redirect {other:?}: on or off"),
            };
            let body = json!({ "add": add, "remove": remove, "www": www, "redirect": redirect });
            queued(ctx, remote, remote.post(&action(&domain, "aliases"), body).await?).await
        }
        SiteCmd::Restore { domain, backup, platform } => {
            // A site that exists is restored in place; a deleted one comes back as a new site.
            let v = match remote.get(&format!("/api/sites/{}", encode(&domain))).await {
                Ok(_) if platform.is_some() => bail!("--platform is only for bringing back a deleted site"),
                Ok(_) => remote.post(&action(&domain, "restore"), json!({ "backup": backup })).await?,
                Err(_) => {
                    let body = json!({ "domain": domain, "platform": platform });
                    remote.post(&format!("/api/backups/{backup}/restore"), body).await?
                }
            };
            queued(ctx, remote, v).await
        }
        SiteCmd::Clone { source, domain, platform, aliases } => {
            let body = json!({ "domain": domain, "platform": platform, "aliases": aliases });
            queued(ctx, remote, remote.post(&action(&source, "clone"), body).await?).await
        }
        SiteCmd::Migrate { domain, to, new_domain, drop_old_domain, db_server } => {
            let body = json!({ "platform": to, "new_domain": new_domain, "keep_old_domain": !drop_old_domain,
                               "db_server": db_server });
            queued(ctx, remote, remote.post(&action(&domain, "migrate"), body).await?).await
        }
        SiteCmd::Rename { domain, new_domain, drop_old_domain } => {
            let site = remote.get(&format!("/api/sites/{}", encode(&domain))).await?;
            let body = json!({ "platform": site["platform"], "new_domain": new_domain,
                               "keep_old_domain": !drop_old_domain });
            queued(ctx, remote, remote.post(&action(&domain, "migrate"), body).await?).await
        }
        SiteCmd::Sync { from, to, db, files } => {
            let body = json!({ "from": from, "db": db, "files": files });
            queued(ctx, remote, remote.post(&action(&to, "sync"), body).await?).await
        }
        SiteCmd::Cron { domain } => queued(ctx, remote, remote.post(&action(&domain, "cron"), json!({})).await?).await,
        SiteCmd::PhpLimits { domain, max_children, memory_limit, upload_max, max_execution_time } => {
            let body = json!({ "max_children": max_children, "memory_limit": memory_limit,
                               "upload_max": upload_max, "max_execution_time": max_execution_time });
            queued(ctx, remote, remote.post(&action(&domain, "php-limits"), body).await?).await
        }
        SiteCmd::Php { domain, runtime } => {
            queued(ctx, remote, remote.post(&action(&domain, "php"), json!({ "runtime": runtime })).await?).await
        }
        SiteCmd::Isolation { domain, mode } => {
            let body = json!({ "mode": mode.to_string() });
            queued(ctx, remote, remote.post(&action(&domain, "isolation"), body).await?).await
        }
        SiteCmd::HealthMarker { domain, text } => {
            let v = remote.post(&action(&domain, "health-marker"), json!({ "text": text })).await?;
            ctx.out.emit(&v, || {
                println!("health marker of {domain}: {}", text.as_deref().unwrap_or("(none: status only)"))
            });
            Ok(ExitCode::SUCCESS)
        }
        SiteCmd::Https { domain, mode, hsts, self_signed } => {
            let hsts = match hsts.as_deref() {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => bail!("invalid --hsts {other:?}: use on or off"),
            };
            let body = json!({ "mode": mode, "hsts": hsts, "self_signed": self_signed });
            queued(ctx, remote, remote.post(&action(&domain, "https"), body).await?).await
        }
        SiteCmd::Cert { domain, self_signed, cert, key, revoke_old } => {
            let mut body = json!({ "self_signed": self_signed, "revoke_old": revoke_old });
            if let Some((cert, key)) = cert.zip(key) {
                // The key travels in the body, over the API's connection, to the remote's secrets store.
                body["cert_pem"] =
                    json!(std::fs::read_to_string(&cert).with_context(|| format!("reading {}", cert.display()))?);
                body["key_pem"] =
                    json!(std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?);
            }
            let v = remote.post(&action(&domain, "cert"), body).await?;
            if let Some(names) = v["not_covered"].as_array().filter(|n| !n.is_empty()) {
                let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
                eprintln!("warning: the certificate does not cover {}", names.join(", "));
            }
            queued(ctx, remote, v["task"].clone()).await
        }
        _ => bail!("this `site` command works only on the Fjord itself, not with --remote"),
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
        TaskCmd::Cancel { id } => {
            let t: Task = serde_json::from_value(remote.post(&format!("/api/tasks/{id}/cancel"), json!({})).await?)?;
            ctx.out.emit(&t, || println!("task {} {}", t.id, t.status));
            Ok(ExitCode::SUCCESS)
        }
        TaskCmd::Retry { id } => {
            queued(ctx, remote, remote.post(&format!("/api/tasks/{id}/retry"), json!({})).await?).await
        }
        TaskCmd::Noop { .. } => bail!("`task noop` works only on the Fjord itself, not with --remote"),
    }
}
