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
        // Aliases and HTTPS stay with the old record: they are set again once the site is back.
        let new = self.site_like(&old, domain, &platform, vec![]);
        let args = restore_args(b);
        let snap = self.new_site_snapshot(&new, platform, None, None).await?;
        let planned = self.plan_new(TaskKind::SiteRestore, &args, &snap)?;
        Ok((new, args, planned))
    }

    /// Records the deleted site again (checked like a create: free domain, the client's quota) and
    /// queues the restore that builds it from the archive, fetched back from offsite if need be.
    pub async fn restore_deleted_site(
        &self,
        b: &Backup,
        domain: Option<&str>,
        platform: Option<&str>,
        offsite: Option<&OffsiteConfig>,
        created_by: &str,
    ) -> ActionResult<(Site, Task)> {
        let (new, args, _) = self.prepare_restore_deleted(b, domain, platform).await?;
        let old = self.store.site(b.site_id).await?;
        self.fetch_backup_if_missing(b, &old.domain, offsite).await?;
        let (site, task) = self.store.create_site_with(&new, created_by, Some((TaskKind::SiteRestore, args))).await?;
        Ok((site, task.expect("a task was asked for")))
    }
}
