//! Tasks (list, show, live log, cancel, retry) and backups.

use super::{act, Queued};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::{Actor, AppState, SiteAction};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use fjord_actions as actions;
use fjord_core::*;
use fjord_store::{BackupQuery, Page, TaskQuery};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// What a client user may do with a task on one of their sites, by its kind: the same they may do to
/// the site (a client may retry a backup of their site, not a delete someone else started).
pub(crate) fn site_action_of(kind: TaskKind) -> SiteAction {
    match kind {
        TaskKind::SiteBackup => SiteAction::Backup,
        // Archiving what a restore replaced is the restore's second half: retried by whoever may restore.
        TaskKind::SiteRestore | TaskKind::SiteArchiveReplaced => SiteAction::Restore,
        TaskKind::SiteLoginLink => SiteAction::LoginLink,
        TaskKind::SiteEnable => SiteAction::Enable,
        TaskKind::SiteDisable => SiteAction::Disable,
        TaskKind::SiteClone => SiteAction::Clone,
        TaskKind::SiteDelete => SiteAction::Delete,
        TaskKind::SiteMigrate | TaskKind::SiteMigrateCheck => SiteAction::Migrate,
        _ => SiteAction::Settings,
    }
}

/// Loads a task the actor may see: managers see all; a client user only tasks on their clients' sites
/// (others are "not found").
pub async fn task_for(state: &AppState, actor: &Actor, id: i64, action: Option<SiteAction>) -> ApiResult<Task> {
    let task = state.store.task(TaskId(id)).await?;
    if actor.is_manager() {
        return Ok(task);
    }
    let hidden = || ApiError::not_found("task", id);
    if task.target_kind != TargetKind::Site {
        return Err(hidden());
    }
    let site = state.store.site(SiteId(task.target_id)).await.map_err(|_| hidden())?;
    if !actor.can_view_site(&site) {
        return Err(hidden());
    }
    if let Some(a) = action {
        if !actor.can_site(&site, a) {
            return Err(ApiError::Forbidden(format!("your role may not act on {} tasks", task.kind)));
        }
    }
    Ok(task)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    /// A site's domain.
    site: Option<String>,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    limit: i64,
}

pub async fn list(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Task>>> {
    let status = q.status.as_deref().map(|s| actions::parse_enum::<TaskStatus>("status", s)).transpose()?;
    let kind = q.kind.as_deref().map(|s| actions::parse_enum::<TaskKind>("kind", s)).transpose()?;
    let site = match &q.site {
        Some(d) => Some(super::sites::site_for(&state, &actor, d, SiteAction::View).await?.id),
        None => None,
    };
    let query = TaskQuery { status, kind, site, only_clients: actor.only_clients(), offset: q.offset, limit: q.limit };
    Ok(Json(state.store.list_tasks(&query).await?))
}

pub async fn show(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let task = task_for(&state, &actor, id, None).await?;
    let steps = state.store.steps(task.id).await?;
    let mut v = serde_json::to_value(&task).unwrap_or_default();
    v["steps"] = serde_json::json!(steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "idx": s.idx, "description": s.description, "status": s.status, "duration_ms": s.duration_ms,
            })
        })
        .collect::<Vec<_>>());
    // What the task found out; a login link only for whoever asked, while it lasts.
    if task.kind != TaskKind::PlatformMigrate {
        let report = visible_report(&actor, &task, state.store.task_report(task.id).await?);
        v["result"] = serde_json::to_value(report).unwrap_or_default();
    }
    // A batch: its summary and the tasks it queued.
    if task.kind == TaskKind::PlatformMigrate {
        v["result"] = state.store.task_result(task.id).await?.unwrap_or(serde_json::Value::Null);
        v["children"] = serde_json::json!(state
            .store
            .children(task.id)
            .await?
            .iter()
            .map(|c| serde_json::json!({ "id": c.id, "kind": c.kind, "target_id": c.target_id, "status": c.status }))
            .collect::<Vec<_>>());
    }
    Ok(Json(v))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only lines after this sequence number (also taken from `Last-Event-ID`).
    #[serde(default)]
    after: i64,
    /// Keep the stream open until the task ends (default); `false` sends the lines so far and closes.
    #[serde(default)]
    follow: Option<bool>,
}

/// How often the live log looks for new lines.
const LOG_POLL: Duration = Duration::from_millis(300);

/// The task's log as server-sent events: one `log` event per line (its `id` is the line's sequence
/// number, so a reconnecting client resumes with `Last-Event-ID`), then one `end` event with the task
/// once it has finished.
pub async fn log(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let task = task_for(&state, &actor, id, None).await?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
    let after = resume.unwrap_or(q.after).max(0);
    struct Cursor {
        after: i64,
        pending: std::collections::VecDeque<Event>,
        done: bool,
    }
    let follow = q.follow.unwrap_or(true);
    let start = Cursor { after, pending: Default::default(), done: false };
    let store = state.store.clone();
    let task_id = task.id;
    let stream = futures::stream::unfold(start, move |mut c| {
        let store = store.clone();
        async move {
            loop {
                if let Some(e) = c.pending.pop_front() {
                    return Some((Ok(e), c));
                }
                if c.done {
                    return None;
                }
                // Read the status before the lines, so no line written before the end is missed.
                let task = store.task(task_id).await.ok();
                let lines = store.logs(task_id, c.after).await.unwrap_or_default();
                for line in lines {
                    c.after = line.seq;
                    let data = serde_json::to_string(&line).unwrap_or_default();
                    c.pending.push_back(Event::default().event("log").id(line.seq.to_string()).data(data));
                }
                match task {
                    Some(t) if t.status.is_final() => {
                        c.pending.push_back(
                            Event::default().event("end").data(serde_json::to_string(&t).unwrap_or_default()),
                        );
                        c.done = true;
                    }
                    None => c.done = true,
                    Some(_) if !follow => c.done = true,
                    Some(_) if c.pending.is_empty() => tokio::time::sleep(LOG_POLL).await,
                    Some(_) => {}
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub async fn cancel(State(state): State<AppState>, actor: Actor, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Task>> {
    let task = state.store.task(TaskId(id)).await?;
    let task = task_for(&state, &actor, id, Some(site_action_of(task.kind))).await?;
    act(&state, &actor, "task.cancel", &format!("task:{id}"), task.kind.as_str(), async {
        Ok::<_, ApiError>(Json(state.store.cancel(task.id).await?))
    })
    .await
}

pub async fn retry(State(state): State<AppState>, actor: Actor, ApiPath(id): ApiPath<i64>) -> ApiResult<Queued> {
    let task = state.store.task(TaskId(id)).await?;
    let task = task_for(&state, &actor, id, Some(site_action_of(task.kind))).await?;
    act(&state, &actor, "task.retry", &format!("task:{id}"), task.kind.as_str(), async {
        Ok::<_, ApiError>(state.store.retry(task.id, &actor.created_by()).await?)
    })
    .await
    .map(Queued)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsQuery {
    site: Option<String>,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    limit: i64,
}

pub async fn backups(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<BackupsQuery>,
) -> ApiResult<Json<Page<Backup>>> {
    let site = match &q.site {
        Some(d) => Some(super::sites::site_for(&state, &actor, d, SiteAction::View).await?.id),
        None => None,
    };
    let query = BackupQuery { site, only_clients: actor.only_clients(), offset: q.offset, limit: q.limit };
    Ok(Json(state.store.list_backups(&query).await?))
}

/// Deletes a backup (platform managers and admins). Someone who may not see its site gets "not found".
pub async fn delete_backup(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Backup>> {
    act(&state, &actor, "backup.delete", &format!("backup:{id}"), "", async {
        let (b, _) = backup_for(&state, &actor, id, SiteAction::View).await?;
        actor.require_manager()?;
        Ok::<_, ApiError>(Json(state.actions().delete_backup(b.id, state.settings.offsite.as_ref()).await?))
    })
    .await
}

pub async fn backup(State(state): State<AppState>, actor: Actor, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Backup>> {
    let (b, _) = backup_for(&state, &actor, id, SiteAction::View).await?;
    Ok(Json(b))
}

/// A backup that `actor` may `action` through the site it was taken of, with that site. One that does
/// not exist and one of a site the actor may not see get the same answer, so a client learns nothing
/// of other clients' backups, not even that an id is taken.
async fn backup_for(state: &AppState, actor: &Actor, id: i64, action: SiteAction) -> ApiResult<(Backup, Site)> {
    let hidden = || ApiError::not_found("backup", id);
    let b = match state.store.backup(BackupId(id)).await {
        Ok(b) => b,
        Err(fjord_store::StoreError::NotFound { .. }) => return Err(hidden()),
        Err(e) => return Err(e.into()),
    };
    let site = match state.store.site(b.site_id).await {
        Ok(site) if actor.can_view_site(&site) => site,
        Ok(_) | Err(fjord_store::StoreError::NotFound { .. }) => return Err(hidden()),
        Err(e) => return Err(e.into()),
    };
    actor.require_site(&site, action)?;
    Ok((b, site))
}

/// Where a backup of a deleted site brings it back.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreDeletedRequest {
    /// The domain it comes back under; default: its old one.
    #[serde(default)]
    pub domain: Option<String>,
    /// The platform (name) it comes back on; default: its old one.
    #[serde(default)]
    pub platform: Option<String>,
}

/// Brings the deleted site a backup was taken of back as a new site, built by a restore task.
pub async fn restore_deleted(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<i64>,
    crate::extract::ApiJson(req): crate::extract::ApiJson<RestoreDeletedRequest>,
) -> ApiResult<Queued> {
    act(&state, &actor, "site-restore-deleted", &format!("backup:{id}"), req.domain.as_deref().unwrap_or(""), async {
        let (b, _) = backup_for(&state, &actor, id, SiteAction::Restore).await?;
        // The same rule as a clone's: only a manager picks where a site is built.
        actor.require_platform_choice(req.platform.as_deref())?;
        let offsite = state.settings.offsite.as_ref();
        let (_, task) = state
            .actions()
            .restore_deleted_site(&b, req.domain.as_deref(), req.platform.as_deref(), offsite, &actor.created_by())
            .await?;
        Ok::<_, ApiError>(Queued(task))
    })
    .await
}

/// Re-reads a backup's archive and checks it against its recorded checksum, entry by entry.
pub async fn verify_backup(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let (b, site) = backup_for(&state, &actor, id, SiteAction::Backup).await?;
    let checked = state.actions().verify_backup(&b, &site.domain, state.settings.offsite.as_ref()).await?;
    Ok(Json(match checked {
        Ok(entries) => serde_json::json!({ "id": id, "ok": true, "entries": entries }),
        Err(e) => serde_json::json!({ "id": id, "ok": false, "error": e.to_string() }),
    }))
}

/// A task's report as `actor` may see it: a one-time login link is a credential, shown only to whoever
/// asked for it, and only for a day after its task ended (as long as drush's links last).
pub fn visible_report(actor: &Actor, task: &Task, mut report: TaskReport) -> TaskReport {
    let fresh = task.finished_at.is_some_and(|at| fjord_store::now_millis() - at < LOGIN_LINK_TTL_MS);
    if task.created_by != actor.created_by() || !fresh {
        report.login_link = None;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_retried_by_whoever_may_do_it_to_the_site() {
        assert_eq!(site_action_of(TaskKind::SiteRestore), SiteAction::Restore);
        assert_eq!(site_action_of(TaskKind::SiteArchiveReplaced), SiteAction::Restore);
        assert_eq!(site_action_of(TaskKind::SiteDelete), SiteAction::Delete);
        assert_eq!(site_action_of(TaskKind::SiteCert), SiteAction::Settings);
    }
}
