//! Every form of the web control panel in a real browser (headless Chromium over WebDriver, as in
//! `browser.rs`), each checked by its real effect: the site page's clone, migrate, restore, delete,
//! enable/disable and login link against real nginx and PHP-FPM; the servers, users and account pages;
//! cancel and retry on a task page; keyboard-only use of the login and create-site forms; and every
//! page at a phone's width without sideways scrolling. Screenshots go where `browser.rs` puts them.
//! The site test needs `FJORD_TEST_SERVICES=1`; both need Chromium (`scripts/test.sh` provides both).
#![allow(clippy::disallowed_methods)]

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{serve_panel, serve_panel_on, set_password, Browser};
use common::{fixture_platform, services_available, sql_as_admin, Fjord};

const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A phone's viewport (an iPhone 12-class width).
const PHONE: (u32, u32) = (390, 844);
const DESKTOP: (u32, u32) = (1280, 900);

/// Sets the fixture app's site name (shown as the page's `<h1>`) in its database.
fn set_name(f: &Fjord, domain: &str, name: &str) {
    let sql = format!("UPDATE variable SET value = 's:{}:\"{name}\";' WHERE name = 'site_name'", name.len());
    sql_as_admin(f, "sqlite", domain, &sql);
}

/// Opens `url` until its page's text contains `want` (at most 15 s), and returns that text.
///
/// Not at once: a connection the browser opened before a task reloaded nginx (Chromium opens them
/// ahead of use) is still served once by an old nginx worker, with the old config, which is how nginx
/// reloads gracefully; the next request goes to a new worker. `curl` on a fresh connection sees the
/// new config at once (checked where it matters).
fn served(b: &Browser, url: &str, want: &str) -> String {
    let t0 = std::time::Instant::now();
    loop {
        b.goto(url);
        let text = b.text();
        if text.contains(want) {
            return text;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(15), "{url} does not show {want:?}: {text}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// The id of the newest backup of `domain`.
fn newest_backup(f: &Fjord, domain: &str) -> i64 {
    let list = f.json(&["backup", "list", "--site", domain]);
    list.as_array().and_then(|l| l.iter().filter_map(|b| b["id"].as_i64()).max()).expect("a backup")
}

/// The HTTP status of a GET of the API with a bearer token.
fn api_status(panel: &str, token: &str, path: &str) -> u16 {
    // The token goes in a header file, not on curl's command line.
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = dir.path().join("headers");
    std::fs::write(&headers, format!("Authorization: Bearer {token}\n")).expect("header file");
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("@{}", headers.display()))
        .arg(format!("{panel}{path}"))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a status")
}

/// The site page's forms, each driven as a person would, each proven by what nginx then serves.
#[test]
fn site_page_forms_change_what_is_served() {
    if !services_available() {
        return;
    }
    let Some(b) = Browser::start() else { return };
    let (mut f, port) = Fjord::with_server();
    fixture_platform(&f, "drupal10", "d10");
    fixture_platform(&f, "drupal10", "next");
    let panel = serve_panel(&mut f, &[]);
    set_password(&f, "admin", ADMIN_PASSWORD);
    let site_url = |domain: &str| format!("http://{domain}:{port}/");

    // Keyboard only: the login form has the focus, Tab walks name → password → button, Enter submits.
    b.goto(&format!("{panel}/login"));
    b.assert_labelled();
    assert_eq!(b.focused(), "f-name", "the login form does not start in the user name");
    b.keys("admin");
    b.tab();
    assert_eq!(b.focused(), "f-password");
    b.keys(ADMIN_PASSWORD);
    b.tab();
    assert_eq!(b.focused(), "button:Log in");
    assert!(b.focus_visible(), "the focused button shows no focus ring");
    b.enter();
    b.wait_path("a page after the login", |p| !p.starts_with("/login"));

    // Keyboard only: the create-site form, reached by Tab from the top of the page. Every control
    // shows its focus; the fields come in the order they are shown.
    b.goto(&format!("{panel}/sites/new"));
    b.assert_labelled();
    let mut before = Vec::new();
    for _ in 0..40 {
        b.tab();
        let at = b.focused();
        assert!(b.focus_visible(), "{at} has the focus but does not show it");
        if at == "f-domain" {
            break;
        }
        before.push(at);
    }
    assert_eq!(b.focused(), "f-domain", "Tab never reached the domain field; it went through {before:?}");
    assert!(before.iter().any(|s| s.contains("Skip to content")), "no skip link first: {before:?}");
    let domain = "shop.localhost";
    b.keys(domain);
    let mut order = vec![b.focused()];
    for (typed, _) in [("d10", "platform"), ("sqlite", "db_engine"), ("", "php"), ("", "client"), ("", "aliases")] {
        b.tab();
        order.push(b.focused());
        if !typed.is_empty() {
            b.keys(typed);
        }
    }
    for _ in 0..4 {
        b.tab();
        order.push(b.focused());
        assert!(b.focus_visible(), "{} has the focus but does not show it", b.focused());
    }
    assert_eq!(
        order,
        [
            "f-domain",
            "f-platform",
            "f-db_engine",
            "f-php",
            "f-client",
            "f-aliases",
            "f-www",
            "f-https",
            "f-profile",
            "button:Create site"
        ],
        "the create form's tab order"
    );
    assert_eq!(b.script("return document.getElementById('f-platform').value"), "d10");
    assert_eq!(b.script("return document.getElementById('f-db_engine').value"), "sqlite");
    b.enter();
    b.wait_task("succeeded");
    served(&b, &site_url(domain), domain);

    // At a phone's width: the sites list and the site page fit, nothing scrolls sideways.
    b.set_window_size(PHONE.0, PHONE.1);
    for (path, shot) in [("/sites".to_string(), "phone-sites"), (format!("/sites/{domain}"), "phone-site")] {
        b.goto(&format!("{panel}{path}"));
        b.assert_no_horizontal_overflow();
        b.screenshot_full(shot);
    }
    b.set_window_size(DESKTOP.0, DESKTOP.1);

    // Restore: content changed after a backup comes back as it was.
    set_name(&f, domain, "Before the backup");
    b.goto(&format!("{panel}/sites/{domain}"));
    b.assert_labelled();
    b.click_text("Back up now");
    b.wait_task("succeeded");
    let backup = newest_backup(&f, domain);
    set_name(&f, domain, "After the backup");
    served(&b, &site_url(domain), "After the backup");
    b.goto(&format!("{panel}/sites/{domain}"));
    let row = format!("//table[@id='backups']//tr[contains(., '#{backup}')]");
    // By keyboard: Enter opens the confirmation, Tab reaches its button, Enter restores.
    b.focus_xpath(&format!("{row}//summary[contains(., 'Restore')]"));
    b.enter();
    b.tab();
    assert_eq!(b.focused(), format!("button:Restore backup #{backup}"));
    assert!(b.focus_visible(), "the restore button shows no focus");
    b.screenshot("restore-confirm");
    b.enter();
    b.wait_task("succeeded");
    served(&b, &site_url(domain), "Before the backup");

    // The same form with "portable SQL dump" chosen queues a logical backup.
    b.goto(&format!("{panel}/sites/{domain}"));
    b.select("select[name='method']", "logical");
    b.click_text("Back up now");
    b.wait_task("succeeded");
    let newest = f.json(&["task", "list", "--limit", "1"])[0].clone();
    assert_eq!(
        (newest["kind"].as_str(), newest["args"]["method"].as_str()),
        (Some("site-backup"), Some("logical")),
        "{newest}"
    );

    // The one-time login link: shown on its task's page, it logs into the site's app as its admin.
    b.goto(&format!("{panel}/sites/{domain}"));
    b.click_text("Log in as admin");
    b.wait_task("succeeded");
    let link = b.attr("#login-link", "href");
    assert!(link.starts_with(&site_url(domain)), "{link}");
    b.screenshot("task-login-link");
    b.click("#login-link");
    b.goto(&format!("{}user/1", site_url(domain)));
    assert!(b.text().contains("Logged in as admin"), "the login link did not log in: {}", b.text());

    // Disable: the site answers the disabled page; enable: it is served again.
    b.goto(&format!("{panel}/sites/{domain}"));
    b.click_text("Disable");
    b.wait_task("succeeded");
    b.goto(&format!("{panel}/sites/{domain}"));
    assert_eq!(b.text_of(".page-head .badge"), "disabled");
    let answer = f.get(port, domain, "/");
    assert_eq!(answer.status, 503, "a disabled site: {}", answer.body);
    assert!(answer.body.contains("disabled"), "{}", answer.body);
    served(&b, &site_url(domain), "This site is disabled");
    b.screenshot("site-disabled");
    b.goto(&format!("{panel}/sites/{domain}"));
    b.click_text("Enable");
    b.wait_task("succeeded");
    served(&b, &site_url(domain), "Before the backup");

    // Clone: a taken domain is refused beside the field; a new one is served by nginx.
    b.goto(&format!("{panel}/sites/{domain}"));
    b.click_xpath("//summary[normalize-space(.)='Clone to a new domain']");
    b.fill("#f-new_domain", domain);
    b.click_text("Clone");
    let error = b.text_of("#f-new_domain-error");
    assert!(error.contains(domain), "the error beside the new domain: {error}");
    assert_eq!(b.attr("#f-new_domain", "value"), domain, "the typed domain was lost");
    let copy = "copy.localhost";
    b.fill("#f-new_domain", copy);
    b.click_text("Clone");
    b.wait_task("succeeded");
    served(&b, &site_url(copy), "Before the backup");

    // Migrate: the site page then names the new platform, and the site is still served.
    b.goto(&format!("{panel}/sites/{domain}"));
    b.click_xpath("//summary[normalize-space(.)='Migrate to another platform']");
    b.select("#f-platform", "next");
    b.screenshot("migrate-form");
    b.click_text("Migrate");
    b.wait_task("succeeded");
    b.goto(&format!("{panel}/sites/{domain}"));
    assert_eq!(b.text_of("a[href='/platforms/next']"), "next", "{}", b.text());
    b.screenshot_full("site-migrated");
    served(&b, &site_url(domain), "Before the backup");

    // A platform's buttons (not its "migrate all sites" form): lock takes it out of the create form,
    // unlock brings it back; verify runs and succeeds.
    b.goto(&format!("{panel}/platforms/d10"));
    b.click_text("Lock");
    b.wait_for_text("the platform locked", |t| t.contains("Unlock"));
    b.goto(&format!("{panel}/sites/new"));
    assert!(!b.exists("#f-platform option[value=d10]") && b.exists("#f-platform option[value=next]"), "{}", b.source());
    b.goto(&format!("{panel}/platforms/d10"));
    b.click_text("Unlock");
    b.wait_for_text("the platform unlocked", |t| !t.contains("Unlock"));
    b.goto(&format!("{panel}/sites/new"));
    assert!(b.exists("#f-platform option[value=d10]"), "the unlocked platform is not offered");
    b.goto(&format!("{panel}/platforms/d10"));
    b.click_text("Verify");
    b.wait_task("succeeded");

    // Delete (the clone, enabled): a wrong confirmation changes nothing; the domain deletes it,
    // vhost and all.
    let vhost = f.vhost_path(copy);
    assert!(vhost.exists(), "{}", vhost.display());
    b.goto(&format!("{panel}/sites/{copy}"));
    b.click_xpath("//summary[normalize-space(.)='Delete this site…']");
    b.fill("#f-confirm", "shop.localhost");
    b.click_text(&format!("Delete {copy}"));
    let error = b.text_of("#f-confirm-error");
    assert!(error.contains(copy), "{error}");
    b.screenshot_full("delete-refused");
    assert!(vhost.exists(), "a refused delete removed the vhost");
    b.fill("#f-confirm", copy);
    b.click_text(&format!("Delete {copy}"));
    b.wait_task("succeeded");
    b.goto(&format!("{panel}/sites"));
    assert!(!b.text().contains(copy) && b.text().contains(domain), "{}", b.text());
    b.goto(&format!("{panel}/sites/{copy}"));
    assert!(b.text().contains("Not found"), "{}", b.text());
    assert!(!vhost.exists(), "the deleted site's vhost is left: {}", vhost.display());
    assert!(f.not_served(port, copy), "the deleted site is still served");
}

/// The pages without a site: servers (list, a server, its verify task cancelled and retried), users
/// (a platform manager added, who can then log in), your account (password change: the new one works,
/// the old one no longer), and every page at a phone's width. No workers run, so tasks stay queued.
#[test]
fn servers_users_account_and_task_buttons() {
    let Some(b) = Browser::start() else { return };
    let mut f = Fjord::new(None);
    f.ok(&["server", "add", "localhost", "--web", "none", "--database", "sqlite"]);
    let web = common::free_port();
    let panel = serve_panel_on(&mut f, web, &["--workers", "0"]);
    set_password(&f, "admin", ADMIN_PASSWORD);
    b.log_in(&panel, "admin", ADMIN_PASSWORD);

    // Servers: the list, then the server's page.
    b.goto(&format!("{panel}/servers"));
    assert!(b.text().contains("localhost") && b.text().contains("sqlite"), "{}", b.text());
    b.screenshot_full("servers");
    // Adding a server: a bad port is refused beside its field; then a SQLite-only server is added
    // and its verify queued.
    b.click_xpath("//summary[contains(., 'Add a server')]");
    b.fill("#f-name", "web2");
    b.fill("#f-http_port", "eighty");
    b.click_xpath("//button[normalize-space()='Add server']");
    b.wait_for_text("the port's error", |t| t.contains("a port number"));
    assert!(b.exists("#f-http_port-error"));
    assert_eq!(b.attr("#f-name", "value"), "web2", "the typed name is kept");
    b.fill("#f-http_port", "8082");
    b.click("input[name='sqlite']");
    b.click_xpath("//button[normalize-space()='Add server']");
    b.wait_path("the new server's verify", |p| p.starts_with("/tasks/"));
    assert!(b.text().contains("server-verify"), "{}", b.text());
    assert!(f.json(&["server", "show", "web2"])["services"].to_string().contains("8082"));
    b.goto(&format!("{panel}/servers"));
    b.click("a[href='/servers/localhost']");
    b.wait_path("the server page", |p| p == "/servers/localhost");
    b.screenshot_full("server");

    // Its verify, queued (no worker takes it), cancelled, then retried as a new task.
    b.click_text("Verify");
    b.wait_path("the task page", |p| p.starts_with("/tasks/"));
    let first = b.path();
    assert_eq!(b.text_of("#task-status"), "queued");
    b.click_text("Cancel task");
    b.wait_task("cancelled");
    b.screenshot_full("task-cancelled");
    assert!(!b.text().contains("Cancel task"), "a cancelled task still offers a cancel");
    b.click_text("Retry");
    b.wait_path("the retried task", |p| p.starts_with("/tasks/") && p != first);
    assert_eq!(b.text_of("#task-status"), "queued");
    assert!(b.text().contains("server-verify"), "{}", b.text());
    let id: i64 = b.path().trim_start_matches("/tasks/").parse().expect("a task id");
    assert_eq!(f.task(id)["status"], "queued");
    let first_id: i64 = first.trim_start_matches("/tasks/").parse().expect("a task id");
    assert_eq!(f.task(first_id)["status"], "cancelled");

    b.goto(&format!("{panel}/tasks"));
    b.screenshot_full("tasks");
    b.goto(&format!("{panel}/clients"));
    b.screenshot_full("clients");

    // Users: a refused form keeps its values; then a platform manager, listed with the role.
    b.goto(&format!("{panel}/users"));
    b.assert_labelled();
    b.fill("#f-name", "pat");
    b.select("#f-role", "platform-manager");
    b.fill("#f-password", "short");
    b.click_text("Add user");
    let error = b.text_of("#f-password-error");
    assert!(error.contains("10"), "{error}");
    assert_eq!(b.attr("#f-name", "value"), "pat");
    let old_password = "pat-first-password";
    b.fill("#f-password", old_password);
    b.click_text("Add user");
    b.wait_for_text("the user added", |t| t.contains("User pat added."));
    let row = b.xpath_text("//table[@id='users']//tr[td[starts-with(normalize-space(.), 'pat')]]");
    assert!(row.contains("platform-manager"), "{row}");
    b.screenshot_full("users");

    // As that user: in, with the manager's pages and without the admin's.
    b.click_text("Log out");
    b.wait_path("the login page", |p| p.starts_with("/login"));
    b.log_in(&panel, "pat", old_password);
    assert!(b.exists("nav a[href='/platforms']") && !b.exists("nav a[href='/users']"), "{}", b.text());
    b.goto(&format!("{panel}/users"));
    assert!(b.text().contains("Forbidden"), "{}", b.text());

    // The account page: a wrong current password is refused beside it; then the change.
    b.goto(&format!("{panel}/account"));
    b.assert_labelled();
    let new_password = "pat-second-password";
    b.fill("#f-current", "not my password");
    b.fill("#f-new", new_password);
    b.click_text("Change password");
    assert!(!b.text_of("#f-current-error").is_empty(), "no error beside the current password");
    b.fill("#f-current", old_password);
    b.fill("#f-new", new_password);
    b.click_text("Change password");
    b.wait_for_text("the change confirmed", |t| t.contains("Your password has been changed."));
    b.screenshot_full("account");
    b.click_text("Log out");
    b.wait_path("the login page", |p| p.starts_with("/login"));
    b.fill("#f-name", "pat");
    b.fill("#f-password", old_password);
    b.click_text("Log in");
    b.wait_for_text("the login error", |t| t.contains("Wrong user name or password."));
    b.log_in(&panel, "pat", new_password);
    assert!(b.text().contains("pat"), "{}", b.text());

    // API tokens, from the account page: a nameless one is refused; a read token's secret is shown once
    // and works against the API until it is revoked.
    b.goto(&format!("{panel}/account"));
    assert!(b.text().contains("No API tokens."), "{}", b.text());
    b.click_text("Create token");
    assert!(!b.text_of("#f-token_name-error").is_empty(), "no error beside the token's name");
    b.fill("#f-token_name", "backup script");
    b.select("#f-scope", "read");
    b.click_text("Create token");
    let secret = b.attr("#new-token", "value");
    assert!(secret.len() > 20, "{secret:?}");
    b.screenshot_full("account-token");
    assert_eq!(api_status(&panel, &secret, "/api/me"), 200, "the new token does not work");
    b.goto(&format!("{panel}/account"));
    assert!(!b.source().contains(&secret), "the secret is shown again");
    assert!(b.xpath_text("//table[@id='tokens']//tr[contains(., 'backup script')]").contains("read"));
    b.click_xpath("//table[@id='tokens']//summary[contains(., 'Revoke')]");
    b.click_xpath("//table[@id='tokens']//button[starts-with(normalize-space(.), 'Revoke token')]");
    b.wait_for_text("the token revoked", |t| t.contains("The API token has been revoked."));
    assert!(b.xpath_text("//table[@id='tokens']//tr[contains(., 'backup script')]").contains("revoked"));
    assert_eq!(api_status(&panel, &secret, "/api/me"), 401, "a revoked token still works");

    // Every page at a phone's width, as the admin: labelled, and nothing scrolls sideways.
    b.click_text("Log out");
    b.wait_path("the login page", |p| p.starts_with("/login"));
    b.set_window_size(PHONE.0, PHONE.1);
    b.assert_no_horizontal_overflow();
    b.log_in(&panel, "admin", ADMIN_PASSWORD);
    for path in [
        "/",
        "/sites",
        "/sites/new",
        "/platforms",
        "/servers",
        "/servers/localhost",
        "/tasks",
        &first,
        "/clients",
        "/users",
        "/account",
    ] {
        b.goto(&format!("{panel}{path}"));
        b.assert_labelled();
        b.assert_no_horizontal_overflow();
    }
    b.goto(&format!("{panel}/users"));
    b.screenshot_full("phone-users");
    b.set_window_size(DESKTOP.0, DESKTOP.1);
}
