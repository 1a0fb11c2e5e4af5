//! Drives the real `fjord` binary against a temp state dir (lldap/ripgrep style): one `Fjord` per test,
//! its daemon killed when the value drops.
#![allow(dead_code, clippy::disallowed_methods)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Fjord {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub db: Option<String>,
    serve: Option<Child>,
    pub node: String,
    /// The web server of the server the test adds: `nginx` or `apache`.
    pub web: &'static str,
}

/// The state databases to run a scenario on: SQLite, and a fresh PostgreSQL database when
/// `FJORD_TEST_PG_URL` is set.
pub fn backends() -> Vec<(&'static str, Option<String>)> {
    let mut v = vec![("sqlite", None)];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    if let Some(url) = rt.block_on(fjord_store::testing::postgres_scratch_url()).expect("scratch postgres database") {
        v.push(("postgres", Some(url)));
    }
    v
}

impl Fjord {
    pub fn new(db: Option<String>) -> Fjord {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let f = Fjord { state, db, serve: None, node: "test-node".into(), web: "nginx", dir };
        f.ok(&["init"]);
        f
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fjord"));
        c.arg("--state").arg(&self.state);
        if let Some(db) = &self.db {
            c.env("FJORD_DB", db);
        }
        c.env_remove("FJORD_FAULT").env("FJORD_NODE", &self.node).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("fjord runs")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "fjord {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail cleanly (no panic); returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "fjord {args:?} should have failed");
        assert_ne!(out.status.code(), Some(101), "fjord {args:?} panicked: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("JSON output")
    }

    pub fn start_serve(&mut self, env: &[(&str, &str)]) {
        self.start_serve_with(&["--workers", "4"], env)
    }

    /// Starts `fjord serve` with these flags (e.g. `--listen`, `--workers 0` for HTTP without workers).
    pub fn start_serve_with(&mut self, flags: &[&str], env: &[(&str, &str)]) {
        let mut args = vec!["serve"];
        args.extend_from_slice(flags);
        let mut c = self.command(&args);
        for (k, v) in env {
            c.env(k, v);
        }
        let log = std::fs::File::create(self.dir.path().join("serve.log")).expect("log file");
        c.stdout(Stdio::null()).stderr(log);
        self.serve = Some(c.spawn().expect("serve starts"));
        // Ready once it holds its lock.
        self.wait_until("daemon running", || self.json(&["health"])["daemon_running"] == true);
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Sends SIGKILL, as a crash or `kill -9` would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.serve.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reaped");
        }
    }

    /// Waits for the daemon to exit by itself (e.g. after an injected crash).
    pub fn wait_serve_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.serve.take().expect("a daemon");
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "daemon did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            child.wait().expect("reaped");
        }
    }

    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(60), "timed out waiting for {what}\n{}", self.serve_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The names in a backup's archive (as `backup verify` reads them).
    #[track_caller]
    pub fn backup_entries(&self, id: &str) -> Vec<String> {
        let v = self.json(&["backup", "verify", id]);
        v["entries"].as_array().expect("entries").iter().filter_map(|e| e.as_str()).map(str::to_string).collect()
    }

    pub fn task(&self, id: i64) -> Value {
        self.json(&["task", "show", &id.to_string()])["task"].clone()
    }

    pub fn wait_task(&self, id: i64, status: &str) -> Value {
        self.wait_until(&format!("task {id} {status}"), || self.task(id)["status"] == status);
        self.task(id)
    }

    /// Every file under the state dir with its content, minus the database (for "nothing changed").
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            let Ok(rd) = std::fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let p = e.path();
                let name = p.to_string_lossy().into_owned();
                if name.contains("fjord.db") || name.ends_with("serve.lock") {
                    continue;
                }
                if p.is_dir() {
                    out.push((name, Vec::new()));
                    walk(&p, out);
                } else {
                    out.push((name, std::fs::read(&p).unwrap_or_default()));
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.state, &mut v);
        v.sort();
        v
    }

    /// The state as the CLI sees it: servers, platforms, sites, tasks.
    pub fn state_summary(&self) -> Value {
        serde_json::json!({
            "servers": self.json(&["server", "list"]),
            "platforms": self.json(&["platform", "list"]),
            "sites": self.json(&["site", "list"]),
            "tasks": self.json(&["task", "list", "--limit", "1000"]),
            "clients": self.json(&["client", "list"]),
        })
    }

    /// A platform codebase: a tiny PHP app with a `web/` docroot.
    pub fn make_codebase(&self, name: &str) -> String {
        let root = self.dir.path().join("code").join(name);
        std::fs::create_dir_all(root.join("web")).expect("mkdir");
        std::fs::write(root.join("web/index.php"), "<?php echo 'hello';\n").expect("write");
        root.to_string_lossy().into_owned()
    }
}

impl Drop for Fjord {
    fn drop(&mut self) {
        self.kill9();
        // Stop the nginx and PHP-FPM masters this test's server started.
        if let Ok(rd) = std::fs::read_dir(self.state.join("run")) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "pid") {
                    // Apache's master stops on SIGTERM (SIGQUIT would kill it and orphan its children).
                    let signal = if e.file_name().to_string_lossy().starts_with("apache-") {
                        nix::sys::signal::Signal::SIGTERM
                    } else {
                        nix::sys::signal::Signal::SIGQUIT
                    };
                    if let Some(pid) = std::fs::read_to_string(e.path()).ok().and_then(|p| p.trim().parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                    }
                }
            }
        }
        // Remove the Unix users this test's sites got (their home is their site dir in this state).
        let sites = format!("{}/", self.state.join("sites").to_string_lossy());
        for line in std::fs::read_to_string("/etc/passwd").unwrap_or_default().lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 5 && fields[0].starts_with("fj") && fields[5].starts_with(&sites) {
                let _ = Command::new("userdel").args(["--force", fields[0]]).output();
                let _ = Command::new("groupdel").arg(fields[0]).output();
            }
        }
    }
}

/// Whether the real services (nginx, PHP-FPM, MariaDB, PostgreSQL) are installed and running for
/// tests; `scripts/test.sh` sets `FJORD_TEST_SERVICES=1`.
pub fn services_available() -> bool {
    if std::env::var("FJORD_TEST_SERVICES").is_ok() {
        return true;
    }
    eprintln!("skipped: set FJORD_TEST_SERVICES=1 (scripts/test.sh does) to run tests against real nginx, PHP-FPM and databases");
    false
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Copies a directory tree (for fixture platforms, which get site directories written into them).
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp runs");
    assert!(status.success());
}

/// An answer from the web server.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Fjord {
    /// A Fjord with a server `localhost` whose nginx listens on a free loopback port, with every
    /// database engine the test environment runs. Verified (nginx and PHP-FPM started) and a daemon
    /// running.
    pub fn with_server() -> (Fjord, u16) {
        Fjord::with_server_on(None)
    }

    /// [`Fjord::with_server`] with the state in the database `db` (`None`: SQLite).
    pub fn with_server_on(db: Option<String>) -> (Fjord, u16) {
        Fjord::with_web_server_on(db, "nginx")
    }

    /// [`Fjord::with_server`] with the web server `web` (`nginx` or `apache`).
    pub fn with_web_server(web: &'static str) -> (Fjord, u16) {
        Fjord::with_web_server_on(None, web)
    }

    pub fn with_web_server_on(db: Option<String>, web: &'static str) -> (Fjord, u16) {
        let mut f = Fjord::new(db);
        f.web = web;
        // Web-server workers and PHP-FPM pools run as www-data: they must reach the state dir.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let port = free_port();
        let port_s = port.to_string();
        let mut args: Vec<String> = [
            "server",
            "add",
            "localhost",
            "--web",
            web,
            "--http-port",
            &port_s,
            "--listen",
            "127.0.0.1",
            "--database",
            "sqlite",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let (Ok(sock), Ok(p)) =
            (std::env::var("FJORD_TEST_MARIADB_SOCKET"), std::env::var("FJORD_TEST_MARIADB_PORT"))
        {
            args.extend(["--database", "mariadb", "--mariadb-socket", &sock, "--mariadb-port", &p].map(String::from));
        }
        if let Ok(url) = std::env::var("FJORD_TEST_PG_URL") {
            let pg_port = url
                .rsplit(':')
                .next()
                .and_then(|r| r.split('/').next())
                .expect("port in FJORD_TEST_PG_URL")
                .to_string();
            args.extend(["--database", "postgres", "--postgres-port", &pg_port].map(String::from));
        }
        f.start_serve(&[]);
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let mut a = a;
        a.push("--wait");
        f.ok(&a);
        (f, port)
    }

    /// The generated vhost of a site on the test's server.
    pub fn vhost_path(&self, domain: &str) -> PathBuf {
        self.state.join(format!("servers/localhost/{}/vhost.d/{domain}.conf", self.web))
    }

    /// Whether the web server serves nothing for `host`: nginx closes the connection (curl sees no
    /// status), Apache's default vhost answers 421 Misdirected Request.
    pub fn not_served(&self, port: u16, host: &str) -> bool {
        let a = self.get(port, host, "/");
        match self.web {
            "apache" => a.status == 421,
            _ => a.status == 0,
        }
    }

    pub fn has_engine(&self, engine: &str) -> bool {
        match engine {
            "sqlite" => true,
            "mariadb" => std::env::var("FJORD_TEST_MARIADB_SOCKET").is_ok(),
            "postgres" => std::env::var("FJORD_TEST_PG_URL").is_ok(),
            _ => false,
        }
    }

    /// GET `path` from the test's nginx with Host `host`, keeping cookies in the test's jar.
    pub fn get(&self, port: u16, host: &str, path: &str) -> Answer {
        let jar = self.dir.path().join("cookies.txt");
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "30", "-b"])
            .arg(&jar)
            .arg("-c")
            .arg(&jar)
            .arg("-H")
            // As a browser does: the port is part of the Host header.
            .arg(format!("Host: {host}:{port}"))
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Answer { status, headers: head.to_string(), body: body.to_string() }
    }
}

impl Fjord {
    /// GET `path` from the source address `from` (a loopback alias: all of 127/8 is local on
    /// Linux) with extra request headers, as a proxy in front of the site would.
    pub fn get_via(&self, port: u16, host: &str, path: &str, from: &str, headers: &[&str]) -> Answer {
        let mut c = Command::new("curl");
        c.args(["-s", "-i", "--max-time", "30", "--interface", from, "-H"]).arg(format!("Host: {host}:{port}"));
        for h in headers {
            c.arg("-H").arg(h);
        }
        let out = c.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Answer { status, headers: head.to_string(), body: body.to_string() }
    }

    /// The access log of the test server's web server.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.state.join(format!("log/{}-localhost-access.log", self.web))).unwrap_or_default()
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/platforms").join(name)
}

/// Adds a platform from a copy of a fixture codebase.
pub fn fixture_platform(f: &Fjord, fixture_name: &str, platform: &str) {
    let dest = fixture_copy(f, fixture_name, platform);
    f.ok(&["platform", "add", platform, "--path", &dest.to_string_lossy(), "--wait"]);
}

/// A copy of a fixture codebase under the test's `code/PLATFORM`, to shape into a variant (see
/// [`shape`]) before adding it.
pub fn fixture_copy(f: &Fjord, fixture_name: &str, platform: &str) -> PathBuf {
    let dest = f.dir.path().join("code").join(platform);
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    copy_tree(&fixture(fixture_name), &dest);
    dest
}

/// Builders that turn a copy of the Drupal 10 fixture into other classes of real codebases.
pub mod shape {
    use std::path::Path;

    pub fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn executable(root: &Path, rel: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Laid out like Drupal 11 needing PHP `min` (e.g. "8.3") and the extensions `ext`: the version in
    /// `core/composer.json`, `Drupal::MINIMUM_PHP` and composer's `vendor/composer/platform_check.php`,
    /// as `composer create-project drupal/recommended-project:^11` leaves them.
    pub fn drupal11(root: &Path, min: &str, ext: &[&str]) {
        let (major, minor) = min.split_once('.').expect("MAJOR.MINOR");
        write(
            root,
            "web/core/lib/Drupal.php",
            &format!(
                "<?php\n\nclass Drupal {{\n\n  const VERSION = '11.1.99';\n\n  const MINIMUM_PHP = '{min}.0';\n\n}}\n"
            ),
        );
        let mut require = serde_json::json!({ "php": format!(">={min}") });
        for e in ext {
            require[format!("ext-{e}")] = serde_json::json!("*");
        }
        write(
            root,
            "web/core/composer.json",
            &serde_json::json!({ "name": "drupal/core", "require": require }).to_string(),
        );
        let id = major.parse::<u32>().expect("major") * 10000 + minor.parse::<u32>().expect("minor") * 100;
        write(
            root,
            "vendor/composer/platform_check.php",
            &format!(
                "<?php\n\n$issues = array();\n\nif (!(PHP_VERSION_ID >= {id})) {{\n    $issues[] = 'Your Composer dependencies require a PHP version \">= {min}.0\".';\n}}\n"
            ),
        );
    }

    /// A composer `vendor/` whose `installed.json` lists `acme/widgets` (autoloading `Acme\Widgets\`
    /// from `src/` and the file `bootstrap.php`) and `acme/gadgets`; only `acme/gadgets` is there, and
    /// without its `helpers.php`.
    pub fn incomplete_vendor(root: &Path) {
        let installed = serde_json::json!({
            "packages": [
                { "name": "acme/widgets", "install-path": "../acme/widgets",
                  "autoload": { "psr-4": { "Acme\\Widgets\\": "src/" }, "files": ["bootstrap.php"] } },
                { "name": "acme/gadgets", "install-path": "../acme/gadgets",
                  "autoload": { "files": ["helpers.php"] } }
            ],
            "dev": false,
            "dev-package-names": []
        });
        write(root, "vendor/composer/installed.json", &installed.to_string());
        write(root, "vendor/autoload.php", "<?php\n");
        write(root, "vendor/acme/gadgets/README.md", "gadgets\n");
    }

    /// The missing files of [`incomplete_vendor`], as `composer install` would bring them.
    pub fn complete_vendor(root: &Path) {
        write(root, "vendor/acme/widgets/src/Widget.php", "<?php\n");
        write(root, "vendor/acme/widgets/bootstrap.php", "<?php\n");
        write(root, "vendor/acme/gadgets/helpers.php", "<?php\n");
    }

    /// Drush 13's layout: `vendor/drush/drush/drush.php` is the PHP, `vendor/drush/drush/drush` a shell
    /// script that runs it, and composer's `vendor/bin/drush` a shell proxy (`php` on it prints it).
    pub fn drush13(root: &Path) {
        std::fs::create_dir_all(root.join("vendor/drush/drush")).expect("mkdir");
        std::fs::rename(root.join("vendor/bin/drush"), root.join("vendor/drush/drush/drush.php")).expect("move drush");
        write(
            root,
            "vendor/drush/drush/drush",
            "#!/usr/bin/env sh\n# Runs drush.php with the php on PATH.\nexec php \"$(dirname \"$0\")/drush.php\" \"$@\"\n",
        );
        write(
            root,
            "vendor/bin/drush",
            "#!/usr/bin/env sh\n\n# Proxy to ../drush/drush/drush, as composer writes for a script that is not PHP.\n\
             dir=$(cd \"${0%[/\\\\]*}\" > /dev/null; cd '../drush/drush' && pwd)\nexec \"$dir/drush\" \"$@\"\n",
        );
        executable(root, "vendor/drush/drush/drush");
        executable(root, "vendor/drush/drush/drush.php");
        executable(root, "vendor/bin/drush");
    }

    /// A drush whose `site:install` logs success and exits 0 without installing anything.
    pub fn idle_installer(root: &Path) {
        write(
            root,
            "vendor/bin/drush",
            "#!/usr/bin/env php\n<?php\nfwrite(STDERR, \" [success] Installation complete.\\n\");\nexit(0);\n",
        );
        executable(root, "vendor/bin/drush");
    }
}

/// The path part of a URL (`http://host:port/a/b` → `/a/b`).
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_else(|| "/".into())
}

/// Runs SQL in a site's database as the test's database admin.
pub fn sql_as_admin(f: &Fjord, engine: &str, domain: &str, sql: &str) {
    sql_output_as_admin(f, engine, domain, sql);
}

/// Runs SQL in a site's database as the test's database admin; returns what it printed (values
/// only, tab-separated).
pub fn sql_output_as_admin(f: &Fjord, engine: &str, domain: &str, sql: &str) -> String {
    let site = f.json(&["site", "show", domain])["site"].clone();
    let db = site["db_name"].as_str().expect("db name").to_string();
    let out = match engine {
        "sqlite" => std::process::Command::new("sqlite3")
            .arg(f.state.join("sites").join(domain).join("db").join(format!("{db}.sqlite")))
            .arg(sql)
            .output(),
        "mariadb" => std::process::Command::new("mariadb")
            .arg(format!("--socket={}", std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("socket")))
            .args(["-uroot", "--batch", "--skip-column-names", &db, "-e", sql])
            .output(),
        _ => {
            let url = std::env::var("FJORD_TEST_PG_URL").expect("pg url");
            let base = url.rsplit_once('/').expect("url").0;
            std::process::Command::new("psql")
                .args(["-X", "-q", "-A", "-t", &format!("{base}/{db}"), "-c", sql])
                .output()
        }
    }
    .expect("sql client runs");
    assert!(out.status.success(), "{engine}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The databases on the test MariaDB whose names start with `prefix` (other tests share the server).
pub fn mariadb_databases(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("mariadb")
        .arg(format!("--socket={}", std::env::var("FJORD_TEST_MARIADB_SOCKET").expect("socket")))
        .args(["-uroot", "--batch", "--skip-column-names", "-e", "SHOW DATABASES"])
        .output()
        .expect("mariadb");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|d| d.starts_with(prefix)).map(str::to_string).collect()
}

/// A visitor requesting a site in a loop, on a thread of its own, through the real web server: every
/// answer's status (0: no answer) and when it came, for tests that a site stays served while it moves.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Duration, u16)>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadReport {
    pub requests: usize,
    /// The answers that were not 2xx or 3xx, with when they came (ms since the start).
    pub failed: Vec<(u128, u16)>,
}

impl Load {
    pub fn start(port: u16, host: &str) -> Load {
        use std::io::{Read, Write};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, host) = (stop.clone(), host.to_string());
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut seen = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let status = std::net::TcpStream::connect(("127.0.0.1", port))
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(30)))?;
                        write!(s, "GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n")?;
                        let mut answer = Vec::new();
                        s.read_to_end(&mut answer)?;
                        Ok(answer)
                    })
                    .ok()
                    .and_then(|a| String::from_utf8_lossy(&a).split_whitespace().nth(1).and_then(|s| s.parse().ok()))
                    .unwrap_or(0);
                seen.push((t0.elapsed(), status));
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        Load { stop, handle }
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = self.handle.join().expect("the load thread");
        let failed = seen.iter().filter(|(_, s)| !(200..400).contains(s)).map(|(t, s)| (t.as_millis(), *s)).collect();
        LoadReport { requests: seen.len(), failed }
    }
}
