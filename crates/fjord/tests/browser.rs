//! The web control panel in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver, against `fjord serve --listen` with real nginx, PHP-FPM and
//! SQLite, the Drupal 10-shaped fixture platform, and sites really served. Screenshots of the main
//! pages go to `$FJORD_TEST_ARTIFACTS/screenshots` (default `target/test-artifacts/screenshots`).
//! Needs `FJORD_TEST_SERVICES=1` and Chromium (`scripts/test.sh` provides both); skips otherwise.
#![allow(clippy::disallowed_methods)]

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{serve_panel, set_password, Browser};
use common::{copy_tree, fixture, services_available, Fjord};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";
const CLIENT_PASSWORD: &str = "alice-password-for-tests";

/// The harness itself: a page loads, a field takes typed text, a button runs the page's script.
#[test]
fn the_browser_harness_drives_chromium() {
    let Some(b) = Browser::start() else { return };
    b.goto("data:text/html,<title>t</title><main><label>Name <input id=n></label><button id=go onclick=\"document.getElementById('out').textContent='hi '+document.getElementById('n').value\">Go</button><p id=out></p></main>");
    b.fill("#n", "fjord");
    b.click_text("Go");
    assert_eq!(b.text_of("#out"), "hi fjord");
    assert_eq!(b.title(), "t");
}

/// What a person does in the control panel, end to end: log in, add a platform, add a client, create
/// a site (a bad domain first), watch its install live, open the site, back it up, add a client user;
/// then, as that user, see only that client's sites.
#[test]
fn the_control_panel_end_to_end() {
    if !services_available() {
        return;
    }
    let Some(b) = Browser::start() else { return };
    let (mut f, port) = Fjord::with_server();
    // The daemon again, now also serving the UI.
    let panel = serve_panel(&mut f, &[]);
    set_password(&f, "admin", ADMIN_PASSWORD);

    // Not logged in: any page leads to the login form, and back after it.
    b.goto(&format!("{panel}/sites"));
    assert!(b.path().starts_with("/login"), "{}", b.path());
    b.fill("#f-name", "admin");
    b.fill("#f-password", "not the password");
    b.click_text("Log in");
    b.wait_for_text("the login error", |t| t.contains("Wrong user name or password."));
    b.screenshot("login");
    b.fill("#f-password", ADMIN_PASSWORD);
    b.click_text("Log in");
    b.wait_path("the sites list", |p| p == "/sites");

    // A platform, added through its form: the verify task runs and succeeds.
    let code = f.dir.path().join("code");
    std::fs::create_dir_all(&code).expect("mkdir");
    copy_tree(&fixture("drupal10"), &code.join("d10"));
    b.goto(&format!("{panel}/platforms"));
    b.fill("#f-name", "d10");
    b.fill("#f-path", &code.join("d10").to_string_lossy());
    b.click_text("Add platform");
    b.wait_path("the task page", |p| p.starts_with("/tasks/"));
    b.wait_task("succeeded");
    b.goto(&format!("{panel}/platforms/d10"));
    assert!(b.text().contains("10.3.99"), "the platform's version: {}", b.text());

    // Two clients: one through the form, one through the CLI.
    b.goto(&format!("{panel}/clients"));
    b.fill("#f-name", "acme");
    b.fill("#f-title", "Acme Ltd");
    b.click_text("Add client");
    b.wait_for_text("the client added", |t| t.contains("Client acme added."));
    f.ok(&["client", "add", "globex"]);

    // The create form: a bad domain comes back with its message next to the field, values kept.
    b.goto(&format!("{panel}/sites/new"));
    b.fill("#f-domain", "not a domain!");
    b.select("#f-platform", "d10");
    b.select("#f-db_engine", "sqlite");
    b.select("#f-client", "acme");
    b.click_text("Create site");
    b.wait_path("the form again", |p| p == "/sites");
    let error = b.text_of("#f-domain-error");
    assert!(error.contains("domain"), "{error}");
    assert_eq!(b.find_all("#f-client option[selected][value=acme]").len(), 1, "the client choice was lost");
    b.screenshot_full("create-form");

    // A good domain: the install task's page follows its log live until it succeeds.
    let domain = "shop.localhost";
    b.fill("#f-domain", domain);
    b.click_text("Create site");
    b.wait_path("the task page", |p| p.starts_with("/tasks/"));
    b.screenshot("task-live");
    // Set by the page's script on the server-sent `end` event: the log was followed live, not reloaded.
    b.wait_for_text("the live log's end", |t| t.contains("The task has ended: succeeded."));
    let text = b.wait_task("succeeded");
    assert!(text.contains("site-install"), "{text}");
    b.screenshot_full("task");

    // The site page, and the site itself, served by nginx + PHP-FPM from its database.
    b.goto(&format!("{panel}/sites/{domain}"));
    let text = b.text();
    assert!(text.contains("enabled") && text.contains("d10") && text.contains("sqlite"), "{text}");
    let url = b.attr("a[href^='http://shop.localhost']", "href");
    assert_eq!(url, format!("http://{domain}:{port}/"));
    b.goto(&url);
    assert!(b.source().contains(&format!("<h1>{domain}</h1>")), "the site is not served: {}", b.source());

    // A backup from the site page.
    b.goto(&format!("{panel}/sites/{domain}"));
    b.click_text("Back up now");
    b.wait_task("succeeded");
    b.goto(&format!("{panel}/sites/{domain}"));
    assert_eq!(b.find_all("#backups tbody tr").len(), 1, "{}", b.text());
    assert!(b.text().contains("manual"), "{}", b.text());
    b.screenshot_full("site");
    // A second backup, then the older one deleted from the site page: its archive goes with it.
    b.click_text("Back up now");
    b.wait_task("succeeded");
    b.goto(&format!("{panel}/sites/{domain}"));
    assert_eq!(b.find_all("#backups tbody tr").len(), 2, "{}", b.text());
    let backups = f.json(&["backup", "list", "--site", domain]);
    let oldest = backups.as_array().and_then(|l| l.iter().min_by_key(|b| b["id"].as_i64())).expect("a backup").clone();
    let archive = std::path::PathBuf::from(oldest["path"].as_str().expect("path"));
    assert!(archive.exists(), "{}", archive.display());
    b.click("#backups tbody tr:last-child details:nth-of-type(2) summary");
    b.click_text(&format!("Delete backup #{}", oldest["id"]));
    b.goto(&format!("{panel}/sites/{domain}"));
    assert_eq!(b.find_all("#backups tbody tr").len(), 1, "{}", b.text());
    assert!(!archive.exists(), "the deleted backup's archive is left: {}", archive.display());

    // Another client's site (through the CLI), then the lists.
    f.ok(&[
        "site",
        "create",
        "other.localhost",
        "--platform",
        "d10",
        "--db-engine",
        "sqlite",
        "--client",
        "globex",
        "--wait",
    ]);
    b.goto(&format!("{panel}/sites"));
    let text = b.text();
    assert!(text.contains(domain) && text.contains("other.localhost"), "{text}");
    b.screenshot_full("sites");
    b.goto(&format!("{panel}/sites?client=acme"));
    assert!(b.text().contains(domain) && !b.text().contains("other.localhost"), "{}", b.text());
    b.goto(&format!("{panel}/"));
    assert!(b.text().contains("Dashboard"), "{}", b.text());
    b.screenshot_full("dashboard");
    b.goto(&format!("{panel}/platforms/d10"));
    b.screenshot_full("platform");

    // A client user, through the users page.
    b.goto(&format!("{panel}/users"));
    b.fill("#f-name", "alice");
    b.select("#f-role", "client");
    b.select("#f-client", "acme");
    b.fill("#f-password", CLIENT_PASSWORD);
    b.click_text("Add user");
    b.wait_for_text("the user added", |t| t.contains("User alice added."));

    // As alice: only acme's site, anywhere; the other client's site does not exist for her.
    b.click_text("Log out");
    b.wait_path("the login page", |p| p.starts_with("/login"));
    b.log_in(&panel, "alice", CLIENT_PASSWORD);
    b.goto(&format!("{panel}/sites"));
    let text = b.text();
    assert!(text.contains(domain), "{text}");
    assert!(!text.contains("other.localhost"), "a client user sees another client's site: {text}");
    b.set_window_size(390, 844);
    b.screenshot_full("sites-phone");
    b.set_window_size(1280, 900);
    b.goto(&format!("{panel}/sites/other.localhost"));
    assert!(b.text().contains("Not found"), "{}", b.text());
    b.goto(&format!("{panel}/tasks"));
    assert!(!b.text().contains("other.localhost"), "a client user sees another client's tasks: {}", b.text());
    b.goto(&format!("{panel}/"));
    assert!(!b.text().contains("other.localhost"), "{}", b.text());
    // Her own site: she may back it up, but not delete it.
    b.goto(&format!("{panel}/sites/{domain}"));
    assert!(b.text().contains("Back up now"), "{}", b.text());
    assert!(!b.text().contains("Delete this site"), "{}", b.text());
    // Pages for admins only are refused.
    b.goto(&format!("{panel}/users"));
    assert!(b.text().contains("Forbidden"), "{}", b.text());
}
