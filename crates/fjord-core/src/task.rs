//! Tasks: every change to the hosting model is a task in the persistent queue.

use crate::model::*;
use crate::string_enum;
use serde::{Deserialize, Serialize};

string_enum!(
    /// What a task does. Named `<object>-<verb>` in storage and in the CLI.
    TaskKind {
        ServerVerify = "server-verify",
        ServerRemove = "server-remove",
        ServerStop = "server-stop",
        ServerStart = "server-start",
        PlatformVerify = "platform-verify",
        PlatformRemove = "platform-remove",
        SiteInstall = "site-install",
        SiteVerify = "site-verify",
        SiteEnable = "site-enable",
        SiteDisable = "site-disable",
        SiteDelete = "site-delete",
        SiteLoginLink = "site-login-link",
        SiteCron = "site-cron",
        SiteImport = "site-import",
        SiteBackup = "site-backup",
        SiteRestore = "site-restore",
        SiteArchiveReplaced = "site-archive-replaced",
        SiteClone = "site-clone",
        SiteMigrate = "site-migrate",
        SiteSync = "site-sync",
        SiteMigrateCheck = "site-migrate-check",
        SiteCert = "site-cert",
        PlatformMigrate = "platform-migrate",
        Noop = "noop",
    }
);

/// What happens to a task whose daemon died while it ran, once its applied steps are undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptPolicy {
    /// Run it again from the start (the task is idempotent).
    Requeue,
    /// Leave it failed; a person decides whether to retry.
    Fail,
}

impl TaskKind {
    /// The kinds that build a new site record, and leave it `failed` when they fail: retrying that
    /// task is how the site is tried again.
    pub fn makes_site(self) -> bool {
        matches!(self, TaskKind::SiteInstall | TaskKind::SiteClone | TaskKind::SiteRestore)
    }

    pub fn on_interrupt(self) -> InterruptPolicy {
        match self {
            TaskKind::ServerVerify
            | TaskKind::ServerStop
            | TaskKind::ServerStart
            | TaskKind::PlatformVerify
            | TaskKind::SiteVerify
            | TaskKind::SiteEnable
            | TaskKind::SiteDisable
            | TaskKind::SiteLoginLink
            | TaskKind::SiteCron
            | TaskKind::SiteBackup
            | TaskKind::SiteMigrateCheck
            | TaskKind::SiteCert
            | TaskKind::PlatformMigrate
            | TaskKind::Noop => InterruptPolicy::Requeue,
            TaskKind::ServerRemove
            | TaskKind::PlatformRemove
            | TaskKind::SiteInstall
            | TaskKind::SiteImport
            | TaskKind::SiteRestore
            | TaskKind::SiteArchiveReplaced
            | TaskKind::SiteClone
            | TaskKind::SiteMigrate
            | TaskKind::SiteSync
            | TaskKind::SiteDelete => InterruptPolicy::Fail,
        }
    }

    pub fn target_kind(self) -> TargetKind {
        match self {
            TaskKind::ServerVerify | TaskKind::ServerRemove | TaskKind::ServerStop | TaskKind::ServerStart => {
                TargetKind::Server
            }
            TaskKind::PlatformVerify | TaskKind::PlatformRemove | TaskKind::PlatformMigrate => TargetKind::Platform,
            TaskKind::SiteInstall
            | TaskKind::SiteVerify
            | TaskKind::SiteEnable
            | TaskKind::SiteDisable
            | TaskKind::SiteDelete
            | TaskKind::SiteLoginLink
            | TaskKind::SiteCron
            | TaskKind::SiteImport
            | TaskKind::SiteBackup
            | TaskKind::SiteRestore
            | TaskKind::SiteArchiveReplaced
            | TaskKind::SiteClone
            | TaskKind::SiteMigrate
            | TaskKind::SiteSync
            | TaskKind::SiteMigrateCheck
            | TaskKind::SiteCert => TargetKind::Site,
            TaskKind::Noop => TargetKind::Site,
        }
    }
}

string_enum!(TargetKind { Server = "server", Platform = "platform", Site = "site" });

string_enum!(
    TaskStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
    }
);

impl TaskStatus {
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

/// The place of a task's target in the server → platform → site hierarchy. Two tasks conflict (must not
/// run at the same time, and run in queue order) when one lane is a prefix of the other: a site task
/// conflicts with tasks on the same site, on its platform and on its server; a platform task with
/// everything on that platform; a server task with everything on that server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lane {
    pub server: ServerId,
    pub platform: Option<PlatformId>,
    pub site: Option<SiteId>,
}

impl Lane {
    /// The lane of a batch task (`platform-migrate`) on `platform`. A batch only queues and watches
    /// other tasks, so it must not block them: its lane is on server 0, which no server has, so it
    /// conflicts with nothing but another batch of the same platform (those run one after the other).
    pub fn batch(platform: PlatformId) -> Lane {
        Lane { server: ServerId(0), platform: Some(platform), site: None }
    }

    pub fn conflicts_with(&self, other: &Lane) -> bool {
        fn prefix<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        }
        self.server == other.server
            && prefix(self.platform, other.platform)
            && (self.platform.is_none() || other.platform.is_none() || prefix(self.site, other.site))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub kind: TaskKind,
    pub target_kind: TargetKind,
    pub target_id: i64,
    pub lane: Lane,
    pub args: serde_json::Value,
    pub status: TaskStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Millis>,
    pub error: Option<String>,
    /// Who asked for it ("cli:root", "api:alice", "daemon" for scheduled work).
    pub created_by: String,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The task is not claimed before this time (retry back-off).
    pub run_after: Millis,
    /// The batch task that queued this one (a `platform-migrate`'s site migrates).
    #[serde(default)]
    pub parent: Option<TaskId>,
}

impl Task {
    /// A task that does not exist yet, for planning a dry run or checking a task would be accepted.
    pub fn prospective(kind: TaskKind, target_id: i64, lane: Lane, args: serde_json::Value) -> Task {
        Task {
            id: TaskId(0),
            kind,
            target_kind: kind.target_kind(),
            target_id,
            lane,
            args,
            status: TaskStatus::Queued,
            attempts: 0,
            max_attempts: 3,
            cancel_requested: false,
            lease_owner: None,
            lease_until: None,
            error: None,
            created_by: String::new(),
            created_at: 0,
            started_at: None,
            finished_at: None,
            run_after: 0,
            parent: None,
        }
    }

    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// Output of a command that its task reports as data, not only as log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Report {
    /// The last http(s) URL printed on stdout: a one-time login link.
    LoginLink,
    /// A migrate's schema check: `pending: MODULE …` on stdout, `refused: …` on stderr.
    MigrateCheck,
}

impl Report {
    /// Whether a line of output is the reported value itself and stays out of the task's log: a login
    /// link is a credential, and logs outlive its use.
    pub fn is_secret(self, line: &str) -> bool {
        self == Report::LoginLink && line.contains("://")
    }
}

/// How long a one-time login link is offered after its task ended (drush's links last a day).
pub const LOGIN_LINK_TTL_MS: Millis = 24 * 3600 * 1000;

/// What a (non-batch) task found out, stored as its result (`tasks.result`) when it ends: the values
/// its callers need, so none of them reads its log back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// It passed its commit mark: its change is done and checked (a cleanup after it may have failed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub committed: bool,
    /// How long its site was not served as before (a migrate's maintenance window), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// A one-time login link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_link: Option<String>,
    /// A migrate check's findings: modules with pending updates …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// … and reasons the migrate would be refused (a newer schema than the new code knows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

impl TaskReport {
    pub fn is_empty(&self) -> bool {
        self == &TaskReport::default()
    }

    /// Takes what `report` asks for from a command's output lines.
    pub fn take(&mut self, report: Report, lines: &[(LogStream, String)]) {
        match report {
            Report::LoginLink => {
                let url = lines
                    .iter()
                    .filter(|(s, _)| *s == LogStream::Stdout)
                    .map(|(_, l)| l.trim())
                    .rfind(|t| t.starts_with("http://") || t.starts_with("https://"));
                if let Some(u) = url {
                    self.login_link = Some(u.to_string());
                }
            }
            Report::MigrateCheck => {
                for (_, l) in lines {
                    let l = l.trim();
                    if let Some(p) = l.strip_prefix("pending:") {
                        self.pending.push(p.trim().to_string());
                    } else if let Some(r) = l.strip_prefix("refused:") {
                        self.refused.push(r.trim().to_string());
                    }
                }
            }
        }
    }
}

/// A new task, before it has an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub kind: TaskKind,
    pub target_id: i64,
    pub args: serde_json::Value,
    pub created_by: String,
}

impl NewTask {
    pub fn new(kind: TaskKind, target_id: i64, args: serde_json::Value, created_by: impl Into<String>) -> NewTask {
        NewTask { kind, target_id, args, created_by: created_by.into() }
    }
}

string_enum!(LogLevel { Debug = "debug", Info = "info", Warn = "warn", Error = "error" });
string_enum!(
    /// Where a log line came from: Fjord itself, or the output of a command the task ran.
    LogStream { Fjord = "fjord", Stdout = "stdout", Stderr = "stderr" }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: i64,
    pub task_id: TaskId,
    pub ts: Millis,
    pub level: LogLevel,
    pub stream: LogStream,
    pub text: String,
}

string_enum!(
    /// The state of one step of a running task, as recorded in the undo log.
    /// `undo-failed` steps are retried by the daemon until they succeed (`undone`) or a later task on
    /// the same target makes the retry unsafe (`undo-superseded`: that task owns the target now).
    StepStatus {
        Pending = "pending",
        Applied = "applied",
        Failed = "failed",
        Undone = "undone",
        UndoFailed = "undo-failed",
        UndoSuperseded = "undo-superseded",
    }
);

/// One entry of a task's undo log: what a step did and what undoing it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub task_id: TaskId,
    pub idx: i64,
    pub description: String,
    pub status: StepStatus,
    /// JSON the executor needs to undo the step (e.g. where the previous file content was saved).
    pub undo: Option<String>,
    /// How long the step took to apply (or to fail), once it has.
    #[serde(default)]
    pub duration_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(server: i64, platform: Option<i64>, site: Option<i64>) -> Lane {
        Lane { server: ServerId(server), platform: platform.map(PlatformId), site: site.map(SiteId) }
    }

    #[test]
    fn lanes_conflict_along_the_hierarchy() {
        let s1 = lane(1, Some(1), Some(1));
        let s2 = lane(1, Some(1), Some(2));
        let p1 = lane(1, Some(1), None);
        let p2 = lane(1, Some(2), None);
        let srv = lane(1, None, None);
        let other = lane(2, Some(3), Some(9));
        assert!(s1.conflicts_with(&s1));
        assert!(!s1.conflicts_with(&s2));
        assert!(s1.conflicts_with(&p1) && p1.conflicts_with(&s2));
        assert!(!p1.conflicts_with(&p2) && !s1.conflicts_with(&p2));
        assert!(srv.conflicts_with(&s1) && srv.conflicts_with(&p2));
        assert!(!other.conflicts_with(&s1) && !other.conflicts_with(&srv));
    }

    #[test]
    fn kinds_round_trip() {
        for k in TaskKind::ALL {
            assert_eq!(TaskKind::parse(k.as_str()), Some(*k));
        }
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn reports_take_their_values_from_output() {
        let lines = |v: &[(LogStream, &str)]| v.iter().map(|(s, l)| (*s, l.to_string())).collect::<Vec<_>>();
        let mut r = TaskReport::default();
        assert!(r.is_empty());
        r.take(
            Report::LoginLink,
            &lines(&[
                (LogStream::Stdout, "http://old.example/"),
                (LogStream::Stderr, "https://not-this.example/"),
                (LogStream::Stdout, " http://d.example/user/reset/1/2/3 "),
            ]),
        );
        assert_eq!(r.login_link.as_deref(), Some("http://d.example/user/reset/1/2/3"));
        r.take(
            Report::MigrateCheck,
            &lines(&[
                (LogStream::Stdout, "pending: node 10301"),
                (LogStream::Stderr, "refused: views schema 9000 > 8000"),
            ]),
        );
        assert_eq!(r.pending, ["node 10301"]);
        assert_eq!(r.refused, ["views schema 9000 > 8000"]);
        let json = serde_json::to_value(&r).expect("serializes");
        assert_eq!(serde_json::from_value::<TaskReport>(json).expect("reads back"), r);
    }
}
