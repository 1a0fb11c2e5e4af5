//! Mapping between rows and model types. Columns are read by name; enums are stored as their text form.

use crate::{StoreError, StoreResult};
use fjord_core::*;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Read access to one row's columns by name. A database row has it, and so has a JSON object the database
/// built (`json_object(...)`), which is how a list page comes back in one value (see `listing.rs`):
/// the model decoders below work on either.
pub(crate) trait Columns {
    fn opt_int(&self, column: &'static str) -> StoreResult<Option<i64>>;
    fn opt_text(&self, column: &'static str) -> StoreResult<Option<String>>;

    fn int(&self, column: &'static str) -> StoreResult<i64> {
        self.opt_int(column)?.ok_or_else(|| StoreError::Corrupt { column, detail: "NULL".into() })
    }
    fn text(&self, column: &'static str) -> StoreResult<String> {
        self.opt_text(column)?.ok_or_else(|| StoreError::Corrupt { column, detail: "NULL".into() })
    }
}

impl Columns for AnyRow {
    fn opt_int(&self, column: &'static str) -> StoreResult<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &'static str) -> StoreResult<Option<String>> {
        Ok(self.try_get(column)?)
    }
}

/// A list read as one JSON value (see [`crate::Store::json_list`]): each row is a JSON array of its
/// values in the order of `names`. Reading a page this way costs one value instead of one driver
/// round trip per row and per column, which on SQLite is most of a list page's time.
pub(crate) struct JsonList {
    names: Vec<String>,
    /// Positions of the columns the rows sort by; SQLite's rows are sorted here (see `json_list`).
    sort_by: Option<Vec<usize>>,
}

/// One row of a [`JsonList`].
pub(crate) struct JsonRow<'a> {
    names: &'a [String],
    values: Vec<serde_json::Value>,
}

impl JsonRow<'_> {
    pub(crate) fn get(&self, column: &str) -> Option<&serde_json::Value> {
        self.names.iter().position(|n| n == column).and_then(|i| self.values.get(i))
    }
}

impl Columns for JsonRow<'_> {
    fn opt_int(&self, column: &'static str) -> StoreResult<Option<i64>> {
        match self.get(column) {
            Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| StoreError::Corrupt { column, detail: v.to_string() }),
            None => Err(StoreError::Corrupt { column, detail: "missing".into() }),
        }
    }
    fn opt_text(&self, column: &'static str) -> StoreResult<Option<String>> {
        match self.get(column) {
            Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(StoreError::Corrupt { column, detail: v.to_string() }),
            None => Err(StoreError::Corrupt { column, detail: "missing".into() }),
        }
    }
}

impl JsonList {
    /// The rows in `column` of `row`, in the list's order.
    pub(crate) fn rows(&self, row: &AnyRow, column: &'static str) -> StoreResult<Vec<JsonRow<'_>>> {
        let text = row.text(column)?;
        let mut json = serde_json::Deserializer::from_str(&text);
        let values = serde::de::DeserializeSeed::deserialize(Rows { width: self.names.len() }, &mut json)
            .and_then(|v| json.end().map(|_| v))
            .map_err(|e| StoreError::Corrupt { column, detail: e.to_string() })?;
        let mut rows: Vec<JsonRow> = values.into_iter().map(|values| JsonRow { names: &self.names, values }).collect();
        if let Some(keys) = &self.sort_by {
            rows.sort_by(|a, b| {
                keys.iter()
                    .map(|&k| compare_json(&a.values[k], &b.values[k]))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        Ok(rows)
    }
}

/// Reads `[[v, …], …]` with each row's vector sized for its `width` values up front (a list page is
/// thousands of values; growing each row's vector was a visible share of its time).
struct Rows {
    width: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Rows {
    type Value = Vec<Vec<serde_json::Value>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Rows {
    type Value = Vec<Vec<serde_json::Value>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::new();
        while let Some(row) = seq.next_element_seed(RowValues { width: self.width })? {
            rows.push(row);
        }
        Ok(rows)
    }
}

struct RowValues {
    width: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for RowValues {
    type Value = Vec<serde_json::Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowValues {
    type Value = Vec<serde_json::Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row: an array of values")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(self.width);
        while let Some(v) = seq.next_element()? {
            values.push(v);
        }
        Ok(values)
    }
}

/// Orders two JSON values of one column as SQLite's default (binary) collation does.
fn compare_json(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value::*;
    match (a, b) {
        (String(x), String(y)) => x.cmp(y),
        (Number(x), Number(y)) => x.as_i64().cmp(&y.as_i64()),
        (Null, Null) => std::cmp::Ordering::Equal,
        (Null, _) => std::cmp::Ordering::Less,
        (_, Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

impl crate::Store {
    /// Every row of `select` (whose columns are `cols`), in `order`, decoded by `decode`: one statement
    /// returning one value (see [`Store::json_list`](crate::Store::json_list)).
    pub(crate) async fn read_list<T>(
        &self,
        cols: &str,
        select: &str,
        order: &str,
        decode: impl Fn(&JsonRow<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let (list, rows) = self.json_list(cols, select, order, &[]);
        let row = sqlx::query(&format!("SELECT {list} AS items")).fetch_one(&self.pool).await?;
        rows.rows(&row, "items")?.iter().map(decode).collect()
    }

    /// A scalar subquery giving the rows of `select` (whose columns are `cols`) as one JSON array of
    /// rows, in `order` (columns of `cols`), each row followed by the `extra` fields (name, SQL
    /// expression over `page`). PostgreSQL orders inside the aggregate; SQLite's aggregate `ORDER BY`
    /// sorts again through a temporary b-tree, so its rows come as the subquery gives them and
    /// [`JsonList::rows`] sorts them.
    pub(crate) fn json_list(
        &self,
        cols: &str,
        select: &str,
        order: &str,
        extra: &[(&str, &str)],
    ) -> (String, JsonList) {
        let mut names: Vec<String> = cols.split(',').map(|c| c.trim().to_string()).collect();
        let mut values: Vec<String> = names.iter().map(|c| format!("page.{c}")).collect();
        for (name, expr) in extra {
            names.push(name.to_string());
            values.push(expr.to_string());
        }
        let order: Vec<&str> = order.split(',').map(str::trim).collect();
        let (sql, sort_by) = match self.dialect {
            crate::Dialect::Sqlite => (
                format!(
                    "(SELECT CAST(COALESCE(json_group_array(json_array({})), '[]') AS TEXT) FROM ({select}) page)",
                    values.join(", ")
                ),
                Some(
                    order
                        .iter()
                        .map(|o| names.iter().position(|n| n == o).expect("order by a listed column"))
                        .collect(),
                ),
            ),
            crate::Dialect::Postgres => {
                let order: Vec<String> = order.iter().map(|o| format!("page.{o}")).collect();
                (
                    format!(
                        "(SELECT CAST(COALESCE(json_agg(json_build_array({}) ORDER BY {}), '[]') AS TEXT) FROM ({select}) page)",
                        values.join(", "),
                        order.join(", ")
                    ),
                    None,
                )
            }
        };
        (sql, JsonList { names, sort_by })
    }
}

pub(crate) fn text_enum<T>(row: &impl Columns, column: &'static str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let s = row.text(column)?;
    parse(&s).ok_or(StoreError::Corrupt { column, detail: s })
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &impl Columns, column: &'static str) -> StoreResult<T> {
    let s = row.text(column)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt { column, detail: e.to_string() })
}

/// A JSON column where NULL means the type's default.
fn json_or_default<T: serde::de::DeserializeOwned + Default>(
    row: &impl Columns,
    column: &'static str,
) -> StoreResult<T> {
    match row.opt_text(column)? {
        Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { column, detail: e.to_string() }),
        None => Ok(T::default()),
    }
}

fn boolean(row: &impl Columns, column: &'static str) -> StoreResult<bool> {
    Ok(row.int(column)? != 0)
}

fn name(row: &impl Columns, column: &'static str) -> StoreResult<Name> {
    let s = row.text(column)?;
    Name::parse("name", &s).map_err(|e| StoreError::Corrupt { column, detail: e.to_string() })
}

pub(crate) fn domain(row: &impl Columns, column: &'static str) -> StoreResult<Domain> {
    let s = row.text(column)?;
    Domain::parse_host("domain", &s).map_err(|e| StoreError::Corrupt { column, detail: e.to_string() })
}

pub(crate) const SERVER_COLS: &str = "id, name, hostname, services, status, created_at, updated_at";

pub(crate) fn server(row: &AnyRow) -> StoreResult<Server> {
    Ok(Server {
        id: ServerId(row.try_get("id")?),
        name: name(row, "name")?,
        hostname: row.try_get("hostname")?,
        services: json(row, "services")?,
        status: text_enum(row, "status", ObjectStatus::parse)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) const PLATFORM_COLS: &str =
    "id, name, server_id, root, docroot, source, app, app_version, locked, status, verified_at, created_at, updated_at, details";

pub(crate) fn platform(row: &impl Columns) -> StoreResult<Platform> {
    Ok(Platform {
        id: PlatformId(row.int("id")?),
        name: name(row, "name")?,
        server_id: ServerId(row.int("server_id")?),
        root: row.text("root")?,
        docroot: row.opt_text("docroot")?,
        source: json(row, "source")?,
        app: match row.opt_text("app")? {
            Some(a) => Some(AppKind::parse(&a).ok_or(StoreError::Corrupt { column: "app", detail: a })?),
            None => None,
        },
        app_version: row.opt_text("app_version")?,
        locked: boolean(row, "locked")?,
        status: text_enum(row, "status", ObjectStatus::parse)?,
        verified_at: row.opt_int("verified_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        details: json_or_default(row, "details")?,
    })
}

pub(crate) const SITE_COLS: &str = "id, domain, platform_id, db_server_id, db_engine, db_name, db_user, php, profile, \
     language, client_id, redirect_aliases, https, status, cron_interval, last_cron_at, health_marker, php_limits, isolation, tls, created_at, updated_at";

/// Aliases live in `site_domains`; the caller fills them in.
pub(crate) fn site(row: &impl Columns) -> StoreResult<Site> {
    Ok(Site {
        id: SiteId(row.int("id")?),
        domain: domain(row, "domain")?,
        platform_id: PlatformId(row.int("platform_id")?),
        db_server_id: row.opt_int("db_server_id")?.map(ServerId),
        db_engine: text_enum(row, "db_engine", DbEngine::parse)?,
        db_name: row.text("db_name")?,
        db_user: row.text("db_user")?,
        php: row.opt_text("php")?,
        profile: row.opt_text("profile")?,
        language: row.text("language")?,
        client_id: row.opt_int("client_id")?.map(ClientId),
        aliases: Vec::new(),
        redirect_aliases: boolean(row, "redirect_aliases")?,
        https: text_enum(row, "https", HttpsMode::parse)?,
        status: text_enum(row, "status", SiteStatus::parse)?,
        cron_interval: row.opt_int("cron_interval")?,
        last_cron_at: row.opt_int("last_cron_at")?,
        health_marker: row.opt_text("health_marker")?,
        php_limits: json_or_default(row, "php_limits")?,
        isolation: text_enum(row, "isolation", Isolation::parse)?,
        tls: site_tls(row)?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(crate) const CLIENT_COLS: &str = "id, name, title, site_quota, created_at";

pub(crate) fn client(row: &impl Columns) -> StoreResult<Client> {
    Ok(Client {
        id: ClientId(row.int("id")?),
        name: name(row, "name")?,
        title: row.text("title")?,
        site_quota: row.opt_int("site_quota")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) const TASK_COLS: &str =
    "id, kind, target_kind, target_id, lane_server, lane_platform, lane_site, args, status, \
     attempts, max_attempts, cancel_requested, lease_owner, lease_until, error, created_by, created_at, started_at, \
     finished_at, run_after, parent_id";

pub(crate) fn task(row: &impl Columns) -> StoreResult<Task> {
    Ok(Task {
        id: TaskId(row.int("id")?),
        kind: text_enum(row, "kind", TaskKind::parse)?,
        target_kind: text_enum(row, "target_kind", TargetKind::parse)?,
        target_id: row.int("target_id")?,
        lane: Lane {
            server: ServerId(row.int("lane_server")?),
            platform: row.opt_int("lane_platform")?.map(PlatformId),
            site: row.opt_int("lane_site")?.map(SiteId),
        },
        args: json(row, "args")?,
        status: text_enum(row, "status", TaskStatus::parse)?,
        attempts: row.int("attempts")?,
        max_attempts: row.int("max_attempts")?,
        cancel_requested: boolean(row, "cancel_requested")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_until: row.opt_int("lease_until")?,
        error: row.opt_text("error")?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
        started_at: row.opt_int("started_at")?,
        finished_at: row.opt_int("finished_at")?,
        run_after: row.int("run_after")?,
        parent: row.opt_int("parent_id")?.map(TaskId),
    })
}

pub(crate) fn log_line(row: &AnyRow) -> StoreResult<LogLine> {
    Ok(LogLine {
        seq: row.try_get("seq")?,
        task_id: TaskId(row.try_get("task_id")?),
        ts: row.try_get("ts")?,
        level: text_enum(row, "level", LogLevel::parse)?,
        stream: text_enum(row, "stream", LogStream::parse)?,
        text: row.try_get("text")?,
    })
}

pub(crate) fn step(row: &AnyRow) -> StoreResult<StepRecord> {
    Ok(StepRecord {
        task_id: TaskId(row.try_get("task_id")?),
        idx: row.try_get("idx")?,
        description: row.try_get("description")?,
        status: text_enum(row, "status", StepStatus::parse)?,
        undo: row.try_get("undo")?,
        duration_ms: row.try_get("duration_ms")?,
    })
}

pub(crate) fn backup(row: &impl Columns) -> StoreResult<Backup> {
    Ok(Backup {
        id: BackupId(row.int("id")?),
        site_id: SiteId(row.int("site_id")?),
        path: row.text("path")?,
        size: row.int("size")?,
        checksum: row.text("checksum")?,
        kind: text_enum(row, "kind", BackupKind::parse)?,
        created_at: row.int("created_at")?,
        offsite: row.opt_text("offsite")?,
    })
}

/// A site's TLS state, stored as JSON (NULL: never had HTTPS).
pub(crate) fn site_tls(row: &impl Columns) -> StoreResult<SiteTls> {
    json_or_default(row, "tls")
}
