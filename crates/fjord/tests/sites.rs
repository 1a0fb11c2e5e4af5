//! Real sites, really served: Fjord's own nginx and PHP-FPM masters, MariaDB, PostgreSQL and SQLite,
//! the project's Drupal 7 / Drupal 10 fixture platforms and Debian's WordPress. Each test drives the
//! real binary and checks the sites over HTTP. Needs `FJORD_TEST_SERVICES=1` (`scripts/test.sh`).
#![allow(clippy::disallowed_methods)]

mod common;

use common::{
    copy_tree, fixture, fixture_platform, mariadb_databases, path_of, services_available, sql_as_admin,
    sql_output_as_admin, Fjord,
};
use std::path::Path;

/// The whole life cycle of one site, checked over HTTP.
fn life_cycle(f: &Fjord, port: u16, platform: &str, engine: &str, domain: &str, generator: &str) {
    let alias = format!("www.{domain}");
    let out =
        f.ok(&["site", "create", domain, "--platform", platform, "--db-engine", engine, "--alias", &alias, "--wait"]);
    assert!(out.contains("succeeded"), "{domain}: {out}");

    // Served from the database by nginx + PHP-FPM, on the main domain and the alias.
    let a = f.get(port, domain, "/");
    assert_eq!(a.status, 200, "{domain}: {a:?}");
    assert!(
        a.body.contains(&format!("<h1>{domain}</h1>")),
        "{domain}: site name not read from the database: {}",
        a.body
    );
    assert!(a.headers.contains(generator), "{domain}: {}", a.headers);
    assert_eq!(f.get(port, &alias, "/").status, 200, "{alias}");

    // The settings file holds the password: not world-readable.
    let shown = f.json(&["site", "show", domain]);
    assert_eq!(shown["site"]["status"], "enabled");

    // Each step of the create says how long it took (where the time goes).
    let create = f.json(&["task", "list", "--limit", "100"]);
    let create = create
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["kind"] == "site-install" && t["target_id"] == shown["site"]["id"])
        .expect("the create task")["id"]
        .to_string();
    let steps = f.json(&["task", "show", &create])["steps"].clone();
    assert!(
        steps.as_array().expect("steps").iter().all(|s| s["duration_ms"].as_i64().is_some_and(|ms| ms >= 0)),
        "{steps}"
    );

    // One-time login link really logs the admin in, once. It is a credential: the task's result holds
    // it, its log (which outlives its use, and others may read) does not.
    let asked = f.json(&["site", "login-link", domain]);
    let link = asked["url"].as_str().expect("url").to_string();
    let log = f.ok(&["task", "log", &asked["task"].to_string()]);
    assert!(!log.contains(&link) && log.contains("in the task's result"), "{domain}: {log}");
    let first = f.get(port, domain, &path_of(&link));
    assert_eq!(first.status, 302, "{domain}: login link: {first:?}");
    let me = f.get(port, domain, "/user/1");
    assert!(me.body.contains("Logged in as admin"), "{domain}: {me:?}");
    assert_eq!(f.get(port, domain, &path_of(&link)).status, 403, "{domain}: a login link worked twice");

    // Cron runs and is recorded.
    f.ok(&["site", "cron", domain, "--wait"]);
    assert!(f.json(&["site", "show", domain])["site"]["last_cron_at"].is_i64(), "{domain}: cron not recorded");

    // A second verify changes nothing and reloads nothing.
    let out = f.ok(&["site", "verify", domain, "--wait"]);
    assert!(
        out.contains(&format!("no config of {}", f.web)) && out.contains("no config of php-fpm"),
        "{domain}: {out}"
    );

    // Disabled: 503 "site disabled", while ACME challenges are still answered.
    f.ok(&["site", "disable", domain, "--wait"]);
    let acme = f.state.join("acme/.well-known/acme-challenge");
    std::fs::create_dir_all(&acme).expect("mkdir");
    std::fs::write(acme.join("token-1"), "challenge-answer").expect("write");
    let a = f.get(port, domain, "/");
    assert_eq!(a.status, 503, "{domain}: {a:?}");
    assert!(a.body.contains("disabled"), "{domain}: {}", a.body);
    let a = f.get(port, domain, "/.well-known/acme-challenge/token-1");
    assert_eq!((a.status, a.body.as_str()), (200, "challenge-answer"), "{domain}");
    f.ok(&["site", "enable", domain, "--wait"]);
    assert_eq!(f.get(port, domain, "/").status, 200, "{domain}");

    // Delete: only once disabled; then nothing of it is served or left.
    f.fails(&["site", "delete", domain]);
    f.ok(&["site", "disable", domain, "--wait"]);
    f.ok(&["site", "delete", domain, "--wait"]);
    assert!(f.not_served(port, domain), "{domain}: still served after delete");
    assert!(!f.state.join("sites").join(domain).exists(), "{domain}: site dir left");
    if engine == "mariadb" {
        let db_name: String = domain.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        assert!(!mariadb_databases(&db_name).contains(&db_name), "{domain}: database left behind");
    }
}

fn engines(f: &Fjord) -> Vec<&'static str> {
    ["sqlite", "mariadb", "postgres"].into_iter().filter(|e| f.has_engine(e)).collect()
}

/// The engines the life cycle runs on: all of them on nginx; on Apache, whose web side is what
/// differs, SQLite and MariaDB (PostgreSQL changes nothing about serving, and CI time counts).
fn engines_for(f: &Fjord) -> Vec<&'static str> {
    engines(f).into_iter().filter(|e| f.web == "nginx" || *e != "postgres").collect()
}

/// Tests of both web servers run at the same time on one MariaDB and PostgreSQL: their sites (and
/// so their databases) need names of their own.
fn web_suffix(web: &str) -> &'static str {
    if web == "apache" {
        "-ap"
    } else {
        ""
    }
}

#[test]
fn drupal10_fixture_on_every_engine() {
    drupal10_fixture("nginx");
}

#[test]
fn drupal10_fixture_on_apache() {
    drupal10_fixture("apache");
}

fn drupal10_fixture(web: &'static str) {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_web_server(web);
    fixture_platform(&f, "drupal10", "d10");
    let p = f.json(&["platform", "show", "d10"]);
    assert_eq!(
        (p["platform"]["app"].as_str(), p["platform"]["app_version"].as_str()),
        (Some("drupal"), Some("10.3.99"))
    );
    for engine in engines_for(&f) {
        let domain = format!("d10-{engine}{}.example", web_suffix(web));
        life_cycle(&f, port, "d10", engine, &domain, "X-Generator: Drupal 10");
    }
}

#[test]
fn drupal7_fixture_on_every_engine() {
    drupal7_fixture("nginx");
}

#[test]
fn drupal7_fixture_on_apache() {
    drupal7_fixture("apache");
}

fn drupal7_fixture(web: &'static str) {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_web_server(web);
    fixture_platform(&f, "drupal7", "d7");
    let p = f.json(&["platform", "show", "d7"]);
    assert_eq!((p["platform"]["app"].as_str(), p["platform"]["app_version"].as_str()), (Some("drupal7"), Some("7.99")));
    for engine in engines_for(&f) {
        let domain = format!("d7-{engine}{}.example", web_suffix(web));
        life_cycle(&f, port, "d7", engine, &domain, "X-Generator: Drupal 7");
    }

    // A platform with sites cannot be removed; a locked one takes no new sites; --force deletes an
    // enabled site.
    f.ok(&["site", "create", "keep7.example", "--platform", "d7", "--db-engine", "sqlite", "--wait"]);
    let err = f.fails(&["platform", "remove", "d7"]);
    assert!(err.contains("still has 1 site"), "{err}");
    f.ok(&["platform", "lock", "d7"]);
    let err = f.fails(&["site", "create", "new7.example", "--platform", "d7", "--db-engine", "sqlite"]);
    assert!(err.contains("locked"), "{err}");
    f.ok(&["platform", "unlock", "d7"]);
    f.ok(&["site", "delete", "keep7.example", "--force", "--wait"]);
    assert!(f.not_served(port, "keep7.example"));
    f.ok(&["platform", "remove", "d7", "--wait"]);
    assert_eq!(f.json(&["platform", "list"]), serde_json::json!([]));
}

#[test]
fn wordpress_from_debian() {
    wordpress("nginx");
}

#[test]
fn wordpress_from_debian_on_apache() {
    wordpress("apache");
}

fn wordpress(web: &'static str) {
    if !services_available() || !Path::new("/usr/share/wordpress/wp-includes/version.php").exists() {
        eprintln!("skipped: Debian's wordpress package is not installed");
        return;
    }
    let (f, port) = Fjord::with_web_server(web);
    if !f.has_engine("mariadb") {
        eprintln!("skipped: no MariaDB");
        return;
    }
    f.ok(&["platform", "add", "wp", "--path", "/usr/share/wordpress", "--wait"]);
    assert_eq!(f.json(&["platform", "show", "wp"])["platform"]["app"], "wordpress");
    // WordPress does not run on SQLite or PostgreSQL: refused up front, nothing written.
    let err = f.fails(&["site", "create", "wp-sqlite.example", "--platform", "wp", "--db-engine", "sqlite"]);
    assert!(err.contains("MariaDB"), "{err}");

    let domain = format!("wp{}{}.example", std::process::id(), web_suffix(web));
    f.ok(&["site", "create", &domain, "--platform", "wp", "--db-engine", "mariadb", "--wait"]);
    let a = f.get(port, &domain, "/");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains(&domain), "the blog title (from the database) is missing");
    let link = f.json(&["site", "login-link", &domain])["url"].as_str().expect("url").to_string();
    let first = f.get(port, &domain, &path_of(&link));
    assert_eq!(first.status, 302, "{first:?}");
    let admin = f.get(port, &domain, "/wp-admin/");
    assert_eq!(admin.status, 200, "{admin:?}");
    assert!(admin.body.contains("Dashboard"), "not logged in to wp-admin");
    assert_eq!(f.get(port, &domain, &path_of(&link)).status, 403, "the login link worked twice");
    f.ok(&["site", "cron", &domain, "--wait"]);

    // Uploads go to the site's own directory (not Debian's shared wp-content), are served from there,
    // never run as PHP, and come back with the site from its backup.
    let upload = format!(
        "$_SERVER['HTTP_HOST'] = '{domain}'; $_SERVER['REQUEST_URI'] = '/'; $_SERVER['SERVER_PORT'] = '{port}'; \
         require 'wp-load.php'; $u = wp_upload_bits('fjord-test.txt', null, 'uploaded'); echo $u['error'] ?: $u['url'];"
    );
    let url = f.ok(&["site", "exec", &domain, "--", "php", "-r", &upload]).trim().to_string();
    assert!(url.contains("/wp-content/uploads/") && url.ends_with("/fjord-test.txt"), "{url}");
    let uploads = f.state.join("sites").join(&domain).join("uploads");
    let path = uploads.join(path_of(&url).trim_start_matches("/wp-content/uploads/"));
    assert_eq!(std::fs::read_to_string(&path).expect("the upload in the site's directory"), "uploaded");
    let served = f.get(port, &domain, &path_of(&url));
    assert_eq!((served.status, served.body.as_str()), (200, "uploaded"), "{served:?}");
    std::fs::write(uploads.join("evil.php"), "<?php echo 'ran';").expect("write");
    let evil = f.get(port, &domain, "/wp-content/uploads/evil.php");
    assert!(evil.status == 403 && !evil.body.contains("ran"), "{evil:?}");
    f.ok(&["site", "disable", &domain, "--wait"]);
    f.ok(&["site", "delete", &domain, "--wait"]);
    assert!(!path.exists(), "the upload outlived its site");
    let backups = f.json(&["backup", "list"]);
    let id = backups.as_array().expect("list").iter().find(|b| b["kind"] == "pre-delete").expect("pre-delete")["id"]
        .as_i64()
        .expect("id")
        .to_string();
    f.ok(&["site", "restore", &domain, "--backup", &id, "--wait"]);
    let served = f.get(port, &domain, &path_of(&url));
    assert_eq!((served.status, served.body.as_str()), (200, "uploaded"), "after the restore: {served:?}");

    f.ok(&["site", "disable", &domain, "--wait"]);
    f.ok(&["site", "delete", &domain, "--wait"]);
    assert!(!Path::new(&format!("/etc/wordpress/config-{domain}.php")).exists(), "WordPress config left behind");
}

/// A restore's follow-up fails to archive the data it replaced; deleting the site then archives that
/// data (the pre-restore backup) and drops the old database, which no site would own otherwise.
#[test]
fn a_delete_archives_what_a_failed_restore_follow_up_left() {
    if !services_available() {
        return;
    }
    let (mut f, _port) = Fjord::with_server();
    if !f.has_engine("mariadb") {
        return;
    }
    fixture_platform(&f, "drupal10", "d10");
    let domain = "orphan.example";
    f.ok(&["site", "create", domain, "--platform", "d10", "--db-engine", "mariadb", "--wait"]);
    f.ok(&["site", "backup", domain, "--wait"]);
    let id = f.json(&["backup", "list", "--site", domain])[0]["id"].as_i64().expect("id").to_string();
    // The follow-up's third step is its archive.
    f.stop();
    f.start_serve(&[("FJORD_FAULT", "site-archive-replaced:2:fail")]);
    f.ok(&["site", "restore", domain, "--backup", &id, "--wait"]);
    let failed = || {
        let tasks = f.json(&["task", "list", "--status", "failed"]);
        tasks.as_array().expect("tasks").iter().find(|t| t["kind"] == "site-archive-replaced").cloned()
    };
    f.wait_until("the follow-up to fail", || failed().is_some());
    let old_db = failed().expect("failed")["args"]["db_name"].as_str().expect("db_name").to_string();
    assert!(
        mariadb_databases(&old_db).contains(&old_db),
        "the replaced database {old_db} is gone before anything archived it"
    );
    f.stop();
    f.start_serve(&[]);

    f.ok(&["site", "disable", domain, "--wait"]);
    f.ok(&["site", "delete", domain, "--wait"]);
    let kinds: Vec<String> = f
        .json(&["backup", "list"])
        .as_array()
        .expect("list")
        .iter()
        .filter(|b| b["path"].as_str().unwrap_or_default().contains(domain))
        .map(|b| b["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "pre-restore") && kinds.iter().any(|k| k == "pre-delete"), "{kinds:?}");
    assert!(!mariadb_databases(&old_db).contains(&old_db), "the replaced database {old_db} outlived its site");
}

#[test]
fn a_failed_install_leaves_nothing_and_other_sites_keep_serving() {
    if !services_available() {
        return;
    }
    let (mut f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    let engine = if f.has_engine("mariadb") { "mariadb" } else { "sqlite" };
    f.ok(&["site", "create", "keep.example", "--platform", "d10", "--db-engine", engine, "--wait"]);
    // Fail the installer step itself: after the database, settings, pool and reload were applied.
    let plan = f.ok(&["--dry-run", "site", "create", "gone.example", "--platform", "d10", "--db-engine", engine]);
    let step =
        plan.lines().filter(|l| l.starts_with('[')).position(|l| l.contains("site:install")).expect("installer step");
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &format!("site-install:{step}:fail"))]);
    let out = f.run(&["site", "create", "gone.example", "--platform", "d10", "--db-engine", engine, "--wait"]);
    assert!(!out.status.success());
    assert!(!f.state.join("sites/gone.example").exists(), "site dir left");
    assert!(!f.dir.path().join("code/d10/web/sites/gone.example").exists(), "platform site dir left");
    assert!(!f.state.join("servers/localhost/php/8.2/pool.d/gone.example.conf").exists(), "pool left");
    assert!(!f.state.join("servers/localhost/nginx/vhost.d/gone.example.conf").exists(), "vhost left");
    assert_eq!(f.json(&["site", "list", "--status", "failed"]).as_array().expect("list").len(), 1);
    assert_eq!(f.get(port, "keep.example", "/").status, 200, "the other site stopped being served");
    if engine == "mariadb" {
        assert!(mariadb_databases("goneexample").is_empty(), "database left behind");
    }
    // The failed record keeps its domain: retried once the fault is gone, it installs and serves.
    let shown = f.json(&["site", "show", "gone.example"]);
    assert_eq!(shown["site"]["status"], "failed", "{shown}");
    let install = shown["recent_tasks"][0]["id"].to_string();
    f.stop();
    f.start_serve(&[]);
    f.ok(&["task", "retry", &install, "--wait"]);
    assert_eq!(f.json(&["site", "show", "gone.example"])["site"]["status"], "enabled");
    assert_eq!(f.get(port, "gone.example", "/").status, 200);
    // Another failed one is deleted by its domain, which is then free for one new record.
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &format!("site-install:{step}:fail"))]);
    let failed = f.run(&["site", "create", "again.example", "--platform", "d10", "--db-engine", engine, "--wait"]);
    assert!(!failed.status.success());
    f.stop();
    f.start_serve(&[]);
    f.ok(&["site", "delete", "again.example", "--wait"]);
    assert!(f.fails(&["site", "show", "again.example"]).contains("not found"));
    f.ok(&["site", "create", "again.example", "--platform", "d10", "--db-engine", engine, "--wait"]);
    let sites = f.json(&["site", "list"]);
    let again: Vec<&serde_json::Value> =
        sites.as_array().expect("list").iter().filter(|s| s["domain"] == "again.example").collect();
    assert_eq!(again.len(), 1, "{sites}");
}

#[test]
fn kill_9_mid_install_is_rolled_back_on_restart() {
    if !services_available() {
        return;
    }
    let (mut f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal7", "d7");
    // Crash (abort, as kill -9 would) right after the vhost is written and before nginx reloads.
    let plan = f.ok(&["--dry-run", "site", "create", "crash.example", "--platform", "d7", "--db-engine", "sqlite"]);
    let vhost_step = plan
        .lines()
        .filter(|l| l.starts_with('['))
        .position(|l| l.contains("vhost.d/crash.example.conf"))
        .expect("vhost step");
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &format!("site-install:{vhost_step}:crash"))]);
    let t = f.json(&["site", "create", "crash.example", "--platform", "d7", "--db-engine", "sqlite"]);
    let _ = f.wait_serve_exit();
    let vhost = f.state.join("servers/localhost/nginx/vhost.d/crash.example.conf");
    assert!(vhost.exists(), "the crash should come after the vhost write");
    f.start_serve(&[]);
    let end = f.wait_task(t["id"].as_i64().expect("id"), "failed");
    assert!(end["error"].as_str().expect("error").contains("interrupted"), "{end}");
    assert!(!vhost.exists() && !f.state.join("sites/crash.example").exists(), "install not rolled back");
    assert!(!f.dir.path().join("code/d7/sites/crash.example").exists(), "platform site dir left");
    assert_eq!(f.get(port, "crash.example", "/").status, 0, "a half-installed site is served");
    assert_eq!(f.json(&["health"])["active_tasks"], 0);
}

#[test]
fn an_invalid_web_config_is_rolled_back_and_the_old_one_keeps_serving() {
    invalid_web_config("nginx");
}

#[test]
fn an_invalid_apache_config_is_rolled_back_and_the_old_one_keeps_serving() {
    invalid_web_config("apache");
}

fn invalid_web_config(web: &'static str) {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_web_server(web);
    fixture_platform(&f, "drupal7", "d7");
    f.ok(&["site", "create", "ok.example", "--platform", "d7", "--db-engine", "sqlite", "--wait"]);
    // Someone leaves a broken file among the generated vhosts: the next change fails `nginx -t`
    // (`apache2 -t`), is rolled back, and nothing stops being served.
    let broken = f.vhost_path("zz-broken");
    let garbage = match web {
        "apache" => "<VirtualHost *:1>\n    ThisIsNotApacheConfig on\n</VirtualHost>\n",
        _ => "server { this is not nginx config }\n",
    };
    std::fs::write(&broken, garbage).expect("write");
    let out = f.run(&["site", "disable", "ok.example", "--wait"]);
    assert!(!out.status.success(), "a change that fails validation succeeded");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("rolling back"), "{log}");
    assert_eq!(f.get(port, "ok.example", "/").status, 200, "the previous config stopped serving");
    assert_eq!(f.json(&["site", "show", "ok.example"])["site"]["status"], "enabled");
    let vhost = std::fs::read_to_string(f.vhost_path("ok.example")).expect("vhost");
    assert!(!vhost.contains("503"), "the vhost change was not undone");
    std::fs::remove_file(&broken).expect("rm");
    f.ok(&["site", "disable", "ok.example", "--wait"]);
    assert_eq!(f.get(port, "ok.example", "/").status, 503);
}

#[test]
fn aliases_change_and_cron_runs_on_schedule() {
    if !services_available() {
        return;
    }
    let (mut f, port) = Fjord::with_server();
    f.stop();
    f.start_serve(&[("FJORD_CRON_CHECK_SECONDS", "1")]);
    fixture_platform(&f, "drupal7", "d7");
    f.ok(&[
        "site",
        "create",
        "al.example",
        "--platform",
        "d7",
        "--db-engine",
        "sqlite",
        "--cron-interval",
        "2",
        "--wait",
    ]);

    // An alias added later is served; with redirect on it answers 301 to the main domain.
    f.ok(&["site", "alias", "al.example", "--add", "other.example", "--wait"]);
    assert_eq!(f.get(port, "other.example", "/").status, 200);
    f.ok(&["site", "alias", "al.example", "--redirect", "on", "--wait"]);
    let a = f.get(port, "other.example", "/some/page");
    assert_eq!(a.status, 301, "{a:?}");
    assert!(a.headers.contains("Location: http://al.example:") && a.headers.contains("/some/page"), "{}", a.headers);
    f.ok(&["site", "alias", "al.example", "--remove", "other.example", "--wait"]);
    assert_eq!(f.get(port, "other.example", "/").status, 0, "a removed alias is still served");
    let err = f.fails(&["site", "alias", "al.example", "--remove", "nope.example"]);
    assert!(err.contains("not an alias"), "{err}");

    // The daemon runs cron by itself at the site's interval, and records it.
    f.wait_until("a scheduled cron run", || f.json(&["site", "show", "al.example"])["site"]["last_cron_at"].is_i64());
    let tasks = f.json(&["task", "list", "--limit", "100"]);
    let cron: Vec<_> = tasks.as_array().expect("list").iter().filter(|t| t["kind"] == "site-cron").collect();
    assert!(cron.iter().all(|t| t["created_by"] == "daemon:cron"), "{cron:?}");
    assert!(cron.iter().any(|t| t["status"] == "succeeded"), "{cron:?}");
}

#[test]
fn platforms_built_from_git_and_composer() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    // A git repository holding the Drupal 7 fixture, with a tag to check out.
    let repo = f.dir.path().join("repo");
    copy_tree(&fixture("drupal7"), &repo);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=Fjord Test", "-c", "user.email=test@fjord.invalid", "-C"])
            .arg(&repo)
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "--quiet"]);
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "fixture"]);
    git(&["tag", "v1"]);
    f.ok(&["platform", "add", "fromgit", "--git", &repo.to_string_lossy(), "--ref", "v1", "--wait"]);
    f.wait_until("the follow-up verify", || f.json(&["platform", "show", "fromgit"])["platform"]["app"] == "drupal7");
    f.ok(&["site", "create", "git.example", "--platform", "fromgit", "--db-engine", "sqlite", "--wait"]);
    assert_eq!(f.get(port, "git.example", "/").status, 200);

    // A composer project without vendor/: verify runs composer install.
    if std::process::Command::new("composer").arg("--version").output().is_err() {
        eprintln!("skipped the composer part: composer is not installed");
        return;
    }
    let code = f.dir.path().join("composer-app");
    std::fs::create_dir_all(code.join("web")).expect("mkdir");
    std::fs::write(
        code.join("web/index.php"),
        "<?php require __DIR__ . '/../vendor/autoload.php'; echo 'composer ok';",
    )
    .expect("write");
    std::fs::write(code.join("composer.json"), r#"{"name": "fjord/composer-test", "require": {}}"#).expect("write");
    f.ok(&["platform", "add", "comp", "--path", &code.to_string_lossy(), "--wait"]);
    assert!(code.join("vendor/autoload.php").exists(), "composer install did not run");
    f.ok(&["site", "create", "comp.example", "--platform", "comp", "--db-engine", "sqlite", "--wait"]);
    let a = f.get(port, "comp.example", "/");
    assert!(a.body.contains("composer ok"), "{a:?}");
}

/// Makes a Drupal 10 fixture site by hand in the `d10` platform, the way it was before Fjord: its own
/// MariaDB database and user (password `legacy-pass-123`), settings.php, and drush install.
fn hand_made_site(f: &Fjord, domain: &str, db: &str, user: &str, name: &str) -> std::path::PathBuf {
    let sock = std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("socket");
    let mport = std::env::var("FJORD_TEST_MARIADB_PORT").expect("port");
    let sql = format!(
        "CREATE DATABASE {db}; CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'legacy-pass-123'; \
         GRANT ALL ON {db}.* TO '{user}'@'127.0.0.1';"
    );
    let out = std::process::Command::new("mariadb")
        .arg(format!("--socket={sock}"))
        .args(["-uroot", "-e", &sql])
        .output()
        .expect("mariadb");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let code = f.dir.path().join("code/d10");
    let site_dir = code.join("web/sites").join(domain);
    std::fs::create_dir_all(&site_dir).expect("mkdir");
    std::fs::write(
        site_dir.join("settings.php"),
        format!(
            "<?php\n$databases['default']['default'] = ['driver' => 'mysql', 'database' => '{db}', 'username' => '{user}', \
             'password' => 'legacy-pass-123', 'host' => '127.0.0.1', 'port' => '{mport}', 'prefix' => ''];\n\
             $settings['hash_salt'] = 'hand-made-salt';\n"
        ),
    )
    .expect("write");
    let out = std::process::Command::new("php")
        .arg(code.join("vendor/bin/drush"))
        .arg(format!("--root={}", code.join("web").display()))
        .arg(format!("--uri=http://{domain}"))
        .args(["site:install", "minimal"])
        .arg(format!("--sites-subdir={domain}"))
        .arg(format!("--site-name={name}"))
        .arg("--yes")
        .output()
        .expect("drush");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    site_dir
}

#[test]
fn an_existing_site_is_imported_with_its_database() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    if !f.has_engine("mariadb") {
        eprintln!("skipped: no MariaDB");
        return;
    }
    fixture_platform(&f, "drupal10", "d10");
    // A site made by hand, the way it was before Fjord: its own database, settings and install.
    let site_dir = hand_made_site(&f, "old.example", "legacydb", "legacyuser", "Old Site");
    let pw = f.dir.path().join("pw");
    std::fs::write(&pw, "legacy-pass-123\n").expect("write");

    f.ok(&[
        "site",
        "import",
        "old.example",
        "--platform",
        "d10",
        "--db-engine",
        "mariadb",
        "--db-name",
        "legacydb",
        "--db-user",
        "legacyuser",
        "--db-password-file",
        &pw.to_string_lossy(),
        "--wait",
    ]);
    // Served, with its own content: adopted, not reinstalled.
    let a = f.get(port, "old.example", "/");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("<h1>Old Site</h1>"), "{}", a.body);
    let settings = std::fs::read_to_string(site_dir.join("settings.php")).expect("settings");
    assert!(settings.contains("Managed by Fjord") && settings.contains("legacydb"), "{settings}");
    assert_eq!(f.json(&["site", "show", "old.example"])["site"]["status"], "enabled");
    // Bad input changes nothing: SQLite import is refused, and a database another site uses too.
    f.fails(&[
        "site",
        "import",
        "x.example",
        "--platform",
        "d10",
        "--db-engine",
        "sqlite",
        "--db-name",
        "x",
        "--db-password-file",
        &pw.to_string_lossy(),
    ]);
    let err = f.fails(&[
        "site",
        "import",
        "y.example",
        "--platform",
        "d10",
        "--db-engine",
        "mariadb",
        "--db-name",
        "legacydb",
        "--db-password-file",
        &pw.to_string_lossy(),
    ]);
    assert!(err.contains("already belongs"), "{err}");

    // Platform verify finds a site Fjord does not know and adopts it by itself.
    hand_made_site(&f, "found.example", "founddb", "founduser", "Found Site");
    let out = f.ok(&["platform", "verify", "d10", "--wait"]);
    assert!(out.contains("found sites/found.example: adopted"), "{out}");
    f.wait_until("the adopted site", || {
        f.run(&["--json", "site", "show", "found.example"]).status.success()
            && f.json(&["site", "show", "found.example"])["site"]["status"] == "enabled"
    });
    let a = f.get(port, "found.example", "/");
    assert!(a.body.contains("<h1>Found Site</h1>"), "{a:?}");
}

/// Stops the system nginx and removes Fjord's include when the system-mode test ends, pass or fail.
struct SystemNginxGuard;

impl Drop for SystemNginxGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/etc/nginx/conf.d/fjord-sysweb.conf");
        let _ = std::process::Command::new("nginx").args(["-s", "quit"]).output();
    }
}

#[test]
fn system_nginx_mode_serves_through_an_include() {
    if !services_available() {
        return;
    }
    if Path::new("/run/nginx.pid").exists() || !Path::new("/etc/nginx/nginx.conf").exists() {
        eprintln!("skipped: a system nginx is already running (or not installed); this test starts and stops its own");
        return;
    }
    let _guard = SystemNginxGuard;
    let mut f = Fjord::new(None);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    f.start_serve(&[]);
    let port = common::free_port();
    f.ok(&[
        "server",
        "add",
        "sysweb",
        "--http-mode",
        "system",
        "--http-port",
        &port.to_string(),
        "--listen",
        "127.0.0.1",
        "--database",
        "sqlite",
        "--wait",
    ]);
    let include = std::fs::read_to_string("/etc/nginx/conf.d/fjord-sysweb.conf").expect("include written");
    assert!(
        include.contains(&f.state.join("servers/sysweb/nginx/fjord.conf").to_string_lossy().into_owned()),
        "{include}"
    );
    fixture_platform(&f, "drupal7", "d7");
    f.ok(&["site", "create", "sys.example", "--platform", "d7", "--db-engine", "sqlite", "--wait"]);
    let a = f.get(port, "sys.example", "/");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("<h1>sys.example</h1>"));
}

#[test]
fn backups_are_written_listed_verified_and_deleted() {
    if !services_available() {
        return;
    }
    let (f, _port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    for engine in engines(&f) {
        let domain = format!("bk-{engine}.example");
        f.ok(&["site", "create", &domain, "--platform", "d10", "--db-engine", engine, "--wait"]);
        let out = f.ok(&["site", "backup", &domain, "--wait"]);
        assert!(out.contains("succeeded"), "{engine}: {out}");
        let list = f.json(&["backup", "list", "--site", &domain]);
        let b = &list.as_array().expect("list")[0];
        assert!(
            b["size"].as_i64().expect("size") > 0 && b["checksum"].as_str().expect("sum").len() == 64,
            "{engine}: {b}"
        );
        let path = Path::new(b["path"].as_str().expect("path")).to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("archive").permissions().mode() & 0o777, 0o600, "{engine}");
        assert_eq!(std::fs::metadata(path.parent().expect("dir")).expect("dir").permissions().mode() & 0o777, 0o700);
        let id = b["id"].as_i64().expect("id").to_string();
        let v = f.json(&["backup", "verify", &id]);
        let entries: Vec<&str> = v["entries"].as_array().expect("entries").iter().filter_map(|e| e.as_str()).collect();
        // A database this small is dumped (MariaDB's tablespace files pay off only for large ones).
        for want in ["manifest.json", "database.sql", "site/settings.php"] {
            assert!(entries.iter().any(|e| e.trim_end_matches('/') == want), "{engine}: {want} not in {entries:?}");
        }
        // A damaged archive is caught.
        let mut bytes = std::fs::read(&path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let err = f.fails(&["backup", "verify", &id]);
        assert!(err.contains("checksum mismatch"), "{engine}: {err}");
        f.ok(&["backup", "delete", &id]);
        assert!(!path.exists(), "{engine}: archive left after delete");
        assert_eq!(f.json(&["backup", "list", "--site", &domain]), serde_json::json!([]));
    }
}

#[test]
fn a_restore_brings_back_content_and_a_bad_archive_changes_nothing() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    for engine in engines(&f) {
        let domain = format!("rs-{engine}.example");
        f.ok(&["site", "create", &domain, "--platform", "d10", "--db-engine", engine, "--wait"]);
        let files = f.dir.path().join("code/d10/web/sites").join(&domain).join("files");
        std::fs::write(files.join("hello.txt"), "v1").expect("write");
        // A Drupal cache bin is archived without its rows (not so on SQLite, whose dump cannot leave
        // them out); `cachetags` is no cache bin.
        for table in ["cache_render", "cachetags"] {
            sql_as_admin(
                &f,
                engine,
                &domain,
                &format!("CREATE TABLE {table} (cid VARCHAR(255) NOT NULL PRIMARY KEY, data TEXT)"),
            );
            sql_as_admin(&f, engine, &domain, &format!("INSERT INTO {table} VALUES ('a', 'stale')"));
            if engine == "postgres" {
                let user = f.json(&["site", "show", &domain])["site"]["db_user"].as_str().expect("user").to_string();
                sql_as_admin(&f, engine, &domain, &format!("ALTER TABLE {table} OWNER TO \"{user}\""));
            }
        }
        let rows = |table: &str| sql_output_as_admin(&f, engine, &domain, &format!("SELECT COUNT(*) FROM {table}"));
        let cache_rows_kept = if engine == "sqlite" { "1" } else { "0" };
        // On MariaDB the first backup is a dump, and the pre-restore one below is physical: both leave
        // the cache rows out.
        let mut backup = vec!["site", "backup", &domain, "--wait"];
        if engine == "mariadb" {
            backup.push("--logical");
        }
        f.ok(&backup);
        let backup = f.json(&["backup", "list", "--site", &domain])[0].clone();
        let id = backup["id"].as_i64().expect("id").to_string();

        // The site changes after the backup: its database and its files.
        // The fixture stores variables PHP-serialized.
        sql_as_admin(&f, engine, &domain, "UPDATE variable SET value = 's:7:\"Changed\";' WHERE name = 'site_name'");
        std::fs::write(files.join("hello.txt"), "v2").expect("write");
        std::fs::write(files.join("new.txt"), "new").expect("write");
        assert!(f.get(port, &domain, "/").body.contains("<h1>Changed</h1>"), "{engine}: the change did not show");

        f.ok(&["site", "restore", &domain, "--backup", &id, "--wait"]);
        let a = f.get(port, &domain, "/");
        assert!(a.body.contains(&format!("<h1>{domain}</h1>")), "{engine}: content not restored: {}", a.body);
        assert_eq!(std::fs::read_to_string(files.join("hello.txt")).expect("read"), "v1", "{engine}");
        assert!(!files.join("new.txt").exists(), "{engine}: a file added after the backup survived the restore");
        assert_eq!((rows("cache_render"), rows("cachetags")), (cache_rows_kept.into(), "1".into()), "{engine}");
        // The replaced data becomes the pre-restore backup once the restored site serves.
        let pre_restore = || {
            let list = f.json(&["backup", "list", "--site", &domain]);
            list.as_array().expect("list").iter().find(|b| b["kind"] == "pre-restore").cloned()
        };
        f.wait_until("the pre-restore backup", || pre_restore().is_some());
        let pre_id = pre_restore().expect("pre-restore")["id"].as_i64().expect("id").to_string();
        let dir = files.parent().expect("site dir");
        let set_aside: Vec<_> = std::fs::read_dir(dir)
            .expect("site dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("before-restore"))
            .collect();
        assert!(set_aside.is_empty(), "{engine}: the replaced files were not removed after archiving");
        let entries = f.backup_entries(&pre_id);
        assert!(entries.iter().any(|e| e == "site/files/hello.txt"), "{engine}: {entries:?}");
        assert!(entries.iter().any(|e| e == "site/files/new.txt"), "{engine}: the replaced files: {entries:?}");
        assert!(!entries.iter().any(|e| e.contains("before-restore")), "{engine}: {entries:?}");
        let login = f.json(&["site", "login-link", &domain])["url"].as_str().expect("url").to_string();
        assert_eq!(f.get(port, &domain, &path_of(&login)).status, 302, "{engine}: the restored site cannot log in");

        // A damaged archive: the restore fails and nothing changes.
        sql_as_admin(&f, engine, &domain, "UPDATE variable SET value = 's:4:\"Kept\";' WHERE name = 'site_name'");
        let path = std::path::PathBuf::from(backup["path"].as_str().expect("path"));
        let mut bytes = std::fs::read(&path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let out = f.run(&["site", "restore", &domain, "--backup", &id, "--wait"]);
        assert!(!out.status.success(), "{engine}: a corrupted archive was restored");
        assert!(
            f.get(port, &domain, "/").body.contains("<h1>Kept</h1>"),
            "{engine}: a failed restore changed the site"
        );
        assert_eq!(std::fs::read_to_string(files.join("hello.txt")).expect("read"), "v1", "{engine}");

        // The pre-restore backup is a whole backup: it brings back the site as it was before the restore.
        f.ok(&["site", "restore", &domain, "--backup", &pre_id, "--wait"]);
        assert!(f.get(port, &domain, "/").body.contains("<h1>Changed</h1>"), "{engine}: not the replaced site");
        assert_eq!(std::fs::read_to_string(files.join("hello.txt")).expect("read"), "v2", "{engine}");
        assert!(files.join("new.txt").exists(), "{engine}: the replaced files");
        assert_eq!((rows("cache_render"), rows("cachetags")), (cache_rows_kept.into(), "1".into()), "{engine}");
    }
}

#[test]
fn php_limits_reach_the_sites_pool_and_php() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    let domain = "limits.example";
    f.ok(&["site", "create", domain, "--platform", "d10", "--db-engine", "sqlite", "--wait"]);
    let page = f.dir.path().join("code/d10/web/limits.php");
    std::fs::write(
        &page,
        "<?php echo ini_get('memory_limit'), ' ', ini_get('upload_max_filesize'), ' ', ini_get('max_execution_time');",
    )
    .expect("write");
    assert_eq!(f.get(port, domain, "/limits.php").body, "256M 64M 120", "the defaults");

    // Bad values are refused and change nothing.
    let err = f.fails(&["site", "php-limits", domain, "--memory-limit", "lots"]);
    assert!(err.contains("memory limit"), "{err}");
    f.fails(&["site", "php-limits", domain, "--max-children", "0"]);
    assert_eq!(f.json(&["site", "show", domain])["site"]["php_limits"]["memory_limit"], "256M");

    f.ok(&[
        "site",
        "php-limits",
        domain,
        "--memory-limit",
        "200M",
        "--upload-max",
        "32M",
        "--max-execution-time",
        "60",
        "--max-children",
        "3",
        "--wait",
    ]);
    assert_eq!(f.get(port, domain, "/limits.php").body, "200M 32M 60");
    let pool =
        std::fs::read_to_string(f.state.join(format!("servers/localhost/php/8.2/pool.d/{domain}.conf"))).expect("pool");
    assert!(pool.contains("pm.max_children = 3"), "{pool}");
}

#[test]
fn the_real_client_ip_comes_from_trusted_proxies_only_on_nginx() {
    real_client_ip("nginx");
}

#[test]
fn the_real_client_ip_comes_from_trusted_proxies_only_on_apache() {
    real_client_ip("apache");
}

/// A proxy at 127.0.0.2 reports the visitor's address: the web server logs it and PHP (and the
/// app's own client-IP logic) sees it; the same header from 127.0.0.1, not trusted, is ignored.
fn real_client_ip(web: &'static str) {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_web_server(web);
    fixture_platform(&f, "drupal10", "d10");
    let domain = "rip.example";
    f.ok(&["site", "create", domain, "--platform", "d10", "--db-engine", "sqlite", "--wait"]);

    // Bad input is refused with a clear error and changes nothing.
    let before = f.json(&["server", "show", "localhost"]);
    let err = f.fails(&["server", "real-ip", "localhost", "--trust", "10.0.0.1/8"]);
    assert!(err.contains("past the /8"), "{err}");
    let err = f.fails(&["server", "real-ip", "localhost", "--trust", "proxy.example"]);
    assert!(err.contains("not an IP address or CIDR block"), "{err}");
    let err = f.fails(&["server", "real-ip", "localhost", "--trust", "127.0.0.2", "--header", "X-Client"]);
    assert!(err.contains("header \"X-Client\""), "{err}");
    f.fails(&["server", "real-ip", "localhost"]);
    assert_eq!(f.json(&["server", "show", "localhost"]), before);

    // A visitor's address (a public one: Apache's RemoteIPTrustedProxy takes no private ones from
    // the header), behind a proxy that also lists what the visitor sent itself.
    let visitor = "203.0.113.7";
    let xff = format!("X-Forwarded-For: 198.51.100.9, {visitor}");
    f.ok(&["server", "real-ip", "localhost", "--trust", "127.0.0.2", "--header", "X-Forwarded-For", "--wait"]);
    let a = f.get_via(port, domain, "/client-ip", "127.0.0.2", &[&xff]);
    assert_eq!(a.body.trim(), format!("REMOTE_ADDR={visitor} client_ip={visitor}"), "{web}: {a:?}");
    assert!(f.access_log().lines().any(|l| l.starts_with(visitor) && l.contains("/client-ip")), "{}", f.access_log());
    let a = f.get_via(port, domain, "/client-ip", "127.0.0.1", &[&xff]);
    assert_eq!(a.body.trim(), "REMOTE_ADDR=127.0.0.1 client_ip=127.0.0.1", "{web}: an untrusted peer's header counted");

    // Cloudflare's header, from Cloudflare's ranges plus the test proxy; X-Forwarded-For is ignored.
    f.ok(&["server", "real-ip", "localhost", "--cloudflare", "--trust", "127.0.0.2", "--wait"]);
    let include =
        std::fs::read_to_string(f.state.join(format!("servers/localhost/{web}/fjord.conf"))).expect("include");
    assert!(include.contains("173.245.48.0/20") && include.contains("CF-Connecting-IP"), "{include}");
    let cf = "CF-Connecting-IP: 203.0.113.99";
    let a = f.get_via(port, domain, "/client-ip", "127.0.0.2", &[cf, &xff]);
    assert_eq!(a.body.trim(), "REMOTE_ADDR=203.0.113.99 client_ip=203.0.113.99", "{web}: {a:?}");
    let a = f.get_via(port, domain, "/client-ip", "127.0.0.1", &[cf]);
    assert!(a.body.starts_with("REMOTE_ADDR=127.0.0.1 "), "{web}: {a:?}");

    // Off: nobody is trusted any more.
    f.ok(&["server", "real-ip", "localhost", "--off", "--wait"]);
    let a = f.get_via(port, domain, "/client-ip", "127.0.0.2", &[cf, &xff]);
    assert!(a.body.starts_with("REMOTE_ADDR=127.0.0.2 "), "{web}: {a:?}");
}

/// `fjord proxy-ranges update` reads a list (here from a local file and a local HTTP server: no
/// internet in tests), refuses a bad one whole, and refreshes the servers that trust Cloudflare.
#[test]
fn proxy_ranges_update_refreshes_trusting_servers() {
    if !services_available() {
        return;
    }
    let (f, _port) = Fjord::with_server();
    let shown = f.json(&["proxy-ranges", "show"]);
    assert_eq!(shown["source"], "shipped with Fjord");
    f.ok(&["server", "real-ip", "localhost", "--cloudflare", "--wait"]);

    let bad = f.dir.path().join("bad.txt");
    std::fs::write(&bad, "198.51.100.0/24\nnot-a-range\n").expect("write");
    let err = f.fails(&["proxy-ranges", "update", "--from", &format!("file://{}", bad.display())]);
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(f.json(&["proxy-ranges", "show"])["source"], "shipped with Fjord");

    // A tiny HTTP server on loopback serves the new list.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://127.0.0.1:{}/ips", listener.local_addr().expect("addr").port());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 2048];
        let _ = conn.read(&mut buf);
        let body = "# test list\n198.51.100.0/24\n2001:db8::/32\n";
        let _ = conn.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
        );
    });
    let out = f.ok(&["proxy-ranges", "update", "--from", &url]);
    server.join().expect("server thread");
    assert!(out.contains("2 ranges") && out.contains("server localhost: verify queued"), "{out}");
    assert_eq!(f.json(&["proxy-ranges", "show"])["ranges"], serde_json::json!(["198.51.100.0/24", "2001:db8::/32"]));
    let include = f.state.join("servers/localhost/nginx/fjord.conf");
    f.wait_until("the refreshed ranges applied", || {
        std::fs::read_to_string(&include).unwrap_or_default().contains("set_real_ip_from 2001:db8::/32;")
    });
    assert!(!std::fs::read_to_string(&include).expect("include").contains("173.245.48.0/20"));
}

/// `fjord server web` moves a server from nginx to Apache and back: verify regenerates every vhost
/// for the new web server, stops the old master and starts the new one; the site stays served.
#[test]
fn a_server_switches_between_nginx_and_apache() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal7", "d7");
    let domain = "switch.example";
    f.ok(&["site", "create", domain, "--platform", "d7", "--db-engine", "sqlite", "--wait"]);
    let a = f.get(port, domain, "/");
    assert!(a.status == 200 && a.headers.contains("Server: nginx"), "{a:?}");
    let err = f.fails(&["server", "web", "localhost", "lighttpd"]);
    assert!(err.contains("lighttpd"), "{err}");

    f.ok(&["server", "web", "localhost", "apache", "--wait"]);
    let a = f.get(port, domain, "/");
    assert!(a.status == 200 && a.headers.contains("Server: Apache"), "{a:?}");
    assert!(a.body.contains(&format!("<h1>{domain}</h1>")), "{a:?}");
    assert!(!f.state.join("servers/localhost/nginx").exists(), "the nginx config is left");
    assert!(f.state.join(format!("servers/localhost/apache/vhost.d/{domain}.conf")).exists());
    assert!(f.json(&["server", "show", "localhost"])["services"].to_string().contains("\"apache\""));

    f.ok(&["server", "web", "localhost", "nginx", "--wait"]);
    let a = f.get(port, domain, "/");
    assert!(a.status == 200 && a.headers.contains("Server: nginx"), "{a:?}");
    assert!(!f.state.join("servers/localhost/apache").exists(), "the Apache config is left");
}

/// A Unix-socket relay in front of the test's MariaDB socket that the test can take down: a
/// database server outage as the admin client sees it, without stopping the MariaDB other tests use.
struct SocketRelay {
    path: std::path::PathBuf,
    /// Connections still let through (`usize::MAX`: up); the others are closed at once.
    allow: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SocketRelay {
    fn start(path: std::path::PathBuf, target: String) -> SocketRelay {
        use std::sync::atomic::Ordering;
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind relay socket");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod socket");
        let allow = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let gate = allow.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let left = gate.load(Ordering::SeqCst);
                if left == 0 {
                    continue; // dropped: the client sees the server go away
                }
                if left != usize::MAX {
                    gate.store(left - 1, Ordering::SeqCst);
                }
                let Ok(server) = std::os::unix::net::UnixStream::connect(&target) else { continue };
                let (mut c2, mut s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let (mut c, mut s) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c, &mut s);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        SocketRelay { path, allow }
    }

    /// Lets `n` more connections through, then none.
    fn allow_only(&self, n: usize) {
        self.allow.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn up(&self) {
        self.allow.store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The database server goes down while a failed `site create` rolls back: its database and user stay
/// behind for a while. The undo is retried until the server is back and then drops them; a failed
/// site deleted meanwhile has them dropped by its delete, and the retry stands back.
#[test]
fn a_database_left_by_an_outage_during_rollback_is_dropped_later() {
    if !services_available() {
        return;
    }
    let mut f = Fjord::new(None);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("MariaDB: run through scripts/test.sh");
    let tcp = std::env::var("FJORD_TEST_MARIADB_PORT").expect("MariaDB port");
    let relay = SocketRelay::start(f.dir.path().join("mysqld.sock"), socket);
    let relay_path = relay.path.to_str().expect("utf-8").to_string();
    let port = common::free_port().to_string();
    let create = |f: &Fjord, domain: &str| -> i64 {
        f.json(&["site", "create", domain, "--platform", "d10", "--db-engine", "mariadb"])["id"]
            .as_i64()
            .expect("task id")
    };
    let plan = {
        f.start_serve(&[]);
        #[rustfmt::skip]
        f.ok(&["server", "add", "localhost", "--web", "nginx", "--http-port", &port, "--listen", "127.0.0.1",
            "--database", "mariadb", "--mariadb-socket", &relay_path, "--mariadb-port", &tcp, "--wait"]);
        fixture_platform(&f, "drupal10", "d10");
        f.ok(&["--dry-run", "site", "create", "outage.example", "--platform", "d10", "--db-engine", "mariadb"])
    };
    let step = plan
        .lines()
        .filter(|l| l.starts_with('['))
        .position(|l| l.contains("create mariadb database"))
        .expect("database step");
    let fault = format!("site-install:{step}:fail");

    // 1. The retry drops them once the server is back.
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &fault), ("FJORD_UNDO_RETRY_SECONDS", "1")]);
    relay.allow_only(2); // the check and the CREATE DATABASE get through; the rollback's DROP does not
    let id = create(&f, "outage.example");
    let end = f.wait_task(id, "failed");
    assert!(end["error"].as_str().expect("error").contains("rollback incomplete"), "{end}");
    std::thread::sleep(std::time::Duration::from_millis(1500)); // a retry or two while still down
    assert_eq!(
        mariadb_databases("outageexample"),
        ["outageexample"],
        "the outage should leave the database: {}",
        f.ok(&["task", "log", &id.to_string()])
    );
    relay.up();
    f.wait_until("the database dropped by the retried undo", || mariadb_databases("outageexample").is_empty());
    let log = f.ok(&["task", "log", &id.to_string()]);
    assert!(log.contains("rollback completed on a later try"), "{log}");
    let users = std::process::Command::new("mariadb")
        .arg(format!("--socket={}", std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("socket")))
        .args(["-uroot", "--batch", "--skip-column-names", "-e"])
        .arg("SELECT COUNT(*) FROM mysql.user WHERE user = 'outageexample'")
        .output()
        .expect("mariadb runs");
    assert_eq!(String::from_utf8_lossy(&users.stdout).trim(), "0", "the database user stayed");

    // 2. A delete of the failed site drops them itself; the retry then stands back for good.
    f.stop();
    f.start_serve(&[("FJORD_FAULT", &fault), ("FJORD_UNDO_RETRY_SECONDS", "3600")]);
    relay.allow_only(2);
    let id = create(&f, "outage2.example");
    f.wait_task(id, "failed");
    assert_eq!(mariadb_databases("outage2example"), ["outage2example"]);
    relay.up();
    f.ok(&["site", "delete", "outage2.example", "--force", "--wait"]);
    assert!(mariadb_databases("outage2example").is_empty(), "the delete left the database");
    f.stop();
    f.start_serve(&[("FJORD_UNDO_RETRY_SECONDS", "1")]);
    f.wait_until("the retry stands back", || f.ok(&["task", "log", &id.to_string()]).contains("no longer retried"));
}

/// The number a task's log gives for the processes it started.
fn processes_started(out: &str) -> u64 {
    let line = out.lines().find(|l| l.contains("processes started: ")).unwrap_or_else(|| panic!("no count: {out}"));
    line.rsplit(' ').next().and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("bad count: {line}"))
}

/// The ctime of every entry under `dir`: what a chown (or any rewrite of an inode) changes.
fn ctimes(dir: &Path) -> Vec<(String, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, out: &mut Vec<(String, i64, i64)>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let m = e.path().symlink_metadata().expect("lstat");
            out.push((e.path().to_string_lossy().into_owned(), m.ctime(), m.ctime_nsec()));
            if m.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// A verify that finds everything in place starts no process (no `chown -R`, no `touch`, no database
/// client) and rewrites no inode of a site's files; a change of the site's user is walked once, in
/// Fjord's process, and the task log says so.
#[test]
fn a_verify_that_changes_nothing_starts_no_process() {
    if !services_available() {
        return;
    }
    let (f, _port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    let mut sites = Vec::new();
    for engine in engines(&f).into_iter().filter(|e| *e != "postgres") {
        for shared in [false, true] {
            let domain = format!("noop-{engine}{}.example", if shared { "-shared" } else { "" });
            f.ok(&["site", "create", &domain, "--platform", "d10", "--db-engine", engine, "--wait"]);
            if shared {
                let out = f
                    .command(&["site", "isolation", &domain, "--mode", "shared", "--wait"])
                    .env("FJORD_ALLOW_SHARED_POOL", "1")
                    .output()
                    .expect("fjord runs");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
            sites.push(domain);
        }
    }
    assert!(sites.iter().any(|d| d.contains("mariadb")), "the test needs MariaDB");
    // Some content in a site's files, nested.
    let files = |d: &str| f.dir.path().join(format!("code/d10/web/sites/{d}/files"));
    let files_of_first = files(&sites[0]);
    assert!(files_of_first.is_dir(), "{}", files_of_first.display());
    std::fs::create_dir_all(files_of_first.join("a/b")).expect("mkdir");
    std::fs::write(files_of_first.join("a/b/upload.txt"), "x").expect("write");

    // The first verify may change things (the upload above is root's); the second finds it all done.
    f.ok(&["server", "verify", "localhost", "--wait"]);
    let before: Vec<_> = sites.iter().map(|d| ctimes(&files(d))).collect();
    let out = f.ok(&["server", "verify", "localhost", "--wait"]);
    assert_eq!(processes_started(&out), 0, "a server verify that changes nothing started processes:\n{out}");
    for d in &sites {
        let out = f.ok(&["site", "verify", d, "--wait"]);
        assert_eq!(processes_started(&out), 0, "{d}: a verify that changes nothing started processes:\n{out}");
        assert!(!out.contains("walked"), "{d}: a tree already owned was walked:\n{out}");
    }
    let after: Vec<_> = sites.iter().map(|d| ctimes(&files(d))).collect();
    assert_eq!(before, after, "a verify that changes nothing rewrote files");

    // A new user for a site: the first verify walks its trees (in process) and says so.
    let shared = sites.iter().find(|d| d.ends_with("-shared.example")).expect("a shared site");
    let out = f.ok(&["site", "isolation", shared, "--mode", "site", "--wait"]);
    assert!(out.contains("walked"), "{shared}: {out}");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(files(shared)).expect("stat").uid();
    assert_ne!(owner, 33, "{shared}: files still the web user's");
    let out = f.ok(&["site", "verify", shared, "--wait"]);
    assert_eq!(processes_started(&out), 0, "{shared}: {out}");
}

/// `server stop` stops Fjord's own web-server and PHP-FPM masters (the sites stop being served, as
/// after a reboot); `server start` brings them back, and on running masters is only a reload.
#[test]
fn server_stop_and_start_take_the_masters_down_and_up() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    f.ok(&["site", "create", "updown.example", "--platform", "d10", "--db-engine", "sqlite", "--wait"]);
    assert_eq!(f.get(port, "updown.example", "/").status, 200);
    let plan = f.ok(&["--dry-run", "server", "stop", "localhost"]);
    assert!(plan.contains("stop the nginx master") && plan.contains("stop the PHP-FPM"), "{plan}");
    f.ok(&["server", "stop", "localhost", "--wait"]);
    let pids = || {
        std::fs::read_dir(f.state.join("run"))
            .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "pid")).count())
            .unwrap_or(0)
    };
    assert_eq!(pids(), 0, "a master's pid file is left");
    assert!(f.not_served(port, "updown.example"), "still served after server stop");
    // Stopping what is stopped is fine.
    f.ok(&["server", "stop", "localhost", "--wait"]);
    f.ok(&["server", "start", "localhost", "--wait"]);
    assert_eq!(f.get(port, "updown.example", "/").status, 200);
    f.ok(&["server", "start", "localhost", "--wait"]);
    assert_eq!(f.get(port, "updown.example", "/").status, 200);
}
