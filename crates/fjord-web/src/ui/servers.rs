//! Servers (admins and platform managers see them; admins change them): the list with the add-server
//! form, and a server's page with its services, platforms, tasks and the forms that change it (web
//! server, PHP runtimes, trusted proxies, remove). Each form calls the API handler that does it.

use super::tasks::task_rows;
use super::{see_other, FormErrors, NoFields, UiResult, Viewer};
use crate::api::objects as api;
use crate::csrf::CsrfForm;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fjord_actions::{DbServiceCreate, PhpRuntimeAdd, RealIpSet, ServerCreate, WebSwitch};
use fjord_core::*;
use fjord_store::TaskQuery;
use minijinja::{context, Value};
use serde::Deserialize;
use std::collections::BTreeMap;

fn http_of(s: &Server) -> String {
    match s.http() {
        Some(h) => {
            let mut out = format!("{} ({} mode) on port {}", h.kind, h.mode, h.port);
            if let Some(p) = h.https_port {
                out.push_str(&format!(", HTTPS {p}"));
            }
            if let Some(ver) = &h.version {
                out.push_str(&format!(", version {ver}"));
            }
            out
        }
        None => "none".into(),
    }
}

/// A form's values and errors, shown again after a refusal.
#[derive(Default)]
struct Shown {
    form: BTreeMap<String, String>,
    errors: BTreeMap<&'static str, FormErrors>,
}

fn errors_value(errors: BTreeMap<&'static str, FormErrors>) -> Value {
    let map: BTreeMap<&str, BTreeMap<String, String>> = errors
        .into_iter()
        .map(|(k, e)| {
            let mut fields = e.fields;
            if let Some(g) = e.general {
                fields.insert("general".into(), g);
            }
            (k, fields)
        })
        .collect();
    Value::from_serialize(&map)
}

async fn list_page(state: &AppState, v: &Viewer, status: StatusCode, shown: Shown) -> UiResult {
    v.0.require_manager()?;
    let platforms = state.store.platforms().await?;
    let servers: Vec<Value> = state
        .store
        .servers()
        .await?
        .iter()
        .map(|s| {
            context! {
                name => s.name.as_str(), hostname => s.hostname, status => s.status.as_str(), http => http_of(s),
                php => s.php_versions().collect::<Vec<_>>(),
                dbs => s.db_engines().map(|e| e.as_str()).collect::<Vec<_>>(),
                platforms => platforms.iter().filter(|p| p.server_id == s.id).count(),
            }
        })
        .collect();
    let mut form = BTreeMap::from([
        ("hostname".to_string(), "localhost".to_string()),
        ("web".to_string(), "nginx".to_string()),
        ("http_port".to_string(), "80".to_string()),
        ("mariadb_host".to_string(), "127.0.0.1".to_string()),
        ("mariadb_port".to_string(), "3306".to_string()),
        ("mariadb_admin".to_string(), "root".to_string()),
        ("postgres_host".to_string(), "127.0.0.1".to_string()),
        ("postgres_port".to_string(), "5432".to_string()),
        ("postgres_admin".to_string(), "postgres".to_string()),
    ]);
    form.extend(shown.form);
    v.page_with_status(
        status,
        "servers.html",
        "servers",
        context! { servers, form, errors => errors_value(shown.errors) },
    )
}

pub async fn servers(State(state): State<AppState>, v: Viewer) -> UiResult {
    list_page(&state, &v, StatusCode::OK, Shown::default()).await
}

/// The add-server form: a web server, and the databases it offers with their admin accounts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    web: String,
    #[serde(default)]
    http_port: String,
    #[serde(default)]
    https_port: String,
    sqlite: Option<String>,
    mariadb: Option<String>,
    #[serde(default)]
    mariadb_host: String,
    #[serde(default)]
    mariadb_port: String,
    #[serde(default)]
    mariadb_socket: String,
    #[serde(default)]
    mariadb_admin: String,
    #[serde(default)]
    mariadb_password: String,
    postgres: Option<String>,
    #[serde(default)]
    postgres_host: String,
    #[serde(default)]
    postgres_port: String,
    #[serde(default)]
    postgres_socket: String,
    #[serde(default)]
    postgres_admin: String,
    #[serde(default)]
    postgres_password: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string)
}

fn port(field: &str, s: &str) -> Result<Option<u16>, ApiError> {
    opt(s)
        .map(|p| p.parse::<u16>().map_err(|_| ApiError::invalid(field, format!("{field}: a port number"))))
        .transpose()
}

impl ServerForm {
    fn request(&self) -> Result<ServerCreate, ApiError> {
        let mut databases = Vec::new();
        if self.sqlite.is_some() {
            databases.push(DbServiceCreate {
                engine: "sqlite".into(),
                host: None,
                port: None,
                socket: None,
                admin_user: None,
                admin_password: None,
            });
        }
        let engines = [
            (
                "mariadb",
                &self.mariadb,
                &self.mariadb_host,
                &self.mariadb_port,
                &self.mariadb_socket,
                &self.mariadb_admin,
                &self.mariadb_password,
            ),
            (
                "postgres",
                &self.postgres,
                &self.postgres_host,
                &self.postgres_port,
                &self.postgres_socket,
                &self.postgres_admin,
                &self.postgres_password,
            ),
        ];
        for (engine, on, host, p, socket, admin, password) in engines {
            if on.is_some() {
                databases.push(DbServiceCreate {
                    engine: engine.into(),
                    host: opt(host),
                    port: port(&format!("{engine}_port"), p)?,
                    socket: opt(socket),
                    admin_user: opt(admin),
                    admin_password: opt(password),
                });
            }
        }
        Ok(ServerCreate {
            name: self.name.trim().to_string(),
            hostname: opt(&self.hostname).unwrap_or_else(|| "localhost".into()),
            web: opt(&self.web).unwrap_or_else(|| "nginx".into()),
            web_mode: "own".into(),
            http_port: port("http_port", &self.http_port)?.unwrap_or(80),
            https_port: port("https_port", &self.https_port)?,
            listen: None,
            databases,
            php: vec![],
        })
    }

    /// What is shown again after a refusal: everything but the passwords.
    fn shown(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let pairs = [
            ("name", &self.name),
            ("hostname", &self.hostname),
            ("web", &self.web),
            ("http_port", &self.http_port),
            ("https_port", &self.https_port),
            ("mariadb_host", &self.mariadb_host),
            ("mariadb_port", &self.mariadb_port),
            ("mariadb_socket", &self.mariadb_socket),
            ("mariadb_admin", &self.mariadb_admin),
            ("postgres_host", &self.postgres_host),
            ("postgres_port", &self.postgres_port),
            ("postgres_socket", &self.postgres_socket),
            ("postgres_admin", &self.postgres_admin),
        ];
        for (k, val) in pairs {
            m.insert(k.to_string(), val.clone());
        }
        for (k, on) in [("sqlite", &self.sqlite), ("mariadb", &self.mariadb), ("postgres", &self.postgres)] {
            if on.is_some() {
                m.insert(k.to_string(), "on".into());
            }
        }
        m
    }
}

pub async fn add_server(State(state): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<ServerForm>) -> UiResult {
    let outcome = match f.request() {
        Ok(req) => api::add_server(State(state.clone()), v.0.clone(), ApiJson(req)).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(q) => Ok(see_other(&format!("/tasks/{}", q.0.id))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let known =
                ["name", "hostname", "web", "http_port", "https_port", "databases", "mariadb_port", "postgres_port"];
            let mut shown = Shown { form: f.shown(), ..Default::default() };
            shown.errors.insert("add", FormErrors::from_error(&e, &known, &[("server_name", "name")]));
            list_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn server_page(state: &AppState, v: &Viewer, name: &str, status: StatusCode, shown: Shown) -> UiResult {
    v.0.require_manager()?;
    let server = state.store.server_by_name(name).await?;
    let mut services = vec![("Web server".to_string(), http_of(&server))];
    for p in server.php_runtimes() {
        services.push((format!("PHP {} ({})", p.version, p.key()), p.binary.clone()));
    }
    for e in server.db_engines() {
        let d = server.db(e).expect("listed engines exist");
        let at = match (&d.socket, &d.host, d.port) {
            (Some(sock), _, _) => format!("socket {sock}"),
            (None, Some(h), Some(p)) => format!("{h}:{p}"),
            (None, Some(h), None) => h.clone(),
            _ => "local".into(),
        };
        let ver = d.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
        services.push((e.as_str().to_string(), format!("{at}{ver}")));
    }
    let real_ip = server.http().and_then(|h| h.real_ip.as_ref()).map(|r| {
        let mut from: Vec<String> = r.ranges.iter().map(|c| c.to_string()).collect();
        if r.cloudflare {
            from.insert(0, "Cloudflare".into());
        }
        format!("{} from {}", r.header.as_str(), from.join(", "))
    });
    services.push((
        "Visitor address".into(),
        real_ip.clone().unwrap_or_else(|| "the connection's (no proxy trusted)".into()),
    ));
    let platforms: Vec<Value> = state
        .store
        .platforms()
        .await?
        .iter()
        .filter(|p| p.server_id == server.id)
        .map(|p| context! { name => p.name.as_str(), status => p.status.as_str(), app => p.app.map(|a| a.as_str()), app_version => p.app_version })
        .collect();
    let tasks: Vec<Task> = state
        .store
        .list_tasks(&TaskQuery { limit: 100, ..Default::default() })
        .await?
        .items
        .into_iter()
        .filter(|t| t.target_kind == TargetKind::Server && t.target_id == server.id.0)
        .take(10)
        .collect();
    let runtimes: Vec<Value> =
        server.php_runtimes().map(|r| context! { key => r.key(), version => r.version, binary => r.binary }).collect();
    let http = server.http();
    let server_v = context! {
        name => server.name.as_str(), hostname => server.hostname, status => server.status.as_str(),
        web => http.map(|h| h.kind.to_string()), own_web => http.is_some_and(|h| h.mode == WebMode::Own),
    };
    let mut form = BTreeMap::new();
    if let Some(r) = http.and_then(|h| h.real_ip.as_ref()) {
        form.insert("trust".to_string(), r.ranges.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" "));
        form.insert("header".to_string(), r.header.as_str().to_string());
        if r.cloudflare {
            form.insert("cloudflare".to_string(), "on".to_string());
        }
    }
    form.extend(shown.form);
    let headers: Vec<(String, String)> = std::iter::once((String::new(), "the usual one".to_string()))
        .chain(RealIpHeader::ALL.iter().map(|h| (h.as_str().to_string(), h.as_str().to_string())))
        .collect();
    v.page_with_status(
        status,
        "server.html",
        "servers",
        context! {
            server => server_v, services, platforms, tasks => task_rows(state, &tasks).await?, runtimes, headers,
            form, errors => errors_value(shown.errors),
        },
    )
}

pub async fn server(State(state): State<AppState>, v: Viewer, Path(name): Path<String>) -> UiResult {
    server_page(&state, &v, &name, StatusCode::OK, Shown::default()).await
}

/// The fields of the forms on a server's page; each form sends its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerChangeForm {
    web: Option<String>,
    runtime_name: Option<String>,
    binary: Option<String>,
    trust: Option<String>,
    cloudflare: Option<String>,
    header: Option<String>,
    off: Option<String>,
    confirm: Option<String>,
}

/// The forms on a server's page: `verify`, `web`, `php` (add a runtime), `real-ip`, `remove`.
pub async fn server_action(
    State(state): State<AppState>,
    v: Viewer,
    Path((name, action)): Path<(String, String)>,
    CsrfForm(f): CsrfForm<ServerChangeForm>,
) -> UiResult {
    let (s, a, n) = (State(state.clone()), v.0.clone(), ApiPath(name.clone()));
    let text = |o: &Option<String>| o.as_deref().map(str::trim).unwrap_or("").to_string();
    let (key, known, outcome): (&'static str, &[&str], _) = match action.as_str() {
        "verify" => ("verify", &[], api::verify_server(s, a, n).await),
        "stop" => ("verify", &[], api::stop_server(s, a, n).await),
        "start" => ("verify", &[], api::start_server(s, a, n).await),
        "web" => ("web", &["web"], api::switch_web(s, a, n, ApiJson(WebSwitch { web: text(&f.web) })).await),
        "php" => {
            let req = PhpRuntimeAdd { name: text(&f.runtime_name), binary: text(&f.binary), cli: None };
            ("php", &["name", "binary"], api::add_php_runtime(s, a, n, ApiJson(req)).await)
        }
        "real-ip" => {
            let req = RealIpSet {
                trust: text(&f.trust).split([' ', ',', '\n']).filter(|t| !t.is_empty()).map(str::to_string).collect(),
                cloudflare: f.cloudflare.is_some(),
                header: opt(&text(&f.header)),
                off: f.off.is_some(),
            };
            ("real_ip", &["trust", "header"], api::set_real_ip(s, a, n, ApiJson(req)).await)
        }
        "remove" => {
            if text(&f.confirm) != name {
                let mut shown = Shown::default();
                let mut e = FormErrors::default();
                e.fields.insert("confirm".into(), format!("Type {name} to confirm."));
                shown.errors.insert("remove", e);
                return server_page(&state, &v, &name, StatusCode::UNPROCESSABLE_ENTITY, shown).await;
            }
            ("remove", &[], api::remove_server(s, a, n).await)
        }
        _ => return Err(ApiError::not_found("action", action).into()),
    };
    match outcome {
        Ok(q) => Ok(see_other(&format!("/tasks/{}", q.0.id))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_))) => {
            let mut shown = Shown::default();
            for (k, val) in
                [("runtime_name", &f.runtime_name), ("binary", &f.binary), ("trust", &f.trust), ("header", &f.header)]
            {
                if let Some(val) = val {
                    shown.form.insert(k.to_string(), val.clone());
                }
            }
            shown.errors.insert(key, FormErrors::from_error(&e, known, &[("name", "runtime_name")]));
            server_page(&state, &v, &name, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes one of the server's PHP runtimes (refused while a site runs on it).
pub async fn remove_runtime(
    State(state): State<AppState>,
    v: Viewer,
    Path((name, runtime)): Path<(String, String)>,
    _: CsrfForm<NoFields>,
) -> UiResult {
    match api::remove_php_runtime(State(state.clone()), v.0.clone(), ApiPath((name.clone(), runtime))).await {
        Ok(q) => Ok(see_other(&format!("/tasks/{}", q.0.id))),
        Err(e @ ApiError::Conflict(_)) => {
            let mut shown = Shown::default();
            shown.errors.insert("php", FormErrors::from_error(&e, &[], &[]));
            server_page(&state, &v, &name, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(e) => Err(e.into()),
    }
}
