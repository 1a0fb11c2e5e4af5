//! Changes to the desired state that a task then applies to the hosts: the one vocabulary the actions
//! layer uses to say "record this and queue that". The store writes a [`Change`] in one transaction
//! (desired state and tasks together, or nothing); planners see it first through [`DesiredChange::apply`]
//! on a snapshot in memory, which is how a dry run or a refusal is decided without writing anything.

use crate::{Domain, HttpsMode, Isolation, NewTask, PhpLimits, ServerId, Service, Site, SiteId, SiteTls, Snapshot};
use serde::{Deserialize, Serialize};

/// One change of the desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum DesiredChange {
    /// The services a server offers (web server, PHP runtimes, databases, trusted proxies).
    ServerServices {
        server: ServerId,
        services: Vec<Service>,
    },
    /// A provider's published proxy ranges (Cloudflare's), as last refreshed.
    ProxyRanges {
        name: String,
        ranges: Vec<String>,
        source: String,
    },
    SiteAliases {
        site: SiteId,
        aliases: Vec<Domain>,
        redirect: bool,
    },
    SitePhpLimits {
        site: SiteId,
        limits: PhpLimits,
    },
    /// The PHP runtime a site runs on (`None`: the server's default).
    SitePhp {
        site: SiteId,
        runtime: Option<String>,
    },
    SiteIsolation {
        site: SiteId,
        isolation: Isolation,
    },
    SiteHttps {
        site: SiteId,
        mode: HttpsMode,
        tls: SiteTls,
    },
    /// The text a site's front page must contain for its health checks (`None`: the status only).
    SiteHealthMarker {
        site: SiteId,
        marker: Option<String>,
    },
}

impl DesiredChange {
    /// The snapshot as it will be once the change is recorded: every copy of the changed server or site
    /// in it is changed.
    pub fn apply(&self, snap: &mut Snapshot) {
        match self {
            DesiredChange::ServerServices { server, services } => {
                let servers = [Some(&mut snap.server), snap.db_server.as_mut(), snap.other_db_server.as_mut()];
                for s in servers.into_iter().flatten().filter(|s| s.id == *server) {
                    s.services = services.clone();
                }
            }
            DesiredChange::ProxyRanges { .. } => {}
            DesiredChange::SiteAliases { site, aliases, redirect } => {
                for s in sites_mut(snap, *site) {
                    s.aliases = aliases.clone();
                    s.redirect_aliases = *redirect;
                }
            }
            DesiredChange::SitePhpLimits { site, limits } => {
                for s in sites_mut(snap, *site) {
                    s.php_limits = limits.clone();
                }
            }
            DesiredChange::SitePhp { site, runtime } => {
                for s in sites_mut(snap, *site) {
                    s.php = runtime.clone();
                }
            }
            DesiredChange::SiteIsolation { site, isolation } => {
                for s in sites_mut(snap, *site) {
                    s.isolation = *isolation;
                }
            }
            DesiredChange::SiteHttps { site, mode, tls } => {
                for s in sites_mut(snap, *site) {
                    s.https = *mode;
                    s.tls = tls.clone();
                }
            }
            DesiredChange::SiteHealthMarker { site, marker } => {
                for s in sites_mut(snap, *site) {
                    s.health_marker = marker.clone();
                }
            }
        }
    }

    /// The settings of `like` a site create does not take, as changes of `site`: its PHP limits,
    /// isolation, HTTPS mode and settings (not its certificate, which is obtained again) and health
    /// marker. With a create's own (aliases, runtime, client, cron), they bring a site back as a
    /// backup recorded it.
    pub fn settings_of(site: SiteId, like: &Site) -> Vec<DesiredChange> {
        let tls = SiteTls { hsts: like.tls.hsts, source: like.tls.source, ..Default::default() };
        vec![
            DesiredChange::SitePhpLimits { site, limits: like.php_limits.clone() },
            DesiredChange::SiteIsolation { site, isolation: like.isolation },
            DesiredChange::SiteHttps { site, mode: like.https, tls },
            DesiredChange::SiteHealthMarker { site, marker: like.health_marker.clone() },
        ]
    }
}

fn sites_mut(snap: &mut Snapshot, id: SiteId) -> impl Iterator<Item = &mut Site> {
    snap.site.iter_mut().chain(snap.other_site.iter_mut()).chain(snap.sites.iter_mut()).filter(move |s| s.id == id)
}

/// What one request changes: desired state and the tasks that apply it, recorded together or not at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub desired: Vec<DesiredChange>,
    /// Their lanes are derived by the store from each task's kind and target.
    pub tasks: Vec<NewTask>,
}

impl Change {
    /// One task and no change of the desired state.
    pub fn task(task: NewTask) -> Change {
        Change { desired: vec![], tasks: vec![task] }
    }

    /// Records `desired`, then runs `task`.
    pub fn with(desired: DesiredChange, task: NewTask) -> Change {
        Change { desired: vec![desired], tasks: vec![task] }
    }
}
