//! End-to-end tests of the `fjord` binary that need no web server or application: dry runs, bad input,
//! the queue through a real `fjord serve` (crash recovery with a real `kill -9`, two daemons on one
//! PostgreSQL). Each scenario runs on SQLite and, when configured, on PostgreSQL. Real sites are in
//! `sites.rs`.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{backends, Fjord};
use serde_json::Value;

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("an id")
}

fn setup(f: &Fjord) {
    f.ok(&["server", "add", "localhost", "--http-port", "8080", "--database", "sqlite"]);
    let code = f.make_codebase("p1");
    f.ok(&["platform", "add", "p1", "--path", &code]);
}

#[test]
fn dry_runs_and_bad_input_change_nothing() {
    let f = Fjord::new(None);
    setup(&f);
    let before = (f.files(), f.state_summary());
    let out = f.ok(&[
        "--dry-run",
        "site",
        "create",
        "a.example",
        "--platform",
        "p1",
        "--db-engine",
        "sqlite",
        "--alias",
        "b.example",
    ]);
    assert!(out.contains("dry run") && out.contains("+    server_name a.example b.example;"), "{out}");
    f.ok(&["--dry-run", "server", "add", "web2", "--http-port", "81"]);
    let p2 = f.make_codebase("p2");
    f.ok(&["--dry-run", "platform", "add", "p2", "--path", &p2]);
    f.ok(&["--dry-run", "client", "add", "acme"]);
    for bad in [
        vec!["site", "create", "../etc/passwd", "--platform", "p1"],
        vec!["site", "create", "a..example", "--platform", "p1"],
        vec!["site", "create", "localhost", "--platform", "p1", "--db-engine", "sqlite"],
        vec!["site", "create", "a.example", "--platform", "p1", "--db-engine", "sqlite", "--alias", "localhost"],
        vec!["site", "create", "a.example", "--platform", "nope"],
        vec!["site", "create", "a.example", "--platform", "p1", "--alias", "bad domain"],
        vec!["site", "create", "a.example", "--platform", "p1", "--alias", "a.example", "--db-engine", "sqlite"],
        vec!["site", "create", "a.example", "--platform", "p1", "--db-engine", "oracle"],
        vec!["site", "create", "a.example", "--platform", "p1", "--db-engine", "mariadb"],
        vec!["site", "create", "a.example", "--platform", "p1", "--https", "maybe"],
        vec!["site", "create", "a.example", "--platform", "p1", "--php", "5.6", "--db-engine", "sqlite"],
        vec!["site", "create", "a.example", "--platform", "p1", "--client", "ghost", "--db-engine", "sqlite"],
        vec!["platform", "add", "Bad Name", "--path", "/srv"],
        vec!["platform", "add", "p2", "--path", "relative/dir"],
        vec!["platform", "add", "p2", "--path", "/srv/../etc"],
        vec!["platform", "add", "p1", "--path", &p2],
        vec!["platform", "add", "p2", "--path", "/srv/nowhere"],
        vec!["platform", "add", "p2", "--path", "/etc/passwd"],
        vec!["platform", "add", "p2", "--git", "--upload-pack=evil", "--ref", "main"],
        vec!["server", "add", "web2", "--http", "iis"],
        vec!["server", "add", "web2", "--php", "8.2"],
        vec!["server", "add", "localhost"],
        vec!["client", "add", "a-name-much-too-long-for-unix"],
        vec!["site", "show", "nope.example"],
        vec!["task", "cancel", "999"],
        vec!["task", "list", "--status", "weird"],
    ] {
        let err = f.fails(&bad);
        assert!(err.starts_with("error"), "{bad:?}: {err}");
    }
    assert_eq!((f.files(), f.state_summary()), before, "a dry run or bad input changed the state");
}

#[test]
fn a_platform_path_or_archive_that_is_not_there_is_refused_and_records_nothing() {
    let f = Fjord::new(None);
    setup(&f);
    let code = f.dir.path().join("code");
    let archive = code.join("p2.tar.gz");
    std::fs::write(&archive, b"an archive").expect("archive");
    let (code, archive) = (code.to_string_lossy().into_owned(), archive.to_string_lossy().into_owned());
    let listed = || (f.json(&["platform", "list"]), f.json(&["task", "list", "--limit", "1000"]));
    let before = listed();
    for (args, says) in [
        (vec!["platform", "add", "p2", "--path", "/etc/passwd"], "/etc/passwd is not a directory"),
        (vec!["platform", "add", "p2", "--path", "/srv/nowhere"], "/srv/nowhere does not exist on this machine"),
        (vec!["--dry-run", "platform", "add", "p2", "--path", "/etc/passwd"], "/etc/passwd is not a directory"),
        (vec!["platform", "add", "p2", "--archive", "/srv/nowhere.tar.gz"], "/srv/nowhere.tar.gz does not exist"),
        (vec!["platform", "add", "p2", "--archive", &code], "is not a file"),
        (vec!["platform", "add", "p2", "--archive", "/dev/null"], "/dev/null is not a file"),
    ] {
        let err = f.fails(&args);
        assert!(err.starts_with("error") && err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(listed(), before, "a refused platform was recorded");
    // What is there is accepted: a directory for --path, a file for --archive.
    f.ok(&["platform", "add", "p2", "--archive", &archive]);
    f.ok(&["platform", "add", "p3", "--path", &code]);
    let names: Vec<Value> =
        f.json(&["platform", "list"]).as_array().expect("list").iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, ["p1", "p2", "p3"]);
}

/// Cancels every queued task (the server's and platforms' verifies: this test machine's web server is
/// not started here), so a daemon runs only what the test queues next.
fn cancel_queued(f: &Fjord) {
    for t in f.json(&["task", "list", "--status", "queued"]).as_array().expect("tasks") {
        f.ok(&["task", "cancel", &id(t).to_string()]);
    }
}

/// A failed, rolled-back site create leaves a record every command finds by its domain: shown with
/// the way to retry or delete it, retried, holding the platform visibly, deletable; the domain is
/// never given to a second record. A platform whose first verify fails is shown failed, takes no
/// sites, is verified again or removed by its name.
#[test]
fn a_failed_create_or_platform_add_is_shown_retried_and_deleted() {
    let mut f = Fjord::new(None);
    setup(&f);
    cancel_queued(&f);
    f.start_serve(&[("FJORD_FAULT", "site-install:1:fail")]);
    let create = ["site", "create", "a.example", "--platform", "p1", "--db-engine", "sqlite"];
    let out = f.run(&[&create[..], &["--wait"]].concat());
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let shown = f.json(&["site", "show", "a.example"]);
    assert_eq!(shown["site"]["status"], "failed", "{shown}");
    let install = id(&shown["recent_tasks"][0]);
    let text = f.ok(&["site", "show", "a.example"]);
    assert!(
        text.contains(&format!("fjord task retry {install}")) && text.contains("fjord site delete a.example"),
        "{text}"
    );
    let one_record = |f: &Fjord| {
        let sites = f.json(&["site", "list"]);
        assert_eq!(sites.as_array().expect("sites").len(), 1, "{sites}");
    };
    // Neither the domain nor an alias of it gets a second record.
    for args in [
        create.to_vec(),
        vec!["site", "create", "b.example", "--platform", "p1", "--db-engine", "sqlite", "--alias", "a.example"],
    ] {
        let err = f.fails(&args);
        assert!(err.contains("a.example") && err.contains("status failed"), "{err}");
    }
    one_record(&f);
    // Retried: the same record (failing again under the injected fault).
    let retried = f.json(&["task", "retry", &install.to_string()]);
    assert_eq!(retried["target_id"], shown["site"]["id"]);
    f.wait_task(id(&retried), "failed");
    one_record(&f);
    // It holds its platform, and the refusal says which site and why.
    let err = f.fails(&["platform", "remove", "p1"]);
    assert!(err.contains("a.example (failed)"), "{err}");
    f.stop();
    // Deleted by its domain (the lead's delete of what a failed site left runs it; here it is queued).
    let delete = f.json(&["site", "delete", "a.example", "--force"]);
    assert_eq!(
        (delete["kind"].clone(), delete["target_id"].clone()),
        ("site-delete".into(), shown["site"]["id"].clone())
    );
    f.ok(&["task", "cancel", &id(&delete).to_string()]);

    // A platform whose codebase is gone by the time its first verify runs.
    let p2 = f.make_codebase("p2");
    let p3 = f.make_codebase("p3");
    f.ok(&["platform", "add", "p2", "--path", &p2]);
    f.ok(&["platform", "add", "p3", "--path", &p3]);
    let moved = format!("{p2}.away");
    std::fs::rename(&p2, &moved).expect("move p2 away");
    std::fs::remove_dir_all(&p3).expect("remove p3");
    f.start_serve(&[]);
    f.wait_until("both verifies failed", || {
        f.json(&["task", "list", "--status", "failed"]).as_array().expect("tasks").len() >= 4
    });
    let p4 = f.make_codebase("p4");
    for name in ["p2", "p3"] {
        let shown = f.json(&["platform", "show", name]);
        assert_eq!(shown["platform"]["status"], "failed", "{shown}");
        let err = f.fails(&["platform", "add", name, "--path", &p4]);
        assert!(err.contains("already exists"), "{err}");
        let err = f.fails(&["site", "create", "c.example", "--platform", name, "--db-engine", "sqlite"]);
        assert!(err.contains("failed its verify"), "{err}");
    }
    let names = |f: &Fjord| -> Vec<Value> {
        f.json(&["platform", "list"]).as_array().expect("list").iter().map(|p| p["name"].clone()).collect()
    };
    assert_eq!(names(&f), ["p1", "p2", "p3"], "one record per name");
    // Retried once its codebase is back; removed by its name.
    std::fs::rename(&moved, &p2).expect("move p2 back");
    f.ok(&["platform", "verify", "p2", "--wait"]);
    assert_eq!(f.json(&["platform", "show", "p2"])["platform"]["status"], "enabled");
    f.ok(&["platform", "remove", "p3", "--wait"]);
    assert_eq!(names(&f), ["p1", "p2"]);
}

#[test]
fn kill_9_mid_task_is_recovered_on_restart() {
    for (label, db) in backends() {
        let mut f = Fjord::new(db);
        setup(&f);
        f.start_serve(&[]);
        // A requeue-on-interrupt task: a no-op that writes a file, then sleeps.
        let marker = f.dir.path().join("marker");
        let marker_s = marker.to_string_lossy().into_owned();
        let t = f.json(&[
            "task",
            "noop",
            "--server",
            "1",
            "--site",
            "77",
            "--platform",
            "1",
            "--sleep-ms",
            "60000",
            "--file",
            &marker_s,
        ]);
        f.wait_until("noop running with its file written", || marker.exists() && f.task(id(&t))["status"] == "running");
        f.kill9();
        assert_eq!(f.task(id(&t))["status"], "running", "{label}: a killed daemon cannot have ended it");
        // Restarted, the daemon marks it interrupted, undoes the write and queues it again; it is a
        // 60 s sleep, so cancel the retry and check the undo happened.
        f.start_serve(&[]);
        f.wait_until("recovered", || f.ok(&["task", "log", &id(&t).to_string()]).contains("queued again"));
        f.wait_task(id(&t), "running");
        f.ok(&["task", "cancel", &id(&t).to_string()]);
        let end = f.wait_task(id(&t), "cancelled");
        assert_eq!(end["attempts"], 2, "{label}");
        assert!(!marker.exists(), "{label}: the interrupted step was not undone");

        // Nothing is left running.
        assert_eq!(f.json(&["health"])["active_tasks"], 0, "{label}");
        f.stop();
    }
}

#[test]
fn two_daemons_share_one_postgres_queue() {
    let Some((_, Some(url))) = backends().into_iter().find(|(l, _)| *l == "postgres") else {
        eprintln!("skipped: FJORD_TEST_PG_URL is not set");
        return;
    };
    let mut a = Fjord::new(Some(url.clone()));
    let mut b = Fjord::new(Some(url));
    b.node = "other-node".into();
    let mut ids = Vec::new();
    for i in 0..40 {
        let site = (i % 8 + 1).to_string();
        let t = a.json(&["task", "noop", "--server", "1", "--platform", "1", "--site", &site, "--sleep-ms", "30"]);
        ids.push(id(&t));
    }
    a.start_serve(&[]);
    b.start_serve(&[]);
    a.wait_until("all done", || a.json(&["health"])["active_tasks"] == 0);
    let tasks: Vec<Value> = ids.iter().map(|i| a.task(*i)).collect();
    for t in &tasks {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["attempts"], 1, "a task ran twice: {t}");
    }
    // Tasks on one site never overlapped, across both daemons.
    for x in &tasks {
        for y in &tasks {
            if x["id"] != y["id"] && x["lane"]["site"] == y["lane"]["site"] {
                let (x0, x1) = (x["started_at"].as_i64().expect("s"), x["finished_at"].as_i64().expect("f"));
                let (y0, y1) = (y["started_at"].as_i64().expect("s"), y["finished_at"].as_i64().expect("f"));
                assert!(x1 <= y0 || y1 <= x0, "overlap on one site: {x} {y}");
            }
        }
    }
    a.stop();
    b.stop();
}

/// `fjord task list | head -5`: a reader that closed its end ends any command quietly (no panic, no
/// message), with the status a closed pipe gives (128 + SIGPIPE).
#[test]
fn every_command_exits_quietly_when_its_output_is_closed() {
    let f = Fjord::new(None);
    setup(&f);
    for args in [vec!["task", "list"], vec!["--json", "site", "list"], vec!["server", "show", "localhost"]] {
        // A pipe whose reading end is already closed: the first write fails.
        let (read, write) = nix::unistd::pipe().expect("pipe");
        drop(read);
        let out = f.command(&args).stdout(std::process::Stdio::from(write)).output().expect("fjord runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_man_pages_and_health() {
    let f = Fjord::new(None);
    assert!(f.ok(&["completions", "bash"]).contains("fjord"));
    let man = f.dir.path().join("man");
    f.ok(&["man", &man.to_string_lossy()]);
    assert!(man.join("fjord.1").exists());
    assert_eq!(f.json(&["health"])["daemon_running"], false);
    // init is harmless to run again.
    f.ok(&["init"]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        // Whatever is typed as a domain or alias: no panic, and either a clean error with nothing
        // written, or a valid site.
        #[test]
        fn site_create_arguments(domain in "\\PC{0,40}", alias in "[a-z./ -]{0,20}") {
            let f = Fjord::new(None);
            setup(&f);
            let before = f.files();
            let out = f.run(&["site", "create", &domain, "--platform", "p1", "--db-engine", "sqlite", "--alias", &alias]);
            prop_assert_ne!(out.status.code(), Some(101), "panic: {}", String::from_utf8_lossy(&out.stderr));
            if !out.status.success() {
                prop_assert_eq!(f.files(), before);
                prop_assert_eq!(f.json(&["site", "list"]), serde_json::json!([]));
            }
        }
    }
}
