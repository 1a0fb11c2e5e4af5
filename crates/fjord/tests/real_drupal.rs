//! Opt-in: real Drupal codebases installed and served by Fjord, on every database engine the test
//! environment runs. The fixture platforms of `sites.rs` stand in for Drupal in CI; these tests take
//! whole codebases (vendor/ and drush included) that live outside the repository:
//!
//! - `FJORD_REAL_D10=/path/to/drupal10` — a composer project with `web/` and `vendor/bin/drush`
//!   (e.g. a checkout of JMAConsulting/sace, Drupal 10.6 with drush 12);
//! - `FJORD_REAL_D7=/path/to/drupal7` — a Drupal 7 docroot (e.g. pantheon-systems/drops-7).
//!
//! They also need the real services (`FJORD_TEST_SERVICES=1`); run them through `scripts/test.sh`:
//!
//! ```sh
//! FJORD_REAL_D10=/path/to/sace FJORD_REAL_D7=/path/to/drops-7 \
//!   FJORD_TEST_RUN="cargo test -p fjord --test real_drupal -- --nocapture --test-threads 1" \
//!   bash scripts/test.sh
//! ```
//!
//! Each test copies the codebase into its temp dir (Drupal writes site directories into it), adds it
//! as a platform, and runs one site through its whole life on one database engine, over HTTP.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{copy_tree, services_available, Fjord, Load};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One real codebase under test.
struct Real {
    /// The environment variable that names it.
    var: &'static str,
    /// Platform name, also the prefix of the site domains.
    platform: &'static str,
    /// The app Fjord must detect, and the start of its version.
    app: &'static str,
    version_prefix: &'static str,
    /// The web root, relative to the codebase.
    docroot: &'static str,
}

const D10: Real =
    Real { var: "FJORD_REAL_D10", platform: "real10", app: "drupal", version_prefix: "10.", docroot: "web" };

const D7: Real = Real { var: "FJORD_REAL_D7", platform: "real7", app: "drupal7", version_prefix: "7.", docroot: "" };

impl Real {
    fn is_d7(&self) -> bool {
        self.app == "drupal7"
    }

    /// The codebase's path, or `None` (and a note on how to enable the test) when it is not set.
    fn codebase(&self) -> Option<PathBuf> {
        let Some(path) = std::env::var_os(self.var).filter(|p| !p.is_empty()) else {
            eprintln!(
                "skipped: set {}=/path/to/codebase (and run through scripts/test.sh, which sets FJORD_TEST_SERVICES) \
                 to test Fjord against a real Drupal codebase",
                self.var
            );
            return None;
        };
        let path = PathBuf::from(path);
        let index =
            if self.docroot.is_empty() { path.join("index.php") } else { path.join(self.docroot).join("index.php") };
        assert!(
            index.is_file(),
            "{}={} does not look like the codebase: no {}",
            self.var,
            path.display(),
            index.display()
        );
        Some(path)
    }
}

/// The path part of a URL (`http://host:port/a/b` → `/a/b`).
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_else(|| "/".into())
}

/// The value of a response header, case-insensitively.
fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The first stylesheet URL in a page (`href="….css?…"` or D7's `@import url("….css?…")`).
fn stylesheet(body: &str) -> Option<String> {
    let i = body.find(".css")?;
    let start = body[..i].rfind(['"', '\''])? + 1;
    let end = i + body[i..].find(['"', '\''])?;
    Some(body[start..end].replace("&amp;", "&"))
}

/// Starts a fresh browser session: the next request carries no cookies.
fn forget_cookies(f: &Fjord) {
    let _ = std::fs::remove_file(f.dir.path().join("cookies.txt"));
}

/// Everything that helps to understand a failure: failed tasks with their logs, the daemon's log,
/// the web server's and PHP's error logs.
fn diagnostics(f: &Fjord) -> String {
    let mut out = String::new();
    let tasks = f.run(&["--json", "task", "list", "--limit", "30"]);
    if let Ok(serde_json::Value::Array(tasks)) = serde_json::from_slice::<serde_json::Value>(&tasks.stdout) {
        for t in tasks.iter().filter(|t| t["status"] != "succeeded") {
            let id = t["id"].as_i64().unwrap_or(0).to_string();
            let log = f.run(&["task", "log", &id]);
            out.push_str(&format!(
                "\n--- task {id} {} {} ({}): {}\n{}",
                t["kind"],
                t["status"],
                t["target"],
                t["error"],
                String::from_utf8_lossy(&log.stdout)
            ));
        }
    }
    let tail = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    out.push_str(&format!("\n--- daemon log (tail)\n{}", tail(&f.serve_log())));
    // The server's logs, and each site's PHP error log.
    let mut logs: Vec<PathBuf> =
        std::fs::read_dir(f.state.join("log")).into_iter().flatten().flatten().map(|e| e.path()).collect();
    for site in std::fs::read_dir(f.state.join("sites")).into_iter().flatten().flatten() {
        logs.push(site.path().join("log/php-error.log"));
    }
    for path in logs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.trim().is_empty() {
            out.push_str(&format!("\n--- {} (tail)\n{}", path.display(), tail(&text)));
        }
    }
    out
}

/// Runs a fjord command that must succeed; on failure, panics with its output and the diagnostics.
fn ok(f: &Fjord, args: &[&str]) -> String {
    let out = f.run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "fjord {args:?} failed ({}):\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            diagnostics(f)
        );
    }
    stdout
}

/// Asserts with the diagnostics appended.
macro_rules! check {
    ($f:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("{}\n{}", format!($($msg)+), diagnostics($f));
        }
    };
}

/// Copies the codebase into the test's temp dir, adds it as a platform and checks what Fjord detected.
fn add_platform(f: &Fjord, real: &Real, codebase: &Path) -> PathBuf {
    let dest = f.dir.path().join("code").join(real.platform);
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    let t0 = Instant::now();
    copy_tree(codebase, &dest);
    eprintln!("[{}] copied {} in {:.1}s", real.platform, codebase.display(), t0.elapsed().as_secs_f64());
    ok(f, &["platform", "add", real.platform, "--path", &dest.to_string_lossy(), "--wait"]);
    let p = f.json(&["platform", "show", real.platform]);
    let version = p["platform"]["app_version"].as_str().unwrap_or("");
    eprintln!("[{}] detected {} {version}", real.platform, p["platform"]["app"]);
    assert_eq!(p["platform"]["app"], real.app, "{p}");
    assert!(version.starts_with(real.version_prefix), "version {version}: {p}");
    assert_eq!(p["platform"]["docroot"].as_str().unwrap_or(""), real.docroot, "{p}");
    dest
}

/// Status report entries that only say these test machines are offline (or that Fjord's Drupal 7
/// installer leaves update notifications off, as there is nothing to fetch them from).
const NEEDS_NETWORK: &[&str] =
    &["HTTP request status", "Critical security announcements", "Drupal core update status", "Update notifications"];

/// The errors and warnings of a Drupal status report page (`/admin/reports/status`), as
/// `(severity, "Title value…")`; Drupal 10 (Claro) and Drupal 7 (Seven) markup.
fn status_report_problems(body: &str) -> Vec<(&'static str, String)> {
    fn text(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        let words: Vec<&str> = out.split_whitespace().collect();
        words.join(" ").chars().take(240).collect()
    }
    let mut found = Vec::new();
    if body.contains("system-status-report__status-title") {
        // Drupal 10 (Claro, or the system module's own markup under Stark): each entry starts with
        // its title, whose icon class names the severity.
        for chunk in body.split("system-status-report__status-title").skip(1) {
            let Some(end_of_tag) = chunk.find('>') else { continue };
            let severity = if chunk[..end_of_tag].contains("status-icon--error") {
                "error"
            } else if chunk[..end_of_tag].contains("status-icon--warning") {
                "warning"
            } else {
                continue;
            };
            let entry = chunk[end_of_tag + 1..].split("</details>").next().unwrap_or("");
            found.push((severity, text(entry)));
        }
    } else {
        // Drupal 7: `<tr class="error merge-down">` rows, the description in a `merge-up` row.
        for chunk in body.split("<tr class=\"").skip(1) {
            let class = chunk.split('"').next().unwrap_or("");
            let severity = if class.starts_with("error") {
                "error"
            } else if class.starts_with("warning") {
                "warning"
            } else {
                continue;
            };
            if class.contains("merge-up") {
                continue;
            }
            let row = chunk.split("</tr>").next().unwrap_or(chunk);
            let row = row.split("status-title").nth(1).unwrap_or(row);
            let start = row.find('>').map(|i| i + 1).unwrap_or(0);
            found.push((severity, text(&row[start..])));
        }
    }
    found
}

/// Which install profile each engine gets: `standard` (the realistic one) on SQLite, the faster
/// `minimal` on the server engines, so both core profiles are covered.
fn profile(engine: &str) -> &'static str {
    if engine == "sqlite" {
        "standard"
    } else {
        "minimal"
    }
}

/// Whether a database of this name exists on the engine's test server.
fn database_exists(engine: &str, name: &str) -> bool {
    let out = match engine {
        "mariadb" => std::process::Command::new("mariadb")
            .arg(format!("--socket={}", std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("socket")))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", "SHOW DATABASES"])
            .output()
            .expect("mariadb runs"),
        "postgres" => std::process::Command::new("psql")
            .arg(std::env::var("FJORD_TEST_PG_ADMIN_URL").expect("FJORD_TEST_PG_ADMIN_URL"))
            .args(["-X", "-A", "-t", "-c", "SELECT datname FROM pg_database"])
            .output()
            .expect("psql runs"),
        _ => return false,
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == name)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

/// The whole life of one site of a real codebase on one engine, checked over HTTP.
fn real_life_cycle(real: &Real, engine: &str) {
    let Some(codebase) = real.codebase() else { return };
    if !services_available() {
        return;
    }
    let t_all = Instant::now();
    let (f, port) = Fjord::with_server();
    if !f.has_engine(engine) {
        eprintln!("skipped: no {engine} in this test environment (scripts/test.sh starts MariaDB and PostgreSQL)");
        return;
    }
    let code = add_platform(&f, real, &codebase);
    let docroot = if real.docroot.is_empty() { code.clone() } else { code.join(real.docroot) };
    let domain = format!("{}-{engine}.example", real.platform);
    let d = domain.as_str();
    let mut timings: Vec<(&str, f64)> = Vec::new();
    let mut timed = |what: &'static str, t0: Instant| {
        let s = t0.elapsed().as_secs_f64();
        eprintln!("[{d}] {what}: {s:.1}s");
        timings.push((what, s));
    };

    // Install, with an alias (multisite entries and trusted hosts must cover it).
    let alias = format!("www.{d}");
    let t0 = Instant::now();
    let out = ok(
        &f,
        &[
            "site",
            "create",
            d,
            "--platform",
            real.platform,
            "--db-engine",
            engine,
            "--profile",
            profile(engine),
            "--alias",
            &alias,
            "--wait",
        ],
    );
    timed("site create (install)", t0);
    check!(&f, out.contains("succeeded"), "{d}: {out}");
    let site_dir = docroot.join("sites").join(d);
    let settings = site_dir.join("settings.php");
    check!(
        &f,
        std::fs::read_to_string(&settings).unwrap_or_default().contains("Managed by Fjord"),
        "{d}: {} is not Fjord's after the install",
        settings.display()
    );
    // It holds the database password: never world-readable, whatever the installer did to it.
    check!(&f, mode(&settings) & 0o007 == 0, "{d}: settings.php is {:o} after the install", mode(&settings));

    // The front page, built from the database, through Fjord's nginx and PHP-FPM.
    let t0 = Instant::now();
    let a = f.get(port, d, "/");
    timed("first page", t0);
    check!(&f, a.status == 200, "{d}: front page: {} {}\n{}", a.status, a.headers, a.body);
    check!(&f, a.body.contains(d), "{d}: the site name is not on the front page:\n{}", a.body);
    if real.is_d7() {
        check!(
            &f,
            a.body.contains("Drupal 7 (http") || a.headers.contains("X-Generator: Drupal 7"),
            "{d}: no Drupal 7 marker:\n{}\n{}",
            a.headers,
            a.body
        );
        // The vhost routes every path to index.php, so the site was installed with clean URLs.
        check!(&f, !a.body.contains("?q=user"), "{d}: the front page links without clean URLs:\n{}", a.body);
    } else {
        check!(&f, a.headers.contains("X-Generator: Drupal 10"), "{d}: {}", a.headers);
    }
    let a = f.get(port, &alias, "/");
    check!(&f, a.status == 200 && a.body.contains(d), "{alias}: {} {}", a.status, a.headers);
    // A stylesheet the page links to is served (Drupal 10 builds its aggregates on request, into
    // the site's files directory).
    if let Some(css) = stylesheet(&a.body) {
        let c = f.get(port, d, &path_of(&css));
        check!(
            &f,
            c.status == 200 && header(&c.headers, "Content-Type").unwrap_or("").starts_with("text/css"),
            "{d}: stylesheet {css}: {} {}",
            c.status,
            c.headers
        );
    } else {
        panic!("{d}: no stylesheet on the front page:\n{}", a.body);
    }
    let login = f.get(port, d, "/user/login");
    check!(
        &f,
        login.status == 200 && login.body.contains("user-login"),
        "{d}: /user/login: {}\n{}",
        login.status,
        login.body
    );
    // Anonymous visitors cannot edit the admin.
    forget_cookies(&f);
    let anon = f.get(port, d, "/user/1/edit");
    check!(&f, anon.status == 403, "{d}: anonymous /user/1/edit: {}", anon.status);

    // A one-time login link logs the admin in (and redirects to the account form), once.
    let t0 = Instant::now();
    let link = f.json(&["site", "login-link", d])["url"].as_str().expect("url").to_string();
    timed("login link", t0);
    eprintln!("[{d}] login link: {link}");
    check!(
        &f,
        link.starts_with(&format!("http://{d}:{port}/user/reset/1/")),
        "{d}: not a clean one-time login URL of the site: {link}"
    );
    forget_cookies(&f);
    let first = f.get(port, d, &path_of(&link));
    let location = header(&first.headers, "Location").unwrap_or("").to_string();
    check!(
        &f,
        matches!(first.status, 302 | 303) && location.contains("user/1/edit"),
        "{d}: following the login link: {} {}\n{}",
        first.status,
        first.headers,
        first.body
    );
    let me = f.get(port, d, &path_of(&location));
    check!(
        &f,
        me.status == 200 && me.body.contains(&format!("admin@{d}")),
        "{d}: the admin's account form after login: {}\n{}",
        me.status,
        me.body
    );
    // Drupal 10's own drush 12, through the alias Fjord writes, as the site's Unix user.
    if !real.is_d7() {
        let alias = d.replace('.', "_");
        let out = f.ok(&["site", "aliases", d, "--wait"]);
        check!(&f, out.contains(&format!("drush alias @{alias}: ")), "{d}: site aliases: {out}");
        let st = f.run(&["site", "exec", d, "--", "drush", &format!("@{alias}"), "status", "--format=json"]);
        let text = String::from_utf8_lossy(&st.stdout).to_string();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        check!(
            &f,
            st.status.success() && json["bootstrap"] == "Successful" && json["db-status"] == "Connected",
            "{d}: drush @{alias} status through site exec: {text}\n{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    // Drupal's own status report, as the admin sees it: nothing Fjord sets up (settings, trusted
    // hosts, file system, database) is flagged; only what needs the network these machines lack.
    let status = f.get(port, d, "/admin/reports/status");
    let marker = if real.is_d7() { "class=\"status-title\"" } else { "system-status-report__status-title" };
    check!(
        &f,
        status.status == 200 && status.body.contains(marker),
        "{d}: not the status report: {}\n{}",
        status.status,
        status.body
    );
    let problems = status_report_problems(&status.body);
    for (severity, text) in &problems {
        eprintln!("[{d}] status report {severity}: {text}");
    }
    let unexpected: Vec<_> =
        problems.iter().filter(|(_, text)| !NEEDS_NETWORK.iter().any(|n| text.starts_with(n))).collect();
    check!(&f, unexpected.is_empty(), "{d}: the status report flags {unexpected:?}");

    // Used: in a new session it logs nobody in.
    forget_cookies(&f);
    let again = f.get(port, d, &path_of(&link));
    let again_location = header(&again.headers, "Location").unwrap_or("");
    check!(&f, !again_location.contains("user/1/edit"), "{d}: the login link worked twice: {}", again.headers);
    check!(&f, f.get(port, d, "/user/1/edit").status == 403, "{d}: a used login link logged someone in");

    // Cron runs and is recorded.
    let t0 = Instant::now();
    ok(&f, &["site", "cron", d, "--wait"]);
    timed("cron", t0);
    check!(&f, f.json(&["site", "show", d])["site"]["last_cron_at"].is_i64(), "{d}: cron not recorded");

    // Verify rewrites what the installer touched; a second verify changes and reloads nothing.
    let t0 = Instant::now();
    let first_verify = ok(&f, &["site", "verify", d, "--wait"]);
    timed("verify", t0);
    eprintln!("[{d}] first verify:\n{first_verify}");
    let t0 = Instant::now();
    let second_verify = ok(&f, &["site", "verify", d, "--wait"]);
    timed("verify again", t0);
    check!(
        &f,
        second_verify.contains("no config of nginx") && second_verify.contains("no config of php-fpm"),
        "{d}: the second verify reloaded something:\n{second_verify}"
    );
    check!(&f, mode(&settings) & 0o007 == 0, "{d}: settings.php is {:o}", mode(&settings));
    let a = f.get(port, d, "/");
    check!(&f, a.status == 200 && a.body.contains(d), "{d}: after verify: {}", a.status);

    // Disable: 503; enable: served again.
    let t0 = Instant::now();
    ok(&f, &["site", "disable", d, "--wait"]);
    timed("disable", t0);
    let a = f.get(port, d, "/");
    check!(&f, a.status == 503, "{d}: disabled, yet: {} {}", a.status, a.body);
    let t0 = Instant::now();
    ok(&f, &["site", "enable", d, "--wait"]);
    timed("enable", t0);
    let a = f.get(port, d, "/");
    check!(&f, a.status == 200 && a.body.contains(d), "{d}: enabled again: {}", a.status);

    // Delete: nothing of it is served or left, in the platform, the state dir or the database.
    let db_name = f.json(&["site", "show", d])["site"]["db_name"].as_str().unwrap_or("").to_string();
    ok(&f, &["site", "disable", d, "--wait"]);
    let t0 = Instant::now();
    ok(&f, &["site", "delete", d, "--wait"]);
    timed("delete", t0);
    check!(&f, f.get(port, d, "/").status == 0, "{d}: still served after delete");
    check!(&f, !site_dir.exists(), "{d}: {} left", site_dir.display());
    check!(&f, !docroot.join("sites/fjord-sites").join(format!("{d}.php")).exists(), "{d}: multisite entry left");
    check!(&f, !f.state.join("sites").join(d).exists(), "{d}: state site dir left");
    if engine != "sqlite" {
        check!(&f, !db_name.is_empty(), "{d}: no db_name in `site show`");
        check!(&f, !database_exists(engine, &db_name), "{d}: database {db_name} left behind");
    }

    eprintln!("[{d}] tasks:\n{}", f.ok(&["task", "list", "--limit", "100"]));
    let summary: Vec<String> = timings.iter().map(|(w, s)| format!("{w} {s:.1}s")).collect();
    eprintln!(
        "[{d}] PASSED in {:.1}s ({} profile): {}",
        t_all.elapsed().as_secs_f64(),
        profile(engine),
        summary.join(", ")
    );
}

/// Backup, clone, migrate to a second copy of the codebase (running its database updates), rename,
/// delete and restore from the pre-delete backup, on a real codebase, checked over HTTP.
fn real_moves(real: &Real, engine: &str) {
    let Some(codebase) = real.codebase() else { return };
    if !services_available() {
        return;
    }
    let t_all = Instant::now();
    let (f, port) = Fjord::with_server();
    if !f.has_engine(engine) {
        return;
    }
    add_platform(&f, real, &codebase);
    // A second copy of the codebase, the target of the migrate.
    let second = Real { platform: if real.is_d7() { "real7b" } else { "real10b" }, ..*real };
    add_platform(&f, &second, &codebase);
    let d = format!("{}-mv-{engine}.example", real.platform);
    let d = d.as_str();
    let serves = |domain: &str, name: &str, what: &str| {
        let a = f.get(port, domain, "/");
        check!(&f, a.status == 200 && a.body.contains(name), "{domain}: {what}: {} {}", a.status, a.headers);
    };
    ok(
        &f,
        &[
            "site",
            "create",
            d,
            "--platform",
            real.platform,
            "--db-engine",
            engine,
            "--profile",
            profile(engine),
            "--wait",
        ],
    );
    serves(d, d, "installed");

    let t0 = Instant::now();
    ok(&f, &["site", "backup", d, "--wait"]);
    eprintln!("[{d}] backup: {:.1}s", t0.elapsed().as_secs_f64());

    let copy = format!("copy-{d}");
    let t0 = Instant::now();
    ok(&f, &["site", "clone", d, &copy, "--wait"]);
    eprintln!("[{d}] clone: {:.1}s", t0.elapsed().as_secs_f64());
    serves(&copy, d, "the clone shows the source's site name");

    // The same code on both platforms, no database updates: switched live while a visitor requests
    // the site; then back through the maintenance window and live again, as platform migrates.
    let t0 = Instant::now();
    let load = Load::start(port, d);
    let out = ok(&f, &["site", "migrate", d, "--to", second.platform, "--wait"]);
    let seen = load.stop();
    eprintln!(
        "[{d}] migrate: {:.1}s, {} requests, failed: {:?}\n{out}",
        t0.elapsed().as_secs_f64(),
        seen.requests,
        seen.failed
    );
    check!(&f, seen.failed.is_empty(), "{d}: requests failed during a live migrate: {:?}", seen.failed);
    check!(&f, f.json(&["site", "show", d])["platform"] == second.platform, "{d}: not on {}", second.platform);
    for (from, to, how) in [(second.platform, real.platform, "--maintenance"), (real.platform, second.platform, "")] {
        let t0 = Instant::now();
        let load = Load::start(port, d);
        let mut args = vec!["--json", "platform", "migrate", from, "--to", to];
        args.extend([how].into_iter().filter(|h| !h.is_empty()));
        let summary = f.run(&args);
        let seen = load.stop();
        let summary: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap_or_default();
        let window: Vec<_> =
            summary["sites"].as_array().into_iter().flatten().map(|s| s["downtime_ms"].clone()).collect();
        let unavailable = match (seen.failed.first(), seen.failed.last()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0,
        };
        eprintln!(
            "[{d}] platform migrate {from} -> {to} {how}: {:.1}s, maintenance window per site {window:?} ms; the visitor \
             of {d}: {} of {} requests failed, from first to last failure {unavailable} ms",
            t0.elapsed().as_secs_f64(),
            seen.failed.len(),
            seen.requests
        );
    }
    check!(&f, f.json(&["site", "show", d])["platform"] == second.platform, "{d}: not on {}", second.platform);
    serves(d, d, "after the migrate");
    let login = f.json(&["site", "login-link", d])["url"].as_str().expect("url").to_string();
    forget_cookies(&f);
    let first = f.get(port, d, &path_of(&login));
    check!(&f, matches!(first.status, 302 | 303), "{d}: login after the migrate: {}", first.status);
    // As an anonymous visitor again (a logged-in admin's front page may redirect to the account).
    forget_cookies(&f);

    let renamed = format!("renamed-{d}");
    ok(&f, &["site", "rename", d, &renamed, "--wait"]);
    serves(&renamed, d, "under its new name");
    serves(d, d, "under its old name, now an alias");

    for site in [renamed.as_str(), copy.as_str()] {
        ok(&f, &["site", "disable", site, "--wait"]);
        ok(&f, &["site", "delete", site, "--wait"]);
    }
    check!(&f, f.get(port, &renamed, "/").status == 0, "{renamed}: still served after delete");
    let backups = f.json(&["backup", "list"]);
    let pre_delete = backups
        .as_array()
        .expect("list")
        .iter()
        .find(|b| b["kind"] == "pre-delete" && b["path"].as_str().unwrap_or_default().contains(&renamed))
        .unwrap_or_else(|| panic!("{renamed}: no pre-delete backup: {backups}"))["id"]
        .to_string();
    ok(&f, &["site", "restore", &renamed, "--backup", &pre_delete, "--wait"]);
    serves(&renamed, d, "restored after its delete");

    // A restore in place: served from the backup's data, and the data it replaced archived after.
    ok(&f, &["site", "backup", &renamed, "--wait"]);
    if engine == "mariadb" {
        // Drupal's cache bins are archived without their rows (the executor lists them on MariaDB).
        let task = f.json(&["task", "list", "--limit", "1"])[0]["id"].to_string();
        let log = f.ok(&["task", "log", &task]);
        check!(
            &f,
            log.contains("cache tables archived without their rows: ") && log.contains("cache_bootstrap"),
            "{log}"
        );
    }
    let backup = f.json(&["backup", "list", "--site", &renamed])[0]["id"].to_string();
    ok(&f, &["site", "restore", &renamed, "--backup", &backup, "--wait"]);
    serves(&renamed, d, "restored in place");
    f.wait_until("the pre-restore backup", || {
        let list = f.json(&["backup", "list", "--site", &renamed]);
        list.as_array().expect("list").iter().any(|b| b["kind"] == "pre-restore")
    });
    serves(&renamed, d, "after the replaced data was archived and dropped");
    eprintln!("[{d}] moves PASSED in {:.1}s", t_all.elapsed().as_secs_f64());
}

#[test]
fn real_drupal10_moves_mariadb() {
    real_moves(&D10, "mariadb");
}

#[test]
fn real_drupal10_moves_postgres() {
    real_moves(&D10, "postgres");
}

#[test]
fn real_drupal7_moves_mariadb() {
    real_moves(&D7, "mariadb");
}

#[test]
fn real_drupal7_moves_sqlite() {
    real_moves(&D7, "sqlite");
}

#[test]
fn real_drupal10_sqlite() {
    real_life_cycle(&D10, "sqlite");
}

#[test]
fn real_drupal10_mariadb() {
    real_life_cycle(&D10, "mariadb");
}

#[test]
fn real_drupal10_postgres() {
    real_life_cycle(&D10, "postgres");
}

#[test]
fn real_drupal7_sqlite() {
    real_life_cycle(&D7, "sqlite");
}

#[test]
fn real_drupal7_mariadb() {
    real_life_cycle(&D7, "mariadb");
}

#[test]
fn real_drupal7_postgres() {
    real_life_cycle(&D7, "postgres");
}
