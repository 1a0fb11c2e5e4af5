//! Backup vocabulary beyond the `Backup` record: archive compression, schedules with their retention
//! policy, and the pure decisions the daemon makes with them (is a scheduled backup due, which backups
//! retention lets go). No IO: the daemon feeds these functions what the store holds.

use crate::model::{BackupId, BackupKind, Millis, PlatformId, SiteId};
use crate::string_enum;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

string_enum!(
    /// How a backup archive is compressed: multi-threaded zstd (the default), or gzip for tools that
    /// only know `tar czf`.
    Compression { Zstd = "zstd", Gzip = "gzip" }
);

// The enum comes from `string_enum!`, which cannot mark a variant `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for Compression {
    fn default() -> Compression {
        Compression::Zstd
    }
}

impl Compression {
    /// The archive's file name extension, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => "tar.zst",
            Compression::Gzip => "tar.gz",
        }
    }

    /// The compression an archive's name says it has.
    pub fn of_path(path: &str) -> Option<Compression> {
        Compression::ALL.iter().copied().find(|c| path.ends_with(&format!(".{}", c.extension())))
    }
}

string_enum!(
    /// How a backup copies a MariaDB database: chosen by its size (`auto`: a SQL dump below
    /// [`PHYSICAL_BACKUP_MIN_BYTES`], its tablespace files above, where the server allows), always a
    /// dump (`logical`: an archive any server can load), or its files wherever the server allows.
    BackupMethod { Auto = "auto", Logical = "logical", Physical = "physical" }
);

#[allow(clippy::derivable_impls)]
impl Default for BackupMethod {
    fn default() -> BackupMethod {
        BackupMethod::Auto
    }
}

/// Below this size (data and indexes, as the server counts them) a database is backed up as a SQL
/// dump: every InnoDB file has a floor of pages and an application has dozens of tables, so for a
/// small site the dump is smaller and faster; above it copying the files wins, and restores much
/// faster. Measured with `fjord bench backup` (README, "Backups").
pub const PHYSICAL_BACKUP_MIN_BYTES: u64 = 64 * 1024 * 1024;

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;
const WEEK: Millis = 7 * DAY;

/// How many backups a schedule keeps (grandfather-father-son): the newest of each of the last `hourly`
/// hours, of each of the last `daily` days and of each of the last `weekly` weeks (weeks start on
/// Monday, UTC). Scheduled backups are taken at the finest period that keeps any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Retention {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    /// Retention may also prune manual and pre-restore/pre-migrate/pre-delete backups. Off by default:
    /// those are kept until deleted by hand.
    #[serde(default)]
    pub prune_manual: bool,
}

impl Retention {
    /// Whether the policy keeps anything at all (a schedule that keeps nothing is refused).
    pub fn keeps_any(&self) -> bool {
        self.hourly > 0 || self.daily > 0 || self.weekly > 0
    }

    /// Time between two scheduled backups: the finest period the policy keeps.
    pub fn interval(&self) -> Option<Millis> {
        if self.hourly > 0 {
            Some(HOUR)
        } else if self.daily > 0 {
            Some(DAY)
        } else if self.weekly > 0 {
            Some(WEEK)
        } else {
            None
        }
    }
}

/// A backup schedule, for one site or for every site of a platform (a site's own schedule wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSchedule {
    pub id: i64,
    pub site_id: Option<SiteId>,
    pub platform_id: Option<PlatformId>,
    pub retention: Retention,
    pub compression: Compression,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Whether a site's next scheduled backup is due: none was queued yet, or the last one was queued at
/// least one interval ago.
pub fn scheduled_backup_due(now: Millis, last_queued: Option<Millis>, retention: &Retention) -> bool {
    match (retention.interval(), last_queued) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(every), Some(last)) => now - last >= every,
    }
}

/// What retention needs to know of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupAge {
    pub id: BackupId,
    pub kind: BackupKind,
    pub created_at: Millis,
}

/// The backups of one site that `retention` lets go, at time `now`. Only scheduled backups are
/// candidates (all kinds with `prune_manual`); among them, the newest of each hour, day and week in the
/// kept windows stays, and so does the newest candidate overall: retention never removes a site's last
/// backup, nor one from the future (a clock that went back).
pub fn prune_selection(backups: &[BackupAge], retention: &Retention, now: Millis) -> Vec<BackupId> {
    let mut candidates: Vec<&BackupAge> =
        backups.iter().filter(|b| retention.prune_manual || b.kind == BackupKind::Scheduled).collect();
    // Newest first; ties broken by id so the choice is stable.
    candidates.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
    let mut keep: HashSet<BackupId> = HashSet::new();
    if let Some(newest) = candidates.first() {
        keep.insert(newest.id);
    }
    // Monday-based weeks: 1970-01-01 was a Thursday, three days after a Monday.
    type Bucket = fn(Millis) -> i64;
    let periods: [(u32, Bucket); 3] = [
        (retention.hourly, |t| t.div_euclid(HOUR)),
        (retention.daily, |t| t.div_euclid(DAY)),
        (retention.weekly, |t| (t + 3 * DAY).div_euclid(WEEK)),
    ];
    for (count, bucket) in periods {
        if count == 0 {
            continue;
        }
        let current = bucket(now);
        let oldest = current - i64::from(count) + 1;
        let mut seen = HashSet::new();
        for b in &candidates {
            let k = bucket(b.created_at);
            if k > current || (k >= oldest && seen.insert(k)) {
                keep.insert(b.id);
            }
        }
    }
    let mut pruned: Vec<BackupId> = candidates.iter().filter(|b| !keep.contains(&b.id)).map(|b| b.id).collect();
    pruned.sort();
    pruned
}

/// The time stamp in an archive's name: `YYYYMMDD-HHMMSS-mmm` (UTC), sorting as time does.
pub fn backup_stamp(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{:03}", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000))
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-18 (a Wednesday) 12:30 UTC.
    const NOW: Millis = 1_795_005_000_000;

    fn b(id: i64, kind: BackupKind, age: Millis) -> BackupAge {
        BackupAge { id: BackupId(id), kind, created_at: NOW - age }
    }

    fn check(backups: &[BackupAge], r: Retention, expect_pruned: &[i64]) {
        let got: Vec<i64> = prune_selection(backups, &r, NOW).into_iter().map(|i| i.0).collect();
        assert_eq!(got, expect_pruned);
    }

    fn policy(hourly: u32, daily: u32, weekly: u32) -> Retention {
        Retention { hourly, daily, weekly, prune_manual: false }
    }

    #[test]
    fn stamps_sort_and_read() {
        assert_eq!(backup_stamp(1_795_000_000_123), "20261118-110640-123");
        assert_eq!(backup_stamp(NOW), "20261118-123000-000");
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_recent_hour() {
        use BackupKind::Scheduled as S;
        // One three hours ago, one an hour ago, two in the current hour.
        let backups = [b(1, S, 3 * HOUR), b(2, S, HOUR), b(3, S, 20 * 60_000), b(4, S, 60_000)];
        check(&backups, policy(2, 0, 0), &[1, 3]);
        check(&backups, policy(4, 0, 0), &[3]);
    }

    #[test]
    fn days_and_weeks_reach_further_back() {
        use BackupKind::Scheduled as S;
        // One a day for 30 days, taken at 11:30.
        let backups: Vec<BackupAge> = (0..30).map(|d| b(100 - d, S, d * DAY + HOUR)).collect();
        let pruned = prune_selection(&backups, &policy(24, 7, 0), NOW);
        assert_eq!(pruned.len(), 23, "seven days kept: {pruned:?}");
        // Daily 7 + weekly 4: the newest of each of the last four Monday-based weeks stays too.
        let kept: Vec<i64> = backups
            .iter()
            .map(|x| x.id)
            .filter(|id| !prune_selection(&backups, &policy(0, 7, 4), NOW).contains(id))
            .map(|i| i.0)
            .collect();
        // Today is Wednesday: days 0-6 ago; this week's and last week's newest are among them; then
        // the Sundays 10 and 17 days ago, the newest of the two weeks before.
        assert_eq!(kept, vec![100, 99, 98, 97, 96, 95, 94, 90, 83]);
    }

    #[test]
    fn manual_and_pre_backups_stay_unless_asked() {
        use BackupKind::*;
        let backups = [b(1, Manual, 10 * DAY), b(2, PreRestore, 9 * DAY), b(3, Scheduled, 8 * DAY), b(4, Scheduled, 0)];
        check(&backups, policy(1, 0, 0), &[3]);
        check(&backups, Retention { prune_manual: true, ..policy(1, 0, 0) }, &[1, 2, 3]);
    }

    #[test]
    fn the_last_backup_and_future_ones_are_never_pruned() {
        use BackupKind::Scheduled as S;
        check(&[b(1, S, 50 * WEEK)], policy(1, 1, 1), &[]);
        check(&[b(1, S, 50 * WEEK), b(2, S, 40 * WEEK)], policy(1, 0, 0), &[1]);
        check(&[b(1, S, -HOUR), b(2, S, 0), b(3, S, 2 * HOUR)], policy(1, 0, 0), &[3]);
        check(&[], policy(1, 0, 0), &[]);
    }

    #[test]
    fn due_at_the_finest_period() {
        let hourly = policy(24, 14, 8);
        assert!(scheduled_backup_due(NOW, None, &hourly));
        assert!(!scheduled_backup_due(NOW, Some(NOW - HOUR + 1), &hourly));
        assert!(scheduled_backup_due(NOW, Some(NOW - HOUR), &hourly));
        assert!(!scheduled_backup_due(NOW, Some(NOW - 2 * HOUR), &policy(0, 14, 0)));
        assert!(scheduled_backup_due(NOW, Some(NOW - 8 * DAY), &policy(0, 0, 8)));
        assert!(!scheduled_backup_due(NOW, None, &policy(0, 0, 0)));
    }

    #[test]
    fn compression_from_names() {
        assert_eq!(Compression::of_path("/b/x-1.tar.zst"), Some(Compression::Zstd));
        assert_eq!(Compression::of_path("/b/x-1.tar.gz"), Some(Compression::Gzip));
        assert_eq!(Compression::of_path("/b/x-1.tar"), None);
    }
}
