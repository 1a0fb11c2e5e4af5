-- Backup schedules, for one site or for every site of a platform (a site's own wins), with their
-- retention: the newest backup of each of the last `hourly` hours, `daily` days and `weekly` weeks
-- is kept. `prune_manual` lets retention prune manual and pre-* backups too.
CREATE TABLE backup_schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER REFERENCES sites (id),
    platform_id INTEGER REFERENCES platforms (id),
    hourly INTEGER NOT NULL DEFAULT 0,
    daily INTEGER NOT NULL DEFAULT 0,
    weekly INTEGER NOT NULL DEFAULT 0,
    prune_manual INTEGER NOT NULL DEFAULT 0,
    compression TEXT NOT NULL DEFAULT 'zstd',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((site_id IS NULL AND platform_id IS NOT NULL) OR (site_id IS NOT NULL AND platform_id IS NULL))
);
CREATE UNIQUE INDEX backup_schedules_site ON backup_schedules (site_id);
CREATE UNIQUE INDEX backup_schedules_platform ON backup_schedules (platform_id);

-- Where a backup's offsite copy is (s3://BUCKET/KEY), once uploaded.
ALTER TABLE backups ADD COLUMN offsite TEXT;
