//! Remote mode for everything but sites and tasks: servers, platforms, clients, backups, users. Each
//! command is the API call the local command's action stands for, printed like the local one.

use super::backup::print_backups;
use super::objects::{print_runtimes, print_server, print_servers, server_create};
use super::remote::{encode, queued, Remote};
use super::Ctx;
use crate::cli::{BackupCmd, ClientCmd, PhpCmd, PlatformCmd, ServerCmd, UserCmd};
use crate::output::{fields, table};
use anyhow::{bail, Context as _, Result};
use fjord_core::{Backup, Client, Platform, Server};
use serde_json::{json, Value};
use std::process::ExitCode;

pub async fn server(ctx: &Ctx, remote: &Remote, cmd: ServerCmd) -> Result<ExitCode> {
    let at = |name: &str, verb: &str| format!("/api/servers/{}{verb}", encode(name));
    match cmd {
        ServerCmd::Add(add) => {
            let req = server_create(&add)?;
            let mut body = serde_json::to_value(&req)?;
            // Passwords are never serialized by default; here they travel in the body, over the API's
            // connection, to be kept in the remote Fjord's secrets store.
            for (i, db) in req.databases.iter().enumerate() {
                if let Some(pw) = &db.admin_password {
                    body["databases"][i]["admin_password"] = json!(pw);
                }
            }
            queued(ctx, remote, remote.post("/api/servers", body).await?).await
        }
        ServerCmd::List => {
            print_servers(ctx, &serde_json::from_value::<Vec<Server>>(remote.get("/api/servers").await?)?);
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Show { name } => {
            print_server(ctx, &serde_json::from_value(remote.get(&at(&name, "")).await?)?);
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Verify { name } => queued(ctx, remote, remote.post(&at(&name, "/verify"), json!({})).await?).await,
        ServerCmd::Stop { name } => queued(ctx, remote, remote.post(&at(&name, "/stop"), json!({})).await?).await,
        ServerCmd::Start { name } => queued(ctx, remote, remote.post(&at(&name, "/start"), json!({})).await?).await,
        ServerCmd::Remove { name } => queued(ctx, remote, remote.delete(&at(&name, "")).await?).await,
        ServerCmd::Web { name, kind } => {
            queued(ctx, remote, remote.post(&at(&name, "/web"), json!({ "web": kind })).await?).await
        }
        ServerCmd::RealIp(a) => {
            let body = json!({ "trust": a.trust, "cloudflare": a.cloudflare, "header": a.header, "off": a.off });
            queued(ctx, remote, remote.post(&at(&a.name, "/real-ip"), body).await?).await
        }
        ServerCmd::Php(PhpCmd::List { server }) => {
            print_runtimes(ctx, &serde_json::from_value(remote.get(&at(&server, "")).await?)?);
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Php(PhpCmd::Add { server, name, binary, cli }) => {
            let body = json!({ "name": name, "binary": binary, "cli": cli });
            queued(ctx, remote, remote.post(&at(&server, "/php"), body).await?).await
        }
        ServerCmd::Php(PhpCmd::Remove { server, name }) => {
            queued(ctx, remote, remote.delete(&at(&server, &format!("/php/{}", encode(&name)))).await?).await
        }
    }
}

pub async fn platform(ctx: &Ctx, remote: &Remote, cmd: PlatformCmd) -> Result<ExitCode> {
    let at = |name: &str, verb: &str| format!("/api/platforms/{}{verb}", encode(name));
    match cmd {
        PlatformCmd::Add(a) => {
            let body = json!({ "name": a.name, "server": a.server, "path": a.path, "git": a.git,
                               "git_ref": a.git_ref, "composer": a.composer, "archive": a.archive });
            queued(ctx, remote, remote.post("/api/platforms", body).await?).await
        }
        PlatformCmd::List => {
            let platforms: Vec<Platform> = serde_json::from_value(remote.get("/api/platforms").await?)?;
            ctx.out.emit(&platforms, || {
                let rows = platforms
                    .iter()
                    .map(|p| vec![p.name.to_string(), p.root.clone(), p.status.to_string()])
                    .collect::<Vec<_>>();
                table(&["name", "root", "status"], &rows);
            });
            Ok(ExitCode::SUCCESS)
        }
        PlatformCmd::Show { name } => {
            let v = remote.get(&at(&name, "")).await?;
            ctx.out.emit(&v, || {
                let s = |k: &str| v[k].as_str().map(str::to_string).unwrap_or_else(|| v[k].to_string());
                fields(&[("name", s("name")), ("root", s("root")), ("status", s("status")), ("sites", s("sites"))]);
            });
            Ok(ExitCode::SUCCESS)
        }
        PlatformCmd::Verify { name } => queued(ctx, remote, remote.post(&at(&name, "/verify"), json!({})).await?).await,
        PlatformCmd::Lock { name } => locked(ctx, remote.post(&at(&name, "/lock"), json!({})).await?),
        PlatformCmd::Unlock { name } => locked(ctx, remote.post(&at(&name, "/unlock"), json!({})).await?),
        PlatformCmd::Remove { name } => queued(ctx, remote, remote.delete(&at(&name, "")).await?).await,
        _ => bail!("with --remote, `platform` supports add, list, show, verify, lock, unlock and remove"),
    }
}

fn locked(ctx: &Ctx, v: Value) -> Result<ExitCode> {
    let p: Platform = serde_json::from_value(v).context("the server answered with something other than a platform")?;
    ctx.out.emit(&p, || println!("platform {} {}", p.name, if p.locked { "locked" } else { "unlocked" }));
    Ok(ExitCode::SUCCESS)
}

pub async fn client(ctx: &Ctx, remote: &Remote, cmd: ClientCmd) -> Result<ExitCode> {
    match cmd {
        ClientCmd::Add { name, title, quota } => {
            let body = json!({ "name": name, "title": title, "site_quota": quota });
            let c: Client = serde_json::from_value(remote.post("/api/clients", body).await?)?;
            ctx.out.emit(&c, || println!("client {} added", c.name));
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::List => {
            let clients: Vec<Client> = serde_json::from_value(remote.get("/api/clients").await?)?;
            ctx.out.emit(&clients, || {
                let quota = |q: Option<i64>| q.map(|q| q.to_string()).unwrap_or_else(|| "-".into());
                let rows = clients
                    .iter()
                    .map(|c| vec![c.name.to_string(), c.title.clone(), quota(c.site_quota)])
                    .collect::<Vec<_>>();
                table(&["name", "title", "quota"], &rows);
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn backup(ctx: &Ctx, remote: &Remote, cmd: BackupCmd) -> Result<ExitCode> {
    match cmd {
        BackupCmd::List { site } => {
            let mut path = "/api/backups?limit=500".to_string();
            if let Some(d) = &site {
                path.push_str(&format!("&site={}", encode(d)));
            }
            let page = remote.get(&path).await?;
            let backups: Vec<Backup> = serde_json::from_value(page["items"].clone()).context("a page of backups")?;
            print_backups(ctx, &backups, &[]);
            Ok(ExitCode::SUCCESS)
        }
        BackupCmd::Verify { id } => {
            let v = remote.post(&format!("/api/backups/{id}/verify"), json!({})).await?;
            let ok = v["ok"] == json!(true);
            ctx.out.emit(&v, || {
                if ok {
                    println!("backup {id}: checksum and {} entries OK", v["entries"].as_array().map_or(0, Vec::len));
                } else {
                    println!("backup {id} is damaged: {}", v["error"].as_str().unwrap_or("?"));
                }
            });
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        BackupCmd::Delete { id } => {
            remote.delete(&format!("/api/backups/{id}")).await?;
            ctx.out.emit(&json!({ "deleted": id }), || println!("backup {id} deleted"));
            Ok(ExitCode::SUCCESS)
        }
        BackupCmd::Schedule(_) => bail!("backup schedules are set on the Fjord itself, not with --remote"),
    }
}

pub async fn user(ctx: &Ctx, remote: &Remote, cmd: UserCmd) -> Result<ExitCode> {
    match cmd {
        UserCmd::List => {
            let users = remote.get("/api/users").await?;
            ctx.out.emit(&users, || {
                let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                let rows = users
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| vec![s(&u["name"]), s(&u["role"]), s(&u["clients"])])
                    .collect::<Vec<_>>();
                table(&["name", "role", "clients"], &rows);
            });
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::Delete { name } => {
            remote.delete(&format!("/api/users/{}", encode(&name))).await?;
            ctx.out.emit(&json!({ "deleted": name }), || println!("user {name} deleted"));
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("with --remote, `user` supports list and delete (add users and passwords in the web UI or locally)"),
    }
}
