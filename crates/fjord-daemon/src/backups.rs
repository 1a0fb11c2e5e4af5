//! The daemon's backup pass, run every `backup_check`: queues the scheduled backups that are due (as
//! ordinary `site-backup` tasks of kind `scheduled`), copies new archives offsite, and prunes what each
//! site's retention no longer keeps (archive, checksum, offsite copy, then the record), logging every
//! backup it prunes, and removes the secrets of deleted sites once their last backup is gone. Pruning
//! waits while a site has a task queued or running, so it never removes an
//! archive a restore is reading.

use crate::runner::Context;
use fjord_core::backups::{prune_selection, BackupAge};
use fjord_core::*;
use fjord_exec::offsite::Offsite;
use std::path::Path;

/// One pass; errors are logged, never fatal.
pub async fn pass(ctx: &Context) {
    let now = fjord_store::now_millis();
    match ctx.store.queue_due_backups(now).await {
        Ok(q) if !q.is_empty() => tracing::info!(count = q.len(), "queued scheduled backups"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "backup scheduling failed"),
    }
    let offsite = match ctx.config.offsite.as_ref().map(Offsite::open).transpose() {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "offsite storage unusable");
            None
        }
    };
    if let Some(o) = &offsite {
        upload_new(ctx, o).await;
    }
    prune(ctx, offsite.as_ref(), now).await;
    prune_secrets(ctx).await;
}

/// Removes the secrets (database password, salts) of sites that are deleted and whose last backup is
/// gone: kept until then so a restore brings the site back as it was, never longer.
async fn prune_secrets(ctx: &Context) {
    let secrets = &ctx.executor.secrets;
    let ids: Vec<i64> = match secrets.site_ids() {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => return tracing::warn!(error = %e, "cannot list the secrets"),
    };
    let gone = match ctx.store.sites_gone_for_good(&ids).await {
        Ok(g) => g,
        Err(e) => return tracing::warn!(error = %e, "cannot tell which sites are gone"),
    };
    for site in gone {
        match secrets.delete_site(site) {
            Ok(n) => tracing::info!(site, count = n, "removed the secrets of a deleted site with no backup left"),
            Err(e) => tracing::warn!(site, error = %e, "cannot remove a deleted site's secrets"),
        }
    }
}

/// Copies archives that have no offsite copy yet.
async fn upload_new(ctx: &Context, offsite: &Offsite) {
    let pending = match ctx.store.backups_without_offsite(20).await {
        Ok(b) => b,
        Err(e) => return tracing::warn!(error = %e, "listing backups to copy offsite failed"),
    };
    for b in pending {
        let path = Path::new(&b.path);
        if !path.is_file() || b.checksum.len() != 64 {
            continue;
        }
        let domain = path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        let Some(domain) = domain else { continue };
        match offsite.upload(&domain, path, &b.checksum).await {
            Ok(loc) => {
                if let Err(e) = ctx.store.set_backup_offsite(b.id, &loc).await {
                    tracing::warn!(backup = b.id.0, error = %e, "cannot record the offsite copy");
                } else {
                    tracing::info!(backup = b.id.0, location = %loc, "backup copied offsite");
                }
            }
            Err(e) => tracing::warn!(backup = b.id.0, error = %e, "offsite copy failed; will retry"),
        }
    }
}

/// Applies each scheduled site's retention.
async fn prune(ctx: &Context, offsite: Option<&Offsite>, now: Millis) {
    let sites = match ctx.store.scheduled_sites().await {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "listing backup schedules failed"),
    };
    for s in sites {
        if matches!(ctx.store.site_busy(s.site).await, Ok(true) | Err(_)) {
            continue;
        }
        let Ok(backups) = ctx.store.backups(Some(s.site)).await else { continue };
        let ages: Vec<BackupAge> =
            backups.iter().map(|b| BackupAge { id: b.id, kind: b.kind, created_at: b.created_at }).collect();
        for id in prune_selection(&ages, &s.schedule.retention, now) {
            let Some(b) = backups.iter().find(|b| b.id == id) else { continue };
            match prune_one(ctx, offsite, b).await {
                Ok(()) => tracing::info!(
                    backup = b.id.0,
                    site = s.site.0,
                    kind = %b.kind,
                    path = %b.path,
                    offsite = b.offsite.as_deref().unwrap_or("-"),
                    "pruned backup {} by retention",
                    b.id
                ),
                Err(e) => tracing::warn!(backup = b.id.0, error = %e, "pruning backup failed; will retry"),
            }
        }
    }
}

/// Removes one backup: its local archive and checksum, its offsite copy, then its record (last, so a
/// failure half-way is retried by the next pass).
async fn prune_one(ctx: &Context, offsite: Option<&Offsite>, b: &Backup) -> Result<(), String> {
    let backups_dir = format!("{}/", ctx.config.layout.backups_dir());
    if !b.path.starts_with(&backups_dir) {
        return Err(format!("{} is not under {backups_dir}: left alone", b.path));
    }
    let path = Path::new(&b.path);
    fjord_exec::fsops::remove_all(&fjord_exec::backup::checksum_path(path)).map_err(|e| e.to_string())?;
    fjord_exec::fsops::remove_all(path).map_err(|e| e.to_string())?;
    if let Some(loc) = &b.offsite {
        match offsite {
            Some(o) => o.delete(loc).await.map_err(|e| e.to_string())?,
            None => return Err(format!("its offsite copy {loc} needs the offsite storage configured")),
        }
    }
    ctx.store.delete_backup(b.id).await.map_err(|e| e.to_string())
}
