//! Moving a site's content: clone (a new site from an existing one), migrate (a site onto another
//! platform, or to a new domain: rename), sync (one site's content into another) and the read-only
//! migrate check.
//!
//! They share one shape: everything new is built *beside* the live site (a new database, copies of
//! its directories), the switch happens in one reload, a health check through the web server decides,
//! and only then is the old data dropped. Every step before the drop has an undo, so a failure — or a
//! `kill -9` of the daemon — brings the site back exactly as it was, still served.

use crate::apps::{App, SiteCtx};
use crate::render::Serving;
use crate::{
    ctx_for, db, db_server, http_check, pool_file, render, services, serving, site_backup, site_ctx, site_files,
    site_files_before_switch, vhost_file, BackupArgs, Facts, Layout, PlanError, PlanResult, SiteFiles,
};
use fjord_core::*;
use serde::{Deserialize, Serialize};

/// Arguments of a site clone (the task's target is the new site's record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneArgs {
    /// The site copied from.
    pub source_site: i64,
}

/// Arguments of a site migrate (and of a rename: a migrate to the same platform with a new domain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateArgs {
    pub to_platform: i64,
    /// The site's new main domain, if it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
    /// Keep the old domain as an alias after a rename (old links keep working).
    #[serde(default)]
    pub keep_old_domain: bool,
    /// Move the database to this server too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_server: Option<i64>,
    /// Take the maintenance-window path (a copy of the database, updated while the site shows its
    /// maintenance page) even when a live switch is possible.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
    pub stamp: String,
}

/// Arguments of a site sync: copy the database and/or files of `source_site` into the task's site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    pub source_site: i64,
    #[serde(default)]
    pub db: bool,
    #[serde(default)]
    pub files: bool,
    pub stamp: String,
}

/// Arguments of a migrate check: could the site move to `to_platform`?
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateCheckArgs {
    pub to_platform: i64,
}

/// The point of no return: once the new state is in place and its health check passed, the steps
/// after this mark (dropping the old database, removing old directories) are finished even after a
/// crash, never rolled back — a rollback could need what they dropped.
pub fn commit() -> Step {
    Step::Mark { name: Mark::Commit }
}

fn check_stamp(stamp: &str) -> PlanResult<()> {
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(PlanError::Args(format!("bad stamp {stamp:?}")));
    }
    Ok(())
}

/// The name of a database that replaces `site`'s: its base name (without an earlier replacement's
/// suffix, so names don't grow) + `_` + `tag` + the time part of `stamp`.
pub fn new_db_name(site: &Site, tag: char, stamp: &str) -> String {
    let digits: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
    let tail = &digits[digits.len().saturating_sub(9)..];
    let base = match site.db_name.rsplit_once('_') {
        Some((base, suffix))
            if suffix.len() >= 2
                && suffix.as_bytes()[0].is_ascii_lowercase()
                && suffix[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => site.db_name.as_str(),
    };
    let name = format!("{base}_{tag}{tail}");
    // Never the live database's own name (the same time of day on another day).
    if name == site.db_name {
        format!("{base}_{}{tail}", if tag == 'z' { 'y' } else { 'z' })
    } else {
        name
    }
}

/// Creates a new database for `site` (its user gets a grant on it); undoing it drops that database
/// only, since the user may be the live site's too.
pub fn create_new_database(server: Option<&Server>, site: &Site) -> PlanResult<Vec<Step>> {
    let Some(Step::Run { label, cmd, .. }) = db::ensure_site_db(server, site, false)? else {
        return Ok(vec![]);
    };
    let undo = match db::drop_database(server, site)? {
        Some(Step::Run { cmd, .. }) => Some(cmd),
        _ => None,
    };
    let mut steps: Vec<Step> = db::ensure_absent(server, site, false)?.into_iter().collect();
    steps.push(Step::Run { label, cmd, undo });
    Ok(steps)
}

/// Loads the database of a backup unpacked in `staging` into `ctx`'s (new, empty) database: its dump,
/// or its structure and tablespace files (an archive made physically; MariaDB on this host only).
pub(crate) fn load_database(server: Option<&Server>, ctx: &SiteCtx, staging: &str, what: &str) -> PlanResult<Step> {
    let mut import = db::import(ctx, "")?;
    import.stdin_file = None;
    let undo = (ctx.site.db_engine == DbEngine::Sqlite)
        .then(|| Command::new(["rm", "-f", "--", ctx.db.database.as_str()]).timeout(60));
    Ok(Step::LoadDatabase {
        label: format!("load the backup's database {what}"),
        dir: staging.to_string(),
        import,
        physical: db::physical(server, ctx, false)?,
        undo,
    })
}

/// Streams `from`'s database into `to`'s (no intermediate file), each with its own account. Two
/// MariaDB databases on one server (`to_server`) may be copied physically instead (see
/// [`PhysicalCopy`]); the step decides when it runs.
fn copy_database(from: &SiteCtx, to: &SiteCtx, to_server: Option<&Server>) -> PlanResult<Step> {
    if from.site.db_engine != to.site.db_engine {
        return Err(PlanError::Refused(format!(
            "{} uses {} and {} uses {}: copying between database engines is not supported",
            from.site.domain, from.site.db_engine, to.site.domain, to.site.db_engine
        )));
    }
    let mut import = db::import(to, "")?;
    import.stdin_file = None;
    let undo = (to.site.db_engine == DbEngine::Sqlite)
        .then(|| Command::new(["rm", "-f", "--", to.db.database.as_str()]).timeout(60));
    let same_server = (from.db.host.as_str(), from.db.port) == (to.db.host.as_str(), to.db.port);
    let physical = match (same_server, db::physical(to_server, from, true)?) {
        (true, Some(source)) => Some(PhysicalCopy { source, target: to.db.database.clone() }),
        _ => None,
    };
    Ok(Step::Pipe {
        label: format!("copy the database of {} into {}", from.site.domain, to.db.database),
        from: db::dump(from)?,
        to: import,
        undo,
        physical,
    })
}

/// Copies directory `from` to `to`, which must not exist: into a temp name beside `to` first (with
/// reflinks where the filesystem has them), then renamed into place, so a partial copy is never seen
/// and undo removes only what this task made.
fn copy_dir(from: &str, to: &str, stamp: &str, plan: &mut Plan) -> String {
    let temp = format!("{to}.fjord-copy-{stamp}");
    plan.push(Step::Run {
        label: format!("copy {from}"),
        cmd: Command::new(["cp", "-a", "--reflink=auto", "-T", "--", from, temp.as_str()]).timeout(6 * 3600),
        undo: Some(Command::new(["rm", "-rf", "--", temp.as_str()]).timeout(3600)),
    });
    plan.push(Step::Move { from: temp, to: to.to_string() });
    to.to_string()
}

/// Copies the site's content directories in its state dir (`App::state_content_dirs`) from `from` to
/// `to`. Each source is first made as verify makes it: a site from before a content directory was
/// added (WordPress's `uploads`) has none yet.
fn copy_state_content(app: App, from: &SiteCtx, to: &SiteCtx, stamp: &str, plan: &mut Plan) -> Vec<String> {
    let mut copied = Vec::new();
    for dir in app.state_content_dirs() {
        let source = format!("{}/{dir}", from.site_dir());
        plan.push(crate::site_subdir(from.layout, from.site, source.clone()));
        copied.push(copy_dir(&source, &format!("{}/{dir}", to.site_dir()), stamp, plan));
    }
    copied
}

/// The directories that hold a site's own content: (in the platform, in Fjord's site dir).
fn content_dirs(app: App, ctx: &SiteCtx) -> Vec<String> {
    let mut dirs: Vec<String> = app.state_content_dirs().iter().map(|d| format!("{}/{d}", ctx.site_dir())).collect();
    if let Some(dir) = app.platform_site_dir(ctx) {
        dirs.push(format!("{dir}/files"));
    }
    dirs
}

fn same_server(snap: &Snapshot, platform: &Platform) -> PlanResult<()> {
    if platform.server_id != snap.server.id {
        return Err(PlanError::Refused(format!(
            "platform {} is on another server: moving sites between servers is not supported yet",
            platform.name
        )));
    }
    Ok(())
}

fn same_app(from: &Platform, to: &Platform) -> PlanResult<App> {
    let (a, b) = (App::of(from), App::of(to));
    if a != b || from.app.is_none() || to.app.is_none() {
        return Err(PlanError::Refused(format!(
            "platform {} carries {} and platform {} carries {}: a site only moves between platforms of the same application",
            from.name,
            from.app.map(|a| a.to_string()).unwrap_or_else(|| "an unverified codebase".into()),
            to.name,
            to.app.map(|a| a.to_string()).unwrap_or_else(|| "an unverified codebase".into()),
        )));
    }
    Ok(a)
}

fn live(site: &Site, role: &str) -> PlanResult<()> {
    if !matches!(site.status, SiteStatus::Enabled | SiteStatus::Disabled) {
        return Err(PlanError::Refused(format!("{role} {} is {}", site.domain, site.status)));
    }
    Ok(())
}

/// The module directories that travel with a site (Drupal's `sites/DOMAIN/modules` and `themes`).
fn site_module_dirs(app: App, ctx: &SiteCtx) -> Vec<String> {
    app.platform_site_dir(ctx).map(|d| vec![format!("{d}/modules"), format!("{d}/themes")]).unwrap_or_default()
}

/// A new site made from an existing one: new database and user, the content copied, settings
/// generated for the new site, database updates run when the platform differs, and a health check.
pub(crate) fn site_clone(layout: &Layout, snap: &Snapshot, a: CloneArgs) -> PlanResult<Planned> {
    let ctx = site_ctx(layout, snap)?;
    let site = ctx.site;
    if !matches!(site.status, SiteStatus::Queued | SiteStatus::Failed) {
        return Err(PlanError::Refused(format!("site {} is {}: a clone needs a new site", site.domain, site.status)));
    }
    let source = snap.other_site.as_ref().filter(|s| s.id.0 == a.source_site);
    let source = source.ok_or_else(|| PlanError::Refused("the site to clone no longer exists".into()))?;
    live(source, "the site to clone")?;
    let src_platform = snap.other_platform.as_ref().filter(|p| p.id == source.platform_id);
    let src_platform =
        src_platform.ok_or_else(|| PlanError::Refused("the platform of the site to clone is gone".into()))?;
    same_server(snap, src_platform)?;
    let app = same_app(src_platform, ctx.platform)?;
    app.check_engine(site.db_engine)?;
    if source.db_server_id != site.db_server_id {
        return Err(PlanError::Refused("a clone keeps its source's database server".into()));
    }
    let src = ctx_for(layout, &snap.server, src_platform, source, db_server(snap, source))?;
    let stamp = format!("clone-{}", site.id);
    let mut plan = Plan::default();
    if src_platform.id != ctx.platform.id {
        crate::check_php_fit(&snap.server, ctx.platform, ctx.php, &site.domain)?;
        plan.extend(app.schema_check(&src, &ctx.docroot(), site_module_dirs(app, &src), false)?);
    }
    plan.extend(db::ensure_absent(db_server(snap, site), site, true)?);
    plan.extend(db::ensure_site_db(db_server(snap, site), site, true)?);
    plan.push(Step::MakeDir { path: layout.site_dir(site), mode: 0o751, owner: None });
    let mut written = Vec::new();
    if let (Some(from), Some(to)) = (app.platform_site_dir(&src), app.platform_site_dir(&ctx)) {
        written.push(copy_dir(&from, &to, &stamp, &mut plan));
    }
    written.extend(copy_state_content(app, &src, &ctx, &stamp, &mut plan));
    if site.db_engine == DbEngine::Sqlite {
        plan.push(Step::MakeDir { path: format!("{}/db", ctx.site_dir()), mode: 0o770, owner: None });
    }
    plan.push(copy_database(&src, &ctx, db_server(snap, site))?);
    let SiteFiles { php_watch, vhost, .. } = site_files(&ctx, app, Serving::Live, &written, &mut plan)?;
    plan.push(services::php_reload(layout, &snap.server, ctx.php, php_watch));
    if src_platform.id != ctx.platform.id {
        plan.extend(app.update(&ctx)?);
    }
    plan.push(services::web_reload(layout, &snap.server, vec![vhost])?);
    plan.extend(http_check(layout, &snap.server, site, SiteStatus::Enabled));
    Ok(Planned {
        plan,
        on_success: vec![StateChange::SiteStatus { site: site.id, status: SiteStatus::Enabled }],
        on_failure: vec![StateChange::SiteStatus { site: site.id, status: SiteStatus::Failed }],
    })
}

/// The site as it will be after the migrate: on the target platform, maybe under a new domain, with
/// a new database.
fn moved_site(site: &Site, target: &Platform, a: &MigrateArgs) -> Site {
    let mut moved = site.clone();
    moved.platform_id = target.id;
    moved.db_name = new_db_name(site, 'm', &a.stamp);
    if let Some(domain) = a.domain.as_ref().filter(|d| *d != &site.domain) {
        // Served over HTTP until a certificate for the new name is installed.
        moved.tls.names.clear();
        moved.tls.not_after = None;
        moved.domain = domain.clone();
        moved.aliases.retain(|d| d != domain);
        if a.keep_old_domain && domain != &site.domain {
            moved.aliases.push(site.domain.clone());
        }
    }
    moved
}

/// Whether a migrate moves only the site's code: another platform, the same domain and database.
fn code_move(site: &Site, platform: &Platform, a: &MigrateArgs) -> bool {
    a.to_platform != platform.id.0
        && a.domain.as_ref().is_none_or(|d| d == &site.domain)
        && a.db_server.is_none_or(|id| Some(ServerId(id)) == site.db_server_id)
}

/// The read-only probe whose findings ([`Facts::migrate_pending`]) decide how a code move switches:
/// the target code's schema check against the site's database, run as the site's user before
/// planning. `None` when nothing decides by it: not a code move (a rename or a database move always
/// takes the maintenance window), the window asked for, or an app without database updates.
pub fn migrate_probe(layout: &Layout, snap: &Snapshot, a: &MigrateArgs) -> Option<Command> {
    let ctx = site_ctx(layout, snap).ok()?;
    let target = snap.other_platform.as_ref().filter(|p| p.id.0 == a.to_platform)?;
    if a.maintenance || !code_move(ctx.site, ctx.platform, a) {
        return None;
    }
    let app = App::of(ctx.platform);
    match app.schema_check(&ctx, &layout.docroot(target), site_module_dirs(app, &ctx), false) {
        // A probe answers a plan, a request waits for it: it may take a minute, not ten.
        Ok(Some(Step::Run { cmd, .. })) => Some(cmd.timeout(120)),
        _ => None,
    }
}

/// Moves a site to another platform (a code update) and/or a new domain.
///
/// A code move whose target has no database updates for the site (as `facts` found before planning,
/// see [`migrate_probe`]) switches live: [`migrate_live`]. Otherwise, in order: a schema check
/// (refuses a downgrade before anything happens), a pre-migrate backup, maintenance mode, a new
/// database filled from the old one, the site's directories copied to the new place, new settings,
/// the new code's database updates, the switch in one reload, a health check; the old database and
/// directories go only after that. The maintenance window is measured.
///
/// Why a fact and not a plan with both paths: a plan stays one list of steps, the same for the dry
/// run, the runner and a recovery, and its state changes (the database name) say what happens. A
/// guard step re-checks the fact when the live path runs.
pub(crate) fn site_migrate(layout: &Layout, snap: &Snapshot, a: MigrateArgs, facts: &Facts) -> PlanResult<Planned> {
    check_stamp(&a.stamp)?;
    let ctx = site_ctx(layout, snap)?;
    let site = ctx.site;
    live(site, "site")?;
    let target = snap.other_platform.as_ref().filter(|p| p.id.0 == a.to_platform);
    let target = target.ok_or_else(|| PlanError::Refused("the target platform no longer exists".into()))?;
    same_server(snap, target)?;
    if target.status != ObjectStatus::Enabled {
        return Err(PlanError::Refused(format!("platform {} is {}: verify it first", target.name, target.status)));
    }
    let renamed = a.domain.as_ref().is_some_and(|d| d != &site.domain);
    let old_db_server = db_server(snap, site);
    let new_db_server = match a.db_server {
        None => old_db_server,
        Some(id) => {
            if site.db_engine == DbEngine::Sqlite {
                return Err(PlanError::Refused(format!("{} keeps its SQLite database with its files", site.domain)));
            }
            let s = snap.other_db_server.as_ref().filter(|s| s.id.0 == id);
            let s = s.ok_or_else(|| PlanError::Refused("the target database server no longer exists".into()))?;
            if s.db(site.db_engine).is_none() {
                return Err(PlanError::Refused(format!("server {} offers no {} database", s.name, site.db_engine)));
            }
            Some(s)
        }
    };
    let db_moves = new_db_server.map(|s| s.id) != old_db_server.map(|s| s.id);
    if target.id == ctx.platform.id && !renamed && !db_moves {
        return Err(PlanError::Refused(format!("site {} is already on platform {}", site.domain, target.name)));
    }
    if target.locked && target.id != ctx.platform.id {
        return Err(PlanError::Refused(format!("platform {} is locked: it takes no new sites", target.name)));
    }
    let app = same_app(ctx.platform, target)?;
    let backup = site_backup(
        layout,
        snap,
        BackupArgs { kind: BackupKind::PreMigrate, stamp: format!("{}-pre-migrate", a.stamp), ..Default::default() },
    )?;
    let no_updates = match app.update(&ctx)?.is_empty() {
        true => true,
        false => facts.migrate_pending.as_ref().is_some_and(Vec::is_empty),
    };
    if code_move(site, ctx.platform, &a) && !a.maintenance && no_updates {
        let moved = Site { platform_id: target.id, ..site.clone() };
        let ctx2 = ctx_for(layout, &snap.server, target, &moved, old_db_server)?;
        crate::check_php_fit(&snap.server, target, ctx2.php, &site.domain)?;
        return migrate_live(app, &ctx, &ctx2, &a.stamp, backup);
    }
    let mut moved = moved_site(site, target, &a);
    moved.db_server_id = new_db_server.map(|s| s.id).or(site.db_server_id);
    let ctx2 = ctx_for(layout, &snap.server, target, &moved, new_db_server)?;
    if target.id != ctx.platform.id {
        crate::check_php_fit(&snap.server, target, ctx2.php, &site.domain)?;
    }
    let enabled = site.status == SiteStatus::Enabled;
    let mut plan = Plan::default();

    // Before any downtime: can the new code run this database at all?
    if target.id != ctx.platform.id {
        plan.extend(app.schema_check(&ctx, &ctx2.docroot(), site_module_dirs(app, &ctx), false)?);
    }
    plan.extend(backup.plan.steps);

    // Maintenance: no more writes reach the old database from here on.
    plan.push(Step::Mark { name: Mark::DowntimeStart });
    let old_vhost = layout.vhost_path(&snap.server, site);
    if enabled {
        plan.push(Step::WriteFile {
            path: old_vhost.clone(),
            content: FileContent::Text {
                text: render::vhost(
                    layout,
                    &snap.server,
                    ctx.platform,
                    site,
                    app.vhost_flavour(),
                    Serving::Maintenance,
                )?,
            },
            mode: 0o644,
            owner: None,
        });
        plan.push(services::web_reload(layout, &snap.server, vec![old_vhost.clone()])?);
    }

    // The new place: database, directories, settings.
    plan.extend(create_new_database(new_db_server, &moved)?);
    let mut written = Vec::new();
    if renamed {
        plan.push(Step::MakeDir { path: layout.site_dir(&moved), mode: 0o751, owner: None });
        written.extend(copy_state_content(app, &ctx, &ctx2, &a.stamp, &mut plan));
        if app == App::Drupal {
            written.push(copy_dir(
                &format!("{}/config", ctx.site_dir()),
                &format!("{}/config", ctx2.site_dir()),
                &a.stamp,
                &mut plan,
            ));
        }
    }
    if site.db_engine == DbEngine::Sqlite {
        plan.push(Step::MakeDir { path: format!("{}/db", ctx2.site_dir()), mode: 0o770, owner: None });
    }
    let (old_dir, new_dir) = (app.platform_site_dir(&ctx), app.platform_site_dir(&ctx2));
    if let (Some(from), Some(to)) = (&old_dir, &new_dir) {
        if from != to {
            written.push(copy_dir(from, to, &a.stamp, &mut plan));
        }
    }
    plan.push(copy_database(&ctx, &ctx2, new_db_server)?);
    let SiteFiles { pool, vhost, mut php_watch } = site_files(&ctx2, app, serving(site.status), &written, &mut plan)?;

    // What the old place had and the new one does not need, put aside (undone on failure).
    let old_pool = layout.php_pool(&snap.server, ctx.php.key(), site);
    let mut old_paths = app.external_files(&ctx);
    old_paths.extend([old_vhost.clone(), old_pool.clone()]);
    old_paths.extend(old_dir.clone());
    if renamed {
        old_paths.push(ctx.site_dir());
    }
    let mut new_paths = app.external_files(&ctx2);
    new_paths.extend([vhost.clone(), pool.clone()]);
    new_paths.extend(new_dir.clone());
    new_paths.push(ctx2.site_dir());
    for path in old_paths.iter().filter(|p| !new_paths.contains(p)) {
        plan.push(Step::RemovePath { path: path.clone() });
    }

    // The new code's database updates, then the switch in one reload.
    php_watch.push(old_pool);
    plan.push(services::php_reload(layout, &snap.server, ctx2.php, php_watch));
    plan.extend(app.update(&ctx2)?);
    plan.push(services::web_reload(layout, &snap.server, vec![vhost, old_vhost])?);
    plan.push(Step::Mark { name: Mark::DowntimeEnd });
    plan.extend(http_check(layout, &snap.server, &moved, site.status));
    plan.push(commit());

    // Only now what cannot be undone: the old database goes.
    if site.db_engine == DbEngine::Sqlite {
        plan.push(Step::RemovePath { path: ctx.db.database.clone() });
        if renamed {
            plan.push(Step::RemovePath { path: format!("{}/db/{}.sqlite", ctx2.site_dir(), site.db_name) });
        }
    } else if db_moves && !same_service(old_db_server, new_db_server, site.db_engine) {
        // The site left that database server: its account there goes too.
        plan.extend(db::drop_site_db(old_db_server, site)?);
    } else {
        plan.extend(db::drop_database(old_db_server, site)?);
    }
    let mut on_success = vec![StateChange::SiteMoved {
        site: site.id,
        platform: target.id,
        domain: moved.domain.clone(),
        db_name: moved.db_name.clone(),
        db_server: db_moves.then(|| new_db_server.map(|s| s.id)).flatten(),
        old_domain_alias: renamed && a.keep_old_domain,
    }];
    on_success.extend(backup.on_success);
    Ok(Planned { plan, on_success, on_failure: vec![] })
}

/// A code move with no database updates pending, switched while the site is served: no maintenance
/// page and no copy of the database, which the old and the new code share. In order: a guard (the
/// schema check, refusing updates that appeared since planning), the pre-migrate backup, the site's
/// directory copied into the new platform with its settings there, the pool opened to both codes,
/// the switch in one web-server reload, files uploaded meanwhile brought over, the new code's caches
/// rebuilt (the old code's as the undo), the pool closed to the old code, the old directory put
/// aside, a health check. Until the commit a failure switches the old vhost, pool and settings back:
/// the database is untouched, so that is a full rollback.
fn migrate_live(app: App, ctx: &SiteCtx, ctx2: &SiteCtx, stamp: &str, backup: Planned) -> PlanResult<Planned> {
    let (layout, server, site) = (ctx.layout, ctx.server, ctx.site);
    let mut plan = Plan::default();
    plan.extend(app.schema_check(ctx, &ctx2.docroot(), site_module_dirs(app, ctx), true)?);
    plan.extend(backup.plan.steps);

    // The new place, beside the served one: the site's directory in the new platform and settings.
    let (old_dir, new_dir) = (app.platform_site_dir(ctx), app.platform_site_dir(ctx2));
    let mut written = Vec::new();
    if let (Some(from), Some(to)) = (&old_dir, &new_dir) {
        written.push(copy_dir(from, to, stamp, &mut plan));
    }
    let SiteFiles { pool, vhost, php_watch } = site_files_before_switch(ctx2, app, &written, &mut plan)?;
    // The pool serves both codes while the web server switches from one to the other.
    plan.push(pool_file(ctx2, app, &[format!("{}/", ctx.platform.root)])?);
    plan.push(services::php_reload(layout, server, ctx2.php, php_watch));

    // The switch: one reload, no window.
    plan.push(Step::Mark { name: Mark::NoDowntime });
    plan.push(vhost_file(ctx2, app, serving(site.status))?);
    plan.push(services::web_reload(layout, server, vec![vhost])?);
    if let (Some(from), Some(to)) = (&old_dir, &new_dir) {
        // Uploaded through the old code since the copy (undone with the copy it adds to).
        plan.push(Step::Run {
            label: "bring over the files uploaded during the switch".into(),
            cmd: Command::new([
                "cp",
                "-a",
                "-u",
                "--reflink=auto",
                "-T",
                "--",
                &format!("{from}/files"),
                &format!("{to}/files"),
            ])
            .timeout(3600),
            undo: None,
        });
    }
    if let Some(cmd) = app.cache_rebuild(ctx2)? {
        plan.push(Step::Run {
            label: "rebuild caches for the new code".into(),
            cmd,
            // Back on the old code, its caches must be its own again.
            undo: app.cache_rebuild(ctx)?,
        });
    }
    plan.push(pool_file(ctx2, app, &[])?);
    plan.push(services::php_reload(layout, server, ctx2.php, vec![pool]));
    let new_paths = app.external_files(ctx2);
    let mut old_paths = app.external_files(ctx);
    old_paths.extend(old_dir);
    for path in old_paths.into_iter().filter(|p| !new_paths.contains(p)) {
        plan.push(Step::RemovePath { path });
    }
    plan.extend(http_check(layout, server, ctx2.site, site.status));
    plan.push(commit());
    let mut on_success = vec![StateChange::SiteMoved {
        site: site.id,
        platform: ctx2.platform.id,
        domain: site.domain.clone(),
        db_name: site.db_name.clone(),
        db_server: None,
        old_domain_alias: false,
    }];
    on_success.extend(backup.on_success);
    Ok(Planned { plan, on_success, on_failure: vec![] })
}

/// Whether two server records reach the same database service (one server known under two names):
/// then an account "on the old server" is the one the site still uses.
fn same_service(a: Option<&Server>, b: Option<&Server>, engine: DbEngine) -> bool {
    match (a.and_then(|s| s.db(engine)), b.and_then(|s| s.db(engine))) {
        (Some(x), Some(y)) => {
            let host = |d: &DbService| d.host.clone().unwrap_or_else(|| "127.0.0.1".into());
            (x.socket.is_some() && x.socket == y.socket) || (host(x) == host(y) && x.port == y.port)
        }
        _ => false,
    }
}

/// Whether a site could move to a platform: the schema check alone. Changes nothing.
pub(crate) fn site_migrate_check(layout: &Layout, snap: &Snapshot, a: MigrateCheckArgs) -> PlanResult<Planned> {
    let ctx = site_ctx(layout, snap)?;
    live(ctx.site, "site")?;
    let target = snap.other_platform.as_ref().filter(|p| p.id.0 == a.to_platform);
    let target = target.ok_or_else(|| PlanError::Refused("the target platform no longer exists".into()))?;
    same_server(snap, target)?;
    let app = same_app(ctx.platform, target)?;
    let mut plan = Plan::default();
    plan.extend(app.schema_check(&ctx, &layout.docroot(target), site_module_dirs(app, &ctx), false)?);
    Ok(Planned { plan, ..Default::default() })
}

/// Copies another site's database and/or files into this one (live → staging), after a backup of this
/// one. The copy is built beside the live data and swapped in; the old data goes after the health check.
pub(crate) fn site_sync(layout: &Layout, snap: &Snapshot, a: SyncArgs) -> PlanResult<Planned> {
    check_stamp(&a.stamp)?;
    let ctx = site_ctx(layout, snap)?;
    let site = ctx.site;
    live(site, "site")?;
    if !a.db && !a.files {
        return Err(PlanError::Args("a sync copies the database, the files, or both".into()));
    }
    let source = snap.other_site.as_ref().filter(|s| s.id.0 == a.source_site);
    let source = source.ok_or_else(|| PlanError::Refused("the site to copy from no longer exists".into()))?;
    if source.id == site.id {
        return Err(PlanError::Refused("a site cannot be synced from itself".into()));
    }
    live(source, "the site to copy from")?;
    let src_platform = snap.other_platform.as_ref().filter(|p| p.id == source.platform_id);
    let src_platform = src_platform.ok_or_else(|| PlanError::Refused("the source's platform is gone".into()))?;
    same_server(snap, src_platform)?;
    let app = same_app(src_platform, ctx.platform)?;
    if a.db && source.db_server_id != site.db_server_id {
        return Err(PlanError::Refused("syncing a database between database servers is not supported yet".into()));
    }
    let src = ctx_for(layout, &snap.server, src_platform, source, db_server(snap, source))?;
    let backup = site_backup(
        layout,
        snap,
        BackupArgs { kind: BackupKind::PreSync, stamp: format!("{}-pre-sync", a.stamp), ..Default::default() },
    )?;
    let mut plan = backup.plan;

    let mut synced = site.clone();
    if a.db {
        synced.db_name = new_db_name(site, 's', &a.stamp);
    }
    let ctx2 = ctx_for(layout, &snap.server, ctx.platform, &synced, db_server(snap, site))?;
    if a.db {
        plan.extend(create_new_database(db_server(snap, site), &synced)?);
        plan.push(copy_database(&src, &ctx2, db_server(snap, site))?);
    }
    let mut aside = Vec::new();
    let mut written = Vec::new();
    if a.files {
        for (from, live) in content_dirs(app, &src).into_iter().zip(content_dirs(app, &ctx)) {
            let incoming = format!("{live}.sync-{}", a.stamp);
            copy_dir(&from, &incoming, &a.stamp, &mut plan);
            let old = format!("{live}.before-sync-{}", a.stamp);
            plan.push(Step::Move { from: live.clone(), to: old.clone() });
            plan.push(Step::Move { from: incoming, to: live.clone() });
            aside.push(old);
            written.push(live);
        }
    }
    let SiteFiles { php_watch, vhost, .. } = site_files(&ctx2, app, serving(site.status), &written, &mut plan)?;
    plan.push(services::php_reload(layout, &snap.server, ctx.php, php_watch));
    plan.push(services::web_reload(layout, &snap.server, vec![vhost])?);
    plan.extend(http_check(layout, &snap.server, site, site.status));
    plan.push(commit());
    for dir in aside {
        plan.push(Step::RemovePath { path: dir });
    }
    let mut on_success = backup.on_success;
    if a.db {
        if site.db_engine == DbEngine::Sqlite {
            plan.push(Step::RemovePath { path: ctx.db.database.clone() });
        } else {
            plan.extend(db::drop_database(db_server(snap, site), site)?);
        }
        on_success.push(StateChange::SiteDbName { site: site.id, db_name: synced.db_name.clone() });
    }
    Ok(Planned { plan, on_success, on_failure: vec![] })
}

/// Brings a deleted site back from one of its backups into a new site record: its own database and
/// user, the archive's dump and files, settings generated for it. A failure undoes it all and leaves
/// the record failed.
pub(crate) fn site_restore_new(layout: &Layout, snap: &Snapshot, a: crate::RestoreArgs) -> PlanResult<Planned> {
    let ctx = site_ctx(layout, snap)?;
    let site = ctx.site;
    let app = App::of(ctx.platform);
    app.check_engine(site.db_engine)?;
    let mut plan = Plan::default();
    let staging = format!("{}/restore-{}-{}", layout.backups_dir(), site.domain, a.stamp);
    plan.push(Step::Extract { archive: a.archive.clone(), sha256: a.sha256.clone(), dest: staging.clone() });
    plan.extend(db::ensure_absent(db_server(snap, site), site, true)?);
    plan.extend(db::ensure_site_db(db_server(snap, site), site, true)?);
    plan.push(Step::MakeDir { path: layout.site_dir(site), mode: 0o751, owner: None });
    if site.db_engine == DbEngine::Sqlite {
        plan.push(Step::MakeDir { path: format!("{}/db", ctx.site_dir()), mode: 0o770, owner: None });
    }
    plan.push(load_database(db_server(snap, site), &ctx, &staging, "into its database")?);
    let mut written = Vec::new();
    for dir in app.state_content_dirs() {
        let to = format!("{}/{dir}", ctx.site_dir());
        plan.push(Step::Move { from: format!("{staging}/state/{dir}"), to: to.clone() });
        written.push(to);
    }
    if let Some(dir) = app.platform_site_dir(&ctx) {
        // The whole site directory of the backup (files, site-level modules); settings are regenerated.
        plan.push(Step::Move { from: format!("{staging}/site"), to: dir.clone() });
        written.push(dir);
    }
    let SiteFiles { php_watch, vhost, .. } = site_files(&ctx, app, Serving::Live, &written, &mut plan)?;
    plan.push(services::php_reload(layout, &snap.server, ctx.php, php_watch));
    plan.push(services::web_reload(layout, &snap.server, vec![vhost])?);
    plan.extend(http_check(layout, &snap.server, site, SiteStatus::Enabled));
    plan.push(Step::RemovePath { path: staging });
    let mut on_success = vec![StateChange::SiteStatus { site: site.id, status: SiteStatus::Enabled }];
    if site.https != HttpsMode::Off && site.tls.source == CertSource::SelfSigned && !site.tls.installed() {
        // Its HTTPS comes back with it: a new self-signed certificate (the daemon's certificate pass
        // gets an ACME one; an uploaded one must be uploaded again).
        let request = CertRequest::SelfSigned { days: 365 };
        let args = serde_json::json!({ "request": request });
        on_success.push(StateChange::FollowUp { kind: TaskKind::SiteCert, target: site.id.0, args });
    }
    Ok(Planned {
        plan,
        on_success,
        on_failure: vec![StateChange::SiteStatus { site: site.id, status: SiteStatus::Failed }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_database_names_do_not_grow() {
        let mut site = crate::tests::site(SiteStatus::Enabled, &[], false);
        site.db_name = "examplecom".into();
        let first = new_db_name(&site, 'r', "20261126-123952-123");
        assert_eq!(first, "examplecom_r123952123");
        site.db_name = first.clone();
        assert_eq!(new_db_name(&site, 'm', "20261127-080000-001"), "examplecom_m080000001");
        // The same time of day on another day never gives the live name back.
        assert_ne!(new_db_name(&site, 'r', "20261127-123952-123"), first);
    }
}
