//! Restores: fetching an archive back from its offsite copy, and bringing a deleted site back from one
//! of its backups as a new site record (under its old domain or another), built by a restore task.

use super::{field_not_found, restore_args, Actions};
use crate::error::{ActionError, ActionResult};
use fjord_core::*;
use fjord_exec::offsite::{Offsite, OffsiteConfig};
use fjord_store::NewSite;
use std::path::Path;

fn internal(e: impl std::fmt::Display) -> ActionError {
    ActionError::Internal(format!("{e:#}"))
}

impl Actions<'_> {
    /// Before a restore: when the local archive is gone but an offsite copy exists, downloads it back
    /// into place (checked against the recorded checksum). `domain` is the site's the archive was
    /// taken of. Returns whether it fetched.
    pub async fn fetch_backup_if_missing(
        &self,
        b: &Backup,
        domain: &Domain,
        offsite: Option<&OffsiteConfig>,
    ) -> ActionResult<bool> {
        let path = Path::new(&b.path);
        if path.is_file() {
            return Ok(false);
        }
        let Some(loc) = &b.offsite else {
            return Err(ActionError::invalid(
                "backup",
                format!("backup {} is gone: {} does not exist and it has no offsite copy", b.id, b.path),
            ));
        };
        let Some(cfg) = offsite else {
            return Err(ActionError::invalid(
                "backup",
                format!(
                    "backup {}'s archive is only offsite ({loc}): configure [offsite] in fjord.toml to fetch it",
                    b.id
                ),
            ));
        };
        let dir = format!("{}/backups/{domain}", self.layout.state_dir);
        if path.parent() != Some(Path::new(&dir)) {
            return Err(ActionError::invalid(
                "backup",
                format!("backup {} is not under {dir}: not fetching {}", b.id, b.path),
            ));
        }
        fjord_exec::fsops::create_dirs(Path::new(&dir), 0o700).map_err(internal)?;
        Offsite::open(cfg).map_err(internal)?.download(loc, path, &b.checksum).await.map_err(internal)?;
        Ok(true)
    }

    /// Re-reads a backup's archive (fetched back from offsite if only the copy there is left) and
    /// checks it against its recorded checksum, entry by entry: the entries, or what is wrong.
    pub async fn verify_backup(
        &self,
        b: &Backup,
        domain: &Domain,
        offsite: Option<&OffsiteConfig>,
    ) -> ActionResult<Result<Vec<String>, String>> {
        self.fetch_backup_if_missing(b, domain, offsite).await?;
        let (path, sum) = (b.path.clone(), b.checksum.clone());
        let checked = tokio::task::spawn_blocking(move || fjord_exec::backup::verify_archive(Path::new(&path), &sum))
            .await
            .map_err(internal)?;
        Ok(checked.map_err(|e| e.to_string()))
    }

    /// The restore arguments for `backup` of `site` (another site's backup is refused), with the
    /// archive fetched back from offsite when only the copy there is left.
    pub async fn restore_args_fetched(
        &self,
        site: &Site,
        backup: BackupId,
        offsite: Option<&OffsiteConfig>,
        dry_run: bool,
    ) -> ActionResult<serde_json::Value> {
        let args = self.restore_args(site, backup).await?;
        if !dry_run {
            let b = self.store.backup(backup).await?;
            self.fetch_backup_if_missing(&b, &site.domain, offsite).await?;
        }
        Ok(args)
    }

    /// Validates bringing back the deleted site `b` was taken of, as `domain` (default its old one) on
    /// `platform` (default its old one), and plans the restore, writing nothing.
    pub async fn prepare_restore_deleted(
        &self,
        b: &Backup,
        domain: Option<&str>,
        platform: Option<&str>,
    ) -> ActionResult<(NewSite, serde_json::Value, Planned)> {
        let (new, args, planned, _) = self.plan_restore_deleted(b, domain, platform).await?;
        Ok((new, args, planned))
    }

    /// [`Actions::prepare_restore_deleted`], with the site as the backup recorded it, whose settings
    /// the new record takes: its aliases (under its old domain only: another domain is a copy, and
    /// the aliases belong to the original), runtime, client, cron, PHP limits, isolation, HTTPS
    /// settings and health marker.
    async fn plan_restore_deleted(
        &self,
        b: &Backup,
        domain: Option<&str>,
        platform: Option<&str>,
    ) -> ActionResult<(NewSite, serde_json::Value, Planned, Site)> {
        let old = self.store.site(b.site_id).await?;
        if old.status != SiteStatus::Deleted {
            return Err(ActionError::invalid(
                "backup",
                format!("backup {} belongs to {}, which still exists; restore it there", b.id, old.domain),
            ));
        }
        let domain = match domain {
            Some(d) => Domain::parse(d)?,
            None => old.domain.clone(),
        };
        let platform = match platform {
            Some(name) => self.store.platform_by_name(name).await.map_err(|e| field_not_found(e, "platform"))?,
            None => self.store.platform(old.platform_id).await?,
        };
        let recorded = recorded_site(b, &old);
        let aliases = if domain == old.domain { recorded.aliases.clone() } else { vec![] };
        let mut new = self.site_like(&recorded, domain, &platform, aliases);
        new.https = recorded.https;
        let args = restore_args(b);
        let mut snap = self.new_site_snapshot(&new, platform, None, None).await?;
        if let Some(prospective) = snap.site.as_ref().map(|s| s.id) {
            for change in DesiredChange::settings_of(prospective, &recorded) {
                change.apply(&mut snap);
            }
        }
        let planned = self.plan_new(TaskKind::SiteRestore, &args, &snap)?;
        Ok((new, args, planned, recorded))
    }

    /// Records the deleted site again (checked like a create: free domain, the client's quota) with
    /// the settings its backup recorded, and queues the restore that builds it from the archive,
    /// fetched back from offsite if need be.
    pub async fn restore_deleted_site(
        &self,
        b: &Backup,
        domain: Option<&str>,
        platform: Option<&str>,
        offsite: Option<&OffsiteConfig>,
        created_by: &str,
    ) -> ActionResult<(Site, Task)> {
        // Checked before anything is fetched, planned again once the archive (its manifest) is here.
        self.plan_restore_deleted(b, domain, platform).await?;
        let old = self.store.site(b.site_id).await?;
        self.fetch_backup_if_missing(b, &old.domain, offsite).await?;
        let (new, args, _, recorded) = self.plan_restore_deleted(b, domain, platform).await?;
        let (site, task) = self
            .store
            .create_site_with_settings(&new, created_by, Some((TaskKind::SiteRestore, args)), |id| {
                DesiredChange::settings_of(id, &recorded)
            })
            .await?;
        Ok((site, task.expect("a task was asked for")))
    }
}

/// The site as backup `b` recorded it (its archive's manifest), else as its deleted record `old` holds
/// it (an archive only offsite during a dry run, or a manifest that does not parse), without the
/// aliases a deleted record no longer has.
fn recorded_site(b: &Backup, old: &Site) -> Site {
    let manifest = fjord_exec::backup::read_manifest(Path::new(&b.path)).ok();
    manifest.and_then(|m| serde_json::from_value::<Site>(m["site"].clone()).ok()).unwrap_or_else(|| old.clone())
}
