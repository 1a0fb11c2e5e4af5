//! Backups: list, verify, delete, schedules. Taking one is `fjord site backup` (a task); scheduled
//! ones, offsite copies and retention are the daemon's (`fjord_daemon::backups`).

use super::Ctx;
use crate::cli::{BackupCmd, ScheduleCmd, ScheduleTargetArgs};
use crate::output::{table, when};
use anyhow::{bail, Result};
use fjord_core::*;
use fjord_store::{ScheduleTarget, Store};
use std::path::Path;
use std::process::ExitCode;

/// The time stamp in an archive's name: `YYYYMMDD-HHMMSS-mmm` (UTC).
pub fn stamp(ms: Millis) -> String {
    fjord_core::backups::backup_stamp(ms)
}

/// Before reading an archive: when the local file is gone but an offsite copy exists, downloads it
/// back into place (checked against the recorded checksum).
pub async fn fetch_if_missing(ctx: &Ctx, store: &Store, b: &Backup, domain: &Domain) -> Result<()> {
    let layout = ctx.layout();
    let offsite = ctx.settings.offsite()?;
    if fjord_actions::Actions::new(store, &layout).fetch_backup_if_missing(b, domain, offsite.as_ref()).await? {
        eprintln!("fetched backup {} from {} (checksum verified)", b.id, b.offsite.as_deref().unwrap_or("offsite"));
    }
    Ok(())
}

/// `backup list`, locally or through the API; `sites` names the sites (none: the column is left out).
pub fn print_backups(ctx: &Ctx, backups: &[Backup], sites: &[Site]) {
    ctx.out.emit(&backups, || {
        let rows = backups
            .iter()
            .map(|b| {
                let mut row = vec![
                    b.id.to_string(),
                    b.kind.to_string(),
                    b.size.to_string(),
                    when(Some(b.created_at)),
                    b.path.clone(),
                    b.offsite.clone().unwrap_or_else(|| "-".into()),
                ];
                if !sites.is_empty() {
                    let domain = sites.iter().find(|s| s.id == b.site_id).map(|s| s.domain.to_string());
                    row.insert(1, domain.unwrap_or_default());
                }
                row
            })
            .collect::<Vec<_>>();
        if sites.is_empty() {
            table(&["id", "kind", "bytes", "created", "path", "offsite"], &rows);
        } else {
            table(&["id", "site", "kind", "bytes", "created", "path", "offsite"], &rows);
        }
    });
}

async fn target(store: &Store, t: &ScheduleTargetArgs) -> Result<ScheduleTarget> {
    Ok(match (&t.site, &t.platform) {
        (Some(d), None) => ScheduleTarget::Site(store.site_by_domain(&Domain::parse(d)?).await?.id),
        (None, Some(p)) => ScheduleTarget::Platform(store.platform_by_name(p).await?.id),
        _ => bail!("give exactly one of --site and --platform"),
    })
}

async fn schedule(ctx: &mut Ctx, store: &Store, cmd: ScheduleCmd) -> Result<ExitCode> {
    match cmd {
        ScheduleCmd::Set { target: t, hourly, daily, weekly, prune_manual, compression } => {
            let compression: Compression =
                compression.parse().map_err(|e| anyhow::anyhow!("invalid --compression: {e}"))?;
            let retention = Retention { hourly, daily, weekly, prune_manual };
            if !retention.keeps_any() {
                bail!("a schedule needs --hourly, --daily or --weekly (how many of each to keep)");
            }
            if [hourly, daily, weekly].iter().any(|n| *n > 10_000) {
                bail!("--hourly, --daily and --weekly take at most 10000");
            }
            let target = target(store, &t).await?;
            if ctx.global.dry_run {
                println!("dry run: would set the backup schedule {retention:?} ({compression})");
                return Ok(ExitCode::SUCCESS);
            }
            let s = store.set_backup_schedule(target, retention, compression).await?;
            ctx.out.emit(&s, || {
                println!(
                    "backup schedule set: every {}, keeping {hourly} hourly, {daily} daily, {weekly} weekly{}",
                    match retention.interval() {
                        Some(3_600_000) => "hour",
                        Some(86_400_000) => "day",
                        _ => "week",
                    },
                    if prune_manual { " (manual backups pruned too)" } else { "" }
                )
            });
        }
        ScheduleCmd::Show { site, platform } => {
            let mut all = store.backup_schedules().await?;
            if let Some(d) = site {
                let site = store.site_by_domain(&Domain::parse(&d)?).await?;
                // The site's own schedule, else its platform's.
                let own: Vec<_> = all.iter().filter(|s| s.site_id == Some(site.id)).cloned().collect();
                all = if own.is_empty() {
                    all.into_iter().filter(|s| s.platform_id == Some(site.platform_id)).collect()
                } else {
                    own
                };
            } else if let Some(p) = platform {
                let p = store.platform_by_name(&p).await?;
                all.retain(|s| s.platform_id == Some(p.id));
            }
            let sites = store.sites(None).await?;
            let platforms = store.platforms().await?;
            ctx.out.emit(&all, || {
                let rows = all
                    .iter()
                    .map(|s| {
                        let of = match (s.site_id, s.platform_id) {
                            (Some(id), _) => format!(
                                "site {}",
                                sites.iter().find(|x| x.id == id).map(|x| x.domain.to_string()).unwrap_or_default()
                            ),
                            (_, Some(id)) => format!(
                                "platform {}",
                                platforms.iter().find(|x| x.id == id).map(|x| x.name.to_string()).unwrap_or_default()
                            ),
                            _ => "-".into(),
                        };
                        let r = s.retention;
                        vec![
                            of,
                            r.hourly.to_string(),
                            r.daily.to_string(),
                            r.weekly.to_string(),
                            r.prune_manual.to_string(),
                            s.compression.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["for", "hourly", "daily", "weekly", "prune manual", "compression"], &rows);
            });
        }
        ScheduleCmd::Clear { target: t } => {
            let target = target(store, &t).await?;
            if ctx.global.dry_run {
                println!("dry run: would remove the backup schedule");
                return Ok(ExitCode::SUCCESS);
            }
            let cleared = store.clear_backup_schedule(target).await?;
            if !cleared {
                bail!("no backup schedule to clear");
            }
            ctx.out.emit(&serde_json::json!({ "cleared": true }), || println!("backup schedule removed"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(ctx: &mut Ctx, cmd: BackupCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        BackupCmd::List { site } => {
            let site = match site {
                Some(d) => Some(store.site_by_domain(&Domain::parse(&d)?).await?.id),
                None => None,
            };
            let backups = store.backups(site).await?;
            // Deleted sites too: their backups are how they come back, so their domain is shown.
            let mut sites = store.sites(None).await?;
            for b in &backups {
                if !sites.iter().any(|s| s.id == b.site_id) {
                    sites.push(store.site(b.site_id).await?);
                }
            }
            print_backups(ctx, &backups, &sites);
        }
        BackupCmd::Verify { id } => {
            let b = store.backup(BackupId(id)).await?;
            let site = store.site(b.site_id).await?;
            fetch_if_missing(ctx, &store, &b, &site.domain).await?;
            let path = b.path.clone();
            let entries =
                tokio::task::spawn_blocking(move || fjord_exec::backup::verify_archive(Path::new(&path), &b.checksum))
                    .await??;
            let v = serde_json::json!({ "id": id, "ok": true, "entries": entries });
            ctx.out.emit(&v, || println!("backup {id} is intact: checksum matches, {} entries read", entries.len()));
        }
        BackupCmd::Schedule(cmd) => return schedule(ctx, &store, cmd).await,
        BackupCmd::Delete { id } => {
            let b = store.backup(BackupId(id)).await?;
            if ctx.global.dry_run {
                println!("dry run: would remove {} and its record", b.path);
                return Ok(ExitCode::SUCCESS);
            }
            let offsite = ctx.settings.offsite()?;
            let layout = ctx.layout();
            fjord_actions::Actions::new(&store, &layout).delete_backup(b.id, offsite.as_ref()).await?;
            ctx.out.emit(&serde_json::json!({ "deleted": id }), || println!("backup {id} deleted"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
