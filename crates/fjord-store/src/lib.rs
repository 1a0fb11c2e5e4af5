//! Fjord's state database, the one source of truth for the hosting model and the task queue.
//!
//! One implementation serves both dialects through sqlx's `Any` driver: SQLite (the embedded default,
//! one file in the state dir) and PostgreSQL (for several daemons sharing one queue). Queries use `$N`
//! placeholders, which both accept; where the dialects differ (DDL, `FOR UPDATE SKIP LOCKED`), the
//! [`Dialect`] decides. Each dialect has its own migrations directory, kept in step by hand and checked
//! by the story test that runs against both.
//!
//! This is the only crate that contains SQL. It knows nothing of hosts, files or HTTP.

mod accounts;
mod backups;
mod entities;
mod listing;
mod queue;
mod rows;

pub use accounts::{ApiToken, AuditEntry, LoginFailures, SessionRecord, TokenScope, UserAuth};
pub use backups::{ScheduleTarget, ScheduledSite};
pub use entities::{NewPlatform, NewServer, NewSite};
pub use listing::{BackupQuery, Page, SiteQuery, SiteSummary, TaskQuery, MAX_PAGE};
pub use queue::{ClaimedTask, TaskFilter};

use fjord_core::{Millis, ValidationError};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    #[error("state database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("state database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt value in state database column {column}: {detail}")]
    Corrupt { column: &'static str, detail: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The state database. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("Store").field("dialect", &self.dialect).finish()
    }
}

pub fn now_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    /// Starts a transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting out the busy timeout: a deferred transaction that reads first and writes
    /// later fails at once with "database is locked" when another process wrote in between.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// Connects to `url` (`sqlite:///path/fjord.db` or `postgres://...`), creating the SQLite file if
    /// needed, and brings the schema up to date.
    pub async fn open(url: &str) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            return Err(StoreError::Conflict(format!(
                "unsupported database URL scheme in {:?}: use sqlite:///path or postgres://",
                url.split(':').next().unwrap_or("")
            )));
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 8,
                Dialect::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers (the CLI, the API) work while the daemon writes; NORMAL sync is
                        // durable across process crashes, which is what kill -9 recovery needs.
                        // The busy timeout first: switching to WAL needs a lock another process (the
                        // daemon, a second CLI) may hold for a moment.
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Dialect::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Bare statements for the queue benchmark's baseline: one INSERT and one UPDATE on a scratch table.
    pub async fn baseline_insert_update(&self, n: usize) -> StoreResult<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_baseline (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM bench_baseline").execute(&self.pool).await?;
        for i in 0..n as i64 {
            sqlx::query("INSERT INTO bench_baseline (id, v) VALUES ($1, 0)").bind(i).execute(&self.pool).await?;
            sqlx::query("UPDATE bench_baseline SET v = v + 1 WHERE id = $1").bind(i).execute(&self.pool).await?;
        }
        sqlx::query("DROP TABLE bench_baseline").execute(&self.pool).await?;
        Ok(())
    }

    /// The same count of bare statements on the tasks table itself (with its indexes): one INSERT of a
    /// task row and one UPDATE of its status each, none of the queue's logic. The rows are removed after.
    pub async fn baseline_task_rows(&self, n: usize) -> StoreResult<()> {
        for _ in 0..n {
            let row = sqlx::query(
                "INSERT INTO tasks (kind, target_kind, target_id, lane_server, lane_platform, lane_site, args, status, \
                 attempts, max_attempts, cancel_requested, created_by, created_at, run_after) \
                 VALUES ('noop', 'site', 0, 1, 1, 1, '{}', 'cancelled', 0, 3, 0, 'bench-baseline', $1, $1) RETURNING id",
            )
            .bind(now_millis())
            .fetch_one(&self.pool)
            .await?;
            let id: i64 = sqlx::Row::try_get(&row, "id")?;
            sqlx::query("UPDATE tasks SET status = 'succeeded', finished_at = $1 WHERE id = $2")
                .bind(now_millis())
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        sqlx::query("DELETE FROM tasks WHERE created_by = 'bench-baseline'").execute(&self.pool).await?;
        Ok(())
    }
}

/// Scratch stores for tests and benchmarks: a fresh SQLite file, and a fresh PostgreSQL database when
/// `FJORD_TEST_PG_URL` names a server (the README's test command starts one).
pub mod testing {
    use super::*;

    /// A store on a new SQLite file in `dir`.
    pub async fn sqlite_in(dir: &std::path::Path) -> StoreResult<Store> {
        Store::open(&format!("sqlite://{}/fjord.db", dir.display())).await
    }

    /// A store on a new, empty PostgreSQL database created on the server `FJORD_TEST_PG_URL` points to,
    /// or `None` when the variable is unset.
    pub async fn postgres_scratch() -> StoreResult<Option<Store>> {
        match postgres_scratch_url().await? {
            Some(url) => Ok(Some(Store::open(&url).await?)),
            None => Ok(None),
        }
    }

    /// The URL of a new, empty PostgreSQL database, or `None` when `FJORD_TEST_PG_URL` is unset.
    pub async fn postgres_scratch_url() -> StoreResult<Option<String>> {
        let Ok(url) = std::env::var("FJORD_TEST_PG_URL") else {
            return Ok(None);
        };
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new().max_connections(1).connect(&url).await?;
        let name = format!("fjord_scratch_{}_{}", std::process::id(), now_millis() % 1_000_000_000 + next_serial());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
        admin.close().await;
        let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
        Ok(Some(format!("{base}/{name}")))
    }

    fn next_serial() -> i64 {
        use std::sync::atomic::{AtomicI64, Ordering};
        static N: AtomicI64 = AtomicI64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    /// Every backend available here, labelled: SQLite always, PostgreSQL when configured.
    pub async fn all_backends(dir: &std::path::Path) -> StoreResult<Vec<(&'static str, Store)>> {
        let mut v = vec![("sqlite", sqlite_in(dir).await?)];
        if let Some(pg) = postgres_scratch().await? {
            v.push(("postgres", pg));
        }
        Ok(v)
    }
}
