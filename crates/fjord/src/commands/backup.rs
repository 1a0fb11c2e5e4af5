//! Backups: list, verify, delete. Taking one is `fjord site backup` (a task).

use super::Ctx;
use crate::cli::BackupCmd;
use crate::output::{table, when};
use anyhow::{bail, Result};
use fjord_core::*;
use std::path::Path;
use std::process::ExitCode;

/// The time stamp in an archive's name: `YYYYMMDD-HHMMSS-mmm` (UTC).
pub fn stamp(ms: Millis) -> String {
    let t = when(Some(ms)); // "YYYY-MM-DD HH:MM:SSZ"
    format!("{}-{:03}", t.replace(['-', ':', 'Z'], "").replace(' ', "-"), ms.rem_euclid(1000))
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
            let sites = store.sites(None).await?;
            ctx.out.emit(&backups, || {
                let rows = backups
                    .iter()
                    .map(|b| {
                        let domain =
                            sites.iter().find(|s| s.id == b.site_id).map(|s| s.domain.to_string()).unwrap_or_default();
                        vec![
                            b.id.to_string(),
                            domain,
                            b.kind.to_string(),
                            b.size.to_string(),
                            when(Some(b.created_at)),
                            b.path.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["id", "site", "kind", "bytes", "created", "path"], &rows);
            });
        }
        BackupCmd::Verify { id } => {
            let b = store.backup(BackupId(id)).await?;
            let path = b.path.clone();
            let entries =
                tokio::task::spawn_blocking(move || fjord_exec::backup::verify_archive(Path::new(&path), &b.checksum))
                    .await??;
            let v = serde_json::json!({ "id": id, "ok": true, "entries": entries });
            ctx.out.emit(&v, || println!("backup {id} is intact: checksum matches, {} entries read", entries.len()));
        }
        BackupCmd::Delete { id } => {
            let b = store.backup(BackupId(id)).await?;
            if ctx.global.dry_run {
                println!("dry run: would remove {} and its record", b.path);
                return Ok(ExitCode::SUCCESS);
            }
            let path = Path::new(&b.path);
            if !b.path.starts_with(&format!("{}/backups/", ctx.settings.state_str())) {
                bail!("backup {id} is not under this state dir's backups/: not removing {}", b.path);
            }
            fjord_exec::fsops::remove_all(path)?;
            fjord_exec::fsops::remove_all(&fjord_exec::backup::checksum_path(path))?;
            store.delete_backup(b.id).await?;
            ctx.out.emit(&serde_json::json!({ "deleted": id }), || println!("backup {id} deleted"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_sort_and_read() {
        assert_eq!(super::stamp(1_795_000_000_123), "20261118-110640-123");
    }
}
