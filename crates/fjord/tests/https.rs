//! HTTPS for sites against a real ACME server: Debian's pebble, whose HTTP-01 checks reach the test's
//! nginx (on `FJORD_TEST_ACME_HTTP_PORT`) for names its DNS (pebble-challtestsrv) resolves. Served
//! certificates are checked with a real TLS client (curl, verifying the chain to pebble's root and
//! the name). `scripts/test.sh` starts pebble; without `FJORD_TEST_ACME_DIR` the ACME tests skip.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{free_port, services_available, Fjord};
use std::process::Command;
use std::sync::Mutex;

/// The ACME tests share pebble's one HTTP-01 port: one at a time.
static ACME_PORT: Mutex<()> = Mutex::new(());

struct Acme {
    dir: String,
    ca: String,
    mgmt: String,
    http_port: u16,
    dns_mgmt: String,
}

fn acme() -> Option<Acme> {
    if !services_available() {
        return None;
    }
    let var = |k: &str| std::env::var(k).ok();
    match (
        var("FJORD_TEST_ACME_DIR"),
        var("FJORD_TEST_ACME_CA"),
        var("FJORD_TEST_ACME_MGMT"),
        var("FJORD_TEST_ACME_HTTP_PORT"),
        var("FJORD_TEST_ACME_DNS_MGMT"),
    ) {
        (Some(dir), Some(ca), Some(mgmt), Some(port), Some(dns_mgmt)) => {
            Some(Acme { dir, ca, mgmt, http_port: port.parse().expect("port"), dns_mgmt })
        }
        _ => {
            eprintln!("skipped: no ACME test server (scripts/test.sh sets FJORD_TEST_ACME_DIR)");
            None
        }
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").args(["-s", "--max-time", "30"]).args(args).output().expect("curl runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Points a name at another loopback address in pebble's DNS (where nothing answers HTTP-01).
fn dns_a(acme: &Acme, name: &str, addr: &str) {
    let body = format!("{{\"host\":\"{name}.\",\"addresses\":[\"{addr}\"]}}");
    let (ok, out) = curl(&["-X", "POST", "-d", &body, &format!("{}/add-a", acme.dns_mgmt)]);
    assert!(ok, "challtestsrv add-a: {out}");
}

fn dns_clear(acme: &Acme, name: &str) {
    let body = format!("{{\"host\":\"{name}.\"}}");
    curl(&["-X", "POST", "-d", &body, &format!("{}/clear-a", acme.dns_mgmt)]);
}

/// A Fjord whose server `localhost` serves HTTP on `http_port` and HTTPS on a free port, with a
/// plain PHP platform `p1` and the daemon running with `env`.
fn setup(http_port: u16, env: &[(&str, &str)]) -> (Fjord, u16) {
    setup_web(http_port, env, "nginx")
}

/// [`setup`] with the web server `web` (`nginx` or `apache`).
fn setup_web(http_port: u16, env: &[(&str, &str)], web: &'static str) -> (Fjord, u16) {
    let mut f = Fjord::new(None);
    f.web = web;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    f.start_serve(env);
    let https_port = free_port();
    f.ok(&[
        "server",
        "add",
        "localhost",
        "--web",
        web,
        "--http-port",
        &http_port.to_string(),
        "--https-port",
        &https_port.to_string(),
        "--listen",
        "127.0.0.1",
        "--database",
        "sqlite",
        "--wait",
    ]);
    let code = f.make_codebase("p1");
    f.ok(&["platform", "add", "p1", "--path", &code, "--wait"]);
    (f, https_port)
}

fn acme_env(acme: &Acme) -> Vec<(&'static str, String)> {
    vec![("FJORD_ACME_DIRECTORY", acme.dir.clone()), ("FJORD_ACME_CA_FILE", acme.ca.clone())]
}

/// Runs a CLI command with the ACME settings in its environment.
fn with_acme(f: &Fjord, acme: &Acme, args: &[&str]) -> std::process::Output {
    let mut c = f.command(args);
    for (k, v) in acme_env(acme) {
        c.env(k, v);
    }
    c.output().expect("fjord runs")
}

fn ok_acme(f: &Fjord, acme: &Acme, args: &[&str]) -> String {
    let out = with_acme(f, acme, args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fjord {args:?}: {}\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr),
        f.serve_log()
    );
    text
}

/// pebble's root (a new one each time pebble starts), saved for curl.
fn pebble_root(f: &Fjord, acme: &Acme) -> String {
    let (ok, pem) = curl(&["--cacert", &acme.ca, &format!("{}/roots/0", acme.mgmt)]);
    assert!(ok && pem.contains("BEGIN CERTIFICATE"), "pebble root: {pem}");
    let path = f.dir.path().join("pebble-root.pem");
    std::fs::write(&path, pem).expect("write root");
    path.to_string_lossy().into_owned()
}

/// An HTTPS request to `name` on the test's nginx, verified against `root`: (status, headers+body).
fn https_get(root: &str, name: &str, port: u16, path: &str) -> (bool, String) {
    curl(&[
        "-i",
        "--cacert",
        root,
        "--resolve",
        &format!("{name}:{port}:127.0.0.1"),
        &format!("https://{name}:{port}{path}"),
    ])
}

fn served_serial(name: &str, port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -serial -ext subjectAltName"
        ))
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn issue_for_aliases_require_https_renew_and_replace() {
    let Some(acme) = acme() else { return };
    let _one = ACME_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let env = acme_env(&acme);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut f, tls_port) = setup(acme.http_port, &env);
    let d = "shop.fjord-test.example";
    let (a1, a2) = ("www.shop.fjord-test.example", "shop2.fjord-test.example");
    f.ok(&["site", "create", d, "--platform", "p1", "--db-engine", "sqlite", "--alias", a1, "--alias", a2, "--wait"]);

    let out = ok_acme(&f, &acme, &["site", "https", d, "--mode", "on", "--wait"]);
    assert!(out.contains("succeeded"), "{out}");
    let root = pebble_root(&f, &acme);
    for name in [d, a1, a2] {
        let (ok, text) = https_get(&root, name, tls_port, "/");
        assert!(ok && text.contains("hello"), "{name} over HTTPS: {text}");
    }
    assert!(served_serial(d, tls_port).contains(a2), "the certificate covers every alias");
    assert_eq!(f.get(acme.http_port, d, "/").status, 200, "mode on serves HTTP too");
    let key = f.state.join("tls").join(d).join("key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
    let tls = f.json(&["site", "show", d])["site"]["tls"].clone();
    assert_eq!(tls["names"].as_array().map(|a| a.len()), Some(3), "{tls}");
    assert!(tls["not_after"].is_i64(), "{tls}");

    // Required: HTTP answers 301 to HTTPS (challenges still served), HTTPS sends HSTS.
    ok_acme(&f, &acme, &["site", "https", d, "--mode", "required", "--hsts", "on", "--wait"]);
    let a = f.get(acme.http_port, d, "/some/page?x=1");
    assert_eq!(a.status, 301, "{a:?}");
    assert!(a.headers.contains(&format!("Location: https://{d}:{tls_port}/some/page?x=1")), "{}", a.headers);
    let challenge = f.state.join("acme/.well-known/acme-challenge");
    std::fs::create_dir_all(&challenge).expect("mkdir");
    std::fs::write(challenge.join("probe"), "answer").expect("write");
    let a = f.get(acme.http_port, a1, "/.well-known/acme-challenge/probe");
    assert_eq!((a.status, a.body.as_str()), (200, "answer"));
    let (ok, text) = https_get(&root, d, tls_port, "/");
    assert!(ok && text.contains("strict-transport-security") || text.contains("Strict-Transport-Security"), "{text}");
    let show = f.ok(&["site", "show", d]);
    assert!(show.contains("required (HSTS)") && show.contains("acme for"), "{show}");

    // Renewal by the daemon: with a window wider than the certificate's life, it is due at once.
    let before = served_serial(d, tls_port);
    f.stop();
    let mut renew_env = env.clone();
    renew_env.extend([("FJORD_CERT_RENEW_DAYS", "100000"), ("FJORD_CERT_CHECK_SECONDS", "1")]);
    f.start_serve(&renew_env);
    f.wait_until("a renewal by the daemon", || {
        f.json(&["task", "list", "--limit", "50"]).as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["kind"] == "site-cert" && t["created_by"] == "daemon:renew" && t["status"] == "succeeded")
        })
    });
    f.stop();
    f.start_serve(&env);
    let renewed = served_serial(d, tls_port);
    assert_ne!(before, renewed, "the renewed certificate is served");

    // Replace and revoke the old one.
    ok_acme(&f, &acme, &["site", "cert", d, "--revoke-old", "--wait"]);
    let replaced = served_serial(d, tls_port);
    assert_ne!(renewed, replaced);
    // pebble says the replaced certificate is revoked.
    let serial = renewed
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .expect("serial")
        .trim()
        .trim_start_matches('0')
        .to_ascii_lowercase();
    let (_, status) = curl(&["--cacert", &acme.ca, &format!("{}/cert-status-by-serial/{serial}", acme.mgmt)]);
    assert!(status.contains("Revoked"), "{serial}: {status}");
}

#[test]
fn failing_alias_is_left_out_and_failures_keep_the_old_certificate() {
    let Some(acme) = acme() else { return };
    let _one = ACME_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let env = acme_env(&acme);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (f, tls_port) = setup(acme.http_port, &env);
    let d = "blog.fjord-test.example";
    let bad = "old-blog.fjord-test.example";
    f.ok(&["site", "create", d, "--platform", "p1", "--db-engine", "sqlite", "--alias", bad, "--wait"]);
    // Nothing listens for the alias where it resolves.
    dns_a(&acme, bad, "127.0.0.3");
    ok_acme(&f, &acme, &["site", "https", d, "--mode", "on", "--wait"]);
    let tls = f.json(&["site", "show", d])["site"]["tls"].clone();
    assert_eq!(tls["names"], serde_json::json!([d]), "{tls}");
    assert_eq!(tls["failed"], serde_json::json!([bad]), "{tls}");
    let root = pebble_root(&f, &acme);
    assert!(https_get(&root, d, tls_port, "/").0);
    assert!(!https_get(&root, bad, tls_port, "/").0, "the failed alias is not covered");
    assert!(f.ok(&["site", "show", d]).contains(&format!("left out: {bad}")));

    // The main domain failing fails the task, is shown, and the old certificate keeps serving.
    let serial = served_serial(d, tls_port);
    dns_a(&acme, d, "127.0.0.3");
    let out = with_acme(&f, &acme, &["site", "cert", d, "--wait"]);
    assert!(!out.status.success());
    let show = f.ok(&["site", "show", d]);
    assert!(show.contains("last attempt failed (1 in a row)"), "{show}");
    assert_eq!(served_serial(d, tls_port), serial);
    assert!(https_get(&root, d, tls_port, "/").0);
    dns_clear(&acme, d);
    dns_clear(&acme, bad);
}

#[test]
fn daemon_killed_mid_order_recovers() {
    let Some(acme) = acme() else { return };
    let _one = ACME_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let env = acme_env(&acme);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut f, tls_port) = setup(acme.http_port, &env);
    let d = "crash.fjord-test.example";
    f.ok(&["site", "create", d, "--platform", "p1", "--db-engine", "sqlite", "--wait"]);
    // The daemon dies right after the certificate step (order done, files written, not yet served).
    f.stop();
    let mut crash_env = env.clone();
    crash_env.push(("FJORD_FAULT", "site-cert:1:crash"));
    f.start_serve(&crash_env);
    let out = ok_acme(&f, &acme, &["site", "https", d, "--mode", "on"]);
    assert!(out.contains("queued"), "{out}");
    f.wait_serve_exit();
    f.start_serve(&env);
    let id = f.json(&["task", "list", "--limit", "1"])[0]["id"].as_i64().expect("id");
    let task = f.wait_task(id, "succeeded");
    assert!(task["attempts"].as_i64().unwrap_or(0) >= 2, "{task}");
    let root = pebble_root(&f, &acme);
    assert!(https_get(&root, d, tls_port, "/").0, "served after recovery");
}

#[test]
fn self_signed_and_uploaded_certificates() {
    if !services_available() {
        return;
    }
    let _one = ACME_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let http_port = free_port();
    let (f, tls_port) = setup(http_port, &[]);
    let d = "intranet.fjord-test.example";
    f.ok(&["site", "create", d, "--platform", "p1", "--db-engine", "sqlite", "--wait"]);
    f.ok(&["site", "https", d, "--mode", "on", "--self-signed", "--wait"]);
    let (ok, text) =
        curl(&["-k", "--resolve", &format!("{d}:{tls_port}:127.0.0.1"), &format!("https://{d}:{tls_port}/")]);
    assert!(ok && text.contains("hello"), "{text}");
    assert!(f.ok(&["site", "show", d]).contains("self-signed for"));
    // HTTP/2 over TLS.
    let (ok, version) = curl(&[
        "-k",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        "--resolve",
        &format!("{d}:{tls_port}:127.0.0.1"),
        &format!("https://{d}:{tls_port}/"),
    ]);
    assert!(ok && version.trim() == "2", "not HTTP/2: {version}");

    // A renamed site is served over HTTP under its new name until it has a certificate for it; a
    // deleted site's certificate and key go with it.
    let renamed = "renamed.fjord-test.example";
    f.ok(&["site", "create", "tmp.fjord-test.example", "--platform", "p1", "--db-engine", "sqlite", "--wait"]);
    f.ok(&["site", "https", "tmp.fjord-test.example", "--mode", "on", "--self-signed", "--wait"]);
    // The generic test app never creates its SQLite database; give it one to copy.
    let db = f.state.join("sites/tmp.fjord-test.example/db/tmpfjordtestexample.sqlite");
    assert!(Command::new("sqlite3").arg(&db).arg("CREATE TABLE t (x INT)").status().expect("sqlite3").success());
    f.ok(&["site", "rename", "tmp.fjord-test.example", renamed, "--drop-old-domain", "--wait"]);
    assert_eq!(f.get(http_port, renamed, "/").status, 200);
    f.ok(&["site", "delete", renamed, "--force", "--wait"]);
    assert!(!f.state.join("tls").join(renamed).exists(), "the deleted site's certificate dir is left");

    // An upload: a CA of the test's and a leaf it signs.
    let dir = f.dir.path().join("upload");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-c").arg(script).current_dir(&dir).output().expect("sh");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 5 -subj /CN=upload-ca -keyout ca.key -out ca.pem 2>/dev/null");
    sh(&format!("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={d} -keyout leaf.key -out leaf.csr 2>/dev/null && printf 'subjectAltName=DNS:{d}\\n' > ext && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 5 -extfile ext -out leaf.pem 2>/dev/null && cat leaf.pem ca.pem > chain.pem && cat ca.pem leaf.pem > reversed.pem && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key"));
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let e = f.fails(&["site", "cert", d, "--cert", &p("chain.pem"), "--key", &p("other.key")]);
    assert!(e.contains("does not match"), "{e}");
    let e = f.fails(&["site", "cert", d, "--cert", &p("reversed.pem"), "--key", &p("leaf.key")]);
    assert!(e.contains("does not match") || e.contains("out of order"), "{e}");
    f.ok(&["site", "cert", d, "--cert", &p("chain.pem"), "--key", &p("leaf.key"), "--wait"]);
    let (ok, text) = https_get(&p("ca.pem"), d, tls_port, "/");
    assert!(ok && text.contains("hello"), "{text}");
    assert!(f.ok(&["site", "show", d]).contains("uploaded for"));
    // HTTPS off drops the HTTPS server.
    f.ok(&["site", "https", d, "--mode", "off", "--wait"]);
    assert!(!https_get(&p("ca.pem"), d, tls_port, "/").0);
}

#[test]
fn a_site_created_with_https_gets_its_certificate_without_asking() {
    let Some(acme) = acme() else { return };
    let _one = ACME_PORT.lock().unwrap_or_else(|e| e.into_inner());
    let env = acme_env(&acme);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (f, tls_port) = setup(acme.http_port, &env);
    let d = "born-secure.fjord-test.example";
    f.ok(&["site", "create", d, "--platform", "p1", "--db-engine", "sqlite", "--https", "required", "--wait"]);
    f.wait_until("the first certificate", || {
        f.json(&["site", "show", d])["site"]["tls"]["names"].as_array().is_some_and(|n| !n.is_empty())
    });
    let root = pebble_root(&f, &acme);
    f.wait_until("HTTPS served", || https_get(&root, d, tls_port, "/").0);
    assert_eq!(f.get(acme.http_port, d, "/").status, 301, "HTTPS required: HTTP redirects");

    // Renamed: a certificate for the new name follows by itself.
    let renamed = "reborn.fjord-test.example";
    f.ok(&["site", "rename", d, renamed, "--drop-old-domain", "--wait"]);
    f.wait_until("a certificate for the new name", || {
        f.json(&["site", "show", renamed])["site"]["tls"]["names"]
            .as_array()
            .is_some_and(|n| n.contains(&serde_json::json!(renamed)))
    });
    f.wait_until("HTTPS served under the new name", || https_get(&root, renamed, tls_port, "/").0);
}

/// Apache serves HTTPS with the same certificates: two sites on one HTTPS port (one `Listen` for
/// both), HTTP/2, and HTTPS required (plain HTTP redirects).
#[test]
fn self_signed_https_on_apache() {
    if !services_available() {
        return;
    }
    let http_port = free_port();
    let (f, tls_port) = setup_web(http_port, &[], "apache");
    let names = ["one.fjord-test.example", "two.fjord-test.example"];
    for d in names {
        f.ok(&["site", "create", d, "--platform", "p1", "--db-engine", "sqlite", "--wait"]);
        f.ok(&["site", "https", d, "--mode", "on", "--self-signed", "--wait"]);
    }
    for d in names {
        let (ok, text) =
            curl(&["-k", "--resolve", &format!("{d}:{tls_port}:127.0.0.1"), &format!("https://{d}:{tls_port}/")]);
        assert!(ok && text.contains("hello"), "{d}: {text}");
        assert_eq!(f.get(http_port, d, "/").body, "hello", "{d}: plain HTTP");
    }
    let d = names[0];
    let (ok, version) = curl(&[
        "-k",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        "--resolve",
        &format!("{d}:{tls_port}:127.0.0.1"),
        &format!("https://{d}:{tls_port}/"),
    ]);
    assert!(ok && version.trim() == "2", "not HTTP/2: {version}");
    f.ok(&["site", "https", d, "--mode", "required", "--self-signed", "--wait"]);
    let a = f.get(http_port, d, "/page?x=1");
    assert_eq!(a.status, 301, "{a:?}");
    assert!(a.headers.contains(&format!("Location: https://{d}:{tls_port}/page?x=1")), "{}", a.headers);
}
