//! Physical copies of MariaDB databases ("transportable tablespaces"): instead of a SQL dump and its
//! re-import (bound by the server re-inserting every row and rebuilding every index), the tables'
//! InnoDB files are copied.
//!
//! Export: one admin session holds `FLUSH TABLES t1, … FOR EXPORT` (the tables' pages are on disk, a
//! `t.cfg` with their metadata is written beside each `t.ibd`, and writes to them wait) while the
//! files are copied, then `UNLOCK TABLES`. If Fjord dies meanwhile the session's stdin closes, the
//! client exits and the lock goes with it. Import: the structure is created from a `--no-data` dump,
//! then `ALTER TABLE t DISCARD TABLESPACE`, the files put into the database's directory (owned like
//! it), `ALTER TABLE t IMPORT TABLESPACE`, with foreign key checks off around both.
//!
//! [`probe`] decides whether a database allows it: the server's datadir must be a directory on this
//! host that Fjord can read and write, and every table must be InnoDB in its own tablespace file,
//! not partitioned, without a FULLTEXT index (whose auxiliary tables are not carried), with a name
//! that is its file name. Otherwise the caller takes the logical path and logs the reason.

use crate::cmd::Session;
use crate::steps::Executor;
use crate::{io_err, ExecError, ExecResult, OutputSink};
use fjord_core::{Command, LogStream, PhysicalCopy, PhysicalDb};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What [`probe`] found: where the database's files are and its tables.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The database's directory in the server's datadir.
    pub dir: PathBuf,
    /// Base tables, in the server's order.
    pub tables: Vec<String>,
}

/// A name MariaDB stores under itself as a file name (no `@XXXX` encoding needed).
fn plain(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Runs `sql` through the admin client; returns its stdout.
async fn admin(ex: &Executor, db: &PhysicalDb, sql: String, sink: Option<OutputSink>) -> ExecResult<String> {
    let mut cmd = db.admin.clone();
    cmd.stdin = Some(sql);
    Ok(ex.run_command(&cmd, sink, None).await?.stdout)
}

/// Can `db` be copied physically, and where are its files? `Ok(Err(reason))` when it cannot. With
/// `writable`, the database's directory must also be writable (an import target).
pub async fn probe(ex: &Executor, db: &PhysicalDb, writable: bool) -> ExecResult<Result<Layout, String>> {
    let name = &db.database;
    if !plain(name) {
        return Ok(Err(format!("database name {name:?} is not a plain file name")));
    }
    let sql = format!(
        "SELECT 'datadir', @@datadir, @@innodb_file_per_table;\n\
         SELECT 'table', TABLE_NAME, TABLE_TYPE, IFNULL(ENGINE, '-'), IFNULL(NULLIF(CREATE_OPTIONS, ''), '-') \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{name}' ORDER BY TABLE_NAME;\n\
         SELECT DISTINCT 'fulltext', TABLE_NAME FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = '{name}' AND INDEX_TYPE = 'FULLTEXT';\n\
         SELECT 'size', IFNULL(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = '{name}';\n"
    );
    let out = match admin(ex, db, sql, None).await {
        Ok(out) => out,
        Err(e) => return Ok(Err(format!("cannot ask the server about its files: {e}"))),
    };
    let mut datadir = None;
    let mut tables = Vec::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["datadir", _, "0" | "OFF"] => return Ok(Err("the server runs with innodb_file_per_table off".into())),
            ["datadir", dir, _] => datadir = Some(PathBuf::from(dir)),
            ["table", table, kind, engine, options] => {
                if *kind == "VIEW" {
                    continue;
                }
                if *kind != "BASE TABLE" {
                    return Ok(Err(format!("table {table} is a {kind}")));
                }
                if !engine.eq_ignore_ascii_case("InnoDB") {
                    return Ok(Err(format!("table {table} uses {engine}, not InnoDB")));
                }
                if options.contains("partitioned") {
                    return Ok(Err(format!("table {table} is partitioned")));
                }
                if !plain(table) {
                    return Ok(Err(format!("table name {table:?} is not a plain file name")));
                }
                tables.push(table.to_string());
            }
            ["fulltext", table] => return Ok(Err(format!("table {table} has a FULLTEXT index"))),
            ["size", bytes] => {
                let bytes: u64 = bytes.parse().unwrap_or(0);
                if bytes < db.min_bytes {
                    return Ok(Err(format!(
                        "the database holds {:.1} MB, below the {} MB from which copying its files pays off",
                        bytes as f64 / 1e6,
                        db.min_bytes / 1_000_000
                    )));
                }
            }
            _ => return Ok(Err(format!("unexpected answer from the server: {line:?}"))),
        }
    }
    let Some(datadir) = datadir else { return Ok(Err("the server did not name its datadir".into())) };
    let dir = datadir.join(name);
    if !dir.is_dir() {
        return Ok(Err(format!("{} is not a directory on this host (the server is elsewhere?)", dir.display())));
    }
    let access = if writable {
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK
    } else {
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::X_OK
    };
    if nix::unistd::access(&dir, access).is_err() {
        return Ok(Err(format!("Fjord cannot {} {}", if writable { "write" } else { "read" }, dir.display())));
    }
    for t in &tables {
        // The table definition beside its file proves this directory is the server's own copy.
        for ext in ["frm", "ibd"] {
            let f = dir.join(format!("{t}.{ext}"));
            if !f.is_file() {
                return Ok(Err(format!("{} is missing (not file-per-table, or not this server's)", f.display())));
            }
        }
    }
    Ok(Ok(Layout { dir, tables }))
}

fn quoted(tables: &[String]) -> String {
    tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
}

/// The tables of a database flushed for export, until [`Export::release`].
pub struct Export {
    session: Session,
    locked_at: Instant,
    tables: usize,
}

const LOCKED: &str = "fjord-tables-locked";

/// Flushes `tables` of `db` for export and holds them so in one admin session. Waits at most a minute
/// for running writes to finish (then fails, changing nothing).
pub async fn export(ex: &Executor, db: &PhysicalDb, tables: &[String]) -> ExecResult<Export> {
    let (mut cmd, guard) = ex.materialize(&db.admin)?;
    // Each answer is written at once, not when the client exits.
    cmd.argv.push("--unbuffered".into());
    let mut session = Session::start(&cmd)?;
    // The client has read its option file once it answers; the temp dir may go.
    let sql = if tables.is_empty() {
        format!("SELECT '{LOCKED}';\n")
    } else {
        format!(
            "SET SESSION lock_wait_timeout = 60;\nUSE `{}`;\nFLUSH TABLES {} FOR EXPORT;\nSELECT '{LOCKED}';\n",
            db.database,
            quoted(tables)
        )
    };
    session.send(&sql).await?;
    session.wait_for(LOCKED, Duration::from_secs(120)).await?;
    drop(guard);
    Ok(Export { session, locked_at: Instant::now(), tables: tables.len() })
}

impl Export {
    /// Unlocks the tables; returns how long writes to them waited, for the log.
    pub async fn release(self) -> ExecResult<String> {
        let held = self.locked_at.elapsed();
        self.session.finish("UNLOCK TABLES;\n").await?;
        Ok(format!(
            "{} tables were flushed for export and locked for writes for {:.2} s",
            self.tables,
            held.as_secs_f64()
        ))
    }
}

/// Runs `ALTER TABLE … {what} TABLESPACE` on every table of `db`, foreign key checks off.
async fn alter_tablespaces(
    ex: &Executor,
    db: &PhysicalDb,
    tables: &[String],
    what: &str,
    sink: Option<OutputSink>,
) -> ExecResult<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let mut sql = format!("SET SESSION foreign_key_checks = 0;\nUSE `{}`;\n", db.database);
    for t in tables {
        sql.push_str(&format!("ALTER TABLE `{t}` {what} TABLESPACE;\n"));
    }
    admin(ex, db, sql, sink).await.map(|_| ())
}

/// Copies `from` to `to` (`copy_file_range`: a reflink where the filesystem shares extents), owned by
/// `owner`, mode 0660 as the server makes them.
fn copy_owned(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> ExecResult<u64> {
    let n = std::fs::copy(from, to).map_err(io_err(format!("copy {} to {}", from.display(), to.display())))?;
    give_to(to, owner)?;
    Ok(n)
}

/// Mode 0660, owned by `owner` (the database server's user): what the server needs of a table file.
fn give_to(path: &Path, owner: Option<(u32, u32)>) -> ExecResult<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err(format!("chmod {}", path.display())))?;
    if let Some(o) = owner {
        crate::fsops::chown(path, o)?;
    }
    Ok(())
}

/// Brings the files of `tables` from `from` to `to`, owned by `owner`, mode 0660: renamed when `rename`
/// allows it and both are on one filesystem, copied otherwise. Blocking, on its own thread.
async fn transfer_tables(
    from: PathBuf,
    to: PathBuf,
    tables: Vec<String>,
    owner: Option<(u32, u32)>,
    rename: bool,
) -> ExecResult<u64> {
    tokio::task::spawn_blocking(move || {
        let mut bytes = 0;
        for (name, path) in table_files(&from, &tables) {
            let dest = to.join(&name);
            if rename && std::fs::rename(&path, &dest).is_ok() {
                bytes += std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
                give_to(&dest, owner)?;
            } else {
                bytes += copy_owned(&path, &dest, owner)?;
            }
        }
        Ok(bytes)
    })
    .await
    .map_err(|e| ExecError::Other(format!("table files thread: {e}")))?
}

/// The files of `tables` in `dir`: (file name, path), each table's `.ibd` then its `.cfg`.
pub fn table_files(dir: &Path, tables: &[String]) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for t in tables {
        for ext in ["ibd", "cfg"] {
            let name = format!("{t}.{ext}");
            files.push((name.clone(), dir.join(name)));
        }
    }
    files
}

/// Imports the tablespace files `files` (file name → path; `.ibd` and `.cfg` of each table) into
/// `target`, whose tables were just created from the structure: discard, copy in, import, and remove
/// the `.cfg` files the import leaves. `copy` runs between discard and import (a clone copies there,
/// while its source is locked).
pub async fn import<F, Fut>(
    ex: &Executor,
    target: &PhysicalDb,
    tables: &[String],
    sink: Option<OutputSink>,
    copy: F,
) -> ExecResult<String>
where
    F: FnOnce(PathBuf, Option<(u32, u32)>) -> Fut,
    Fut: std::future::Future<Output = ExecResult<String>>,
{
    let layout = probe(ex, target, true).await?.map_err(|why| {
        ExecError::Other(format!("the new database {} cannot take tablespace files: {why}", target.database))
    })?;
    let missing: Vec<&String> = tables.iter().filter(|t| !layout.tables.contains(t)).collect();
    if !missing.is_empty() {
        return Err(ExecError::Other(format!(
            "the structure did not create the tables {missing:?} in {}: cannot import their files",
            target.database
        )));
    }
    let owner = ex.host.owner_of(&layout.dir);
    alter_tablespaces(ex, target, tables, "DISCARD", sink.clone()).await?;
    let copied = copy(layout.dir.clone(), owner).await?;
    let started = Instant::now();
    alter_tablespaces(ex, target, tables, "IMPORT", sink).await?;
    for t in tables {
        let _ = std::fs::remove_file(layout.dir.join(format!("{t}.cfg")));
    }
    Ok(format!("{copied}; {} tables imported in {:.2} s", tables.len(), started.elapsed().as_secs_f64()))
}

/// Copies the tablespace files of `tables` from `from` to `to`.
pub async fn copy_tables(
    from: PathBuf,
    to: PathBuf,
    tables: Vec<String>,
    owner: Option<(u32, u32)>,
) -> ExecResult<u64> {
    transfer_tables(from, to, tables, owner, false).await
}

/// A line for the task log, in the step's output.
pub fn note(sink: &Option<OutputSink>, line: String) {
    if let Some(s) = sink {
        let _ = s.send((LogStream::Stdout, line));
    }
}

/// The tables whose files an unpacked physical archive holds in `dir` (`NAME.ibd`).
pub fn archived_tables(dir: &Path) -> ExecResult<Vec<String>> {
    let mut tables = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(format!("read {}", dir.display())))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(t) = name.strip_suffix(".ibd") {
            if !plain(t) {
                return Err(ExecError::Other(format!("unexpected file {name} in the archive's database")));
            }
            tables.push(t.to_string());
        }
    }
    tables.sort();
    Ok(tables)
}

/// Moves the files of `tables` from `from` to `to` (renamed where both are on one filesystem, copied
/// otherwise), owned by `owner`, mode 0660.
pub async fn move_tables(
    from: PathBuf,
    to: PathBuf,
    tables: Vec<String>,
    owner: Option<(u32, u32)>,
) -> ExecResult<u64> {
    transfer_tables(from, to, tables, owner, true).await
}

impl Executor {
    /// A physical clone of `copy.source` into `copy.target` (same server): the structure through
    /// the pipe into `to`, then the tablespace files, copied while the source is flushed for export.
    /// `Ok(Err(reason))` when the databases don't allow it (nothing was done yet).
    pub(crate) async fn physical_copy(
        &self,
        copy: &PhysicalCopy,
        to: &Command,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<Result<String, String>> {
        let source = match probe(self, &copy.source, false).await? {
            Ok(layout) => layout,
            Err(why) => return Ok(Err(why)),
        };
        let target =
            PhysicalDb { admin: copy.source.admin.clone(), database: copy.target.clone(), schema: None, min_bytes: 0 };
        if let Err(why) = probe(self, &target, true).await? {
            return Ok(Err(format!("the new database: {why}")));
        }
        let schema = copy.source.schema.as_ref().ok_or_else(|| ExecError::Other("no structure dump to copy".into()))?;
        {
            let (from, _g1) = self.materialize(schema)?;
            let (to, _g2) = self.materialize(to)?;
            self.host.run_pipe(&from, &to, sink.clone(), cancel).await?;
        }
        let tables = source.tables.clone();
        let note = import(self, &target, &tables, sink, |dir, owner| async move {
            let export = export(self, &copy.source, &source.tables).await?;
            let copied = copy_tables(source.dir.clone(), dir, source.tables.clone(), owner).await;
            let locked = export.release().await?;
            Ok(format!("{} bytes copied; {locked}", copied?))
        })
        .await?;
        Ok(Ok(format!("physical database copy: {note}")))
    }

    /// The `LoadDatabase` step: a backup's dump, or its structure and tablespace files.
    pub(crate) async fn load_database(
        &self,
        dir: &Path,
        import_cmd: &Command,
        physical: Option<&PhysicalDb>,
        sink: Option<OutputSink>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> ExecResult<Option<String>> {
        let dump = dir.join("database.sql");
        if dump.is_file() {
            let mut cmd = import_cmd.clone();
            cmd.stdin_file = Some(dump.to_string_lossy().into_owned());
            self.run_command(&cmd, sink, cancel).await?;
            return Ok(Some("logical database load (SQL dump)".into()));
        }
        let db_dir = dir.join("database");
        let schema = db_dir.join("schema.sql");
        if !schema.is_file() {
            return Err(ExecError::Other(
                "the archive holds no database (neither database.sql nor database/schema.sql)".into(),
            ));
        }
        let refuse = |why: String| {
            ExecError::Other(format!(
                "this backup holds the database's InnoDB tablespace files, which only a MariaDB server on this \
                 host can take, and {why}; the site is left as it was (a backup made with `fjord site backup \
                 --logical` restores anywhere)"
            ))
        };
        let Some(target) = physical else {
            return Err(refuse("the site's database is not MariaDB".into()));
        };
        if let Err(why) = probe(self, target, true).await? {
            return Err(refuse(why));
        }
        let tables = archived_tables(&db_dir)?;
        let mut cmd = import_cmd.clone();
        cmd.stdin_file = Some(schema.to_string_lossy().into_owned());
        self.run_command(&cmd, sink.clone(), cancel).await?;
        let moved = tables.clone();
        let note = import(self, target, &tables, sink, |dest, owner| async move {
            Ok(format!("{} bytes moved in", move_tables(db_dir, dest, moved, owner).await?))
        })
        .await?;
        Ok(Some(format!("physical database load: {note}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_file_names() {
        assert!(plain("node_field_data"));
        assert!(plain("Cache2"));
        assert!(!plain("a-b"));
        assert!(!plain("a.b"));
        assert!(!plain(""));
        assert_eq!(quoted(&["a".into(), "b".into()]), "`a`, `b`");
    }
}
