//! Batch tasks: a `platform-migrate` moves every site of a platform to another, each site as its own
//! `site-migrate` task (with its own backup and rollback), at most `parallel` at a time, canaries first.
//!
//! The daemon runs the batch; what it decides is here, pure: which sites to start next, when the
//! canaries stop the rest, what a cancel skips. The [`BatchSummary`] is the batch's whole state: it is
//! stored with the task after every change, so a restarted daemon carries on from it.

use crate::string_enum;
use serde::{Deserialize, Serialize};

/// Arguments of a `platform-migrate` task. The sites are fixed when the batch is asked for (the ones
/// its dry run showed), in the order they move: canaries first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformMigrateArgs {
    pub to_platform: i64,
    /// Most site migrates running at once (at least 1).
    pub parallel: usize,
    /// This many sites move first; if any of them does not migrate, the rest are skipped.
    #[serde(default)]
    pub canary: usize,
    /// Every site through a maintenance window, even without database updates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
    pub sites: Vec<BatchSite>,
}

/// A site of a batch, as it was when the batch was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSite {
    pub id: i64,
    pub domain: String,
}

string_enum!(
    /// What became (or, in a dry run, would become) of one site of a batch.
    SiteResult {
        Pending = "pending",
        Running = "running",
        Migrated = "migrated",
        RolledBack = "rolled-back",
        Refused = "refused",
        Skipped = "skipped",
        WouldMigrate = "would-migrate",
        WouldRefuse = "would-refuse",
    }
);

impl SiteResult {
    pub fn is_final(self) -> bool {
        !matches!(self, SiteResult::Pending | SiteResult::Running)
    }
}

/// One site's line of a batch summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteOutcome {
    pub site: i64,
    pub domain: String,
    pub result: SiteResult,
    /// The site's migrate task (or, in a dry run, its migrate check).
    pub task: Option<i64>,
    /// The maintenance window its migrate logged, in ms.
    pub downtime_ms: Option<u64>,
    pub detail: String,
}

/// The state and, once every site is final, the outcome of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub dry_run: bool,
    pub sites: Vec<SiteOutcome>,
}

impl BatchSummary {
    /// A batch about to start: every site pending.
    pub fn start(from: &str, to: &str, sites: &[BatchSite]) -> BatchSummary {
        BatchSummary {
            from: from.into(),
            to: to.into(),
            dry_run: false,
            sites: sites
                .iter()
                .map(|s| SiteOutcome {
                    site: s.id,
                    domain: s.domain.clone(),
                    result: SiteResult::Pending,
                    task: None,
                    downtime_ms: None,
                    detail: String::new(),
                })
                .collect(),
        }
    }

    pub fn count(&self, result: SiteResult) -> usize {
        self.sites.iter().filter(|s| s.result == result).count()
    }

    /// No site is waiting or moving any more.
    pub fn finished(&self) -> bool {
        self.sites.iter().all(|s| s.result.is_final())
    }

    /// No site failed, was refused, or is unfinished: each migrated (or would), or was skipped because
    /// it had left the platform (a skip after a failed canary comes with that canary's failure).
    pub fn all_ok(&self) -> bool {
        self.sites
            .iter()
            .all(|s| matches!(s.result, SiteResult::Migrated | SiteResult::WouldMigrate | SiteResult::Skipped))
    }

    /// Decides what happens next: marks the pending sites skipped when the batch was cancelled or a
    /// canary did not migrate, and returns the indexes of the sites to start now (at most `parallel`
    /// running, the first `canary` sites alone until they are all final).
    pub fn next(&mut self, parallel: usize, canary: usize, cancelled: bool) -> Vec<usize> {
        let canary = canary.min(self.sites.len());
        let canaries_done = self.sites[..canary].iter().all(|s| s.result.is_final());
        let canary_failed = canaries_done && self.sites[..canary].iter().any(|s| s.result != SiteResult::Migrated);
        let stop = if cancelled {
            Some("the batch was cancelled before this site")
        } else if canary_failed {
            Some("a canary site did not migrate: the batch stopped")
        } else {
            None
        };
        if let Some(why) = stop {
            for s in self.sites.iter_mut().filter(|s| s.result == SiteResult::Pending) {
                s.result = SiteResult::Skipped;
                s.detail = why.into();
            }
            return vec![];
        }
        let running = self.count(SiteResult::Running);
        // While a canary is unfinished, only canaries may start.
        let eligible = if canaries_done { self.sites.len() } else { canary };
        self.sites[..eligible]
            .iter()
            .enumerate()
            .filter(|(_, s)| s.result == SiteResult::Pending)
            .map(|(i, _)| i)
            .take(parallel.max(1).saturating_sub(running))
            .collect()
    }

    /// "3 migrated, 1 rolled back, 0 refused, 0 skipped" (or what a dry run found).
    pub fn counts_line(&self) -> String {
        if self.dry_run {
            format!(
                "dry run: {} would migrate, {} would be refused; nothing was changed",
                self.count(SiteResult::WouldMigrate),
                self.count(SiteResult::WouldRefuse)
            )
        } else {
            format!(
                "{} migrated, {} rolled back, {} refused, {} skipped",
                self.count(SiteResult::Migrated),
                self.count(SiteResult::RolledBack),
                self.count(SiteResult::Refused),
                self.count(SiteResult::Skipped)
            )
        }
    }

    /// The summary as JSON with its counts, as `platform migrate --json` and the API print it.
    pub fn report(&self, task: Option<i64>) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a summary serializes");
        v["task"] = serde_json::json!(task);
        v["migrated"] = serde_json::json!(self.count(SiteResult::Migrated));
        v["rolled_back"] = serde_json::json!(self.count(SiteResult::RolledBack));
        v["refused"] = serde_json::json!(self.count(SiteResult::Refused));
        v["skipped"] = serde_json::json!(self.count(SiteResult::Skipped));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SiteResult::*;

    fn batch(n: usize) -> BatchSummary {
        let sites: Vec<BatchSite> =
            (0..n).map(|i| BatchSite { id: i as i64, domain: format!("s{i}.example") }).collect();
        BatchSummary::start("old", "new", &sites)
    }

    fn set(b: &mut BatchSummary, results: &[SiteResult]) {
        for (s, r) in b.sites.iter_mut().zip(results) {
            s.result = *r;
        }
    }

    fn results(b: &BatchSummary) -> Vec<SiteResult> {
        b.sites.iter().map(|s| s.result).collect()
    }

    #[test]
    fn starts_at_most_parallel_sites() {
        let mut b = batch(5);
        assert_eq!(b.next(2, 0, false), [0, 1]);
        set(&mut b, &[Running, Running]);
        assert_eq!(b.next(2, 0, false), Vec::<usize>::new());
        set(&mut b, &[Migrated, Running]);
        assert_eq!(b.next(2, 0, false), [2]);
        // parallel 0 is read as 1.
        assert_eq!(batch(3).next(0, 0, false), [0]);
    }

    #[test]
    fn canaries_go_alone_and_a_failed_one_skips_the_rest() {
        let mut b = batch(4);
        assert_eq!(b.next(3, 2, false), [0, 1]);
        set(&mut b, &[Migrated, Running]);
        assert_eq!(b.next(3, 2, false), Vec::<usize>::new(), "the rest waits for the last canary");
        set(&mut b, &[Migrated, Migrated]);
        assert_eq!(b.next(3, 2, false), [2, 3]);

        let mut b = batch(4);
        set(&mut b, &[RolledBack]);
        assert_eq!(b.next(2, 1, false), Vec::<usize>::new());
        assert_eq!(results(&b), [RolledBack, Skipped, Skipped, Skipped]);
        assert!(b.finished() && !b.all_ok());

        // A refused canary stops the batch too.
        let mut b = batch(2);
        set(&mut b, &[Refused]);
        b.next(1, 1, false);
        assert_eq!(results(&b), [Refused, Skipped]);
    }

    #[test]
    fn a_cancel_skips_what_has_not_started_and_lets_the_running_finish() {
        let mut b = batch(3);
        set(&mut b, &[Migrated, Running]);
        assert_eq!(b.next(2, 0, true), Vec::<usize>::new());
        assert_eq!(results(&b), [Migrated, Running, Skipped]);
        assert!(!b.finished());
        assert!(b.sites[2].detail.contains("cancelled"));
    }

    #[test]
    fn an_empty_batch_is_finished_at_once() {
        let mut b = batch(0);
        assert_eq!(b.next(1, 3, false), Vec::<usize>::new());
        assert!(b.finished() && b.all_ok());
    }

    #[test]
    fn counts_and_downtime() {
        let mut b = batch(3);
        set(&mut b, &[Migrated, RolledBack, Skipped]);
        assert_eq!(b.counts_line(), "1 migrated, 1 rolled back, 0 refused, 1 skipped");
        let r = b.report(Some(7));
        assert_eq!(
            (r["migrated"].as_u64(), r["rolled_back"].as_u64(), r["task"].as_i64()),
            (Some(1), Some(1), Some(7))
        );
        assert_eq!(r["sites"][1]["result"], "rolled-back");
    }
}
