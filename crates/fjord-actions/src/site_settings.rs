//! A site's settings that a verify applies (PHP limits, PHP runtime, isolation), its health marker,
//! and content sync between two sites. Each checks its input, plans the task with the change, then
//! records the change and queues the task; a refusal records nothing.

use super::{Actions, Outcome};
use crate::error::{ActionError, ActionResult};
use fjord_core::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// New PHP-FPM pool limits for a site; what is left out stays as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhpLimitsChange {
    /// `pm.max_children`: requests of the site running at once.
    pub max_children: Option<u32>,
    /// `memory_limit`, e.g. 256M.
    pub memory_limit: Option<String>,
    /// `upload_max_filesize` and `post_max_size`, e.g. 64M.
    pub upload_max: Option<String>,
    /// `max_execution_time`, seconds.
    pub max_execution_time: Option<u32>,
}

/// What to copy from one site into another (after a backup of the target).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The site copied from (domain).
    pub from: String,
    /// Copy the database.
    #[serde(default)]
    pub db: bool,
    /// Copy the files (public and private).
    #[serde(default)]
    pub files: bool,
}

/// Whose Unix user a site's PHP runs as: `site` (its own) or `client` (one for its client's sites).
pub fn parse_isolation(mode: &str) -> ActionResult<Isolation> {
    let mode: Isolation = super::parse_enum("mode", mode)?;
    if mode == Isolation::Shared && std::env::var_os("FJORD_ALLOW_SHARED_POOL").is_none() {
        return Err(ActionError::invalid(
            "mode",
            "isolation `shared` runs the site's PHP as the web server's user, able to read every other site's \
             settings: it exists only for tests (FJORD_ALLOW_SHARED_POOL=1)",
        ));
    }
    Ok(mode)
}

impl Actions<'_> {
    /// Records `desired` for `site` and queues the verify that applies it (a dry run: its plan).
    async fn verify_with(
        &self,
        site: &Site,
        desired: DesiredChange,
        dry_run: bool,
        created_by: &str,
    ) -> ActionResult<Outcome> {
        let verify = NewTask::new(TaskKind::SiteVerify, site.id.0, serde_json::json!({}), created_by);
        self.submit(Change::with(desired, verify), dry_run).await
    }

    /// New pool limits for `site`, then the verify that writes them.
    pub async fn set_php_limits(
        &self,
        site: &Site,
        req: &PhpLimitsChange,
        dry_run: bool,
        created_by: &str,
    ) -> ActionResult<Outcome> {
        let mut limits = site.php_limits.clone();
        limits.max_children = req.max_children.unwrap_or(limits.max_children);
        limits.memory_limit = req.memory_limit.clone().unwrap_or(limits.memory_limit);
        limits.upload_max = req.upload_max.clone().unwrap_or(limits.upload_max);
        limits.max_execution_time = req.max_execution_time.unwrap_or(limits.max_execution_time);
        // The error names the request's field (`memory_limit`, …).
        limits.validate()?;
        self.verify_with(site, DesiredChange::SitePhpLimits { site: site.id, limits }, dry_run, created_by).await
    }

    /// Moves `site` to its server's PHP runtime `runtime` (by name), then the verify that moves its pool.
    pub async fn set_php_runtime(
        &self,
        site: &Site,
        runtime: &str,
        dry_run: bool,
        created_by: &str,
    ) -> ActionResult<Outcome> {
        let platform = self.store.platform(site.platform_id).await?;
        let server = self.store.server(platform.server_id).await?;
        let Some(r) = server.php_runtimes().find(|r| r.key() == runtime) else {
            let known: Vec<&str> = server.php_runtimes().map(|r| r.key()).collect();
            return Err(ActionError::invalid(
                "runtime",
                format!("server {} has no PHP runtime {runtime} (it has: {})", server.name, known.join(", ")),
            ));
        };
        let desired = DesiredChange::SitePhp { site: site.id, runtime: Some(r.key().to_string()) };
        self.verify_with(site, desired, dry_run, created_by).await
    }

    /// Sets whose Unix user `site`'s PHP runs as, then the verify that moves it there.
    pub async fn set_isolation(
        &self,
        site: &Site,
        mode: Isolation,
        dry_run: bool,
        created_by: &str,
    ) -> ActionResult<Outcome> {
        if mode == Isolation::Client && site.client_id.is_none() {
            return Err(ActionError::invalid(
                "mode",
                format!("site {} has no client: isolation `client` needs one", site.domain),
            ));
        }
        let desired = DesiredChange::SiteIsolation { site: site.id, isolation: mode };
        self.verify_with(site, desired, dry_run, created_by).await
    }

    /// Sets the text `site`'s front page must contain for its health checks (none: the status only).
    pub async fn set_health_marker(&self, site: &Site, text: Option<&str>) -> ActionResult<()> {
        if let Some(t) = text {
            if t.trim().is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
                return Err(ActionError::invalid(
                    "text",
                    "invalid health marker: one line of visible text, at most 200 bytes",
                ));
            }
        }
        Ok(self.store.set_site_health_marker(site.id, text).await?)
    }

    /// The arguments of copying `req.from`'s database and/or files into `target`.
    pub async fn sync_args(&self, source: &Site, target: &Site, req: &SyncRequest) -> ActionResult<serde_json::Value> {
        if !req.db && !req.files {
            return Err(ActionError::invalid("db", "say what to copy: db, files, or both"));
        }
        if source.id == target.id {
            return Err(ActionError::invalid("from", "a site cannot be synced from itself"));
        }
        Ok(serde_json::json!({ "source_site": source.id.0, "db": req.db, "files": req.files,
                               "stamp": super::stamp_now() }))
    }
}

/// A site's HTTPS mode and HSTS, and where its certificate comes from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpsChange {
    /// `off`, `on` (both served) or `required` (HTTP redirects to HTTPS).
    pub mode: String,
    /// Send Strict-Transport-Security on HTTPS answers (default: unchanged).
    pub hsts: Option<bool>,
    /// A self-signed certificate instead of ACME (internal domains).
    #[serde(default)]
    pub self_signed: bool,
}

/// A new certificate now: from ACME (the default), self-signed, or uploaded (PEM).
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertChange {
    #[serde(default)]
    pub self_signed: bool,
    /// ACME: revoke the certificate being replaced once the new one is installed.
    #[serde(default)]
    pub revoke_old: bool,
    /// An uploaded certificate (the site's first, then its chain) …
    pub cert_pem: Option<String>,
    /// … and its private key (PKCS#8), kept 0600 in the secrets store.
    #[serde(skip_serializing)]
    pub key_pem: Option<String>,
}

// By hand, so the private key never reaches a log line.
impl std::fmt::Debug for CertChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertChange")
            .field("self_signed", &self.self_signed)
            .field("revoke_old", &self.revoke_old)
            .field("cert_pem", &self.cert_pem.as_ref().map(|_| "…"))
            .field("key_pem", &self.key_pem.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Actions<'_> {
    /// Sets `site`'s HTTPS mode (and HSTS), then queues the certificate task (ACME from `acme`, or
    /// self-signed), or for `off` the verify that drops the HTTPS server from its vhost.
    pub async fn set_https(
        &self,
        site: &Site,
        req: &HttpsChange,
        acme: Option<&CertRequest>,
        dry_run: bool,
        created_by: &str,
    ) -> ActionResult<Outcome> {
        let mode: HttpsMode = super::parse_enum("mode", &req.mode)?;
        let mut tls = site.tls.clone();
        if let Some(h) = req.hsts {
            tls.hsts = h;
        }
        let request = if req.self_signed {
            CertRequest::SelfSigned { days: 365 }
        } else {
            acme.cloned().ok_or_else(|| {
                ActionError::invalid("self_signed", "ACME is not configured here: ask for a self-signed certificate")
            })?
        };
        let (kind, args) = if mode == HttpsMode::Off {
            (TaskKind::SiteVerify, serde_json::json!({}))
        } else {
            (TaskKind::SiteCert, serde_json::json!({ "request": request }))
        };
        let desired = DesiredChange::SiteHttps { site: site.id, mode, tls };
        self.submit(Change::with(desired, NewTask::new(kind, site.id.0, args, created_by)), dry_run).await
    }

    /// Queues a new certificate for `site` now. An uploaded one is checked first (it must parse, match
    /// its key and not be expired); its key goes to the secrets store. Returns the names it leaves out.
    pub async fn new_certificate(
        &self,
        site: &Site,
        req: &CertChange,
        acme: Option<&CertRequest>,
        dry_run: bool,
        created_by: &str,
    ) -> ActionResult<(Outcome, Vec<String>)> {
        let mut left_out = Vec::new();
        let mut upload = None;
        let request = match (&req.cert_pem, &req.key_pem) {
            (Some(cert_pem), Some(key_pem)) => {
                let names: Vec<String> = site.all_domains().map(|d| d.to_string()).collect();
                let meta = fjord_exec::tls::check_upload(cert_pem, key_pem, &names, fjord_store::now_millis())
                    .map_err(|e| ActionError::invalid("cert_pem", e.to_string()))?;
                left_out = meta.failed;
                let key_secret = format!("site-{}-tls-upload", site.id);
                upload = Some((key_secret.clone(), key_pem.clone()));
                CertRequest::Uploaded { cert_pem: cert_pem.clone(), key_secret }
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(ActionError::invalid("key_pem", "an uploaded certificate needs both cert_pem and key_pem"))
            }
            (None, None) if req.self_signed => CertRequest::SelfSigned { days: 365 },
            (None, None) => match acme {
                Some(CertRequest::Acme { directory, ca_file, contact, drop_failing_aliases, .. }) => {
                    CertRequest::Acme {
                        directory: directory.clone(),
                        ca_file: ca_file.clone(),
                        contact: contact.clone(),
                        drop_failing_aliases: *drop_failing_aliases,
                        revoke_old: req.revoke_old,
                    }
                }
                _ => return Err(ActionError::invalid("self_signed", "ACME is not configured here")),
            },
        };
        let args = serde_json::json!({ "request": request });
        let task = NewTask::new(TaskKind::SiteCert, site.id.0, args, created_by);
        let Some((key, pem)) = upload.filter(|_| !dry_run) else {
            return Ok((self.submit(Change::task(task), dry_run).await?, left_out));
        };
        // Planned first: a refusal stores no key. The key is stored before the task is queued, so the
        // daemon finds it; a failure to queue puts back what was there.
        let change = Change::task(task);
        self.plan_change(&change).await?;
        let secrets = self.secrets()?;
        let previous = secrets.get(&key).map_err(ActionError::internal)?;
        secrets.put(&key, &fjord_exec::Secret::new(pem)).map_err(ActionError::internal)?;
        match self.store.commit_change(&change).await {
            Ok(mut tasks) => Ok((Outcome::Queued(tasks.remove(0)), left_out)),
            Err(e) => {
                let _ = match previous {
                    Some(p) => secrets.put(&key, &p),
                    None => secrets.delete(&key),
                };
                Err(e.into())
            }
        }
    }
}
