//! A plan is what a task will do to a host, as data: computed by a pure planner, printed by `--dry-run`,
//! stored with the task, and executed step by step by the daemon, which records an undo entry for each
//! applied step so that a failure (or a crash) rolls back systematically.

use serde::{Deserialize, Serialize};

/// The marker a planner puts into file content where a secret goes. The executor replaces it with the
/// secret read from the secrets store at write time, so plans, logs and dry-runs never contain secrets.
pub const SECRET_OPEN: &str = "@@fjord-secret:";
pub const SECRET_CLOSE: &str = "@@";

/// A reference to a secret that must already exist (e.g. a database admin password).
pub fn secret_ref(key: &str) -> String {
    format!("{SECRET_OPEN}{key}{SECRET_CLOSE}")
}

/// Suffix of a secret reference whose secret is generated (random) the first time it is used.
pub const SECRET_GENERATE: &str = "?generate";

/// A reference to a secret that is generated on first use and kept (e.g. a site's database password).
pub fn secret_gen(key: &str) -> String {
    format!("{SECRET_OPEN}{key}{SECRET_GENERATE}{SECRET_CLOSE}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn push(&mut self, step: Step) -> &mut Self {
        self.steps.push(step);
        self
    }

    pub fn extend(&mut self, steps: impl IntoIterator<Item = Step>) -> &mut Self {
        self.steps.extend(steps);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "content", rename_all = "lowercase")]
pub enum FileContent {
    /// Text that may contain secret markers (see [`secret_ref`]).
    Text { text: String },
}

/// A command to run: an argv (never a shell string) with what it needs. Secrets reach it only through
/// `stdin` or `files` (0600 temp files), both of which may contain secret markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// `{tmp:NAME}` in an argument is replaced by the path of temp file NAME; `{pid:PATH}` by the
    /// process id read from PATH.
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// A file fed to stdin (a database dump to import), instead of `stdin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_file: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<TempFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub timeout_secs: u64,
    /// Output lines containing any of these are masked in the task log (e.g. a password an installer
    /// prints).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// What of its output the task reports as data (its result), besides logging it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::task::Report>,
    /// The Unix user it runs as (with that user's primary group and no other); `None`: root. A
    /// command that runs a site's code (its PHP, drush, installers, cron) runs as the site's user,
    /// never root: the site can change that code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The points of a plan the runner acts on. Serialized as the names plans always had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mark {
    /// The new state is in place and checked: a failure or crash before it rolls everything back;
    /// after it the rest (cleanup that drops what a rollback would need) is finished, never undone.
    #[serde(rename = "commit")]
    Commit,
    /// The site stops being served as before (a migrate's maintenance window begins) …
    #[serde(rename = "maintenance-start")]
    DowntimeStart,
    /// … and is served again: the time between the two is the task's downtime.
    #[serde(rename = "maintenance-end")]
    DowntimeEnd,
    /// The site is switched while it is served (a code move with no database updates): there is no
    /// window, its downtime is 0.
    #[serde(rename = "no-maintenance")]
    NoDowntime,
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mark::Commit => "commit",
            Mark::DowntimeStart => "maintenance-start",
            Mark::DowntimeEnd => "maintenance-end",
            Mark::NoDowntime => "no-maintenance",
        })
    }
}

impl Command {
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Command {
        Command {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            stdin: None,
            stdin_file: None,
            files: Vec::new(),
            cwd: None,
            timeout_secs: 300,
            redact: Vec::new(),
            report: None,
            user: None,
        }
    }
    /// Runs as `user` instead of root (see [`Command::user`]).
    pub fn as_user(mut self, user: impl Into<String>) -> Command {
        self.user = Some(user.into());
        self
    }
    /// Its output is reported as data in the task's result (see [`crate::task::Report`]).
    pub fn reports(mut self, report: crate::task::Report) -> Command {
        self.report = Some(report);
        self
    }
    pub fn stdin(mut self, text: impl Into<String>) -> Command {
        self.stdin = Some(text.into());
        self
    }
    pub fn file(mut self, name: &str, content: impl Into<String>) -> Command {
        self.files.push(TempFile { name: name.into(), content: content.into() });
        self
    }
    pub fn cwd(mut self, dir: impl Into<String>) -> Command {
        self.cwd = Some(dir.into());
        self
    }
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Command {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn timeout(mut self, secs: u64) -> Command {
        self.timeout_secs = secs;
        self
    }
    /// Adds `option` just before the last argument (a dump's database name), where the clients take
    /// their options.
    pub fn insert_option(&mut self, option: String) {
        let at = self.argv.len().saturating_sub(1);
        self.argv.insert(at, option);
    }
    pub fn redact(mut self, needle: impl Into<String>) -> Command {
        self.redact.push(needle.into());
        self
    }
}

/// A directory a backup holds, under `name`, without the relative paths in `exclude` (caches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupTree {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A MariaDB database that may be copied physically (its InnoDB tablespace files, "transportable
/// tablespaces") instead of through SQL. Whether it can is decided when the step runs (the server's
/// datadir must be on this host, every table InnoDB in its own file, none partitioned); otherwise the
/// step takes its logical path and logs why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalDb {
    /// The server's admin client (`mariadb --defaults-extra-file={tmp:…} --batch --skip-column-names`),
    /// without stdin: the executor writes its SQL (`FLUSH TABLES … FOR EXPORT`, `ALTER TABLE …
    /// DISCARD/IMPORT TABLESPACE`) to it.
    pub admin: Command,
    pub database: String,
    /// The structure without data (`mariadb-dump --no-data`: tables, views, triggers) as the site's
    /// account; set where this database is the source of a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Command>,
    /// Below this size (data and indexes) the logical path is taken: a dump is smaller and faster.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Tables whose rows a backup leaves out: the application's caches (Drupal's `cache` and `cache_*`
/// bins), rebuilt on demand. Their structure stays in the archive, so a restored site has them empty,
/// as it has no generated CSS/JS aggregates (cached pages that link to those would be stale anyway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheTables {
    /// Table names, or name prefixes ending in `*`.
    pub patterns: Vec<String>,
    /// For a dump that leaves out tables by name (`mariadb-dump`): lists the database's tables, one
    /// per line, and `skip_arg` + a table name is the option that leaves out its rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<Command>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub skip_arg: String,
}

impl CacheTables {
    pub fn matches(&self, table: &str) -> bool {
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => table.starts_with(prefix),
            None => table == p,
        })
    }
}

/// A physical copy of database `source` into `target` on the same server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalCopy {
    pub source: PhysicalDb,
    pub target: String,
}

/// A file that exists (mode 0600) only while its command runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TempFile {
    pub name: String,
    pub content: String,
}

/// One thing done to a host. Every step is idempotent (applying it twice has the effect of applying it
/// once), so a resumed or retried task is safe, and each knows how to undo itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
// Plans are data, built once per task and stored as JSON: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Create a directory (and missing parents). Undo removes what this step created, with anything
    /// put inside it since.
    MakeDir {
        path: String,
        mode: u32,
        /// `user:group` to own the directory; `None` keeps the creator's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Write a file atomically (temp file + rename) with the given mode. Undo restores the previous
    /// content, or removes the file if there was none. A write that changes nothing is skipped.
    WriteFile {
        path: String,
        content: FileContent,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Run a command whose effect lasts and that only makes sure of something (a site's database,
    /// account and grants; that an admin account can do its work), again only when it differs from
    /// the one that last succeeded: `stamp` (a root-only file) holds a digest of that command, its
    /// secrets filled in. A verify that changes nothing so starts no database client; a changed
    /// name, password or server changes the digest. Removing the stamp makes the next verify run it.
    /// Undo removes the stamp, then runs `undo`.
    RunOnce {
        label: String,
        cmd: Command,
        stamp: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<Command>,
    },
    /// Make sure a file exists (created empty if missing, never truncated) with `mode` and `owner`,
    /// in process, changing only what differs. Undo removes it if this step created it, or gives it
    /// back its old owner and mode.
    EnsureFile {
        path: String,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Give the trees at `paths` (those that exist) to `owner` (`user:group`), in process: each entry
    /// is looked at and changed only when its owner differs, links are never followed, and nothing
    /// outside the tree or on another filesystem is reached. With `written` (the task just wrote the
    /// trees: a copy, an unpacked backup) every tree is walked. Otherwise only a tree whose top
    /// directory has another owner is (a site's new user): the top is given last, after everything
    /// in it, so a top with the right owner means its last walk finished, and a verify of a tree
    /// already right costs one `lstat`, whatever its size. Undo gives a tree this step walked because
    /// of its top back to that top's previous owner.
    OwnTrees {
        paths: Vec<String>,
        owner: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        written: bool,
    },
    /// Remove a file or directory tree. Undo puts it back (it is moved aside, not deleted, until the
    /// task has succeeded).
    RemovePath { path: String },
    /// Run a command. `undo` reverses it; it must be safe to run even if the command did not run or
    /// failed half-way (e.g. `DROP DATABASE IF EXISTS`).
    Run {
        label: String,
        cmd: Command,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<Command>,
    },
    /// Make a service pick up new config: validate it with `check`, then `reload` it if its pid file
    /// names a live process, else `start` it. Skipped when `watch` is not empty and no file under
    /// those paths changed in this task. Concurrent reloads of one service are coalesced. On rollback
    /// the service is reloaded again once the old files are back.
    Service {
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<Command>,
        start: Command,
        reload: Command,
        pidfile: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        watch: Vec<String>,
    },
    /// Request a URL from the web server and check the answer (the site is really served).
    HttpCheck {
        /// `http://127.0.0.1:PORT/path`: where to connect.
        url: String,
        /// The Host header to send.
        host: String,
        /// Acceptable status codes.
        expect: Vec<u16>,
        /// Text the body must contain, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contains: Option<String>,
        /// The site's PHP error log: a PHP fatal error written to it while the check runs, or shown in
        /// the body, fails the check (a health check, not just a status code).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_log: Option<String>,
    },
    /// Stream the output of `from` into `to` through a pipe (a database copied from one database to
    /// another without an intermediate file). Both are argv commands; `undo` reverses `to`'s effect.
    /// With `physical` (a MariaDB clone on one server) and a database that allows it, only the
    /// structure goes through the pipe (`physical.source.schema` into `to`) and the tables' tablespace
    /// files are copied into `physical.target` (see [`PhysicalDb`]).
    Pipe {
        label: String,
        from: Command,
        to: Command,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<Command>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        physical: Option<PhysicalCopy>,
    },
    /// Load an unpacked backup's database (in `dir`) into the site's new, empty database: its dump
    /// `database.sql` through `import` (stdin), or, for an archive made physically, its structure
    /// `database/schema.sql` through `import` and then its tablespace files through `physical`. An
    /// archive of tablespace files that this server cannot take fails here, before anything changed.
    LoadDatabase {
        label: String,
        dir: String,
        import: Command,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        physical: Option<PhysicalDb>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<Command>,
    },
    /// A point in the task's timeline the runner acts on (see [`Mark`]).
    Mark { name: Mark },
    /// Write a backup archive: check the backups filesystem has room, run `dump` (if any) into a 0600
    /// temp file, then stream the manifest, the dump and the `trees` into `archive` (tar + zstd or
    /// gzip), with its SHA-256 beside it. Undo removes it.
    Backup {
        archive: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dump: Option<Command>,
        trees: Vec<BackupTree>,
        manifest: serde_json::Value,
        #[serde(default)]
        compression: crate::Compression,
        /// Archive the tables' tablespace files (+ the structure) instead of `dump` where the
        /// database allows it; the manifest's `db_format` says which was done.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        physical: Option<PhysicalDb>,
        /// Tables archived without their rows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_tables: Option<CacheTables>,
    },
    /// Check a backup archive against its checksum and unpack it into `dest` (created 0700). Undo
    /// removes `dest`.
    Extract { archive: String, sha256: String, dest: String },
    /// Move a file or directory (same filesystem). Undo moves it back. Nothing to move is a no-op.
    Move { from: String, to: String },
    /// Obtain a certificate for `names` (the main domain first) as `request` says, and install its
    /// key (0600), chain and `cert.json` in `dir`. ACME answers HTTP-01 challenges from files under
    /// `acme_dir`. Undo puts the previous files back (the old certificate keeps serving).
    Certificate { domain: String, names: Vec<String>, dir: String, acme_dir: String, request: crate::CertRequest },
    /// Revoke the certificate a `Certificate` step replaced (kept as `replaced.pem` in `dir`) with the
    /// ACME server `request` names. Runs only once the new one serves, past the task's commit.
    RevokeReplaced { dir: String, request: crate::CertRequest },
    /// Make sure a Unix user `name` and its group of the same name exist (a site's PHP user), and,
    /// with `web_user`, that the web server's user is in that group (it serves the site's static
    /// files from directories closed to everyone else). Undo removes the user and group only if this
    /// step created them.
    UnixUser {
        name: String,
        home: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        web_user: Option<String>,
    },
    /// Wait until `path` exists (a socket a reloaded PHP-FPM master binds a moment after its reload
    /// returns), at most `timeout_ms`.
    WaitForPath { path: String, timeout_ms: u64 },
    /// Remove a Unix user and its group, if they exist. No undo: it goes after a task's commit.
    RemoveUnixUser { name: String },
    /// Wait; used by no-op tasks in tests and benchmarks.
    Sleep { ms: u64 },
    /// Fail on purpose; used for fault injection in tests.
    Fail { message: String },
}

impl Step {
    /// One line saying what the step does, for logs and plans. Never contains a secret.
    pub fn describe(&self) -> String {
        match self {
            Step::MakeDir { path, mode, .. } => format!("make directory {path} (mode {mode:o})"),
            Step::WriteFile { path, mode, .. } => format!("write {path} (mode {mode:o})"),
            Step::RunOnce { label, cmd, .. } => format!("{label}, unless done before: run {}", shell_words(&cmd.argv)),
            Step::EnsureFile { path, mode, owner } => match owner {
                Some(o) => format!("make sure {path} exists (mode {mode:o}, owner {o})"),
                None => format!("make sure {path} exists (mode {mode:o})"),
            },
            Step::OwnTrees { paths, owner, written } => {
                let when = if *written { "" } else { " where their owner differs" };
                format!("give {} to {owner}{when}", paths.join(", "))
            }
            Step::RemovePath { path } => format!("remove {path}"),
            Step::Run { label, cmd, .. } => match &cmd.user {
                Some(user) => format!("{label}: run as {user}: {}", shell_words(&cmd.argv)),
                None => format!("{label}: run {}", shell_words(&cmd.argv)),
            },
            Step::Service { service, .. } => format!("check and reload {service}"),
            Step::HttpCheck { url, host, .. } => format!("request {url} as {host}"),
            Step::Pipe { label, from, to, physical, .. } => {
                let pipe = format!("{} | {}", shell_words(&from.argv), shell_words(&to.argv));
                match physical {
                    // Which one runs is decided on the host, when the step runs (and logged): say both.
                    Some(p) => format!(
                        "{label}: copy the tablespace files of {} into {} where its tables allow (a physical \
                         copy), else run {pipe}",
                        p.source.database, p.target
                    ),
                    None => format!("{label}: run {pipe}"),
                }
            }
            Step::LoadDatabase { label, dir, .. } => format!("{label}: load the database in {dir}"),
            Step::Mark { name } => format!("mark {name}"),
            Step::Backup { archive, .. } => format!("write backup {archive}"),
            Step::Extract { archive, dest, .. } => format!("check and unpack {archive} into {dest}"),
            Step::Move { from, to } => format!("move {from} to {to}"),
            Step::Certificate { domain, names, request, .. } => {
                format!("obtain a certificate for {domain} ({}; {})", request.source(), names.join(", "))
            }
            Step::RevokeReplaced { dir, .. } => format!("revoke the certificate replaced in {dir}"),
            Step::UnixUser { name, web_user, .. } => match web_user {
                Some(w) => format!("make sure Unix user {name} exists, with {w} in its group"),
                None => format!("make sure Unix user {name} exists"),
            },
            Step::RemoveUnixUser { name } => format!("remove Unix user {name} and its group"),
            Step::WaitForPath { path, .. } => format!("wait for {path}"),
            Step::Sleep { ms } => format!("sleep {ms} ms"),
            Step::Fail { message } => format!("fail: {message}"),
        }
    }
}

/// Renders an argv for display only (it is never executed through a shell): words with special
/// characters are single-quoted.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces secret markers for display.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(SECRET_OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + SECRET_OPEN.len()..];
        match after.find(SECRET_CLOSE) {
            Some(end) => {
                out.push_str("********");
                rest = &after[end + SECRET_CLOSE.len()..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let text = format!("user=a\npass={}\nend", secret_ref("site-1-db"));
        assert_eq!(mask_secrets(&text), "user=a\npass=********\nend");
    }

    #[test]
    fn a_pipe_that_may_copy_physically_says_both() {
        let from = Command::new(["mariadb-dump", "a"]);
        let to = Command::new(["mariadb", "b"]);
        let pipe =
            |physical| Step::Pipe { label: "copy".into(), from: from.clone(), to: to.clone(), undo: None, physical };
        assert_eq!(pipe(None).describe(), "copy: run mariadb-dump a | mariadb b");
        let source = PhysicalDb { admin: Command::new(["mariadb"]), database: "a".into(), schema: None, min_bytes: 0 };
        let both = pipe(Some(PhysicalCopy { source, target: "b".into() })).describe();
        assert!(
            both.contains("tablespace files of a into b") && both.ends_with("else run mariadb-dump a | mariadb b"),
            "{both}"
        );
    }

    #[test]
    fn argv_display_quotes() {
        let argv = vec!["echo".to_string(), "a b".into(), "it's".into()];
        assert_eq!(shell_words(&argv), "echo 'a b' 'it'\\''s'");
    }
}

/// A change to the state database that a task makes when it ends, applied in the same transaction that
/// records the task's outcome, so the state never claims what the disk does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum StateChange {
    SiteStatus {
        site: crate::SiteId,
        status: crate::SiteStatus,
    },
    PlatformStatus {
        platform: crate::PlatformId,
        status: crate::ObjectStatus,
    },
    PlatformVerified {
        platform: crate::PlatformId,
        #[serde(default)]
        details: crate::PlatformDetails,
        docroot: Option<String>,
        app: Option<crate::AppKind>,
        app_version: Option<String>,
    },
    ServerStatus {
        server: crate::ServerId,
        status: crate::ObjectStatus,
    },
    /// The site's cron ran now.
    SiteCronRan {
        site: crate::SiteId,
    },
    /// The site's data now lives in another database (after a restore).
    SiteDbName {
        site: crate::SiteId,
        db_name: String,
    },
    /// The site now lives elsewhere: another platform, domain or database (after a migrate or rename).
    /// A renamed site keeps its old domain as an alias when `old_domain_alias` says so.
    SiteMoved {
        site: crate::SiteId,
        platform: crate::PlatformId,
        domain: crate::Domain,
        db_name: String,
        #[serde(default)]
        db_server: Option<crate::ServerId>,
        #[serde(default)]
        old_domain_alias: bool,
    },
    /// Record a backup the task wrote (size and checksum are filled in from the archive).
    BackupRecorded {
        site: crate::SiteId,
        path: String,
        kind: crate::BackupKind,
        size: i64,
        checksum: String,
    },
    /// A certificate is installed (names, dates filled in from the `cert.json` beside it).
    CertInstalled {
        site: crate::SiteId,
        meta_path: String,
        #[serde(default)]
        meta: Option<crate::CertMeta>,
    },
    /// Obtaining a certificate failed: recorded for `site show`, retried after `retry_at`.
    CertFailed {
        site: crate::SiteId,
        #[serde(default)]
        error: String,
        #[serde(default)]
        retry_at: crate::Millis,
    },
    /// Queue another task (e.g. verify a platform again once its code is built, archive what a restore
    /// replaced), in the same transaction that records this one's success.
    FollowUp {
        kind: crate::TaskKind,
        target: i64,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        args: serde_json::Value,
    },
}

/// What a planner produces for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Planned {
    pub plan: Plan,
    pub on_success: Vec<StateChange>,
    pub on_failure: Vec<StateChange>,
}

/// Everything a planner may read about the state: the task's target and its surroundings, loaded by the
/// store in one go so that planners stay pure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub server: crate::Server,
    pub platform: Option<crate::Platform>,
    pub site: Option<crate::Site>,
    /// For platform tasks, the live sites on the platform; for server tasks, every live site on the server.
    pub sites: Vec<crate::Site>,
    /// For server tasks, the live platforms on the server.
    pub platforms: Vec<crate::Platform>,
    /// For site tasks whose database lives on another server, that server.
    #[serde(default)]
    pub db_server: Option<crate::Server>,
    /// For tasks that involve a second site (clone: the source; sync: the site copied from), that
    /// site and its platform.
    #[serde(default)]
    pub other_site: Option<crate::Site>,
    /// For tasks that involve a second platform (migrate: the target; clone: the new site's source
    /// platform when it differs), that platform.
    #[serde(default)]
    pub other_platform: Option<crate::Platform>,
    /// For a migrate to another database server, that server.
    #[serde(default)]
    pub other_db_server: Option<crate::Server>,
}

impl Snapshot {
    /// A snapshot of `server` alone; callers fill in what their task involves with struct update
    /// syntax (`Snapshot { platform: Some(p), ..Snapshot::of_server(server) }`).
    pub fn of_server(server: crate::Server) -> Snapshot {
        Snapshot {
            server,
            platform: None,
            site: None,
            sites: vec![],
            platforms: vec![],
            db_server: None,
            other_site: None,
            other_platform: None,
            other_db_server: None,
        }
    }

    /// A snapshot of a site not recorded yet (or a prospective one) on `platform` of `server`.
    pub fn of_new_site(server: crate::Server, platform: crate::Platform, site: crate::Site) -> Snapshot {
        Snapshot { platform: Some(platform), site: Some(site), ..Snapshot::of_server(server) }
    }
}
