//! Isolation, proven by attack: PHP planted in site A's own code and requested through the real nginx
//! and PHP-FPM tries to reach site B (its settings, files, database, directories, PHP-FPM socket, and
//! a symlink into B's private files). With each site isolated every attempt fails; with the two sites
//! deliberately mis-configured to share the web server's user without `open_basedir`, every attempt
//! succeeds — so the test can see a leak. Needs `FJORD_TEST_SERVICES=1` (`scripts/test.sh`).
#![allow(clippy::disallowed_methods)]

mod common;

use common::{fixture, fixture_platform, services_available, Fjord};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where the two sites keep what the attacks go after.
struct Paths {
    platform_sites: PathBuf,
    state_sites: PathBuf,
    run: PathBuf,
}

impl Paths {
    fn of(f: &Fjord) -> Paths {
        Paths {
            platform_sites: f.dir.path().join("code/d10/web/sites"),
            state_sites: f.state.join("sites"),
            run: f.state.join("run"),
        }
    }
}

fn engine(f: &Fjord) -> &'static str {
    if f.has_engine("mariadb") {
        "mariadb"
    } else {
        "sqlite"
    }
}

/// What the attack script gets to name a site's database: the MariaDB name, or the SQLite file.
fn db_ref(f: &Fjord, domain: &str) -> String {
    let site = f.json(&["site", "show", domain])["site"].clone();
    let name = site["db_name"].as_str().expect("db name").to_string();
    if site["db_engine"] == "sqlite" {
        f.state.join("sites").join(domain).join("db").join(format!("{name}.sqlite")).to_string_lossy().into_owned()
    } else {
        name
    }
}

/// Two sites on the Drupal 10 fixture platform, B with a public and a private file of its own, and the
/// attack script planted in A's site-level module directory.
fn two_sites(f: &Fjord, a: &str, b: &str) {
    fixture_platform(f, "drupal10", "d10");
    for d in [a, b] {
        f.ok(&["site", "create", d, "--platform", "d10", "--db-engine", engine(f), "--wait"]);
    }
    let p = Paths::of(f);
    std::fs::write(p.platform_sites.join(b).join("files/secret-b.txt"), "public file of b").expect("write");
    std::fs::write(p.state_sites.join(b).join("private/secret.txt"), "secret of b").expect("write");
    plant(f, a);
}

fn plant(f: &Fjord, a: &str) {
    let modules = Paths::of(f).platform_sites.join(a).join("modules");
    std::fs::create_dir_all(&modules).expect("mkdir");
    std::fs::copy(fixture("../attack/attack.php"), modules.join("attack.php")).expect("copy");
}

/// Requests the attack script through A's vhost; returns what succeeded.
fn attack(f: &Fjord, port: u16, a: &str, b: &str) -> Value {
    let p = Paths::of(f);
    let s = |x: PathBuf| x.to_string_lossy().into_owned();
    let targets = json!({
        "a": {
            "settings": s(p.platform_sites.join(a).join("settings.php")),
            "files": s(p.platform_sites.join(a).join("files")),
            "tmp": s(p.state_sites.join(a).join("tmp")),
            "db": db_ref(f, a),
        },
        "b": {
            "settings": s(p.platform_sites.join(b).join("settings.php")),
            "files": s(p.platform_sites.join(b).join("files")),
            "private_dir": s(p.state_sites.join(b).join("private")),
            "private_file": s(p.state_sites.join(b).join("private/secret.txt")),
            "db": db_ref(f, b),
            "socket": s(p.run.join(format!("php-{b}.sock"))),
        },
    });
    let t: String = targets
        .to_string()
        .bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect();
    let answer = f.get(port, a, &format!("/sites/{a}/modules/attack.php?t={t}"));
    assert_eq!(answer.status, 200, "the attack script must run as A's PHP: {answer:?}");
    let r: Value = serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body));
    // The script really ran as A and reached A's own things: its failures below are isolation.
    assert_eq!(r["own_settings"], true, "A reads its own settings: {r}");
    assert_eq!(r["own_tmp_write"], true, "A writes its own temp dir: {r}");
    assert_eq!(r["own_db"], true, "A opens its own database: {r}");
    r
}

/// What a symlink A planted in its public files serves through the web server.
fn symlink_through_nginx(f: &Fjord, port: u16, a: &str) -> common::Answer {
    f.get(port, a, &format!("/sites/{a}/files/link-to-b.txt"))
}

const ATTACKS: [&str; 7] =
    ["read_settings", "list_files", "open_db", "write_files", "write_private", "socket", "symlink"];

#[test]
fn isolated_sites_resist_every_attack_from_a_neighbour() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    let (a, b) = ("iso-a.test", "iso-b.test");
    two_sites(&f, a, b);
    let r = attack(&f, port, a, b);
    assert!(r["user"].as_str().is_some_and(|u| u.starts_with("fj")), "A's PHP runs as its own user: {r}");
    assert_eq!(r["read_settings"], false, "A read B's settings: {r}");
    assert_eq!(r["list_files"], false, "A listed B's files: {r}");
    assert_eq!(r["open_db"], false, "A opened B's database: {r}");
    assert_eq!(r["write_files"], false, "A wrote into B's files: {r}");
    assert_eq!(r["write_private"], false, "A wrote into B's private files: {r}");
    assert_eq!(r["socket"], false, "A connected to B's PHP-FPM socket: {r}");
    assert_eq!(r["symlink"], false, "A's PHP read B's private file through a symlink: {r}");
    // (PHP's own is_link() is bound by open_basedir too: look from outside.)
    let link = Paths::of(&f).platform_sites.join(a).join("files/link-to-b.txt");
    assert!(std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()), "no symlink planted: {r}");
    let through = symlink_through_nginx(&f, port, a);
    assert!(
        through.status != 200 && !through.body.contains("secret of b"),
        "nginx served B's private file through A's symlink: {through:?}"
    );
    let p = Paths::of(&f);
    assert!(!p.platform_sites.join(b).join("files/written-by-a.txt").exists());
    assert!(!p.state_sites.join(b).join("private/written-by-a.txt").exists());

    // Everything under the state directory, tried by A's user: Fjord's database, logs, backups, secrets
    // and undo data, certificates' keys and B's files all stay closed; what A may read is its own, the
    // web server's public pages, code, and generated configs (no secret in them).
    let leaks = readable_by(&f, a, &f.state)
        .into_iter()
        .filter(|path| {
            let rel = path.strip_prefix(&format!("{}/", f.state.display())).unwrap_or(path);
            let parts: Vec<&str> = rel.split('/').collect();
            let allowed = match parts.as_slice() {
                ["sites", site, ..] if *site == a => true,
                ["sites", _, "bin" | "mu-plugins", ..] | ["sites"] | ["sites", _] => true,
                ["static" | "acme" | "run" | "servers" | "platforms", ..] => true,
                ["tls", _, file] => *file != "key.pem",
                ["tls"] | ["tls", _] => true,
                _ => false,
            };
            !allowed
        })
        .collect::<Vec<_>>();
    assert!(leaks.is_empty(), "A's user can read these: {leaks:#?}");

    // Settings: root's, read by the site's own group only; the web server never needs them.
    use std::os::unix::fs::MetadataExt;
    let settings = std::fs::metadata(p.platform_sites.join(b).join("settings.php")).expect("settings");
    assert_eq!((settings.uid(), settings.mode() & 0o777), (0, 0o440), "B's settings owner and mode");
    // B still serves its public files (nginx is in B's group) and runs its PHP.
    let public = f.get(port, b, &format!("/sites/{b}/files/secret-b.txt"));
    assert_eq!((public.status, public.body.as_str()), (200, "public file of b"));
    assert_eq!(f.get(port, b, "/").status, 200);

    // PHP in a files directory is never run, with or without a path after it.
    std::fs::write(p.platform_sites.join(a).join("files/run-me.php"), "<?php echo 'RAN' . 'PHP';").expect("write");
    for path in [format!("/sites/{a}/files/run-me.php"), format!("/sites/{a}/files/run-me.php/x")] {
        let r = f.get(port, a, &path);
        assert!(r.status == 403 && !r.body.contains("RANPHP"), "{path}: {r:?}");
    }

    // The pools are the sites' own: user, group, socket owner and open_basedir.
    let pools = f.state.join("servers/localhost/php");
    let pool = std::fs::read_dir(&pools)
        .expect("php dir")
        .flatten()
        .map(|v| v.path().join("pool.d").join(format!("{a}.conf")))
        .find(|p| p.exists())
        .expect("A's pool");
    let pool = std::fs::read_to_string(pool).expect("pool");
    assert!(pool.contains("listen.owner = www-data") && pool.contains("listen.mode = 0660"), "{pool}");
    assert!(pool.contains("php_admin_value[open_basedir]"), "{pool}");
    assert!(!pool.contains("user = www-data"), "{pool}");

    // Shell access in the site's context: its own user, its PHP first on PATH, its root; and drush
    // through the alias Fjord wrote, run as that user, reads the site's settings.
    let as_b = f.ok(&["site", "exec", b, "--", "id", "-un"]);
    assert!(as_b.trim().starts_with("fj") && as_b.trim() != r["user"].as_str().expect("user"), "{as_b}");
    let php = f.ok(&["site", "exec", b, "--", "sh", "-c", "command -v php; pwd"]);
    assert_eq!(
        php.lines().collect::<Vec<_>>(),
        [p.state_sites.join(b).join("bin/php").to_string_lossy(), f.dir.path().join("code/d10/web").to_string_lossy()],
        "{php}"
    );
    let out = f.ok(&["site", "aliases", b, "--wait"]);
    // Drush 12 names have no dots: the alias of b.example is @b_example.
    let alias = b.replace('.', "_");
    assert!(out.contains(&format!("drush alias @{alias}: ")) && out.contains(&format!("{alias}.site.yml")), "{out}");
    let status = f.ok(&["site", "exec", b, "--", "drush", &format!("@{alias}"), "status", "--format=json"]);
    let status: Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(status["db-status"], "Connected", "{status}");
    assert_eq!(status["bootstrap"], "Successful", "{status}");
    assert_eq!(status["site"], format!("sites/{b}"), "{status}");
    // The same user cannot read its neighbour's settings from a shell either.
    let cat =
        f.run(&["site", "exec", b, "--", "cat", &p.platform_sites.join(a).join("settings.php").to_string_lossy()]);
    assert!(!cat.status.success(), "B's shell read A's settings");

    // Delete removes the site's user with the site.
    let user = r["user"].as_str().expect("user").to_string();
    f.ok(&["site", "disable", a, "--wait"]);
    f.ok(&["site", "delete", a, "--wait"]);
    assert!(!passwd_has(&user), "{user} left behind by delete");
}

fn passwd_has(user: &str) -> bool {
    std::fs::read_to_string("/etc/passwd").expect("passwd").lines().any(|l| l.split(':').next() == Some(user))
}

#[test]
fn a_shared_pool_leaks_and_the_attacks_see_it() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    let (a, b) = ("leak-a.test", "leak-b.test");
    two_sites(&f, a, b);
    // Refused without the test switch: no one sets this up by accident.
    let err = f.fails(&["site", "isolation", a, "--mode", "shared"]);
    assert!(err.contains("only for tests"), "{err}");
    for d in [a, b] {
        let out = f
            .command(&["site", "isolation", d, "--mode", "shared", "--wait"])
            .env("FJORD_ALLOW_SHARED_POOL", "1")
            .output()
            .expect("fjord runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let r = attack(&f, port, a, b);
    assert_eq!(r["user"], "www-data", "{r}");
    for name in ATTACKS {
        assert_eq!(r[name], true, "with a shared pool the attack {name} should succeed: {r}");
    }
    let through = symlink_through_nginx(&f, port, a);
    assert!(through.body.contains("secret of b"), "{through:?}");

    // And back: verify isolates both again, and the same attacks fail.
    for d in [a, b] {
        f.ok(&["site", "isolation", d, "--mode", "site", "--wait"]);
    }
    let r = attack(&f, port, a, b);
    for name in ATTACKS {
        assert_eq!(r[name], false, "isolated again, the attack {name} should fail: {r}");
    }
}

/// GETs `/` of `host` from the test's nginx; the status (0: no answer).
fn status_of(port: u16, host: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-H"])
        .arg(format!("Host: {host}:{port}"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn a_site_moves_between_php_runtimes_without_a_failed_request() {
    if !services_available() {
        return;
    }
    let (f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    let d = "runtime.test";
    f.ok(&["site", "create", d, "--platform", "d10", "--db-engine", "sqlite", "--wait"]);
    // A second runtime on the same binary: a second PHP-FPM master.
    let list = f.json(&["server", "php", "list", "localhost"]);
    let default = list[0]["version"].as_str().expect("version").to_string();
    let binary = list[0]["binary"].as_str().expect("binary").to_string();
    f.ok(&["server", "php", "add", "localhost", "alt", "--binary", &binary, "--wait"]);
    let list = f.json(&["server", "php", "list", "localhost"]);
    assert_eq!(list[1]["name"], "alt", "{list}");
    assert_eq!(list[1]["version"], default.as_str(), "{list}");
    let exts: Vec<&str> =
        list[1]["extensions"].as_array().expect("extensions").iter().filter_map(|e| e.as_str()).collect();
    assert!(exts.contains(&"pdo_sqlite") && exts.contains(&"json"), "{list}");
    f.fails(&["server", "php", "add", "localhost", "alt", "--binary", &binary]);
    f.fails(&["site", "php", d, "--runtime", "nope"]);

    // Requests in a loop while the site moves to the other master and back: none may fail.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(status_of(port, "runtime.test"));
            }
            statuses
        })
    };
    let pools = f.state.join("servers/localhost/php");
    f.ok(&["site", "php", d, "--runtime", "alt", "--wait"]);
    assert!(pools.join(format!("alt/pool.d/{d}.conf")).exists());
    assert!(!pools.join(format!("{default}/pool.d/{d}.conf")).exists(), "the old pool stayed");
    // A runtime that runs a site cannot go.
    let err = f.fails(&["server", "php", "remove", "localhost", "alt"]);
    assert!(err.contains(d), "{err}");
    f.ok(&["site", "php", d, "--runtime", &default, "--wait"]);
    assert!(pools.join(format!("{default}/pool.d/{d}.conf")).exists());
    assert!(!pools.join(format!("alt/pool.d/{d}.conf")).exists());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.join().expect("load thread");
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(statuses.len() > 10 && failed.is_empty(), "{} requests, failed: {failed:?}", statuses.len());
    f.ok(&["server", "php", "remove", "localhost", "alt", "--wait"]);
    assert_eq!(f.json(&["server", "php", "list", "localhost"]).as_array().map(|a| a.len()), Some(1));
}

/// The code a site's bootstraps load, planted where each app loads it: it writes a marker where only
/// root may write, and notes (where the site may write) that it ran, so the test is not vacuous.
fn root_probe(root_only: &Path, ran: &Path) -> String {
    format!(
        "<?php\n@file_put_contents('{}', 'root ran site code');\n@file_put_contents('{}', 'ran', FILE_APPEND);\n",
        root_only.join("ran-as-root").display(),
        ran.display()
    )
}

/// A site's own code never runs as root: as the site's user, its settings cannot be changed, and every
/// task that bootstraps the site (install, login link, cron, verify, backup, restore, clone, migrate,
/// sync) runs the code it loads as the site's user. The probe stands for any code the site controls
/// (a module, a compiled template, a settings include): run as root, it leaves a marker.
#[test]
fn a_sites_own_code_never_runs_as_root() {
    if !services_available() {
        return;
    }
    let (f, _port) = Fjord::with_server();
    let root_only = f.dir.path().join("root-only");
    std::fs::create_dir_all(&root_only).expect("mkdir");
    let marker = root_only.join("ran-as-root");
    let mut cases: Vec<(&str, &str)> = vec![("drupal10", "d10"), ("drupal7", "d7")];
    let wordpress = Path::new("/usr/share/wordpress/wp-includes/version.php").exists() && f.has_engine("mariadb");
    if wordpress {
        cases.push(("wordpress", "wp"));
    } else {
        eprintln!("WordPress case skipped: Debian's wordpress package or MariaDB missing");
    }
    for (fixture_name, platform) in cases {
        let domain = format!("root-{platform}.test");
        let (engine, settings) = if platform == "wp" {
            f.ok(&["platform", "add", "wp", "--path", "/usr/share/wordpress", "--wait"]);
            ("mariadb", PathBuf::from(format!("/etc/wordpress/config-{domain}.php")))
        } else {
            fixture_platform(&f, fixture_name, platform);
            let sites =
                f.dir.path().join("code").join(platform).join(if platform == "d10" { "web/sites" } else { "sites" });
            (engine(&f), sites.join(&domain).join("settings.php"))
        };
        f.ok(&["site", "create", &domain, "--platform", platform, "--db-engine", engine, "--wait"]);
        let user = f.ok(&["site", "exec", &domain, "--", "id", "-un"]).trim().to_string();
        assert!(user.starts_with("fj"), "{user}");

        // The settings are root's, readable by the site's group only: the site cannot change them.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&settings).expect("settings");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o440), "{}", settings.display());
        let before = std::fs::read(&settings).expect("read");
        let path = settings.to_string_lossy().to_string();
        for attempt in [vec!["chmod", "u+w", &path], vec!["sh", "-c", "echo '<?php system(\"id\");' >> \"$0\"", &path]]
        {
            let mut argv = vec!["site", "exec", &domain, "--"];
            argv.extend(attempt.iter().copied());
            assert!(!f.run(&argv).status.success(), "the site's user could {attempt:?}");
        }
        assert_eq!(std::fs::read(&settings).expect("read"), before, "the settings changed");

        // Code the site's bootstraps load (see root_probe), then every task that bootstraps it.
        let ran = f.state.join("sites").join(&domain).join("tmp/probe-ran");
        let probe = root_probe(&root_only, &ran);
        let load = if platform == "wp" {
            f.state.join("sites").join(&domain).join("mu-plugins/probe.php")
        } else {
            settings.with_file_name("settings.local.php")
        };
        std::fs::write(&load, &probe).expect("plant");
        let copy = format!("copy-{platform}.test");
        let tasks: Vec<Vec<&str>> = vec![
            vec!["site", "login-link", &domain],
            vec!["site", "cron", &domain, "--wait"],
            vec!["site", "verify", &domain, "--wait"],
            vec!["site", "backup", &domain, "--wait"],
            vec!["site", "clone", &domain, &copy, "--wait"],
            vec!["site", "sync", &domain, &copy, "--db", "--files", "--wait"],
        ];
        for t in tasks {
            f.ok(&t);
            assert!(!marker.exists(), "{t:?} ran {domain}'s code as root");
        }
        let backups = f.json(&["backup", "list", "--site", &domain]);
        let backup = backups.as_array().and_then(|b| b.first()).map(|b| b["id"].to_string()).expect("a backup");
        f.ok(&["site", "restore", &domain, "--backup", &backup, "--wait"]);
        assert!(!marker.exists(), "a restore ran {domain}'s code as root");
        if platform != "wp" {
            // A migrate to other code checks and updates the database with the site's code.
            let other = format!("{platform}-new");
            fixture_platform(&f, fixture_name, &other);
            f.ok(&["site", "migrate", &domain, "--to", &other, "--wait"]);
            assert!(!marker.exists(), "a migrate ran {domain}'s code as root");
        }
        let ran = std::fs::read_to_string(&ran).unwrap_or_default();
        assert!(ran.contains("ran"), "the probe in {domain}'s code never ran: the test proves nothing");
    }
}

/// Every file and directory under `dir` (as root sees them) that the site's user can read.
fn readable_by(f: &Fjord, domain: &str, dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.to_string_lossy().into_owned());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, out);
            }
        }
    }
    let mut all = Vec::new();
    walk(dir, &mut all);
    // One shell as the site's user tests them all with access(2).
    let mut argv =
        vec!["site", "exec", domain, "--", "sh", "-c", "for p; do [ -r \"$p\" ] && echo \"$p\"; done; true", "sh"];
    argv.extend(all.iter().map(String::as_str));
    let out = f.run(&argv);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}
