//! Planners: turn a task and a [`Snapshot`] of the state into a [`Planned`] list of steps and the state
//! changes its outcome brings. Planners are pure (no IO): what they need to know about a host comes in
//! as [`Facts`] gathered by the daemon beforehand. This is what makes `--dry-run` exact: the CLI calls
//! the same planner the daemon does.
//!
//! Modules: `services` (web server and PHP-FPM masters), `db` (databases and users), `apps` (one
//! driver per application), `render` (the embedded templates under `templates/`), `layout` (paths).

pub mod apps;
pub mod db;
pub mod layout;
mod moves;
mod render;
pub mod services;

pub use moves::{migrate_probe, CloneArgs, MigrateArgs, MigrateCheckArgs, SyncArgs};
use render::Serving;

pub use layout::Layout;

use apps::{App, SiteCtx};
use fjord_core::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The task must not run in the current state (e.g. deleting an enabled site).
    #[error("{0}")]
    Refused(String),
    #[error("task arguments: {0}")]
    Args(String),
    #[error("template {name}: {source}")]
    Template { name: String, source: minijinja::Error },
}

pub type PlanResult<T> = Result<T, PlanError>;

/// What the daemon found on the host before planning (for platform verify: the codebase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The platform root exists and is a directory.
    pub root_exists: bool,
    /// Web root relative to the platform root ("" for the root itself).
    pub docroot: Option<String>,
    pub app: Option<AppKind>,
    pub app_version: Option<String>,
    /// Drupal 8+: the current `sites/sites.php`, if any.
    pub sites_php: Option<String>,
    /// The root has a `composer.json`, and a `vendor/` directory.
    pub composer_json: bool,
    pub vendor: bool,
    /// Profiles, drush, PHP requirement, site directories found.
    pub details: PlatformDetails,
    /// Packages `vendor/composer/installed.json` lists whose files are not all there (see
    /// `fjord_exec::probe::missing_vendor_packages`).
    #[serde(default)]
    pub missing_packages: Vec<String>,
    /// For a site delete: what restores replaced and their `site-archive-replaced` tasks failed to
    /// archive (failed or cancelled, and not since archived by a retry).
    pub unarchived_replaced: Vec<ArchiveReplacedArgs>,
    /// For a site migrate that moves only the code: the database updates the target code would run,
    /// as the read-only schema check ([`migrate_probe`]) found them, run as the site's user just
    /// before planning. `None`: not known (not probed, or the check failed or refused), so the
    /// migrate takes the safe path (a copy of the database, updated in a maintenance window).
    #[serde(default)]
    pub migrate_pending: Option<Vec<String>>,
}

/// Arguments of a no-op task (used by tests and the queue benchmark).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopArgs {
    #[serde(default)]
    pub sleep_ms: u64,
    /// Files to write (content "noop") before sleeping; their removal on undo is observable.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub fail: bool,
}

/// Arguments of a server verify.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerVerifyArgs {
    /// The web server the server ran before its record changed (`fjord server web`): its master
    /// is stopped and its config removed once the new one serves.
    #[serde(default)]
    pub previous_web: Option<HttpKind>,
}

/// Arguments of a site backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupArgs {
    pub kind: BackupKind,
    /// Time stamp for the archive's name (`YYYYMMDD-HHMMSS-mmm`), set when the task is queued.
    pub stamp: String,
    #[serde(default)]
    pub compression: Compression,
    /// How the database is copied (see [`BackupMethod`]): by its size unless told.
    #[serde(default, skip_serializing_if = "is_auto")]
    pub method: BackupMethod,
    /// The older spelling of `method: logical`, still read from tasks queued before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logical: bool,
}

fn is_auto(m: &BackupMethod) -> bool {
    *m == BackupMethod::Auto
}

impl Default for BackupArgs {
    fn default() -> BackupArgs {
        BackupArgs {
            kind: BackupKind::Manual,
            stamp: "unstamped".into(),
            compression: Compression::Zstd,
            method: BackupMethod::Auto,
            logical: false,
        }
    }
}

/// Arguments of a site restore: the archive (a backup Fjord recorded) and its checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreArgs {
    pub archive: String,
    pub sha256: String,
    pub stamp: String,
}

/// Arguments of a `site-archive-replaced` task, which a restore queues once the restored site serves:
/// the restore's stamp (which names the directories it set aside) and the database it replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveReplacedArgs {
    pub stamp: String,
    pub db_name: String,
}

/// Arguments of a site delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// Delete even if the site is not disabled first.
    #[serde(default)]
    pub force: bool,
    /// Take a pre-delete backup first (its archive name's stamp); `None` deletes without one.
    #[serde(default)]
    pub backup_stamp: Option<String>,
}

/// Arguments of a `site-cert` task: where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertArgs {
    pub request: CertRequest,
}

impl Default for CertArgs {
    fn default() -> CertArgs {
        CertArgs { request: CertRequest::SelfSigned { days: 365 } }
    }
}

fn args<T: serde::de::DeserializeOwned + Default>(task_args: &serde_json::Value) -> PlanResult<T> {
    if task_args.is_null() || task_args.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(T::default());
    }
    serde_json::from_value(task_args.clone()).map_err(|e| PlanError::Args(e.to_string()))
}

/// Plans `kind` with `task_args` against the state in `snap`.
pub fn plan(
    layout: &Layout,
    kind: TaskKind,
    task_args: &serde_json::Value,
    snap: &Snapshot,
    facts: &Facts,
) -> PlanResult<Planned> {
    match kind {
        TaskKind::ServerVerify => server_verify(layout, snap, args::<ServerVerifyArgs>(task_args)?),
        TaskKind::ServerRemove => server_remove(layout, snap),
        TaskKind::ServerStop => services::stop_masters(layout, &snap.server),
        TaskKind::ServerStart => services::start_masters(layout, &snap.server),
        TaskKind::PlatformVerify => platform_verify(layout, snap, facts),
        TaskKind::PlatformRemove => platform_remove(snap),
        TaskKind::SiteInstall => site_apply(layout, snap, SiteStatus::Enabled, true),
        TaskKind::SiteImport => site_import(layout, snap),
        TaskKind::SiteBackup => site_backup(layout, snap, args::<BackupArgs>(task_args)?),
        TaskKind::SiteRestore => site_restore(layout, snap, args::<RestoreArgs>(task_args)?),
        TaskKind::SiteArchiveReplaced => site_archive_replaced(layout, snap, args::<ArchiveReplacedArgs>(task_args)?),
        TaskKind::SiteVerify => {
            let site = site_of(snap)?;
            let target = if site.status == SiteStatus::Disabled { SiteStatus::Disabled } else { SiteStatus::Enabled };
            site_apply(layout, snap, target, false)
        }
        TaskKind::SiteEnable => site_apply(layout, snap, SiteStatus::Enabled, false),
        TaskKind::SiteDisable => site_apply(layout, snap, SiteStatus::Disabled, false),
        TaskKind::SiteDelete => site_delete(layout, snap, args::<DeleteArgs>(task_args)?, facts),
        TaskKind::SiteLoginLink => site_login_link(layout, snap),
        TaskKind::SiteCron => site_cron(layout, snap),
        TaskKind::SiteClone => moves::site_clone(layout, snap, args::<CloneArgs>(task_args)?),
        TaskKind::SiteMigrate => moves::site_migrate(layout, snap, args::<MigrateArgs>(task_args)?, facts),
        TaskKind::SiteSync => moves::site_sync(layout, snap, args::<SyncArgs>(task_args)?),
        TaskKind::SiteMigrateCheck => moves::site_migrate_check(layout, snap, args::<MigrateCheckArgs>(task_args)?),
        TaskKind::SiteCert => site_cert(layout, snap, args::<CertArgs>(task_args)?),
        TaskKind::Noop => noop(args::<NoopArgs>(task_args)?),
        // A batch has no steps of its own: the daemon queues (and plans) one site-migrate per site.
        TaskKind::PlatformMigrate => {
            args::<fjord_core::PlatformMigrateArgs>(task_args)?;
            Ok(Planned::default())
        }
    }
}

/// Plans a no-op task; needs no snapshot.
pub fn noop(a: NoopArgs) -> PlanResult<Planned> {
    let mut plan = Plan::default();
    for f in &a.files {
        plan.push(Step::WriteFile {
            path: f.clone(),
            content: FileContent::Text { text: "noop\n".into() },
            mode: 0o644,
            owner: None,
        });
    }
    if a.sleep_ms > 0 {
        plan.push(Step::Sleep { ms: a.sleep_ms });
    }
    if a.fail {
        plan.push(Step::Fail { message: "no-op task asked to fail".into() });
    }
    Ok(Planned { plan, ..Default::default() })
}

fn site_of(snap: &Snapshot) -> PlanResult<&Site> {
    snap.site.as_ref().ok_or_else(|| PlanError::Refused("the site no longer exists".into()))
}

fn platform_of(snap: &Snapshot) -> PlanResult<&Platform> {
    snap.platform.as_ref().ok_or_else(|| PlanError::Refused("the platform no longer exists".into()))
}

fn server_verify(layout: &Layout, snap: &Snapshot, a: ServerVerifyArgs) -> PlanResult<Planned> {
    let server = &snap.server;
    let mut plan = Plan::default();
    // The state dir: passed through (sites reach their own directories in it), never listed or read.
    plan.push(Step::MakeDir { path: layout.state_dir.clone(), mode: 0o711, owner: None });
    for dir in [layout.run_dir(), layout.static_dir(), layout.acme_dir()] {
        plan.push(Step::MakeDir { path: dir, mode: 0o755, owner: None });
    }
    // Every site's access and error logs: root's (the web servers' masters write them as root).
    plan.push(Step::MakeDir { path: layout.log_dir(), mode: 0o750, owner: None });
    plan.push(Step::WriteFile {
        path: format!("{}/fjord-site-disabled.html", layout.static_dir()),
        content: FileContent::Text { text: render::site_disabled_page()? },
        mode: 0o644,
        owner: None,
    });
    plan.push(Step::WriteFile {
        path: format!("{}/fjord-site-maintenance.html", layout.static_dir()),
        content: FileContent::Text { text: render::site_maintenance_page()? },
        mode: 0o644,
        owner: None,
    });
    for runtime in server.php_runtimes() {
        services::php_files(layout, server, runtime, &mut plan)?;
    }
    if a.previous_web.is_some_and(|p| server.http().is_some_and(|h| h.kind != p)) {
        // The new web server's vhost directory, before the sites' vhosts go into it.
        plan.push(Step::MakeDir { path: layout.vhost_dir(server), mode: 0o755, owner: None });
    }
    // Every site's derived files, regenerated from the state, then one reload of each service.
    let mut php_watch = Vec::new();
    let mut site_dirs = Vec::new();
    for site in snap.sites.iter().filter(|s| matches!(s.status, SiteStatus::Enabled | SiteStatus::Disabled)) {
        let Some(platform) = snap.platforms.iter().find(|p| p.id == site.platform_id) else {
            continue;
        };
        let ctx = ctx_for(layout, server, platform, site, Some(server))?;
        php_watch.extend(site_files(&ctx, App::of(platform), serving(site.status), &[], &mut plan)?.php_watch);
        site_dirs.push(layout.site_dir(site));
    }
    // A reload only if some generated config changed; a service that is not running is started.
    let watch = vec![layout.server_dir(server)];
    php_watch.extend(watch.clone());
    for runtime in server.php_runtimes() {
        plan.push(services::php_reload(layout, server, runtime, php_watch.clone()));
    }
    if let Some(http) = server.http() {
        let mut web_watch = services::web_files(layout, server, &mut plan)?;
        web_watch.extend(watch.clone());
        let previous = a.previous_web.filter(|p| *p != http.kind);
        if let Some(previous) = previous {
            services::web_switch(layout, server, previous, &mut plan)?;
        }
        // New site users: the web server's workers must be restarted to gain their groups.
        web_watch.extend(site_dirs);
        plan.push(services::web_reload(layout, server, web_watch)?);
        if let Some(previous) = previous {
            let old = match previous {
                HttpKind::Apache => layout.apache_dir(server),
                HttpKind::Nginx => layout.nginx_dir(server),
            };
            plan.push(Step::RemovePath { path: old });
        }
    }
    for engine in [DbEngine::Mariadb, DbEngine::Postgres] {
        if let Some(db) = server.db(engine) {
            let stamp = layout.stamp_path(&format!("server-{}-{engine}-admin", server.id));
            plan.push(run_once(db::prove_admin(server, db), stamp));
        }
    }
    Ok(Planned {
        plan,
        on_success: vec![StateChange::ServerStatus { server: server.id, status: ObjectStatus::Enabled }],
        on_failure: vec![],
    })
}

fn server_remove(layout: &Layout, snap: &Snapshot) -> PlanResult<Planned> {
    if !snap.platforms.is_empty() {
        let names: Vec<&str> = snap.platforms.iter().map(|p| p.name.as_str()).collect();
        return Err(PlanError::Refused(format!(
            "server {} still has platforms: {}",
            snap.server.name,
            names.join(", ")
        )));
    }
    let mut plan = Plan::default();
    if let Some(http) = snap.server.http() {
        if http.mode == WebMode::System {
            plan.push(Step::RemovePath { path: layout.system_nginx_include(&snap.server) });
        }
    }
    plan.push(Step::RemovePath { path: layout.server_dir(&snap.server) });
    Ok(Planned {
        plan,
        on_success: vec![StateChange::ServerStatus { server: snap.server.id, status: ObjectStatus::Deleted }],
        on_failure: vec![],
    })
}

/// The line Fjord adds to a Drupal `sites/sites.php` so each site's entries live in a file of its own.
pub const SITES_PHP_INCLUDE: &str =
    "foreach (glob(__DIR__ . '/fjord-sites/*.php') ?: [] as $fjord_sites_file) { include $fjord_sites_file; }";

fn platform_verify(layout: &Layout, snap: &Snapshot, facts: &Facts) -> PlanResult<Planned> {
    let platform = platform_of(snap)?;
    let mut plan = Plan::default();
    if !facts.root_exists {
        // Build the codebase from its source, then verify again to detect what was built.
        let root = platform.root.clone();
        let remove_root = || Some(Command::new(["rm", "-rf", "--", root.as_str()]).timeout(600));
        match &platform.source {
            PlatformSource::Path => {
                plan.push(Step::Fail { message: format!("platform root {root} does not exist or is not a directory") });
            }
            PlatformSource::Git { url, git_ref } => {
                plan.push(Step::Run {
                    label: "clone the codebase".into(),
                    cmd: Command::new(["git", "clone", "--quiet", "--", url.as_str(), root.as_str()]).timeout(1800),
                    undo: remove_root(),
                });
                plan.push(Step::Run {
                    label: format!("check out {git_ref}"),
                    cmd: Command::new([
                        "git",
                        "-C",
                        root.as_str(),
                        "checkout",
                        "--quiet",
                        "--detach",
                        git_ref.as_str(),
                    ])
                    .timeout(600),
                    undo: None,
                });
            }
            PlatformSource::Composer { package } => {
                let (name, version) = package.split_once(':').map(|(n, v)| (n, Some(v))).unwrap_or((package, None));
                let mut argv =
                    vec!["composer", "create-project", "--no-dev", "--no-interaction", "--", name, root.as_str()];
                argv.extend(version);
                plan.push(Step::Run {
                    label: "build the codebase with composer create-project".into(),
                    cmd: Command::new(argv).env("COMPOSER_ALLOW_SUPERUSER", "1").timeout(3600),
                    undo: remove_root(),
                });
            }
            PlatformSource::Archive { file } => {
                plan.push(Step::MakeDir { path: root.clone(), mode: 0o755, owner: None });
                plan.push(Step::Run {
                    label: "unpack the codebase".into(),
                    cmd: Command::new(["tar", "-xf", file.as_str(), "-C", root.as_str(), "--no-same-owner"])
                        .timeout(1800),
                    undo: None,
                });
            }
        }
        // A missing directory of an existing-directory platform fails above; a built one is verified
        // again once built.
        let follow_up = StateChange::FollowUp {
            kind: TaskKind::PlatformVerify,
            target: platform.id.0,
            args: serde_json::Value::Null,
        };
        let built = platform.source != PlatformSource::Path;
        return Ok(Planned {
            plan,
            on_success: if built { vec![follow_up] } else { vec![] },
            on_failure: never_verified_failed(platform),
        });
    }
    if facts.composer_json && !facts.vendor {
        // A composer project without its dependencies: install them (no dev packages on a server).
        plan.push(Step::Run {
            label: "install the codebase's dependencies".into(),
            cmd: Command::new(["composer", "install", "--no-dev", "--no-interaction", "--no-progress"])
                .cwd(platform.root.clone())
                .env("COMPOSER_ALLOW_SUPERUSER", "1")
                .timeout(3600),
            undo: Some(Command::new(["rm", "-rf", "--", &format!("{}/vendor", platform.root)]).timeout(600)),
        });
    }
    if facts.vendor && !facts.missing_packages.is_empty() {
        // The first site install would die on a class the autoloader cannot find: say so now.
        plan.push(Step::Fail {
            message: format!(
                "the codebase's vendor/ is incomplete (run composer install in {}): {}",
                platform.root,
                facts.missing_packages.join("; ")
            ),
        });
    }
    if matches!(facts.app, Some(AppKind::Drupal | AppKind::Drupal7)) {
        // Drupal 8+ needs sites/sites.php for aliases; keep what is there and add Fjord's include.
        let mut verified = platform.clone();
        verified.docroot = facts.docroot.clone();
        let path = format!("{}/sites/sites.php", layout.docroot(&verified));
        let current = facts.sites_php.clone().unwrap_or_else(|| "<?php\n".into());
        if !current.contains(SITES_PHP_INCLUDE) {
            let text = format!(
                "{}\n// Added by Fjord: one file of entries per site.\n{SITES_PHP_INCLUDE}\n",
                current.trim_end()
            );
            plan.push(Step::WriteFile { path, content: FileContent::Text { text }, mode: 0o644, owner: None });
        }
    }
    Ok(Planned {
        plan,
        on_success: vec![StateChange::PlatformVerified {
            platform: platform.id,
            details: PlatformDetails {
                // Sites Fjord already knows are not "unknown".
                unknown_sites: facts
                    .details
                    .unknown_sites
                    .iter()
                    .filter(|d| !snap.sites.iter().any(|s| s.domain.as_str() == d.as_str()))
                    .cloned()
                    .collect(),
                php_ok: php_ok(&facts.details, &snap.server),
                php_runtimes: snap
                    .server
                    .php_runtimes()
                    .filter(|r| php_misfit(&facts.details, r).is_none())
                    .map(|r| r.key().to_string())
                    .collect(),
                ..facts.details.clone()
            },
            docroot: facts.docroot.clone(),
            app: facts.app,
            app_version: facts.app_version.clone(),
        }],
        on_failure: never_verified_failed(platform),
    })
}

/// Whether one of the server's runtimes can run the code (`None`: the code declares nothing Fjord
/// understands).
fn php_ok(details: &PlatformDetails, server: &Server) -> Option<bool> {
    let understood = details.php_requirements.iter().any(|r| php_satisfies(&r.constraint, "8.2").is_some())
        || !details.php_extensions.is_empty();
    understood.then(|| server.php_runtimes().any(|r| php_misfit(details, r).is_none()))
}

/// Why `runtime` cannot run code with these details (a version constraint it fails, extensions it
/// lacks), or `None` when nothing says it cannot. A runtime whose extensions are not known is not
/// judged on them.
pub fn php_misfit(details: &PlatformDetails, runtime: &PhpRuntime) -> Option<String> {
    let mut why = Vec::new();
    for r in &details.php_requirements {
        if php_satisfies(&r.constraint, &runtime.version) == Some(false) {
            why.push(format!("PHP {} does not satisfy {} ({})", runtime.version, r.constraint, r.source));
        }
    }
    if !runtime.extensions.is_empty() {
        let has = |e: &str| runtime.extensions.iter().any(|x| x.replace(' ', "-").eq_ignore_ascii_case(e));
        let missing: Vec<&str> = details.php_extensions.iter().map(String::as_str).filter(|e| !has(e)).collect();
        if !missing.is_empty() {
            why.push(format!("it lacks the extension(s) {}", missing.join(", ")));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Refuses to put a site on `platform` with `runtime` when the code cannot run on it, naming the
/// server's runtimes that can (or how to add one).
pub(crate) fn check_php_fit(
    server: &Server,
    platform: &Platform,
    runtime: &PhpRuntime,
    domain: &Domain,
) -> PlanResult<()> {
    let Some(why) = php_misfit(&platform.details, runtime) else { return Ok(()) };
    let fitting: Vec<String> = server
        .php_runtimes()
        .filter(|r| php_misfit(&platform.details, r).is_none())
        .map(|r| format!("{} (PHP {})", r.key(), r.version))
        .collect();
    let instead = if fitting.is_empty() {
        format!(
            "no PHP runtime of server {} can run it: add one with `fjord server php add {} NAME --binary /usr/sbin/php-fpmX.Y`",
            server.name, server.name
        )
    } else {
        format!("choose a runtime that can (--php): {}", fitting.join(", "))
    };
    Err(PlanError::Refused(format!(
        "{domain}: platform {} cannot run on PHP runtime {}: {why}; {instead}",
        platform.name,
        runtime.key()
    )))
}

/// A platform whose first verify fails is marked failed, so lists say so and no site is put on it
/// until a verify succeeds; one that has been verified keeps its status (its sites still serve).
fn never_verified_failed(platform: &Platform) -> Vec<StateChange> {
    match platform.status {
        ObjectStatus::Queued | ObjectStatus::Failed => {
            vec![StateChange::PlatformStatus { platform: platform.id, status: ObjectStatus::Failed }]
        }
        _ => vec![],
    }
}

/// Whether PHP `version` (e.g. "8.2") satisfies a composer constraint such as `>=8.1`, `^8.1`,
/// `~8.2.0`, `>=7.4 <8.3` or `^7.4 || ^8.0`. `None` when the constraint is not understood.
pub fn php_satisfies(constraint: &str, version: &str) -> Option<bool> {
    fn parse(v: &str) -> Option<(u32, u32)> {
        let mut it = v.trim_start_matches('v').split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().map(|m| m.trim_end_matches(".*").parse().ok()).unwrap_or(Some(0))?;
        Some((major, minor))
    }
    let have = parse(version)?;
    let mut any = false;
    for alternative in constraint.split("||") {
        let mut all = true;
        for term in alternative.split([' ', ',']).filter(|t| !t.is_empty()) {
            let (op, v) = match term {
                t if t.starts_with(">=") || t.starts_with("<=") => (&t[..2], &t[2..]),
                t if t.starts_with('>')
                    || t.starts_with('<')
                    || t.starts_with('^')
                    || t.starts_with('~')
                    || t.starts_with('=') =>
                {
                    (&t[..1], &t[1..])
                }
                t => ("=", t),
            };
            if let Some(major) = v.strip_suffix(".*") {
                all &= major.parse::<u32>().ok()? == have.0;
                continue;
            }
            let want = parse(v)?;
            let ok = match op {
                ">=" => have >= want,
                ">" => have > want,
                "<=" => have <= want,
                "<" => have < want,
                "^" => have.0 == want.0 && have >= want,
                "~" => have.0 == want.0 && have >= want,
                _ => v == "*" || have == want || (v.split('.').count() == 1 && have.0 == want.0),
            };
            all &= ok;
        }
        any |= all;
    }
    Some(any)
}

fn platform_remove(snap: &Snapshot) -> PlanResult<Planned> {
    let platform = platform_of(snap)?;
    if !snap.sites.is_empty() {
        // Named with their status, so a failed site that holds the platform is not a mystery.
        let mut named: Vec<String> = snap
            .sites
            .iter()
            .take(5)
            .map(|s| match s.status {
                SiteStatus::Enabled => s.domain.to_string(),
                other => format!("{} ({other})", s.domain),
            })
            .collect();
        if snap.sites.len() > named.len() {
            named.push("…".into());
        }
        return Err(PlanError::Refused(format!(
            "platform {} still has {} site(s): {}; migrate or delete them first",
            platform.name,
            snap.sites.len(),
            named.join(", ")
        )));
    }
    Ok(Planned {
        plan: Plan::default(),
        on_success: vec![StateChange::PlatformStatus { platform: platform.id, status: ObjectStatus::Deleted }],
        on_failure: vec![],
    })
}

/// How `fjord site exec` runs a command in a site's context: as its PHP user, in its docroot, with an
/// environment like its pool's (temp dir, home) plus its PHP runtime and site-local drush first on
/// `PATH` and drush pointed at the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecContext {
    pub user: String,
    pub cwd: String,
    pub env: Vec<(String, String)>,
}

pub fn exec_context(layout: &Layout, server: &Server, platform: &Platform, site: &Site) -> PlanResult<ExecContext> {
    // The database is not needed here; the server stands in for the site's database server.
    let ctx = ctx_for(layout, server, platform, site, Some(server))?;
    let user = layout.php_user(site);
    let path = format!("{}:{}/vendor/bin:/usr/local/bin:/usr/bin:/bin", layout.site_bin_dir(site), platform.root);
    let env = vec![
        ("PATH".to_string(), path),
        ("HOME".into(), layout.site_dir(site)),
        ("TMPDIR".into(), format!("{}/tmp", layout.site_dir(site))),
        ("USER".into(), user.clone()),
        ("LOGNAME".into(), user.clone()),
        ("LANG".into(), "C.UTF-8".into()),
        // drush 12/13 reads its --uri and --root from these.
        ("DRUSH_OPTIONS_URI".into(), ctx.base_url.clone()),
        ("DRUSH_OPTIONS_ROOT".into(), ctx.docroot()),
    ];
    Ok(ExecContext { user, cwd: ctx.docroot(), env })
}

/// The context every site planner works in.
fn site_ctx<'a>(layout: &'a Layout, snap: &'a Snapshot) -> PlanResult<SiteCtx<'a>> {
    let site = site_of(snap)?;
    let platform = platform_of(snap)?;
    ctx_for(layout, &snap.server, platform, site, db_server(snap, site))
}

/// The context for one site on `server`; `db_server` holds its database (`None` for SQLite sites
/// whose database server is unknown).
fn ctx_for<'a>(
    layout: &'a Layout,
    server: &'a Server,
    platform: &'a Platform,
    site: &'a Site,
    db_server: Option<&'a Server>,
) -> PlanResult<SiteCtx<'a>> {
    let php = server.php_runtime(site.php.as_deref()).ok_or_else(|| {
        PlanError::Refused(match &site.php {
            Some(v) => format!("server {} has no PHP {v} runtime", server.name),
            None => format!("server {} has no PHP runtime", server.name),
        })
    })?;
    // They go into the pool file: never write a value that was not checked.
    site.php_limits.validate().map_err(|e| PlanError::Refused(format!("site {}: PHP limits: {e}", site.domain)))?;
    let port = server.http().map(|h| h.port).unwrap_or(80);
    let base_url =
        if port == 80 { format!("http://{}", site.domain) } else { format!("http://{}:{port}", site.domain) };
    Ok(SiteCtx {
        layout,
        server,
        platform,
        site,
        db: db::connection(db_server, site, layout.sqlite_path(site))?,
        php,
        base_url,
        port,
        // Behind trusted proxies the web server already puts the visitor's address in REMOTE_ADDR
        // (nginx realip, Apache mod_remoteip; see `fjord_core::proxies`). The apps are told of no
        // reverse proxy: applying the header a second time would let a visitor add addresses of
        // its own to X-Forwarded-For and have the app take one of them.
        reverse_proxy: vec![],
    })
}

/// A directory of the site's state dir that its PHP user writes (content, temp files, logs).
fn site_subdir(layout: &Layout, site: &Site, path: String) -> Step {
    Step::MakeDir { path, mode: 0o770, owner: Some(layout.php_owner(site)) }
}

/// Everything derived about a site that needs no service to be asked: its directories, settings,
/// PHP-FPM pool and vhost. `written`: the trees this task wrote as root (copies, an unpacked
/// backup), which the site's PHP user gets whole. Returns what reloads watch.
fn site_files(ctx: &SiteCtx, app: App, serving: Serving, written: &[String], plan: &mut Plan) -> PlanResult<SiteFiles> {
    let files = site_files_before_switch(ctx, app, written, plan)?;
    plan.push(pool_file(ctx, app, &[])?);
    plan.push(vhost_file(ctx, app, serving)?);
    Ok(files)
}

/// Everything [`site_files`] writes but the pool and the vhost, which decide what is served: a live
/// migrate writes those itself, in its own order.
fn site_files_before_switch(ctx: &SiteCtx, app: App, written: &[String], plan: &mut Plan) -> PlanResult<SiteFiles> {
    let layout = ctx.layout;
    let site = ctx.site;
    let dir = layout.site_dir(site);
    let owner = Some(layout.php_owner(site));
    if layout.isolated(site) {
        // The site's own Unix user and group come first: everything below is owned by them.
        plan.push(Step::UnixUser {
            name: layout.php_user(site),
            home: dir.clone(),
            web_user: Some(layout.web_user.clone()),
        });
        // Closed to other sites' users: private files, temp files, sessions, the SQLite database.
        plan.push(Step::MakeDir {
            path: dir.clone(),
            mode: 0o750,
            owner: Some(format!("root:{}", layout.php_user(site))),
        });
    } else {
        plan.push(Step::MakeDir { path: dir.clone(), mode: 0o751, owner: None });
    }
    own_writable(ctx, app, written, plan);
    for sub in app.state_content_dirs().iter().chain(&["tmp", "log"]) {
        plan.push(site_subdir(layout, site, format!("{dir}/{sub}")));
    }
    if site.db_engine == DbEngine::Sqlite {
        plan.push(Step::MakeDir { path: format!("{dir}/db"), mode: 0o770, owner: owner.clone() });
        // The database file exists from the start (an empty file is an empty SQLite database), so a
        // backup or copy of a site whose app has not written to it yet has something to read.
        plan.push(Step::EnsureFile { path: ctx.db.database.clone(), mode: 0o660, owner: owner.clone() });
    }
    app.settings(ctx, plan)?;
    app.drush_alias_files(ctx, plan);
    // `fjord site exec` puts this first on PATH: `php` is the site's runtime.
    plan.push(Step::MakeDir { path: layout.site_bin_dir(site), mode: 0o755, owner: None });
    plan.push(Step::WriteFile {
        path: format!("{}/php", layout.site_bin_dir(site)),
        content: FileContent::Text { text: format!("#!/bin/sh\nexec {} \"$@\"\n", services::php_cli(ctx.php)) },
        mode: 0o755,
        owner: None,
    });
    Ok(site_files_watch(ctx, app))
}

/// The paths of a site's pool and vhost, and what its PHP reload watches.
fn site_files_watch(ctx: &SiteCtx, app: App) -> SiteFiles {
    let pool = ctx.layout.php_pool(ctx.server, ctx.php.key(), ctx.site);
    // PHP-FPM reloads when the settings change too: its opcache may keep the old settings.php (and
    // the old database name) for seconds otherwise.
    let mut php_watch = vec![pool.clone(), ctx.site_dir()];
    php_watch.extend(app.platform_site_dir(ctx));
    php_watch.extend(app.external_files(ctx));
    SiteFiles { pool, vhost: ctx.layout.vhost_path(ctx.server, ctx.site), php_watch }
}

/// The site's PHP-FPM pool; isolated, its PHP opens only its code and directories, and `also`
/// (the old code's root while a live migrate switches).
fn pool_file(ctx: &SiteCtx, app: App, also: &[String]) -> PlanResult<Step> {
    let layout = ctx.layout;
    let site = ctx.site;
    let mut open_basedir = if layout.isolated(site) { app.open_basedir(ctx) } else { vec![] };
    if !open_basedir.is_empty() {
        open_basedir.extend(also.iter().cloned());
    }
    Ok(Step::WriteFile {
        path: layout.php_pool(ctx.server, ctx.php.key(), site),
        content: FileContent::Text { text: render::php_pool(layout, site, &open_basedir)? },
        mode: 0o644,
        owner: None,
    })
}

/// The site's vhost, serving it as `serving` says.
fn vhost_file(ctx: &SiteCtx, app: App, serving: Serving) -> PlanResult<Step> {
    Ok(Step::WriteFile {
        path: ctx.layout.vhost_path(ctx.server, ctx.site),
        content: FileContent::Text {
            text: render::vhost(ctx.layout, ctx.server, ctx.platform, ctx.site, app.vhost_flavour(), serving)?,
        },
        mode: 0o644,
        owner: None,
    })
}

/// Gives the site's PHP user its writable trees, in process. A tree this task wrote (`written`: a
/// copy or an unpacked backup, made as root) is walked whole. Any other is walked only when its top
/// directory has another owner: a site that got a user of its own (or lost it) takes over what the
/// old user owned, once. Walking every tree on every verify would cost a stat per file (a server of
/// sites with 100,000 uploads each, for hours) and a `chown -R` rewrote every inode besides; a
/// tree's top is given last, so its owner says whether the last walk finished. The step goes before
/// the directories are made, which give their tops to the user and would hide a change of user.
/// What the site's code writes (installers, updates) runs as the user and is the user's already.
fn own_writable(ctx: &SiteCtx, app: App, written: &[String], plan: &mut Plan) {
    let owner = ctx.layout.php_owner(ctx.site);
    let in_written = |d: &String| written.iter().any(|w| d == w || d.starts_with(&format!("{w}/")));
    let (walked, checked): (Vec<String>, Vec<String>) = app.writable_dirs(ctx).into_iter().partition(in_written);
    for (paths, written) in [(checked, false), (walked, true)] {
        if !paths.is_empty() {
            plan.push(Step::OwnTrees { paths, owner: owner.clone(), written });
        }
    }
}

/// A `Run` step as a [`Step::RunOnce`] recorded in `stamp`.
fn run_once(step: Step, stamp: String) -> Step {
    match step {
        Step::Run { label, cmd, undo } => Step::RunOnce { label, cmd, stamp, undo },
        other => other,
    }
}

/// The paths [`site_files`] wrote that services watch.
struct SiteFiles {
    pool: String,
    vhost: String,
    /// Changes under these make PHP-FPM reload: the pool, and the settings PHP may have cached.
    php_watch: Vec<String>,
}

fn db_server<'a>(snap: &'a Snapshot, site: &Site) -> Option<&'a Server> {
    match site.db_server_id {
        Some(id) if id != snap.server.id => snap.db_server.as_ref(),
        _ => Some(&snap.server),
    }
}

/// The request that proves a site is served as `status` says: any non-error answer from PHP, or the
/// "site disabled" page. A PHP fatal error in the answer or in the site's error log fails it.
fn http_check(layout: &Layout, server: &Server, site: &Site, status: SiteStatus) -> Option<Step> {
    let http = server.http()?;
    let addr = match http.listen.as_deref() {
        Some("0.0.0.0") | None => "127.0.0.1",
        Some(a) => a,
    };
    Some(Step::HttpCheck {
        url: format!("http://{addr}:{}/", http.port),
        host: site.domain.to_string(),
        expect: match status {
            // HTTPS required: plain HTTP is sent over to HTTPS before it can say the site is disabled.
            SiteStatus::Disabled if site.https == HttpsMode::Required => vec![301, 503],
            SiteStatus::Disabled => vec![503],
            _ => vec![200, 301, 302, 303, 307, 308, 403],
        },
        // Over plain HTTP a site with HTTPS required answers only its redirect: no page to look in.
        contains: site
            .health_marker
            .clone()
            .filter(|_| status == SiteStatus::Enabled && site.https != HttpsMode::Required),
        error_log: (status == SiteStatus::Enabled).then(|| layout.php_error_log(site)),
    })
}

/// How a site in `status` is served.
fn serving(status: SiteStatus) -> Serving {
    if status == SiteStatus::Disabled {
        Serving::Disabled
    } else {
        Serving::Live
    }
}

/// Install, verify, enable and disable all converge a site's derived state to the same shape; they
/// differ in the status they render and record, and install also creates the database and runs the
/// application's installer.
fn site_apply(layout: &Layout, snap: &Snapshot, status: SiteStatus, install: bool) -> PlanResult<Planned> {
    let ctx = site_ctx(layout, snap)?;
    let site = ctx.site;
    if site.status == SiteStatus::Deleted {
        return Err(PlanError::Refused(format!("site {} is deleted", site.domain)));
    }
    if !install && matches!(site.status, SiteStatus::Queued | SiteStatus::Failed) {
        return Err(PlanError::Refused(format!(
            "site {} is not installed ({}); delete it or install it again",
            site.domain, site.status
        )));
    }
    let app = App::of(ctx.platform);
    app.check_engine(site.db_engine)?;
    let mut plan = Plan::default();
    if install {
        check_php_fit(&snap.server, ctx.platform, ctx.php, &site.domain)?;
        plan.extend(db::ensure_absent(db_server(snap, site), site, true)?);
    }
    if let Some(step) = db::ensure_site_db(db_server(snap, site), site, install)? {
        // A verify makes sure of the database again only when what it asks for changed.
        plan.push(run_once(step, layout.stamp_path(&format!("site-{}-db", site.id))));
    }
    let SiteFiles { php_watch, vhost, .. } = site_files(&ctx, app, serving(status), &[], &mut plan)?;
    // The vhost was written with the other files, but nginx reloads only after the installer: a site
    // is served only once it is installed.
    plan.push(services::php_reload(layout, &snap.server, ctx.php, php_watch));
    // The master binds a new socket (a new site, or one moved to this runtime) a moment after its
    // reload: nginx switches to it only once it is there.
    plan.push(Step::WaitForPath { path: layout.php_socket(site), timeout_ms: 10_000 });
    if install {
        app.install(&ctx, &mut plan)?;
    }
    // The site dir changes when the site gets its own user: the web server's workers must be
    // restarted to gain the site's group.
    plan.push(services::web_reload(layout, &snap.server, vec![vhost, layout.site_dir(site)])?);
    // A site moved to another runtime: its old pool goes once the web server uses the new socket.
    for other in snap.server.php_runtimes().filter(|r| r.key() != ctx.php.key()) {
        let old_pool = layout.php_pool(&snap.server, other.key(), site);
        plan.push(Step::RemovePath { path: old_pool.clone() });
        plan.push(services::php_reload(layout, &snap.server, other, vec![old_pool]));
    }
    plan.extend(http_check(layout, &snap.server, site, status));
    Ok(Planned {
        plan,
        on_success: vec![StateChange::SiteStatus { site: site.id, status }],
        on_failure: if install {
            vec![StateChange::SiteStatus { site: site.id, status: SiteStatus::Failed }]
        } else {
            vec![]
        },
    })
}

/// Adopts a site that already exists (its database, and for Drupal its files): Fjord takes over its
/// settings, pool and vhost. Nothing of the existing database is ever undone.
fn site_import(layout: &Layout, snap: &Snapshot) -> PlanResult<Planned> {
    let site = site_of(snap)?;
    if site.status != SiteStatus::Queued {
        return Err(PlanError::Refused(format!(
            "site {} is {}: only a new record can be imported",
            site.domain, site.status
        )));
    }
    let mut imported = snap.clone();
    if let Some(s) = imported.site.as_mut() {
        // Plan it as the enabled site it is about to become.
        s.status = SiteStatus::Enabled;
    }
    let mut planned = site_apply(layout, &imported, SiteStatus::Enabled, false)?;
    // A failed import leaves no record: deleting a failed record drops its database, which here is
    // the user's own. The domain is free for another import (or the daemon's next adoption).
    planned.on_failure = vec![StateChange::SiteStatus { site: site.id, status: SiteStatus::Deleted }];
    Ok(planned)
}

/// A backup archive of the site: its database dump, its own directories, and a manifest.
fn site_backup(layout: &Layout, snap: &Snapshot, a: BackupArgs) -> PlanResult<Planned> {
    let ctx = site_ctx(layout, snap)?;
    let trees = backup_trees(layout, &ctx, None);
    backup_planned(layout, snap, &ctx, a, trees)
}

fn check_stamp(stamp: &str) -> PlanResult<()> {
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(PlanError::Args(format!("bad stamp {stamp:?}")));
    }
    Ok(())
}

/// The directories a backup archives: the site's directory in the platform (less generated caches) as
/// `site`, and its state directory (less temp files, logs and the SQLite file, which is dumped instead)
/// as `state`. After a restore (`replaced_by`: its stamp), the `files` and `private` directories it
/// set aside are archived in place of the live ones.
fn backup_trees(layout: &Layout, ctx: &SiteCtx, replaced_by: Option<&str>) -> Vec<BackupTree> {
    let caches = ["css", "js", "php"];
    let mut trees = Vec::new();
    let mut tree = |name: &str, path: String, exclude: Vec<String>| {
        trees.push(BackupTree { name: name.into(), path, exclude });
    };
    if let Some(platform_dir) = App::of(ctx.platform).platform_site_dir(ctx) {
        match replaced_by {
            None => tree("site", platform_dir, caches.iter().map(|c| format!("files/{c}")).collect()),
            Some(stamp) => {
                tree("site", platform_dir.clone(), vec!["files".into(), set_aside_name("files", stamp)]);
                let old_files = format!("{platform_dir}/{}", set_aside_name("files", stamp));
                tree("site/files", old_files, caches.iter().map(|c| c.to_string()).collect());
            }
        }
    }
    let mut state_exclude: Vec<String> = ["tmp", "db", "log"].iter().map(|d| d.to_string()).collect();
    let content_dirs = App::of(ctx.platform).state_content_dirs();
    if let Some(stamp) = replaced_by {
        for dir in content_dirs {
            state_exclude.extend([dir.to_string(), set_aside_name(dir, stamp)]);
        }
    }
    tree("state", layout.site_dir(ctx.site), state_exclude);
    if let Some(stamp) = replaced_by {
        for dir in content_dirs {
            let aside = format!("{}/{}", layout.site_dir(ctx.site), set_aside_name(dir, stamp));
            tree(&format!("state/{dir}"), aside, vec![]);
        }
    }
    trees
}

/// Where a restore sets a live directory (`files`, `private`) aside until its archive is made.
fn set_aside_name(dir: &str, stamp: &str) -> String {
    format!("{dir}.before-restore-{stamp}")
}

/// Plans a backup of `ctx`'s site (whose database may be an old one a restore replaced) from `trees`.
fn backup_planned(
    layout: &Layout,
    snap: &Snapshot,
    ctx: &SiteCtx,
    a: BackupArgs,
    trees: Vec<BackupTree>,
) -> PlanResult<Planned> {
    let site = ctx.site;
    if !matches!(site.status, SiteStatus::Enabled | SiteStatus::Disabled) {
        return Err(PlanError::Refused(format!("site {} is {}: nothing to back up", site.domain, site.status)));
    }
    check_stamp(&a.stamp)?;
    let dir = format!("{}/{}", layout.backups_dir(), site.domain);
    let archive = format!("{dir}/{}-{}.{}", site.domain, a.stamp, a.compression.extension());
    let manifest = serde_json::json!({
        "format": 1,
        "fjord_version": env!("CARGO_PKG_VERSION"),
        "site": site,
        "platform": ctx.platform.name,
        "app": ctx.platform.app,
        "app_version": ctx.platform.app_version,
        "db_engine": site.db_engine,
        "stamp": a.stamp,
        "kind": a.kind,
    });
    let mut plan = Plan::default();
    plan.push(Step::MakeDir { path: layout.backups_dir(), mode: 0o700, owner: None });
    plan.push(Step::MakeDir { path: dir, mode: 0o700, owner: None });
    let (dump, cache_tables) = db::backup_dump(ctx, App::of(ctx.platform).cache_tables())?;
    let method = if a.logical { BackupMethod::Logical } else { a.method };
    let physical = match method {
        BackupMethod::Logical => None,
        _ => db::physical(db_server(snap, site), ctx, true)?.map(|p| PhysicalDb {
            min_bytes: if method == BackupMethod::Auto { PHYSICAL_BACKUP_MIN_BYTES } else { 0 },
            ..p
        }),
    };
    plan.push(Step::Backup {
        archive: archive.clone(),
        dump: Some(dump),
        trees,
        manifest,
        compression: a.compression,
        physical,
        cache_tables,
    });
    Ok(Planned {
        plan,
        on_success: vec![StateChange::BackupRecorded {
            site: site.id,
            path: archive,
            kind: a.kind,
            size: 0,
            checksum: String::new(),
        }],
        on_failure: vec![],
    })
}

/// Restores a site from a backup: the archive is checked and unpacked, its dump loaded into a *new*
/// database, the site's files swapped in (the live ones set aside), and the settings pointed at the new
/// database. Any failure undoes it all and leaves the site as it was, still served. Nothing of the old
/// state is removed here: once the restored site serves, a `site-archive-replaced` task archives the
/// old database and directories (the pre-restore backup) and only then removes them. Archiving them
/// before the restore, as the live site, took longer than the restore itself and delayed it.
fn site_restore(layout: &Layout, snap: &Snapshot, a: RestoreArgs) -> PlanResult<Planned> {
    let ctx = site_ctx(layout, snap)?;
    let site = ctx.site;
    let stamp_ok = check_stamp(&a.stamp).is_ok();
    let archive_ok = a.archive.starts_with(&format!("{}/", layout.backups_dir()))
        && !a.archive.contains("/../")
        && Compression::of_path(&a.archive).is_some();
    if !stamp_ok || !archive_ok || a.sha256.len() != 64 {
        return Err(PlanError::Args("a restore needs a recorded backup archive, its checksum and a stamp".into()));
    }
    if matches!(site.status, SiteStatus::Queued | SiteStatus::Failed) {
        // A new record for a site that was deleted: nothing live to keep aside.
        return moves::site_restore_new(layout, snap, a);
    }
    if !matches!(site.status, SiteStatus::Enabled | SiteStatus::Disabled) {
        return Err(PlanError::Refused(format!("site {} is {}: nothing to restore", site.domain, site.status)));
    }
    let mut plan = Plan::default();
    let staging = format!("{}/restore-{}-{}", layout.backups_dir(), site.domain, a.stamp);
    plan.push(Step::Extract { archive: a.archive.clone(), sha256: a.sha256.clone(), dest: staging.clone() });

    // A new database for the restored data, named after the old one and the stamp.
    let mut restored = site.clone();
    restored.db_name = moves::new_db_name(site, 'r', &a.stamp);
    let mut snap2 = snap.clone();
    snap2.site = Some(restored.clone());
    let ctx2 = site_ctx(layout, &snap2)?;
    plan.extend(moves::create_new_database(db_server(snap, site), &restored)?);
    plan.push(moves::load_database(db_server(snap, site), &ctx2, &staging, "into the new database")?);

    // The site's files: the current ones step aside, the backup's take their place.
    let app = App::of(ctx.platform);
    let mut swaps: Vec<(String, &str, String)> = app
        .state_content_dirs()
        .iter()
        .map(|dir| (layout.site_dir(site), *dir, format!("{staging}/state/{dir}")))
        .collect();
    if let Some(dir) = app.platform_site_dir(&ctx) {
        swaps.push((dir, "files", format!("{staging}/site/files")));
    }
    let mut written = Vec::new();
    for (parent, dir, from_backup) in swaps {
        let live = format!("{parent}/{dir}");
        plan.push(Step::Move { from: live.clone(), to: format!("{parent}/{}", set_aside_name(dir, &a.stamp)) });
        plan.push(Step::Move { from: from_backup, to: live.clone() });
        written.push(live);
    }

    // Settings now name the new database; everything else is regenerated as by verify.
    let SiteFiles { php_watch, vhost, .. } = site_files(&ctx2, app, serving(site.status), &written, &mut plan)?;
    plan.push(services::php_reload(layout, &snap.server, ctx.php, php_watch));
    plan.push(services::web_reload(layout, &snap.server, vec![vhost])?);
    plan.extend(http_check(layout, &snap.server, site, site.status));
    plan.push(moves::commit());
    plan.push(Step::RemovePath { path: staging });
    let replaced = ArchiveReplacedArgs { stamp: a.stamp.clone(), db_name: site.db_name.clone() };
    let on_success = vec![
        StateChange::SiteDbName { site: site.id, db_name: restored.db_name.clone() },
        StateChange::FollowUp {
            kind: TaskKind::SiteArchiveReplaced,
            target: site.id.0,
            args: serde_json::to_value(replaced).expect("args serialize"),
        },
    ];
    Ok(Planned { plan, on_success, on_failure: vec![] })
}

/// After a restore: archives the database and directories it replaced as the site's pre-restore backup,
/// then removes them. Until the archive is written, nothing is removed: a failure here leaves the old
/// data where the restore set it aside, and a retry archives it again.
fn site_archive_replaced(layout: &Layout, snap: &Snapshot, a: ArchiveReplacedArgs) -> PlanResult<Planned> {
    let (mut planned, removals) = archive_replaced(layout, snap, a)?;
    // Only now, what cannot be undone: the old data goes.
    planned.plan.push(moves::commit());
    planned.plan.extend(removals);
    Ok(planned)
}

/// The pre-restore backup of what a restore replaced (`a`), and the steps that then remove it, which
/// must come after the task's commit mark.
fn archive_replaced(layout: &Layout, snap: &Snapshot, a: ArchiveReplacedArgs) -> PlanResult<(Planned, Vec<Step>)> {
    let site = site_of(snap)?;
    check_stamp(&a.stamp)?;
    if a.db_name == site.db_name || a.db_name.is_empty() {
        // Never the live database: this task drops the one it archives.
        return Err(PlanError::Refused(format!(
            "database {:?} is the one site {} uses: it is not a replaced one",
            a.db_name, site.domain
        )));
    }
    let mut old = site.clone();
    old.db_name = a.db_name.clone();
    let mut old_snap = snap.clone();
    old_snap.site = Some(old.clone());
    let ctx = site_ctx(layout, &old_snap)?;
    let trees = backup_trees(layout, &ctx, Some(&a.stamp));
    let aside: Vec<String> = trees.iter().filter(|t| t.name.contains('/')).map(|t| t.path.clone()).collect();
    let kind = BackupKind::PreRestore;
    let stamp = format!("{}-pre-restore", a.stamp);
    let planned = backup_planned(layout, snap, &ctx, BackupArgs { kind, stamp, ..Default::default() }, trees)?;
    let mut removals: Vec<Step> = aside.into_iter().map(|path| Step::RemovePath { path }).collect();
    if site.db_engine == DbEngine::Sqlite {
        removals.push(Step::RemovePath { path: ctx.db.database.clone() });
    } else if let Some(step) = db::drop_database(db_server(snap, site), &old)? {
        removals.push(step);
    }
    Ok((planned, removals))
}

/// Deletes a site, after its pre-delete backup. Data a restore replaced whose archiving failed
/// (`facts.unarchived_replaced`) is archived first, as that follow-up would have, and removed with the
/// site: otherwise its old database would stay behind on the server, belonging to no site.
fn site_delete(layout: &Layout, snap: &Snapshot, a: DeleteArgs, facts: &Facts) -> PlanResult<Planned> {
    let site = site_of(snap)?;
    if !matches!(site.status, SiteStatus::Disabled | SiteStatus::Failed) && !a.force {
        return Err(PlanError::Refused(format!(
            "site {} is {}; disable it first (or delete with --force)",
            site.domain, site.status
        )));
    }
    let ctx = site_ctx(layout, snap)?;
    let app = App::of(ctx.platform);
    let mut plan = Plan::default();
    let mut on_success = vec![StateChange::SiteStatus { site: site.id, status: SiteStatus::Deleted }];
    if let (Some(stamp), SiteStatus::Enabled | SiteStatus::Disabled) = (&a.backup_stamp, site.status) {
        // Nothing is lost: the site can come back from this backup.
        let pre = site_backup(
            layout,
            snap,
            BackupArgs { kind: BackupKind::PreDelete, stamp: format!("{stamp}-pre-delete"), ..Default::default() },
        )?;
        plan.extend(pre.plan.steps);
        on_success.extend(pre.on_success);
    }
    let mut replaced_removals = Vec::new();
    if matches!(site.status, SiteStatus::Enabled | SiteStatus::Disabled) {
        for replaced in &facts.unarchived_replaced {
            let (archive, removals) = archive_replaced(layout, snap, replaced.clone())?;
            plan.extend(archive.plan.steps);
            on_success.extend(archive.on_success);
            replaced_removals.extend(removals);
        }
    }
    // First stop serving it, then remove what it had.
    let vhost = layout.vhost_path(&snap.server, site);
    plan.push(Step::RemovePath { path: vhost.clone() });
    plan.push(services::web_reload(layout, &snap.server, vec![vhost])?);
    let pool = layout.php_pool(&snap.server, ctx.php.key(), site);
    plan.push(Step::RemovePath { path: pool.clone() });
    plan.push(services::php_reload(layout, &snap.server, ctx.php, vec![pool]));
    for f in app.external_files(&ctx) {
        plan.push(Step::RemovePath { path: f });
    }
    if let Some(dir) = app.platform_site_dir(&ctx) {
        plan.push(Step::RemovePath { path: dir });
    }
    plan.push(Step::RemovePath { path: layout.site_dir(site) });
    plan.push(Step::RemovePath { path: layout.stamp_path(&format!("site-{}-db", site.id)) });
    // Its certificate and key go with it.
    plan.push(Step::RemovePath { path: layout.tls_dir(site) });
    // Dropping the database and the site's Unix user cannot be undone, so they come last: anything
    // before can still fail and roll back to a whole site. A client's user stays for its other sites.
    let drop_db = db::drop_site_db(db_server(snap, site), site)?;
    let drop_user = (site.isolation == Isolation::Site).then(|| Step::RemoveUnixUser { name: layout.php_user(site) });
    if drop_db.is_some() || drop_user.is_some() || !replaced_removals.is_empty() {
        plan.push(moves::commit());
    }
    plan.extend(drop_db);
    plan.extend(replaced_removals);
    plan.extend(drop_user);
    Ok(Planned { plan, on_success, on_failure: vec![] })
}

fn enabled_ctx<'a>(layout: &'a Layout, snap: &'a Snapshot, what: &str) -> PlanResult<SiteCtx<'a>> {
    let ctx = site_ctx(layout, snap)?;
    if ctx.site.status != SiteStatus::Enabled {
        return Err(PlanError::Refused(format!("site {} is {}: no {what}", ctx.site.domain, ctx.site.status)));
    }
    Ok(ctx)
}

fn site_login_link(layout: &Layout, snap: &Snapshot) -> PlanResult<Planned> {
    let ctx = enabled_ctx(layout, snap, "login link")?;
    let mut plan = Plan::default();
    plan.push(App::of(ctx.platform).login_link(&ctx)?);
    Ok(Planned { plan, ..Default::default() })
}

fn site_cron(layout: &Layout, snap: &Snapshot) -> PlanResult<Planned> {
    let ctx = enabled_ctx(layout, snap, "cron")?;
    let mut plan = Plan::default();
    if let Some(step) = App::of(ctx.platform).cron(&ctx)? {
        plan.push(step);
    }
    Ok(Planned { plan, on_success: vec![StateChange::SiteCronRan { site: ctx.site.id }], on_failure: vec![] })
}

#[cfg(test)]
mod tests;

/// Obtains and installs a site's certificate (issue, renew, replace, self-signed or uploaded), then
/// serves it: the vhost gains its HTTPS server (and the redirect when HTTPS is required), one checked
/// reload. A failure leaves the previous certificate and vhost serving, and is recorded on the site.
fn site_cert(layout: &Layout, snap: &Snapshot, a: CertArgs) -> PlanResult<Planned> {
    let ctx = site_ctx(layout, snap)?;
    let site = ctx.site;
    if !matches!(site.status, SiteStatus::Enabled | SiteStatus::Disabled) {
        return Err(PlanError::Refused(format!("site {} is {}: no certificate for it", site.domain, site.status)));
    }
    if site.https == HttpsMode::Off {
        return Err(PlanError::Refused(format!(
            "site {} has HTTPS off: turn it on first (fjord site https {} --mode on)",
            site.domain, site.domain
        )));
    }
    let names: Vec<String> = site.all_domains().map(|d| d.to_string()).collect();
    let mut plan = Plan::default();
    plan.push(Step::MakeDir { path: layout.acme_dir(), mode: 0o755, owner: None });
    plan.push(Step::Certificate {
        domain: site.domain.to_string(),
        names: names.clone(),
        dir: layout.tls_dir(site),
        acme_dir: layout.acme_dir(),
        request: a.request.clone(),
    });
    // The vhost as it will be with a certificate installed.
    let mut with_cert = site.clone();
    with_cert.tls.source = a.request.source();
    if !with_cert.tls.installed() {
        with_cert.tls.names = names;
    }
    let app = App::of(ctx.platform);
    let vhost = layout.vhost_path(ctx.server, site);
    plan.push(Step::WriteFile {
        path: vhost,
        content: FileContent::Text {
            text: render::vhost(
                layout,
                ctx.server,
                ctx.platform,
                &with_cert,
                app.vhost_flavour(),
                serving(site.status),
            )?,
        },
        mode: 0o644,
        owner: None,
    });
    // Always reload: the certificate files changed even when the vhost did not.
    plan.push(services::web_reload(layout, &snap.server, vec![])?);
    plan.extend(http_check(layout, &snap.server, site, site.status));
    if let CertRequest::Acme { revoke_old: true, .. } = &a.request {
        // Only once the new certificate serves: revoking cannot be undone.
        plan.push(moves::commit());
        plan.push(Step::RevokeReplaced { dir: layout.tls_dir(site), request: a.request.clone() });
    }
    let meta_path = format!("{}/cert.json", layout.tls_dir(site));
    Ok(Planned {
        plan,
        on_success: vec![StateChange::CertInstalled { site: site.id, meta_path, meta: None }],
        on_failure: vec![StateChange::CertFailed { site: site.id, error: String::new(), retry_at: 0 }],
    })
}
