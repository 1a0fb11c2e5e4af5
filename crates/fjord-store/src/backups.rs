//! Backup schedules, scheduled backup tasks and offsite locations.

use crate::queue::insert_task;
use crate::{Store, StoreError, StoreResult};
use fjord_core::*;
use sqlx::any::AnyRow;
use sqlx::Row;

/// What a schedule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleTarget {
    Site(SiteId),
    Platform(PlatformId),
}

/// A site with the schedule that applies to it (its own, else its platform's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledSite {
    pub site: SiteId,
    pub schedule: BackupSchedule,
    /// When the daemon last queued a scheduled backup of it.
    pub last_queued: Option<Millis>,
    /// A backup task of it is queued or running now.
    pub pending: bool,
}

const SCHEDULE_COLS: &str =
    "id, site_id, platform_id, hourly, daily, weekly, prune_manual, compression, created_at, updated_at";

fn schedule(row: &AnyRow, prefix: &str) -> StoreResult<BackupSchedule> {
    let col = |c: &str| format!("{prefix}{c}");
    let count = |c: &str| -> StoreResult<u32> {
        let n: i64 = row.try_get(col(c).as_str())?;
        u32::try_from(n).map_err(|_| StoreError::Corrupt { column: "backup_schedules", detail: format!("{c} = {n}") })
    };
    let compression: String = row.try_get(col("compression").as_str())?;
    Ok(BackupSchedule {
        id: row.try_get(col("id").as_str())?,
        site_id: row.try_get::<Option<i64>, _>(col("site_id").as_str())?.map(SiteId),
        platform_id: row.try_get::<Option<i64>, _>(col("platform_id").as_str())?.map(PlatformId),
        retention: Retention {
            hourly: count("hourly")?,
            daily: count("daily")?,
            weekly: count("weekly")?,
            prune_manual: row.try_get::<i64, _>(col("prune_manual").as_str())? != 0,
        },
        compression: Compression::parse(&compression)
            .ok_or(StoreError::Corrupt { column: "backup_schedules.compression", detail: compression })?,
        created_at: row.try_get(col("created_at").as_str())?,
        updated_at: row.try_get(col("updated_at").as_str())?,
    })
}

impl Store {
    /// Sets (creates or replaces) the backup schedule of a site or a platform.
    pub async fn set_backup_schedule(
        &self,
        target: ScheduleTarget,
        retention: Retention,
        compression: Compression,
    ) -> StoreResult<BackupSchedule> {
        if !retention.keeps_any() {
            return Err(StoreError::Conflict("a schedule must keep some hourly, daily or weekly backups".into()));
        }
        let now = crate::now_millis();
        let (site, platform) = match target {
            ScheduleTarget::Site(s) => (Some(s.0), None),
            ScheduleTarget::Platform(p) => (None, Some(p.0)),
        };
        let mut tx = self.begin_write().await?;
        let old: Option<i64> =
            sqlx::query("SELECT created_at FROM backup_schedules WHERE site_id = $1 OR platform_id = $2")
                .bind(site)
                .bind(platform)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("created_at"))
                .transpose()?;
        sqlx::query("DELETE FROM backup_schedules WHERE site_id = $1 OR platform_id = $2")
            .bind(site)
            .bind(platform)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "INSERT INTO backup_schedules (site_id, platform_id, hourly, daily, weekly, prune_manual, compression, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {SCHEDULE_COLS}"
        ))
        .bind(site)
        .bind(platform)
        .bind(i64::from(retention.hourly))
        .bind(i64::from(retention.daily))
        .bind(i64::from(retention.weekly))
        .bind(i64::from(retention.prune_manual))
        .bind(compression.as_str())
        .bind(old.unwrap_or(now))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let s = schedule(&row, "")?;
        tx.commit().await?;
        Ok(s)
    }

    /// Removes a schedule; returns whether there was one.
    pub async fn clear_backup_schedule(&self, target: ScheduleTarget) -> StoreResult<bool> {
        let r = match target {
            ScheduleTarget::Site(s) => {
                sqlx::query("DELETE FROM backup_schedules WHERE site_id = $1").bind(s.0).execute(&self.pool).await?
            }
            ScheduleTarget::Platform(p) => {
                sqlx::query("DELETE FROM backup_schedules WHERE platform_id = $1").bind(p.0).execute(&self.pool).await?
            }
        };
        Ok(r.rows_affected() > 0)
    }

    /// Every schedule, platforms' first.
    pub async fn backup_schedules(&self) -> StoreResult<Vec<BackupSchedule>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM backup_schedules ORDER BY platform_id IS NULL, platform_id, site_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| schedule(r, "")).collect()
    }

    /// Every live site that a schedule applies to, with that schedule and when its last scheduled
    /// backup was queued.
    pub async fn scheduled_sites(&self) -> StoreResult<Vec<ScheduledSite>> {
        let cols =
            |p: &str| SCHEDULE_COLS.split(", ").map(|c| format!("{p}.{c} AS {p}_{c}")).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!(
            "SELECT s.id AS site, s.platform_id AS platform, p.server_id AS server, {}, {}, \
             (SELECT MAX(t.created_at) FROM tasks t WHERE t.target_kind = 'site' AND t.target_id = s.id \
                 AND t.kind = 'site-backup' AND t.created_by = 'daemon:backup') AS last_queued, \
             (SELECT COUNT(*) FROM tasks t WHERE t.target_kind = 'site' AND t.target_id = s.id \
                 AND t.kind = 'site-backup' AND t.status IN ('queued', 'running', 'interrupted')) AS pending \
             FROM sites s JOIN platforms p ON p.id = s.platform_id \
             LEFT JOIN backup_schedules ss ON ss.site_id = s.id \
             LEFT JOIN backup_schedules ps ON ps.platform_id = s.platform_id \
             WHERE s.status IN ('enabled', 'disabled') AND (ss.id IS NOT NULL OR ps.id IS NOT NULL) \
             ORDER BY s.id",
            cols("ss"),
            cols("ps")
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let own: Option<i64> = row.try_get("ss_id")?;
            let schedule = schedule(&row, if own.is_some() { "ss_" } else { "ps_" })?;
            let site = SiteId(row.try_get("site")?);
            out.push(ScheduledSite {
                site,
                schedule,
                last_queued: row.try_get("last_queued")?,
                pending: row.try_get::<i64, _>("pending")? > 0,
            });
        }
        Ok(out)
    }

    /// Queues a scheduled backup of every enabled site whose schedule says one is due. Returns the
    /// tasks queued.
    pub async fn queue_due_backups(&self, now: Millis) -> StoreResult<Vec<Task>> {
        let mut queued = Vec::new();
        for s in self.scheduled_sites().await? {
            if s.pending || !backups::scheduled_backup_due(now, s.last_queued, &s.schedule.retention) {
                continue;
            }
            // Disabled sites are kept as they are: nothing changes, nothing to back up again.
            let status: String = sqlx::query("SELECT status FROM sites WHERE id = $1")
                .bind(s.site.0)
                .fetch_one(&self.pool)
                .await?
                .try_get("status")?;
            if status != "enabled" {
                continue;
            }
            let mut conn = self.pool.acquire().await?;
            let args = serde_json::json!({
                "kind": BackupKind::Scheduled,
                "stamp": backups::backup_stamp(now),
                "compression": s.schedule.compression,
            });
            let new = NewTask::new(TaskKind::SiteBackup, s.site.0, args, "daemon:backup");
            queued.push(insert_task(&mut conn, &new, now).await?);
        }
        Ok(queued)
    }

    /// Of `sites`, those deleted with no backup left and no task queued or running: nothing can bring
    /// them back, so their secrets can go.
    pub async fn sites_gone_for_good(&self, sites: &[i64]) -> StoreResult<Vec<i64>> {
        let mut gone = Vec::new();
        for chunk in sites.chunks(500) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id FROM sites WHERE status = 'deleted' AND id IN ({}) \
                 AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.site_id = sites.id) \
                 AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.lane_site = sites.id \
                     AND t.status IN ('queued', 'running', 'interrupted'))",
                list.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                gone.push(row.try_get("id")?);
            }
        }
        Ok(gone)
    }

    /// Backups not yet copied offsite, oldest first.
    pub async fn backups_without_offsite(&self, limit: i64) -> StoreResult<Vec<Backup>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM backups WHERE offsite IS NULL ORDER BY id LIMIT $1",
            crate::entities::BACKUP_COLS
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::backup).collect()
    }

    /// Records where a backup's offsite copy is.
    pub async fn set_backup_offsite(&self, id: BackupId, location: &str) -> StoreResult<()> {
        sqlx::query("UPDATE backups SET offsite = $1 WHERE id = $2")
            .bind(location)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether a site has a task queued, running or interrupted (retention then waits: a restore may
    /// be reading an archive).
    pub async fn site_busy(&self, site: SiteId) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM tasks WHERE lane_site = $1 AND status IN ('queued', 'running', 'interrupted')",
        )
        .bind(site.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewPlatform, NewServer, NewSite};

    async fn site(store: &Store, domain: &str, platform: PlatformId) -> SiteId {
        let new = NewSite::sqlite(Domain::parse(domain).expect("domain"), platform);
        let (s, _) = store.create_site(&new, "test").await.expect("site");
        store.set_site_status(s.id, SiteStatus::Enabled).await.expect("enable");
        s.id
    }

    #[tokio::test]
    async fn schedules_apply_to_sites_and_queue_due_backups() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (label, store) in crate::testing::all_backends(dir.path()).await.expect("stores") {
            let db = Service::Db(DbService::sqlite());
            let new = NewServer {
                name: Name::parse("name", "s1").expect("name"),
                hostname: "localhost".into(),
                services: vec![db],
            };
            let (server, _) = store.add_server(&new, "test").await.expect("server");
            let new = NewPlatform {
                name: Name::parse("name", "p1").expect("name"),
                server: server.id,
                root: "/srv/p1".into(),
                source: PlatformSource::Path,
            };
            let (platform, _) = store.add_platform(&new, "test").await.expect("platform");
            let a = site(&store, "a.example", platform.id).await;
            let b = site(&store, "b.example", platform.id).await;
            let none = Retention::default();
            assert!(store
                .set_backup_schedule(ScheduleTarget::Platform(platform.id), none, Compression::Zstd)
                .await
                .is_err());
            let daily = Retention { daily: 14, weekly: 8, ..none };
            store
                .set_backup_schedule(ScheduleTarget::Platform(platform.id), daily, Compression::Zstd)
                .await
                .expect("set");
            let hourly = Retention { hourly: 24, prune_manual: true, ..none };
            store.set_backup_schedule(ScheduleTarget::Site(b), hourly, Compression::Gzip).await.expect("set");
            // Setting again replaces.
            store.set_backup_schedule(ScheduleTarget::Site(b), hourly, Compression::Gzip).await.expect("set again");
            assert_eq!(store.backup_schedules().await.expect("list").len(), 2, "{label}");
            let sites = store.scheduled_sites().await.expect("sites");
            assert_eq!(sites.len(), 2, "{label}");
            assert_eq!((sites[0].site, sites[0].schedule.retention), (a, daily), "{label}");
            assert_eq!((sites[1].site, sites[1].schedule.compression), (b, Compression::Gzip), "{label}");

            let now = crate::now_millis();
            let queued = store.queue_due_backups(now).await.expect("queue");
            assert_eq!(queued.len(), 2, "{label}");
            assert!(queued.iter().all(|t| t.kind == TaskKind::SiteBackup && t.args["kind"] == "scheduled"), "{label}");
            // Queued and not yet run: nothing more is due, even an hour later.
            assert!(store.queue_due_backups(now + 3_600_000).await.expect("queue").is_empty(), "{label}");

            assert!(store.clear_backup_schedule(ScheduleTarget::Site(b)).await.expect("clear"), "{label}");
            assert!(!store.clear_backup_schedule(ScheduleTarget::Site(b)).await.expect("clear"), "{label}");
            assert_eq!(store.scheduled_sites().await.expect("sites")[1].schedule.retention, daily, "{label}");
            assert!(store.site_busy(a).await.expect("busy"), "{label}");
        }
    }
}
