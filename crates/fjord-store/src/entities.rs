//! Servers, platforms, sites and clients. Creating or changing an object that needs work on a host also
//! queues the task that does the work, in the same transaction.

use crate::queue::insert_task;
use crate::rows::{self, PLATFORM_COLS, SERVER_COLS, SITE_COLS};
use crate::{now_millis, Store, StoreError, StoreResult};
use fjord_core::names::db_name_for;
use fjord_core::ValidationError;
use fjord_core::*;
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone)]
pub struct NewServer {
    pub name: Name,
    pub hostname: String,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone)]
pub struct NewPlatform {
    pub name: Name,
    pub server: ServerId,
    pub root: String,
    pub source: PlatformSource,
}

#[derive(Debug, Clone)]
pub struct NewSite {
    pub domain: Domain,
    pub platform: PlatformId,
    pub db_server: Option<ServerId>,
    pub db_engine: DbEngine,
    pub php: Option<String>,
    pub profile: Option<String>,
    pub language: String,
    pub client: Option<ClientId>,
    pub aliases: Vec<Domain>,
    pub redirect_aliases: bool,
    pub https: HttpsMode,
    pub cron_interval: Option<i64>,
    /// An existing database and user to adopt (import); `None` derives new names from the domain.
    pub existing_db: Option<(String, String)>,
}

impl NewSite {
    /// A site on SQLite with every setting at its default (tests, benchmarks, fixtures).
    pub fn sqlite(domain: Domain, platform: PlatformId) -> NewSite {
        NewSite {
            domain,
            platform,
            db_server: None,
            db_engine: DbEngine::Sqlite,
            php: None,
            profile: None,
            language: "en".into(),
            client: None,
            aliases: vec![],
            redirect_aliases: false,
            https: HttpsMode::Off,
            cron_interval: None,
            existing_db: None,
        }
    }
}

/// Longest database name we derive; MariaDB allows 64 and PostgreSQL 63, and we leave room for a suffix.
const DB_NAME_MAX: usize = 48;

pub(crate) const BACKUP_COLS: &str = "id, site_id, path, size, checksum, kind, created_at, offsite";

fn not_found(what: &'static str, name: impl ToString) -> StoreError {
    StoreError::NotFound { what, name: name.to_string() }
}

impl Store {
    // ---- servers -------------------------------------------------------------------------------------

    /// Records a server and queues its verify task.
    pub async fn add_server(&self, new: &NewServer, created_by: &str) -> StoreResult<(Server, Task)> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        if self.find_server_in(&mut tx, new.name.as_str()).await?.is_some() {
            return Err(StoreError::Conflict(format!("a server named {:?} already exists", new.name.as_str())));
        }
        let services = serde_json::to_string(&new.services).expect("services serialize");
        let row = sqlx::query(&format!(
            "INSERT INTO servers (name, hostname, services, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', $4, $4) RETURNING {SERVER_COLS}"
        ))
        .bind(new.name.as_str())
        .bind(&new.hostname)
        .bind(services)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let server = rows::server(&row)?;
        let task = insert_task(
            &mut tx,
            &NewTask {
                kind: TaskKind::ServerVerify,
                target_id: server.id.0,
                args: serde_json::json!({}),
                created_by: created_by.into(),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((server, task))
    }

    async fn find_server_in(&self, conn: &mut AnyConnection, name: &str) -> StoreResult<Option<Server>> {
        let row = sqlx::query(&format!("SELECT {SERVER_COLS} FROM servers WHERE name = $1 AND status <> 'deleted'"))
            .bind(name)
            .fetch_optional(conn)
            .await?;
        row.as_ref().map(rows::server).transpose()
    }

    pub async fn servers(&self) -> StoreResult<Vec<Server>> {
        let rows = sqlx::query(&format!("SELECT {SERVER_COLS} FROM servers WHERE status <> 'deleted' ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::server).collect()
    }

    pub async fn server(&self, id: ServerId) -> StoreResult<Server> {
        let row = sqlx::query(&format!("SELECT {SERVER_COLS} FROM servers WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::server).transpose()?.ok_or_else(|| not_found("server", id))
    }

    /// A provider's published proxy ranges as last refreshed: (ranges, source, updated_at).
    pub async fn proxy_ranges(&self, name: &str) -> StoreResult<Option<(Vec<String>, String, Millis)>> {
        let row = sqlx::query("SELECT ranges, source, updated_at FROM proxy_ranges WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let ranges: String = row.try_get("ranges")?;
        let ranges = serde_json::from_str(&ranges)
            .map_err(|e| StoreError::Corrupt { column: "proxy_ranges.ranges", detail: e.to_string() })?;
        Ok(Some((ranges, row.try_get("source")?, row.try_get("updated_at")?)))
    }

    pub async fn server_by_name(&self, name: &str) -> StoreResult<Server> {
        let mut conn = self.pool.acquire().await?;
        self.find_server_in(&mut conn, name).await?.ok_or_else(|| not_found("server", name))
    }

    // ---- platforms -----------------------------------------------------------------------------------

    /// Records a platform and queues its verify task.
    pub async fn add_platform(&self, new: &NewPlatform, created_by: &str) -> StoreResult<(Platform, Task)> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let live = sqlx::query("SELECT COUNT(*) AS n FROM platforms WHERE name = $1 AND status <> 'deleted'")
            .bind(new.name.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("n")?;
        if live > 0 {
            return Err(StoreError::Conflict(format!("a platform named {:?} already exists", new.name.as_str())));
        }
        let same_root =
            sqlx::query("SELECT name FROM platforms WHERE server_id = $1 AND root = $2 AND status <> 'deleted'")
                .bind(new.server.0)
                .bind(&new.root)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = same_root {
            let other: String = row.try_get("name")?;
            return Err(StoreError::Conflict(format!("platform {other:?} already uses {}", new.root)));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO platforms (name, server_id, root, source, locked, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, 'queued', $5, $5) RETURNING {PLATFORM_COLS}"
        ))
        .bind(new.name.as_str())
        .bind(new.server.0)
        .bind(&new.root)
        .bind(serde_json::to_string(&new.source).expect("source serializes"))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let platform = rows::platform(&row)?;
        let task = insert_task(
            &mut tx,
            &NewTask {
                kind: TaskKind::PlatformVerify,
                target_id: platform.id.0,
                args: serde_json::json!({}),
                created_by: created_by.into(),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((platform, task))
    }

    pub async fn platforms(&self) -> StoreResult<Vec<Platform>> {
        // Read as one JSON value: every sites page names them.
        let select = format!("SELECT {PLATFORM_COLS} FROM platforms WHERE status <> 'deleted'");
        self.read_list(PLATFORM_COLS, &select, "name", |r| rows::platform(r)).await
    }

    pub async fn platform(&self, id: PlatformId) -> StoreResult<Platform> {
        let row = sqlx::query(&format!("SELECT {PLATFORM_COLS} FROM platforms WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::platform).transpose()?.ok_or_else(|| not_found("platform", id))
    }

    pub async fn platform_by_name(&self, name: &str) -> StoreResult<Platform> {
        let row =
            sqlx::query(&format!("SELECT {PLATFORM_COLS} FROM platforms WHERE name = $1 AND status <> 'deleted'"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(rows::platform).transpose()?.ok_or_else(|| not_found("platform", name))
    }

    /// Locking hides a platform from new sites; it needs no work on a host.
    pub async fn set_platform_locked(&self, id: PlatformId, locked: bool) -> StoreResult<()> {
        sqlx::query("UPDATE platforms SET locked = $1, updated_at = $2 WHERE id = $3")
            .bind(locked as i64)
            .bind(now_millis())
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- sites ---------------------------------------------------------------------------------------

    /// Checks a new site against the state (platform usable, names free, client quota) and returns the
    /// site it would become, with its derived database name, without writing anything. Used by `create`
    /// and by `--dry-run`.
    pub async fn prepare_site(&self, new: &NewSite) -> StoreResult<Site> {
        let mut conn = self.pool.acquire().await?;
        prepare_site_in(&mut conn, new).await
    }

    /// Records a new site and queues its install task.
    pub async fn create_site(&self, new: &NewSite, created_by: &str) -> StoreResult<(Site, Task)> {
        let (site, task) =
            self.create_site_with(new, created_by, Some((TaskKind::SiteInstall, serde_json::json!({})))).await?;
        Ok((site, task.expect("a task was asked for")))
    }

    /// Records a new site and queues the task `kind` with `args` for it, if given (an import queues its
    /// task itself once the site's password is in the secrets store).
    pub async fn create_site_with(
        &self,
        new: &NewSite,
        created_by: &str,
        kind: Option<(TaskKind, serde_json::Value)>,
    ) -> StoreResult<(Site, Option<Task>)> {
        self.create_site_then(new, created_by, kind, |_| Ok(())).await
    }

    /// [`Store::create_site_with`], running `before_commit` with the new record inside the transaction:
    /// what must exist before any daemon can see the site's task (an imported site's password in the
    /// secrets store). Its error rolls everything back.
    pub async fn create_site_then(
        &self,
        new: &NewSite,
        created_by: &str,
        kind: Option<(TaskKind, serde_json::Value)>,
        before_commit: impl FnOnce(&Site) -> Result<(), String>,
    ) -> StoreResult<(Site, Option<Task>)> {
        self.create_site_inner(new, created_by, kind, |_| vec![], before_commit).await
    }

    /// [`Store::create_site_with`], with the changes `settings` gives for the new site's id written in
    /// the same transaction (a site brought back with the settings its backup recorded): no daemon
    /// can plan its task before they are there.
    pub async fn create_site_with_settings(
        &self,
        new: &NewSite,
        created_by: &str,
        kind: Option<(TaskKind, serde_json::Value)>,
        settings: impl FnOnce(SiteId) -> Vec<DesiredChange>,
    ) -> StoreResult<(Site, Option<Task>)> {
        self.create_site_inner(new, created_by, kind, settings, |_| Ok(())).await
    }

    async fn create_site_inner(
        &self,
        new: &NewSite,
        created_by: &str,
        kind: Option<(TaskKind, serde_json::Value)>,
        settings: impl FnOnce(SiteId) -> Vec<DesiredChange>,
        before_commit: impl FnOnce(&Site) -> Result<(), String>,
    ) -> StoreResult<(Site, Option<Task>)> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        // Writing first takes SQLite's write lock at once, so the checks below cannot race another writer.
        sqlx::query("UPDATE platforms SET updated_at = updated_at WHERE id = $1")
            .bind(new.platform.0)
            .execute(&mut *tx)
            .await?;
        let site = prepare_site_in(&mut tx, new).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO sites (domain, platform_id, db_server_id, db_engine, db_name, db_user, php, profile, language, \
             client_id, redirect_aliases, https, status, cron_interval, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', $13, $14, $14) RETURNING {SITE_COLS}"
        ))
        .bind(site.domain.as_str())
        .bind(site.platform_id.0)
        .bind(site.db_server_id.map(|s| s.0))
        .bind(site.db_engine.as_str())
        .bind(&site.db_name)
        .bind(&site.db_user)
        .bind(site.php.clone())
        .bind(site.profile.clone())
        .bind(&site.language)
        .bind(site.client_id.map(|c| c.0))
        .bind(site.redirect_aliases as i64)
        .bind(site.https.as_str())
        .bind(site.cron_interval)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let mut created = rows::site(&row)?;
        let settings = settings(created.id);
        if !settings.is_empty() {
            for change in &settings {
                write_desired(&mut tx, change, now).await?;
            }
            let row = sqlx::query(&format!("SELECT {SITE_COLS} FROM sites WHERE id = $1"))
                .bind(created.id.0)
                .fetch_one(&mut *tx)
                .await?;
            created = rows::site(&row)?;
        }
        created.aliases = site.aliases.clone();
        for (domain, is_alias) in created.all_domains().enumerate().map(|(i, d)| (d, i > 0)) {
            sqlx::query("INSERT INTO site_domains (domain, site_id, is_alias) VALUES ($1, $2, $3)")
                .bind(domain.as_str())
                .bind(created.id.0)
                .bind(is_alias as i64)
                .execute(&mut *tx)
                .await?;
        }
        let task = match kind {
            Some((kind, args)) => {
                Some(insert_task(&mut tx, &NewTask::new(kind, created.id.0, args, created_by), now).await?)
            }
            None => None,
        };
        before_commit(&created).map_err(StoreError::Conflict)?;
        tx.commit().await?;
        Ok((created, task))
    }

    pub(crate) async fn fill_aliases(&self, sites: &mut [Site]) -> StoreResult<()> {
        if sites.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = sites.iter().map(|s| s.id.0.to_string()).collect();
        // The ids are integers we formatted ourselves, so inlining them is safe.
        let rows = sqlx::query(&format!(
            "SELECT site_id, domain FROM site_domains WHERE is_alias = 1 AND site_id IN ({}) ORDER BY domain",
            ids.join(",")
        ))
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let id: i64 = row.try_get("site_id")?;
            let alias = rows::domain(&row, "domain")?;
            if let Some(site) = sites.iter_mut().find(|s| s.id.0 == id) {
                site.aliases.push(alias);
            }
        }
        Ok(())
    }

    async fn sites_where(&self, clause: &str, bind: Option<i64>) -> StoreResult<Vec<Site>> {
        let sql = format!("SELECT {SITE_COLS} FROM sites WHERE {clause} ORDER BY domain");
        let mut q = sqlx::query(&sql);
        if let Some(b) = bind {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut sites = rows.iter().map(rows::site).collect::<StoreResult<Vec<_>>>()?;
        self.fill_aliases(&mut sites).await?;
        Ok(sites)
    }

    /// Live sites (everything but deleted), optionally only those with `status`.
    pub async fn sites(&self, status: Option<SiteStatus>) -> StoreResult<Vec<Site>> {
        match status {
            Some(s) => self.sites_where(&format!("status = '{}'", s.as_str()), None).await,
            None => self.sites_where("status <> 'deleted'", None).await,
        }
    }

    pub async fn sites_on_platform(&self, platform: PlatformId) -> StoreResult<Vec<Site>> {
        self.sites_where("status <> 'deleted' AND platform_id = $1", Some(platform.0)).await
    }

    pub async fn site(&self, id: SiteId) -> StoreResult<Site> {
        self.sites_where("id = $1", Some(id.0)).await?.pop().ok_or_else(|| not_found("site", id))
    }

    /// Finds a live site by its domain or one of its aliases.
    pub async fn site_by_domain(&self, domain: &Domain) -> StoreResult<Site> {
        let row = sqlx::query("SELECT site_id FROM site_domains WHERE domain = $1")
            .bind(domain.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => self.site(SiteId(r.try_get("site_id")?)).await,
            None => Err(not_found("site", domain)),
        }
    }

    /// Sets (or clears) the text a site's front page must contain for its health checks to pass.
    pub async fn set_site_health_marker(&self, site: SiteId, marker: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE sites SET health_marker = $1, updated_at = $2 WHERE id = $3")
            .bind(marker.map(str::to_string))
            .bind(now_millis())
            .bind(site.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Queues a `site-cert` task (with `args`) for every site with HTTPS whose ACME certificate is
    /// due for renewal (see [`fjord_core::tls::renewal_due`]), or that was created or renamed with
    /// HTTPS on and has none yet, and has no certificate task pending.
    pub async fn queue_due_certs(
        &self,
        now: Millis,
        renew_before: Millis,
        args: &serde_json::Value,
    ) -> StoreResult<Vec<Task>> {
        let sites = self.sites_where("https <> 'off' AND status IN ('enabled', 'disabled')", None).await?;
        let mut queued = Vec::new();
        for site in sites {
            // A site created or renamed with HTTPS on has no certificate and no certificate task
            // since that change: its first one is due too.
            let first =
                site.tls.source == fjord_core::CertSource::Acme && !site.tls.installed() && site.tls.failures == 0;
            let first = first
                && sqlx::query(
                    "SELECT 1 AS one FROM tasks WHERE target_kind = 'site' AND target_id = $1 AND kind = 'site-cert' \
                     AND created_at >= $2",
                )
                .bind(site.id.0)
                .bind(site.updated_at)
                .fetch_optional(&self.pool)
                .await?
                .is_none();
            if !first && !fjord_core::tls::renewal_due(&site.tls, now, renew_before) {
                continue;
            }
            let pending = sqlx::query(
                "SELECT 1 AS one FROM tasks WHERE target_kind = 'site' AND target_id = $1 AND kind = 'site-cert' \
                 AND status IN ('queued', 'running', 'interrupted')",
            )
            .bind(site.id.0)
            .fetch_optional(&self.pool)
            .await?;
            if pending.is_some() {
                continue;
            }
            let mut conn = self.pool.acquire().await?;
            let task = NewTask::new(TaskKind::SiteCert, site.id.0, args.clone(), "daemon:renew");
            queued.push(insert_task(&mut conn, &task, now).await?);
        }
        Ok(queued)
    }

    /// Sets a site's status directly, without a task (benchmarks and tests that build large states).
    pub async fn set_site_status(&self, site: SiteId, status: SiteStatus) -> StoreResult<()> {
        sqlx::query("UPDATE sites SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now_millis())
            .bind(site.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Queues a cron task for every enabled site whose cron is due: none was queued within its
    /// interval, and its first run waits a per-site offset after creation so sites created together
    /// do not all run at once. Returns the tasks queued.
    pub async fn queue_due_cron(&self, now: Millis) -> StoreResult<Vec<Task>> {
        let rows = sqlx::query(
            "SELECT s.id AS id FROM sites s \
             WHERE s.status = 'enabled' AND s.cron_interval IS NOT NULL AND s.cron_interval > 0 \
             AND s.created_at + ((s.id * 7919) % s.cron_interval) * 1000 <= $1 \
             AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.target_kind = 'site' AND t.target_id = s.id \
                 AND t.kind = 'site-cron' \
                 AND (t.status IN ('queued', 'running', 'interrupted') OR t.created_at > $1 - s.cron_interval * 1000)) \
             ORDER BY s.id LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut queued = Vec::new();
        for row in rows {
            let site = SiteId(row.try_get("id")?);
            let mut conn = self.pool.acquire().await?;
            let new = NewTask::new(TaskKind::SiteCron, site.0, serde_json::json!({}), "daemon:cron");
            queued.push(insert_task(&mut conn, &new, now).await?);
        }
        Ok(queued)
    }

    // ---- backups (schedules and offsite copies: backups.rs) ------------------------------------------

    /// Backups, newest first; of one site if given.
    pub async fn backups(&self, site: Option<SiteId>) -> StoreResult<Vec<Backup>> {
        let sql = format!(
            "SELECT {BACKUP_COLS} FROM backups {} ORDER BY id DESC",
            if site.is_some() { "WHERE site_id = $1" } else { "" }
        );
        let mut q = sqlx::query(&sql);
        if let Some(s) = site {
            q = q.bind(s.0);
        }
        q.fetch_all(&self.pool).await?.iter().map(rows::backup).collect()
    }

    pub async fn backup(&self, id: BackupId) -> StoreResult<Backup> {
        let row = sqlx::query(&format!("SELECT {BACKUP_COLS} FROM backups WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::backup).transpose()?.ok_or_else(|| not_found("backup", id))
    }

    pub async fn delete_backup(&self, id: BackupId) -> StoreResult<()> {
        sqlx::query("DELETE FROM backups WHERE id = $1").bind(id.0).execute(&self.pool).await?;
        Ok(())
    }

    // ---- clients -------------------------------------------------------------------------------------

    pub async fn add_client(&self, name: &Name, title: &str, site_quota: Option<i64>) -> StoreResult<Client> {
        let existing = sqlx::query("SELECT id FROM clients WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if existing.is_some() {
            return Err(StoreError::Conflict(format!("a client named {:?} already exists", name.as_str())));
        }
        let row = sqlx::query(
            "INSERT INTO clients (name, title, site_quota, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, title, site_quota, created_at",
        )
        .bind(name.as_str())
        .bind(title)
        .bind(site_quota)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
        rows::client(&row)
    }

    pub async fn clients(&self) -> StoreResult<Vec<Client>> {
        // Read as one JSON value: a list page shows every client in its filter.
        let select = format!("SELECT {} FROM clients", rows::CLIENT_COLS);
        self.read_list(rows::CLIENT_COLS, &select, "name", |r| rows::client(r)).await
    }

    pub async fn client_by_name(&self, name: &str) -> StoreResult<Client> {
        let row = sqlx::query(&format!("SELECT {} FROM clients WHERE name = $1", rows::CLIENT_COLS))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::client).transpose()?.ok_or_else(|| not_found("client", name))
    }

    // ---- snapshots and state changes -----------------------------------------------------------------

    /// Loads what a planner needs to plan `task`.
    pub async fn snapshot(&self, task: &Task) -> StoreResult<Snapshot> {
        let server = self.server(task.lane.server).await?;
        let platform = match task.lane.platform {
            Some(p) => Some(self.platform(p).await?),
            None => None,
        };
        let site = match task.lane.site {
            Some(s) => Some(self.site(s).await?),
            None => None,
        };
        let (sites, platforms) = match task.target_kind {
            TargetKind::Site => (Vec::new(), Vec::new()),
            TargetKind::Platform => (self.sites_on_platform(PlatformId(task.target_id)).await?, Vec::new()),
            TargetKind::Server => {
                let platforms: Vec<Platform> = sqlx::query(&format!(
                    "SELECT {PLATFORM_COLS} FROM platforms WHERE server_id = $1 AND status <> 'deleted' ORDER BY name"
                ))
                .bind(server.id.0)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(rows::platform)
                .collect::<StoreResult<_>>()?;
                let sites = self
                    .sites_where(
                        "status <> 'deleted' AND platform_id IN (SELECT id FROM platforms WHERE server_id = $1)",
                        Some(server.id.0),
                    )
                    .await?;
                (sites, platforms)
            }
        };
        let db_server = match site.as_ref().and_then(|s| s.db_server_id) {
            Some(id) if id != server.id => Some(self.server(id).await?),
            _ => None,
        };
        // A second site (clone, sync: the source) and a second platform (migrate: the target) named in
        // the task's arguments.
        let arg = |name: &str| task.args.get(name).and_then(|v| v.as_i64());
        let other_site = match arg("source_site") {
            Some(id) => Some(self.site(SiteId(id)).await?),
            None => None,
        };
        let other_platform = match arg("to_platform").or(other_site.as_ref().map(|s| s.platform_id.0)) {
            Some(id) => Some(self.platform(PlatformId(id)).await?),
            None => None,
        };
        let other_db_server = match arg("db_server") {
            Some(id) => Some(self.server(ServerId(id)).await?),
            None => None,
        };
        Ok(Snapshot {
            server,
            platform,
            site,
            sites,
            platforms,
            db_server,
            other_site,
            other_platform,
            other_db_server,
        })
    }
}

async fn prepare_site_in(conn: &mut AnyConnection, new: &NewSite) -> StoreResult<Site> {
    let row = sqlx::query(&format!("SELECT {PLATFORM_COLS} FROM platforms WHERE id = $1"))
        .bind(new.platform.0)
        .fetch_optional(&mut *conn)
        .await?;
    let platform = row.as_ref().map(rows::platform).transpose()?.ok_or_else(|| not_found("platform", new.platform))?;
    if platform.status == ObjectStatus::Deleted {
        return Err(not_found("platform", platform.name));
    }
    if platform.status == ObjectStatus::Failed {
        return Err(StoreError::Conflict(format!(
            "platform {} failed its verify: verify it again before it takes sites",
            platform.name
        )));
    }
    if platform.locked {
        return Err(StoreError::Conflict(format!("platform {} is locked: it takes no new sites", platform.name)));
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in std::iter::once(&new.domain).chain(new.aliases.iter()) {
        if !seen.insert(d.as_str()) {
            return Err(StoreError::Conflict(format!("{d} is given more than once")));
        }
        let taken = sqlx::query(
            "SELECT s.domain, s.status FROM site_domains d JOIN sites s ON s.id = d.site_id WHERE d.domain = $1",
        )
        .bind(d.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = taken {
            let owner: String = row.try_get("domain")?;
            let status: String = row.try_get("status")?;
            // A failed site holds its domain until it is retried or deleted: say so, or the user
            // cannot tell why a domain they see no working site for is taken.
            let failed = if status == SiteStatus::Failed.as_str() {
                format!(" (status failed: retry its failed task or delete site {owner} first)")
            } else {
                String::new()
            };
            return Err(StoreError::Conflict(if owner == d.as_str() {
                format!("a site {d} already exists{failed}")
            } else {
                format!("{d} is already an alias of site {owner}{failed}")
            }));
        }
    }
    if let Some(client) = new.client {
        let row = sqlx::query("SELECT name, site_quota FROM clients WHERE id = $1")
            .bind(client.0)
            .fetch_optional(&mut *conn)
            .await?;
        let row = row.ok_or_else(|| not_found("client", client))?;
        if let Some(quota) = row.try_get::<Option<i64>, _>("site_quota")? {
            let used = sqlx::query("SELECT COUNT(*) AS n FROM sites WHERE client_id = $1 AND status <> 'deleted'")
                .bind(client.0)
                .fetch_one(&mut *conn)
                .await?
                .try_get::<i64, _>("n")?;
            if used >= quota {
                let name: String = row.try_get("name")?;
                return Err(StoreError::Conflict(format!("client {name} has used its quota of {quota} sites")));
            }
        }
    }
    if let Some((name, user)) = &new.existing_db {
        for (field, v) in [("database name", name), ("database user", user)] {
            if v.is_empty() || v.len() > 63 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(StoreError::Invalid(ValidationError::new(
                    field,
                    v,
                    "use letters, digits and _ only, at most 63",
                )));
            }
        }
        let taken = sqlx::query(
            "SELECT COUNT(*) AS n FROM sites WHERE db_name = $1 AND status <> 'deleted' AND COALESCE(db_server_id, 0) = COALESCE($2, 0)",
        )
        .bind(name)
        .bind(new.db_server.map(|s| s.0))
        .fetch_one(&mut *conn)
        .await?
        .try_get::<i64, _>("n")?;
        if taken > 0 {
            return Err(StoreError::Conflict(format!("database {name} already belongs to another site")));
        }
    }
    // Derive a database name from the domain; add a number if it is taken on that database server.
    let base = db_name_for(&new.domain, DB_NAME_MAX);
    let mut db_name = base.clone();
    for n in 2.. {
        let taken = sqlx::query(
            "SELECT COUNT(*) AS n FROM sites WHERE db_name = $1 AND status <> 'deleted' \
             AND COALESCE(db_server_id, 0) = COALESCE($2, 0)",
        )
        .bind(&db_name)
        .bind(new.db_server.map(|s| s.0))
        .fetch_one(&mut *conn)
        .await?
        .try_get::<i64, _>("n")?;
        if taken == 0 {
            break;
        }
        db_name = format!("{base}{n}");
    }
    let now = now_millis();
    Ok(Site {
        id: SiteId(0),
        domain: new.domain.clone(),
        platform_id: platform.id,
        db_server_id: new.db_server,
        db_engine: new.db_engine,
        db_user: new.existing_db.as_ref().map(|(_, u)| u.clone()).unwrap_or_else(|| db_name.clone()),
        db_name: new.existing_db.as_ref().map(|(n, _)| n.clone()).unwrap_or(db_name),
        php: new.php.clone(),
        profile: new.profile.clone(),
        language: new.language.clone(),
        client_id: new.client,
        aliases: new.aliases.clone(),
        redirect_aliases: new.redirect_aliases,
        https: new.https,
        tls: Default::default(),
        status: SiteStatus::Queued,
        cron_interval: new.cron_interval,
        last_cron_at: None,
        health_marker: None,
        php_limits: PhpLimits::default(),
        isolation: Isolation::default(),
        created_at: now,
        updated_at: now,
    })
}

/// Writes one change of the desired state (part of [`Store::commit_change`]'s transaction).
pub(crate) async fn write_desired(conn: &mut AnyConnection, change: &DesiredChange, now: Millis) -> StoreResult<()> {
    // One UPDATE of one column of one row, for the changes that are just that.
    async fn set(
        conn: &mut AnyConnection,
        table: &str,
        column: &str,
        value: Option<String>,
        id: i64,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query(&format!("UPDATE {table} SET {column} = $1, updated_at = $2 WHERE id = $3"))
            .bind(value)
            .bind(now)
            .bind(id)
            .execute(conn)
            .await?;
        Ok(())
    }
    match change {
        DesiredChange::ServerServices { server, services } => {
            set(conn, "servers", "services", Some(to_json(services)), server.0, now).await
        }
        DesiredChange::SitePhp { site, runtime } => set(conn, "sites", "php", runtime.clone(), site.0, now).await,
        DesiredChange::SitePhpLimits { site, limits } => {
            set(conn, "sites", "php_limits", Some(to_json(limits)), site.0, now).await
        }
        DesiredChange::SiteIsolation { site, isolation } => {
            set(conn, "sites", "isolation", Some(isolation.as_str().to_string()), site.0, now).await
        }
        DesiredChange::SiteHealthMarker { site, marker } => {
            set(conn, "sites", "health_marker", marker.clone(), site.0, now).await
        }
        DesiredChange::SiteHttps { site, mode, tls } => {
            set(conn, "sites", "https", Some(mode.as_str().to_string()), site.0, now).await?;
            crate::queue::set_site_tls(conn, *site, tls, now).await
        }
        DesiredChange::ProxyRanges { name, ranges, source } => {
            sqlx::query(
                "INSERT INTO proxy_ranges (name, ranges, source, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET ranges = excluded.ranges, source = excluded.source, \
                 updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(to_json(ranges))
            .bind(source)
            .bind(now)
            .execute(conn)
            .await?;
            Ok(())
        }
        DesiredChange::SiteAliases { site, aliases, redirect } => {
            set_site_aliases(conn, *site, aliases, *redirect, now).await
        }
    }
}

/// A JSON column's text.
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

/// Replaces a site's aliases and its redirect flag. Refuses an alias another site already answers to.
async fn set_site_aliases(
    conn: &mut AnyConnection,
    site: SiteId,
    aliases: &[Domain],
    redirect: bool,
    now: Millis,
) -> StoreResult<()> {
    let row = sqlx::query("SELECT domain FROM sites WHERE id = $1")
        .bind(site.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found("site", site))?;
    let domain: String = row.try_get("domain")?;
    sqlx::query("UPDATE sites SET redirect_aliases = $1, updated_at = $2 WHERE id = $3")
        .bind(redirect as i64)
        .bind(now)
        .bind(site.0)
        .execute(&mut *conn)
        .await?;
    let mut seen = std::collections::BTreeSet::new();
    for a in aliases {
        if a.as_str() == domain || !seen.insert(a.as_str()) {
            return Err(StoreError::Conflict(format!("{a} is given more than once")));
        }
        let taken = sqlx::query(
            "SELECT s.domain FROM site_domains d JOIN sites s ON s.id = d.site_id WHERE d.domain = $1 AND d.site_id <> $2",
        )
        .bind(a.as_str())
        .bind(site.0)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = taken {
            let owner: String = row.try_get("domain")?;
            return Err(StoreError::Conflict(format!("{a} already belongs to site {owner}")));
        }
    }
    sqlx::query("DELETE FROM site_domains WHERE site_id = $1 AND is_alias = 1")
        .bind(site.0)
        .execute(&mut *conn)
        .await?;
    for a in aliases {
        sqlx::query("INSERT INTO site_domains (domain, site_id, is_alias) VALUES ($1, $2, 1)")
            .bind(a.as_str())
            .bind(site.0)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
