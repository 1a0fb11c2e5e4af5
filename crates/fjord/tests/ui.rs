//! The web UI's pages over plain HTTP (no browser), from a real `fjord serve --listen` with a SQLite
//! state database and no task workers (`--workers 0`: queued tasks stay queued): logging in, who sees
//! what (a client user never sees another client's site, by any page), CSRF on every form, validation
//! messages next to their fields, pages of a long list, and the headers every page carries. The
//! browser test (`browser.rs`) covers the same pages in Chromium with real sites.
#![allow(clippy::disallowed_methods)]

mod common;

use common::Fjord;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Ui {
    f: Fjord,
    base: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    admin_token: String,
    admin_password: String,
    alice_password: String,
}

struct Page {
    status: StatusCode,
    location: String,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// A logged-in browser, as far as HTTP goes: its session cookie and the CSRF token its forms carry.
struct Session {
    cookie: String,
    csrf: String,
}

impl Ui {
    fn start() -> Ui {
        let mut f = Fjord::new(None);
        f.ok(&["server", "add", "localhost", "--http-port", "8080", "--database", "sqlite"]);
        let code = f.make_codebase("p1");
        f.ok(&["platform", "add", "p1", "--path", &code]);
        f.ok(&["client", "add", "acme"]);
        f.ok(&["client", "add", "globex"]);
        let pw = |v: Value| v["password"].as_str().expect("a generated password").to_string();
        let admin_password = pw(f.json(&["user", "passwd", "admin"]));
        let alice_password = pw(f.json(&["user", "add", "alice", "--role", "client", "--client", "acme"]));
        let admin_token = f.json(&["token", "create", "--user", "admin", "--name", "t", "--scope", "write"])["secret"]
            .as_str()
            .expect("secret")
            .to_string();
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        f.start_serve_with(&["--workers", "0", "--listen", &listen], &[]);
        let ui = Ui {
            f,
            base: format!("http://{listen}"),
            rt: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
            admin_token,
            admin_password,
            alice_password,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&listen).is_ok() && ui.get("/login", None).status == StatusCode::OK {
                return ui;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("fjord serve did not answer HTTP: {}", ui.f.serve_log());
    }

    fn request(&self, method: Method, path: &str, s: Option<&Session>, form: Option<&[(&str, &str)]>) -> Page {
        self.rt.block_on(async {
            let mut req = self.http.request(method, format!("{}{path}", self.base));
            if let Some(s) = s {
                req = req.header("cookie", &s.cookie);
            }
            if let Some(form) = form {
                let body: String =
                    form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&");
                req = req.header("content-type", "application/x-www-form-urlencoded").body(body);
            }
            let resp = req.send().await.expect("answered");
            let status = resp.status();
            let headers = resp.headers().clone();
            let location = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            Page { status, location, headers, body: resp.text().await.expect("body") }
        })
    }

    fn get(&self, path: &str, s: Option<&Session>) -> Page {
        self.request(Method::GET, path, s, None)
    }

    /// Posts a form as `s`, with its CSRF token.
    fn post(&self, path: &str, s: &Session, fields: &[(&str, &str)]) -> Page {
        let mut all = vec![("_csrf", s.csrf.as_str())];
        all.extend_from_slice(fields);
        self.request(Method::POST, path, Some(s), Some(&all))
    }

    /// The login page as a browser gets it: its cookie and the token its form carries.
    fn login_form(&self) -> Session {
        let r = self.get("/login", None);
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let cookie = r
            .headers
            .get("set-cookie")
            .map(|v| v.to_str().expect("ascii").split(';').next().expect("cookie").to_string())
            .unwrap_or_default();
        // (None on a version without the login form's token.)
        let csrf = if r.body.contains("name=\"_csrf\"") { hidden_csrf(&r.body) } else { String::new() };
        Session { cookie, csrf }
    }

    /// Posts the login form as a browser would, after loading it.
    fn post_login(&self, fields: &[(&str, &str)]) -> Page {
        self.post("/login", &self.login_form(), fields)
    }

    fn login(&self, name: &str, password: &str) -> Session {
        let r = self.post_login(&[("name", name), ("password", password), ("next", "/sites")]);
        assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/sites"), "{}", r.body);
        let cookie = r.headers["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string();
        let mut s = Session { cookie, csrf: String::new() };
        // The token every form of a page carries.
        let page = self.get("/account", Some(&s));
        s.csrf = hidden_csrf(&page.body);
        s
    }

    /// Creates a site through the API (queued: no workers run it).
    fn create_site(&self, domain: &str, client: &str) -> i64 {
        let body = json!({ "domain": domain, "platform": "p1", "db_engine": "sqlite", "client": client });
        self.rt.block_on(async {
            let r = self
                .http
                .post(format!("{}/api/sites", self.base))
                .bearer_auth(&self.admin_token)
                .json(&body)
                .send()
                .await
                .expect("answered");
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            r.json::<Value>().await.expect("task")["id"].as_i64().expect("task id")
        })
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a form with a CSRF token") + 20;
    html[at..].split('"').next().expect("value").to_string()
}

/// The number of rows in the table with this id.
fn rows(html: &str, table_id: &str) -> usize {
    let Some(start) = html.find(&format!("id=\"{table_id}\"")) else { return 0 };
    let end = html[start..].find("</table>").map(|e| start + e).unwrap_or(html.len());
    html[start..end].matches("<tr>").count() - 1
}

#[test]
fn a_login_post_without_the_forms_csrf_token_is_refused_and_audited() {
    let ui = Ui::start();
    let creds = [("name", "admin"), ("password", ui.admin_password.as_str()), ("next", "/sites")];
    let session_opened = |p: &Page| {
        p.headers.get_all("set-cookie").iter().any(|v| v.to_str().is_ok_and(|v| v.starts_with("fjord_session=")))
    };
    // What a page elsewhere can post: the right password, but neither the form's token nor its cookie.
    let r = ui.request(Method::POST, "/login", None, Some(&creds));
    assert_eq!((r.status, session_opened(&r)), (StatusCode::FORBIDDEN, false), "{}", r.body);
    // The login page sets its token in a cookie scripts cannot read and other sites' posts do not carry.
    let page = ui.get("/login", None);
    let set = page.headers["set-cookie"].to_str().expect("ascii");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let form = ui.login_form();
    assert!(!form.cookie.is_empty() && !form.csrf.is_empty(), "the form carries a token");
    // Without the token, with a wrong one, with the token but not its cookie: refused before the
    // password is looked at, with the form again to retry with.
    let refused = [
        ui.request(Method::POST, "/login", Some(&form), Some(&creds)),
        ui.post("/login", &Session { cookie: form.cookie.clone(), csrf: "x".repeat(43) }, &creds),
        ui.post("/login", &Session { cookie: String::new(), csrf: form.csrf.clone() }, &creds),
    ];
    for r in &refused {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(!session_opened(r), "a session was opened");
        assert!(r.body.contains("did not come from this site") && r.body.contains("name=\"_csrf\""), "{}", r.body);
    }
    // A post the browser says came from another site is refused even with both.
    let cross = ui.rt.block_on(async {
        let body = format!("_csrf={}&name=admin&password={}", form.csrf, urlencode(&ui.admin_password));
        ui.http
            .post(format!("{}/login", ui.base))
            .header("cookie", &form.cookie)
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("answered")
            .status()
    });
    assert_eq!(cross, StatusCode::FORBIDDEN);
    // Each refusal is in the audit log.
    let audit = ui.rt.block_on(async {
        let r = ui.http.get(format!("{}/api/audit?limit=100", ui.base)).bearer_auth(&ui.admin_token).send().await;
        r.expect("answered").json::<Value>().await.expect("audit")
    });
    let denied = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "login" && e["outcome"] == "denied" && e["detail"] != "wrong user name or password")
        .count();
    assert_eq!(denied, 5, "{audit}");
    // From the form itself, with its cookie, the login works.
    let r = ui.post("/login", &form, &creds);
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/sites"), "{}", r.body);
    assert!(session_opened(&r));
}

#[test]
fn pages_need_a_login_and_come_back_after_it() {
    let ui = Ui::start();
    let r = ui.get("/sites?status=queued", None);
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location, "/login?next=/sites%3Fstatus%3Dqueued");
    let r = ui.get("/login?next=/sites", None);
    assert!(r.body.contains("name=\"password\"") && r.body.contains("<label for=\"f-password\">"), "{}", r.body);
    // A wrong password: the form again with a message, no cookie.
    let r = ui.post_login(&[("name", "admin"), ("password", "wrong password!")]);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong user name or password.") && r.headers.get("set-cookie").is_none());
    // `next` never leaves the site.
    let r = ui.post_login(&[("name", "admin"), ("password", &ui.admin_password), ("next", "//evil.example/")]);
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/"));
    let s = ui.login("admin", &ui.admin_password);
    let r = ui.get("/", Some(&s));
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<h1>Dashboard</h1>"), "{}", r.body);
    // Every page: not cached, only our own CSS and script, never framed.
    assert_eq!(r.headers["cache-control"], "no-store");
    let csp = r.headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let css = ui.get("/ui/assets/style.css", None);
    assert_eq!(
        (css.status, css.headers["content-type"].to_str().expect("ascii")),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
    // Logging out ends the session: the old cookie no longer opens a page.
    let r = ui.post("/logout", &s, &[]);
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/login"));
    assert_eq!(ui.get("/", Some(&s)).status, StatusCode::SEE_OTHER);
}

#[test]
fn every_form_needs_its_csrf_token() {
    let ui = Ui::start();
    ui.create_site("a.example", "acme");
    let s = ui.login("admin", &ui.admin_password);
    for (path, fields) in [
        ("/sites/a.example/backup", vec![]),
        ("/sites", vec![("domain", "b.example"), ("platform", "p1")]),
        ("/clients", vec![("name", "initech")]),
        ("/account/tokens", vec![("token_name", "forged"), ("scope", "write")]),
        ("/account/tokens/1/revoke", vec![]),
        ("/logout", vec![]),
    ] {
        let r = ui.request(Method::POST, path, Some(&s), Some(&fields));
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
        let mut wrong = fields.clone();
        wrong.push(("_csrf", "forged"));
        assert_eq!(ui.request(Method::POST, path, Some(&s), Some(&wrong)).status, StatusCode::FORBIDDEN, "{path}");
    }
    // Nothing happened; with the token, the action is queued and its task shown.
    assert!(!ui.get("/clients", Some(&s)).body.contains("initech"));
    // The backup form's database copy method is a field it takes; an unknown one is refused. (The
    // site is not installed here: the backup itself is refused the same way with or without it.)
    let plain = ui.post("/sites/a.example/backup", &s, &[]).status;
    assert_eq!(ui.post("/sites/a.example/backup", &s, &[("method", "logical")]).status, plain);
    let bogus = ui.post("/sites/a.example/backup", &s, &[("bogus", "1")]);
    assert!(bogus.status.is_client_error() && bogus.status != plain, "{}: {}", bogus.status, bogus.body);
    let r = ui.post("/platforms/p1/verify", &s, &[]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"), "{}", r.location);
    let task = ui.get(&r.location, Some(&s));
    assert!(task.body.contains("platform-verify") && task.body.contains(">queued<"), "{}", task.body);
    // A task still running: the live log's script, and a refresh for browsers without JavaScript.
    assert!(task.body.contains("/ui/assets/live-log.js"), "{}", task.body);
    assert!(task.body.contains("<noscript><meta http-equiv=\"refresh\""), "{}", task.body);
}

/// API tokens on the account page are your own: another user's is neither shown nor revocable there;
/// yours is created (its secret on the answer itself, never in a redirect's URL) and revoked.
#[test]
fn the_account_page_manages_only_your_own_tokens() {
    let ui = Ui::start();
    let api_me = |token: &str| {
        ui.rt.block_on(async {
            let r = ui.http.get(format!("{}/api/me", ui.base)).bearer_auth(token).send().await.expect("answered");
            r.status()
        })
    };
    let alice = ui.login("alice", &ui.alice_password);
    let page = ui.get("/account", Some(&alice));
    assert!(page.body.contains("No API tokens."), "{}", page.body);
    // The admin's token (#1, made by the CLI) is not hers.
    let r = ui.post("/account/tokens/1/revoke", &alice, &[]);
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(api_me(&ui.admin_token), StatusCode::OK, "another user's token was revoked");
    // A bad scope is refused beside its field; nothing is created.
    let r = ui.post("/account/tokens", &alice, &[("token_name", "phone"), ("scope", "root")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("id=\"f-scope-error\""), "{}", r.body);
    assert!(ui.get("/account", Some(&alice)).body.contains("No API tokens."));
    // Hers: the secret is on the answer, which is a page, not a redirect.
    let r = ui.post("/account/tokens", &alice, &[("token_name", "phone"), ("scope", "write")]);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let secret = r
        .body
        .split("id=\"new-token\"")
        .nth(1)
        .and_then(|rest| rest.split("value=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .expect("the secret on the page")
        .to_string();
    assert_eq!(api_me(&secret), StatusCode::OK);
    let page = ui.get("/account", Some(&alice));
    assert!(!page.body.contains(&secret), "the secret is shown again");
    let id = page
        .body
        .split("Revoke token #")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("a revoke button")
        .to_string();
    let r = ui.post(&format!("/account/tokens/{id}/revoke"), &alice, &[]);
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/account?done=revoked"), "{}", r.body);
    assert_eq!(api_me(&secret), StatusCode::UNAUTHORIZED, "a revoked token still works");
}

#[test]
fn a_client_user_sees_only_their_clients_sites_on_every_page() {
    let ui = Ui::start();
    ui.create_site("mine.example", "acme");
    let theirs = ui.create_site("theirs.example", "globex");
    let s = ui.login("alice", &ui.alice_password);
    let list = ui.get("/sites", Some(&s));
    assert!(list.body.contains("mine.example") && !list.body.contains("theirs.example"), "{}", list.body);
    // Asking for the other client's sites by filter finds nothing either.
    assert!(!ui.get("/sites?client=globex", Some(&s)).body.contains("theirs.example"));
    assert!(!ui.get("/sites?q=theirs", Some(&s)).body.contains("theirs.example"));
    for path in
        ["/sites/theirs.example".to_string(), format!("/tasks/{theirs}"), "/tasks?site=theirs.example".to_string()]
    {
        let r = ui.get(&path, Some(&s));
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        assert!(r.body.contains("Not found") && !r.body.contains("globex"), "{path}: {}", r.body);
    }
    for path in ["/", "/tasks", "/clients"] {
        let r = ui.get(path, Some(&s));
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.body.contains("theirs.example") && !r.body.contains("globex"), "{path}: {}", r.body);
    }
    // Acting on it is refused the same way, and so are the pages for admins and managers.
    assert_eq!(ui.post("/sites/theirs.example/backup", &s, &[]).status, StatusCode::NOT_FOUND);
    assert_eq!(
        ui.post("/sites/theirs.example/delete", &s, &[("confirm", "theirs.example")]).status,
        StatusCode::NOT_FOUND
    );
    for path in ["/users", "/platforms", "/servers", "/sites/new"] {
        assert_eq!(ui.get(path, Some(&s)).status, StatusCode::FORBIDDEN, "{path}");
    }
    // Her own site: she may not delete it (no button, and the route refuses); a backup is hers to ask
    // for (refused here only because the site is not installed yet: no workers run).
    let page = ui.get("/sites/mine.example", Some(&s));
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<h1>mine.example</h1>") && !page.body.contains("Delete this site"), "{}", page.body);
    assert_eq!(ui.post("/sites/mine.example/delete", &s, &[("confirm", "mine.example")]).status, StatusCode::FORBIDDEN);
    let r = ui.post("/sites/mine.example/backup", &s, &[]);
    assert!(r.status == StatusCode::SEE_OTHER || r.status == StatusCode::CONFLICT, "{}: {}", r.status, r.body);
}

#[test]
fn forms_show_errors_next_to_their_fields_and_keep_what_was_typed() {
    let ui = Ui::start();
    let s = ui.login("admin", &ui.admin_password);
    let r = ui.post(
        "/sites",
        &s,
        &[
            ("domain", "not a domain!"),
            ("platform", "p1"),
            ("db_engine", "sqlite"),
            ("client", "acme"),
            ("aliases", ""),
        ],
    );
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"f-domain-error\""), "{}", r.body);
    assert!(r.body.contains("aria-invalid=\"true\""), "{}", r.body);
    assert!(r.body.contains("value=\"not a domain!\""), "the typed domain was lost: {}", r.body);
    assert!(r.body.contains("<option value=\"acme\" selected>"), "the chosen client was lost");
    // A bad alias is reported on the aliases field.
    let r = ui.post(
        "/sites",
        &s,
        &[("domain", "ok.example"), ("platform", "p1"), ("db_engine", "sqlite"), ("aliases", "bad alias!")],
    );
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"f-aliases-error\""), "{}", r.body);
    // A good one is queued and lands on its task.
    let r = ui.post("/sites", &s, &[("domain", "ok.example"), ("platform", "p1"), ("db_engine", "sqlite")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"));
    // The same domain again: refused, shown on the form.
    let r = ui.post("/sites", &s, &[("domain", "ok.example"), ("platform", "p1"), ("db_engine", "sqlite")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("There is a problem"), "{}", r.body);
    // Clients and users.
    let r = ui.post("/clients", &s, &[("name", "Bad Name"), ("title", ""), ("site_quota", "")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"f-name-error\""), "{}", r.body);
    let r = ui.post("/clients", &s, &[("name", "initech"), ("title", "Initech"), ("site_quota", "x")]);
    assert!(r.body.contains("id=\"f-site_quota-error\""), "{}", r.body);
    let r = ui.post("/clients", &s, &[("name", "initech"), ("title", "Initech"), ("site_quota", "5")]);
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/clients?added=initech"));
    let r = ui.post(
        "/users",
        &s,
        &[("name", "carol"), ("role", "client"), ("client", ""), ("password", "long enough password")],
    );
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"f-client-error\""), "{}", r.body);
    let r =
        ui.post("/users", &s, &[("name", "carol"), ("role", "client"), ("client", "initech"), ("password", "short")]);
    assert!(r.body.contains("id=\"f-password-error\""), "{}", r.body);
    let r = ui.post(
        "/users",
        &s,
        &[("name", "carol"), ("role", "client"), ("client", "initech"), ("password", "long enough password")],
    );
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/users?added=carol"));
    assert!(ui.get("/users?added=carol", Some(&s)).body.contains("User carol added."));
    // Your own password.
    let r = ui.post("/account/password", &s, &[("current", "wrong"), ("new", "a new long password")]);
    assert!(r.body.contains("id=\"f-current-error\""), "{}", r.body);
    let r = ui.post("/account/password", &s, &[("current", &ui.admin_password), ("new", "a new long password")]);
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/account?done=password"));
    ui.login("admin", "a new long password");
}

#[test]
fn the_sites_list_pages_searches_and_filters() {
    let ui = Ui::start();
    for i in 0..120 {
        ui.create_site(&format!("site{i:03}.example"), if i % 4 == 0 { "globex" } else { "acme" });
    }
    let s = ui.login("admin", &ui.admin_password);
    let first = ui.get("/sites", Some(&s));
    assert_eq!(rows(&first.body, "sites"), 50);
    assert!(first.body.contains("name=\"q\" value=\"\""), "an empty search shows as empty");
    assert!(first.body.contains("1–50 of 120 sites"), "{}", first.body);
    assert!(first.body.contains("site000.example") && !first.body.contains("site050.example"));
    // (minijinja writes the `/` of attribute values as `&#x2f;`, which browsers read back as `/`.)
    assert!(first.body.contains("sites?page=2\" rel=\"next\""), "{}", first.body);
    let last = ui.get("/sites?page=3", Some(&s));
    assert_eq!(rows(&last.body, "sites"), 20);
    assert!(last.body.contains("101–120 of 120 sites") && last.body.contains("site119.example"));
    // Search and filters, kept in the page links.
    let found = ui.get("/sites?q=site11", Some(&s));
    assert_eq!(rows(&found.body, "sites"), 10, "{}", found.body);
    let globex = ui.get("/sites?client=globex&status=queued", Some(&s));
    assert!(globex.body.contains("1–30 of 30 sites"), "{}", globex.body);
    assert_eq!(rows(&globex.body, "sites"), 30);
    let none = ui.get("/sites?q=nothing-like-this", Some(&s));
    assert!(none.body.contains("No site matches these filters."));
    // The dashboard counts them.
    let dash = ui.get("/", Some(&s));
    assert!(dash.body.contains("<span class=\"n\">120</span><span class=\"label\">all sites</span>"), "{}", dash.body);
}

#[test]
fn the_site_settings_page_changes_settings_and_shows_errors_by_field() {
    let ui = Ui::start();
    ui.create_site("a.example", "acme");
    ui.create_site("a-staging.example", "acme");
    ui.create_site("b.example", "globex");
    let admin = ui.login("admin", &ui.admin_password);
    let page = ui.get("/sites/a.example/settings", Some(&admin));
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for form in ["aliases", "https", "cert", "php-limits", "php", "isolation", "health-marker", "sync"] {
        assert!(page.body.contains(&format!("/sites/a.example/settings/{form}\"")), "{form} form missing");
    }
    assert!(page.body.contains("<label for=\"f-memory_limit\">"), "every input has its label");
    assert!(ui.get("/sites/a.example", Some(&admin)).body.contains("/sites/a.example/settings"));

    // A bad value comes back next to its field, with what was typed; nothing is recorded.
    let r =
        ui.post("/sites/a.example/settings/php-limits", &admin, &[("max_children", "many"), ("memory_limit", "256M")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("f-max_children-error") && r.body.contains("value=\"many\""), "{}", r.body);
    // A size PHP would read differently is refused next to its own field.
    let r = ui.post("/sites/a.example/settings/php-limits", &admin, &[("upload_max", "+64M")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("f-upload_max-error") && r.body.contains("value=\"+64M\""), "{}", r.body);
    let r = ui.post("/sites/a.example/settings/isolation", &admin, &[("mode", "shared")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("f-mode-error"), "{}", r.body);
    let r = ui.post("/sites/a.example/settings/sync", &admin, &[("from", "a-staging.example")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("say what to copy"), "{}", r.body);
    // A refusal of the planner (the site is not installed: no workers) is shown above its form.
    let r = ui.post("/sites/a.example/settings/php-limits", &admin, &[("max_children", "4")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("error-summary"), "{}", r.body);
    // Without the CSRF token nothing happens.
    let r = ui.request(Method::POST, "/sites/a.example/settings/health-marker", Some(&admin), Some(&[("marker", "x")]));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The health marker is recorded at once.
    let r = ui.post("/sites/a.example/settings/health-marker", &admin, &[("marker", "Welcome home")]);
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/sites/a.example/settings"), "{}", r.body);
    assert!(ui.get("/sites/a.example/settings", Some(&admin)).body.contains("value=\"Welcome home\""));

    // A client sees the page of their own site without the managers' settings, and not another's.
    let alice = ui.login("alice", &ui.alice_password);
    let page = ui.get("/sites/a.example/settings", Some(&alice));
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("settings/php-limits") && page.body.contains("settings/sync"), "{}", page.body);
    assert!(!page.body.contains("b.example"), "another client's site is offered to sync from");
    assert_eq!(ui.get("/sites/b.example/settings", Some(&alice)).status, StatusCode::NOT_FOUND);
    let r = ui.post("/sites/a.example/settings/health-marker", &alice, &[("marker", "mine")]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[test]
fn servers_are_added_and_changed_from_their_pages() {
    let ui = Ui::start();
    let admin = ui.login("admin", &ui.admin_password);
    let page = ui.get("/servers", Some(&admin));
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("action=\"/servers\"") && page.body.contains("<label for=\"f-http_port\">"));
    // Bad input comes back by field, with what was typed (never the password).
    let r = ui.post(
        "/servers",
        &admin,
        &[
            ("name", "web2"),
            ("hostname", "localhost"),
            ("web", "nginx"),
            ("http_port", "eighty"),
            ("mariadb_password", "s3cret"),
        ],
    );
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("f-http_port-error") && r.body.contains("value=\"web2\""), "{}", r.body);
    assert!(!r.body.contains("s3cret"));
    let r = ui.post("/servers", &admin, &[("name", "localhost"), ("http_port", "81")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("f-name-error"), "{}", r.body);
    let r = ui.post("/servers", &admin, &[("name", "web2"), ("web", "nginx"), ("http_port", "8081"), ("sqlite", "on")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"), "{}", r.location);

    // The server's page changes it.
    let page = ui.get("/servers/web2", Some(&admin));
    for form in ["web", "real-ip", "php", "remove"] {
        assert!(page.body.contains(&format!("/servers/web2/{form}\"")), "{form} form missing");
    }
    let r = ui.post("/servers/web2/real-ip", &admin, &[("trust", "10.0.0.1/8")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("f-trust-error") && r.body.contains("past the &#x2f;8"), "{}", r.body);
    let r =
        ui.post("/servers/web2/real-ip", &admin, &[("trust", "192.0.2.0/24 198.51.100.7"), ("header", "X-Real-IP")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(ui.get("/servers/web2", Some(&admin)).body.contains("X-Real-IP from 192.0.2.0&#x2f;24"));
    let r = ui.post("/servers/web2/web", &admin, &[("web", "apache")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = ui.post("/servers/web2/php", &admin, &[("runtime_name", "alt"), ("binary", "/nonexistent/php-fpm")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("f-binary-error"), "{}", r.body);
    let r = ui.post("/servers/web2/remove", &admin, &[("confirm", "web3")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = ui.post("/servers/web2/remove", &admin, &[("confirm", "web2")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // Clients never see servers; nobody changes them without the form's CSRF token.
    let alice = ui.login("alice", &ui.alice_password);
    assert_eq!(ui.get("/servers", Some(&alice)).status, StatusCode::FORBIDDEN);
    assert_eq!(ui.post("/servers", &alice, &[("name", "x")]).status, StatusCode::FORBIDDEN);
    let r = ui.request(Method::POST, "/servers/web2/web", Some(&admin), Some(&[("web", "nginx")]));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// Runs SQL on the state database, standing in for the daemon (which does not run here).
fn state_sql(ui: &Ui, sql: &str) {
    let db = ui.f.state.join("fjord.db");
    ui.rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.expect("db");
        sqlx::query(sql).execute(&mut conn).await.expect("sql");
    });
}

#[test]
fn migrate_all_sites_queues_one_batch_with_parallel_canary_and_a_dry_run() {
    let ui = Ui::start();
    let code = ui.f.make_codebase("p2");
    ui.f.ok(&["platform", "add", "p2", "--path", &code]);
    state_sql(&ui, "UPDATE platforms SET status = 'enabled'");
    let a_install = ui.create_site("a.example", "acme");
    ui.create_site("b.example", "globex");
    let s = ui.login("admin", &ui.admin_password);

    // The form: target, parallel, canary, a preview button; it works without JavaScript.
    let page = ui.get("/platforms/p1?to=p2", Some(&s));
    assert_eq!(page.status, StatusCode::OK);
    for needle in
        ["name=\"parallel\"", "name=\"canary\"", "name=\"dry_run\"", "Preview (dry run)", "Migrate 2 sites to p2"]
    {
        assert!(page.body.contains(needle), "{needle}: {}", page.body);
    }
    // No CSRF token: refused, nothing queued.
    let fields = [("to", "p2"), ("parallel", "2"), ("canary", "1")];
    let r = ui.request(Method::POST, "/platforms/p1/migrate", Some(&s), Some(&fields));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Bad numbers: the form again, the message beside its field, what was typed kept.
    let r = ui.post("/platforms/p1/migrate", &s, &[("to", "p2"), ("parallel", "lots"), ("canary", "1")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("parallel must be a whole number") && r.body.contains("value=\"lots\""), "{}", r.body);
    assert!(r.body.contains("aria-invalid=\"true\""), "{}", r.body);
    let r = ui.post("/platforms/p1/migrate", &s, &[("to", "p2"), ("parallel", "0")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("parallel must be from 1 to 64"), "{}", r.body);
    let r = ui.post("/platforms/p1/migrate", &s, &[("to", "p1")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("already on p1"), "{}", r.body);
    let batches = |ui: &Ui| {
        let tasks = ui.f.json(&["task", "list"]);
        tasks.as_array().expect("tasks").iter().filter(|t| t["kind"] == "platform-migrate").count()
    };
    assert_eq!(batches(&ui), 0, "a refused form queued a batch");

    // The dry run: the platform page with what would happen (no live site yet: nothing), no task.
    let r = ui.post("/platforms/p1/migrate", &s, &[("to", "p2"), ("parallel", "2"), ("dry_run", "1")]);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Dry run: what would happen") && r.body.contains("0 would migrate"), "{}", r.body);
    assert_eq!(rows(&r.body, "preview"), 0);
    assert_eq!(batches(&ui), 0, "a dry run queued a batch");

    // The batch: one platform-migrate task, then its page.
    state_sql(&ui, "UPDATE sites SET status = 'enabled'");
    let r = ui.post("/platforms/p1/migrate", &s, &[("to", "p2"), ("parallel", "2"), ("canary", "1")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"), "{}", r.location);
    let id: i64 = r.location.trim_start_matches("/tasks/").parse().expect("task id");
    let task = ui.get(&r.location, Some(&s));
    assert!(task.body.contains("platform-migrate") && task.body.contains(">queued<"), "{}", task.body);

    // Once the daemon has stored its summary and queued the sites' migrates, the page lists the sites
    // with links to their tasks, and each of those links back to the batch.
    let child = a_install; // a.example's install task stands in for its migrate
    state_sql(&ui, &format!("UPDATE tasks SET parent_id = {id} WHERE id = {child}"));
    let summary = json!({ "from": "p1", "to": "p2", "sites": [
        { "site": 1, "domain": "a.example", "result": "migrated", "task": child, "downtime_ms": 812, "detail": "" },
        { "site": 2, "domain": "b.example", "result": "running", "task": null, "downtime_ms": null, "detail": "" },
    ] });
    state_sql(&ui, &format!("UPDATE tasks SET result = '{summary}' WHERE id = {id}"));
    let task = ui.get(&format!("/tasks/{id}"), Some(&s));
    assert_eq!(rows(&task.body, "batch"), 2, "{}", task.body);
    assert!(task.body.contains(&format!("href=\"/tasks/{child}\"")) && task.body.contains("812 ms"), "{}", task.body);
    assert!(task.body.contains("1 migrated, 0 rolled back"), "{}", task.body);
    let child_page = ui.get(&format!("/tasks/{child}"), Some(&s));
    assert!(child_page.body.contains(&format!("href=\"/tasks/{id}\"")), "{}", child_page.body);

    // A client user sees neither the batch nor the form.
    let alice = ui.login("alice", &ui.alice_password);
    assert_eq!(ui.get(&format!("/tasks/{id}"), Some(&alice)).status, StatusCode::NOT_FOUND);
    let child_page = ui.get(&format!("/tasks/{child}"), Some(&alice));
    assert!(!child_page.body.contains(&format!("/tasks/{id}\"")), "{}", child_page.body);
    let r = ui.post("/platforms/p1/migrate", &alice, &[("to", "p2")]);
    assert!(matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{}", r.status);
}

/// A failed site create and a failed platform add leave pages that say so, with the way to retry or
/// delete them; the same domain or name never gets a second record.
#[test]
fn a_failed_create_or_platform_add_is_shown_retried_and_deleted_from_its_page() {
    let mut ui = Ui::start();
    // The server's and platform's verifies would start this machine's web server: not here.
    for t in ui.f.json(&["task", "list", "--status", "queued"]).as_array().expect("tasks") {
        ui.f.ok(&["task", "cancel", &t["id"].to_string()]);
    }
    let s = ui.login("admin", &ui.admin_password);
    let install = ui.create_site("a.example", "acme");
    let code = ui.f.make_codebase("p2");
    let r = ui.post("/platforms", &s, &[("name", "p2"), ("server", "localhost"), ("path", &code)]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    std::fs::remove_dir_all(&code).expect("codebase gone before its verify");
    // Run the queue once, the install failing, then serve without workers again.
    let listen = ui.base.trim_start_matches("http://").to_string();
    ui.f.stop();
    ui.f.start_serve_with(&["--workers", "1", "--listen", &listen], &[("FJORD_FAULT", "site-install:1:fail")]);
    ui.f.wait_until("the queue ran", || ui.f.json(&["health"])["active_tasks"] == 0);
    ui.f.stop();
    ui.f.start_serve_with(&["--workers", "0", "--listen", &listen], &[]);
    ui.f.wait_until("listening", || std::net::TcpStream::connect(&listen).is_ok());
    // (Connections kept alive to the daemon that stopped are gone.)
    ui.http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    // The site's page: failed, why, a retry button and the delete form.
    let page = ui.get("/sites/a.example", Some(&s));
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // (Form actions are HTML-escaped.)
    let page = Page { body: page.body.replace("&#x2f;", "/"), ..page };
    let retry = format!("action=\"/tasks/{install}/retry\"");
    assert!(page.body.contains("failed to install") && page.body.contains(&retry), "{}", page.body);
    assert!(page.body.contains("action=\"/sites/a.example/delete\""), "{}", page.body);
    assert!(!page.body.contains("action=\"/sites/a.example/verify\""), "a verify it refuses is offered");
    let list = ui.get("/sites?status=failed", Some(&s));
    assert_eq!(rows(&list.body, "sites"), 1, "{}", list.body);
    // The same domain from the form: refused, saying why.
    let r = ui.post("/sites", &s, &[("domain", "a.example"), ("platform", "p1"), ("db_engine", "sqlite")]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("status failed"), "{}", r.body);
    let r = ui.post(&format!("/tasks/{install}/retry"), &s, &[]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let retried: i64 = r.location.trim_start_matches("/tasks/").parse().expect("a task page");
    ui.f.ok(&["task", "cancel", &retried.to_string()]);
    let r = ui.post("/sites/a.example/delete", &s, &[("confirm", "a.example")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let deleting = ui.f.task(r.location.trim_start_matches("/tasks/").parse().expect("a task page"));
    assert_eq!(deleting["kind"], "site-delete", "{deleting}");

    // The platform's page: failed, why, verify and remove buttons; its name is not given again.
    let page = ui.get("/platforms/p2", Some(&s));
    let page = Page { body: page.body.replace("&#x2f;", "/"), ..page };
    assert!(page.body.contains("failed its verify"), "{}", page.body);
    for action in ["verify", "remove"] {
        assert!(page.body.contains(&format!("action=\"/platforms/p2/{action}\"")), "{action}: {}", page.body);
    }
    let other = ui.f.make_codebase("p3");
    let r = ui.post("/platforms", &s, &[("name", "p2"), ("server", "localhost"), ("path", &other)]);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = ui.post("/platforms/p2/remove", &s, &[]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let removing = ui.f.task(r.location.trim_start_matches("/tasks/").parse().expect("a task page"));
    assert_eq!(removing["kind"], "platform-remove", "{removing}");
}
