//! The HTTP API of a real `fjord serve --listen` on a loopback port, with a SQLite state database and no
//! task workers (`--workers 0`), so queued tasks stay queued and each test sees exactly what the API
//! did. Covers every route of the OpenAPI document, authorization between clients by every route, bad
//! input, token scopes and revocation, CSRF, login rate limiting and the audit log.
#![allow(clippy::disallowed_methods)]

mod common;

use common::Fjord;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Api {
    f: Fjord,
    base: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    admin: String,
    admin_password: String,
    alice: String,
    alice_password: String,
    bob: String,
    manager: String,
    reader: String,
}

/// Credentials a request is made with.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Token(&'a str),
    /// A session cookie, and the CSRF token to send (if any).
    Session(&'a str, Option<&'a str>),
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Resp {
    async fn of(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text }
    }

    /// The seconds of its `Retry-After` header.
    fn retry_after(&self) -> u64 {
        let v = self.headers.get("retry-after").and_then(|v| v.to_str().ok());
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("a Retry-After in seconds: {v:?}"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Api {
    fn start() -> Api {
        Api::start_with("")
    }

    /// Starts with `config` added to `fjord.toml` (e.g. a `[web]` table).
    fn start_with(config: &str) -> Api {
        let mut f = Fjord::new(None);
        if !config.is_empty() {
            let path = f.state.join("fjord.toml");
            let text = std::fs::read_to_string(&path).expect("fjord.toml");
            std::fs::write(&path, format!("{text}\n{config}")).expect("fjord.toml");
        }
        f.ok(&["server", "add", "localhost", "--http-port", "8080", "--database", "sqlite"]);
        let code = f.make_codebase("p1");
        f.ok(&["platform", "add", "p1", "--path", &code]);
        f.ok(&["client", "add", "acme", "--quota", "3"]);
        f.ok(&["client", "add", "globex"]);
        let pw = |v: Value| v["password"].as_str().expect("a generated password").to_string();
        let admin_password = pw(f.json(&["user", "passwd", "admin"]));
        let alice_password = pw(f.json(&["user", "add", "alice", "--role", "client", "--client", "acme"]));
        f.json(&["user", "add", "bob", "--role", "client", "--client", "globex"]);
        f.json(&["user", "add", "pm", "--role", "platform-manager"]);
        let token = |user: &str, scope: &str| {
            f.json(&["token", "create", "--user", user, "--name", "test", "--scope", scope])["secret"]
                .as_str()
                .expect("secret")
                .to_string()
        };
        let (admin, alice, bob, manager, reader) = (
            token("admin", "write"),
            token("alice", "write"),
            token("bob", "write"),
            token("pm", "write"),
            token("admin", "read"),
        );
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        f.start_serve_with(&["--workers", "0", "--listen", &listen], &[]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let api = Api {
            f,
            base: format!("http://{listen}"),
            rt,
            http: reqwest::Client::new(),
            admin,
            admin_password,
            alice,
            alice_password,
            bob,
            manager,
            reader,
        };
        api.wait_listening();
        api
    }

    /// Stops `fjord serve` and starts it again on the same address.
    fn restart(&mut self) {
        self.f.stop();
        let listen = self.base.trim_start_matches("http://").to_string();
        self.f.start_serve_with(&["--workers", "0", "--listen", &listen], &[]);
        self.wait_listening();
    }

    /// Runs what is queued on a daemon with a worker (with `env`, e.g. an injected fault) until
    /// nothing is left, then serves without workers again.
    fn run_queued(&mut self, env: &[(&str, &str)]) {
        self.f.stop();
        let listen = self.base.trim_start_matches("http://").to_string();
        self.f.start_serve_with(&["--workers", "1", "--listen", &listen], env);
        self.f.wait_until("the queue ran", || self.f.json(&["health"])["active_tasks"] == 0);
        self.f.stop();
        self.f.start_serve_with(&["--workers", "0", "--listen", &listen], &[]);
        self.wait_listening();
    }

    fn wait_listening(&self) {
        for _ in 0..200 {
            let up = self.rt.block_on(async {
                let r = self.http.get(format!("{}/api/health", self.base)).send().await;
                r.is_ok_and(|r| r.status() == StatusCode::OK)
            });
            if up {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("fjord serve did not answer HTTP: {}", self.f.serve_log());
    }

    fn call(&self, method: Method, path: &str, auth: Auth, body: Option<Value>) -> Resp {
        self.raw(method, path, auth, body.map(|b| b.to_string()))
    }

    fn raw(&self, method: Method, path: &str, auth: Auth, body: Option<String>) -> Resp {
        self.rt.block_on(async {
            let mut req = self.http.request(method, format!("{}{path}", self.base));
            match auth {
                Auth::None => {}
                Auth::Token(t) => req = req.bearer_auth(t),
                Auth::Session(cookie, csrf) => {
                    req = req.header("cookie", cookie);
                    if let Some(c) = csrf {
                        req = req.header("x-csrf-token", c);
                    }
                }
            }
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            Resp::of(req.send().await.expect("request is answered")).await
        })
    }

    /// A login sent through `http` (e.g. a client bound to another local address, as a proxy), with
    /// `forwarded` as its X-Forwarded-For header.
    fn login_via(&self, http: &reqwest::Client, forwarded: Option<&str>, name: &str, password: &str) -> Resp {
        self.rt.block_on(async {
            let mut req =
                http.post(format!("{}/api/login", self.base)).json(&json!({ "name": name, "password": password }));
            if let Some(f) = forwarded {
                req = req.header("x-forwarded-for", f);
            }
            Resp::of(req.send().await.expect("request is answered")).await
        })
    }

    fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Auth::Token(token), None)
    }

    fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Auth::Token(token), Some(body))
    }

    /// Creates a site as admin; returns the queued install task.
    fn create_site(&self, domain: &str, client: &str) -> Value {
        let r = self.post(
            "/api/sites",
            &self.admin,
            json!({ "domain": domain, "platform": "p1", "db_engine": "sqlite", "client": client }),
        );
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        r.body
    }

    fn login(&self, name: &str, password: &str) -> (Resp, Option<String>) {
        let r = self.call(Method::POST, "/api/login", Auth::None, Some(json!({ "name": name, "password": password })));
        let cookie = r
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").to_string());
        (r, cookie)
    }
}

fn domains(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|s| s["domain"].as_str().expect("domain").to_string()).collect()
}

fn assert_problem(r: &Resp, status: StatusCode, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.headers.get("content-type").map(|v| v.to_str().unwrap_or("")), Some("application/problem+json"));
    assert_eq!(r.body["status"], status.as_u16(), "{}", r.text);
    assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", r.text);
    if let Some(f) = field {
        assert_eq!(r.body["field"], f, "{}", r.text);
    }
}

#[test]
fn openapi_documents_every_route_and_every_route_answers() {
    let api = Api::start();
    let r = api.call(Method::GET, "/api/openapi.json", Auth::None, None);
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.body;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    // Every resource the issue names has its routes.
    for p in [
        "/api/servers",
        "/api/platforms",
        "/api/sites",
        "/api/sites/{domain}/backup",
        "/api/sites/{domain}/restore",
        "/api/sites/{domain}/clone",
        "/api/sites/{domain}/migrate",
        "/api/sites/{domain}/aliases",
        "/api/sites/{domain}/login-link",
        "/api/backups",
        "/api/tasks/{id}/log",
        "/api/tasks/{id}/cancel",
        "/api/tasks/{id}/retry",
        "/api/clients",
        "/api/users",
        "/api/tokens",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    // Every documented operation is served: without credentials it is 401 (never 404 or 405), and the
    // public ones answer; each references schemas that exist.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            operations += 1;
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
            if let Some(reference) = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() {
                let name = reference.trim_start_matches("#/components/schemas/");
                assert!(schemas.contains_key(name), "{method} {path} refers to missing schema {name}");
            }
            let concrete = path
                .replace("{domain}", "a.example")
                .replace("{id}", "1")
                .replace("{name}", "p1")
                .replace("{runtime}", "alt");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = api.call(m, &concrete, Auth::None, None);
            let public = op.get("security").is_none();
            if public {
                assert!(
                    [StatusCode::OK, StatusCode::BAD_REQUEST].contains(&r.status),
                    "{method} {path}: {} {}",
                    r.status,
                    r.text
                );
            } else {
                assert_problem(&r, StatusCode::UNAUTHORIZED, None);
            }
        }
    }
    assert!(operations >= 45, "only {operations} operations documented");
    // And an unknown API path is a problem document too.
    assert_problem(&api.get("/api/nothing", &api.admin), StatusCode::NOT_FOUND, None);
    // Validate with a real OpenAPI validator when one is installed (scripts/test.sh installs it).
    let file = api.f.dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write doc");
    let python = std::env::var("FJORD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let check = std::process::Command::new(python)
        .args(["-c", "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')"])
        .arg(&file)
        .output();
    match check {
        Ok(out) if out.status.success() => assert!(String::from_utf8_lossy(&out.stdout).contains("valid")),
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named") => {
            eprintln!("openapi-spec-validator is not installed; skipped the external validation")
        }
        Ok(out) => panic!("the OpenAPI document is invalid: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => eprintln!("python3 not found ({e}); skipped the external validation"),
    }
}

#[test]
fn a_client_cannot_see_or_touch_another_clients_site_by_any_route() {
    let api = Api::start();
    api.create_site("a.example", "acme");
    let r = api.post(
        "/api/sites",
        &api.admin,
        json!({ "domain": "b.example", "platform": "p1", "db_engine": "sqlite", "client": "globex",
                "aliases": ["alias-of-b.example"] }),
    );
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let b_task = r.body;
    let b_task_id = b_task["id"].as_i64().expect("task id");
    assert_eq!(b_task["kind"], "site-install");
    assert_eq!(b_task["created_by"], "api:admin");
    // A backup of b, as the daemon would have recorded it.
    let db = api.f.state.join("fjord.db");
    api.rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.expect("db");
        sqlx::query(
            "INSERT INTO backups (site_id, path, size, checksum, kind, created_at) \
             SELECT id, '/tmp/b.tar.zst', 10, 'x', 'manual', 1 FROM sites WHERE domain = 'b.example'",
        )
        .execute(&mut conn)
        .await
        .expect("insert backup");
    });
    let b_backup = api.get("/api/backups", &api.admin).body["items"][0]["id"].as_i64().expect("backup id");

    // Alice (acme) lists only acme's sites, whatever the filters say.
    let alice = &api.alice;
    assert_eq!(domains(&api.get("/api/sites", alice).body), ["a.example"]);
    assert_eq!(domains(&api.get("/api/sites?client=globex", alice).body), Vec::<String>::new());
    assert_eq!(domains(&api.get("/api/sites?q=b.example", alice).body), Vec::<String>::new());
    assert_eq!(api.get("/api/sites?q=alias-of-b", alice).body["total"], 0);
    assert_eq!(api.get("/api/backups", alice).body["total"], 0);
    let tasks = api.get("/api/tasks?limit=500", alice).body;
    assert!(tasks["items"].as_array().expect("items").iter().all(|t| t["id"] != b_task_id), "{tasks}");
    assert_eq!(api.get("/api/clients", alice).body.as_array().expect("clients").len(), 1);

    // Every route naming b.example (or its alias), its tasks or its backups is "not found" for her.
    let hidden = [
        (Method::GET, "/api/sites/b.example".to_string(), None),
        (Method::GET, "/api/sites/alias-of-b.example".to_string(), None),
        (Method::GET, "/api/sites/b.example/tasks".to_string(), None),
        (Method::GET, "/api/sites/b.example/backups".to_string(), None),
        (Method::GET, "/api/tasks?site=b.example".to_string(), None),
        (Method::GET, "/api/backups?site=b.example".to_string(), None),
        (Method::GET, format!("/api/backups/{b_backup}"), None),
        (Method::DELETE, format!("/api/backups/{b_backup}"), None),
        (Method::GET, format!("/api/tasks/{b_task_id}"), None),
        (Method::GET, format!("/api/tasks/{b_task_id}/log"), None),
        (Method::POST, format!("/api/tasks/{b_task_id}/cancel"), None),
        (Method::POST, format!("/api/tasks/{b_task_id}/retry"), None),
        (Method::DELETE, "/api/sites/b.example".to_string(), None),
        (Method::POST, "/api/sites/b.example/verify".to_string(), None),
        (Method::POST, "/api/sites/b.example/enable".to_string(), None),
        (Method::POST, "/api/sites/b.example/disable".to_string(), None),
        (Method::POST, "/api/sites/b.example/backup".to_string(), None),
        (Method::POST, "/api/sites/b.example/login-link".to_string(), None),
        (Method::POST, "/api/sites/b.example/restore".to_string(), Some(json!({ "backup": b_backup }))),
        (Method::POST, "/api/sites/b.example/clone".to_string(), Some(json!({ "domain": "steal.example" }))),
        (Method::POST, "/api/sites/b.example/migrate".to_string(), Some(json!({ "platform": "p1" }))),
        (Method::POST, "/api/sites/b.example/aliases".to_string(), Some(json!({ "add": ["x.example"] }))),
    ];
    for (method, path, body) in hidden {
        let r = api.call(method.clone(), &path, Auth::Token(alice), body);
        assert_problem(&r, StatusCode::NOT_FOUND, None);
        assert!(!r.text.contains("globex"), "{method} {path} leaks: {}", r.text);
    }
    // Restoring her own site from b's backup is refused too.
    let r = api.post("/api/sites/a.example/restore", alice, json!({ "backup": b_backup }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("backup"));

    // On her own site she may back up, enable, disable, get a login link and clone; not the rest. (The
    // site is not installed, with no workers running, so the planner may refuse: 409, never 403/404.)
    for action in ["backup", "login-link", "disable", "enable"] {
        let r = api.post(&format!("/api/sites/a.example/{action}"), alice, json!({}));
        assert!(r.status == StatusCode::ACCEPTED || r.status == StatusCode::CONFLICT, "{action}: {}", r.text);
        if r.status == StatusCode::ACCEPTED {
            assert_eq!(r.body["created_by"], "api:alice");
            assert!(r.headers.get("location").is_some());
        }
    }
    // A backup is logical or physical, not both.
    let r = api.post("/api/sites/a.example/backup", alice, json!({ "logical": true, "physical": true }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("physical"));
    let r = api.post("/api/sites/a.example/clone", alice, json!({ "domain": "a2.example" }));
    assert!(r.status == StatusCode::ACCEPTED || r.status == StatusCode::CONFLICT, "{}", r.text);
    let r = api.post("/api/sites/a.example/clone", alice, json!({ "domain": "a2.example", "platform": "p1" }));
    assert_problem(&r, StatusCode::FORBIDDEN, None);
    for (method, path, body) in [
        (Method::DELETE, "/api/sites/a.example", None),
        (Method::POST, "/api/sites/a.example/verify", None),
        (Method::POST, "/api/sites/a.example/migrate", Some(json!({ "platform": "p1" }))),
        (Method::POST, "/api/sites/a.example/aliases", Some(json!({ "add": ["x.example"] }))),
        (Method::POST, "/api/sites", Some(json!({ "domain": "c.example", "platform": "p1", "client": "acme" }))),
        (Method::POST, "/api/platforms", Some(json!({ "name": "p2", "path": "/srv/p2" }))),
        (Method::GET, "/api/servers", None),
        (Method::GET, "/api/platforms", None),
        (Method::GET, "/api/users", None),
        (Method::GET, "/api/audit", None),
        (Method::POST, "/api/clients", Some(json!({ "name": "mine" }))),
    ] {
        let r = api.call(method.clone(), path, Auth::Token(alice), body);
        assert_problem(&r, StatusCode::FORBIDDEN, None);
    }
    // Bob sees globex's site and not alice's.
    assert_eq!(domains(&api.get("/api/sites", &api.bob).body), ["b.example"]);
    assert_problem(&api.get("/api/sites/a.example", &api.bob), StatusCode::NOT_FOUND, None);
    // The platform manager sees everything and may create sites, not users.
    assert_eq!(api.get("/api/sites", &api.manager).body["total"], 2);
    assert_problem(&api.get("/api/users", &api.manager), StatusCode::FORBIDDEN, None);
    // The admin's audit log holds the refusals, with who and from where.
    let audit = api.get("/api/audit?limit=500", &api.admin).body;
    let items = audit["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .any(|e| e["actor"] == "api:alice" && e["action"] == "site-clone" && e["remote_addr"] == "127.0.0.1"),
        "{audit}"
    );
    assert!(items.iter().any(|e| e["actor"] == "api:alice" && e["outcome"] == "invalid"), "{audit}");
    // Refused before any handler's own audit record (the permission check, no credentials at all):
    // in the log too, by method and path, with who and the outcome.
    let r = api.call(Method::POST, "/api/sites/b.example/verify", Auth::None, None);
    assert_problem(&r, StatusCode::UNAUTHORIZED, None);
    let audit = api.get("/api/audit?limit=500", &api.admin).body;
    let items = audit["items"].as_array().expect("items");
    let refused = |actor: &str, action: &str| {
        items.iter().any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == "denied")
    };
    assert!(refused("api:alice", "POST /api/clients"), "{audit}");
    assert!(refused("api:alice", "POST /api/platforms"), "{audit}");
    assert!(refused("anonymous", "POST /api/sites/b.example/verify"), "{audit}");

    // Deleting a backup: refused to a client (even for her own site), refused while the site has a task
    // queued, refused for an archive outside the state dir's backups/; then done by a manager.
    let r = api.call(Method::DELETE, &format!("/api/backups/{b_backup}"), Auth::Token(&api.bob), None);
    assert_problem(&r, StatusCode::FORBIDDEN, None);
    let r = api.call(Method::DELETE, &format!("/api/backups/{b_backup}"), Auth::Token(&api.manager), None);
    assert_problem(&r, StatusCode::CONFLICT, None);
    let r = api.post(&format!("/api/tasks/{b_task_id}/cancel"), &api.admin, json!({}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api.call(Method::DELETE, &format!("/api/backups/{b_backup}"), Auth::Token(&api.manager), None);
    assert_problem(&r, StatusCode::CONFLICT, None);
    assert!(r.text.contains("not under"), "{}", r.text);
    let archive = api.f.state.join("backups/b.example/b2.tar.zst");
    std::fs::create_dir_all(archive.parent().expect("dir")).expect("backups dir");
    std::fs::write(&archive, b"archive").expect("archive");
    api.rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.expect("db");
        sqlx::query(
            "INSERT INTO backups (site_id, path, size, checksum, kind, created_at) \
             SELECT id, $1, 7, 'x', 'manual', 2 FROM sites WHERE domain = 'b.example'",
        )
        .bind(archive.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .expect("insert backup");
    });
    let second = api.get("/api/backups?site=b.example", &api.admin).body["items"][0]["id"].as_i64().expect("id");
    assert_ne!(second, b_backup);
    let r = api.call(Method::DELETE, &format!("/api/backups/{second}"), Auth::Token(&api.manager), None);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!archive.exists(), "the archive is still there");
    assert_problem(&api.get(&format!("/api/backups/{second}"), &api.admin), StatusCode::NOT_FOUND, None);
}

#[test]
fn bad_input_is_a_problem_naming_the_field_and_changes_nothing() {
    let api = Api::start();
    let admin = &api.admin;
    let before = api.get("/api/tasks", admin).body["total"].clone();
    let site = |extra: Value| {
        let mut body = json!({ "domain": "ok.example", "platform": "p1", "db_engine": "sqlite" });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        api.post("/api/sites", admin, body)
    };
    assert_problem(&site(json!({ "colour": "blue" })), StatusCode::BAD_REQUEST, Some("colour"));
    assert_problem(&site(json!({ "domain": "../etc/passwd" })), StatusCode::UNPROCESSABLE_ENTITY, Some("domain"));
    assert_problem(&site(json!({ "domain": "a..example" })), StatusCode::UNPROCESSABLE_ENTITY, Some("domain"));
    assert_problem(&site(json!({ "aliases": ["bad alias"] })), StatusCode::UNPROCESSABLE_ENTITY, Some("alias"));
    assert_problem(&site(json!({ "platform": "nope" })), StatusCode::UNPROCESSABLE_ENTITY, Some("platform"));
    assert_problem(&site(json!({ "client": "ghost" })), StatusCode::UNPROCESSABLE_ENTITY, Some("client"));
    assert_problem(&site(json!({ "db_engine": "oracle" })), StatusCode::UNPROCESSABLE_ENTITY, Some("db_engine"));
    assert_problem(&site(json!({ "cron_interval": "often" })), StatusCode::BAD_REQUEST, Some("cron_interval"));
    assert_problem(
        &api.raw(Method::POST, "/api/sites", Auth::Token(admin), Some("{not json".into())),
        StatusCode::BAD_REQUEST,
        None,
    );
    let huge = json!({ "domain": "x".repeat(100_000), "platform": "p1" });
    assert_problem(&api.post("/api/sites", admin, huge), StatusCode::PAYLOAD_TOO_LARGE, None);
    assert_problem(&api.get("/api/sites?status=sleeping", admin), StatusCode::UNPROCESSABLE_ENTITY, Some("status"));
    assert_problem(&api.get("/api/sites?colour=blue", admin), StatusCode::BAD_REQUEST, Some("colour"));
    assert_problem(&api.get("/api/sites/nope.example", admin), StatusCode::NOT_FOUND, None);
    assert_eq!(api.get("/api/tasks", admin).body["total"], before);
    assert_eq!(api.get("/api/sites", admin).body["total"], 0);
    // A good one then works, and a second with the same domain is a conflict.
    assert_eq!(site(json!({})).status, StatusCode::ACCEPTED);
    assert_problem(&site(json!({})), StatusCode::CONFLICT, None);
}

#[test]
fn lists_are_paginated_filtered_and_sorted() {
    let api = Api::start();
    for d in ["c.example", "a.example", "b.example", "d.test"] {
        api.create_site(d, "globex");
    }
    let admin = &api.admin;
    let page = api.get("/api/sites?limit=2&offset=1", admin).body;
    assert_eq!(page["total"], 4);
    assert_eq!(domains(&page), ["b.example", "c.example"]);
    assert_eq!(domains(&api.get("/api/sites?q=.TEST", admin).body), ["d.test"]);
    assert_eq!(api.get("/api/sites?status=queued&platform=p1&client=globex", admin).body["total"], 4);
    assert_eq!(api.get("/api/sites?status=enabled", admin).body["total"], 0);
    let tasks = api.get("/api/tasks?kind=site-install&limit=3", admin).body;
    assert_eq!(tasks["total"], 4);
    let ids: Vec<i64> =
        tasks["items"].as_array().expect("items").iter().map(|t| t["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let site_tasks = api.get("/api/sites/a.example/tasks", admin).body;
    assert_eq!(site_tasks["total"], 1);
    // Show, cancel, retry and the live log of a task.
    let id = site_tasks["items"][0]["id"].as_i64().expect("id");
    assert_eq!(api.get(&format!("/api/tasks/{id}"), admin).body["status"], "queued");
    let r = api.post(&format!("/api/tasks/{id}/cancel"), admin, json!({}));
    assert_eq!(r.body["status"], "cancelled", "{}", r.text);
    let log = api.get(&format!("/api/tasks/{id}/log"), admin);
    assert_eq!(log.headers.get("content-type").map(|v| v.to_str().unwrap_or("")), Some("text/event-stream"));
    assert!(log.text.contains("event: end") && log.text.contains("\"cancelled\""), "{}", log.text);
    let r = api.post(&format!("/api/tasks/{id}/retry"), admin, json!({}));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert!(r.body["id"].as_i64().expect("new id") > id);
    // Objects.
    assert_eq!(api.get("/api/servers", admin).body[0]["name"], "localhost");
    assert_eq!(api.get("/api/platforms/p1", admin).body["sites"], 4);
    let r = api.post("/api/platforms/p1/lock", admin, json!({}));
    assert_eq!(r.body["locked"], true, "{}", r.text);
    assert_problem(
        &api.post("/api/sites", admin, json!({ "domain": "e.example", "platform": "p1", "db_engine": "sqlite" })),
        StatusCode::CONFLICT,
        None,
    );
    api.post("/api/platforms/p1/unlock", admin, json!({}));
    assert_eq!(api.post("/api/platforms/p1/verify", admin, json!({})).status, StatusCode::ACCEPTED);
    assert_eq!(api.post("/api/servers/localhost/verify", admin, json!({})).status, StatusCode::ACCEPTED);
    let r = api.post("/api/clients", admin, json!({ "name": "initech", "site_quota": 2 }));
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api.post("/api/sites/a.example/migrate", admin, json!({ "platform": "p1", "new_domain": "z.example" }));
    assert!(r.status == StatusCode::ACCEPTED || r.status == StatusCode::CONFLICT, "{}", r.text);
}

#[test]
fn tokens_sessions_csrf_and_login_limits() {
    let mut api = Api::start();
    api.create_site("a.example", "acme");
    // A read token reads but changes nothing.
    assert_eq!(api.get("/api/sites", &api.reader).status, StatusCode::OK);
    assert_problem(&api.post("/api/sites/a.example/backup", &api.reader, json!({})), StatusCode::FORBIDDEN, None);
    // Tokens made through the API work, are listed without their secret, and stop working when revoked.
    let r = api.post("/api/tokens", &api.admin, json!({ "name": "ci", "scope": "write" }));
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let secret = r.body["secret"].as_str().expect("secret").to_string();
    let id = r.body["token"]["id"].as_i64().expect("id");
    assert_eq!(api.get("/api/me", &secret).body["user"]["name"], "admin");
    let list = api.get("/api/tokens", &api.admin);
    assert!(!list.text.contains(&secret) && !list.text.contains("hash"), "{}", list.text);
    assert_problem(
        &api.call(Method::DELETE, &format!("/api/tokens/{id}"), Auth::Token(&api.alice), None),
        StatusCode::NOT_FOUND,
        None,
    );
    let r = api.call(Method::DELETE, &format!("/api/tokens/{id}"), Auth::Token(&api.admin), None);
    assert!(r.body["revoked_at"].is_i64(), "{}", r.text);
    assert_problem(&api.get("/api/me", &secret), StatusCode::UNAUTHORIZED, None);
    assert_problem(&api.get("/api/me", "fjt_made-up"), StatusCode::UNAUTHORIZED, None);

    // A session: the cookie is HttpOnly and SameSite; changes need the CSRF token.
    let (r, cookie) = api.login("alice", &api.alice_password);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let set_cookie = r.headers.get("set-cookie").expect("cookie").to_str().expect("ascii");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = cookie.expect("session cookie");
    let csrf = r.body["csrf"].as_str().expect("csrf").to_string();
    let me = api.call(Method::GET, "/api/me", Auth::Session(&cookie, None), None);
    assert_eq!(me.body["user"]["name"], "alice");
    assert_eq!(me.body["csrf"], csrf.as_str());
    let change = |csrf: Option<&str>| {
        api.call(
            Method::POST,
            "/api/tokens",
            Auth::Session(&cookie, csrf),
            Some(json!({ "name": "t", "scope": "read" })),
        )
    };
    assert_problem(&change(None), StatusCode::FORBIDDEN, None);
    assert_problem(&change(Some("forged")), StatusCode::FORBIDDEN, None);
    assert_eq!(change(Some(&csrf)).status, StatusCode::CREATED);
    let r = api.call(Method::POST, "/api/sites/a.example/backup", Auth::Session(&cookie, None), Some(json!({})));
    assert_problem(&r, StatusCode::FORBIDDEN, None);
    // Password change: the old one stops working, this session stays.
    let r = api.call(
        Method::POST,
        "/api/me/password",
        Auth::Session(&cookie, Some(&csrf)),
        Some(json!({ "current": api.alice_password, "new": "a much better password" })),
    );
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_problem(&api.login("alice", &api.alice_password).0, StatusCode::UNAUTHORIZED, None);
    assert_eq!(api.login("alice", "a much better password").0.status, StatusCode::OK);
    // Logout ends the session.
    let r = api.call(Method::POST, "/api/logout", Auth::Session(&cookie, Some(&csrf)), None);
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_problem(
        &api.call(Method::GET, "/api/me", Auth::Session(&cookie, None), None),
        StatusCode::UNAUTHORIZED,
        None,
    );

    // Five wrong passwords for a name from one address, then even the right one is refused from there
    // for a while (2^5 s; other addresses are not: see the tests below).
    let r = api.post(
        "/api/users",
        &api.admin,
        json!({ "name": "carol", "role": "platform-manager", "password": "carol's long password" }),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for _ in 0..5 {
        assert_problem(&api.login("carol", "wrong password!").0, StatusCode::UNAUTHORIZED, None);
    }
    let r = api.login("carol", "carol's long password").0;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, None);
    assert!(r.headers.get("retry-after").is_some());
    // The count lives in the state database: restarting `fjord serve` does not reset it.
    api.restart();
    assert_problem(&api.login("carol", "carol's long password").0, StatusCode::TOO_MANY_REQUESTS, None);
    // Other users are not locked out by it.
    assert_eq!(api.login("alice", "a much better password").0.status, StatusCode::OK);
    // Users: the admin manages them; the last admin stays.
    assert_problem(
        &api.call(Method::DELETE, "/api/users/admin", Auth::Token(&api.admin), None),
        StatusCode::CONFLICT,
        None,
    );
    assert_eq!(
        api.call(Method::DELETE, "/api/users/carol", Auth::Token(&api.admin), None).status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &api.post("/api/users", &api.admin, json!({ "name": "dave", "role": "client", "password": "long enough pw" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("clients"),
    );
    assert_problem(
        &api.post("/api/users", &api.admin, json!({ "name": "dave", "role": "admin", "password": "short" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("password"),
    );
    let audit = api.get("/api/audit?limit=500", &api.admin).body;
    let items = audit["items"].as_array().expect("items");
    assert!(items.iter().any(|e| e["action"] == "login" && e["outcome"] == "limited"), "{audit}");
    assert!(items.iter().any(|e| e["action"] == "logout" && e["actor"] == "web:alice"), "{audit}");
}

/// The audit log's login entries as (target, remote address, outcome).
fn login_audit(api: &Api) -> Vec<(String, String, String)> {
    let audit = api.get("/api/audit?limit=500", &api.admin).body;
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_string();
    let items = audit["items"].as_array().expect("items");
    items
        .iter()
        .filter(|e| e["action"] == "login")
        .map(|e| (s(e, "target"), s(e, "remote_addr"), s(e, "outcome")))
        .collect()
}

/// Behind a TLS proxy on the same host (every TCP peer is 127.0.0.1), an attacker's failed logins, under
/// many names and against the admin, limit the attacker's address only: a user and the admin still log
/// in from their own addresses.
#[test]
fn an_attacker_behind_the_proxy_locks_out_neither_users_nor_the_admin() {
    let api = Api::start_with("[web]\ntrusted_proxies = [\"127.0.0.1/32\"]\nlogin_failures_per_address = 20\n");
    let http = api.http.clone();
    let attacker = Some("203.0.113.66");
    for _ in 0..5 {
        assert_problem(&api.login_via(&http, attacker, "admin", "a wrong guess"), StatusCode::UNAUTHORIZED, None);
    }
    let r = api.login_via(&http, attacker, "admin", "another wrong guess");
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, None);
    assert!((20..=32).contains(&r.retry_after()), "{:?}", r.headers);
    for n in 0..15 {
        let r = api.login_via(&http, attacker, &format!("user{n}"), "a wrong guess");
        assert_problem(&r, StatusCode::UNAUTHORIZED, None);
    }
    let r = api.login_via(&http, attacker, "nobody", "a wrong guess");
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, None);
    assert!(r.retry_after() > 60, "the address waits for its failures to age: {:?}", r.headers);
    // Others, behind the same proxy, log in at once: a user, and the admin the attacker tried.
    let r = api.login_via(&http, Some("198.51.100.7"), "alice", &api.alice_password);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api.login_via(&http, Some("198.51.100.8"), "admin", &api.admin_password);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The audit log has every outcome under the address it came from.
    let logins = login_audit(&api);
    let count = |addr: &str, outcome: &str| logins.iter().filter(|(_, a, o)| a == addr && o == outcome).count();
    assert_eq!((count("203.0.113.66", "denied"), count("203.0.113.66", "limited")), (20, 2), "{logins:?}");
    assert!(logins.contains(&("user:admin".into(), "198.51.100.8".into(), "ok".into())), "{logins:?}");
    assert!(logins.contains(&("user:alice".into(), "198.51.100.7".into(), "ok".into())), "{logins:?}");
    assert!(logins.iter().all(|(_, a, _)| a != "127.0.0.1"), "{logins:?}");
}

/// X-Forwarded-For names the client only when a trusted proxy sends it: from any other peer it is
/// ignored (an attacker cannot pick a new address for each guess), and behind the proxy two clients are
/// counted apart.
#[test]
fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let api = Api::start_with("[web]\ntrusted_proxies = [\"127.0.0.2/32\"]\nlogin_failures_per_address = 3\n");
    // Straight from 127.0.0.1, which is no proxy, with a new forwarded address for each guess.
    for n in 0..3 {
        let r = api.login_via(&api.http, Some(&format!("192.0.2.{n}")), "alice", "a wrong guess");
        assert_problem(&r, StatusCode::UNAUTHORIZED, None);
    }
    let r = api.login_via(&api.http, Some("192.0.2.200"), "alice", &api.alice_password);
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, None);
    // The proxy, at 127.0.0.2: one client behind it fails three times (what it writes left of the
    // proxy's entry changes nothing) and is refused; another client behind it logs in.
    let proxy =
        reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().ok()).build().expect("client");
    for n in 0..3 {
        let r = api.login_via(&proxy, Some(&format!("10.9.9.{n}, 198.51.100.10")), &format!("user{n}"), "a guess");
        assert_problem(&r, StatusCode::UNAUTHORIZED, None);
    }
    let r = api.login_via(&proxy, Some("6.6.6.6, 198.51.100.10"), "alice", &api.alice_password);
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, None);
    let r = api.login_via(&proxy, Some("198.51.100.11"), "alice", &api.alice_password);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let logins = login_audit(&api);
    let addrs = |outcome: &str| {
        let mut v: Vec<&str> = logins.iter().filter(|(_, _, o)| o == outcome).map(|(_, a, _)| a.as_str()).collect();
        v.sort();
        v
    };
    assert_eq!(
        addrs("denied"),
        ["127.0.0.1", "127.0.0.1", "127.0.0.1", "198.51.100.10", "198.51.100.10", "198.51.100.10"]
    );
    assert_eq!(addrs("limited"), ["127.0.0.1", "198.51.100.10"]);
    assert_eq!(addrs("ok"), ["198.51.100.11"]);
}

/// An account's failed logins make the address they came from wait before its next try, longer after
/// each (2^n seconds, here at most 6), while the right password from elsewhere works at once.
#[test]
fn an_accounts_login_slow_down_grows() {
    let api = Api::start_with(
        "[web]\ntrusted_proxies = [\"127.0.0.1/32\"]\nlogin_failures_per_account = 1\nlogin_delay_max_seconds = 6\n",
    );
    let guesser = Some("203.0.113.7");
    for expected in [2, 4, 6] {
        assert_problem(&api.login_via(&api.http, guesser, "alice", "a wrong guess"), StatusCode::UNAUTHORIZED, None);
        let r = api.login_via(&api.http, guesser, "alice", "a wrong guess");
        assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, None);
        // Counted from the failed answer; a second may have gone by since.
        assert!((expected - 1..=expected).contains(&r.retry_after()), "{expected}: {:?}", r.headers);
        if expected < 6 {
            std::thread::sleep(std::time::Duration::from_millis(expected * 1000 + 300));
        }
    }
    // Meanwhile alice logs in from her own address, and that does not end the guesser's wait.
    let r = api.login_via(&api.http, Some("198.51.100.7"), "alice", &api.alice_password);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_problem(
        &api.login_via(&api.http, guesser, "alice", &api.alice_password),
        StatusCode::TOO_MANY_REQUESTS,
        None,
    );
}

#[test]
fn the_cli_acts_on_a_remote_fjord_through_the_api() {
    use std::os::unix::fs::PermissionsExt as _;
    let api = Api::start();
    api.create_site("a.example", "acme");
    let token_file = api.f.dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", api.admin)).expect("token file");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // Another machine's CLI: no local state at all, only the URL and the token file.
    let remote = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fjord"));
        c.arg("--state").arg(api.f.dir.path().join("nowhere")).env_remove("FJORD_TOKEN").env("FJORD_REMOTE", &api.base);
        c.env("FJORD_TOKEN_FILE", &token_file).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("fjord runs")
    };
    let ok = |args: &[&str]| {
        let out = remote(args, &[]);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out =
        ok(&["--json", "site", "create", "r.example", "--platform", "p1", "--db-engine", "sqlite", "--client", "acme"]);
    let task: Value = serde_json::from_str(&out).expect("task JSON");
    assert_eq!(task["kind"], "site-install");
    assert_eq!(task["created_by"], "api:admin");
    let list: Value = serde_json::from_str(&ok(&["--json", "site", "list"])).expect("list");
    assert_eq!(list.as_array().expect("sites").len(), 2);
    assert!(ok(&["site", "list", "--status", "queued"]).contains("r.example"));
    let shown: Value = serde_json::from_str(&ok(&["--json", "site", "show", "r.example"])).expect("show");
    assert_eq!(shown["client"], "acme");
    assert!(ok(&["site", "show", "r.example"]).contains("platform"));
    // Actions the planner refuses on a site that is not installed yet come back as clean errors.
    for action in ["backup", "verify", "enable", "disable"] {
        let out = remote(&["site", action, "r.example"], &[]);
        assert!(!out.status.success(), "{action}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("409") && err.contains("r.example"), "{action}: {err}");
    }
    let out = remote(&["site", "delete", "r.example", "--force"], &[]);
    assert_ne!(out.status.code(), Some(101), "{}", String::from_utf8_lossy(&out.stderr));
    // Tasks: list, show, and the log of one that has ended.
    let tasks: Value = serde_json::from_str(&ok(&["--json", "task", "list"])).expect("tasks");
    assert!(tasks.as_array().expect("tasks").iter().any(|t| t["id"] == task["id"]));
    let id = task["id"].to_string();
    assert!(ok(&["task", "show", &id]).contains("site-install"));
    api.post(&format!("/api/tasks/{id}/cancel"), &api.admin, json!({}));
    let out = remote(&["task", "log", &id, "--follow"], &[]);
    assert_eq!(out.status.code(), Some(1), "a cancelled task's log exits non-zero");
    assert!(ok(&["health"]).contains("database ok"));
    // Site import and the proxy ranges go through the API too: its refusals come back by field, and an
    // update from a file records the list (no server trusts Cloudflare here: nothing to verify).
    let pw = api.f.dir.path().join("import-pw");
    std::fs::write(&pw, "secret-123\n").expect("pw");
    let pw = pw.to_string_lossy().to_string();
    let import = ["site", "import", "i.example", "--platform", "p1", "--db-name", "idb", "--db-password-file", &pw];
    let out = remote(&[&import[..], &["--db-engine", "sqlite"]].concat(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("SQLite"), "{err}");
    assert_problem(&api.get("/api/sites/i.example", &api.admin), StatusCode::NOT_FOUND, None);
    let ranges = api.f.dir.path().join("ranges.txt");
    std::fs::write(&ranges, "203.0.113.0/24\n2001:db8::/32\n").expect("ranges");
    let from = format!("file://{}", ranges.display());
    assert!(ok(&["proxy-ranges", "update", "--from", &from]).contains("cloudflare: 2 ranges"));
    assert!(ok(&["--json", "proxy-ranges", "show"]).contains("203.0.113.0/24"));
    // A client's token sees only that client's sites, from the CLI too.
    let out = remote(&["--json", "site", "list"], &[("FJORD_TOKEN", &api.bob)]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    // The token never comes from argv, and a file others can read is refused.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = remote(&["site", "list"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    let out = remote(&["site", "list"], &[("FJORD_TOKEN_FILE", "")]);
    assert!(!out.status.success());
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // Servers, platforms, clients, backups, users and the other site actions, all through the API.
    assert!(ok(&["server", "list"]).contains("localhost"));
    let server: Value = serde_json::from_str(&ok(&["--json", "server", "show", "localhost"])).expect("server");
    assert_eq!(server["name"], "localhost");
    let t: Value = serde_json::from_str(&ok(&["--json", "server", "web", "localhost", "apache"])).expect("task");
    assert_eq!(t["kind"], "server-verify");
    assert_eq!(api.get("/api/servers/localhost", &api.admin).body["services"][0]["kind"], "apache");
    let out = remote(&["server", "real-ip", "localhost", "--trust", "10.0.0.1/8"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the /8"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ok(&["platform", "list"]).contains("p1"));
    assert!(ok(&["platform", "show", "p1"]).contains("sites"));
    assert!(ok(&["platform", "lock", "p1"]).contains("locked"));
    assert_eq!(api.get("/api/platforms/p1", &api.admin).body["locked"], true);
    ok(&["platform", "unlock", "p1"]);
    ok(&["client", "add", "initech", "--quota", "2"]);
    assert!(ok(&["client", "list"]).contains("initech"));
    assert!(ok(&["user", "list"]).contains("alice"));
    let backups: Value = serde_json::from_str(&ok(&["--json", "backup", "list"])).expect("backups");
    assert!(backups.is_array());
    let retried: Value = serde_json::from_str(&ok(&["--json", "task", "retry", &id])).expect("retried");
    assert_eq!(retried["kind"], "site-install");
    let cancelled: Value =
        serde_json::from_str(&ok(&["--json", "task", "cancel", &retried["id"].to_string()])).expect("t");
    assert_eq!(cancelled["status"], "cancelled");
    // Actions on a site that is not installed yet are refused by the planner there, with its reason.
    for args in [
        vec!["site", "clone", "a.example", "c.example"],
        vec!["site", "migrate", "a.example", "--to", "p1", "--domain", "a2.example"],
        vec!["site", "rename", "a.example", "a2.example"],
        vec!["site", "alias", "a.example", "--add", "www.a.example"],
        vec!["site", "login-link", "a.example"],
        vec!["site", "restore", "a.example", "--backup", "999"],
        vec!["site", "sync", "r.example", "a.example", "--db"],
        vec!["site", "cron", "a.example"],
        vec!["site", "php-limits", "a.example", "--max-children", "4"],
        vec!["site", "php", "a.example", "--runtime", "nope"],
        vec!["site", "isolation", "a.example", "--mode", "client"],
    ] {
        let out = remote(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains('('), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
    assert!(ok(&["site", "health-marker", "a.example", "Welcome"]).contains("Welcome"));
    assert_eq!(api.get("/api/sites/a.example", &api.admin).body["health_marker"], "Welcome");
    let out = remote(&["backup", "schedule", "show", "--site", "a.example"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not with --remote"));
}

#[test]
fn servers_are_added_changed_and_removed_through_the_api() {
    let api = Api::start();
    let servers = || api.get("/api/servers", &api.admin).body.as_array().expect("servers").len();
    assert_eq!(servers(), 1);
    let web2 = json!({ "name": "web2", "http_port": 8081, "databases": [{ "engine": "sqlite" }] });

    // Only an admin adds servers; bad input is refused by field, and nothing is recorded.
    assert_problem(&api.post("/api/servers", &api.manager, web2.clone()), StatusCode::FORBIDDEN, None);
    let bad = |body: Value, status: StatusCode, field: Option<&str>| {
        assert_problem(&api.post("/api/servers", &api.admin, body), status, field);
    };
    bad(json!({ "name": "web2", "hostname": "not a host" }), StatusCode::UNPROCESSABLE_ENTITY, Some("hostname"));
    bad(json!({ "name": "web2", "web": "iis" }), StatusCode::UNPROCESSABLE_ENTITY, Some("web"));
    bad(
        json!({ "name": "web2", "web": "apache", "web_mode": "system" }),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("web_mode"),
    );
    bad(json!({ "name": "localhost" }), StatusCode::UNPROCESSABLE_ENTITY, Some("name"));
    bad(json!({ "name": "web2", "colour": "blue" }), StatusCode::BAD_REQUEST, None);
    bad(
        json!({ "name": "web2", "php": [{ "version": "eight", "binary": "/usr/sbin/php-fpm8.2" }] }),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("php"),
    );
    // A database whose admin account does not answer: refused, and its password is not kept.
    let closed = free_port();
    bad(
        json!({ "name": "web2", "databases": [{ "engine": "mariadb", "port": closed, "admin_password": "pw-not-kept" }] }),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("databases"),
    );
    let secrets = api.f.state.join("secrets");
    let kept: Vec<String> = std::fs::read_dir(&secrets)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(kept.iter().all(|n| !n.contains("web2")), "{kept:?}");
    assert_eq!(servers(), 1);

    let r = api.post("/api/servers", &api.admin, web2);
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["kind"], "server-verify");
    let show = |name: &str| api.get(&format!("/api/servers/{name}"), &api.admin).body;
    let http = |s: &Value| s["services"].as_array().expect("services").iter().find(|v| v["type"] == "http").cloned();
    assert_eq!(http(&show("web2")).expect("http")["port"], 8081, "{}", show("web2"));

    // Trusted proxies: a bad block is refused by field and changes nothing; a good one is recorded.
    let before = show("web2");
    let r = api.post("/api/servers/web2/real-ip", &api.admin, json!({ "trust": ["10.0.0.1/8"] }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("trust"));
    let r = api.post("/api/servers/web2/real-ip", &api.admin, json!({ "trust": ["10.0.0.0/8"], "header": "X-Client" }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("header"));
    assert_eq!(show("web2"), before);
    let r = api.post("/api/servers/web2/real-ip", &api.admin, json!({ "trust": ["192.0.2.0/24"] }));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert!(http(&show("web2")).expect("http")["real_ip"]["ranges"].to_string().contains("192.0.2.0/24"));
    let r = api.get("/api/proxy-ranges", &api.manager);
    assert!(r.body["ranges"].as_array().is_some_and(|a| !a.is_empty()), "{}", r.text);

    // Switching the web server, and PHP runtimes.
    let r = api.post("/api/servers/web2/web", &api.manager, json!({ "web": "apache" }));
    assert_problem(&r, StatusCode::FORBIDDEN, None);
    let r = api.post("/api/servers/web2/web", &api.admin, json!({ "web": "apache" }));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["args"]["previous_web"], "nginx", "{}", r.text);
    assert_eq!(http(&show("web2")).expect("http")["kind"], "apache");
    let r = api.post("/api/servers/web2/php", &api.admin, json!({ "name": "alt", "binary": "/nonexistent/php-fpm" }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("binary"));
    // Attack: a "PHP-FPM binary" that someone other than root can swap (here, under the world-writable
    // /tmp). Fjord runs probes as root, so it must refuse it without running it.
    let planted = tempfile::Builder::new().prefix("fjord-planted").tempdir_in("/tmp").expect("tempdir");
    let ran = planted.path().join("ran");
    let fake = planted.path().join("php-fpm8.2");
    let script = format!("#!/bin/sh\ntouch {}\necho 'PHP 8.2.99 (fpm-fcgi) (built: now)'\n", ran.display());
    std::fs::write(&fake, script).expect("plant");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let r = api.post("/api/servers/web2/php", &api.admin, json!({ "name": "alt", "binary": fake }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("binary"));
    assert!(!ran.exists(), "a binary a non-root user could change was run as root");
    let r = api.call(Method::DELETE, "/api/servers/web2/php/nope", Auth::Token(&api.admin), None);
    assert_problem(&r, StatusCode::NOT_FOUND, None);

    let r = api.call(Method::DELETE, "/api/servers/web2", Auth::Token(&api.admin), None);
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["kind"], "server-remove");
    let audit = api.get("/api/audit?limit=100", &api.admin).body.to_string();
    for action in ["server.add", "server.real-ip", "server.web", "server.php.add", "server.remove"] {
        assert!(audit.contains(action), "{action} not audited: {audit}");
    }
    assert!(!audit.contains("pw-not-kept"), "a password reached the audit log");
}

#[test]
fn a_deleted_site_comes_back_from_its_backup_through_the_api() {
    let api = Api::start();
    api.create_site("gone.example", "globex");
    api.create_site("here.example", "acme");
    // Two backups as the daemon would have recorded them (the workers are off), and gone.example
    // deleted; its archive is a real file under the state dir's backups/.
    let dir = api.f.state.join("backups/gone.example");
    std::fs::create_dir_all(&dir).expect("backups dir");
    let archive = dir.join("gone.example-1.tar.zst");
    std::fs::write(&archive, b"not really an archive").expect("archive");
    insert_backup(&api, "gone.example", &archive.to_string_lossy());
    insert_backup(&api, "here.example", "/nowhere");
    let db = api.f.state.join("fjord.db");
    api.rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.expect("db");
        for sql in [
            "DELETE FROM site_domains WHERE site_id = (SELECT id FROM sites WHERE domain = 'gone.example')",
            "UPDATE sites SET status = 'deleted' WHERE domain = 'gone.example'",
        ] {
            sqlx::query(sql).execute(&mut conn).await.expect("delete site");
        }
    });
    let backups = api.get("/api/backups", &api.admin).body;
    let id_of = |domain: &str| {
        let site = api.get(&format!("/api/sites/{domain}"), &api.admin).body["id"].clone();
        backups["items"].as_array().expect("items").iter().find(|b| b["site_id"] == site).map(|b| b["id"].clone())
    };
    let here = id_of("here.example").expect("here's backup");
    let _ = id_of;
    let gone = backups["items"].as_array().expect("items").iter().find(|b| b["id"] != here).expect("gone's")["id"]
        .as_i64()
        .expect("id");
    assert_eq!(api.get("/api/sites/gone.example", &api.admin).status, StatusCode::NOT_FOUND);

    // A site that still exists is restored in place, not brought back.
    let r = api.post(&format!("/api/backups/{here}/restore"), &api.admin, json!({}));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("backup"));
    // Another client's deleted site is not there for alice; bad input is refused by field.
    let path = format!("/api/backups/{gone}/restore");
    assert_problem(&api.post(&path, &api.alice, json!({})), StatusCode::NOT_FOUND, None);
    assert_problem(
        &api.post(&path, &api.admin, json!({ "domain": "not a domain" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("domain"),
    );
    assert_problem(
        &api.post(&path, &api.admin, json!({ "platform": "nope" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("platform"),
    );
    assert_problem(&api.post(&path, &api.admin, json!({ "domain": "here.example" })), StatusCode::CONFLICT, None);
    assert_eq!(api.get("/api/sites?q=gone", &api.admin).body["total"], 0, "a refusal recorded nothing");

    // Verify reads the archive: this one does not match its checksum.
    let r = api.post(&format!("/api/backups/{gone}/verify"), &api.admin, json!({}));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["ok"], false, "{}", r.text);

    // Back under its old domain, on its old platform, for its client, built by a restore task.
    let r = api.post(&path, &api.admin, json!({}));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["kind"], "site-restore");
    assert_eq!(r.body["args"]["archive"], archive.to_string_lossy().as_ref());
    let site = api.get("/api/sites/gone.example", &api.admin).body;
    assert_eq!(site["client"], "globex", "{site}");
    assert_eq!(site["platform"], "p1", "{site}");
    // Its archive gone and no offsite copy: refused, nothing recorded.
    std::fs::remove_file(&archive).expect("rm archive");
    let r = api.post(&path, &api.admin, json!({ "domain": "gone2.example" }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("backup"));
    assert_eq!(api.get("/api/sites/gone2.example", &api.admin).status, StatusCode::NOT_FOUND);
}

#[test]
fn site_settings_sync_and_cron_through_the_api() {
    let api = Api::start();
    api.create_site("a.example", "acme");
    api.create_site("a-staging.example", "acme");
    api.create_site("b.example", "globex");
    let post = |path: &str, token: &str, body: Value| api.post(&format!("/api/sites/a.example/{path}"), token, body);
    // Bad values are refused by field, before anything is planned or recorded.
    let before = api.get("/api/sites/a.example", &api.admin).body;
    let r = post("php-limits", &api.admin, json!({ "memory_limit": "lots" }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("memory_limit"));
    let r = post("php-limits", &api.admin, json!({ "max_children": 4, "colour": "blue" }));
    assert_problem(&r, StatusCode::BAD_REQUEST, None);
    assert_problem(
        &post("php", &api.admin, json!({ "runtime": "nope" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("runtime"),
    );
    assert_problem(
        &post("isolation", &api.admin, json!({ "mode": "shared" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("mode"),
    );
    assert_problem(
        &post("isolation", &api.admin, json!({ "mode": "jail" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("mode"),
    );
    assert_problem(
        &post("health-marker", &api.admin, json!({ "text": " " })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("text"),
    );
    assert_problem(
        &post("sync", &api.admin, json!({ "from": "a-staging.example" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("db"),
    );
    assert_problem(
        &post("sync", &api.admin, json!({ "from": "a.example", "db": true })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("from"),
    );
    assert_eq!(api.get("/api/sites/a.example", &api.admin).body, before);

    assert_problem(
        &post("https", &api.admin, json!({ "mode": "sometimes" })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("mode"),
    );
    let r = post("cert", &api.admin, json!({ "cert_pem": "-----BEGIN CERTIFICATE-----" }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("key_pem"));
    let r = post("cert", &api.admin, json!({ "cert_pem": "not a certificate", "key_pem": "not a key" }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("cert_pem"));
    assert!(!r.text.contains("not a key"), "the key is echoed: {}", r.text);
    assert_problem(&post("https", &api.alice, json!({ "mode": "on" })), StatusCode::FORBIDDEN, None);

    // Settings are the platform managers'; a client may sync between their own sites only.
    assert_problem(&post("php-limits", &api.alice, json!({ "max_children": 4 })), StatusCode::FORBIDDEN, None);
    assert_problem(&post("health-marker", &api.alice, json!({ "text": "Welcome" })), StatusCode::FORBIDDEN, None);
    let r = post("sync", &api.alice, json!({ "from": "b.example", "db": true }));
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("from"));
    assert!(!r.text.contains("globex"), "{}", r.text);
    let r = api.post("/api/sites/b.example/sync", &api.alice, json!({ "from": "a.example", "db": true }));
    assert_problem(&r, StatusCode::NOT_FOUND, None);

    // The health marker is recorded at once; the others plan a task the planner refuses on a site
    // not installed yet (the workers are off), with its reason.
    let r = post("health-marker", &api.manager, json!({ "text": "Welcome" }));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(api.get("/api/sites/a.example", &api.admin).body["health_marker"], "Welcome");
    for (path, body) in
        [("php-limits", json!({ "max_children": 4 })), ("isolation", json!({ "mode": "client" })), ("cron", json!({}))]
    {
        let r = post(path, &api.manager, body);
        assert_problem(&r, StatusCode::CONFLICT, None);
        assert!(r.text.contains("a.example"), "{path}: {}", r.text);
    }
    let audit = api.get("/api/audit?limit=100", &api.admin).body.to_string();
    for action in
        ["site-php-limits", "site-isolation", "site-health-marker", "site-sync", "site-cron", "site-https", "site-cert"]
    {
        assert!(audit.contains(action), "{action} not audited");
    }
}

/// Sets sites' status straight in the state database, as the daemon (absent here) would have.
fn set_site_status(api: &Api, domain: &str, status: &str) {
    let db = api.f.state.join("fjord.db");
    api.rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.expect("db");
        sqlx::query("UPDATE sites SET status = $1 WHERE domain = $2")
            .bind(status)
            .bind(domain)
            .execute(&mut conn)
            .await
            .expect("update site");
    });
}

#[test]
fn a_platform_migrate_is_one_batch_task_for_platform_managers() {
    let api = Api::start();
    let code = api.f.make_codebase("p2");
    api.f.ok(&["platform", "add", "p2", "--path", &code]);
    let (admin, manager) = (&api.admin, &api.manager);
    let before = api.get("/api/tasks", admin).body["total"].clone();

    // Bad input names its field and queues nothing; an unknown platform is not found.
    let migrate =
        |token: &str, path: &str, body: Value| api.post(&format!("/api/platforms/{path}/migrate"), token, body);
    assert_problem(&migrate(manager, "p1", json!({ "to": "p1" })), StatusCode::UNPROCESSABLE_ENTITY, Some("to"));
    assert_problem(&migrate(manager, "p1", json!({ "to": "nope" })), StatusCode::UNPROCESSABLE_ENTITY, Some("to"));
    assert_problem(
        &migrate(manager, "p1", json!({ "to": "p2", "parallel": 0 })),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("parallel"),
    );
    assert_problem(&migrate(manager, "p1", json!({ "to": "p2", "speed": 9 })), StatusCode::BAD_REQUEST, Some("speed"));
    assert_problem(
        &migrate(manager, "p1", json!({ "to": "p2", "canary": -1 })),
        StatusCode::BAD_REQUEST,
        Some("canary"),
    );
    assert_problem(&migrate(manager, "nope", json!({ "to": "p2" })), StatusCode::NOT_FOUND, None);
    // Clients may not, whatever their sites; a read-only token may not either.
    assert_problem(&migrate(&api.alice, "p1", json!({ "to": "p2" })), StatusCode::FORBIDDEN, None);
    assert_problem(&migrate(&api.reader, "p1", json!({ "to": "p2" })), StatusCode::FORBIDDEN, None);
    assert_eq!(api.get("/api/tasks", admin).body["total"], before, "a refused request queued something");

    // A dry run answers with the plan at once (here: no live site yet) and queues nothing.
    let r = migrate(manager, "p1", json!({ "to": "p2", "dry_run": true }));
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["dry_run"].as_bool(), r.body["from"].as_str()), (Some(true), Some("p1")), "{}", r.text);
    assert_eq!(r.body["sites"], json!([]));
    assert_eq!(api.get("/api/tasks", admin).body["total"], before);

    // The batch: one task, with the live sites fixed in its arguments (canaries first, in order).
    api.create_site("a.example", "acme");
    api.create_site("b.example", "globex");
    api.create_site("c.example", "acme");
    for d in ["a.example", "b.example"] {
        set_site_status(&api, d, "enabled");
    }
    // The platform by its id works too.
    let p1 = api.get("/api/platforms/p1", admin).body["id"].as_i64().expect("platform id");
    let r = migrate(manager, &p1.to_string(), json!({ "to": "p2", "parallel": 2, "canary": 1 }));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let batch = r.body;
    let id = batch["id"].as_i64().expect("task id");
    assert_eq!(r.headers.get("location").and_then(|l| l.to_str().ok()), Some(format!("/api/tasks/{id}").as_str()));
    assert_eq!((batch["kind"].as_str(), batch["target_kind"].as_str()), (Some("platform-migrate"), Some("platform")));
    assert_eq!(batch["created_by"], "api:pm");
    assert_eq!((batch["args"]["parallel"].as_i64(), batch["args"]["canary"].as_i64()), (Some(2), Some(1)));
    let sites: Vec<&str> =
        batch["args"]["sites"].as_array().expect("sites").iter().filter_map(|s| s["domain"].as_str()).collect();
    assert_eq!(sites, ["a.example", "b.example"], "only the live sites, in order");
    // Its page in the API: no children yet (no daemon here), no summary.
    let shown = api.get(&format!("/api/tasks/{id}"), manager).body;
    assert_eq!((shown["children"].clone(), shown["result"].clone()), (json!([]), Value::Null), "{shown}");
    // A client does not see it; a manager cancels it while it is queued.
    assert_problem(&api.get(&format!("/api/tasks/{id}"), &api.alice), StatusCode::NOT_FOUND, None);
    let r = api.post(&format!("/api/tasks/{id}/cancel"), manager, json!({}));
    assert_eq!(r.body["status"], "cancelled", "{}", r.text);
    // And it is in the audit log, refusals included.
    let audit = api.get("/api/audit?limit=200", admin).text;
    assert!(audit.contains("platform.migrate"), "{audit}");

    // The remote CLI queues the same task (and its dry run prints the plan).
    use std::os::unix::fs::PermissionsExt as _;
    let token_file = api.f.dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", api.manager)).expect("token file");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let remote = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fjord"))
            .arg("--state")
            .arg(api.f.dir.path().join("nowhere"))
            .env_remove("FJORD_TOKEN")
            .env("FJORD_REMOTE", &api.base)
            .env("FJORD_TOKEN_FILE", &token_file)
            .args(args)
            .output()
            .expect("fjord runs")
    };
    let out = remote(&["--json", "platform", "migrate", "p1", "--to", "p2", "--parallel", "3", "--no-wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let task: Value = serde_json::from_slice(&out.stdout).expect("task JSON");
    assert_eq!((task["kind"].as_str(), task["args"]["parallel"].as_i64()), (Some("platform-migrate"), Some(3)));
    let out = remote(&["platform", "migrate", "p1", "--to", "p1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already on p1"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Records a backup of `domain` at `path`, as the daemon (absent here) would have; returns its id.
fn insert_backup(api: &Api, domain: &str, path: &str) -> i64 {
    let db = api.f.state.join("fjord.db");
    api.rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.expect("db");
        sqlx::query(
            "INSERT INTO backups (site_id, path, size, checksum, kind, created_at) \
             SELECT id, $1, 21, $3, 'pre-delete', 1 FROM sites WHERE domain = $2",
        )
        .bind(path)
        .bind(domain)
        .bind("ab".repeat(32))
        .execute(&mut conn)
        .await
        .expect("insert backup");
        sqlx::query_scalar::<_, i64>("SELECT max(id) FROM backups").fetch_one(&mut conn).await.expect("backup id")
    })
}

#[test]
fn php_sizes_php_would_read_differently_are_refused_naming_the_field() {
    let api = Api::start();
    api.create_site("a.example", "acme");
    let state =
        || (api.get("/api/sites/a.example", &api.admin).body, api.get("/api/tasks", &api.admin).body["total"].clone());
    let before = state();
    let post = |body: Value| api.post("/api/sites/a.example/php-limits", &api.admin, body);
    // A sign or a space PHP would skip, a prefix it would read as hex, a unit it does not have, and a
    // size past u64 (which used to wrap around to 1G).
    for (field, value) in [
        ("memory_limit", "+256M"),
        ("memory_limit", "256 M"),
        ("memory_limit", "256MB"),
        ("upload_max", "+64M"),
        ("upload_max", "0x40M"),
        ("memory_limit", "17179869185G"),
    ] {
        let r = post(json!({ field: value }));
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, Some(field));
        assert!(r.body["detail"].as_str().is_some_and(|d| d.contains(value)), "{value}: {}", r.text);
    }
    assert_eq!(state(), before, "a refused limit changed something");
    // What PHP reads as written passes (units in either case) and reaches the planner, which refuses
    // a site not installed yet (the workers are off).
    let r = post(json!({ "memory_limit": "512m", "upload_max": "1G" }));
    assert_problem(&r, StatusCode::CONFLICT, None);
    assert!(r.text.contains("a.example"), "{}", r.text);
}

#[test]
fn a_client_restoring_a_deleted_site_may_not_choose_its_platform_as_for_a_clone() {
    let api = Api::start();
    api.create_site("gone.example", "globex");
    api.create_site("b.example", "globex");
    let dir = api.f.state.join("backups/gone.example");
    std::fs::create_dir_all(&dir).expect("backups dir");
    let archive = dir.join("gone.example-1.tar.zst");
    std::fs::write(&archive, b"not really an archive").expect("archive");
    let backup = insert_backup(&api, "gone.example", &archive.to_string_lossy());
    let db = api.f.state.join("fjord.db");
    api.rt.block_on(async {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.expect("db");
        for sql in [
            "DELETE FROM site_domains WHERE site_id = (SELECT id FROM sites WHERE domain = 'gone.example')",
            "UPDATE sites SET status = 'deleted' WHERE domain = 'gone.example'",
        ] {
            sqlx::query(sql).execute(&mut conn).await.expect("delete site");
        }
    });
    // Bob (globex) may not say where his clone runs, nor where his deleted site comes back: one rule.
    let clone = api.post("/api/sites/b.example/clone", &api.bob, json!({ "domain": "b2.example", "platform": "p1" }));
    assert_problem(&clone, StatusCode::FORBIDDEN, None);
    let path = format!("/api/backups/{backup}/restore");
    let r = api.post(&path, &api.bob, json!({ "platform": "p1" }));
    assert_problem(&r, StatusCode::FORBIDDEN, None);
    assert_eq!(r.body["detail"], clone.body["detail"], "{}", r.text);
    assert_eq!(api.get("/api/sites?q=gone", &api.admin).body["total"], 0, "a refusal recorded nothing");
    let audit = api.get("/api/audit?limit=100", &api.admin).body;
    let refused = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|e| e["actor"] == "api:bob" && e["action"] == "site-restore-deleted" && e["outcome"] == "denied");
    assert!(refused, "{audit}");
    // Without choosing, he may bring it back (on its old platform); a manager may choose.
    let r = api.post(&path, &api.bob, json!({}));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(api.get("/api/sites/gone.example", &api.admin).body["platform"], "p1");
    let r = api.post(&path, &api.manager, json!({ "domain": "gone2.example", "platform": "p1" }));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

#[test]
fn path_parameters_that_do_not_parse_are_problems_naming_the_parameter() {
    let api = Api::start();
    // The two of the issue, then every route with a numeric id in its path.
    let r = api.get("/api/backups/abc", &api.admin);
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("id"));
    assert!(r.text.contains("abc"), "{}", r.text);
    assert_problem(&api.get("/api/tasks/xyz", &api.admin), StatusCode::BAD_REQUEST, Some("id"));
    let doc = api.call(Method::GET, "/api/openapi.json", Auth::None, None).body;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.contains("{id}") {
            continue;
        }
        for method in item.as_object().expect("path item").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = (m == Method::POST).then(|| json!({}));
            for bad in ["xyz", "1.5", "99999999999999999999", "-"] {
                let r = api.call(m.clone(), &path.replace("{id}", bad), Auth::Token(&api.admin), body.clone());
                assert_problem(&r, StatusCode::BAD_REQUEST, Some("id"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 8, "only {checked} requests: where did the routes with an id go?");
    // Without credentials the answer is still 401 first: nothing about the path is told to a stranger.
    assert_problem(&api.call(Method::GET, "/api/tasks/xyz", Auth::None, None), StatusCode::UNAUTHORIZED, None);
}

#[test]
fn another_clients_backup_and_a_missing_one_answer_the_same() {
    let api = Api::start();
    api.create_site("a.example", "acme");
    api.create_site("b.example", "globex");
    let theirs = insert_backup(&api, "b.example", "/nowhere/b.tar.zst");
    let missing = theirs + 1000;
    let alice = &api.alice;
    // The answer for an id, with the id itself taken out.
    let answer = |method: &Method, path: &str, body: Option<Value>, id: i64| {
        let r = api.call(method.clone(), path, Auth::Token(alice), body);
        let ct = r.headers.get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
        (r.status, ct, r.text.replace(&id.to_string(), "ID"))
    };
    for (method, suffix, body) in [
        (Method::GET, "", None),
        (Method::DELETE, "", None),
        (Method::POST, "/verify", Some(json!({}))),
        (Method::POST, "/restore", Some(json!({}))),
        (Method::POST, "/restore", Some(json!({ "domain": "mine.example" }))),
    ] {
        let a = answer(&method, &format!("/api/backups/{theirs}{suffix}"), body.clone(), theirs);
        let b = answer(&method, &format!("/api/backups/{missing}{suffix}"), body, missing);
        assert_eq!(a, b, "{method} /api/backups/ID{suffix}");
        assert_eq!((a.0, a.1.as_deref()), (StatusCode::NOT_FOUND, Some("application/problem+json")), "{}", a.2);
        assert!(!a.2.contains("b.example") && !a.2.contains("globex"), "{}", a.2);
    }
    // Restoring her own site from either: one refusal, naming the field.
    let restore = |id: i64| answer(&Method::POST, "/api/sites/a.example/restore", Some(json!({ "backup": id })), id);
    let (a, b) = (restore(theirs), restore(missing));
    assert_eq!(a, b, "restoring a.example from another site's backup or a missing one");
    assert_eq!(a.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.2);
    // The admin still sees the backup, and "not found" for the missing one.
    assert_eq!(api.get(&format!("/api/backups/{theirs}"), &api.admin).status, StatusCode::OK);
    assert_problem(&api.get(&format!("/api/backups/{missing}"), &api.admin), StatusCode::NOT_FOUND, None);
}

/// A failed site create and a failed platform add leave records the API shows, retries and deletes
/// by name; the same domain or name never gets a second record.
#[test]
fn a_failed_create_or_platform_add_is_shown_retried_and_deleted_through_the_api() {
    let mut api = Api::start();
    // The server's and platform's verifies would start this machine's web server: not here.
    for t in api.f.json(&["task", "list", "--status", "queued"]).as_array().expect("tasks") {
        api.f.ok(&["task", "cancel", &t["id"].to_string()]);
    }
    let install = api.create_site("a.example", "acme");
    let code = api.f.make_codebase("p2");
    let r = api.post("/api/platforms", &api.admin, json!({ "name": "p2", "server": "localhost", "path": code }));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    std::fs::remove_dir_all(&code).expect("codebase gone before its verify");
    api.run_queued(&[("FJORD_FAULT", "site-install:1:fail")]);
    assert_eq!(api.get(&format!("/api/tasks/{}", install["id"]), &api.admin).body["status"], "failed");

    // The site: shown, listed once, its domain not given again, retried, holding its platform, deleted.
    let site = api.get("/api/sites/a.example", &api.admin);
    assert_eq!((site.status, site.body["status"].clone()), (StatusCode::OK, json!("failed")), "{}", site.text);
    assert_eq!(api.get("/api/sites/a.example", &api.alice).status, StatusCode::OK, "its client sees it too");
    assert_eq!(domains(&api.get("/api/sites?status=failed", &api.admin).body), ["a.example"]);
    let again =
        api.post("/api/sites", &api.admin, json!({ "domain": "a.example", "platform": "p1", "db_engine": "sqlite" }));
    assert_problem(&again, StatusCode::CONFLICT, None);
    assert!(again.body["detail"].as_str().expect("detail").contains("status failed"), "{}", again.text);
    assert_eq!(api.get("/api/sites?q=a.example", &api.admin).body["total"], 1);
    let retry = api.post(&format!("/api/tasks/{}/retry", install["id"]), &api.admin, json!({}));
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.text);
    assert_eq!(
        (retry.body["kind"].clone(), retry.body["target_id"].clone()),
        (json!("site-install"), site.body["id"].clone())
    );
    api.f.ok(&["task", "cancel", &retry.body["id"].to_string()]);
    let r = api.call(Method::DELETE, "/api/platforms/p1", Auth::Token(&api.admin), None);
    assert_problem(&r, StatusCode::CONFLICT, None);
    assert!(r.body["detail"].as_str().expect("detail").contains("a.example (failed)"), "{}", r.text);
    let r = api.call(Method::DELETE, "/api/sites/a.example", Auth::Token(&api.admin), None);
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!((r.body["kind"].clone(), r.body["target_id"].clone()), (json!("site-delete"), site.body["id"].clone()));

    // The platform: shown failed, its name not given again, no sites on it, verified again or removed.
    let p2 = api.get("/api/platforms/p2", &api.admin);
    assert_eq!(p2.body["status"], "failed", "{}", p2.text);
    let other = api.f.make_codebase("p3");
    let r = api.post("/api/platforms", &api.admin, json!({ "name": "p2", "server": "localhost", "path": other }));
    assert_problem(&r, StatusCode::CONFLICT, None);
    let r =
        api.post("/api/sites", &api.admin, json!({ "domain": "b.example", "platform": "p2", "db_engine": "sqlite" }));
    assert_problem(&r, StatusCode::CONFLICT, None);
    assert!(r.body["detail"].as_str().expect("detail").contains("failed its verify"), "{}", r.text);
    let r = api.post("/api/platforms/p2/verify", &api.admin, json!({}));
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = api.call(Method::DELETE, "/api/platforms/p2", Auth::Token(&api.admin), None);
    assert_eq!((r.status, r.body["kind"].clone()), (StatusCode::ACCEPTED, json!("platform-remove")), "{}", r.text);
}
