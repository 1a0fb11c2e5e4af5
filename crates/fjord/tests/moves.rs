//! Moving sites' content with real services: clone, rename, sync, migrate between platforms (with
//! database updates, failing updates, schema downgrades, kill -9), and platform-wide migrates. Needs
//! `FJORD_TEST_SERVICES=1` (`scripts/test.sh`).
#![allow(clippy::disallowed_methods)]

mod common;

use common::{fixture, fixture_platform, mariadb_databases, services_available, sql_as_admin, Fjord, Load};
use std::path::PathBuf;

fn engines(f: &Fjord) -> Vec<&'static str> {
    ["sqlite", "mariadb", "postgres"].into_iter().filter(|e| f.has_engine(e)).collect()
}

/// Sets a fixture site's name (shown as its front page's `<h1>`) straight in its database.
fn set_name(f: &Fjord, engine: &str, domain: &str, name: &str) {
    let sql = format!("UPDATE variable SET value = 's:{}:\"{name}\";' WHERE name = 'site_name'", name.len());
    sql_as_admin(f, engine, domain, &sql);
}

#[track_caller]
fn h1(f: &Fjord, port: u16, domain: &str) -> String {
    let a = f.get(port, domain, "/");
    a.body.split("<h1>").nth(1).and_then(|r| r.split("</h1>").next()).map(str::to_string).unwrap_or_else(|| {
        let log =
            std::fs::read_to_string(f.state.join(format!("sites/{domain}/log/php-error.log"))).unwrap_or_default();
        let again = f.get(port, domain, "/");
        let tasks = f.ok(&["task", "list", "--limit", "8"]);
        panic!(
            "{domain}: no <h1> in {} {}\nPHP error log:\n{log}\nagain: {} {}\ntasks:\n{tasks}",
            a.status,
            a.body.chars().take(300).collect::<String>(),
            again.status,
            again.body.chars().take(200).collect::<String>()
        )
    })
}

fn site_files_dir(f: &Fjord, platform: &str, docroot: &str, domain: &str) -> PathBuf {
    f.dir.path().join("code").join(platform).join(docroot).join("sites").join(domain).join("files")
}

#[test]
fn a_clone_serves_the_same_content_under_its_own_domain_and_database() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    fixture_platform(&f, "drupal7", "d7");
    for (platform, docroot) in [("d10", "web"), ("d7", "")] {
        for engine in engines(&f) {
            let src = format!("src-{platform}-{engine}.example");
            let copy = format!("copy-{platform}-{engine}.example");
            f.ok(&["site", "create", &src, "--platform", platform, "--db-engine", engine, "--wait"]);
            set_name(&f, engine, &src, "Original");
            std::fs::write(site_files_dir(&f, platform, docroot, &src).join("a.txt"), "file content").expect("write");

            let out = f.ok(&["site", "clone", &src, &copy, "--wait"]);
            assert!(out.contains("succeeded"), "{copy}: {out}");
            assert_eq!(h1(&f, port, &copy), "Original", "{copy}: not the source's content");
            let copied = site_files_dir(&f, platform, docroot, &copy).join("a.txt");
            assert_eq!(std::fs::read_to_string(&copied).expect("copied file"), "file content", "{copy}");

            // Its own database: changing the clone leaves the source alone.
            let shown = f.json(&["site", "show", &copy])["site"].clone();
            assert_ne!(shown["db_name"], f.json(&["site", "show", &src])["site"]["db_name"], "{copy}: shared database");
            set_name(&f, engine, &copy, "Changed");
            assert_eq!(h1(&f, port, &copy), "Changed");
            assert_eq!(h1(&f, port, &src), "Original", "{src}: changed through its clone");
        }
    }
    // Bad input changes nothing: a taken domain, an unknown source.
    let before = f.json(&["site", "list"]).as_array().expect("list").len();
    let err = f.fails(&["site", "clone", "src-d10-sqlite.example", "copy-d10-sqlite.example"]);
    assert!(err.contains("already"), "{err}");
    let err = f.fails(&["site", "clone", "nope.example", "other.example"]);
    assert!(err.contains("nope.example"), "{err}");
    assert_eq!(f.json(&["site", "list"]).as_array().expect("list").len(), before);
}

#[test]
fn a_rename_moves_the_site_and_keeps_the_old_domain_as_an_alias() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    for engine in engines(&f) {
        let old = format!("old-{engine}.example");
        let new = format!("new-{engine}.example");
        f.ok(&["site", "create", &old, "--platform", "d10", "--db-engine", engine, "--wait"]);
        set_name(&f, engine, &old, "Renamed");
        std::fs::write(site_files_dir(&f, "d10", "web", &old).join("keep.txt"), "kept").expect("write");
        let out = f.ok(&["site", "rename", &old, &new, "--wait"]);
        assert!(out.contains("succeeded"), "{engine}: {out}");
        assert!(out.contains("maintenance: "), "{engine}: the maintenance window is not logged: {out}");
        let site = f.json(&["site", "show", &new])["site"].clone();
        assert_eq!(site["domain"], new.as_str());
        assert_eq!(site["aliases"], serde_json::json!([old.as_str()]), "{engine}");
        assert_eq!(h1(&f, port, &new), "Renamed", "{engine}");
        assert_eq!(h1(&f, port, &old), "Renamed", "{engine}: the old domain stopped working");
        assert_eq!(
            std::fs::read_to_string(site_files_dir(&f, "d10", "web", &new).join("keep.txt")).expect("moved file"),
            "kept"
        );
        assert!(!site_files_dir(&f, "d10", "web", &old).exists(), "{engine}: old site dir left");
        assert!(!f.state.join("sites").join(&old).exists(), "{engine}: old state dir left");
    }
}

#[test]
fn a_sync_copies_database_and_files_after_a_backup_of_the_target() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    for engine in engines(&f) {
        let live = format!("live-{engine}.example");
        let staging = format!("staging-{engine}.example");
        for d in [&live, &staging] {
            f.ok(&["site", "create", d, "--platform", "d10", "--db-engine", engine, "--wait"]);
        }
        set_name(&f, engine, &live, "Live content");
        std::fs::write(site_files_dir(&f, "d10", "web", &live).join("live.txt"), "live").expect("write");
        std::fs::write(site_files_dir(&f, "d10", "web", &staging).join("old.txt"), "old").expect("write");

        // Files only: the database stays.
        f.ok(&["site", "sync", &live, &staging, "--files", "--wait"]);
        assert_eq!(h1(&f, port, &staging), staging.as_str(), "{engine}: --files copied the database");
        assert!(site_files_dir(&f, "d10", "web", &staging).join("live.txt").exists(), "{engine}");
        assert!(!site_files_dir(&f, "d10", "web", &staging).join("old.txt").exists(), "{engine}");

        f.ok(&["site", "sync", &live, &staging, "--db", "--wait"]);
        assert_eq!(h1(&f, port, &staging), "Live content", "{engine}");
        assert_eq!(h1(&f, port, &live), "Live content", "{engine}: the source changed");
        let kinds: Vec<String> = f
            .json(&["backup", "list", "--site", &staging])
            .as_array()
            .expect("list")
            .iter()
            .map(|b| b["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(kinds, ["pre-sync", "pre-sync"], "{engine}");
        f.fails(&["site", "sync", &live, &staging]);
        f.fails(&["site", "sync", &live, &live, "--db"]);
    }
}

/// A copy of a fixture platform with a test module `fjordtest` whose `.install` declares `updates`
/// (function bodies keyed by number), added to Fjord and verified.
fn platform_with_module(f: &Fjord, fixture_name: &str, name: &str, updates: &[(u32, &str)]) {
    let dest = f.dir.path().join("code").join(name);
    std::fs::create_dir_all(f.dir.path().join("code")).expect("mkdir");
    common::copy_tree(&fixture(fixture_name), &dest);
    let d7 = fixture_name == "drupal7";
    let module = if d7 { dest.join("sites/all/modules/fjordtest") } else { dest.join("web/modules/custom/fjordtest") };
    std::fs::create_dir_all(&module).expect("mkdir");
    if d7 {
        std::fs::write(module.join("fjordtest.info"), "name = Fjord test\ncore = 7.x\n").expect("write");
        // Drupal 7 finds a module by its .module file.
        std::fs::write(module.join("fjordtest.module"), "<?php\n").expect("write");
    } else {
        std::fs::write(
            module.join("fjordtest.info.yml"),
            "name: Fjord test\ntype: module\ncore_version_requirement: ^10\n",
        )
        .expect("write");
    }
    let mut install = String::from("<?php\n");
    for (n, body) in updates {
        install.push_str(&format!("function fjordtest_update_{n}(&$sandbox) {{\n  {body}\n}}\n"));
    }
    std::fs::write(module.join("fjordtest.install"), install).expect("write");
    f.ok(&["platform", "add", name, "--path", &dest.to_string_lossy(), "--wait"]);
}

/// The update body that renames the site, in each fixture's API.
fn rename_update(d7: bool, to: &str) -> String {
    if d7 {
        format!("variable_set('site_name', '{to}');")
    } else {
        format!("fixture_site()->set('site_name', '{to}');")
    }
}

#[test]
fn a_migrate_runs_the_new_codes_updates_and_a_failing_one_rolls_back() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    for fx in ["drupal10", "drupal7"] {
        let d7 = fx == "drupal7";
        let (a, b, bad) = (format!("{fx}-a"), format!("{fx}-b"), format!("{fx}-bad"));
        platform_with_module(&f, fx, &a, &[]);
        let updated = rename_update(d7, "Updated by 8001");
        platform_with_module(&f, fx, &b, &[(8001, &updated)]);
        platform_with_module(&f, fx, &bad, &[(8001, "throw new Exception('fjordtest update failed on purpose');")]);
        let docroot = if d7 { "" } else { "web" };
        for engine in engines(&f) {
            let domain = format!("mig-{fx}-{engine}.example");
            f.ok(&["site", "create", &domain, "--platform", &a, "--db-engine", engine, "--wait"]);
            set_name(&f, engine, &domain, "Before");
            std::fs::write(site_files_dir(&f, &a, docroot, &domain).join("f.txt"), "moves").expect("write");
            let db_before = f.json(&["site", "show", &domain])["site"]["db_name"].clone();

            // The failing update: rolled back, the site is as it was, on its old platform, served.
            let out = f.run(&["site", "migrate", &domain, "--to", &bad, "--wait"]);
            assert!(!out.status.success(), "{domain}: a failing update hook migrated");
            let site = f.json(&["site", "show", &domain]);
            assert_eq!(site["platform"], a.as_str(), "{domain}");
            assert_eq!(site["site"]["db_name"], db_before, "{domain}");
            assert_eq!(h1(&f, port, &domain), "Before", "{domain}: not served as before after the rollback");
            assert!(!site_files_dir(&f, &bad, docroot, &domain).exists(), "{domain}: copy left on the bad platform");

            // The good update runs; the content and files arrive; the old database and dir go.
            let out = f.ok(&["site", "migrate", &domain, "--to", &b, "--wait"]);
            assert!(out.contains("maintenance: "), "{domain}: {out}");
            assert_eq!(h1(&f, port, &domain), "Updated by 8001", "{domain}: the update did not run");
            assert_eq!(f.json(&["site", "show", &domain])["platform"], b.as_str());
            let moved = site_files_dir(&f, &b, docroot, &domain).join("f.txt");
            assert_eq!(std::fs::read_to_string(moved).expect("moved"), "moves", "{domain}");
            assert!(!site_files_dir(&f, &a, docroot, &domain).exists(), "{domain}: old site dir left");
            let kinds = f.json(&["backup", "list", "--site", &domain]);
            assert!(kinds.to_string().contains("pre-migrate"), "{domain}: no pre-migrate backup: {kinds}");

            // Back to the older code: refused before anything happens (the schema would go backwards).
            let out = f.run(&["site", "migrate", &domain, "--to", &a, "--wait"]);
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(!out.status.success() && text.contains("newer than the target code"), "{domain}: {text}");
            assert_eq!(f.json(&["site", "show", &domain])["platform"], b.as_str());
            assert_eq!(h1(&f, port, &domain), "Updated by 8001", "{domain}");
        }
    }
}

/// Migrates `domain` to `to` while a visitor requests it; returns `task show` of the migrate (ended)
/// and what the visitor saw.
fn migrate_under_load(f: &Fjord, port: u16, domain: &str, to: &str) -> (serde_json::Value, common::LoadReport) {
    let load = Load::start(port, domain);
    let id = f.json(&["site", "migrate", domain, "--to", to])["id"].as_i64().expect("id");
    f.wait_until(&format!("the migrate of {domain} to end"), || {
        matches!(f.task(id)["status"].as_str(), Some("succeeded" | "failed" | "cancelled"))
    });
    // A few more requests on the code it ended on.
    std::thread::sleep(std::time::Duration::from_millis(200));
    (f.json(&["task", "show", &id.to_string()]), load.stop())
}

/// The index (as `FJORD_FAULT` counts) of the first step of `domain`'s migrate to `to` whose
/// description contains `needle`, from its dry run.
fn step_of(f: &Fjord, domain: &str, to: &str, needle: &str) -> usize {
    let plan = f.ok(&["--dry-run", "site", "migrate", domain, "--to", to]);
    let steps: Vec<&str> = plan.lines().filter(|l| l.starts_with('[')).collect();
    steps.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no step {needle:?} in:\n{plan}"))
}

#[test]
fn a_migrate_without_pending_updates_is_served_throughout_and_one_with_updates_keeps_its_window() {
    if !services_available() {
        return;
    }
    let (mut f, port) = Fjord::with_server();
    for fx in ["drupal10", "drupal7"] {
        let d7 = fx == "drupal7";
        let docroot = if d7 { "" } else { "web" };
        let (a, b, c) = (format!("{fx}-la"), format!("{fx}-lb"), format!("{fx}-lc"));
        platform_with_module(&f, fx, &a, &[]);
        platform_with_module(&f, fx, &b, &[]);
        platform_with_module(&f, fx, &c, &[(8001, &rename_update(d7, "Updated by 8001"))]);
        let engines = engines(&f);
        for engine in &engines {
            let domain = format!("live-{fx}-{engine}.example");
            f.ok(&["site", "create", &domain, "--platform", &a, "--db-engine", engine, "--wait"]);
            set_name(&f, engine, &domain, "Before");
            std::fs::write(site_files_dir(&f, &a, docroot, &domain).join("f.txt"), "moves").expect("write");
            let db_before = f.json(&["site", "show", &domain])["site"]["db_name"].clone();

            // No database updates: no maintenance page, not one request lost, the database kept.
            let plan = f.ok(&["--dry-run", "site", "migrate", &domain, "--to", &b]);
            assert!(plan.contains("no-maintenance") && !plan.contains("copy the database"), "{domain}: {plan}");
            let (shown, seen) = migrate_under_load(&f, port, &domain, &b);
            assert_eq!(shown["task"]["status"], "succeeded", "{domain}: {shown}");
            assert!(
                seen.requests > 0 && seen.failed.is_empty(),
                "{domain}: requests failed during the switch: {seen:?}"
            );
            assert_eq!(shown["result"]["downtime_ms"], 0, "{domain}: {shown}");
            let log = f.ok(&["task", "log", &shown["task"]["id"].to_string()]);
            assert!(log.contains("no maintenance window"), "{domain}: {log}");
            let site = f.json(&["site", "show", &domain]);
            assert_eq!(site["platform"], b.as_str(), "{domain}");
            assert_eq!(site["site"]["db_name"], db_before, "{domain}: a live switch keeps its database");
            assert_eq!(h1(&f, port, &domain), "Before", "{domain}");
            let moved = site_files_dir(&f, &b, docroot, &domain).join("f.txt");
            assert_eq!(std::fs::read_to_string(moved).expect("moved"), "moves", "{domain}");
            assert!(!site_files_dir(&f, &a, docroot, &domain).exists(), "{domain}: old site dir left");
        }

        // A failure after the switch (the new code's caches rebuilt): back on the old code, served.
        let domain = format!("live-{fx}-{}.example", engines[0]);
        let step = step_of(&f, &domain, &a, "rebuild caches for the new code");
        f.stop();
        f.start_serve(&[("FJORD_FAULT", &format!("site-migrate:{step}:fail"))]);
        let (shown, seen) = migrate_under_load(&f, port, &domain, &a);
        assert_eq!(shown["task"]["status"], "failed", "{domain}: {shown}");
        eprintln!(
            "{domain}: a live migrate rolled back after its switch: {} requests, failed: {:?}",
            seen.requests, seen.failed
        );
        assert_eq!(f.json(&["site", "show", &domain])["platform"], b.as_str());
        assert_eq!(h1(&f, port, &domain), "Before", "{domain}: not served by the old code after the rollback");
        assert!(!site_files_dir(&f, &a, docroot, &domain).exists(), "{domain}: copy left on the target");

        // With an update: the window stays, and a failure in it rolls back to the old database.
        let step = step_of(&f, &domain, &c, "mark maintenance-end");
        f.stop();
        f.start_serve(&[("FJORD_FAULT", &format!("site-migrate:{step}:fail"))]);
        let db_before = f.json(&["site", "show", &domain])["site"]["db_name"].clone();
        let (shown, _) = migrate_under_load(&f, port, &domain, &c);
        assert_eq!(shown["task"]["status"], "failed", "{domain}: {shown}");
        let site = f.json(&["site", "show", &domain]);
        assert_eq!((&site["platform"], &site["site"]["db_name"]), (&b.as_str().into(), &db_before), "{domain}");
        assert_eq!(h1(&f, port, &domain), "Before", "{domain}: the rollback did not bring back the old database");
        f.stop();
        f.start_serve(&[]);
        let (shown, seen) = migrate_under_load(&f, port, &domain, &c);
        assert_eq!(shown["task"]["status"], "succeeded", "{domain}: {shown}");
        assert!(shown["result"]["downtime_ms"].as_u64().is_some_and(|ms| ms > 0), "{domain}: {shown}");
        eprintln!("{domain}: migrate with an update: {} requests, failed: {:?}", seen.requests, seen.failed);
        assert!(seen.failed.iter().all(|(_, status)| *status == 503), "{domain}: not the maintenance page: {seen:?}");
        assert_eq!(h1(&f, port, &domain), "Updated by 8001", "{domain}: the update did not run");
        assert_ne!(f.json(&["site", "show", &domain])["site"]["db_name"], db_before, "{domain}");
    }
}

#[test]
fn kill_9_during_a_migrate_leaves_the_site_served_and_consistent() {
    if !services_available() {
        return;
    }
    let (mut f, port) = Fjord::with_server();
    platform_with_module(&f, "drupal10", "a", &[]);
    platform_with_module(&f, "drupal10", "b", &[(8001, &rename_update(false, "Updated"))]);
    let engine = if f.has_engine("mariadb") { "mariadb" } else { "sqlite" };
    let domain = "crash.example";
    f.ok(&["site", "create", domain, "--platform", "a", "--db-engine", engine, "--wait"]);
    set_name(&f, engine, domain, "Before");
    let plan = f.ok(&["--dry-run", "site", "migrate", domain, "--to", "b"]);
    let steps: Vec<&str> = plan.lines().filter(|l| l.starts_with('[')).collect();
    let find = |needle: &str| steps.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}"));
    // After maintenance starts, mid-copy, after the update, after the switch.
    let points =
        [find("mark maintenance-start") + 2, find("copy the database"), find("updatedb"), find("mark maintenance-end")];
    for step in points {
        f.stop();
        f.start_serve(&[("FJORD_FAULT", &format!("site-migrate:{step}:crash"))]);
        let t = f.json(&["site", "migrate", domain, "--to", "b"]);
        let _ = f.wait_serve_exit();
        f.start_serve(&[]);
        let end = f.wait_task(t["id"].as_i64().expect("id"), "failed");
        assert!(end["error"].as_str().unwrap_or_default().contains("interrupted"), "step {step}: {end}");
        assert_eq!(f.json(&["site", "show", domain])["platform"], "a", "step {step}");
        assert_eq!(h1(&f, port, domain), "Before", "step {step}: the site is not served as before");
        assert!(!site_files_dir(&f, "b", "web", domain).exists(), "step {step}: copy left on the target");
    }
    // Past the point of no return (the health check passed; the old database is being dropped): the
    // recovered task is finished, not rolled back.
    let after_commit = find("mark commit") + 1;
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &format!("site-migrate:{after_commit}:crash"))]);
    let t = f.json(&["site", "migrate", domain, "--to", "b"]);
    let _ = f.wait_serve_exit();
    f.start_serve(&[]);
    f.wait_task(t["id"].as_i64().expect("id"), "succeeded");
    assert_eq!(f.json(&["site", "show", domain])["platform"], "b");
    assert_eq!(h1(&f, port, domain), "Updated");
    assert!(!site_files_dir(&f, "a", "web", domain).exists(), "the old site dir was not cleaned up");
}

#[test]
fn a_platform_migrate_moves_every_site_and_reports_the_ones_rolled_back() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    platform_with_module(&f, "drupal10", "old", &[]);
    platform_with_module(&f, "drupal10", "new", &[(8001, &rename_update(false, "Patched"))]);
    let domains: Vec<String> = (1..=4).map(|i| format!("pm{i}.example")).collect();
    for d in &domains {
        f.ok(&["site", "create", d, "--platform", "old", "--db-engine", "sqlite", "--wait"]);
    }
    // One site that cannot move (the first, so it is the canary): its database is "newer" than the
    // new code.
    let schema = "UPDATE key_value SET value = 'i:9999;' WHERE collection = 'system.schema' AND name = 'fjordtest'";
    sql_as_admin(&f, "sqlite", "pm1.example", schema);

    // A dry run that finds a site it could not move says so in its exit status.
    let out = f.run(&["--json", "--dry-run", "platform", "migrate", "old", "--to", "new"]);
    assert!(!out.status.success());
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    let results: Vec<&str> =
        dry["sites"].as_array().expect("sites").iter().filter_map(|s| s["result"].as_str()).collect();
    assert_eq!(results, ["would-refuse", "would-migrate", "would-migrate", "would-migrate"], "{dry}");
    assert!(dry.to_string().contains("fjordtest"), "the dry run does not show the pending update: {dry}");
    for d in &domains {
        assert_eq!(f.json(&["site", "show", d])["platform"], "old", "{d}: the dry run moved it");
    }

    // The canary fails: the batch stops before the rest.
    let out = f.run(&["--json", "platform", "migrate", "old", "--to", "new", "--canary", "1"]);
    assert!(!out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    let results: Vec<&str> =
        summary["sites"].as_array().expect("sites").iter().filter_map(|s| s["result"].as_str()).collect();
    assert_eq!(results, ["rolled-back", "skipped", "skipped", "skipped"], "{summary}");

    // Without a canary: the others move, two at a time; the failure does not stop them.
    let out = f.run(&["--json", "platform", "migrate", "old", "--to", "new", "--parallel", "2"]);
    assert!(!out.status.success(), "one site was expected to roll back");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!((summary["migrated"].as_i64(), summary["rolled_back"].as_i64()), (Some(3), Some(1)), "{summary}");
    for d in &domains[1..] {
        assert_eq!(h1(&f, port, d), "Patched", "{d}");
        assert_eq!(f.json(&["site", "show", d])["platform"], "new", "{d}");
    }
    assert_eq!(f.json(&["site", "show", "pm1.example"])["platform"], "old");
    assert_eq!(h1(&f, port, "pm1.example"), "pm1.example", "the rolled-back site is not served as before");
}

/// Waits (up to five minutes) until a batch task has ended; returns `task show` of it.
fn wait_batch(f: &Fjord, id: i64) -> serde_json::Value {
    let t0 = std::time::Instant::now();
    loop {
        let shown = f.json(&["task", "show", &id.to_string()]);
        if matches!(shown["task"]["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            return shown;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(300),
            "batch {id} did not end: {shown}\n{}",
            f.serve_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn batch_results(shown: &serde_json::Value) -> Vec<String> {
    let sites = shown["result"]["sites"].as_array().unwrap_or_else(|| panic!("no summary: {shown}"));
    sites.iter().map(|s| s["result"].as_str().expect("result").to_string()).collect()
}

#[test]
fn a_platform_migrate_carries_on_after_kill_9_and_stops_queueing_when_cancelled() {
    if !services_available() {
        return;
    }
    let (mut f, port) = Fjord::with_server();
    platform_with_module(&f, "drupal10", "old", &[]);
    platform_with_module(&f, "drupal10", "new", &[(8001, &rename_update(false, "Patched"))]);
    let domains: Vec<String> = (1..=3).map(|i| format!("pk{i}.example")).collect();
    for d in &domains {
        f.ok(&["site", "create", d, "--platform", "old", "--db-engine", "sqlite", "--wait"]);
    }
    // The daemon dies (as kill -9 would) in the middle of the first site's migrate, the batch running.
    let plan = f.ok(&["--dry-run", "site", "migrate", &domains[0], "--to", "new"]);
    let steps: Vec<&str> = plan.lines().filter(|l| l.starts_with('[')).collect();
    let step = steps.iter().position(|l| l.contains("mark maintenance-start")).expect("maintenance mark") + 2;
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &format!("site-migrate:{step}:crash"))]);
    let batch = f.json(&["platform", "migrate", "old", "--to", "new", "--no-wait"]);
    assert_eq!(batch["kind"], "platform-migrate");
    let id = batch["id"].as_i64().expect("id");
    let _ = f.wait_serve_exit();
    // Restarted: the interrupted site is rolled back by its own task's recovery, the batch carries on.
    f.start_serve(&[]);
    let shown = wait_batch(&f, id);
    assert_eq!(batch_results(&shown), ["rolled-back", "migrated", "migrated"], "{shown}");
    assert_eq!(shown["task"]["status"], "failed", "{shown}");
    assert_eq!(f.json(&["site", "show", &domains[0]])["platform"], "old");
    assert_eq!(h1(&f, port, &domains[0]), domains[0], "the interrupted site is not served as before");
    for d in &domains[1..] {
        assert_eq!(f.json(&["site", "show", d])["platform"], "new", "{d}");
        assert_eq!(h1(&f, port, d), "Patched", "{d}");
    }
    // Each site's migrate names the batch, and only one migrate per site was queued.
    let children: Vec<i64> =
        shown["result"]["sites"].as_array().expect("sites").iter().filter_map(|s| s["task"].as_i64()).collect();
    assert_eq!(children.len(), 3, "{shown}");
    for c in children {
        assert_eq!(f.task(c)["parent"], id, "task {c}");
    }
    let log = f.ok(&["task", "log", &id.to_string()]);
    assert!(log.contains("resuming the batch") && log.contains("downtime"), "{log}");

    // A cancel queues no more sites; the one migrating finishes.
    platform_with_module(&f, "drupal10", "newer", &[(8001, &rename_update(false, "Patched"))]);
    let batch = f.json(&["platform", "migrate", "new", "--to", "newer", "--no-wait"]);
    let id = batch["id"].as_i64().expect("id");
    f.wait_until("the first site migrating", || {
        let shown = f.json(&["task", "show", &id.to_string()]);
        shown["result"]["sites"].as_array().is_some_and(|s| s.iter().any(|s| s["result"] == "running"))
    });
    f.ok(&["task", "cancel", &id.to_string()]);
    let shown = wait_batch(&f, id);
    assert_eq!(shown["task"]["status"], "cancelled", "{shown}");
    assert_eq!(batch_results(&shown), ["migrated", "skipped"], "{shown}");
    assert_eq!(f.json(&["site", "show", &domains[1]])["platform"], "newer");
    assert_eq!(f.json(&["site", "show", &domains[2]])["platform"], "new");
    for d in &domains[1..] {
        assert_eq!(h1(&f, port, d), "Patched", "{d}");
    }
}

/// The WordPress database version a site records.
fn wp_db_version(f: &Fjord, domain: &str) -> String {
    let db = f.json(&["site", "show", domain])["site"]["db_name"].as_str().expect("db").to_string();
    let out = std::process::Command::new("mariadb")
        .arg(format!("--socket={}", std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("socket")))
        .args(["-uroot", "--batch", "--skip-column-names", &db, "-e"])
        .arg("SELECT option_value FROM wp_options WHERE option_name = 'db_version'")
        .output()
        .expect("mariadb");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn wordpress_clones_and_migrates_with_its_database_upgrade() {
    if !services_available() || !std::path::Path::new("/usr/share/wordpress/wp-includes/version.php").exists() {
        eprintln!("skipped: Debian's wordpress package is not installed");
        return;
    }
    let (f, port) = Fjord::with_server();
    if !f.has_engine("mariadb") {
        return;
    }
    // A second copy of the same code, and one whose database upgrade fails.
    let code = f.dir.path().join("code");
    std::fs::create_dir_all(&code).expect("mkdir");
    for name in ["wp2", "wpbad"] {
        let ok = std::process::Command::new("cp")
            .args(["-a", "/usr/share/wordpress"])
            .arg(code.join(name))
            .status()
            .expect("cp");
        assert!(ok.success());
    }
    let upgrade = code.join("wpbad/wp-admin/includes/upgrade.php");
    let text = std::fs::read_to_string(&upgrade).expect("read");
    let broken = text.replacen(
        "$wp_current_db_version = __get_option( 'db_version' );",
        "$wp_current_db_version = __get_option( 'db_version' ); throw new Exception( 'upgrade fails on purpose' );",
        1,
    );
    assert_ne!(text, broken, "the upgrade function changed shape");
    std::fs::write(&upgrade, broken).expect("write");
    f.ok(&["platform", "add", "wp1", "--path", "/usr/share/wordpress", "--wait"]);
    for name in ["wp2", "wpbad"] {
        f.ok(&["platform", "add", name, "--path", &code.join(name).to_string_lossy(), "--wait"]);
    }

    let domain = format!("wpm{}.example", std::process::id());
    f.ok(&["site", "create", &domain, "--platform", "wp1", "--db-engine", "mariadb", "--wait"]);
    let current = wp_db_version(&f, &domain);
    // An older database: the new code has an upgrade to run.
    sql_as_admin(
        &f,
        "mariadb",
        &domain,
        "UPDATE wp_options SET option_value = '53000' WHERE option_name = 'db_version'",
    );

    let out = f.run(&["site", "migrate", &domain, "--to", "wpbad", "--wait"]);
    assert!(!out.status.success(), "a failing upgrade migrated");
    assert_eq!(f.json(&["site", "show", &domain])["platform"], "wp1");
    assert_eq!(wp_db_version(&f, &domain), "53000", "the rollback did not keep the old database");
    let a = f.get(port, &domain, "/");
    assert!(a.status == 200 && a.body.contains(&domain), "not served as before: {a:?}");

    f.ok(&["site", "migrate", &domain, "--to", "wp2", "--wait"]);
    assert_eq!(f.json(&["site", "show", &domain])["platform"], "wp2");
    assert_eq!(wp_db_version(&f, &domain), current, "the database upgrade did not run");
    let a = f.get(port, &domain, "/");
    assert!(a.status == 200 && a.body.contains(&domain), "{a:?}");

    // Back to the same code, no upgrade to run: switched live, served throughout, database kept.
    let db = f.json(&["site", "show", &domain])["site"]["db_name"].clone();
    let (shown, seen) = migrate_under_load(&f, port, &domain, "wp1");
    assert_eq!(shown["task"]["status"], "succeeded", "{shown}");
    assert!(seen.requests > 0 && seen.failed.is_empty(), "requests failed during the switch: {seen:?}");
    assert_eq!(shown["result"]["downtime_ms"], 0, "{shown}");
    assert_eq!(f.json(&["site", "show", &domain])["site"]["db_name"], db);

    // The site's uploads (in its own directory) go with the clone.
    let uploads = f.state.join("sites").join(&domain).join("uploads/2026/11");
    std::fs::create_dir_all(&uploads).expect("mkdir");
    std::fs::write(uploads.join("photo.txt"), "a photo").expect("write");
    let copy = format!("wpc{}.example", std::process::id());
    f.ok(&["site", "clone", &domain, &copy, "--wait"]);
    let a = f.get(port, &copy, "/");
    assert!(a.status == 200 && a.body.contains(&domain), "the clone does not show the source's blog: {a:?}");
    let photo = f.get(port, &copy, "/wp-content/uploads/2026/11/photo.txt");
    assert_eq!((photo.status, photo.body.as_str()), (200, "a photo"), "the clone's uploads: {photo:?}");
    for d in [&copy, &domain] {
        f.ok(&["site", "disable", d, "--wait"]);
        f.ok(&["site", "delete", d, "--wait"]);
    }
}

/// Row counts of `tables` in a site's database, as the test's database admin sees them.
fn row_counts(f: &Fjord, engine: &str, domain: &str, tables: &[&str]) -> Vec<String> {
    let site = f.json(&["site", "show", domain])["site"].clone();
    let db = site["db_name"].as_str().expect("db name").to_string();
    let sql: Vec<String> = tables.iter().map(|t| format!("SELECT COUNT(*) FROM {t};")).collect();
    let sql = sql.join(" ");
    let out = match engine {
        "sqlite" => std::process::Command::new("sqlite3")
            .arg(f.state.join("sites").join(domain).join("db").join(format!("{db}.sqlite")))
            .arg(&sql)
            .output(),
        "mariadb" => std::process::Command::new("mariadb")
            .arg(format!("--socket={}", std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("socket")))
            .args(["-uroot", "--batch", "--skip-column-names", &db, "-e", &sql])
            .output(),
        _ => {
            let url = std::env::var("FJORD_TEST_PG_URL").expect("pg url");
            let base = url.rsplit_once('/').expect("url").0;
            std::process::Command::new("psql")
                .args(["-X", "-q", "-A", "-t", &format!("{base}/{db}"), "-c", &sql])
                .output()
        }
    }
    .expect("sql client");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn a_deleted_site_comes_back_from_its_pre_delete_backup() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    fixture_platform(&f, "drupal7", "d7");
    let wordpress = f.has_engine("mariadb") && std::path::Path::new("/usr/share/wordpress/wp-load.php").exists();
    if wordpress {
        f.ok(&["platform", "add", "wp", "--path", "/usr/share/wordpress", "--wait"]);
    }
    let mut cases: Vec<(&str, &str, &[&str])> = Vec::new();
    for engine in engines(&f) {
        cases.push(("d10", engine, &["variable", "users"]));
        cases.push(("d7", engine, &["variable", "users"]));
    }
    if wordpress {
        cases.push(("wp", "mariadb", &["wp_posts", "wp_options", "wp_users"]));
    }
    for (platform, engine, tables) in cases {
        let domain = format!("back-{platform}-{engine}.example");
        f.ok(&["site", "create", &domain, "--platform", platform, "--db-engine", engine, "--wait"]);
        if platform != "wp" {
            set_name(&f, engine, &domain, "Worth keeping");
        }
        let page = f.get(port, &domain, "/").body;
        let counts = row_counts(&f, engine, &domain, tables);
        f.ok(&["site", "disable", &domain, "--wait"]);
        f.ok(&["site", "delete", &domain, "--wait"]);
        assert!(f.not_served(port, &domain), "{domain}: still served");
        let backups = f.json(&["backup", "list"]);
        let pre_delete = backups
            .as_array()
            .expect("list")
            .iter()
            .find(|b| b["kind"] == "pre-delete" && b["path"].as_str().unwrap_or_default().contains(&domain))
            .unwrap_or_else(|| panic!("{domain}: no pre-delete backup in {backups}"));
        let id = pre_delete["id"].as_i64().expect("id").to_string();
        let out = f.ok(&["site", "restore", &domain, "--backup", &id, "--wait"]);
        assert!(out.contains("succeeded"), "{domain}: {out}");
        let again = f.get(port, &domain, "/").body;
        // The fixtures print the time of the request; compare the content around it.
        let strip =
            |b: &str| b.lines().filter(|l| !l.contains("Served from the database at")).collect::<Vec<_>>().join("\n");
        if platform == "wp" {
            assert!(again.contains(&domain), "{domain}: {again}");
        } else {
            assert_eq!(strip(&again), strip(&page), "{domain}: different content after the restore");
        }
        assert_eq!(row_counts(&f, engine, &domain, tables), counts, "{domain}: row counts differ");
    }
}

/// A deleted site comes back from its backup with everything its manifest records: aliases and their
/// redirect, HTTPS mode and HSTS (a new certificate of the same kind), PHP limits, isolation, client,
/// health marker, cron. `backup list` names the deleted site.
#[test]
fn a_restored_site_has_every_setting_it_was_deleted_with() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    f.ok(&["client", "add", "acme"]);
    let domain = "settings.example";
    f.ok(&[
        "site",
        "create",
        domain,
        "--platform",
        "d10",
        "--db-engine",
        "sqlite",
        "--client",
        "acme",
        "--alias",
        "www.settings.example",
        "--alias",
        "old.settings.example",
        "--redirect-aliases",
        "--cron-interval",
        "900",
        "--wait",
    ]);
    set_name(&f, "sqlite", domain, "Settings kept");
    f.ok(&["site", "https", domain, "--mode", "required", "--hsts", "on", "--self-signed", "--wait"]);
    f.ok(&["site", "php-limits", domain, "--max-children", "7", "--memory-limit", "192M", "--wait"]);
    f.ok(&["site", "isolation", domain, "--mode", "client", "--wait"]);
    f.ok(&["site", "health-marker", domain, "Settings kept"]);
    // What may differ: the record's id and times, its database's name, and the new certificate's dates.
    let settings = |f: &Fjord| {
        let mut v = f.json(&["site", "show", domain])["site"].clone();
        for volatile in ["id", "created_at", "updated_at", "last_cron_at", "db_name", "db_user"] {
            v.as_object_mut().expect("site").remove(volatile);
        }
        for volatile in ["not_after", "issued_at"] {
            v["tls"].as_object_mut().expect("tls").remove(volatile);
        }
        v
    };
    let before = settings(&f);
    assert_eq!(before["tls"]["source"], "self-signed", "{before}");
    f.ok(&["site", "disable", domain, "--wait"]);
    f.ok(&["site", "delete", domain, "--wait"]);
    let list = f.ok(&["backup", "list"]);
    let pre_delete = list.lines().find(|l| l.contains("pre-delete")).unwrap_or_else(|| panic!("{list}"));
    assert!(pre_delete.split_whitespace().nth(1) == Some(domain), "the deleted site is not named: {list}");
    let id = pre_delete.split_whitespace().next().expect("id").to_string();
    f.ok(&["site", "restore", domain, "--backup", &id, "--wait"]);
    // Its new self-signed certificate is a task of its own, queued by the restore's success.
    f.wait_until("the certificate", || settings(&f)["tls"]["names"] == before["tls"]["names"]);
    assert_eq!(settings(&f), before);
    // HTTPS required again: plain HTTP is sent over.
    assert_eq!(f.get(port, domain, "/").status, 301);
}

#[test]
fn the_health_check_decides_a_migrate_marker_text_and_php_fatals() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    platform_with_module(&f, "drupal10", "a", &[]);
    platform_with_module(&f, "drupal10", "b", &[(8001, &rename_update(false, "Rebranded"))]);
    let domain = "health.example";
    f.ok(&["site", "create", domain, "--platform", "a", "--db-engine", "sqlite", "--wait"]);
    set_name(&f, "sqlite", domain, "Keep this title");

    // The update changes the title the marker looks for: the site is not what it should be.
    f.ok(&["site", "health-marker", domain, "Keep this title"]);
    assert_eq!(f.json(&["site", "show", domain])["site"]["health_marker"], "Keep this title");
    let out = f.run(&["site", "migrate", domain, "--to", "b", "--wait"]);
    assert!(!out.status.success(), "a migrate whose result lacks the marker succeeded");
    assert_eq!(f.json(&["site", "show", domain])["platform"], "a");
    assert_eq!(h1(&f, port, domain), "Keep this title");

    // Without the marker, a PHP fatal error in the new code fails the health check just the same.
    f.ok(&["site", "health-marker", domain]);
    let index = f.dir.path().join("code/b/web/index.php");
    let code = std::fs::read_to_string(&index).expect("read");
    std::fs::write(&index, code.replacen("<?php", "<?php\nfjord_no_such_function();", 1)).expect("write");
    let out = f.run(&["site", "migrate", domain, "--to", "b", "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success() && text.contains("PHP"), "a fatal error went unnoticed: {text}");
    assert_eq!(h1(&f, port, domain), "Keep this title");
}

#[test]
fn a_migrate_can_move_the_database_to_another_server() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    let (Ok(sock), Ok(db_port)) =
        (std::env::var("FJORD_TEST_MARIADB_SOCKET"), std::env::var("FJORD_TEST_MARIADB_PORT"))
    else {
        return;
    };
    fixture_platform(&f, "drupal10", "d10");
    // A database-only server (here the same MariaDB under a second name: one instance is what the
    // test environment has).
    f.ok(&[
        "server",
        "add",
        "dbhost",
        "--http",
        "none",
        "--database",
        "mariadb",
        "--mariadb-socket",
        &sock,
        "--mariadb-port",
        &db_port,
        "--wait",
    ]);
    let domain = "dbmove.example";
    f.ok(&["site", "create", domain, "--platform", "d10", "--db-engine", "mariadb", "--wait"]);
    set_name(&f, "mariadb", domain, "Moved database");
    let before = f.json(&["site", "show", domain])["site"].clone();
    let err = f.fails(&["site", "migrate", domain, "--to", "d10", "--db-server", "nope"]);
    assert!(err.contains("nope"), "{err}");
    f.ok(&["site", "migrate", domain, "--to", "d10", "--db-server", "dbhost", "--wait"]);
    let after = f.json(&["site", "show", domain])["site"].clone();
    assert_ne!(after["db_server_id"], before["db_server_id"], "{after}");
    assert_ne!(after["db_name"], before["db_name"]);
    assert_eq!(h1(&f, port, domain), "Moved database");
    // SQLite sites have no database server to move to.
    f.ok(&["site", "create", "lite.example", "--platform", "d10", "--db-engine", "sqlite", "--wait"]);
    let err = f.fails(&["site", "migrate", "lite.example", "--to", "d10", "--db-server", "dbhost"]);
    assert!(err.contains("SQLite"), "{err}");
}

#[test]
fn moves_record_their_state_on_a_postgresql_state_database_too() {
    if !services_available() {
        return;
    }
    let Some((_, Some(url))) = common::backends().into_iter().find(|(name, _)| *name == "postgres") else {
        return;
    };
    let (f, port) = Fjord::with_server_on(Some(url));
    platform_with_module(&f, "drupal10", "a", &[]);
    platform_with_module(&f, "drupal10", "b", &[(8001, &rename_update(false, "On PostgreSQL state"))]);
    f.ok(&["site", "create", "pgstate.example", "--platform", "a", "--db-engine", "sqlite", "--wait"]);
    f.ok(&["site", "migrate", "pgstate.example", "--to", "b", "--domain", "pgstate2.example", "--wait"]);
    let site = f.json(&["site", "show", "pgstate2.example"]);
    assert_eq!(site["platform"], "b");
    assert_eq!(site["site"]["aliases"], serde_json::json!(["pgstate.example"]));
    assert_eq!(h1(&f, port, "pgstate2.example"), "On PostgreSQL state");
    f.ok(&["site", "clone", "pgstate2.example", "pgclone.example", "--wait"]);
    assert_eq!(h1(&f, port, "pgclone.example"), "On PostgreSQL state");
    f.ok(&["site", "disable", "pgclone.example", "--wait"]);
    f.ok(&["site", "delete", "pgclone.example", "--wait"]);
    let backup = f
        .json(&["backup", "list"])
        .as_array()
        .expect("list")
        .iter()
        .find(|b| b["kind"] == "pre-delete")
        .expect("a pre-delete backup")["id"]
        .to_string();
    f.ok(&["site", "restore", "pgclone.example", "--backup", &backup, "--wait"]);
    assert_eq!(h1(&f, port, "pgclone.example"), "On PostgreSQL state");
    // A platform-wide migrate: the batch, its children and its summary in PostgreSQL.
    platform_with_module(&f, "drupal10", "c", &[(8001, &rename_update(false, "On PostgreSQL state"))]);
    let summary = f.json(&["platform", "migrate", "b", "--to", "c", "--parallel", "2"]);
    assert_eq!((summary["migrated"].as_i64(), summary["rolled_back"].as_i64()), (Some(2), Some(0)), "{summary}");
    let batch = summary["task"].as_i64().expect("batch task");
    for s in summary["sites"].as_array().expect("sites") {
        assert_eq!(f.task(s["task"].as_i64().expect("task"))["parent"], batch, "{summary}");
    }
    assert_eq!(f.json(&["site", "show", "pgclone.example"])["platform"], "c");
}

/// The moves on Apache: a clone, a migrate with an update (its maintenance page served by Apache
/// meanwhile), and a restore, each served by Fjord's Apache master and PHP-FPM.
#[test]
fn clone_migrate_and_restore_on_apache() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_web_server("apache");
    platform_with_module(&f, "drupal10", "a", &[]);
    let updated = rename_update(false, "Updated by 8001");
    platform_with_module(&f, "drupal10", "b", &[(8001, &updated)]);
    let engine = if f.has_engine("mariadb") { "mariadb" } else { "sqlite" };
    let domain = "ap-move.example";
    f.ok(&["site", "create", domain, "--platform", "a", "--db-engine", engine, "--wait"]);
    set_name(&f, engine, domain, "Original");
    std::fs::write(site_files_dir(&f, "a", "web", domain).join("a.txt"), "file content").expect("write");

    f.ok(&["site", "clone", domain, "ap-copy.example", "--wait"]);
    assert_eq!(h1(&f, port, "ap-copy.example"), "Original");
    set_name(&f, engine, "ap-copy.example", "Changed");
    assert_eq!(h1(&f, port, domain), "Original", "changed through its clone");

    let out = f.ok(&["site", "migrate", domain, "--to", "b", "--wait"]);
    assert!(out.contains("maintenance: "), "{out}");
    assert_eq!(h1(&f, port, domain), "Updated by 8001");
    let moved = site_files_dir(&f, "b", "web", domain).join("a.txt");
    assert_eq!(std::fs::read_to_string(moved).expect("moved"), "file content");

    f.ok(&["site", "backup", domain, "--wait"]);
    let id = f
        .json(&["backup", "list", "--site", domain])
        .as_array()
        .expect("list")
        .iter()
        .find(|b| b["kind"] == "manual")
        .expect("manual backup")["id"]
        .as_i64()
        .expect("id")
        .to_string();
    set_name(&f, engine, domain, "After the backup");
    assert_eq!(h1(&f, port, domain), "After the backup");
    f.ok(&["site", "restore", domain, "--backup", &id, "--wait"]);
    assert_eq!(h1(&f, port, domain), "Updated by 8001", "not restored");
    let vhost = std::fs::read_to_string(f.vhost_path(domain)).expect("vhost");
    assert!(vhost.contains("<VirtualHost") && vhost.contains("proxy:unix:"), "{vhost}");
}

/// The log of the newest task, leaving out the archiving a restore queues when it ends.
fn last_task_log(f: &Fjord) -> String {
    let tasks = f.json(&["task", "list", "--limit", "2"]);
    let task = tasks.as_array().expect("tasks").iter().find(|t| t["kind"] != "site-archive-replaced").expect("task");
    f.ok(&["task", "log", &task["id"].as_i64().expect("id").to_string()])
}

/// On MariaDB, clone, backup and restore copy the tables' InnoDB files instead of SQL (transportable
/// tablespaces) and give the same rows and pages; a failure injected right after the physical load
/// rolls the restore back; a MyISAM table makes them fall back to SQL, which still works; `--logical`
/// makes a portable SQL archive.
#[test]
fn mariadb_moves_copy_tablespace_files_and_fall_back_to_sql() {
    if !services_available() {
        return;
    }
    let (mut f, port) = Fjord::with_server();
    if !f.has_engine("mariadb") {
        eprintln!("skipped: no MariaDB");
        return;
    }
    fixture_platform(&f, "drupal10", "d10");
    let src = "phys.example";
    f.ok(&["site", "create", src, "--platform", "d10", "--db-engine", "mariadb", "--wait"]);
    set_name(&f, "mariadb", src, "Copied physically");
    // Tables beyond the fixture's: a foreign key between two, and an auto-increment counter.
    sql_as_admin(
        &f,
        "mariadb",
        src,
        "CREATE TABLE fk_parent (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB; \
         CREATE TABLE fk_child (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES fk_parent(id)) ENGINE=InnoDB; \
         INSERT INTO fk_parent (v) VALUES ('a'), ('b'), ('c'); INSERT INTO fk_child VALUES (1, 1), (2, 3);",
    );
    let tables = ["variable", "users", "fk_parent", "fk_child"];
    let counts = row_counts(&f, "mariadb", src, &tables);
    let page = f.get(port, src, "/").body;
    let strip =
        |b: &str| b.lines().filter(|l| !l.contains("Served from the database at")).collect::<Vec<_>>().join("\n");

    // Clone: tablespace files, the same rows, a working auto-increment and foreign key in the copy.
    let copy = "phys-copy.example";
    f.ok(&["site", "clone", src, copy, "--wait"]);
    let log = last_task_log(&f);
    assert!(log.contains("physical database copy") && log.contains("locked for writes"), "{log}");
    assert_eq!(h1(&f, port, copy), "Copied physically");
    assert_eq!(row_counts(&f, "mariadb", copy, &tables), counts, "{copy}: rows differ");
    sql_as_admin(&f, "mariadb", copy, "INSERT INTO fk_parent (v) VALUES ('d'); INSERT INTO fk_child VALUES (3, 4);");
    assert_eq!(row_counts(&f, "mariadb", copy, &["fk_parent"]), vec!["4".to_string()]);
    assert_eq!(row_counts(&f, "mariadb", src, &["fk_parent"]), vec!["3".to_string()], "the source changed");

    // A backup of a database this small is a SQL dump, and says why.
    f.ok(&["site", "backup", src, "--wait"]);
    let log = last_task_log(&f);
    assert!(log.contains("logical database dump: the database holds") && log.contains("below the"), "{log}");

    // --physical: the structure and the tablespace files, with the format in the manifest.
    f.ok(&["site", "backup", src, "--physical", "--wait"]);
    let log = last_task_log(&f);
    assert!(log.contains("physical database copy"), "{log}");
    let list = f.json(&["backup", "list", "--site", src]);
    let manual = list.as_array().expect("list")[0].clone();
    let id = manual["id"].as_i64().expect("id").to_string();
    let entries = f.backup_entries(&id);
    for want in ["manifest.json", "database/schema.sql", "database/variable.ibd", "database/fk_child.cfg"] {
        assert!(entries.iter().any(|e| e == want), "{want} not in {entries:?}");
    }
    assert!(!entries.iter().any(|e| e == "database.sql"), "{entries:?}");

    // A failure right after the physical load: the restore rolls back, the site is as it was.
    let db_before = f.json(&["site", "show", src])["site"]["db_name"].clone();
    let dbs_before = mariadb_databases("phys");
    let plan = f.ok(&["--dry-run", "site", "restore", src, "--backup", &id]);
    let step = plan
        .lines()
        .filter(|l| l.starts_with('['))
        .position(|l| l.contains("load the backup's database"))
        .unwrap_or_else(|| panic!("no load step in {plan}"));
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &format!("site-restore:{step}:fail"))]);
    let out = f.run(&["site", "restore", src, "--backup", &id, "--wait"]);
    assert!(!out.status.success(), "the injected fault did not fail the restore");
    let log = last_task_log(&f);
    assert!(log.contains("physical database load"), "{log}");
    f.stop();
    f.start_serve(&[]);
    assert_eq!(f.json(&["site", "show", src])["site"]["db_name"], db_before);
    assert_eq!(mariadb_databases("phys"), dbs_before, "the failed restore left a database behind");
    assert_eq!(strip(&f.get(port, src, "/").body), strip(&page), "{src}: changed by a failed restore");
    assert_eq!(row_counts(&f, "mariadb", src, &tables), counts);

    // Backup, delete, restore: the pre-delete backup (a dump: the database is small) brings back the
    // same site.
    f.ok(&["site", "disable", src, "--wait"]);
    f.ok(&["site", "delete", src, "--wait"]);
    let backups = f.json(&["backup", "list"]);
    let pre_delete = backups
        .as_array()
        .expect("list")
        .iter()
        .find(|b| b["kind"] == "pre-delete" && b["path"].as_str().unwrap_or_default().contains(src))
        .unwrap_or_else(|| panic!("no pre-delete backup in {backups}"))["id"]
        .as_i64()
        .expect("id")
        .to_string();
    assert!(f.backup_entries(&pre_delete).iter().any(|e| e == "database.sql"));
    f.ok(&["site", "restore", src, "--backup", &pre_delete, "--wait"]);
    assert_eq!(strip(&f.get(port, src, "/").body), strip(&page), "{src}: different content after the restore");
    assert_eq!(row_counts(&f, "mariadb", src, &tables), counts, "{src}: rows differ after the restore");

    // And a restore of the live site (a new record now) from a physical backup: a new database, swapped in.
    f.ok(&["site", "backup", src, "--physical", "--wait"]);
    let id = f.json(&["backup", "list", "--site", src]).as_array().expect("list")[0]["id"].as_i64().expect("id");
    set_name(&f, "mariadb", src, "Changed since");
    f.ok(&["site", "restore", src, "--backup", &id.to_string(), "--wait"]);
    assert!(last_task_log(&f).contains("physical database load"));
    assert_eq!(h1(&f, port, src), "Copied physically");

    // A MyISAM table: everything falls back to SQL, and still works.
    sql_as_admin(
        &f,
        "mariadb",
        src,
        "CREATE TABLE legacy (id INT PRIMARY KEY) ENGINE=MyISAM; INSERT INTO legacy VALUES (7);",
    );
    let copy2 = "phys-copy2.example";
    f.ok(&["site", "clone", src, copy2, "--wait"]);
    let log = last_task_log(&f);
    assert!(log.contains("logical database copy: table legacy uses MyISAM"), "{log}");
    assert_eq!(h1(&f, port, copy2), "Copied physically");
    assert_eq!(row_counts(&f, "mariadb", copy2, &["legacy", "fk_child"]), vec!["1".to_string(), "2".to_string()]);
    f.ok(&["site", "backup", src, "--physical", "--wait"]);
    assert!(last_task_log(&f).contains("logical database dump: table legacy uses MyISAM"));
    let newest = f.json(&["backup", "list", "--site", src]).as_array().expect("list")[0]["id"].as_i64().expect("id");
    assert!(f.backup_entries(&newest.to_string()).iter().any(|e| e == "database.sql"));

    // --logical: a portable SQL archive even where the files could be copied.
    sql_as_admin(&f, "mariadb", copy, "SELECT 1");
    f.ok(&["site", "backup", copy, "--logical", "--wait"]);
    let newest = f.json(&["backup", "list", "--site", copy]).as_array().expect("list")[0]["id"].as_i64().expect("id");
    let entries = f.backup_entries(&newest.to_string());
    assert!(entries.iter().any(|e| e == "database.sql") && !entries.iter().any(|e| e.starts_with("database/")));
}
