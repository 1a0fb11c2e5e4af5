//! Codebases as people bring them: a platform must prove it can run before a site goes on it (its
//! `vendor/` complete, the PHP it needs), each drush runs the way it works, an installer step counts
//! only when its effect is there, and a database is proven the way sites reach it. The classes are
//! built from the Drupal 10 fixture by `common::shape`. Needs `FJORD_TEST_SERVICES=1`
//! (`scripts/test.sh`).
#![allow(clippy::disallowed_methods)]

mod common;

use common::{fixture_copy, free_port, services_available, shape, Fjord};

fn site_count(f: &Fjord) -> usize {
    f.json(&["site", "list"]).as_array().expect("list").len()
}

#[test]
fn an_incomplete_vendor_fails_platform_verify_naming_the_packages() {
    if !services_available() {
        return;
    }
    let (f, _) = Fjord::with_server();
    let root = fixture_copy(&f, "drupal10", "partial");
    shape::incomplete_vendor(&root);
    let out = f.run(&["platform", "add", "partial", "--path", &root.to_string_lossy(), "--wait"]);
    assert!(!out.status.success(), "an incomplete vendor/ verified");
    let task = f.json(&["task", "list"])[0].clone();
    let log = f.ok(&["task", "log", &task["id"].to_string()]);
    let said = format!("{}{}{log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("vendor/ is incomplete"), "{said}");
    assert!(said.contains("acme/widgets (no vendor/acme/widgets)"), "the missing package is not named: {said}");
    assert!(said.contains("acme/gadgets (missing autoloaded file helpers.php)"), "{said}");

    // Once composer has brought the files, the same codebase verifies.
    shape::complete_vendor(&root);
    f.ok(&["platform", "verify", "partial", "--wait"]);
}

#[test]
fn a_codebase_needing_newer_php_is_recorded_and_sites_are_refused_up_front() {
    if !services_available() {
        return;
    }
    let (f, _) = Fjord::with_server();
    // The machine's runtimes: their extensions are known (`-m` of their CLI).
    let runtimes = f.json(&["server", "php", "list", "localhost"]);
    let extensions = runtimes[0]["extensions"].as_array().expect("extensions");
    assert!(extensions.iter().any(|e| e == "pdo_sqlite"), "{runtimes}");
    let table = f.ok(&["server", "php", "list", "localhost"]);
    assert!(table.contains("pdo_sqlite"), "the extensions column is empty: {table}");

    // Drupal 11 needing PHP 8.3: the machine has 8.2 only.
    let d11 = fixture_copy(&f, "drupal10", "d11");
    shape::drupal11(&d11, "8.3", &["pdo"]);
    f.ok(&["platform", "add", "d11", "--path", &d11.to_string_lossy(), "--wait"]);
    let details = f.json(&["platform", "show", "d11"])["platform"]["details"].clone();
    let sources: Vec<&str> = details["php_requirements"]
        .as_array()
        .expect("requirements")
        .iter()
        .filter_map(|r| r["source"].as_str())
        .collect();
    assert_eq!(
        sources,
        ["web/core/composer.json", "vendor/composer/platform_check.php", "Drupal::MINIMUM_PHP"],
        "{details}"
    );
    assert!(details["php_requirement"].as_str().is_some_and(|r| r.contains(">=8.3")), "{details}");
    assert_eq!(details["php_ok"], false, "{details}");
    assert_eq!(details["php_runtimes"], serde_json::json!([]), "{details}");
    assert_eq!(details["php_extensions"], serde_json::json!(["pdo"]), "{details}");
    let shown = f.ok(&["platform", "show", "d11"]);
    assert!(shown.contains("NONE") && shown.contains("Drupal::MINIMUM_PHP"), "{shown}");

    // A site on it is refused before anything is recorded, saying what would do.
    let before = f.state_summary();
    let err = f.fails(&["site", "create", "new.example", "--platform", "d11", "--db-engine", "sqlite", "--wait"]);
    assert!(err.contains("cannot run on PHP runtime 8.2") && err.contains(">=8.3"), "{err}");
    assert!(err.contains("fjord server php add localhost"), "{err}");
    assert_eq!(f.state_summary(), before, "a refused create recorded something");

    // Nor may a site move or be cloned onto it.
    let d10 = fixture_copy(&f, "drupal10", "d10");
    f.ok(&["platform", "add", "d10", "--path", &d10.to_string_lossy(), "--wait"]);
    f.ok(&["site", "create", "old.example", "--platform", "d10", "--db-engine", "sqlite", "--wait"]);
    let sites = site_count(&f);
    let err = f.fails(&["site", "migrate", "old.example", "--to", "d11", "--wait"]);
    assert!(err.contains("cannot run on PHP runtime 8.2"), "{err}");
    let err = f.fails(&["site", "clone", "old.example", "copy.example", "--platform", "d11", "--wait"]);
    assert!(err.contains("cannot run on PHP runtime 8.2"), "{err}");
    assert_eq!(site_count(&f), sites);
    assert_eq!(
        f.json(&["site", "show", "old.example"])["site"]["platform_id"],
        f.json(&["platform", "show", "d10"])["platform"]["id"]
    );

    // A requirement the runtime meets, with an extension it lacks: refused, naming the extension.
    let ext = fixture_copy(&f, "drupal10", "needsext");
    shape::drupal11(&ext, "8.1", &["pdo", "fjordnosuchext"]);
    f.ok(&["platform", "add", "needsext", "--path", &ext.to_string_lossy(), "--wait"]);
    let err = f.fails(&["site", "create", "ext.example", "--platform", "needsext", "--db-engine", "sqlite"]);
    assert!(err.contains("fjordnosuchext"), "{err}");

    // And one the runtime satisfies installs as usual.
    let fits = fixture_copy(&f, "drupal10", "fits");
    shape::drupal11(&fits, "8.1", &["pdo"]);
    f.ok(&["platform", "add", "fits", "--path", &fits.to_string_lossy(), "--wait"]);
    assert_eq!(
        f.json(&["platform", "show", "fits"])["platform"]["details"]["php_runtimes"],
        serde_json::json!(["8.2"])
    );
    f.ok(&["site", "create", "fits.example", "--platform", "fits", "--db-engine", "sqlite", "--wait"]);
}

#[test]
fn drush_13_runs_by_its_php_entry_point() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    let root = fixture_copy(&f, "drupal10", "d13");
    shape::drush13(&root);
    // What Fjord used to do: PHP prints the proxy script and exits 0.
    let printed =
        std::process::Command::new("php").arg(root.join("vendor/bin/drush")).arg("status").output().expect("php");
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.status.success() && text.contains("exec \"$dir/drush\""), "{text}");

    f.ok(&["platform", "add", "d13", "--path", &root.to_string_lossy(), "--wait"]);
    let details = f.json(&["platform", "show", "d13"])["platform"]["details"].clone();
    assert_eq!(details["drush"], "vendor/drush/drush/drush.php", "{details}");
    let out = f.ok(&["site", "create", "d13.example", "--platform", "d13", "--db-engine", "sqlite", "--wait"]);
    assert!(out.contains("succeeded"), "{out}");
    let page = f.get(port, "d13.example", "/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<h1>d13.example</h1>"), "{}", page.body);
    // The other drush commands take the same way: a login link, cron.
    let link = f.json(&["site", "login-link", "d13.example"]);
    assert!(link["url"].as_str().is_some_and(|u| u.contains("/user/reset/")), "{link}");
    f.ok(&["site", "cron", "d13.example", "--wait"]);
}

#[test]
fn an_installer_that_exits_0_without_installing_fails_the_install() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    let root = fixture_copy(&f, "drupal10", "idle");
    shape::idle_installer(&root);
    f.ok(&["platform", "add", "idle", "--path", &root.to_string_lossy(), "--wait"]);
    let engines: Vec<&str> = ["sqlite", "mariadb", "postgres"].into_iter().filter(|e| f.has_engine(e)).collect();
    for engine in engines {
        let domain = format!("idle-{engine}.example");
        let out = f.run(&["site", "create", &domain, "--platform", "idle", "--db-engine", engine, "--wait"]);
        assert!(!out.status.success(), "{engine}: an installer that did nothing passed");
        let task = f.json(&["task", "list"])[0].clone();
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stderr), f.ok(&["task", "log", &task["id"].to_string()]));
        assert!(said.contains("check the installer created the site's tables (key_value, users)"), "{engine}: {said}");
        assert_ne!(f.get(port, &domain, "/").status, 200, "{engine}: served although not installed");
    }
}

#[test]
fn server_add_proves_mariadb_the_way_sites_connect() {
    if !services_available() {
        return;
    }
    let sock = std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("scripts/test.sh runs MariaDB");
    let db_port = std::env::var("FJORD_TEST_MARIADB_PORT").expect("its TCP port");
    let mut f = Fjord::new(None);
    f.start_serve(&[]);
    // The admin answers through the socket, but nothing listens on the port the sites would use.
    let closed = free_port().to_string();
    let add = |port: &str| {
        f.run(&[
            "server",
            "add",
            "dbonly",
            "--http",
            "none",
            "--database",
            "mariadb",
            "--mariadb-socket",
            &sock,
            "--mariadb-port",
            port,
            "--wait",
        ])
    };
    let out = add(&closed);
    assert!(!out.status.success(), "a MariaDB the sites cannot reach was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("sites connect to 127.0.0.1:{closed}")) && err.contains(&sock), "{err}");
    assert_eq!(f.json(&["server", "list"]), serde_json::json!([]), "a refused server was recorded");
    let secrets: Vec<String> = std::fs::read_dir(f.state.join("secrets"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(secrets.iter().all(|n| !n.contains("probe")), "the probe's password was kept: {secrets:?}");
    // The port it listens on: accepted, and the throwaway account is gone.
    let out = add(&db_port);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let users = std::process::Command::new("mariadb")
        .args(["--socket", &sock, "-uroot", "--batch", "--skip-column-names", "-e"])
        .arg("SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'fjordprobe%'")
        .output()
        .expect("mariadb runs");
    assert_eq!(String::from_utf8_lossy(&users.stdout).trim(), "0");
    f.stop();
}
