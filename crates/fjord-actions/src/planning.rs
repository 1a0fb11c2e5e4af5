//! Planning a task: the one way both a request (before anything is written, and for its dry run) and
//! the daemon (before it runs the task) turn a task into a plan, so the dry run shows what will run.
//! A snapshot of the state, what the host says (facts), and the pure planner of fjord-plan.

use crate::error::ActionResult;
use fjord_core::*;
use fjord_plan::{ArchiveReplacedArgs, Facts, Layout};
use fjord_store::Store;
use std::path::Path;

/// Plans `task` (queued, or prospective) against the state as it is now.
pub async fn plan_task(store: &Store, layout: &Layout, task: &Task) -> ActionResult<Planned> {
    if task.kind == TaskKind::Noop {
        let args = serde_json::from_value(task.args.clone()).map_err(|e| fjord_plan::PlanError::Args(e.to_string()))?;
        return Ok(fjord_plan::noop(args)?);
    }
    let snap = store.snapshot(task).await?;
    plan_snapshot(store, layout, task.kind, task.target_id, &task.args, &snap).await
}

/// Plans a task not queued yet on an existing target, with the desired-state changes it would be
/// recorded with applied to the snapshot in memory (nothing is written).
pub async fn plan_prospective(
    store: &Store,
    layout: &Layout,
    task: &NewTask,
    desired: &[DesiredChange],
) -> ActionResult<Planned> {
    let mut snap = store.prospective_snapshot(task.kind, task.target_id, &task.args).await?;
    for d in desired {
        d.apply(&mut snap);
    }
    plan_snapshot(store, layout, task.kind, task.target_id, &task.args, &snap).await
}

/// Plans `kind` on `target_id` against `snap`, with the facts the host and the task history give.
pub async fn plan_snapshot(
    store: &Store,
    layout: &Layout,
    kind: TaskKind,
    target_id: i64,
    args: &serde_json::Value,
    snap: &Snapshot,
) -> ActionResult<Planned> {
    let mut facts = host_facts(kind, snap);
    if kind == TaskKind::SiteDelete {
        let archives = store.site_tasks_of_kind(target_id, TaskKind::SiteArchiveReplaced).await?;
        facts.unarchived_replaced = unarchived_replaced(&archives);
    }
    if kind == TaskKind::SiteMigrate {
        facts.migrate_pending = migrate_pending(layout, args, snap).await;
    }
    Ok(fjord_plan::plan(layout, kind, args, snap, &facts)?)
}

/// For a migrate that moves only a site's code: the database updates the target code has for it,
/// from the read-only schema check run now as the site's user (never root: it reads code the site
/// can change). `None` when there is nothing to ask, or no clear answer (the check failed or refused):
/// the migrate then keeps its maintenance window. Asked again each time the migrate is planned, so
/// the daemon plans on what the database says when the task starts.
async fn migrate_pending(layout: &Layout, args: &serde_json::Value, snap: &Snapshot) -> Option<Vec<String>> {
    let args: fjord_plan::MigrateArgs = serde_json::from_value(args.clone()).ok()?;
    let probe = fjord_plan::migrate_probe(layout, snap, &args)?;
    let state = Path::new(&layout.state_dir);
    let secrets = fjord_exec::SecretStore::open(state.join("secrets")).ok()?;
    let executor = fjord_exec::Executor::new(fjord_exec::Host::Local, secrets, state.join("undo"));
    match executor.run_command(&probe, None, None).await {
        Ok(out) => {
            let lines: Vec<(LogStream, String)> =
                out.stdout.lines().map(|l| (LogStream::Stdout, l.to_string())).collect();
            let mut found = TaskReport::default();
            found.take(Report::MigrateCheck, &lines);
            Some(found.pending)
        }
        Err(e) => {
            tracing::info!(error = %e, "migrate probe: no answer, the migrate keeps its maintenance window");
            None
        }
    }
}

/// Plans a task on a site that is not recorded yet (install, clone, a deleted site's restore).
pub fn plan_new(layout: &Layout, kind: TaskKind, args: &serde_json::Value, snap: &Snapshot) -> ActionResult<Planned> {
    Ok(fjord_plan::plan(layout, kind, args, snap, &host_facts(kind, snap))?)
}

/// What the host says that planning needs: for a platform verify, the codebase (read-only probes).
fn host_facts(kind: TaskKind, snap: &Snapshot) -> Facts {
    if kind != TaskKind::PlatformVerify {
        return Facts::default();
    }
    let Some(platform) = &snap.platform else {
        return Facts::default();
    };
    let root = Path::new(&platform.root);
    let docroot = fjord_exec::probe::docroot(root);
    let web = docroot.as_ref().map(|d| if d.is_empty() { root.to_path_buf() } else { root.join(d) });
    let app = web.as_ref().and_then(|w| fjord_exec::probe::app(w));
    let sites_php = web.as_ref().and_then(|w| fjord_exec::probe::read_text(&w.join("sites/sites.php")));
    let details = fjord_exec::probe::platform_details(root, web.as_deref());
    Facts {
        composer_json: root.join("composer.json").is_file(),
        vendor: root.join("vendor").is_dir(),
        root_exists: root.is_dir(),
        docroot,
        app: app.as_ref().map(|(a, _)| *a),
        app_version: app.and_then(|(_, v)| v),
        sites_php,
        details,
        missing_packages: fjord_exec::probe::missing_vendor_packages(root),
        ..Facts::default()
    }
}

/// What a site's restores replaced and their `site-archive-replaced` tasks (`tasks`) did not archive:
/// the arguments of failed or cancelled ones that no task with the same arguments has since done.
fn unarchived_replaced(tasks: &[Task]) -> Vec<ArchiveReplacedArgs> {
    let args = |t: &Task| serde_json::from_value::<ArchiveReplacedArgs>(t.args.clone()).ok();
    let done: Vec<_> = tasks.iter().filter(|t| t.status == TaskStatus::Succeeded).filter_map(args).collect();
    let mut left = Vec::new();
    for a in tasks.iter().filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Cancelled)).filter_map(args) {
        if !done.contains(&a) && !left.contains(&a) {
            left.push(a);
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failed or cancelled archives count until a task with the same arguments succeeds.
    #[test]
    fn replaced_data_stays_unarchived_until_a_retry_succeeds() {
        let task = |stamp: &str, status| {
            let args = serde_json::json!({"stamp": stamp, "db_name": format!("old{stamp}")});
            Task { status, ..Task::prospective(TaskKind::SiteArchiveReplaced, 1, Lane::batch(PlatformId(1)), args) }
        };
        let tasks = [
            task("1", TaskStatus::Failed),
            task("1", TaskStatus::Succeeded),
            task("2", TaskStatus::Failed),
            task("2", TaskStatus::Cancelled),
            task("3", TaskStatus::Queued),
        ];
        let left = unarchived_replaced(&tasks);
        let stamps: Vec<&str> = left.iter().map(|a| a.stamp.as_str()).collect();
        assert_eq!(stamps, ["2"]);
        assert_eq!(left[0].db_name, "old2");
    }
}
