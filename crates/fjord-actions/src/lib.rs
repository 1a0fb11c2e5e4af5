//! The one way in: what the CLI, the API, the UI and the daemon do when a change is asked for. Each
//! action validates its input into model values and describes the change as data (a
//! [`fjord_core::Change`]: desired state and the tasks that apply it). [`Actions::submit`] plans every
//! task against a snapshot with the change applied in memory (a refusal is an error, nothing written;
//! a dry run stops there and returns the plan), then records the change and queues its tasks in one
//! transaction. Permission checks are not here: callers check who asks first (the HTTP side's
//! `Actor`; the CLI runs as the operator).
//!
//! The request types (`SiteCreate`, …) are the JSON bodies of the API and the forms of the UI alike.
//! Errors are [`ActionError`]s, which the HTTP side maps to statuses and the CLI to messages.

pub mod accounts;
pub mod error;
mod import;
pub mod planning;

pub use error::{ActionError, ActionResult};
/// Offsite storage settings, for callers that pass them on (the HTTP side's settings).
pub use fjord_exec::offsite::OffsiteConfig;
pub use import::{drupal_db_settings, SiteImport};

use fjord_core::names::{validate_abs_path, validate_token};
use fjord_core::*;
use fjord_plan::Layout;
use fjord_store::{NewPlatform, NewSite, Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod restore;
mod servers;
mod site_settings;
pub use servers::{
    cloudflare_urls, DbServiceCreate, PhpCreate, PhpRuntimeAdd, ProxyRangesRefresh, RealIpSet, ServerCreate, WebSwitch,
    CLOUDFLARE,
};
pub use site_settings::{parse_isolation, CertChange, HttpsChange, PhpLimitsChange, SyncRequest};

/// What every action needs: the state database and the host layout planners derive paths from.
#[derive(Debug, Clone, Copy)]
pub struct Actions<'a> {
    pub store: &'a Store,
    pub layout: &'a Layout,
}

/// What a change request came to: its task queued, or (a dry run) the plan it would run.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Queued(Task),
    Planned(Planned),
}

impl Outcome {
    /// The queued task, if it was not a dry run.
    pub fn task(&self) -> Option<&Task> {
        match self {
            Outcome::Queued(t) => Some(t),
            Outcome::Planned(_) => None,
        }
    }

    /// The queued task of a request that asked for no dry run (a plan here is a bug).
    pub fn queued(self) -> ActionResult<Task> {
        match self {
            Outcome::Queued(t) => Ok(t),
            Outcome::Planned(_) => Err(ActionError::Internal("a dry run where none was asked".into())),
        }
    }
}

/// A new site, as the API's JSON body, the UI's form and `fjord site create` give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteCreate {
    pub domain: String,
    /// The platform's name.
    pub platform: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Add `www.DOMAIN` as an alias.
    #[serde(default)]
    pub www: bool,
    /// `mariadb` (default), `postgres` or `sqlite`.
    #[serde(default = "default_db_engine")]
    pub db_engine: String,
    /// The database server's name; default: the platform's server.
    #[serde(default)]
    pub db_server: Option<String>,
    #[serde(default)]
    pub php: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default = "default_language")]
    pub language: String,
    /// The client's name.
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub redirect_aliases: bool,
    /// `off` (default), `on` or `required`.
    #[serde(default = "default_https")]
    pub https: String,
    /// Seconds between cron runs; 0 turns cron off. Default 3600.
    #[serde(default = "default_cron")]
    pub cron_interval: i64,
}

fn default_db_engine() -> String {
    "mariadb".into()
}
fn default_language() -> String {
    "en".into()
}
fn default_https() -> String {
    "off".into()
}
fn default_cron() -> i64 {
    3600
}

/// A platform-wide migrate, as the API's JSON body, the UI's form and `fjord platform migrate` give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformMigrate {
    /// The platform the sites move to (name).
    pub to: String,
    /// Most sites migrating at the same time (1 to 64; default 1).
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Migrate this many sites first; if any of them does not migrate, the rest are skipped.
    #[serde(default)]
    pub canary: usize,
    /// Move every site through a maintenance window, even those the new code has no database
    /// updates for (which otherwise switch live, served throughout).
    #[serde(default)]
    pub maintenance: bool,
    /// Only report what would happen to each site (with its module schema check); change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_parallel() -> usize {
    1
}

/// Most site migrates a batch may run at once.
pub const MAX_PARALLEL: usize = 64;

/// A new platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformCreate {
    pub name: String,
    /// The server's name; default: the only server.
    #[serde(default)]
    pub server: Option<String>,
    /// An existing codebase on the server (absolute path). Exactly one of path, git, composer, archive.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub git: Option<String>,
    #[serde(default)]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub composer: Option<String>,
    #[serde(default)]
    pub archive: Option<String>,
}

/// A new client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCreate {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    /// Most sites the client may have; none is unlimited.
    #[serde(default)]
    pub site_quota: Option<i64>,
}

/// A new user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// `admin`, `platform-manager` or `client`.
    pub role: String,
    pub password: String,
    /// The clients (by name) a client user belongs to.
    #[serde(default)]
    pub clients: Vec<String>,
}

pub fn parse_enum<T: std::str::FromStr<Err = String>>(field: &str, s: &str) -> ActionResult<T> {
    s.parse().map_err(|e| ActionError::invalid(field, format!("invalid {field}: {e}")))
}

fn parse_aliases(aliases: &[String]) -> ActionResult<Vec<Domain>> {
    Ok(aliases.iter().map(|a| Domain::parse_field("alias", a)).collect::<Result<Vec<_>, _>>()?)
}

/// The stamp naming a backup or a move made now.
pub fn stamp_now() -> String {
    fjord_core::backups::backup_stamp(fjord_store::now_millis())
}

/// Arguments of a manual backup, its database copied by `method`.
pub fn backup_args(compression: Compression, method: BackupMethod) -> serde_json::Value {
    let mut args = serde_json::json!({ "kind": "manual", "stamp": stamp_now(), "compression": compression });
    if method != BackupMethod::Auto {
        args["method"] = serde_json::json!(method);
    }
    args
}

/// Arguments of a delete: `backup` takes a pre-delete backup first (the default everywhere).
pub fn delete_args(force: bool, backup: bool) -> serde_json::Value {
    serde_json::json!({ "force": force, "backup_stamp": backup.then(stamp_now) })
}

/// Arguments of a migrate (or rename, when `to` is the site's own platform), stamped now.
pub fn migrate_args(to: PlatformId, new_domain: Option<&Domain>, keep_old: bool) -> serde_json::Value {
    let mut args = serde_json::json!({ "to_platform": to.0, "keep_old_domain": keep_old, "stamp": stamp_now() });
    if let Some(d) = new_domain {
        args["domain"] = serde_json::json!(d);
    }
    args
}

/// Arguments of restoring `backup` onto its (live) site.
pub fn restore_args(backup: &Backup) -> serde_json::Value {
    serde_json::json!({ "archive": backup.path, "sha256": backup.checksum, "stamp": stamp_now() })
}

/// A site's aliases after adding and removing some: refuses removing one it does not have or adding one
/// twice.
pub fn changed_aliases(site: &Site, add: &[String], remove: &[String], www: bool) -> ActionResult<Vec<Domain>> {
    let mut aliases = site.aliases.clone();
    let mut adding = parse_aliases(add)?;
    if www {
        adding.extend(site.domain.with_www());
    }
    for r in remove {
        let r = Domain::parse_field("alias", r)?;
        if !aliases.contains(&r) {
            return Err(ActionError::invalid("remove", format!("{r} is not an alias of {}", site.domain)));
        }
        aliases.retain(|a| a != &r);
    }
    for a in adding {
        if aliases.contains(&a) {
            return Err(ActionError::invalid("add", format!("{a} is already an alias of {}", site.domain)));
        }
        aliases.push(a);
    }
    Ok(aliases)
}

impl<'a> Actions<'a> {
    /// Deletes a backup: its offsite copy first (so a failure there leaves everything in place), then
    /// the archive and its checksum file, then the record. Not a task: nothing on a site changes.
    /// Refused while a task of its site is queued or running (a restore may be reading it).
    pub async fn delete_backup(
        &self,
        id: BackupId,
        offsite: Option<&fjord_exec::offsite::OffsiteConfig>,
    ) -> ActionResult<Backup> {
        let b = self.store.backup(id).await?;
        let backups_dir = format!("{}/backups/", self.layout.state_dir.trim_end_matches('/'));
        if !b.path.starts_with(&backups_dir) || b.path.contains("/../") {
            return Err(ActionError::Conflict(format!(
                "backup {} is not under this state dir's backups/: not removing {}",
                id.0, b.path
            )));
        }
        let busy = self.store.active_tasks_on(TargetKind::Site, b.site_id.0).await?;
        if busy > 0 {
            return Err(ActionError::Conflict(format!(
                "backup {}: its site has {busy} task(s) queued or running; try again when they are done",
                id.0
            )));
        }
        if let Some(loc) = &b.offsite {
            let Some(cfg) = offsite else {
                return Err(ActionError::Conflict(format!(
                    "backup {} has an offsite copy ({loc}): configure [offsite] to delete it too",
                    id.0
                )));
            };
            let store = fjord_exec::offsite::Offsite::open(cfg).map_err(|e| ActionError::Internal(format!("{e:#}")))?;
            store.delete(loc).await.map_err(|e| ActionError::Internal(format!("{e:#}")))?;
        }
        let path = std::path::Path::new(&b.path);
        fjord_exec::fsops::remove_all(path).map_err(|e| ActionError::Internal(format!("{e:#}")))?;
        fjord_exec::fsops::remove_all(&fjord_exec::backup::checksum_path(path))
            .map_err(|e| ActionError::Internal(format!("{e:#}")))?;
        self.store.delete_backup(b.id).await?;
        Ok(b)
    }

    pub fn new(store: &'a Store, layout: &'a Layout) -> Actions<'a> {
        Actions { store, layout }
    }

    /// Plans a task on an object not recorded yet (a new server's first verify, a site's install, clone
    /// or restore) against `snap`; a refusal is the error.
    pub fn plan_new(&self, kind: TaskKind, args: &serde_json::Value, snap: &Snapshot) -> ActionResult<Planned> {
        planning::plan_new(self.layout, kind, args, snap)
    }

    /// Plans a task on an existing object now, against the current state, without queueing it.
    pub async fn plan(&self, kind: TaskKind, target_id: i64, args: &serde_json::Value) -> ActionResult<Planned> {
        let task = NewTask::new(kind, target_id, args.clone(), "");
        planning::plan_prospective(self.store, self.layout, &task, &[]).await
    }

    /// The one way a change is made: plans each of its tasks with the change applied (a refusal is the
    /// error, and nothing is written); a dry run returns the first task's plan and writes nothing;
    /// otherwise the desired state and the tasks are recorded in one transaction, and the first task
    /// is returned.
    pub async fn submit(&self, change: Change, dry_run: bool) -> ActionResult<Outcome> {
        if change.tasks.is_empty() {
            return Err(ActionError::Internal("a change without a task".into()));
        }
        let mut plans = self.plan_change(&change).await?;
        if dry_run {
            return Ok(Outcome::Planned(plans.remove(0)));
        }
        let mut tasks = self.store.commit_change(&change).await?;
        Ok(Outcome::Queued(tasks.remove(0)))
    }

    /// Plans every task of `change` with its desired state applied; a refusal is the error.
    pub async fn plan_change(&self, change: &Change) -> ActionResult<Vec<Planned>> {
        let mut plans = Vec::new();
        for task in &change.tasks {
            plans.push(planning::plan_prospective(self.store, self.layout, task, &change.desired).await?);
        }
        Ok(plans)
    }

    /// Checks the task would be accepted (plans it), then queues it.
    pub async fn enqueue(
        &self,
        kind: TaskKind,
        target_id: i64,
        args: serde_json::Value,
        created_by: &str,
    ) -> ActionResult<Task> {
        self.run(kind, target_id, args, created_by, false).await?.queued()
    }

    /// [`Actions::enqueue`], or with `dry_run` the plan it would run.
    pub async fn run(
        &self,
        kind: TaskKind,
        target_id: i64,
        args: serde_json::Value,
        created_by: &str,
        dry_run: bool,
    ) -> ActionResult<Outcome> {
        self.submit(Change::task(NewTask::new(kind, target_id, args, created_by)), dry_run).await
    }

    async fn client_id(&self, name: Option<&str>) -> ActionResult<Option<ClientId>> {
        Ok(match name {
            Some(name) => Some(self.store.client_by_name(name).await.map_err(|e| field_not_found(e, "client"))?.id),
            None => None,
        })
    }

    /// Validates a new site against the state (names free, quota, platform, database server, PHP) and
    /// plans its install, writing nothing.
    pub async fn prepare_site(&self, c: &SiteCreate) -> ActionResult<(NewSite, Planned)> {
        let domain = Domain::parse(&c.domain)?;
        let mut aliases = parse_aliases(&c.aliases)?;
        if c.www {
            match domain.with_www() {
                Some(www) if !aliases.contains(&www) => aliases.push(www),
                _ => {}
            }
        }
        let db_engine: DbEngine = parse_enum("db_engine", &c.db_engine)?;
        let https: HttpsMode = parse_enum("https", &c.https)?;
        if c.cron_interval < 0 {
            return Err(ActionError::invalid("cron_interval", "cron_interval must not be negative"));
        }
        if let Some(p) = &c.profile {
            Name::parse("profile", p)?;
        }
        if let Some(v) = &c.php {
            validate_token("php", v, 16)?;
        }
        if c.language.len() > 12
            || c.language.is_empty()
            || !c.language.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ActionError::invalid(
                "language",
                format!("invalid language {:?}: use a language code such as en or pt-br", c.language),
            ));
        }
        let platform = self.store.platform_by_name(&c.platform).await.map_err(|e| field_not_found(e, "platform"))?;
        let server = self.store.server(platform.server_id).await?;
        let db_server = match &c.db_server {
            Some(name) => Some(self.store.server_by_name(name).await.map_err(|e| field_not_found(e, "db_server"))?),
            None => None,
        };
        let db_host = db_server.as_ref().unwrap_or(&server);
        if db_engine != DbEngine::Sqlite && !db_host.db_engines().any(|e| e == db_engine) {
            return Err(ActionError::invalid(
                "db_engine",
                format!(
                    "server {} offers no {db_engine} database; add it to the server or choose the sqlite engine",
                    db_host.name
                ),
            ));
        }
        if let Some(v) = &c.php {
            if !server.php_versions().any(|have| have == v) {
                return Err(ActionError::invalid("php", format!("server {} has no PHP {v} runtime", server.name)));
            }
        }
        let client = self.client_id(c.client.as_deref()).await?;
        let new = NewSite {
            domain,
            platform: platform.id,
            db_server: db_server.as_ref().map(|s| s.id).or(Some(server.id)).filter(|_| db_engine != DbEngine::Sqlite),
            db_engine,
            php: c.php.clone(),
            profile: c.profile.clone(),
            language: c.language.clone(),
            client,
            aliases,
            redirect_aliases: c.redirect_aliases,
            https,
            cron_interval: (c.cron_interval > 0).then_some(c.cron_interval),
            existing_db: None,
        };
        let prospective = self.store.prepare_site(&new).await?;
        let server_id = server.id;
        let snap = Snapshot {
            db_server: db_server.filter(|d| d.id != server_id),
            ..Snapshot::of_new_site(server, platform, prospective)
        };
        let planned = self.plan_new(TaskKind::SiteInstall, &serde_json::json!({}), &snap)?;
        Ok((new, planned))
    }

    /// Records a new site and queues its install.
    pub async fn create_site(&self, c: &SiteCreate, created_by: &str) -> ActionResult<(Site, Task)> {
        let (new, _) = self.prepare_site(c).await?;
        Ok(self.store.create_site(&new, created_by).await?)
    }

    /// A new site record like `src` (database server and engine, PHP, profile, client, cron) under
    /// `domain` on `platform`. HTTPS is never copied: the new domain needs its own certificate.
    pub fn site_like(&self, src: &Site, domain: Domain, platform: &Platform, aliases: Vec<Domain>) -> NewSite {
        NewSite {
            domain,
            platform: platform.id,
            db_server: src.db_server_id,
            db_engine: src.db_engine,
            php: src.php.clone(),
            profile: src.profile.clone(),
            language: src.language.clone(),
            client: src.client_id,
            aliases,
            redirect_aliases: src.redirect_aliases,
            https: HttpsMode::Off,
            cron_interval: src.cron_interval,
            existing_db: None,
        }
    }

    /// The snapshot a task on a site not recorded yet is planned against (checking the domain is free
    /// and the client's quota), with the site it comes from, if any, as the other site.
    pub async fn new_site_snapshot(
        &self,
        new: &NewSite,
        platform: Platform,
        other_site: Option<Site>,
        other_platform: Option<Platform>,
    ) -> ActionResult<Snapshot> {
        let prospective = self.store.prepare_site(new).await?;
        let server = self.store.server(platform.server_id).await?;
        let db_server = match new.db_server {
            Some(id) if id != server.id => Some(self.store.server(id).await?),
            _ => None,
        };
        Ok(Snapshot { db_server, other_site, other_platform, ..Snapshot::of_new_site(server, platform, prospective) })
    }

    /// Validates a clone of `src` as `domain` (on `platform`, default the source's) and plans it.
    pub async fn prepare_clone(
        &self,
        src: &Site,
        domain: &str,
        platform: Option<&str>,
        aliases: &[String],
    ) -> ActionResult<(NewSite, serde_json::Value, Planned)> {
        let src_platform = self.store.platform(src.platform_id).await?;
        let platform = match platform {
            Some(name) => self.store.platform_by_name(name).await.map_err(|e| field_not_found(e, "platform"))?,
            None => src_platform.clone(),
        };
        let new = self.site_like(src, Domain::parse(domain)?, &platform, parse_aliases(aliases)?);
        let args = serde_json::json!({ "source_site": src.id.0 });
        let snap = self.new_site_snapshot(&new, platform, Some(src.clone()), Some(src_platform)).await?;
        let planned = self.plan_new(TaskKind::SiteClone, &args, &snap)?;
        Ok((new, args, planned))
    }

    /// Records the clone (checked like a create: free domain, the client's quota) and queues it.
    pub async fn clone_site(
        &self,
        src: &Site,
        domain: &str,
        platform: Option<&str>,
        aliases: &[String],
        created_by: &str,
    ) -> ActionResult<(Site, Task)> {
        let (new, args, _) = self.prepare_clone(src, domain, platform, aliases).await?;
        let (site, task) = self.store.create_site_with(&new, created_by, Some((TaskKind::SiteClone, args))).await?;
        Ok((site, task.expect("a task was asked for")))
    }

    /// The arguments of migrating `site` to the platform named `to` (with a new domain: a rename).
    pub async fn migrate_args(
        &self,
        site: &Site,
        to: &str,
        new_domain: Option<&str>,
        keep_old: bool,
        db_server: Option<&str>,
    ) -> ActionResult<serde_json::Value> {
        let target = self.store.platform_by_name(to).await.map_err(|e| field_not_found(e, "platform"))?;
        let new_domain = new_domain.map(|d| Domain::parse_field("new domain", d)).transpose()?;
        if let Some(d) = &new_domain {
            // The new name must be free, or one of this site's own aliases.
            match self.store.site_by_domain(d).await {
                Ok(owner) if owner.id != site.id => {
                    return Err(ActionError::invalid("new_domain", format!("{d} is already used by another site")))
                }
                _ => {}
            }
        }
        let mut args = migrate_args(target.id, new_domain.as_ref(), keep_old);
        if let Some(name) = db_server {
            args["db_server"] = serde_json::json!(
                self.store.server_by_name(name).await.map_err(|e| field_not_found(e, "db_server"))?.id.0
            );
        }
        Ok(args)
    }

    /// The restore arguments for `backup` of `site`, refusing another site's backup.
    pub async fn restore_args(&self, site: &Site, backup: BackupId) -> ActionResult<serde_json::Value> {
        // Another site's backup and one that does not exist get the same answer: whoever asks about a
        // site learns nothing of the others' backups.
        let not_this_sites =
            || ActionError::invalid("backup", format!("backup {backup} is not a backup of {}", site.domain));
        match self.store.backup(backup).await {
            Ok(b) if b.site_id == site.id => Ok(restore_args(&b)),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(not_this_sites()),
            Err(e) => Err(e.into()),
        }
    }

    /// A platform by name, or by id when no platform has that name.
    pub async fn platform_by_name_or_id(&self, name: &str) -> ActionResult<Platform> {
        match self.store.platform_by_name(name).await {
            Err(StoreError::NotFound { .. }) if name.parse::<i64>().is_ok() => {
                let id = name.parse::<i64>().expect("checked above");
                Ok(self.store.platform(PlatformId(id)).await?)
            }
            other => Ok(other?),
        }
    }

    /// Validates a platform migrate of `from`: the target, `parallel`; returns the target and the sites
    /// that would move (the live ones, in the order they move: canaries first).
    async fn platform_migrate_sites(
        &self,
        from: &Platform,
        req: &PlatformMigrate,
    ) -> ActionResult<(Platform, Vec<Site>)> {
        let to = self.store.platform_by_name(req.to.trim()).await.map_err(|e| field_not_found(e, "to"))?;
        if to.id == from.id {
            return Err(ActionError::invalid("to", format!("the sites of {} are already on {}", from.name, to.name)));
        }
        if to.status == ObjectStatus::Deleted {
            return Err(ActionError::invalid("to", format!("platform {} is deleted", to.name)));
        }
        if req.parallel == 0 || req.parallel > MAX_PARALLEL {
            return Err(ActionError::invalid("parallel", format!("parallel must be from 1 to {MAX_PARALLEL}")));
        }
        let sites = self.store.sites_on_platform(from.id).await?;
        let live = sites.into_iter().filter(|s| matches!(s.status, SiteStatus::Enabled | SiteStatus::Disabled));
        Ok((to, live.collect()))
    }

    /// Queues a platform-wide migrate: one `platform-migrate` task, which the daemon runs by queueing
    /// one site-migrate per site (each with its own backup and rollback). The sites are the platform's
    /// live sites now.
    pub async fn platform_migrate(
        &self,
        from: &Platform,
        req: &PlatformMigrate,
        created_by: &str,
    ) -> ActionResult<Task> {
        if req.dry_run {
            return Err(ActionError::invalid("dry_run", "a dry run queues nothing: ask for its preview instead"));
        }
        let (to, sites) = self.platform_migrate_sites(from, req).await?;
        let args = PlatformMigrateArgs {
            to_platform: to.id.0,
            parallel: req.parallel,
            canary: req.canary,
            maintenance: req.maintenance,
            sites: sites.iter().map(|s| BatchSite { id: s.id.0, domain: s.domain.to_string() }).collect(),
        };
        let args = serde_json::to_value(&args).expect("arguments serialize");
        Ok(self.store.enqueue(&NewTask::new(TaskKind::PlatformMigrate, from.id.0, args, created_by)).await?)
    }

    /// The dry run of a platform-wide migrate: what would happen to each site. Each site's migrate is
    /// planned (a refusal is its answer), then its module schema check runs as a read-only
    /// `site-migrate-check` task on the daemon; this waits up to `wait` for those checks.
    pub async fn preview_platform_migrate(
        &self,
        from: &Platform,
        req: &PlatformMigrate,
        created_by: &str,
        wait: std::time::Duration,
    ) -> ActionResult<BatchSummary> {
        let (to, sites) = self.platform_migrate_sites(from, req).await?;
        let refs: Vec<BatchSite> =
            sites.iter().map(|s| BatchSite { id: s.id.0, domain: s.domain.to_string() }).collect();
        let mut summary = BatchSummary::start(from.name.as_str(), to.name.as_str(), &refs);
        summary.dry_run = true;
        for (site, outcome) in sites.iter().zip(summary.sites.iter_mut()) {
            let checked = async {
                self.plan(TaskKind::SiteMigrate, site.id.0, &migrate_args(to.id, None, true)).await?;
                let check = serde_json::json!({ "to_platform": to.id.0 });
                self.enqueue(TaskKind::SiteMigrateCheck, site.id.0, check, created_by).await
            };
            match checked.await {
                Ok(task) => {
                    outcome.result = SiteResult::Running;
                    outcome.task = Some(task.id.0);
                }
                Err(e) => {
                    outcome.result = SiteResult::WouldRefuse;
                    outcome.detail = e.to_string();
                }
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            for o in summary.sites.iter_mut().filter(|o| o.result == SiteResult::Running) {
                let id = TaskId(o.task.expect("a running check has its task"));
                let t = self.store.task(id).await?;
                if !t.status.is_final() {
                    continue;
                }
                // The check's findings, as its result: modules with pending updates or newer schemas.
                let found = self.store.task_report(id).await?;
                let lines: Vec<String> = found
                    .pending
                    .iter()
                    .map(|p| format!("pending: {p}"))
                    .chain(found.refused.iter().map(|r| format!("refused: {r}")))
                    .collect();
                let ok = t.status == TaskStatus::Succeeded;
                o.result = if ok { SiteResult::WouldMigrate } else { SiteResult::WouldRefuse };
                o.detail = match (lines.is_empty(), ok) {
                    (false, _) => lines.join("; "),
                    (true, true) => "no pending updates".into(),
                    (true, false) => t.error.unwrap_or_default(),
                };
            }
            if summary.finished() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        for o in summary.sites.iter_mut().filter(|o| o.result == SiteResult::Running) {
            o.result = SiteResult::Pending;
            o.detail = format!("its schema check (task {}) has not finished yet", o.task.unwrap_or_default());
        }
        Ok(summary)
    }

    /// Records a site's new aliases and queues the verify that writes them into its vhost.
    pub async fn set_aliases(
        &self,
        site: &Site,
        aliases: &[Domain],
        redirect: bool,
        created_by: &str,
        dry_run: bool,
    ) -> ActionResult<Outcome> {
        // The store keeps a site's aliases as a set and reads them back in domain order: recorded in
        // that order, the verify planned now (a dry run's) sees the site as the daemon will.
        let mut aliases = aliases.to_vec();
        aliases.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let desired = DesiredChange::SiteAliases { site: site.id, aliases, redirect };
        let verify = NewTask::new(TaskKind::SiteVerify, site.id.0, serde_json::json!({}), created_by);
        self.submit(Change::with(desired, verify), dry_run).await
    }

    /// Validates a new platform; the caller decides between a dry run and [`Store::add_platform`].
    pub async fn new_platform(&self, p: &PlatformCreate) -> ActionResult<NewPlatform> {
        let name = Name::parse("platform name", &p.name)?;
        let server = match &p.server {
            Some(s) => self.store.server_by_name(s).await.map_err(|e| field_not_found(e, "server"))?,
            None => {
                let mut all = self.store.servers().await?;
                if all.len() != 1 {
                    return Err(ActionError::invalid("server", "say which server: there is not exactly one"));
                }
                all.remove(0)
            }
        };
        let default_root = || format!("{}/platforms/{}", self.layout.state_dir, name);
        let (source, root) = match (&p.path, &p.git, &p.composer, &p.archive) {
            (Some(path), None, None, None) => (PlatformSource::Path, validate_abs_path("path", path)?),
            (None, Some(url), None, None) => (
                PlatformSource::Git {
                    url: validate_token("git", url, 2048)?,
                    git_ref: validate_token("git_ref", p.git_ref.as_deref().unwrap_or("HEAD"), 255)?,
                },
                default_root(),
            ),
            (None, None, Some(pkg), None) => {
                (PlatformSource::Composer { package: validate_token("composer", pkg, 255)? }, default_root())
            }
            (None, None, None, Some(file)) => {
                (PlatformSource::Archive { file: validate_abs_path("archive", file)? }, default_root())
            }
            (None, None, None, None) => {
                return Err(ActionError::invalid(
                    "path",
                    "say where the code is: path, git (and git_ref), composer or archive",
                ))
            }
            _ => return Err(ActionError::invalid("path", "give only one of path, git, composer, archive")),
        };
        // What the platform is built from must be there before anything is recorded. Only this
        // machine's files can be looked at today: platforms on remote servers (reached over SSH, later)
        // will need the same check made on their host, so it applies to the server named `localhost`.
        use fjord_exec::probe::{path_kind, PathKind};
        let needed = match &source {
            PlatformSource::Path => Some(("path", root.as_str(), PathKind::Dir, "a directory")),
            PlatformSource::Archive { file } => Some(("archive", file.as_str(), PathKind::File, "a file")),
            PlatformSource::Git { .. } | PlatformSource::Composer { .. } => None,
        };
        if let (Some((field, path, kind, what)), true) = (needed, server.hostname == "localhost") {
            match path_kind(std::path::Path::new(path)) {
                Some(k) if k == kind => {}
                Some(_) => return Err(ActionError::invalid(field, format!("{path} is not {what}"))),
                None => return Err(ActionError::invalid(field, format!("{path} does not exist on this machine"))),
            }
        }
        Ok(NewPlatform { name, server: server.id, root, source })
    }

    /// Validates a new platform and plans its first verify, writing nothing.
    pub async fn prepare_platform(&self, p: &PlatformCreate) -> ActionResult<(NewPlatform, Planned)> {
        let new = self.new_platform(p).await?;
        let server = self.store.server(new.server).await?;
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
        let snap = Snapshot { platform: Some(platform), ..Snapshot::of_server(server) };
        let planned = self.plan_new(TaskKind::PlatformVerify, &serde_json::json!({}), &snap)?;
        Ok((new, planned))
    }

    /// Records a platform and queues its verify (planned first: a refusal records nothing).
    pub async fn add_platform(&self, p: &PlatformCreate, created_by: &str) -> ActionResult<(Platform, Task)> {
        let (new, _) = self.prepare_platform(p).await?;
        Ok(self.store.add_platform(&new, created_by).await?)
    }

    /// Validates and adds a user (argon2-hashing the password).
    pub async fn add_user(&self, req: &UserCreate) -> ActionResult<User> {
        let name = Name::parse("user", &req.name)?;
        let role: Role = parse_enum("role", &req.role)?;
        if let Some(e) = &req.email {
            if e.len() > 254 || !e.contains('@') || e.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ActionError::invalid("email", "not an e-mail address"));
            }
        }
        let mut clients = Vec::new();
        for c in &req.clients {
            clients.push(self.store.client_by_name(c).await.map_err(|e| field_not_found(e, "clients"))?.id);
        }
        if role == Role::Client && clients.is_empty() {
            return Err(ActionError::invalid("clients", "a client user must belong to at least one client"));
        }
        if role != Role::Client && !clients.is_empty() {
            return Err(ActionError::invalid("clients", "only client users belong to clients"));
        }
        let hash = crate::accounts::hash_password(&req.password)?;
        Ok(self.store.add_user(&name, req.email.as_deref(), role, &hash, &clients).await?)
    }

    /// Records a client (no host work).
    pub async fn add_client(&self, c: &ClientCreate) -> ActionResult<Client> {
        let name = Name::parse_client(&c.name)?;
        if c.site_quota.is_some_and(|q| q < 0) {
            return Err(ActionError::invalid("site_quota", "site_quota must not be negative"));
        }
        let title = c.title.clone().unwrap_or_else(|| name.to_string());
        if title.chars().any(char::is_control) || title.len() > 255 {
            return Err(ActionError::invalid("title", "the title must be printable and at most 255 bytes"));
        }
        Ok(self.store.add_client(&name, &title, c.site_quota).await?)
    }
}

/// A named object that does not exist is the fault of the field that named it.
fn field_not_found(e: StoreError, field: &str) -> ActionError {
    match e {
        StoreError::NotFound { what, name } => ActionError::invalid(field, format!("{what} {name:?} not found")),
        other => other.into(),
    }
}
