//! Sites.

use super::{backup, print_plan, queue_task, task, Ctx};
use crate::cli::{SiteCmd, SiteCreate};
use crate::output::{fields, table, when};
use anyhow::{bail, Context as _, Result};
use fjord_actions::Actions;
use fjord_core::*;
use std::process::ExitCode;

fn parse_enum<T: std::str::FromStr<Err = String>>(field: &str, s: &str) -> Result<T> {
    s.parse().map_err(|e| anyhow::anyhow!("invalid {field}: {e}"))
}

pub async fn run(ctx: &mut Ctx, cmd: SiteCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        SiteCmd::Create(c) => create(ctx, *c).await,
        SiteCmd::List { status } => {
            let status = status.map(|s| parse_enum::<SiteStatus>("--status", &s)).transpose()?;
            let sites = store.sites(status).await?;
            let platforms = store.platforms().await?;
            ctx.out.emit(&sites, || {
                let rows = sites
                    .iter()
                    .map(|s| {
                        let p = platforms
                            .iter()
                            .find(|p| p.id == s.platform_id)
                            .map(|p| p.name.to_string())
                            .unwrap_or_default();
                        vec![s.domain.to_string(), p, s.db_engine.to_string(), s.status.to_string()]
                    })
                    .collect::<Vec<_>>();
                table(&["domain", "platform", "db", "status"], &rows);
            });
            Ok(ExitCode::SUCCESS)
        }
        SiteCmd::Show { domain } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            let platform = store.platform(site.platform_id).await?;
            let tasks = store
                .tasks(&fjord_store::TaskFilter {
                    target: Some((TargetKind::Site, site.id.0)),
                    limit: Some(5),
                    ..Default::default()
                })
                .await?;
            let v = serde_json::json!({ "site": site, "platform": platform.name, "recent_tasks": tasks });
            ctx.out.emit(&v, || {
                let aliases = site.aliases.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ");
                fields(&[
                    ("domain", site.domain.to_string()),
                    ("status", site.status.to_string()),
                    ("platform", platform.name.to_string()),
                    ("aliases", if aliases.is_empty() { "-".into() } else { aliases }),
                    ("redirect aliases", site.redirect_aliases.to_string()),
                    ("database", format!("{} {} (user {})", site.db_engine, site.db_name, site.db_user)),
                    ("php", site.php.clone().unwrap_or_else(|| "server default".into())),
                    ("https", https_line(&site)),
                    ("certificate", cert_line(&site)),
                    ("cron", site.cron_interval.map(|i| format!("every {i} s")).unwrap_or_else(|| "off".into())),
                    ("last cron", when(site.last_cron_at)),
                    ("health marker", site.health_marker.clone().unwrap_or_else(|| "-".into())),
                    (
                        "php limits",
                        format!(
                            "{} children, memory {}, uploads {}, {} s",
                            site.php_limits.max_children,
                            site.php_limits.memory_limit,
                            site.php_limits.upload_max,
                            site.php_limits.max_execution_time
                        ),
                    ),
                    ("created", when(Some(site.created_at))),
                ]);
                println!("\nrecent tasks:");
                task::print_tasks(&tasks);
                if site.status == SiteStatus::Failed {
                    // What a user can do with it, and which task to retry.
                    let failed = tasks.iter().find(|t| t.status == TaskStatus::Failed && t.kind.makes_site());
                    let retry = failed.map(|t| format!("`fjord task retry {}`, or ", t.id)).unwrap_or_default();
                    println!(
                        "\nthe site failed to install: retry with {retry}remove it with `fjord site delete {}`",
                        site.domain
                    );
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        SiteCmd::Verify { domain } => on_site(ctx, &domain, TaskKind::SiteVerify, serde_json::json!({})).await,
        SiteCmd::Enable { domain } => on_site(ctx, &domain, TaskKind::SiteEnable, serde_json::json!({})).await,
        SiteCmd::Disable { domain } => on_site(ctx, &domain, TaskKind::SiteDisable, serde_json::json!({})).await,
        SiteCmd::Alias { domain, add, remove, redirect, www } => {
            aliases(ctx, &domain, add, remove, redirect, www).await
        }
        SiteCmd::Https { domain, mode, hsts, self_signed } => https(ctx, &domain, &mode, hsts, self_signed).await,
        SiteCmd::Cert { domain, self_signed, cert, key, revoke_old } => {
            certificate(ctx, &domain, self_signed, cert.zip(key), revoke_old).await
        }
        SiteCmd::Import(i) => import(ctx, *i).await,
        SiteCmd::LoginLink { domain } => login_link(ctx, &domain).await,
        SiteCmd::Backup { domain, compression, logical, physical } => {
            let compression: Compression = parse_enum("--compression", &compression)?;
            let method = match (logical, physical) {
                (true, _) => BackupMethod::Logical,
                (_, true) => BackupMethod::Physical,
                _ => BackupMethod::Auto,
            };
            on_site(ctx, &domain, TaskKind::SiteBackup, fjord_actions::backup_args(compression, method)).await
        }
        SiteCmd::Restore { domain, backup: id, platform } => {
            let domain = Domain::parse(&domain)?;
            let site = match store.site_by_domain(&domain).await {
                Ok(site) => site,
                Err(fjord_store::StoreError::NotFound { .. }) => {
                    let b = store.backup(BackupId(id)).await?;
                    return restore_deleted(ctx, &b, domain, platform).await;
                }
                Err(e) => return Err(e.into()),
            };
            let layout = ctx.layout();
            let offsite = ctx.settings.offsite()?;
            let args = fjord_actions::Actions::new(&store, &layout)
                .restore_args_fetched(&site, BackupId(id), offsite.as_ref(), ctx.global.dry_run)
                .await?;
            queue_task(ctx, TaskKind::SiteRestore, site.id.0, args).await
        }
        SiteCmd::Cron { domain } => on_site(ctx, &domain, TaskKind::SiteCron, serde_json::json!({})).await,
        SiteCmd::Clone { source, domain, platform, aliases } => clone(ctx, &source, &domain, platform, aliases).await,
        SiteCmd::Migrate { domain, to, new_domain, drop_old_domain, db_server } => {
            migrate(ctx, &domain, &to, new_domain.as_deref(), !drop_old_domain, db_server.as_deref()).await
        }
        SiteCmd::Rename { domain, new_domain, drop_old_domain } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            let platform = store.platform(site.platform_id).await?;
            migrate(ctx, &domain, platform.name.as_str(), Some(&new_domain), !drop_old_domain, None).await
        }
        SiteCmd::Sync { from, to, db, files } => {
            let source = store.site_by_domain(&Domain::parse(&from)?).await?;
            let target = store.site_by_domain(&Domain::parse(&to)?).await?;
            let layout = ctx.layout();
            let req = fjord_actions::SyncRequest { from, db, files };
            let args = Actions::new(&store, &layout).sync_args(&source, &target, &req).await?;
            queue_task(ctx, TaskKind::SiteSync, target.id.0, args).await
        }
        SiteCmd::HealthMarker { domain, text } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            if ctx.global.dry_run {
                println!("dry run: would set the health marker of {} to {text:?}; nothing was changed", site.domain);
                return Ok(ExitCode::SUCCESS);
            }
            let layout = ctx.layout();
            Actions::new(&store, &layout).set_health_marker(&site, text.as_deref()).await?;
            ctx.out.emit(&serde_json::json!({ "domain": site.domain, "health_marker": text }), || {
                println!("health marker of {}: {}", site.domain, text.as_deref().unwrap_or("(none: status only)"))
            });
            Ok(ExitCode::SUCCESS)
        }
        SiteCmd::PhpLimits { domain, max_children, memory_limit, upload_max, max_execution_time } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            let req = fjord_actions::PhpLimitsChange { max_children, memory_limit, upload_max, max_execution_time };
            let layout = ctx.layout();
            let outcome =
                Actions::new(&store, &layout).set_php_limits(&site, &req, ctx.global.dry_run, &ctx.actor()).await?;
            verify_queued(ctx, outcome).await
        }
        SiteCmd::Php { domain, runtime } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            let layout = ctx.layout();
            let outcome = Actions::new(&store, &layout)
                .set_php_runtime(&site, &runtime, ctx.global.dry_run, &ctx.actor())
                .await?;
            verify_queued(ctx, outcome).await
        }
        SiteCmd::Exec { domain, command } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            let platform = store.platform(site.platform_id).await?;
            let server = store.server(platform.server_id).await?;
            let mut exec = fjord_plan::exec_context(&ctx.layout(), &server, &platform, &site)?;
            if let Ok(term) = std::env::var("TERM") {
                exec.env.push(("TERM".into(), term));
            }
            let code = fjord_exec::users::exec_as(&exec.user, &command, &exec.env, &exec.cwd).await?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        SiteCmd::Aliases { domain } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            let platform = store.platform(site.platform_id).await?;
            let app = fjord_plan::apps::App::of(&platform);
            let docroot = ctx.layout().docroot(&platform);
            let Some((alias, file)) = app.drush_alias_at(&platform.root, &docroot, site.domain.as_str()) else {
                bail!("site {} is not a Drupal site: drush aliases are for Drupal", site.domain);
            };
            if !ctx.global.json {
                println!("drush alias @{alias}: {file} (written by the verify queued now)");
            }
            queue_task(ctx, TaskKind::SiteVerify, site.id.0, serde_json::json!({})).await
        }
        SiteCmd::Isolation { domain, mode } => {
            let site = store.site_by_domain(&Domain::parse(&domain)?).await?;
            let mode = fjord_actions::parse_isolation(&mode.to_string())?;
            let layout = ctx.layout();
            let outcome =
                Actions::new(&store, &layout).set_isolation(&site, mode, ctx.global.dry_run, &ctx.actor()).await?;
            verify_queued(ctx, outcome).await
        }
        SiteCmd::Delete { domain, force, no_backup } => {
            let stamp = (!no_backup).then(|| backup::stamp(fjord_store::now_millis()));
            let args = serde_json::json!({ "force": force, "backup_stamp": stamp });
            on_site(ctx, &domain, TaskKind::SiteDelete, args).await
        }
    }
}

/// Prints what an action that ends in a verify did: the queued task, or for a dry run its plan.
async fn verify_queued(ctx: &mut Ctx, outcome: fjord_actions::Outcome) -> Result<ExitCode> {
    super::outcome(ctx, TaskKind::SiteVerify, outcome).await
}

async fn on_site(ctx: &mut Ctx, domain: &str, kind: TaskKind, args: serde_json::Value) -> Result<ExitCode> {
    let site = ctx.store().await?.site_by_domain(&Domain::parse(domain)?).await?;
    queue_task(ctx, kind, site.id.0, args).await
}

async fn create(ctx: &mut Ctx, c: SiteCreate) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    // The same validation and plan as the API's create (fjord-web's actions layer).
    let req = fjord_actions::SiteCreate {
        domain: c.domain,
        platform: c.platform,
        aliases: c.aliases,
        www: c.www,
        db_engine: c.db_engine,
        db_server: c.db_server,
        php: c.php,
        profile: c.profile,
        language: c.language,
        client: c.client,
        redirect_aliases: c.redirect_aliases,
        https: c.https,
        cron_interval: c.cron_interval,
    };
    let actions = fjord_actions::Actions::new(&store, &layout);
    if ctx.global.dry_run {
        let (_, planned) = actions.prepare_site(&req).await?;
        return print_plan(ctx, TaskKind::SiteInstall, &planned);
    }
    let (site, t) = actions.create_site(&req, &ctx.actor()).await?;
    if !ctx.out.json {
        println!("site {} created", site.domain);
    }
    task::queued(ctx, &t).await
}

/// Queues a login-link task, waits for it, and prints the link (the last line of its output).
async fn login_link(ctx: &mut Ctx, domain: &str) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let site = store.site_by_domain(&Domain::parse(domain)?).await?;
    let Some(task) = super::enqueue_checked(ctx, TaskKind::SiteLoginLink, site.id.0, serde_json::json!({})).await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let quiet = Ctx {
        settings: ctx.settings.clone(),
        global: ctx.global.clone(),
        out: crate::output::Out { json: true },
        store: None,
    };
    let end = task::follow(&quiet, &store, task.id).await?;
    if end.status != TaskStatus::Succeeded {
        anyhow::bail!("login link task {} {}: {}", end.id, end.status, end.error.unwrap_or_default());
    }
    let url = store
        .task_report(task.id)
        .await?
        .login_link
        .ok_or_else(|| anyhow::anyhow!("the login link task printed no URL (see `fjord task log {}`)", task.id))?;
    ctx.out.emit(&serde_json::json!({ "url": url, "task": task.id }), || println!("{url}"));
    Ok(ExitCode::SUCCESS)
}

async fn aliases(
    ctx: &mut Ctx,
    domain: &str,
    add: Vec<String>,
    remove: Vec<String>,
    redirect: Option<String>,
    www: bool,
) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let site = store.site_by_domain(&Domain::parse(domain)?).await?;
    let aliases = fjord_actions::changed_aliases(&site, &add, &remove, www)?;
    let redirect = match redirect.as_deref() {
        None => site.redirect_aliases,
        Some("on") => true,
        Some("off") => false,
        Some(other) => bail!("invalid --redirect {other:?}: use on or off"),
    };
    let layout = ctx.layout();
    let done =
        Actions::new(&store, &layout).set_aliases(&site, &aliases, redirect, &ctx.actor(), ctx.global.dry_run).await?;
    super::outcome(ctx, TaskKind::SiteVerify, done).await
}

/// Adopts an existing site: records it with its existing database, and queues the import, which
/// takes over its settings, pool and vhost (and never drops the database, even when it fails).
async fn import(ctx: &mut Ctx, i: crate::cli::SiteImport) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let password = std::fs::read_to_string(&i.db_password_file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", i.db_password_file))?;
    let req = fjord_actions::SiteImport {
        domain: i.domain,
        platform: i.platform,
        db_engine: i.db_engine,
        db_name: i.db_name,
        db_user: i.db_user,
        db_password: password,
        aliases: i.aliases,
        php: i.php,
        client: i.client,
    };
    let layout = ctx.layout();
    let (site, done) = Actions::new(&store, &layout)
        .import_site(&req, &ctx.actor(), ctx.global.dry_run)
        .await
        .map_err(|e| match e.field() {
            Some("db_password") => anyhow::anyhow!("{}: {e}", i.db_password_file),
            _ => e.into(),
        })?;
    if let (Some(site), false) = (&site, ctx.out.json) {
        println!("site {} recorded for import", site.domain);
    }
    super::outcome(ctx, TaskKind::SiteImport, done).await
}

/// Records the new site (checked like a create: free domain, quota, platform) and queues its clone.
async fn clone(
    ctx: &mut Ctx,
    source: &str,
    domain: &str,
    platform: Option<String>,
    aliases: Vec<String>,
) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    let src = store.site_by_domain(&Domain::parse(source)?).await?;
    // The same checks and plan as the API's clone.
    let actions = fjord_actions::Actions::new(&store, &layout);
    if ctx.global.dry_run {
        let (_, _, planned) = actions.prepare_clone(&src, domain, platform.as_deref(), &aliases).await?;
        return print_plan(ctx, TaskKind::SiteClone, &planned);
    }
    let (site, t) = actions.clone_site(&src, domain, platform.as_deref(), &aliases, &ctx.actor()).await?;
    if !ctx.out.json {
        println!("site {} created as a clone of {source}", site.domain);
    }
    task::queued(ctx, &t).await
}

/// Brings a deleted site back from one of its backups: a new site record like the old one (under
/// `domain`, on its old platform or `platform`), then a restore task that builds it from the archive.
async fn restore_deleted(ctx: &mut Ctx, b: &Backup, domain: Domain, platform: Option<String>) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    let actions = fjord_actions::Actions::new(&store, &layout);
    let (domain, platform) = (Some(domain.as_str()), platform.as_deref());
    if ctx.global.dry_run {
        let (_, _, planned) = actions.prepare_restore_deleted(b, domain, platform).await?;
        return print_plan(ctx, TaskKind::SiteRestore, &planned);
    }
    let offsite = ctx.settings.offsite()?;
    let (site, t) = actions.restore_deleted_site(b, domain, platform, offsite.as_ref(), &ctx.actor()).await?;
    if !ctx.out.json {
        println!("site {} recorded; restoring it from backup {}", site.domain, b.id);
    }
    task::queued(ctx, &t).await
}

/// Queues a migrate (or, to the same platform with a new domain, a rename).
async fn migrate(
    ctx: &mut Ctx,
    domain: &str,
    to: &str,
    new_domain: Option<&str>,
    keep_old: bool,
    db_server: Option<&str>,
) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    let site = store.site_by_domain(&Domain::parse(domain)?).await?;
    let args =
        fjord_actions::Actions::new(&store, &layout).migrate_args(&site, to, new_domain, keep_old, db_server).await?;
    queue_task(ctx, TaskKind::SiteMigrate, site.id.0, args).await
}

fn https_line(site: &Site) -> String {
    let mut s = site.https.to_string();
    if site.https != HttpsMode::Off && site.tls.hsts {
        s.push_str(" (HSTS)");
    }
    s
}

/// The certificate on `site show`: what it covers, until when, and the last failure.
fn cert_line(site: &Site) -> String {
    let t = &site.tls;
    let mut parts = Vec::new();
    if t.installed() {
        parts.push(format!("{} for {}, until {}", t.source, t.names.join(", "), when(t.not_after)));
    } else {
        parts.push("none".into());
    }
    if !t.failed.is_empty() {
        parts.push(format!("left out: {}", t.failed.join(", ")));
    }
    if let Some(e) = &t.error {
        parts.push(format!("last attempt failed ({} in a row): {e}; next try {}", t.failures, when(t.retry_at)));
    }
    parts.join("; ")
}

/// `site https`: records the mode (and HSTS, and whether the certificate is self-signed), then queues
/// the certificate task (or, for off, a verify that drops the HTTPS server from the vhost).
async fn https(ctx: &mut Ctx, domain: &str, mode: &str, hsts: Option<String>, self_signed: bool) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let site = store.site_by_domain(&Domain::parse(domain)?).await?;
    let hsts = match hsts.as_deref() {
        None => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(other) => bail!("invalid --hsts {other:?}: use on or off"),
    };
    let req = fjord_actions::HttpsChange { mode: mode.to_string(), hsts, self_signed };
    let acme = if self_signed { None } else { Some(ctx.settings.acme_request(false)?) };
    let layout = ctx.layout();
    let outcome =
        Actions::new(&store, &layout).set_https(&site, &req, acme.as_ref(), ctx.global.dry_run, &ctx.actor()).await?;
    let kind = if req.mode == "off" { TaskKind::SiteVerify } else { TaskKind::SiteCert };
    super::outcome(ctx, kind, outcome).await
}

/// `site cert`: a new certificate now (ACME by default; self-signed; or an uploaded one, checked here
/// first and again when installed).
async fn certificate(
    ctx: &mut Ctx,
    domain: &str,
    self_signed: bool,
    upload: Option<(std::path::PathBuf, std::path::PathBuf)>,
    revoke_old: bool,
) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let site = store.site_by_domain(&Domain::parse(domain)?).await?;
    let mut req = fjord_actions::CertChange { self_signed, revoke_old, ..Default::default() };
    let mut from = String::new();
    if let Some((cert, key)) = upload {
        req.cert_pem = Some(std::fs::read_to_string(&cert).with_context(|| format!("reading {}", cert.display()))?);
        req.key_pem = Some(std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?);
        from = format!("{}: ", cert.display());
    }
    let acme = Some(ctx.settings.acme_request(revoke_old)?);
    let layout = ctx.layout();
    let (outcome, left_out) = Actions::new(&store, &layout)
        .new_certificate(&site, &req, acme.as_ref(), ctx.global.dry_run, &ctx.actor())
        .await
        .map_err(|e| anyhow::anyhow!("{from}{e}"))?;
    if !left_out.is_empty() {
        eprintln!("warning: the certificate does not cover {}", left_out.join(", "));
    }
    super::outcome(ctx, TaskKind::SiteCert, outcome).await
}
