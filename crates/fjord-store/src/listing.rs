//! Paginated, filtered, stably sorted lists for the web UI and the HTTP API, and the counts a dashboard
//! shows. Every list can be restricted to the sites of some clients (`only_clients`), which is how a
//! client user sees only their own: the restriction is part of the query, never a filter applied after.
//!
//! Sites sort by domain then id, tasks and backups newest first (by id); the indexes for these orders
//! are in migration 0007.

use crate::entities::BACKUP_COLS;
use crate::rows::{self, Columns, SITE_COLS, TASK_COLS};
use crate::{Store, StoreResult};
use fjord_core::*;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// Most rows one page may hold.
pub const MAX_PAGE: i64 = 500;

/// One page of a list, and how many rows the whole (filtered) list has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
}

/// Which sites to list. `status: None` lists every live (not deleted) site.
#[derive(Debug, Clone, Default)]
pub struct SiteQuery {
    pub status: Option<SiteStatus>,
    pub platform: Option<PlatformId>,
    pub client: Option<ClientId>,
    /// A piece of the domain or of an alias, case-insensitive.
    pub text: Option<String>,
    /// Only sites of these clients (a client user's view); `None` is no restriction.
    pub only_clients: Option<Vec<ClientId>>,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    pub kind: Option<TaskKind>,
    pub site: Option<SiteId>,
    pub only_clients: Option<Vec<ClientId>>,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct BackupQuery {
    pub site: Option<SiteId>,
    pub only_clients: Option<Vec<ClientId>>,
    pub offset: i64,
    pub limit: i64,
}

fn id_list<I: IntoIterator<Item = i64>>(ids: I) -> String {
    // Integers we format ourselves: safe to inline. An empty list matches nothing.
    let s: Vec<String> = ids.into_iter().map(|i| i.to_string()).collect();
    if s.is_empty() {
        "NULL".into()
    } else {
        s.join(",")
    }
}

fn clamp(offset: i64, limit: i64) -> (i64, i64) {
    (offset.max(0), if limit <= 0 { 50 } else { limit.min(MAX_PAGE) })
}

/// `LIKE` pattern for a piece of text, with the wildcards in it escaped.
fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn sites_of_clients(clients: &[ClientId]) -> String {
    format!("SELECT id FROM sites WHERE client_id IN ({})", id_list(clients.iter().map(|c| c.0)))
}

/// What a sites list page shows of each site: the UI's table needs these, not whole records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSummary {
    pub id: SiteId,
    pub domain: Domain,
    pub status: SiteStatus,
    pub platform_id: PlatformId,
    pub client_id: Option<ClientId>,
    pub db_engine: DbEngine,
    pub https: HttpsMode,
    pub aliases: i64,
}

const SUMMARY_COLS: &str = "id, domain, status, platform_id, client_id, db_engine, https";

/// The SQL of one sites page: its `WHERE`, the statement that counts it, and the text to bind as `$1`.
struct SitesFilter {
    filter: String,
    total_sql: String,
    text: Option<String>,
    offset: i64,
    limit: i64,
}

impl SitesFilter {
    fn new(q: &SiteQuery) -> SitesFilter {
        let (offset, limit) = clamp(q.offset, q.limit);
        let mut clauses = vec![match q.status {
            Some(s) => format!("status = '{}'", s.as_str()),
            None => "status <> 'deleted'".into(),
        }];
        if let Some(p) = q.platform {
            clauses.push(format!("platform_id = {}", p.0));
        }
        if let Some(c) = q.client {
            clauses.push(format!("client_id = {}", c.0));
        }
        if let Some(only) = &q.only_clients {
            clauses.push(format!("client_id IN ({})", id_list(only.iter().map(|c| c.0))));
        }
        let text = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(like_pattern);
        if text.is_some() {
            clauses.push(
                "(domain LIKE $1 ESCAPE '\\' OR id IN (SELECT site_id FROM site_domains WHERE domain LIKE $1 ESCAPE '\\'))"
                    .into(),
            );
        }
        let filter = clauses.join(" AND ");
        // A status alone (the common case, and the costly one to count: most sites match) is counted by
        // the table the triggers of migration 0012 keep; other filters count the rows.
        let only_status = q.platform.is_none() && q.client.is_none() && q.only_clients.is_none() && text.is_none();
        let total_sql = match (only_status, q.status) {
            (true, Some(s)) => format!("SELECT COALESCE(SUM(n), 0) FROM site_counts WHERE status = '{}'", s.as_str()),
            (true, None) => "SELECT COALESCE(SUM(n), 0) FROM site_counts WHERE status <> 'deleted'".into(),
            (false, _) => format!("SELECT COUNT(*) FROM sites WHERE {filter}"),
        };
        SitesFilter { filter, total_sql, text, offset, limit }
    }

    /// The page's rows of `cols`, in the list's order.
    fn page_sql(&self, cols: &str) -> String {
        format!(
            "SELECT {cols} FROM sites WHERE {} ORDER BY domain, id LIMIT {} OFFSET {}",
            self.filter, self.limit, self.offset
        )
    }

    /// Runs `SELECT total, <items_sql>` in one statement.
    async fn fetch(&self, store: &Store, items_sql: &str) -> StoreResult<(i64, sqlx::any::AnyRow)> {
        store.counted_list(&self.total_sql, items_sql, self.text.as_deref()).await
    }
}

impl Store {
    /// A page of whole site records (what the API returns), in one statement.
    pub async fn list_sites(&self, q: &SiteQuery) -> StoreResult<Page<Site>> {
        let f = SitesFilter::new(q);
        // The aliases of each site come inside its object, in the same statement.
        let aliases = match self.dialect {
            crate::Dialect::Sqlite => {
                "json((SELECT json_group_array(domain) FROM site_domains WHERE site_id = page.id AND is_alias = 1))"
            }
            crate::Dialect::Postgres => {
                "(SELECT COALESCE(json_agg(domain ORDER BY domain), '[]'::json) FROM site_domains \
                 WHERE site_id = page.id AND is_alias = 1)"
            }
        };
        let (items_sql, decode) =
            self.json_list(SITE_COLS, &f.page_sql(SITE_COLS), "domain, id", &[("aliases", aliases)]);
        let (total, row) = f.fetch(self, &items_sql).await?;
        let mut items = Vec::with_capacity(f.limit as usize);
        for object in decode.rows(&row, "items")? {
            let mut site = rows::site(&object)?;
            site.aliases = serde_json::from_value::<Vec<String>>(object.get("aliases").cloned().unwrap_or_default())
                .map_err(|e| crate::StoreError::Corrupt { column: "aliases", detail: e.to_string() })?
                .iter()
                .map(|a| {
                    Domain::parse_host("alias", a)
                        .map_err(|e| crate::StoreError::Corrupt { column: "aliases", detail: e.to_string() })
                })
                .collect::<StoreResult<_>>()?;
            if self.dialect == crate::Dialect::Sqlite {
                // SQLite gives them in no set order; its ORDER BY would compare bytes, as this does.
                site.aliases.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            }
            items.push(site);
        }
        Ok(Page { items, total, offset: f.offset, limit: f.limit })
    }

    /// A page of the same list with only what a list page shows of each site (and its count of aliases).
    pub async fn list_site_summaries(&self, q: &SiteQuery) -> StoreResult<Page<SiteSummary>> {
        let f = SitesFilter::new(q);
        let aliases = "(SELECT COUNT(*) FROM site_domains WHERE site_id = page.id AND is_alias = 1)";
        let (items_sql, decode) =
            self.json_list(SUMMARY_COLS, &f.page_sql(SUMMARY_COLS), "domain, id", &[("aliases", aliases)]);
        let (total, row) = f.fetch(self, &items_sql).await?;
        let items = decode
            .rows(&row, "items")?
            .iter()
            .map(|r| {
                Ok(SiteSummary {
                    id: SiteId(r.int("id")?),
                    domain: rows::domain(r, "domain")?,
                    status: rows::text_enum(r, "status", SiteStatus::parse)?,
                    platform_id: PlatformId(r.int("platform_id")?),
                    client_id: r.opt_int("client_id")?.map(ClientId),
                    db_engine: rows::text_enum(r, "db_engine", DbEngine::parse)?,
                    https: rows::text_enum(r, "https", HttpsMode::parse)?,
                    aliases: r.int("aliases")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok(Page { items, total, offset: f.offset, limit: f.limit })
    }

    pub async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Page<Task>> {
        let (offset, limit) = clamp(q.offset, q.limit);
        let mut clauses = vec!["1 = 1".to_string()];
        if let Some(s) = q.status {
            clauses.push(format!("status = '{}'", s.as_str()));
        }
        if let Some(k) = q.kind {
            clauses.push(format!("kind = '{}'", k.as_str()));
        }
        if let Some(s) = q.site {
            clauses.push(format!("target_kind = 'site' AND target_id = {}", s.0));
        }
        if let Some(only) = &q.only_clients {
            clauses.push(format!("target_kind = 'site' AND target_id IN ({})", sites_of_clients(only)));
        }
        let filter = clauses.join(" AND ");
        let select =
            format!("SELECT {TASK_COLS} FROM tasks WHERE {filter} ORDER BY id DESC LIMIT {limit} OFFSET {offset}");
        let (items, total) = self.newest_first(TASK_COLS, &select, &filter, "tasks", |r| rows::task(r)).await?;
        Ok(Page { items, total, offset, limit })
    }

    pub async fn list_backups(&self, q: &BackupQuery) -> StoreResult<Page<Backup>> {
        let (offset, limit) = clamp(q.offset, q.limit);
        let mut clauses = vec!["1 = 1".to_string()];
        if let Some(s) = q.site {
            clauses.push(format!("site_id = {}", s.0));
        }
        if let Some(only) = &q.only_clients {
            clauses.push(format!("site_id IN ({})", sites_of_clients(only)));
        }
        let filter = clauses.join(" AND ");
        let select =
            format!("SELECT {BACKUP_COLS} FROM backups WHERE {filter} ORDER BY id DESC LIMIT {limit} OFFSET {offset}");
        let (items, total) = self.newest_first(BACKUP_COLS, &select, &filter, "backups", |r| rows::backup(r)).await?;
        Ok(Page { items, total, offset, limit })
    }

    /// The rows of `select` (newest first, by id) decoded by `decode`, and how many rows of `table` match
    /// `filter`: one statement, the rows as one JSON value.
    async fn newest_first<T>(
        &self,
        cols: &str,
        select: &str,
        filter: &str,
        table: &str,
        decode: impl Fn(&rows::JsonRow<'_>) -> StoreResult<T>,
    ) -> StoreResult<(Vec<T>, i64)> {
        let (list, rows) = self.json_list(cols, select, "id", &[]);
        let (total, row) =
            self.counted_list(&format!("SELECT COUNT(*) FROM {table} WHERE {filter}"), &list, None).await?;
        let mut items = rows.rows(&row, "items")?.iter().map(decode).collect::<StoreResult<Vec<T>>>()?;
        // The list comes in ascending order.
        items.reverse();
        Ok((items, total))
    }

    /// One statement, one row: the count `total_sql` gives (as `total`) and the list `items_sql` gives
    /// (as `items`), with `text` bound as `$1` if given.
    async fn counted_list(
        &self,
        total_sql: &str,
        items_sql: &str,
        text: Option<&str>,
    ) -> StoreResult<(i64, sqlx::any::AnyRow)> {
        let sql = format!("SELECT CAST(({total_sql}) AS BIGINT) AS total, {items_sql} AS items");
        let mut query = sqlx::query(&sql);
        if let Some(t) = text {
            query = query.bind(t.to_string());
        }
        let row = query.fetch_one(&self.pool).await?;
        Ok((row.try_get("total")?, row))
    }

    /// Live sites per status (for a dashboard), within `only_clients` if given.
    pub async fn site_status_counts(&self, only_clients: Option<&[ClientId]>) -> StoreResult<Vec<(SiteStatus, i64)>> {
        let sql = match only_clients {
            // Kept by triggers (migration 0012): no scan of every site.
            None => "SELECT status, n FROM site_counts WHERE status <> 'deleted' AND n > 0 ORDER BY status".into(),
            Some(c) => format!(
                "SELECT status, COUNT(*) AS n FROM sites WHERE status <> 'deleted' AND client_id IN ({}) \
                 GROUP BY status ORDER BY status",
                id_list(c.iter().map(|c| c.0))
            ),
        };
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((rows::text_enum(r, "status", SiteStatus::parse)?, r.try_get("n")?))).collect()
    }

    /// Tasks per status, within the sites of `only_clients` if given.
    pub async fn task_status_counts(&self, only_clients: Option<&[ClientId]>) -> StoreResult<Vec<(TaskStatus, i64)>> {
        let restrict = only_clients
            .map(|c| format!(" WHERE target_kind = 'site' AND target_id IN ({})", sites_of_clients(c)))
            .unwrap_or_default();
        let rows =
            sqlx::query(&format!("SELECT status, COUNT(*) AS n FROM tasks{restrict} GROUP BY status ORDER BY status"))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((rows::text_enum(r, "status", TaskStatus::parse)?, r.try_get("n")?))).collect()
    }

    /// Bytes of backup archives recorded, within the sites of `only_clients` if given.
    pub async fn backup_bytes(&self, only_clients: Option<&[ClientId]>) -> StoreResult<i64> {
        let restrict = only_clients.map(|c| format!(" WHERE site_id IN ({})", sites_of_clients(c))).unwrap_or_default();
        let row = sqlx::query(&format!("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS n FROM backups{restrict}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

impl Store {
    /// Fills an empty state database for the web benchmark: one server and platform, `clients`
    /// clients, `sites` sites (every fifth disabled, owned round-robin by the clients) and `tasks`
    /// finished tasks spread over them. Set-based statements, so 100,000 rows take seconds.
    pub async fn bench_fill(&self, sites: i64, tasks: i64, clients: i64) -> StoreResult<()> {
        let now = crate::now_millis();
        let mut tx = self.begin_write().await?;
        let server: i64 = sqlx::query(
            "INSERT INTO servers (name, hostname, services, status, created_at, updated_at) \
             VALUES ('bench', 'localhost', '[]', 'enabled', $1, $1) RETURNING id",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let platform: i64 = sqlx::query(
            "INSERT INTO platforms (name, server_id, root, source, locked, status, created_at, updated_at) \
             VALUES ('bench', $1, '/srv/bench', '{\"type\":\"path\"}', 0, 'enabled', $2, $2) RETURNING id",
        )
        .bind(server)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let series =
            |n: &str| format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) ");
        sqlx::query(&format!(
            "{}INSERT INTO clients (name, title, site_quota, created_at) SELECT 'client' || i, 'Client ' || i, NULL, $1 FROM n",
            series("$2")
        ))
        .bind(now)
        .bind(clients.max(1))
        .execute(&mut *tx)
        .await?;
        let first_client: i64 =
            sqlx::query("SELECT MIN(id) AS id FROM clients").fetch_one(&mut *tx).await?.try_get("id")?;
        sqlx::query(&format!(
            "{}INSERT INTO sites (domain, platform_id, db_engine, db_name, db_user, language, client_id, \
             redirect_aliases, https, status, created_at, updated_at) \
             SELECT 'site' || i || '.bench.example', $1, 'sqlite', 'db' || i, 'db' || i, 'en', $2 + (i % $3), 0, 'off', \
             CASE WHEN i % 5 = 0 THEN 'disabled' ELSE 'enabled' END, $4, $4 FROM n",
            series("$5")
        ))
        .bind(platform)
        .bind(first_client)
        .bind(clients.max(1))
        .bind(now)
        .bind(sites)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO site_domains (domain, site_id, is_alias) SELECT domain, id, 0 FROM sites")
            .execute(&mut *tx)
            .await?;
        let first_site: i64 =
            sqlx::query("SELECT MIN(id) AS id FROM sites").fetch_one(&mut *tx).await?.try_get("id")?;
        sqlx::query(&format!(
            "{}INSERT INTO tasks (kind, target_kind, target_id, lane_server, lane_platform, lane_site, args, status, \
             attempts, max_attempts, cancel_requested, created_by, created_at, started_at, finished_at, run_after) \
             SELECT 'site-verify', 'site', $1 + (i % $2), $3, $4, $1 + (i % $2), '{{}}', \
             CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 3, 0, 'bench', $5 + i, $5 + i, $5 + i + 10, 0 FROM n",
            series("$6")
        ))
        .bind(first_site)
        .bind(sites.max(1))
        .bind(server)
        .bind(platform)
        .bind(now - tasks * 1000)
        .bind(tasks)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("Ex_a%"), "%ex\\_a\\%%");
        assert_eq!(id_list(Vec::<i64>::new()), "NULL");
        assert_eq!(clamp(-5, 100_000), (0, MAX_PAGE));
    }

    /// Lists, counts, users, sessions, tokens and the audit log, on every backend available (SQLite, and
    /// PostgreSQL when `FJORD_TEST_PG_URL` is set).
    #[tokio::test]
    async fn lists_and_accounts_on_every_backend() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (label, store) in crate::testing::all_backends(dir.path()).await.expect("stores") {
            store.bench_fill(30, 100, 3).await.expect("fill");
            let enabled = SiteQuery { status: Some(SiteStatus::Enabled), limit: 5, ..Default::default() };
            let page = store.list_sites(&enabled).await.expect("list");
            assert_eq!((page.total, page.items.len()), (24, 5), "{label}");
            let clients = store.clients().await.expect("clients");
            let mine = Some(vec![clients[0].id]);
            let q = SiteQuery { only_clients: mine.clone(), limit: 100, ..Default::default() };
            let page = store.list_sites(&q).await.expect("list");
            assert_eq!(page.total, 10, "{label}");
            assert!(page.items.iter().all(|s| s.client_id == Some(clients[0].id)), "{label}");
            let q = SiteQuery { text: Some("SITE1".into()), limit: 100, ..Default::default() };
            let page = store.list_sites(&q).await.expect("search");
            assert_eq!(page.total, 11, "{label}");
            assert_eq!(page.items[0].domain.as_str(), "site1.bench.example", "{label}");
            let site = page.items[0].clone();
            let aliases = [Domain::parse("zz.example").expect("alias"), Domain::parse("aa.example").expect("alias")];
            let change = DesiredChange::SiteAliases { site: site.id, aliases: aliases.to_vec(), redirect: true };
            store.commit_change(&Change { desired: vec![change], tasks: vec![] }).await.expect("aliases");
            let q = SiteQuery { text: Some("aa.exam".into()), limit: 100, ..Default::default() };
            let page = store.list_sites(&q).await.expect("search by alias");
            assert_eq!(page.total, 1, "{label}");
            assert_eq!(page.items[0], store.site(site.id).await.expect("site"), "{label}: list and get agree");
            let aliases: Vec<&str> = page.items[0].aliases.iter().map(|a| a.as_str()).collect();
            assert_eq!((aliases, page.items[0].redirect_aliases), (vec!["aa.example", "zz.example"], true), "{label}");
            let summaries = store.list_site_summaries(&q).await.expect("summaries");
            assert_eq!((summaries.total, summaries.items[0].aliases), (1, 2), "{label}");
            assert_eq!(summaries.items[0].domain, page.items[0].domain, "{label}");
            let all = SiteQuery { limit: 7, offset: 3, ..Default::default() };
            let (sites, summaries) =
                (store.list_sites(&all).await.expect("list"), store.list_site_summaries(&all).await.expect("list"));
            assert_eq!(sites.total, summaries.total, "{label}");
            let site_ids: Vec<SiteId> = sites.items.iter().map(|s| s.id).collect();
            let summary_ids: Vec<SiteId> = summaries.items.iter().map(|s| s.id).collect();
            assert_eq!(site_ids, summary_ids, "{label}");
            let q = SiteQuery { only_clients: Some(vec![]), ..Default::default() };
            assert_eq!(store.list_sites(&q).await.expect("none").total, 0, "{label}");
            let tasks = store.list_tasks(&TaskQuery { limit: 10, ..Default::default() }).await.expect("tasks");
            assert_eq!(tasks.total, 100, "{label}");
            assert!(tasks.items.windows(2).all(|w| w[0].id > w[1].id), "{label}");
            let theirs = TaskQuery { only_clients: mine.clone(), limit: 500, ..Default::default() };
            let theirs = store.list_tasks(&theirs).await.expect("tasks");
            assert!(theirs.total > 0 && theirs.total < 100, "{label}");
            let counts = store.site_status_counts(None).await.expect("counts");
            assert_eq!(counts, vec![(SiteStatus::Disabled, 6), (SiteStatus::Enabled, 24)], "{label}");
            assert_eq!(
                store.task_status_counts(mine.as_deref()).await.expect("counts").iter().map(|c| c.1).sum::<i64>(),
                theirs.total
            );
            assert_eq!(store.backup_bytes(None).await.expect("bytes"), 0, "{label}");
            assert_eq!(store.list_backups(&BackupQuery::default()).await.expect("backups").total, 0);

            // The counts the triggers keep agree with counting the rows, through status changes.
            for sql in [
                "UPDATE sites SET status = 'disabled' WHERE id IN (SELECT id FROM sites WHERE status = 'enabled' LIMIT 3)",
                "UPDATE sites SET status = 'deleted' WHERE id IN (SELECT id FROM sites WHERE status = 'disabled' LIMIT 2)",
                "UPDATE sites SET updated_at = updated_at + 1",
            ] {
                sqlx::query(sql).execute(&store.pool).await.expect("update");
            }
            let platform = store.list_sites(&SiteQuery::default()).await.expect("list").items[0].platform_id;
            for status in [None, Some(SiteStatus::Enabled), Some(SiteStatus::Disabled), Some(SiteStatus::Deleted)] {
                let kept = store.list_sites(&SiteQuery { status, ..Default::default() }).await.expect("list").total;
                let q = SiteQuery { status, platform: Some(platform), ..Default::default() };
                let counted = store.list_sites(&q).await.expect("list").total;
                assert_eq!(kept, counted, "{label}: {status:?}");
            }
            let dashboard = store.site_status_counts(None).await.expect("counts");
            assert_eq!(dashboard, vec![(SiteStatus::Disabled, 7), (SiteStatus::Enabled, 21)], "{label}");

            let name = Name::parse("user", "alice").expect("name");
            let user = store.add_user(&name, None, Role::Client, "hash", &[clients[0].id]).await.expect("user");
            assert!(store.add_user(&name, None, Role::Admin, "hash", &[]).await.is_err(), "{label}");
            assert_eq!(store.user_auth("alice").await.expect("auth").password_hash.as_deref(), Some("hash"));
            assert_eq!(store.user_clients(user.id).await.expect("clients"), vec![clients[0].id]);
            store
                .create_session("s1", user.id, "csrf", Some("127.0.0.1"), crate::now_millis() + 60_000)
                .await
                .expect("session");
            store.create_session("s2", user.id, "csrf", None, crate::now_millis() - 1).await.expect("expired");
            assert_eq!(store.session("s1").await.expect("s1").map(|s| s.user_id), Some(user.id), "{label}");
            assert!(store.session("s2").await.expect("s2").is_none(), "{label}: an expired session counts");
            store.set_password_hash(user.id, "new", Some("s1")).await.expect("password");
            assert!(store.session("s1").await.expect("kept").is_some(), "{label}");
            let token = store.create_token(user.id, "ci", "thash", crate::TokenScope::Read).await.expect("token");
            assert_eq!(store.token_by_hash("thash").await.expect("token").map(|t| t.id), Some(token.id));
            store.revoke_token(token.id).await.expect("revoke");
            assert!(store.token_by_hash("thash").await.expect("revoked").is_none(), "{label}");
            let entry = crate::AuditEntry {
                id: 0,
                ts: 0,
                user_id: Some(user.id),
                actor: "api:alice".into(),
                action: "site-backup".into(),
                target: "site:a".into(),
                detail: String::new(),
                remote_addr: Some("127.0.0.1".into()),
                outcome: "ok".into(),
            };
            store.audit(&entry).await.expect("audit");
            let log = store.audit_log(0, 10).await.expect("log");
            assert_eq!((log.total, log.items[0].action.as_str()), (1, "site-backup"), "{label}");
            store.delete_user(user.id).await.expect("delete");
            assert!(store.session("s1").await.expect("gone").is_none(), "{label}");
            store.close().await;
        }
    }
}
