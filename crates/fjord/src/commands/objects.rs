//! Servers, platforms and clients.

use super::{print_plan, queue_task, task, Ctx};
use crate::cli::{ClientCmd, PhpCmd, PlatformAdd, PlatformCmd, ServerAdd, ServerCmd};
use crate::output::{fields, table, when};
use anyhow::{bail, Result};
use fjord_actions::{Actions, DbServiceCreate, PhpCreate, PhpRuntimeAdd, ServerCreate, WebSwitch};
use fjord_core::*;
use fjord_store::Store;
use std::process::ExitCode;

/// `fjord server add`'s flags as the actions layer's request (passwords read from their files).
pub(super) fn server_create(add: &ServerAdd) -> Result<ServerCreate> {
    let password = |file: &Option<String>| -> Result<Option<String>> {
        let Some(file) = file else { return Ok(None) };
        let pw = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?;
        let pw = pw.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            bail!("{file} is empty");
        }
        Ok(Some(pw))
    };
    let mut databases = Vec::new();
    for engine in &add.dbs {
        let (host, port, socket, admin, pw) = match engine.as_str() {
            "mariadb" => {
                let m = &add.mariadb;
                (
                    Some(m.mariadb_host.clone()),
                    Some(m.mariadb_port),
                    m.mariadb_socket.clone(),
                    Some(m.mariadb_admin.clone()),
                    password(&m.mariadb_password_file)?,
                )
            }
            "postgres" => {
                let p = &add.postgres;
                (
                    Some(p.postgres_host.clone()),
                    Some(p.postgres_port),
                    p.postgres_socket.clone(),
                    Some(p.postgres_admin.clone()),
                    password(&p.postgres_password_file)?,
                )
            }
            _ => (None, None, None, None, None),
        };
        databases.push(DbServiceCreate {
            engine: engine.clone(),
            host,
            port,
            socket,
            admin_user: admin,
            admin_password: pw,
        });
    }
    let mut php = Vec::new();
    for p in &add.phps {
        let Some((version, binary)) = p.split_once('=') else {
            bail!("invalid --php {p:?}: expected VERSION=BINARY, e.g. 8.2=/usr/sbin/php-fpm8.2")
        };
        php.push(PhpCreate { version: version.into(), binary: binary.into() });
    }
    Ok(ServerCreate {
        name: add.name.clone(),
        hostname: add.hostname.clone(),
        web: add.http.clone(),
        web_mode: add.http_mode.clone(),
        http_port: add.http_port,
        https_port: add.https_port,
        listen: add.listen.clone(),
        databases,
        php,
    })
}

pub async fn server(ctx: &mut Ctx, cmd: ServerCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        ServerCmd::Add(add) => {
            let req = server_create(&add)?;
            let layout = ctx.layout();
            let actions = Actions::new(&store, &layout);
            if ctx.global.dry_run {
                let (_, planned) = actions.prepare_server(&req).await?;
                return print_plan(ctx, TaskKind::ServerVerify, &planned);
            }
            let (server, t, reachable) = actions.add_server(&req, &ctx.actor()).await?;
            if !ctx.out.json {
                println!("server {} added: {}", server.name, describe_services(&server.services));
                for r in reachable {
                    println!("  reachable: {r}");
                }
            }
            task::queued(ctx, &t).await
        }
        ServerCmd::List => {
            print_servers(ctx, &store.servers().await?);
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Show { name } => {
            print_server(ctx, &store.server_by_name(&name).await?);
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Verify { name } => {
            let s = store.server_by_name(&name).await?;
            queue_task(ctx, TaskKind::ServerVerify, s.id.0, serde_json::json!({})).await
        }
        ServerCmd::Stop { name } => {
            let s = store.server_by_name(&name).await?;
            queue_task(ctx, TaskKind::ServerStop, s.id.0, serde_json::json!({})).await
        }
        ServerCmd::Start { name } => {
            let s = store.server_by_name(&name).await?;
            queue_task(ctx, TaskKind::ServerStart, s.id.0, serde_json::json!({})).await
        }
        ServerCmd::Web { name, kind } => {
            let s = store.server_by_name(&name).await?;
            let layout = ctx.layout();
            let (services, args) = Actions::new(&store, &layout).web_switch(&s, &WebSwitch { web: kind }).await?;
            set_services_and_verify(ctx, &s, &services, args).await
        }
        ServerCmd::RealIp(args) => super::proxies::real_ip(ctx, args).await,
        ServerCmd::Remove { name } => {
            let s = store.server_by_name(&name).await?;
            queue_task(ctx, TaskKind::ServerRemove, s.id.0, serde_json::json!({})).await
        }
        ServerCmd::Php(cmd) => php(ctx, cmd).await,
    }
}

async fn php(ctx: &mut Ctx, cmd: PhpCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        PhpCmd::List { server } => {
            print_runtimes(ctx, &store.server_by_name(&server).await?);
            Ok(ExitCode::SUCCESS)
        }
        PhpCmd::Add { server, name, binary, cli } => {
            let s = store.server_by_name(&server).await?;
            let layout = ctx.layout();
            let services =
                Actions::new(&store, &layout).php_runtime_added(&s, &PhpRuntimeAdd { name, binary, cli }).await?;
            set_services_and_verify(ctx, &s, &services, serde_json::json!({})).await
        }
        PhpCmd::Remove { server, name } => {
            let s = store.server_by_name(&server).await?;
            let layout = ctx.layout();
            let services = Actions::new(&store, &layout).php_runtime_removed(&s, &name).await?;
            set_services_and_verify(ctx, &s, &services, serde_json::json!({})).await
        }
    }
}

/// Records a server's new services and queues its verify (with `args`). The new record is planned
/// (and refused) like any other first; a dry run or a refusal writes nothing.
pub(super) async fn set_services_and_verify(
    ctx: &mut Ctx,
    s: &Server,
    services: &[Service],
    args: serde_json::Value,
) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    let actions = Actions::new(&store, &layout);
    let done = actions.set_services_and_verify(s, services, args, &ctx.actor(), ctx.global.dry_run).await?;
    super::outcome(ctx, TaskKind::ServerVerify, done).await
}

/// `server list`, locally or through the API.
pub(super) fn print_servers(ctx: &Ctx, servers: &[Server]) {
    ctx.out.emit(&servers, || {
        let rows = servers
            .iter()
            .map(|s| vec![s.name.to_string(), s.hostname.clone(), describe_services(&s.services), s.status.to_string()])
            .collect::<Vec<_>>();
        table(&["name", "hostname", "services", "status"], &rows);
    });
}

/// `server show`, locally or through the API.
pub(super) fn print_server(ctx: &Ctx, s: &Server) {
    ctx.out.emit(s, || {
        fields(&[
            ("name", s.name.to_string()),
            ("hostname", s.hostname.clone()),
            ("services", describe_services(&s.services)),
            ("status", s.status.to_string()),
            ("created", when(Some(s.created_at))),
        ])
    });
}

/// `server php list`, locally or through the API.
pub(super) fn print_runtimes(ctx: &Ctx, s: &Server) {
    let runtimes: Vec<&PhpRuntime> = s.php_runtimes().collect();
    ctx.out.emit(&serde_json::json!(runtimes), || {
        let rows = runtimes
            .iter()
            .map(|r| vec![r.key().to_string(), r.version.clone(), r.binary.clone(), r.extensions.join(" ")])
            .collect::<Vec<_>>();
        table(&["name", "version", "binary", "extensions"], &rows)
    });
}

fn describe_services(services: &[Service]) -> String {
    services
        .iter()
        .map(|s| match s {
            Service::Http(h) => format!(
                "{}{}:{} ({})",
                h.kind,
                h.version.as_deref().map(|v| format!("/{v}")).unwrap_or_default(),
                h.port,
                h.mode
            ),
            Service::Db(d) => d.engine.to_string(),
            Service::Php(p) => format!("php{}", p.version),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The server a platform goes on: the one named, or the only one there is.
async fn pick_server(store: &Store, name: Option<&str>) -> Result<Server> {
    if let Some(n) = name {
        return Ok(store.server_by_name(n).await?);
    }
    let mut servers = store.servers().await?;
    match servers.len() {
        1 => Ok(servers.remove(0)),
        0 => bail!("no server yet: add one with `fjord server add localhost`"),
        _ => bail!("several servers exist: say which with --server"),
    }
}

pub async fn platform(ctx: &mut Ctx, cmd: PlatformCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        PlatformCmd::Add(add) => platform_add(ctx, &store, add).await,
        PlatformCmd::Migrate { name, to, parallel, canary, maintenance, no_wait } => {
            let req = fjord_actions::PlatformMigrate {
                to,
                parallel,
                canary: canary.unwrap_or(0),
                maintenance,
                dry_run: false,
            };
            super::migrate::platform_migrate(ctx, &name, req, no_wait).await
        }
        PlatformCmd::List => {
            let platforms = store.platforms().await?;
            let servers = store.servers().await?;
            ctx.out.emit(&platforms, || {
                let rows = platforms
                    .iter()
                    .map(|p| {
                        let server = servers
                            .iter()
                            .find(|s| s.id == p.server_id)
                            .map(|s| s.name.to_string())
                            .unwrap_or_default();
                        let app = match (&p.app, &p.app_version) {
                            (Some(a), Some(v)) => format!("{a} {v}"),
                            (Some(a), None) => a.to_string(),
                            _ => "-".into(),
                        };
                        vec![
                            p.name.to_string(),
                            server,
                            p.root.clone(),
                            app,
                            if p.locked { "locked".into() } else { p.status.to_string() },
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["name", "server", "root", "app", "status"], &rows);
            });
            Ok(ExitCode::SUCCESS)
        }
        PlatformCmd::Show { name } => {
            let p = store.platform_by_name(&name).await?;
            let sites = store.sites_on_platform(p.id).await?;
            let v = serde_json::json!({ "platform": p, "sites": sites.iter().map(|s| s.domain.as_str()).collect::<Vec<_>>() });
            ctx.out.emit(&v, || {
                fields(&[
                    ("name", p.name.to_string()),
                    ("root", p.root.clone()),
                    (
                        "docroot",
                        p.docroot
                            .clone()
                            .map(|d| if d.is_empty() { "(root)".into() } else { d })
                            .unwrap_or_else(|| "- (not verified)".into()),
                    ),
                    ("source", p.source.describe()),
                    ("app", p.app.map(|a| a.to_string()).unwrap_or_else(|| "-".into())),
                    ("version", p.app_version.clone().unwrap_or_else(|| "-".into())),
                    ("locked", p.locked.to_string()),
                    ("status", p.status.to_string()),
                    ("verified", when(p.verified_at)),
                    (
                        "profiles",
                        if p.details.profiles.is_empty() { "-".into() } else { p.details.profiles.join(", ") },
                    ),
                    ("drush", p.details.drush.clone().unwrap_or_else(|| "-".into())),
                    (
                        "php needed",
                        if p.details.php_requirements.is_empty() {
                            p.details.php_requirement.clone().unwrap_or_else(|| "-".into())
                        } else {
                            p.details
                                .php_requirements
                                .iter()
                                .map(|r| format!("{} ({})", r.constraint, r.source))
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    ),
                    (
                        "extensions needed",
                        if p.details.php_extensions.is_empty() {
                            "-".into()
                        } else {
                            p.details.php_extensions.join(", ")
                        },
                    ),
                    (
                        "php runtimes ok",
                        match p.details.php_ok {
                            Some(true) => p.details.php_runtimes.join(", "),
                            Some(false) => "NONE: no runtime of the server satisfies it (fjord server php add)".into(),
                            None => "-".into(),
                        },
                    ),
                    (
                        "unknown sites",
                        if p.details.unknown_sites.is_empty() {
                            "-".into()
                        } else {
                            format!("{} (adopt with `fjord site import`)", p.details.unknown_sites.join(", "))
                        },
                    ),
                    ("sites", sites.len().to_string()),
                ])
            });
            Ok(ExitCode::SUCCESS)
        }
        PlatformCmd::Verify { name } => {
            let p = store.platform_by_name(&name).await?;
            queue_task(ctx, TaskKind::PlatformVerify, p.id.0, serde_json::json!({})).await
        }
        PlatformCmd::Lock { name } | PlatformCmd::Unlock { name } if ctx.global.dry_run => {
            let p = store.platform_by_name(&name).await?;
            println!(
                "dry run: would change the lock of platform {} (now {}); no host changes",
                p.name,
                if p.locked { "locked" } else { "unlocked" }
            );
            Ok(ExitCode::SUCCESS)
        }
        PlatformCmd::Lock { name } => set_lock(ctx, &store, &name, true).await,
        PlatformCmd::Unlock { name } => set_lock(ctx, &store, &name, false).await,
        PlatformCmd::Remove { name } => {
            let p = store.platform_by_name(&name).await?;
            queue_task(ctx, TaskKind::PlatformRemove, p.id.0, serde_json::json!({})).await
        }
    }
}

async fn set_lock(ctx: &Ctx, store: &Store, name: &str, locked: bool) -> Result<ExitCode> {
    let p = store.platform_by_name(name).await?;
    store.set_platform_locked(p.id, locked).await?;
    let p = store.platform(p.id).await?;
    ctx.out.emit(&p, || {
        println!("platform {} {}", p.name, if locked { "locked: it takes no new sites" } else { "unlocked" })
    });
    Ok(ExitCode::SUCCESS)
}

async fn platform_add(ctx: &mut Ctx, store: &Store, add: PlatformAdd) -> Result<ExitCode> {
    // Which server, with the CLI's own words when it is not said and not obvious.
    let server = pick_server(store, add.server.as_deref()).await?;
    let req = fjord_actions::PlatformCreate {
        name: add.name,
        server: Some(server.name.to_string()),
        path: add.path,
        git: add.git,
        git_ref: add.git_ref,
        composer: add.composer,
        archive: add.archive,
    };
    let layout = ctx.layout();
    let actions = Actions::new(store, &layout);
    if ctx.global.dry_run {
        let (_, planned) = actions.prepare_platform(&req).await?;
        return print_plan(ctx, TaskKind::PlatformVerify, &planned);
    }
    let (p, t) = actions.add_platform(&req, &ctx.actor()).await?;
    if !ctx.out.json {
        println!("platform {} added ({})", p.name, p.root);
    }
    task::queued(ctx, &t).await
}

pub async fn client(ctx: &mut Ctx, cmd: ClientCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        ClientCmd::Add { name, title, quota } => {
            let name = Name::parse_client(&name)?;
            if quota.is_some_and(|q| q < 0) {
                bail!("--quota must not be negative");
            }
            let title = title.unwrap_or_else(|| name.to_string());
            if title.chars().any(char::is_control) || title.len() > 255 {
                bail!("--title must be printable and at most 255 bytes");
            }
            if ctx.global.dry_run {
                println!("dry run: would add client {name}; no host changes");
                return Ok(ExitCode::SUCCESS);
            }
            let c = store.add_client(&name, &title, quota).await?;
            ctx.out.emit(&c, || println!("client {} added", c.name));
            Ok(ExitCode::SUCCESS)
        }
        ClientCmd::List => {
            let clients = store.clients().await?;
            ctx.out.emit(&clients, || {
                let rows = clients
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.to_string(),
                            c.title.clone(),
                            c.site_quota.map(|q| q.to_string()).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["name", "title", "quota"], &rows);
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}
