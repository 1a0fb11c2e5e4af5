//! Servers, platforms and clients.

use super::{plan_now, print_plan, queue_task, task, Ctx};
use crate::cli::{ClientCmd, PhpCmd, PlatformAdd, PlatformCmd, ServerAdd, ServerCmd};
use crate::output::{fields, table, when};
use anyhow::{bail, Result};
use fjord_core::names::{validate_abs_path, validate_token};
use fjord_core::*;
use fjord_store::{NewPlatform, NewServer, Store};
use std::process::ExitCode;

fn parse_enum<T: std::str::FromStr<Err = String>>(field: &str, s: &str) -> Result<T> {
    s.parse().map_err(|e| anyhow::anyhow!("invalid {field}: {e}"))
}

/// The services a new server offers: what the flags say, completed on the local machine by what is
/// installed (nginx version, PHP-FPM runtimes).
async fn services(add: &ServerAdd, local: bool) -> Result<Vec<Service>> {
    let mut services = Vec::new();
    if add.http != "none" {
        let kind: HttpKind = parse_enum("--web", &add.http)?;
        let mode: WebMode = parse_enum("--http-mode", &add.http_mode)?;
        if kind == HttpKind::Apache && mode != WebMode::Own {
            bail!("--web apache runs only as Fjord's own master: use --http-mode own");
        }
        if let Some(l) = &add.listen {
            if l.parse::<std::net::IpAddr>().is_err() {
                bail!("invalid --listen {l:?}: give an IP address");
            }
        }
        services.push(Service::Http(HttpService {
            kind,
            mode,
            version: if local { web_version(kind).await } else { None },
            binary: None,
            listen: add.listen.clone(),
            port: add.http_port,
            https_port: add.https_port,
            real_ip: None,
        }));
    }
    for db in &add.dbs {
        let engine: DbEngine = parse_enum("--database", db)?;
        if services.iter().any(|s| matches!(s, Service::Db(d) if d.engine == engine)) {
            bail!("--database {db} is given twice");
        }
        let path =
            |field: &'static str, p: &Option<String>| p.as_deref().map(|p| validate_abs_path(field, p)).transpose();
        let service = match engine {
            DbEngine::Mariadb => DbService {
                engine,
                version: None,
                host: Some(add.mariadb.mariadb_host.clone()),
                port: Some(add.mariadb.mariadb_port),
                socket: path("--mariadb-socket", &add.mariadb.mariadb_socket)?,
                admin_user: Some(Name::parse("--mariadb-admin", &add.mariadb.mariadb_admin)?.to_string()),
                admin_password: add.mariadb.mariadb_password_file.is_some(),
            },
            DbEngine::Postgres => DbService {
                engine,
                version: None,
                host: Some(add.postgres.postgres_host.clone()),
                port: Some(add.postgres.postgres_port),
                socket: path("--postgres-socket", &add.postgres.postgres_socket)?,
                admin_user: Some(Name::parse("--postgres-admin", &add.postgres.postgres_admin)?.to_string()),
                admin_password: add.postgres.postgres_password_file.is_some(),
            },
            DbEngine::Sqlite => DbService {
                engine,
                version: None,
                host: None,
                port: None,
                socket: None,
                admin_user: None,
                admin_password: false,
            },
        };
        for host in [&service.host].into_iter().flatten() {
            if host.parse::<std::net::IpAddr>().is_err() && Domain::parse(host).is_err() {
                bail!("invalid database host {host:?}");
            }
        }
        services.push(Service::Db(service));
    }
    for php in &add.phps {
        let Some((version, binary)) = php.split_once('=') else {
            bail!("invalid --php {php:?}: expected VERSION=BINARY, e.g. 8.2=/usr/sbin/php-fpm8.2")
        };
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            bail!("invalid --php {php:?}: the version must look like 8.2");
        }
        if services.iter().any(|s| matches!(s, Service::Php(p) if p.version == version)) {
            bail!("--php {version} is given twice");
        }
        let binary = validate_abs_path("php binary", binary)?;
        let cli = format!("/usr/bin/php{version}");
        services.push(Service::Php(PhpRuntime {
            name: None,
            version: version.into(),
            binary,
            cli: std::path::Path::new(&cli).exists().then_some(cli),
            extensions: vec![],
        }));
    }
    if add.phps.is_empty() && local {
        for found in fjord_exec::probe::php_runtimes() {
            services.push(Service::Php(PhpRuntime {
                name: None,
                version: found.version,
                binary: found.fpm,
                cli: found.cli,
                extensions: vec![],
            }));
        }
    }
    Ok(services)
}

async fn web_version(kind: HttpKind) -> Option<String> {
    match kind {
        HttpKind::Nginx => fjord_exec::probe::nginx_version().await,
        HttpKind::Apache => fjord_exec::probe::apache_version().await,
    }
}

/// Copies admin password files into the secrets store, and proves each database answers.
async fn db_admin_setup(ctx: &Ctx, server: &Server, add: &ServerAdd) -> Result<Vec<String>> {
    let ex = ctx.executor()?;
    let mut report = Vec::new();
    for (engine, file) in [
        (DbEngine::Mariadb, &add.mariadb.mariadb_password_file),
        (DbEngine::Postgres, &add.postgres.postgres_password_file),
    ] {
        let Some(db) = server.db(engine) else { continue };
        if let Some(file) = file {
            let pw = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                bail!("{file} is empty");
            }
            ex.secrets.put(&fjord_plan::db::admin_password_key(server, engine), &fjord_exec::Secret::new(pw))?;
        }
        let cmd = fjord_plan::db::admin(server, db, "SELECT version();\n".into());
        match ex.run_command(&cmd, None, None).await {
            Ok(out) => report.push(format!("{engine} {}", out.stdout.lines().last().unwrap_or("").trim())),
            Err(e) => bail!("cannot reach {engine} as its admin account: {e}"),
        }
    }
    Ok(report)
}

fn prospective_server(new: &NewServer) -> Server {
    Server {
        id: ServerId(0),
        name: new.name.clone(),
        hostname: new.hostname.clone(),
        services: new.services.clone(),
        status: ObjectStatus::Queued,
        created_at: 0,
        updated_at: 0,
    }
}

pub async fn server(ctx: &mut Ctx, cmd: ServerCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        ServerCmd::Add(add) => {
            let hostname = if add.hostname == "localhost" {
                add.hostname.clone()
            } else {
                Domain::parse_field("hostname", &add.hostname)?.to_string()
            };
            let name = Name::parse("server name", &add.name)?;
            if store.server_by_name(name.as_str()).await.is_ok() {
                bail!("a server named {name:?} already exists");
            }
            let local = hostname == "localhost";
            let new = NewServer { name, hostname, services: services(&add, local).await? };
            let snap = Snapshot {
                server: prospective_server(&new),
                platform: None,
                site: None,
                sites: vec![],
                platforms: vec![],
                db_server: None,
                other_site: None,
                other_platform: None,
                other_db_server: None,
            };
            let planned = plan_now(ctx, TaskKind::ServerVerify, &serde_json::json!({}), &snap)?;
            if ctx.global.dry_run {
                return print_plan(ctx, TaskKind::ServerVerify, &planned);
            }
            // Prove the database admin accounts work before recording anything.
            let reachable = match db_admin_setup(ctx, &snap.server, &add).await {
                Ok(r) => r,
                Err(e) => {
                    let ex = ctx.executor()?;
                    for engine in [DbEngine::Mariadb, DbEngine::Postgres] {
                        let _ = ex.secrets.delete(&fjord_plan::db::admin_password_key(&snap.server, engine));
                    }
                    return Err(e);
                }
            };
            let (server, t) = store.add_server(&new, &ctx.actor()).await?;
            if !ctx.out.json {
                println!("server {} added: {}", server.name, describe_services(&server.services));
                for r in reachable {
                    println!("  reachable: {r}");
                }
            }
            task::queued(ctx, &t).await
        }
        ServerCmd::List => {
            let servers = store.servers().await?;
            ctx.out.emit(&servers, || {
                let rows = servers
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.to_string(),
                            s.hostname.clone(),
                            describe_services(&s.services),
                            s.status.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["name", "hostname", "services", "status"], &rows);
            });
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Show { name } => {
            let s = store.server_by_name(&name).await?;
            ctx.out.emit(&s, || {
                fields(&[
                    ("name", s.name.to_string()),
                    ("hostname", s.hostname.clone()),
                    ("services", describe_services(&s.services)),
                    ("status", s.status.to_string()),
                    ("created", when(Some(s.created_at))),
                ])
            });
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Verify { name } => {
            let s = store.server_by_name(&name).await?;
            queue_task(ctx, TaskKind::ServerVerify, s.id.0, serde_json::json!({})).await
        }
        ServerCmd::Web { name, kind } => {
            let s = store.server_by_name(&name).await?;
            let kind: HttpKind = parse_enum("web server", &kind)?;
            let Some(http) = s.http() else { bail!("server {name} has no web server") };
            if kind == HttpKind::Apache && http.mode != WebMode::Own {
                bail!("Apache runs only as Fjord's own master; server {name} uses the system nginx");
            }
            let previous = http.kind;
            let version = if s.hostname == "localhost" { web_version(kind).await } else { None };
            let mut services = s.services.clone();
            for svc in &mut services {
                if let Service::Http(h) = svc {
                    h.kind = kind;
                    h.binary = None;
                    h.version = version.clone();
                }
            }
            set_services_and_verify(ctx, &s, &services, serde_json::json!({ "previous_web": previous })).await
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
            let s = store.server_by_name(&server).await?;
            let runtimes: Vec<&PhpRuntime> = s.php_runtimes().collect();
            ctx.out.emit(&serde_json::json!(runtimes), || {
                table(
                    &["name", "version", "binary", "extensions"],
                    &runtimes
                        .iter()
                        .map(|r| vec![r.key().to_string(), r.version.clone(), r.binary.clone(), r.extensions.join(" ")])
                        .collect::<Vec<_>>(),
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        PhpCmd::Add { server, name, binary, cli } => {
            let s = store.server_by_name(&server).await?;
            let name = Name::parse("runtime name", &name)?.to_string();
            if name.len() > 24 {
                // It goes into socket paths, which Unix limits to 108 bytes.
                bail!("runtime name {name:?}: at most 24 characters");
            }
            if s.php_runtimes().any(|r| r.key() == name) {
                bail!("server {} already has a PHP runtime {name}", s.name);
            }
            let binary = validate_abs_path("php-fpm binary", &binary)?;
            let cli = cli.map(|c| validate_abs_path("php cli", &c)).transpose()?;
            let Some((version, extensions)) = fjord_exec::probe::php_fpm_info(&binary, cli.as_deref()).await else {
                bail!("{binary} is not a PHP-FPM binary this machine can run (`{binary} -v` failed)");
            };
            let cli = cli.or_else(|| {
                let default = format!("/usr/bin/php{version}");
                std::path::Path::new(&default).exists().then_some(default)
            });
            let mut services = s.services.clone();
            services.push(Service::Php(PhpRuntime { name: Some(name), version, binary, cli, extensions }));
            if ctx.global.dry_run {
                println!("dry run: would add the runtime and verify server {}; nothing was changed", s.name);
                return Ok(ExitCode::SUCCESS);
            }
            store.set_server_services(s.id, &services).await?;
            queue_task(ctx, TaskKind::ServerVerify, s.id.0, serde_json::json!({})).await
        }
        PhpCmd::Remove { server, name } => {
            let s = store.server_by_name(&server).await?;
            let Some(runtime) = s.php_runtimes().find(|r| r.key() == name) else {
                bail!("server {} has no PHP runtime {name}", s.name);
            };
            let default = s.php_runtimes().next().map(|r| r.key()) == Some(runtime.key());
            let sites = store.sites(None).await?;
            let platforms: Vec<PlatformId> =
                store.platforms().await?.into_iter().filter(|p| p.server_id == s.id).map(|p| p.id).collect();
            let users: Vec<String> = sites
                .iter()
                .filter(|site| platforms.contains(&site.platform_id) && site.status != SiteStatus::Deleted)
                .filter(|site| match &site.php {
                    Some(p) => p == runtime.key() || p == &runtime.version && !s.php_runtimes().any(|r| r.key() == p),
                    None => default,
                })
                .map(|site| site.domain.to_string())
                .collect();
            if !users.is_empty() {
                bail!(
                    "PHP runtime {name} still runs {}: move them first (fjord site php DOMAIN --runtime R)",
                    users.join(", ")
                );
            }
            let services: Vec<Service> =
                s.services.iter().filter(|svc| !matches!(svc, Service::Php(r) if r.key() == name)).cloned().collect();
            store.set_server_services(s.id, &services).await?;
            queue_task(ctx, TaskKind::ServerVerify, s.id.0, serde_json::json!({})).await
        }
    }
}

/// Records a server's new services and queues its verify (with `args`). The new record is planned
/// (and refused) like any other; a dry run or a refusal puts the old one back.
pub(super) async fn set_services_and_verify(
    ctx: &mut Ctx,
    s: &Server,
    services: &[Service],
    args: serde_json::Value,
) -> Result<ExitCode> {
    let store = ctx.store().await?;
    store.set_server_services(s.id, services).await?;
    let queued = super::enqueue_checked(ctx, TaskKind::ServerVerify, s.id.0, args).await;
    let store = ctx.store().await?;
    match queued {
        Ok(Some(t)) => task::queued(ctx, &t).await,
        Ok(None) => {
            store.set_server_services(s.id, &s.services).await?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            store.set_server_services(s.id, &s.services).await?;
            Err(e)
        }
    }
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
        PlatformCmd::Migrate { name, to, parallel, canary, no_wait } => {
            let req = fjord_web::actions::PlatformMigrate { to, parallel, canary: canary.unwrap_or(0), dry_run: false };
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
                    ("php needed", p.details.php_requirement.clone().unwrap_or_else(|| "-".into())),
                    (
                        "php runtimes ok",
                        match p.details.php_ok {
                            Some(true) => "yes".into(),
                            Some(false) => "NO: no runtime of the server satisfies it".into(),
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
    let name = Name::parse("platform name", &add.name)?;
    let server = pick_server(store, add.server.as_deref()).await?;
    let default_root = || format!("{}/platforms/{}", ctx.settings.state_str(), name);
    let (source, root) = match (&add.path, &add.git, &add.composer, &add.archive) {
        (Some(path), None, None, None) => (PlatformSource::Path, validate_abs_path("--path", path)?),
        (None, Some(url), None, None) => {
            let git_ref = add.git_ref.as_deref().unwrap_or("HEAD");
            (
                PlatformSource::Git {
                    url: validate_token("--git", url, 2048)?,
                    git_ref: validate_token("--ref", git_ref, 255)?,
                },
                default_root(),
            )
        }
        (None, None, Some(pkg), None) => {
            (PlatformSource::Composer { package: validate_token("--composer", pkg, 255)? }, default_root())
        }
        (None, None, None, Some(file)) => {
            (PlatformSource::Archive { file: validate_abs_path("--archive", file)? }, default_root())
        }
        (None, None, None, None) => {
            bail!("say where the code is: --path DIR, --git URL --ref REF, --composer PACKAGE or --archive FILE")
        }
        _ => bail!("give only one of --path, --git, --composer, --archive"),
    };
    let new = NewPlatform { name, server: server.id, root, source };
    if ctx.global.dry_run {
        let platform = Platform {
            id: PlatformId(0),
            name: new.name.clone(),
            server_id: server.id,
            root: new.root.clone(),
            docroot: None,
            source: new.source.clone(),
            app: None,
            app_version: None,
            locked: false,
            status: ObjectStatus::Queued,
            verified_at: None,
            created_at: 0,
            updated_at: 0,
            details: Default::default(),
        };
        let snap = Snapshot {
            server,
            platform: Some(platform),
            site: None,
            sites: vec![],
            platforms: vec![],
            db_server: None,
            other_site: None,
            other_platform: None,
            other_db_server: None,
        };
        let planned = plan_now(ctx, TaskKind::PlatformVerify, &serde_json::json!({}), &snap)?;
        return print_plan(ctx, TaskKind::PlatformVerify, &planned);
    }
    let (p, t) = store.add_platform(&new, &ctx.actor()).await?;
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
