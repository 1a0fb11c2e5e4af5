//! Planners: turn a task and a [`Snapshot`] of the state into a [`Planned`] list of steps and the state
//! changes its outcome brings. Planners are pure (no IO): what they need to know about a host comes in
//! as [`Facts`] gathered by the daemon beforehand. This is what makes `--dry-run` exact: the CLI calls
//! the same planner the daemon does.
//!
//! Config files are rendered from the templates under `templates/`, embedded in the binary.

pub mod layout;
mod render;

pub use layout::Layout;

use fjord_core::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The task must not run in the current state (e.g. deleting an enabled site).
    #[error("{0}")]
    Refused(String),
    #[error("task arguments: {0}")]
    Args(String),
    #[error("template {name}: {source}")]
    Template { name: String, source: minijinja::Error },
}

pub type PlanResult<T> = Result<T, PlanError>;

/// What the daemon found on the host before planning (for platform verify: the codebase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The platform root exists and is a directory.
    pub root_exists: bool,
    /// Web root relative to the platform root ("" for the root itself).
    pub docroot: Option<String>,
    pub app: Option<AppKind>,
    pub app_version: Option<String>,
}

/// Arguments of a no-op task (used by tests and the queue benchmark).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopArgs {
    #[serde(default)]
    pub sleep_ms: u64,
    /// Files to write (content "noop") before sleeping; their removal on undo is observable.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub fail: bool,
}

/// Arguments of a site delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// Delete even if the site is not disabled first.
    #[serde(default)]
    pub force: bool,
}

fn args<T: serde::de::DeserializeOwned + Default>(task_args: &serde_json::Value) -> PlanResult<T> {
    if task_args.is_null() || task_args.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(T::default());
    }
    serde_json::from_value(task_args.clone()).map_err(|e| PlanError::Args(e.to_string()))
}

/// Plans `kind` with `task_args` against the state in `snap`.
pub fn plan(
    layout: &Layout,
    kind: TaskKind,
    task_args: &serde_json::Value,
    snap: &Snapshot,
    facts: &Facts,
) -> PlanResult<Planned> {
    match kind {
        TaskKind::ServerVerify => server_verify(layout, snap),
        TaskKind::ServerRemove => server_remove(layout, snap),
        TaskKind::PlatformVerify => platform_verify(snap, facts),
        TaskKind::PlatformRemove => platform_remove(snap),
        TaskKind::SiteInstall => site_apply(layout, snap, SiteStatus::Enabled, Some(SiteStatus::Failed)),
        TaskKind::SiteVerify => {
            let site = site_of(snap)?;
            let target = if site.status == SiteStatus::Disabled {
                SiteStatus::Disabled
            } else {
                SiteStatus::Enabled
            };
            site_apply(layout, snap, target, None)
        }
        TaskKind::SiteEnable => site_apply(layout, snap, SiteStatus::Enabled, None),
        TaskKind::SiteDisable => site_apply(layout, snap, SiteStatus::Disabled, None),
        TaskKind::SiteDelete => site_delete(layout, snap, args::<DeleteArgs>(task_args)?),
        TaskKind::Noop => noop(args::<NoopArgs>(task_args)?),
    }
}

/// Plans a no-op task; needs no snapshot.
pub fn noop(a: NoopArgs) -> PlanResult<Planned> {
    let mut plan = Plan::default();
    for f in &a.files {
        plan.push(Step::WriteFile {
            path: f.clone(),
            content: FileContent::Text { text: "noop\n".into() },
            mode: 0o644,
        });
    }
    if a.sleep_ms > 0 {
        plan.push(Step::Sleep { ms: a.sleep_ms });
    }
    if a.fail {
        plan.push(Step::Fail {
            message: "no-op task asked to fail".into(),
        });
    }
    Ok(Planned {
        plan,
        ..Default::default()
    })
}

fn site_of(snap: &Snapshot) -> PlanResult<&Site> {
    snap.site
        .as_ref()
        .ok_or_else(|| PlanError::Refused("the site no longer exists".into()))
}

fn platform_of(snap: &Snapshot) -> PlanResult<&Platform> {
    snap.platform
        .as_ref()
        .ok_or_else(|| PlanError::Refused("the platform no longer exists".into()))
}

fn web_service(snap: &Snapshot) -> Option<&'static str> {
    snap.server.http().map(|(kind, _)| kind.as_str())
}

fn server_verify(layout: &Layout, snap: &Snapshot) -> PlanResult<Planned> {
    let server = &snap.server;
    let mut plan = Plan::default();
    plan.push(Step::MakeDir {
        path: layout.vhost_dir(server),
        mode: 0o755,
    });
    plan.push(Step::MakeDir {
        path: layout.static_dir(),
        mode: 0o755,
    });
    plan.push(Step::MakeDir {
        path: layout.acme_dir(),
        mode: 0o755,
    });
    plan.push(Step::WriteFile {
        path: format!("{}/fjord-site-disabled.html", layout.static_dir()),
        content: FileContent::Text {
            text: render::site_disabled_page()?,
        },
        mode: 0o644,
    });
    if server.http().is_some() {
        plan.push(Step::WriteFile {
            path: layout.server_include(server),
            content: FileContent::Text {
                text: render::server_include(layout, server)?,
            },
            mode: 0o644,
        });
    }
    if let Some(service) = web_service(snap) {
        plan.push(Step::Reload {
            service: service.into(),
        });
    }
    Ok(Planned {
        plan,
        on_success: vec![StateChange::ServerStatus {
            server: server.id,
            status: ObjectStatus::Enabled,
        }],
        on_failure: vec![],
    })
}

fn server_remove(layout: &Layout, snap: &Snapshot) -> PlanResult<Planned> {
    if !snap.platforms.is_empty() {
        let names: Vec<&str> = snap.platforms.iter().map(|p| p.name.as_str()).collect();
        return Err(PlanError::Refused(format!(
            "server {} still has platforms: {}",
            snap.server.name,
            names.join(", ")
        )));
    }
    let mut plan = Plan::default();
    plan.push(Step::RemovePath {
        path: layout.server_dir(&snap.server),
    });
    Ok(Planned {
        plan,
        on_success: vec![StateChange::ServerStatus {
            server: snap.server.id,
            status: ObjectStatus::Deleted,
        }],
        on_failure: vec![],
    })
}

fn platform_verify(snap: &Snapshot, facts: &Facts) -> PlanResult<Planned> {
    let platform = platform_of(snap)?;
    let mut plan = Plan::default();
    if !facts.root_exists {
        plan.push(Step::Fail {
            message: format!("platform root {} does not exist or is not a directory", platform.root),
        });
    }
    Ok(Planned {
        plan,
        on_success: vec![StateChange::PlatformVerified {
            platform: platform.id,
            docroot: facts.docroot.clone(),
            app: facts.app,
            app_version: facts.app_version.clone(),
        }],
        on_failure: vec![],
    })
}

fn platform_remove(snap: &Snapshot) -> PlanResult<Planned> {
    let platform = platform_of(snap)?;
    if !snap.sites.is_empty() {
        return Err(PlanError::Refused(format!(
            "platform {} still has {} site(s), e.g. {}; migrate or delete them first",
            platform.name,
            snap.sites.len(),
            snap.sites[0].domain
        )));
    }
    Ok(Planned {
        plan: Plan::default(),
        on_success: vec![StateChange::PlatformStatus {
            platform: platform.id,
            status: ObjectStatus::Deleted,
        }],
        on_failure: vec![],
    })
}

/// Install, verify, enable and disable all converge a site's derived files to the same shape; they
/// differ only in the status they render and record.
fn site_apply(
    layout: &Layout,
    snap: &Snapshot,
    status: SiteStatus,
    on_failure: Option<SiteStatus>,
) -> PlanResult<Planned> {
    let site = site_of(snap)?;
    let platform = platform_of(snap)?;
    if site.status == SiteStatus::Deleted {
        return Err(PlanError::Refused(format!("site {} is deleted", site.domain)));
    }
    let mut plan = Plan::default();
    let dir = layout.site_dir(site);
    plan.push(Step::MakeDir {
        path: dir.clone(),
        mode: 0o750,
    });
    for sub in ["files", "private", "tmp"] {
        plan.push(Step::MakeDir {
            path: format!("{dir}/{sub}"),
            mode: 0o770,
        });
    }
    if snap.server.http().is_some() {
        plan.push(Step::WriteFile {
            path: layout.vhost_path(&snap.server, site),
            content: FileContent::Text {
                text: render::vhost(layout, &snap.server, platform, site, status == SiteStatus::Disabled)?,
            },
            mode: 0o644,
        });
    }
    if let Some(service) = web_service(snap) {
        plan.push(Step::Reload {
            service: service.into(),
        });
    }
    Ok(Planned {
        plan,
        on_success: vec![StateChange::SiteStatus { site: site.id, status }],
        on_failure: on_failure
            .map(|s| StateChange::SiteStatus {
                site: site.id,
                status: s,
            })
            .into_iter()
            .collect(),
    })
}

fn site_delete(layout: &Layout, snap: &Snapshot, a: DeleteArgs) -> PlanResult<Planned> {
    let site = site_of(snap)?;
    if !matches!(site.status, SiteStatus::Disabled | SiteStatus::Failed) && !a.force {
        return Err(PlanError::Refused(format!(
            "site {} is {}; disable it first (or delete with --force)",
            site.domain, site.status
        )));
    }
    let mut plan = Plan::default();
    if snap.server.http().is_some() {
        plan.push(Step::RemovePath {
            path: layout.vhost_path(&snap.server, site),
        });
        if let Some(service) = web_service(snap) {
            plan.push(Step::Reload {
                service: service.into(),
            });
        }
    }
    plan.push(Step::RemovePath {
        path: layout.site_dir(site),
    });
    Ok(Planned {
        plan,
        on_success: vec![StateChange::SiteStatus {
            site: site.id,
            status: SiteStatus::Deleted,
        }],
        on_failure: vec![],
    })
}

#[cfg(test)]
mod tests;
