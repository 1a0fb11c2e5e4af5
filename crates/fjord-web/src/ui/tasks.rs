//! Tasks: the list and the task page with its live log (server-rendered lines, then followed over the
//! API's server-sent events by `assets/live-log.js`; a meta refresh without JavaScript).

use super::{given, page_number, query_escape, see_other, NoFields, Pager, UiResult, Viewer};
use crate::api::tasks as api;
use crate::csrf::CsrfForm;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::AppState;
use axum::extract::{Path, Query, State};
use fjord_core::*;
use fjord_store::TaskQuery;
use minijinja::{context, Value};
use serde::Deserialize;
use std::collections::HashMap;

const PER_PAGE: i64 = 50;

/// What a task is about, for people: `example.org`, `platform d10`, `server web1`, and its page.
async fn target_of(state: &AppState, kind: TargetKind, id: i64) -> (String, Option<String>) {
    match kind {
        TargetKind::Site => match state.store.site(SiteId(id)).await {
            Ok(s) if s.status == SiteStatus::Deleted => (format!("{} (deleted)", s.domain), None),
            Ok(s) => (s.domain.to_string(), Some(format!("/sites/{}", s.domain))),
            Err(_) => (format!("site {id}"), None),
        },
        TargetKind::Platform => match state.store.platform(PlatformId(id)).await {
            Ok(p) => (format!("platform {}", p.name), Some(format!("/platforms/{}", p.name))),
            Err(_) => (format!("platform {id}"), None),
        },
        TargetKind::Server => match state.store.server(ServerId(id)).await {
            Ok(s) => (format!("server {}", s.name), Some(format!("/servers/{}", s.name))),
            Err(_) => (format!("server {id}"), None),
        },
    }
}

/// Tasks as the task tables show them, with what each is about (looked up once per target).
pub async fn task_rows(state: &AppState, tasks: &[Task]) -> UiResult<Vec<Value>> {
    let mut targets: HashMap<(TargetKind, i64), (String, Option<String>)> = HashMap::new();
    let mut rows = Vec::with_capacity(tasks.len());
    for t in tasks {
        let key = (t.target_kind, t.target_id);
        if let std::collections::hash_map::Entry::Vacant(e) = targets.entry(key) {
            e.insert(target_of(state, t.target_kind, t.target_id).await);
        }
        let (target, href) = &targets[&key];
        rows.push(context! {
            id => t.id.0, kind => t.kind.as_str(), status => t.status.as_str(), created_by => t.created_by,
            created_at => t.created_at, target => target, target_href => href,
        });
    }
    Ok(rows)
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    site: Option<String>,
    page: Option<String>,
}

pub async fn list(State(state): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> UiResult {
    let page = page_number(q.page.as_deref());
    let status = given(&q.status).and_then(TaskStatus::parse);
    let kind = given(&q.kind).and_then(TaskKind::parse);
    let site = match given(&q.site) {
        Some(d) => Some(crate::api::sites::site_for(&state, &v.0, d, crate::SiteAction::View).await?),
        None => None,
    };
    let found = state
        .store
        .list_tasks(&TaskQuery {
            status,
            kind,
            site: site.as_ref().map(|s| s.id),
            only_clients: v.0.only_clients(),
            offset: (page - 1) * PER_PAGE,
            limit: PER_PAGE,
        })
        .await?;
    let mut base = String::from("/tasks?");
    for (k, val) in [
        ("status", status.map(|s| s.as_str())),
        ("kind", kind.map(|k| k.as_str())),
        ("site", site.as_ref().map(|s| s.domain.as_str())),
    ] {
        if let Some(val) = val {
            base.push_str(&format!("{k}={}&", query_escape(val)));
        }
    }
    let pager = Pager::new(&base, found.total, page, PER_PAGE, found.items.len());
    let filter = context! {
        status => status.map(|s| s.as_str()), kind => kind.map(|k| k.as_str()),
        site => site.as_ref().map(|s| s.domain.as_str()),
        active => status.is_some() || kind.is_some() || site.is_some(),
    };
    let statuses: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
    let kinds: Vec<&str> = TaskKind::ALL.iter().filter(|k| **k != TaskKind::Noop).map(|k| k.as_str()).collect();
    v.page(
        "tasks.html",
        "tasks",
        context! { tasks => task_rows(&state, &found.items).await?, pager, filter, statuses, kinds },
    )
}

pub async fn show(State(state): State<AppState>, v: Viewer, Path(id): Path<i64>) -> UiResult {
    let task = api::task_for(&state, &v.0, id, None).await?;
    let steps = state.store.steps(task.id).await?;
    let log = state.store.logs(task.id, 0).await?;
    let last_seq = log.last().map(|l| l.seq).unwrap_or(0);
    let (target, target_href) = target_of(&state, task.target_kind, task.target_id).await;
    // A login link task's one-time URL (its result): shown on top, like `fjord site login-link` prints it.
    let login_url = if task.kind == TaskKind::SiteLoginLink && task.status == TaskStatus::Succeeded {
        api::visible_report(&v.0, &task, state.store.task_report(task.id).await?).login_link
    } else {
        None
    };
    let final_ = task.status.is_final();
    // Cancel and retry are offered to whoever may do the task's own action (the API checks again).
    let can_act = match task.target_kind {
        TargetKind::Site => v.0.is_manager() || !matches!(task.kind, TaskKind::SiteDelete | TaskKind::SiteMigrate),
        _ => v.0.is_manager(),
    };
    let can_cancel =
        can_act && matches!(task.status, TaskStatus::Queued | TaskStatus::Running) && !task.cancel_requested;
    let can_retry = can_act && matches!(task.status, TaskStatus::Failed | TaskStatus::Cancelled);
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| {
            context! {
                description => s.description,
                status => s.status.as_str(),
                took => s.duration_ms.map(crate::ui::render::millis),
            }
        })
        .collect();
    let log: Vec<Value> = log
        .iter()
        .map(|l| context! { ts => l.ts, level => l.level.as_str(), stream => l.stream.as_str(), text => l.text })
        .collect();
    let task_v = context! {
        id => task.id.0, kind => task.kind.as_str(), status => task.status.as_str(), error => task.error,
        created_by => task.created_by, created_at => task.created_at, started_at => task.started_at,
        finished_at => task.finished_at, attempts => task.attempts, max_attempts => task.max_attempts,
    };
    // A batch shows its sites (its stored summary) with links to their tasks; a task a batch queued
    // links back to it (for those who may see the batch: managers).
    let batch = match task.kind {
        TaskKind::PlatformMigrate => {
            state.store.task_result(task.id).await?.and_then(|r| serde_json::from_value::<BatchSummary>(r).ok()).map(
                |b| {
                    context! {
                        from => b.from, to => b.to, sites => Value::from_serialize(&b.sites), line => b.counts_line(),
                    }
                },
            )
        }
        _ => None,
    };
    let parent = task.parent.filter(|_| v.0.is_manager()).map(|p| p.0);
    v.page(
        "task.html",
        "tasks",
        context! {
            task => task_v, steps, log, last_seq, target, target_href, login_url, finished => final_, can_cancel, can_retry,
            batch, parent,
        },
    )
}

/// Cancel or retry, through the API's handlers (which check the actor may).
pub async fn action(
    State(state): State<AppState>,
    v: Viewer,
    Path((id, action)): Path<(i64, String)>,
    _: CsrfForm<NoFields>,
) -> UiResult {
    match action.as_str() {
        "cancel" => {
            let _cancelled = api::cancel(State(state), v.0.clone(), ApiPath(id)).await?;
            Ok(see_other(&format!("/tasks/{id}")))
        }
        "retry" => {
            let queued = api::retry(State(state), v.0.clone(), ApiPath(id)).await?;
            Ok(see_other(&format!("/tasks/{}", queued.0.id)))
        }
        _ => Err(ApiError::not_found("action", action).into()),
    }
}
