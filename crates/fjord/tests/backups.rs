//! Backups beyond the basics in `sites.rs`: gzip archives, a full or too small backups filesystem
//! (a real tmpfs), schedules with retention run by the daemon, and offsite copies in a real
//! S3-compatible server (moto, started by `scripts/test.sh`, named by `FJORD_TEST_S3_URL`). Needs
//! `FJORD_TEST_SERVICES=1`.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{copy_tree, services_available, Fjord};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_platform(f: &Fjord, platform: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/platforms/drupal10");
    let dest = f.dir.path().join("code").join(platform);
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    copy_tree(&src, &dest);
    f.ok(&["platform", "add", platform, "--path", &dest.to_string_lossy(), "--wait"]);
}

/// A SQLite site on the Drupal 10 fixture; returns its public files directory.
fn site(f: &Fjord, domain: &str) -> PathBuf {
    f.ok(&["site", "create", domain, "--platform", "d10", "--db-engine", "sqlite", "--wait"]);
    f.dir.path().join("code/d10/web/sites").join(domain).join("files")
}

fn backups(f: &Fjord, domain: &str) -> Vec<serde_json::Value> {
    f.json(&["backup", "list", "--site", domain]).as_array().expect("list").clone()
}

/// Files (not directories) under `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(files_in(&e.path()));
            } else {
                out.push(e.path().to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn noise(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    v
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn gzip_archives_restore_and_a_small_disk_refuses_cleanly() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "d10");
    let domain = "gz.example";
    let files = site(&f, domain);

    // gzip: a .tar.gz archive that verifies and restores.
    std::fs::write(files.join("hello.txt"), "v1").expect("write");
    let err = f.fails(&["site", "backup", domain, "--compression", "xz"]);
    assert!(err.contains("--compression"), "{err}");
    f.ok(&["site", "backup", domain, "--compression", "gzip", "--wait"]);
    let b = backups(&f, domain)[0].clone();
    let path = b["path"].as_str().expect("path").to_string();
    assert!(path.ends_with(".tar.gz"), "{path}");
    assert_eq!(&std::fs::read(&path).expect("archive")[..2], &[0x1f, 0x8b], "not gzip");
    let id = b["id"].as_i64().expect("id").to_string();
    assert_eq!(f.json(&["backup", "verify", &id])["ok"], true);
    std::fs::write(files.join("hello.txt"), "v2").expect("write");
    f.ok(&["site", "restore", domain, "--backup", &id, "--wait"]);
    assert_eq!(std::fs::read_to_string(files.join("hello.txt")).expect("read"), "v1");
    assert!(f.get(port, domain, "/").body.contains(&format!("<h1>{domain}</h1>")));
    // The restore's follow-up archives the data it replaced: let it finish before the next part.
    f.wait_until("the pre-restore backup", || backups(&f, domain).iter().any(|b| b["kind"] == "pre-restore"));

    // A small backups filesystem: an 8 MiB tmpfs.
    let backups_dir = f.state.join("backups");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs"])
        .arg(&backups_dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped the disk-space part: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _guard = Unmount(backups_dir.clone());
    let before = backups(&f, domain).len();

    // Files larger than the filesystem: refused before anything is written.
    std::fs::write(files.join("big.bin"), noise(10 << 20)).expect("write");
    let out = f.run(&["site", "backup", domain, "--wait"]);
    assert!(!out.status.success(), "a backup larger than the disk succeeded");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("not enough space"), "{text}");
    assert_eq!(files_in(&backups_dir), Vec::<String>::new(), "a refused backup left files");
    std::fs::remove_file(files.join("big.bin")).expect("rm");

    // A database whose dump fills the disk: the task fails, nothing is left, nothing recorded.
    let db = f.json(&["site", "show", domain])["site"]["db_name"].as_str().expect("db").to_string();
    let db_file = f.state.join("sites").join(domain).join("db").join(format!("{db}.sqlite"));
    let sql = |q: &str| {
        let out = Command::new("sqlite3").arg(&db_file).arg(q).output().expect("sqlite3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    sql("CREATE TABLE fjord_big (b BLOB); INSERT INTO fjord_big VALUES (randomblob(6000000));");
    let out = f.run(&["site", "backup", domain, "--wait"]);
    assert!(!out.status.success(), "a backup whose dump fills the disk succeeded");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("filled up") || text.contains("not enough space"), "{text}");
    assert_eq!(files_in(&backups_dir), Vec::<String>::new(), "a failed backup left files");
    assert_eq!(backups(&f, domain).len(), before, "a failed backup was recorded");
    sql("DROP TABLE fjord_big; VACUUM;");

    // Small enough: it fits.
    f.ok(&["site", "backup", domain, "--wait"]);
    assert_eq!(backups(&f, domain).len(), before + 1);
}

#[test]
fn schedules_fire_and_retention_prunes() {
    if !services_available() {
        return;
    }
    let (mut f, _port) = Fjord::with_server();
    fixture_platform(&f, "d10");
    let domain = "sched.example";
    site(&f, domain);
    f.ok(&["site", "backup", domain, "--wait"]);
    f.ok(&["site", "backup", domain, "--wait"]);
    let manual: Vec<String> = backups(&f, domain).iter().map(|b| b["path"].as_str().expect("p").to_string()).collect();
    assert_eq!(manual.len(), 2);

    // Bad input changes nothing.
    assert!(f.fails(&["backup", "schedule", "set", "--site", domain]).contains("--hourly"));
    f.fails(&["backup", "schedule", "set", "--site", domain, "--platform", "d10", "--daily", "1"]);
    f.fails(&["backup", "schedule", "set", "--site", "nosuch.example", "--daily", "1"]);
    assert_eq!(f.json(&["backup", "schedule", "show"]), serde_json::json!([]));

    // A platform schedule, and the site's own, which wins.
    f.ok(&["backup", "schedule", "set", "--platform", "d10", "--daily", "14", "--weekly", "8"]);
    f.ok(&["backup", "schedule", "set", "--site", domain, "--hourly", "24", "--prune-manual", "--compression", "gzip"]);
    let shown = f.json(&["backup", "schedule", "show", "--site", domain]);
    assert_eq!(shown[0]["retention"]["hourly"], 24, "{shown}");
    assert_eq!(f.json(&["backup", "schedule", "show"]).as_array().expect("all").len(), 2);

    // The daemon takes a scheduled backup at once (none yet), then retention keeps only the newest of
    // this hour: the two manual ones go (--prune-manual), archive, checksum and record.
    f.stop();
    f.start_serve(&[("FJORD_BACKUP_CHECK_SECONDS", "1")]);
    f.wait_until("a scheduled backup, and the manual ones pruned", || {
        let list = backups(&f, domain);
        list.len() == 1 && list[0]["kind"] == "scheduled"
    });
    let kept = backups(&f, domain)[0]["path"].as_str().expect("path").to_string();
    assert!(kept.ends_with(".tar.gz") && Path::new(&kept).is_file(), "{kept}");
    for p in &manual {
        assert!(!Path::new(p).exists(), "{p} not pruned");
        assert!(!Path::new(&format!("{p}.sha256")).exists(), "{p}.sha256 not pruned");
    }
    f.wait_until("pruning logged", || f.serve_log().contains("pruned backup"));
    let tasks = f.json(&["task", "list", "--limit", "100"]);
    assert!(
        tasks
            .as_array()
            .expect("tasks")
            .iter()
            .any(|t| t["kind"] == "site-backup" && t["created_by"] == "daemon:backup"),
        "{tasks}"
    );

    // Cleared: the platform's schedule applies; it never prunes manual backups.
    f.ok(&["backup", "schedule", "clear", "--site", domain]);
    f.fails(&["backup", "schedule", "clear", "--site", domain]);
    f.ok(&["site", "backup", domain, "--wait"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(backups(&f, domain).len(), 2, "a manual backup was pruned without --prune-manual");
}

/// Whether an object is in the bucket (a signed request, as Fjord makes them).
fn stored(cfg: &fjord_exec::offsite::OffsiteConfig, location: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let o = fjord_exec::offsite::Offsite::open(cfg).expect("offsite");
    rt.block_on(o.exists(location)).expect("head")
}

/// moto creates a bucket on an unsigned PUT.
fn s3(method: &str, url: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, url])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn offsite_copies_restore_and_are_pruned() {
    if !services_available() {
        return;
    }
    let Ok(s3_url) = std::env::var("FJORD_TEST_S3_URL") else {
        eprintln!("skipped: set FJORD_TEST_S3_URL (scripts/test.sh does) to test offsite copies");
        return;
    };
    let (mut f, port) = Fjord::with_server();
    let bucket = format!("fjord-it-{}", std::process::id());
    assert_eq!(s3("PUT", &format!("{s3_url}/{bucket}")), 200, "cannot create the bucket");
    let creds = f.dir.path().join("s3-credentials");
    std::fs::write(&creds, "access_key_id = testing\nsecret_access_key = testing\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = f.state.join("fjord.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[offsite]\nendpoint = \"{s3_url}\"\nbucket = \"{bucket}\"\nprefix = \"it\"\ncredentials_file = \"{}\"\n",
        creds.display()
    ));
    std::fs::write(&config, text).expect("write config");
    let cfg = fjord_exec::offsite::OffsiteConfig {
        endpoint: Some(s3_url.clone()),
        bucket: bucket.clone(),
        region: "us-east-1".into(),
        prefix: "it".into(),
        access_key_id: "testing".into(),
        secret_access_key: fjord_exec::Secret::new("testing"),
    };
    f.stop();
    f.start_serve(&[("FJORD_BACKUP_CHECK_SECONDS", "1")]);
    fixture_platform(&f, "d10");
    let domain = "off.example";
    let files = site(&f, domain);
    std::fs::write(files.join("hello.txt"), "v1").expect("write");

    f.ok(&["site", "backup", domain, "--wait"]);
    f.wait_until("the offsite copy", || backups(&f, domain)[0]["offsite"].is_string());
    let b = backups(&f, domain)[0].clone();
    let loc = b["offsite"].as_str().expect("offsite").to_string();
    let key = loc.strip_prefix(&format!("s3://{bucket}/")).expect("in the bucket").to_string();
    assert!(key.starts_with(&format!("it/{domain}/")), "{key}");
    assert!(stored(&cfg, &loc) && stored(&cfg, &format!("{loc}.sha256")), "{loc} not stored");

    // The local archive is lost: restore fetches the offsite copy, checks it, and restores.
    let path = b["path"].as_str().expect("path").to_string();
    std::fs::remove_file(&path).expect("rm");
    std::fs::remove_file(format!("{path}.sha256")).expect("rm");
    std::fs::write(files.join("hello.txt"), "v2").expect("write");
    let id = b["id"].as_i64().expect("id").to_string();
    f.ok(&["site", "restore", domain, "--backup", &id, "--wait"]);
    assert_eq!(std::fs::read_to_string(files.join("hello.txt")).expect("read"), "v1");
    assert!(f.get(port, domain, "/").body.contains(&format!("<h1>{domain}</h1>")));
    // The restore's follow-up archives the data it replaced: let it finish before the next part.
    f.wait_until("the pre-restore backup", || backups(&f, domain).iter().any(|b| b["kind"] == "pre-restore"));

    // Retention reaches the offsite copies: keep only the newest backup of this hour.
    f.ok(&["backup", "schedule", "set", "--site", domain, "--hourly", "1", "--prune-manual"]);
    f.wait_until("pruned locally and offsite", || backups(&f, domain).len() == 1 && !stored(&cfg, &loc));
    assert!(!stored(&cfg, &format!("{loc}.sha256")), "{loc}.sha256 not pruned");
    // The kept one is offsite too, and `backup delete` removes both copies.
    f.wait_until("the newest copied offsite", || backups(&f, domain)[0]["offsite"].is_string());
    let last = backups(&f, domain)[0].clone();
    let last_loc = last["offsite"].as_str().expect("offsite").to_string();
    assert!(stored(&cfg, &last_loc));
    f.ok(&["backup", "schedule", "clear", "--site", domain]);
    f.ok(&["backup", "delete", &last["id"].as_i64().expect("id").to_string()]);
    assert!(!stored(&cfg, &last_loc), "backup delete left the offsite copy");
}

/// The secrets of a deleted site (its database password, its app's salts) stay while a backup could
/// bring it back, and go with its last backup.
#[test]
fn a_deleted_sites_secrets_go_with_its_last_backup() {
    if !services_available() {
        return;
    }
    let (mut f, _port) = Fjord::with_server();
    fixture_platform(&f, "d10");
    let domain = "secrets.example";
    site(&f, domain);
    let id = f.json(&["site", "show", domain])["site"]["id"].as_i64().expect("site id");
    let dir = f.state.join("secrets");
    let secrets = || -> Vec<String> {
        let prefix = format!("site-{id}-");
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .expect("secrets dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        v.sort();
        v
    };
    assert!(!secrets().is_empty(), "a site on SQLite still has its app's salt");
    f.ok(&["site", "delete", domain, "--force", "--wait"]);
    let left: Vec<serde_json::Value> =
        f.json(&["backup", "list"]).as_array().expect("list").iter().filter(|b| b["site_id"] == id).cloned().collect();
    assert_eq!(left.len(), 1, "the pre-delete backup: {left:?}");
    f.stop();
    f.start_serve(&[("FJORD_BACKUP_CHECK_SECONDS", "1")]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!secrets().is_empty(), "secrets went while a backup could still bring the site back");
    f.ok(&["backup", "delete", &left[0]["id"].to_string()]);
    f.wait_until("the deleted site's secrets removed", || secrets().is_empty());
}
