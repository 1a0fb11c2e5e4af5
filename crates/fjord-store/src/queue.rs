//! The persistent task queue: enqueue, claim with a lease, heartbeat, finish, the task log and the
//! undo log (`task_steps`).
//!
//! Ordering and exclusion: a queued task may start only when no *earlier* active task and no running
//! task shares its lane (see [`fjord_core::Lane`]). The claim is one `UPDATE … WHERE id = (SELECT …)`
//! statement, atomic on SQLite; on PostgreSQL the inner select takes `FOR UPDATE SKIP LOCKED`, so several
//! daemons can claim from one queue without blocking each other or taking the same task.

use crate::rows::{self, TASK_COLS};
use crate::{now_millis, Dialect, Store, StoreError, StoreResult};
use fjord_core::*;
use sqlx::{AnyConnection, Row};

/// A task the daemon has claimed, with the lease it holds.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub task: Task,
    pub owner: String,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub target: Option<(TargetKind, i64)>,
    pub limit: Option<i64>,
}

const ACTIVE: &str = "('queued', 'running', 'interrupted')";

/// `u` blocks `t` when it is active, is not `t`, and is either running or earlier in the queue.
const BLOCKS: &str =
    "u.status IN ('queued', 'running', 'interrupted') AND u.id <> t.id AND (u.status <> 'queued' OR u.id < t.id)";

/// The database's own clock in milliseconds since the epoch, evaluated when the statement runs.
fn db_now(dialect: Dialect) -> &'static str {
    match dialect {
        // Rounded: truncating the float came out 1 ms low about half the time, so a task could appear
        // to start before the one it waited for had finished.
        Dialect::Sqlite => "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)",
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

fn claim_sql(dialect: Dialect) -> String {
    // Five NOT EXISTS, one per way two lanes can overlap, so each can use the lane index.
    let pick = format!(
        "SELECT t.id FROM tasks t WHERE t.status = 'queued' AND t.run_after <= $3 \
         AND NOT EXISTS (SELECT 1 FROM tasks u WHERE u.lane_server = t.lane_server AND u.lane_platform IS NULL AND {BLOCKS}) \
         AND NOT EXISTS (SELECT 1 FROM tasks u WHERE u.lane_server = t.lane_server AND u.lane_platform = t.lane_platform AND u.lane_site IS NULL AND {BLOCKS}) \
         AND NOT EXISTS (SELECT 1 FROM tasks u WHERE u.lane_server = t.lane_server AND u.lane_platform = t.lane_platform AND u.lane_site = t.lane_site AND {BLOCKS}) \
         AND (t.lane_platform IS NULL OR t.lane_site IS NOT NULL OR NOT EXISTS (SELECT 1 FROM tasks u WHERE u.lane_server = t.lane_server AND u.lane_platform = t.lane_platform AND {BLOCKS})) \
         AND (t.lane_platform IS NOT NULL OR NOT EXISTS (SELECT 1 FROM tasks u WHERE u.lane_server = t.lane_server AND {BLOCKS})) \
         ORDER BY t.id LIMIT 1{}",
        match dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    );
    format!(
        "UPDATE tasks SET status = 'running', lease_owner = $1, lease_until = $2, started_at = {}, \
         finished_at = NULL, attempts = attempts + 1 WHERE id = ({pick}) AND status = 'queued' RETURNING {TASK_COLS}",
        db_now(dialect)
    )
}

pub(crate) async fn insert_task(conn: &mut AnyConnection, new: &NewTask, now: Millis) -> StoreResult<Task> {
    insert_child_task(conn, new, None, None, now).await
}

/// The lane a task on `target_id` runs in, derived from its kind and the state, in one place: every
/// task is inserted through here. A `platform-migrate` batch gets [`Lane::batch`]; `noop` tasks (tests
/// and benchmarks) have no target and are given their lane.
pub(crate) async fn lane_in(conn: &mut AnyConnection, kind: TaskKind, target_id: i64) -> StoreResult<Lane> {
    let missing = |what: &'static str| StoreError::NotFound { what, name: target_id.to_string() };
    if kind == TaskKind::PlatformMigrate {
        return Ok(Lane::batch(PlatformId(target_id)));
    }
    if kind == TaskKind::Noop {
        return Err(StoreError::Conflict("a noop task is queued with its lane (enqueue_noop)".into()));
    }
    Ok(match kind.target_kind() {
        TargetKind::Server => {
            let row = sqlx::query("SELECT id FROM servers WHERE id = $1").bind(target_id).fetch_optional(conn).await?;
            row.ok_or_else(|| missing("server"))?;
            Lane { server: ServerId(target_id), platform: None, site: None }
        }
        TargetKind::Platform => {
            let row = sqlx::query("SELECT server_id FROM platforms WHERE id = $1")
                .bind(target_id)
                .fetch_optional(conn)
                .await?
                .ok_or_else(|| missing("platform"))?;
            Lane { server: ServerId(row.try_get("server_id")?), platform: Some(PlatformId(target_id)), site: None }
        }
        TargetKind::Site => {
            let row = sqlx::query(
                "SELECT s.platform_id AS p, pl.server_id AS s FROM sites s JOIN platforms pl ON pl.id = s.platform_id \
                 WHERE s.id = $1",
            )
            .bind(target_id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| missing("site"))?;
            Lane {
                server: ServerId(row.try_get("s")?),
                platform: Some(PlatformId(row.try_get("p")?)),
                site: Some(SiteId(target_id)),
            }
        }
    })
}

async fn insert_child_task(
    conn: &mut AnyConnection,
    new: &NewTask,
    lane: Option<Lane>,
    parent: Option<TaskId>,
    now: Millis,
) -> StoreResult<Task> {
    let lane = match lane {
        Some(l) => l,
        None => lane_in(conn, new.kind, new.target_id).await?,
    };
    // Only the id comes back: the rest of the new task is known here, and decoding a whole row on the
    // queue's hottest path costs as much as the insert.
    let row = sqlx::query(
        "INSERT INTO tasks (kind, target_kind, target_id, lane_server, lane_platform, lane_site, args, status, \
         attempts, max_attempts, cancel_requested, created_by, created_at, run_after, parent_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, 0, $9, $10, $10, $11) RETURNING id",
    )
    .bind(new.kind.as_str())
    .bind(new.kind.target_kind().as_str())
    .bind(new.target_id)
    .bind(lane.server.0)
    .bind(lane.platform.map(|p| p.0))
    .bind(lane.site.map(|s| s.0))
    .bind(new.args.to_string())
    .bind(MAX_ATTEMPTS)
    .bind(&new.created_by)
    .bind(now)
    .bind(parent.map(|p| p.0))
    .fetch_one(conn)
    .await?;
    Ok(Task {
        id: TaskId(row.try_get("id")?),
        kind: new.kind,
        target_kind: new.kind.target_kind(),
        target_id: new.target_id,
        lane,
        args: new.args.clone(),
        status: TaskStatus::Queued,
        attempts: 0,
        max_attempts: MAX_ATTEMPTS,
        cancel_requested: false,
        lease_owner: None,
        lease_until: None,
        error: None,
        created_by: new.created_by.clone(),
        created_at: now,
        started_at: None,
        finished_at: None,
        run_after: now,
        parent,
    })
}

/// Attempts a task gets before an interruption leaves it failed.
const MAX_ATTEMPTS: i64 = 3;

impl Store {
    /// Queues a task with no change of the desired state (its lane derived from its kind and target).
    pub async fn enqueue(&self, new: &NewTask) -> StoreResult<Task> {
        let mut conn = self.pool.acquire().await?;
        insert_task(&mut conn, new, now_millis()).await
    }

    /// Queues a `noop` task (tests and benchmarks) in the lane given; its target is the lane's innermost
    /// object.
    pub async fn enqueue_noop(&self, lane: Lane, args: serde_json::Value, created_by: &str) -> StoreResult<Task> {
        let mut conn = self.pool.acquire().await?;
        let target = lane.site.map(|s| s.0).or(lane.platform.map(|p| p.0)).unwrap_or(lane.server.0);
        let new = NewTask::new(TaskKind::Noop, target, args, created_by);
        insert_child_task(&mut conn, &new, Some(lane), None, now_millis()).await
    }

    /// Records a change of the desired state and queues the tasks that apply it, in one transaction:
    /// both or neither.
    pub async fn commit_change(&self, change: &Change) -> StoreResult<Vec<Task>> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        for d in &change.desired {
            crate::entities::write_desired(&mut tx, d, now).await?;
        }
        let mut tasks = Vec::new();
        for t in &change.tasks {
            tasks.push(insert_task(&mut tx, t, now).await?);
        }
        tx.commit().await?;
        Ok(tasks)
    }

    /// Queues a task on behalf of a batch task, which it names as its parent.
    pub async fn enqueue_child(&self, new: &NewTask, parent: TaskId) -> StoreResult<Task> {
        let mut conn = self.pool.acquire().await?;
        insert_child_task(&mut conn, new, None, Some(parent), now_millis()).await
    }

    /// The tasks a batch task queued, oldest first.
    pub async fn children(&self, parent: TaskId) -> StoreResult<Vec<Task>> {
        let rows = sqlx::query(&format!("SELECT {TASK_COLS} FROM tasks WHERE parent_id = $1 ORDER BY id"))
            .bind(parent.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::task).collect()
    }

    /// Stores a batch task's summary (its state while it runs, its outcome once it ended).
    pub async fn set_task_result(&self, id: TaskId, result: &serde_json::Value) -> StoreResult<()> {
        sqlx::query("UPDATE tasks SET result = $1 WHERE id = $2")
            .bind(result.to_string())
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what a (non-batch) task found out: its result.
    pub async fn set_task_report(&self, id: TaskId, report: &TaskReport) -> StoreResult<()> {
        self.set_task_result(id, &serde_json::to_value(report).expect("a report serializes")).await
    }

    /// What a (non-batch) task found out; empty when it recorded nothing (yet).
    pub async fn task_report(&self, id: TaskId) -> StoreResult<TaskReport> {
        match self.task_result(id).await? {
            Some(v) => {
                serde_json::from_value(v).map_err(|e| StoreError::Corrupt { column: "result", detail: e.to_string() })
            }
            None => Ok(TaskReport::default()),
        }
    }

    /// A batch task's summary, if it stored one.
    pub async fn task_result(&self, id: TaskId) -> StoreResult<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT result FROM tasks WHERE id = $1").bind(id.0).fetch_optional(&self.pool).await?;
        match row.map(|r| r.try_get::<Option<String>, _>("result")).transpose()?.flatten() {
            Some(s) => Ok(Some(
                serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt { column: "result", detail: e.to_string() })?,
            )),
            None => Ok(None),
        }
    }

    /// The lane a new task of `kind` on `target_id` would run in.
    async fn lane(&self, kind: TaskKind, target_id: i64) -> StoreResult<Lane> {
        let mut conn = self.pool.acquire().await?;
        lane_in(&mut conn, kind, target_id).await
    }

    /// What a planner would see for a task not queued yet (a dry run, the check before queueing).
    pub async fn prospective_snapshot(
        &self,
        kind: TaskKind,
        target_id: i64,
        args: &serde_json::Value,
    ) -> StoreResult<Snapshot> {
        let lane = self.lane(kind, target_id).await?;
        self.snapshot(&Task::prospective(kind, target_id, lane, args.clone())).await
    }

    /// Claims the first runnable task, leasing it to `owner` until `now + lease_ms`.
    pub async fn claim(&self, owner: &str, lease_ms: i64) -> StoreResult<Option<Task>> {
        let now = now_millis();
        let row = sqlx::query(&claim_sql(self.dialect))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::task).transpose()
    }

    /// Extends the lease of a task this owner holds. Returns whether the task asks to be cancelled, or
    /// `None` if the lease was lost (another daemon recovered the task).
    pub async fn heartbeat(&self, id: TaskId, owner: &str, lease_ms: i64) -> StoreResult<Option<bool>> {
        let row = sqlx::query(
            "UPDATE tasks SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'running' \
             RETURNING cancel_requested",
        )
        .bind(now_millis() + lease_ms)
        .bind(id.0)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<i64, _>("cancel_requested")? != 0),
            None => None,
        })
    }

    /// Stores the plan a task is about to run, with its outcomes (for `task show`, post-mortems and
    /// recovery, which needs the failure outcome).
    /// Writes `log` as the task's first line of this attempt, in the same transaction.
    pub async fn set_plan(&self, id: TaskId, plan: &Planned, log: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE tasks SET plan = $1 WHERE id = $2")
            .bind(serde_json::to_string(plan).expect("plan serializes"))
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        insert_log(&mut tx, id, LogLevel::Info, LogStream::Fjord, log, now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn plan_of(&self, id: TaskId) -> StoreResult<Option<Planned>> {
        let row = sqlx::query("SELECT plan FROM tasks WHERE id = $1").bind(id.0).fetch_optional(&self.pool).await?;
        match row.map(|r| r.try_get::<Option<String>, _>("plan")).transpose()?.flatten() {
            Some(s) => Ok(Some(
                serde_json::from_str(&s).map_err(|e| StoreError::Corrupt { column: "plan", detail: e.to_string() })?,
            )),
            None => Ok(None),
        }
    }

    /// Ends a task: records its final status, its last log lines and its state changes, atomically.
    /// Does nothing (returns false) if `owner` no longer holds the task.
    pub async fn finish(
        &self,
        id: TaskId,
        owner: &str,
        status: TaskStatus,
        error: Option<&str>,
        changes: &[StateChange],
        last_logs: &[(LogLevel, &str)],
    ) -> StoreResult<bool> {
        let now = now_millis();
        // The end time is the database's clock at the update, so a task that follows in the same lane
        // (claimed after this commits, stamped with the same clock) never appears to overlap it.
        let end = format!(
            "UPDATE tasks SET status = $1, error = $2, finished_at = GREATEST_OF($3, {}), lease_owner = NULL, \
             lease_until = NULL WHERE id = $4 AND lease_owner = $5 AND status IN ('running', 'interrupted')",
            db_now(self.dialect)
        )
        .replace("GREATEST_OF", if self.dialect == Dialect::Sqlite { "MAX" } else { "GREATEST" });
        if changes.is_empty() && self.dialect == Dialect::Postgres && !last_logs.is_empty() {
            // One statement: the status update and the log lines, atomically (a data-modifying CTE).
            let values: Vec<String> =
                (0..last_logs.len()).map(|i| format!("(${}, ${})", 6 + 2 * i, 7 + 2 * i)).collect();
            let sql = format!(
                "WITH done AS ({end} RETURNING id) INSERT INTO task_log (task_id, ts, level, stream, text) \
                 SELECT done.id, $3, v.level, 'fjord', v.text FROM done, (VALUES {}) AS v (level, text) RETURNING task_id",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(status.as_str()).bind(error).bind(now).bind(id.0).bind(owner);
            for (level, text) in last_logs {
                q = q.bind(level.as_str()).bind(*text);
            }
            return Ok(!q.fetch_all(&self.pool).await?.is_empty());
        }
        if changes.is_empty() {
            // Nothing else to keep atomic with the status: skip the transaction (the queue's hot path).
            // The log lines go first, so whoever sees the final status also sees them.
            insert_logs(&self.pool, id, last_logs, now).await?;
            let done = sqlx::query(&end)
                .bind(status.as_str())
                .bind(error)
                .bind(now)
                .bind(id.0)
                .bind(owner)
                .execute(&self.pool)
                .await?
                .rows_affected();
            return Ok(done > 0);
        }
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(&end)
            .bind(status.as_str())
            .bind(error)
            .bind(now)
            .bind(id.0)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        for change in changes {
            apply_change(&mut tx, change, now).await?;
        }
        insert_logs(&mut *tx, id, last_logs, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Puts an interrupted task back in the queue (keeping its place: its id is unchanged).
    pub async fn requeue(&self, id: TaskId, owner: &str, delay_ms: i64) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_until = NULL, run_after = $1 \
             WHERE id = $2 AND lease_owner = $3",
        )
        .bind(now_millis() + delay_ms)
        .bind(id.0)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Tasks left running by a dead daemon: those of this `owner` (a restart of the same node), and those
    /// whose lease has run out. Each is taken over: marked interrupted and leased to `owner`.
    ///
    /// `at_startup`: this daemon just started, so tasks leased to its own node name are orphans too
    /// (its previous incarnation died). Later passes take only expired leases, never tasks this
    /// daemon is running.
    pub async fn take_over_orphans(&self, owner: &str, lease_ms: i64, at_startup: bool) -> StoreResult<Vec<Task>> {
        let now = now_millis();
        let own = if at_startup { owner } else { "" };
        let rows = sqlx::query(
            "SELECT id, lease_owner FROM tasks WHERE status IN ('running', 'interrupted') \
             AND (lease_owner = $1 OR lease_owner IS NULL OR lease_until < $2) ORDER BY id",
        )
        .bind(own)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut taken = Vec::new();
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let old: Option<String> = row.try_get("lease_owner")?;
            let got = sqlx::query(&format!(
                "UPDATE tasks SET status = 'interrupted', lease_owner = $1, lease_until = $2 \
                 WHERE id = $3 AND status IN ('running', 'interrupted') AND COALESCE(lease_owner, '') = $4 \
                 RETURNING {TASK_COLS}"
            ))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(id)
            .bind(old.unwrap_or_default())
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = got {
                taken.push(rows::task(&r)?);
            }
        }
        Ok(taken)
    }

    /// Cancels a task: a queued one at once; a running one is asked to stop (the daemon undoes what it
    /// applied and marks it cancelled). Returns the task as it now is.
    pub async fn cancel(&self, id: TaskId) -> StoreResult<Task> {
        let task = self.task(id).await?;
        match task.status {
            TaskStatus::Queued => {
                sqlx::query(
                    "UPDATE tasks SET status = 'cancelled', finished_at = $1 WHERE id = $2 AND status = 'queued'",
                )
                .bind(now_millis())
                .bind(id.0)
                .execute(&self.pool)
                .await?;
            }
            TaskStatus::Running | TaskStatus::Interrupted => {
                sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = $1")
                    .bind(id.0)
                    .execute(&self.pool)
                    .await?;
            }
            s => return Err(StoreError::Conflict(format!("task {id} is already {s}"))),
        }
        self.task(id).await
    }

    /// Queues a failed or cancelled task again as a new task with the same kind, target and arguments.
    pub async fn retry(&self, id: TaskId, created_by: &str) -> StoreResult<Task> {
        let task = self.task(id).await?;
        if !matches!(task.status, TaskStatus::Failed | TaskStatus::Cancelled) {
            return Err(StoreError::Conflict(format!(
                "task {id} is {}; only failed or cancelled tasks can be retried",
                task.status
            )));
        }
        // The target may have moved (a site migrated to another platform): its lane is derived again.
        // No-op tasks have no real target: they keep theirs.
        let new = NewTask::new(task.kind, task.target_id, task.args, created_by);
        let lane = (task.kind == TaskKind::Noop).then_some(task.lane);
        let mut conn = self.pool.acquire().await?;
        insert_child_task(&mut conn, &new, lane, None, now_millis()).await
    }

    pub async fn task(&self, id: TaskId) -> StoreResult<Task> {
        let row = sqlx::query(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::task).transpose()?.ok_or(StoreError::NotFound { what: "task", name: id.to_string() })
    }

    /// The tasks of `kind` on one site, oldest first.
    pub async fn site_tasks_of_kind(&self, site: i64, kind: TaskKind) -> StoreResult<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLS} FROM tasks WHERE target_kind = 'site' AND target_id = $1 AND kind = $2 ORDER BY id"
        );
        let rows = sqlx::query(&sql).bind(site).bind(kind.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(rows::task).collect()
    }

    /// Tasks, newest first.
    pub async fn tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
        let mut sql = format!("SELECT {TASK_COLS} FROM tasks WHERE 1 = 1");
        if let Some(s) = filter.status {
            sql.push_str(&format!(" AND status = '{}'", s.as_str()));
        }
        if let Some((kind, _)) = filter.target {
            sql.push_str(&format!(" AND target_kind = '{}' AND target_id = $1", kind.as_str()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit.unwrap_or(50).clamp(1, 10_000)));
        let mut q = sqlx::query(&sql);
        if let Some((_, id)) = filter.target {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await?.iter().map(rows::task).collect()
    }

    /// Number of tasks that are queued, running or being recovered.
    pub async fn active_task_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query(&format!("SELECT COUNT(*) AS n FROM tasks WHERE status IN {ACTIVE}"))
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Number of active tasks (queued, running, being recovered) on one target.
    pub async fn active_tasks_on(&self, kind: TargetKind, id: i64) -> StoreResult<i64> {
        Ok(sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM tasks WHERE status IN {ACTIVE} AND target_kind = $1 AND target_id = $2"
        ))
        .bind(kind.as_str())
        .bind(id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    // ---- task log ------------------------------------------------------------------------------------

    pub async fn log(&self, task: TaskId, level: LogLevel, stream: LogStream, text: &str) -> StoreResult<()> {
        self.log_many(task, level, stream, std::iter::once(text)).await
    }

    /// Appends several lines in one transaction (a command's whole output).
    pub async fn log_many<'a>(
        &self,
        task: TaskId,
        level: LogLevel,
        stream: LogStream,
        lines: impl IntoIterator<Item = &'a str>,
    ) -> StoreResult<()> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        for line in lines {
            insert_log(&mut tx, task, level, stream, line, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Log lines of a task after `after_seq` (0 for all), in order.
    pub async fn logs(&self, task: TaskId, after_seq: i64) -> StoreResult<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT seq, task_id, ts, level, stream, text FROM task_log WHERE task_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(task.0)
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::log_line).collect()
    }

    // ---- undo log ------------------------------------------------------------------------------------

    /// Records steps about to be applied (pending), each with its undo entry and its log line, in one
    /// transaction: recorded before its step runs, so a crash mid-step can still be undone; a run of
    /// file steps costs one commit, not one each.
    pub async fn record_steps(&self, task: TaskId, steps: &[(i64, String, String, String)]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let now = now_millis();
        for (idx, description, undo, log) in steps {
            sqlx::query(
                "INSERT INTO task_steps (task_id, idx, description, status, undo, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (task_id, idx) DO UPDATE SET description = excluded.description, status = excluded.status, \
                 undo = excluded.undo, started_at = excluded.started_at, duration_ms = NULL",
            )
            .bind(task.0)
            .bind(*idx)
            .bind(description)
            .bind(StepStatus::Pending.as_str())
            .bind(undo)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_log(&mut tx, task, LogLevel::Info, LogStream::Fjord, log, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks steps applied, each with how long it took, in one transaction.
    pub async fn set_steps_applied(&self, task: TaskId, steps: &[(i64, i64)]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for (idx, ms) in steps {
            sqlx::query("UPDATE task_steps SET status = $1, duration_ms = $2 WHERE task_id = $3 AND idx = $4")
                .bind(StepStatus::Applied.as_str())
                .bind(*ms)
                .bind(task.0)
                .bind(*idx)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets a step's status; the step's end (applied or failed) also records how long it took.
    pub async fn set_step_status(&self, task: TaskId, idx: i64, status: StepStatus) -> StoreResult<()> {
        sqlx::query(
            "UPDATE task_steps SET status = $1, duration_ms = CASE WHEN status = 'pending' \
             THEN $4 - started_at ELSE duration_ms END WHERE task_id = $2 AND idx = $3",
        )
        .bind(status.as_str())
        .bind(task.0)
        .bind(idx)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn steps(&self, task: TaskId) -> StoreResult<Vec<StepRecord>> {
        let rows = sqlx::query(
            "SELECT task_id, idx, description, status, undo, duration_ms FROM task_steps WHERE task_id = $1 \
             ORDER BY idx",
        )
        .bind(task.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::step).collect()
    }

    /// Finished tasks with a step whose undo failed (its database server was down during the
    /// rollback, say), oldest first, each with those steps: the daemon retries them.
    pub async fn failed_undos(&self, limit: i64) -> StoreResult<Vec<(Task, Vec<StepRecord>)>> {
        let ids = sqlx::query(
            "SELECT DISTINCT task_id FROM task_steps WHERE status = 'undo-failed' ORDER BY task_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in ids {
            let task = self.task(TaskId(row.try_get("task_id")?)).await?;
            if !matches!(task.status, TaskStatus::Failed | TaskStatus::Cancelled) {
                continue;
            }
            let steps = self.steps(task.id).await?.into_iter().filter(|s| s.status == StepStatus::UndoFailed).collect();
            out.push((task, steps));
        }
        Ok(out)
    }

    /// The first task queued after `task` on the same target, if any: from then on the target is that
    /// task's, and what `task` left is for it to handle (a delete drops what a failed create left).
    pub async fn next_task_on_target(&self, task: &Task) -> StoreResult<Option<TaskId>> {
        let row =
            sqlx::query("SELECT MIN(id) AS next FROM tasks WHERE target_kind = $1 AND target_id = $2 AND id > $3")
                .bind(task.target_kind.as_str())
                .bind(task.target_id)
                .bind(task.id.0)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get::<Option<i64>, _>("next")?.map(TaskId))
    }

    /// Forgets a task's undo log once it is settled for good (a new attempt starts a fresh one).
    pub async fn clear_steps(&self, task: TaskId) -> StoreResult<()> {
        sqlx::query("DELETE FROM task_steps WHERE task_id = $1").bind(task.0).execute(&self.pool).await?;
        Ok(())
    }
}

async fn insert_log(
    conn: &mut AnyConnection,
    task: TaskId,
    level: LogLevel,
    stream: LogStream,
    text: &str,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO task_log (task_id, ts, level, stream, text) VALUES ($1, $2, $3, $4, $5)")
        .bind(task.0)
        .bind(now)
        .bind(level.as_str())
        .bind(stream.as_str())
        .bind(text)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts several Fjord log lines in one statement.
async fn insert_logs<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    task: TaskId,
    lines: &[(LogLevel, &str)],
    now: Millis,
) -> StoreResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let values: Vec<String> =
        (0..lines.len()).map(|i| format!("($1, $2, ${}, 'fjord', ${})", 3 + 2 * i, 4 + 2 * i)).collect();
    let sql = format!("INSERT INTO task_log (task_id, ts, level, stream, text) VALUES {}", values.join(", "));
    let mut q = sqlx::query(&sql).bind(task.0).bind(now);
    for (level, text) in lines {
        q = q.bind(level.as_str()).bind(*text);
    }
    q.execute(executor).await?;
    Ok(())
}

async fn apply_change(conn: &mut AnyConnection, change: &StateChange, now: Millis) -> StoreResult<()> {
    match change {
        StateChange::SiteStatus { site, status } => {
            sqlx::query("UPDATE sites SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(site.0)
                .execute(&mut *conn)
                .await?;
            if *status == SiteStatus::Deleted {
                // A deleted site frees its domain and aliases for reuse. A failed one keeps them: it is
                // shown, retried and deleted by its domain, and no second site can take it meanwhile.
                sqlx::query("DELETE FROM site_domains WHERE site_id = $1").bind(site.0).execute(&mut *conn).await?;
            }
        }
        StateChange::PlatformStatus { platform, status } => {
            sqlx::query("UPDATE platforms SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(platform.0)
                .execute(&mut *conn)
                .await?;
        }
        StateChange::PlatformVerified { platform, docroot, app, app_version, details } => {
            sqlx::query(
                "UPDATE platforms SET docroot = $1, app = $2, app_version = $3, verified_at = $4, updated_at = $4, \
                 status = CASE WHEN status = 'queued' OR status = 'failed' THEN 'enabled' ELSE status END, \
                 details = $6 WHERE id = $5",
            )
            .bind(docroot.clone())
            .bind(app.map(|a| a.as_str()))
            .bind(app_version.clone())
            .bind(now)
            .bind(platform.0)
            .bind(serde_json::to_string(details).expect("details serialize"))
            .execute(&mut *conn)
            .await?;
        }
        StateChange::CertInstalled { site, meta: Some(meta), .. } => {
            let mut tls = site_tls_of(conn, *site).await?;
            tls.source = meta.source;
            tls.names = meta.names.clone();
            tls.failed = meta.failed.clone();
            tls.not_after = Some(meta.not_after);
            tls.issued_at = Some(meta.issued_at);
            tls.error = None;
            tls.failures = 0;
            tls.retry_at = None;
            set_site_tls(conn, *site, &tls, now).await?;
        }
        // Nothing was read back: the step wrote no certificate, so nothing changes.
        StateChange::CertInstalled { meta: None, .. } => {}
        StateChange::CertFailed { site, error, retry_at } => {
            let mut tls = site_tls_of(conn, *site).await?;
            tls.error = Some(error.clone());
            tls.failures += 1;
            tls.retry_at = Some(*retry_at);
            set_site_tls(conn, *site, &tls, now).await?;
        }
        StateChange::SiteCronRan { site } => {
            sqlx::query("UPDATE sites SET last_cron_at = $1 WHERE id = $2")
                .bind(now)
                .bind(site.0)
                .execute(&mut *conn)
                .await?;
        }
        StateChange::SiteDbName { site, db_name } => {
            sqlx::query("UPDATE sites SET db_name = $1, updated_at = $2 WHERE id = $3")
                .bind(db_name)
                .bind(now)
                .bind(site.0)
                .execute(&mut *conn)
                .await?;
        }
        StateChange::SiteMoved { site, platform, domain, db_name, db_server, old_domain_alias } => {
            let old: String = sqlx::query("SELECT domain FROM sites WHERE id = $1")
                .bind(site.0)
                .fetch_one(&mut *conn)
                .await?
                .try_get("domain")?;
            sqlx::query(
                "UPDATE sites SET platform_id = $1, domain = $2, db_name = $3, updated_at = $4, \
                 db_server_id = COALESCE($6, db_server_id) WHERE id = $5",
            )
            .bind(platform.0)
            .bind(domain.as_str())
            .bind(db_name)
            .bind(now)
            .bind(site.0)
            .bind(db_server.map(|s| s.0))
            .execute(&mut *conn)
            .await?;
            if old != domain.as_str() {
                // The certificate named the old domain: none is installed for the new one (an ACME
                // site gets one from the daemon's renewal pass, which issues when none is installed).
                let mut tls = site_tls_of(conn, *site).await?;
                tls.names.clear();
                tls.failed.clear();
                tls.not_after = None;
                tls.issued_at = None;
                tls.retry_at = None;
                set_site_tls(conn, *site, &tls, now).await?;
                // The new name was reserved when the task was queued; the old one becomes an alias or goes.
                sqlx::query("DELETE FROM site_domains WHERE site_id = $1 AND domain IN ($2, $3)")
                    .bind(site.0)
                    .bind(&old)
                    .bind(domain.as_str())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("INSERT INTO site_domains (domain, site_id, is_alias) VALUES ($1, $2, 0)")
                    .bind(domain.as_str())
                    .bind(site.0)
                    .execute(&mut *conn)
                    .await?;
                if *old_domain_alias {
                    sqlx::query("INSERT INTO site_domains (domain, site_id, is_alias) VALUES ($1, $2, 1)")
                        .bind(&old)
                        .bind(site.0)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        StateChange::BackupRecorded { site, path, kind, size, checksum } => {
            sqlx::query(
                "INSERT INTO backups (site_id, path, size, checksum, kind, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(site.0)
            .bind(path)
            .bind(*size)
            .bind(checksum)
            .bind(kind.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        StateChange::FollowUp { kind, target, args } => {
            let args = if args.is_null() { serde_json::json!({}) } else { args.clone() };
            insert_task(conn, &NewTask::new(*kind, *target, args, "fjord"), now).await?;
        }
        StateChange::ServerStatus { server, status } => {
            sqlx::query("UPDATE servers SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(server.0)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn site_tls_of(conn: &mut AnyConnection, site: SiteId) -> StoreResult<SiteTls> {
    let row = sqlx::query("SELECT tls FROM sites WHERE id = $1").bind(site.0).fetch_one(&mut *conn).await?;
    crate::rows::site_tls(&row)
}

pub(crate) async fn set_site_tls(
    conn: &mut AnyConnection,
    site: SiteId,
    tls: &SiteTls,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query("UPDATE sites SET tls = $1, updated_at = $2 WHERE id = $3")
        .bind(serde_json::to_string(tls).expect("TLS state serializes"))
        .bind(now)
        .bind(site.0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
