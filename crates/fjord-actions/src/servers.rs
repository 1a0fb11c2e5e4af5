//! Server actions: add (with its database admin accounts proven), switch the web server, PHP runtimes,
//! trusted proxies, remove. Each records the server's new services and queues its verify; the new
//! record is planned first, and a refusal puts the old one back.

use super::{parse_enum, Actions, Outcome};
use crate::error::{ActionError, ActionResult};
use fjord_core::names::validate_abs_path;
use fjord_core::proxies::{parse_cidr, parse_range_list, CLOUDFLARE_RANGES};
use fjord_core::*;
use fjord_exec::{Executor, Host, Secret, SecretStore};
use fjord_store::NewServer;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The proxy provider whose published ranges Fjord keeps.
pub const CLOUDFLARE: &str = "cloudflare";

/// Where Cloudflare publishes its edge ranges, one CIDR block a line.
pub fn cloudflare_urls() -> Vec<String> {
    vec!["https://www.cloudflare.com/ips-v4".into(), "https://www.cloudflare.com/ips-v6".into()]
}

/// A new server, as the API's JSON body and `fjord server add` give it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerCreate {
    pub name: String,
    /// Host name or address Fjord reaches it at; `localhost` is this machine.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Web server: nginx, apache or none.
    #[serde(default = "default_web")]
    pub web: String,
    /// own: Fjord runs its own web-server master; system: an include in the system nginx.
    #[serde(default = "default_web_mode")]
    pub web_mode: String,
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    pub https_port: Option<u16>,
    /// Address the sites listen on (default: all).
    pub listen: Option<String>,
    #[serde(default)]
    pub databases: Vec<DbServiceCreate>,
    /// PHP-FPM runtimes; on localhost, empty means every php-fpm found.
    #[serde(default)]
    pub php: Vec<PhpCreate>,
}

fn default_hostname() -> String {
    "localhost".into()
}
fn default_web() -> String {
    "nginx".into()
}
fn default_web_mode() -> String {
    "own".into()
}
fn default_http_port() -> u16 {
    80
}

/// A database engine a new server offers, with its admin account.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DbServiceCreate {
    /// mariadb, postgres or sqlite.
    pub engine: String,
    /// TCP host sites connect to (default 127.0.0.1).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Unix socket (MariaDB) or socket directory (PostgreSQL) for the admin connection.
    pub socket: Option<String>,
    /// Default root (MariaDB), postgres (PostgreSQL).
    pub admin_user: Option<String>,
    /// Kept in Fjord's secrets store, never in the state database.
    #[serde(skip_serializing)]
    pub admin_password: Option<String>,
}

// By hand, so the password never reaches a log line.
impl std::fmt::Debug for DbServiceCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbServiceCreate")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &self.admin_password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A PHP-FPM runtime of a new server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhpCreate {
    /// e.g. 8.2
    pub version: String,
    /// The php-fpm binary, e.g. /usr/sbin/php-fpm8.2
    pub binary: String,
}

/// Another PHP-FPM runtime on an existing server (its own master), detected from the binary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhpRuntimeAdd {
    /// The runtime's name, which sites choose it by.
    pub name: String,
    /// The php-fpm binary.
    pub binary: String,
    /// The matching php CLI (default /usr/bin/phpVERSION when it exists).
    pub cli: Option<String>,
}

/// Which web server a server runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSwitch {
    /// nginx or apache.
    pub web: String,
}

/// The proxies a server's web server trusts to say the visitor's address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RealIpSet {
    /// Trusted proxy addresses or CIDR blocks.
    #[serde(default)]
    pub trust: Vec<String>,
    /// Trust Cloudflare's published ranges too.
    #[serde(default)]
    pub cloudflare: bool,
    /// CF-Connecting-IP, X-Forwarded-For or X-Real-IP (default: CF-Connecting-IP with cloudflare,
    /// X-Forwarded-For otherwise).
    pub header: Option<String>,
    /// Trust no proxy any more.
    #[serde(default)]
    pub off: bool,
}

/// A server that does not exist yet, for planning its first verify.
fn prospective_server(new: &NewServer) -> Server {
    Server {
        id: ServerId(0),
        name: new.name.clone(),
        hostname: new.hostname.clone(),
        services: new.services.clone(),
        status: ObjectStatus::Queued,
        created_at: 0,
        updated_at: 0,
    }
}

/// The web server's version on this machine.
pub async fn web_version(kind: HttpKind) -> Option<String> {
    match kind {
        HttpKind::Nginx => fjord_exec::probe::nginx_version().await,
        HttpKind::Apache => fjord_exec::probe::apache_version().await,
    }
}

fn ip_address(field: &str, s: &str) -> ActionResult<()> {
    match s.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(ActionError::invalid(field, format!("invalid {field} {s:?}: give an IP address"))),
    }
}

impl Actions<'_> {
    /// Fjord's secrets store.
    pub(super) fn secrets(&self) -> ActionResult<SecretStore> {
        SecretStore::open(std::path::Path::new(&self.layout.state_dir).join("secrets")).map_err(ActionError::internal)
    }

    /// The executor on this machine, with Fjord's secrets store and undo dir: host work needed to
    /// answer a request (proving a database account) runs through it, as steps do.
    pub(super) fn executor(&self) -> ActionResult<Executor> {
        let state = std::path::Path::new(&self.layout.state_dir);
        Ok(Executor::new(Host::Local, self.secrets()?, state.join("undo")))
    }

    /// The services a new server offers: what the request says, completed on the local machine by
    /// what is installed (web server version, PHP-FPM runtimes).
    async fn new_server_services(&self, req: &ServerCreate, local: bool) -> ActionResult<Vec<Service>> {
        let mut services = Vec::new();
        if req.web != "none" {
            let kind: HttpKind = parse_enum("web", &req.web)?;
            let mode: WebMode = parse_enum("web_mode", &req.web_mode)?;
            if kind == HttpKind::Apache && mode != WebMode::Own {
                return Err(ActionError::invalid(
                    "web_mode",
                    "apache runs only as Fjord's own master: use web mode own",
                ));
            }
            if let Some(l) = &req.listen {
                ip_address("listen", l)?;
            }
            services.push(Service::Http(HttpService {
                kind,
                mode,
                version: if local { web_version(kind).await } else { None },
                binary: None,
                listen: req.listen.clone(),
                port: req.http_port,
                https_port: req.https_port,
                real_ip: None,
            }));
        }
        for db in &req.databases {
            let engine: DbEngine = parse_enum("databases", &db.engine)?;
            if services.iter().any(|s| matches!(s, Service::Db(d) if d.engine == engine)) {
                return Err(ActionError::invalid("databases", format!("database {engine} is given twice")));
            }
            let socket = db.socket.as_deref().map(|p| validate_abs_path("database socket", p)).transpose()?;
            let (port, admin) = match engine {
                DbEngine::Mariadb => (3306, "root"),
                DbEngine::Postgres => (5432, "postgres"),
                DbEngine::Sqlite => (0, ""),
            };
            let service = if engine == DbEngine::Sqlite {
                DbService::sqlite()
            } else {
                let host = db.host.clone().unwrap_or_else(|| "127.0.0.1".into());
                if host.parse::<std::net::IpAddr>().is_err() && Domain::parse_host("database host", &host).is_err() {
                    return Err(ActionError::invalid("databases", format!("invalid database host {host:?}")));
                }
                DbService {
                    engine,
                    version: None,
                    host: Some(host),
                    port: Some(db.port.unwrap_or(port)),
                    socket,
                    admin_user: Some(
                        Name::parse("database admin", db.admin_user.as_deref().unwrap_or(admin))?.to_string(),
                    ),
                    admin_password: db.admin_password.is_some(),
                }
            };
            if db.admin_password.as_deref().is_some_and(str::is_empty) {
                return Err(ActionError::invalid("databases", format!("the {engine} admin password is empty")));
            }
            services.push(Service::Db(service));
        }
        for php in &req.php {
            let version = &php.version;
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Err(ActionError::invalid("php", format!("PHP version {version:?} must look like 8.2")));
            }
            if services.iter().any(|s| matches!(s, Service::Php(p) if &p.version == version)) {
                return Err(ActionError::invalid("php", format!("PHP {version} is given twice")));
            }
            let binary = validate_abs_path("php binary", &php.binary)?;
            let cli = format!("/usr/bin/php{version}");
            services.push(Service::Php(PhpRuntime {
                name: None,
                version: version.clone(),
                binary,
                cli: std::path::Path::new(&cli).exists().then_some(cli),
                extensions: vec![],
            }));
        }
        if req.php.is_empty() && local {
            for found in fjord_exec::probe::php_runtimes() {
                services.push(Service::Php(PhpRuntime {
                    name: None,
                    version: found.version,
                    binary: found.fpm,
                    cli: found.cli,
                    extensions: vec![],
                }));
            }
        }
        if local {
            // What each runtime offers, for the checks of a platform's needs (`-m` of its CLI).
            for svc in &mut services {
                if let Service::Php(r) = svc {
                    if let Some((_, extensions)) = fjord_exec::probe::php_fpm_info(&r.binary, r.cli.as_deref()).await {
                        r.extensions = extensions;
                    }
                }
            }
        }
        Ok(services)
    }

    /// Validates a new server and plans its first verify, writing nothing.
    pub async fn prepare_server(&self, req: &ServerCreate) -> ActionResult<(NewServer, Planned)> {
        let hostname = if req.hostname == "localhost" {
            req.hostname.clone()
        } else {
            Domain::parse_field("hostname", &req.hostname)?.to_string()
        };
        let name = Name::parse("server name", &req.name)?;
        if self.store.server_by_name(name.as_str()).await.is_ok() {
            return Err(ActionError::invalid("name", format!("a server named {name:?} already exists")));
        }
        let local = hostname == "localhost";
        let new = NewServer { name, hostname, services: self.new_server_services(req, local).await? };
        let snap = Snapshot::of_server(prospective_server(&new));
        let planned = self.plan_new(TaskKind::ServerVerify, &serde_json::json!({}), &snap)?;
        Ok((new, planned))
    }

    /// Adds a server: its database admin passwords go to the secrets store and each database must
    /// answer as its admin before anything is recorded. Returns what answered, e.g. "mariadb 10.11.6".
    pub async fn add_server(&self, req: &ServerCreate, created_by: &str) -> ActionResult<(Server, Task, Vec<String>)> {
        let (new, _) = self.prepare_server(req).await?;
        let server = prospective_server(&new);
        let ex = self.executor()?;
        let forget = |ex: &Executor| {
            for engine in [DbEngine::Mariadb, DbEngine::Postgres] {
                let _ = ex.secrets.delete(&fjord_plan::db::admin_password_key(&server, engine));
            }
        };
        let mut reachable = Vec::new();
        for db in &req.databases {
            let Ok(engine) = db.engine.parse::<DbEngine>() else { continue };
            let Some(service) = server.db(engine).filter(|_| engine != DbEngine::Sqlite) else { continue };
            if let Some(pw) = &db.admin_password {
                let key = fjord_plan::db::admin_password_key(&server, engine);
                ex.secrets.put(&key, &Secret::new(pw)).map_err(|e| ActionError::Internal(format!("{e:#}")))?;
            }
            let cmd = fjord_plan::db::admin(&server, service, "SELECT version();\n".into());
            let version = match ex.run_command(&cmd, None, None).await {
                Ok(out) => out.stdout.lines().last().unwrap_or("").trim().to_string(),
                Err(e) => {
                    forget(&ex);
                    return Err(ActionError::invalid(
                        "databases",
                        format!("cannot reach {engine} as its admin account: {e}"),
                    ));
                }
            };
            // The admin may answer through a socket while sites connect over TCP: prove their way.
            if let Err(e) = self.prove_site_path(&ex, &server, service).await {
                forget(&ex);
                return Err(ActionError::invalid("databases", e));
            }
            reachable.push(format!("{engine} {version}"));
        }
        match self.store.add_server(&new, created_by).await {
            Ok((server, task)) => Ok((server, task, reachable)),
            Err(e) => {
                forget(&ex);
                Err(e.into())
            }
        }
    }

    /// Logs in as a throwaway account of `service` the way sites are configured to connect (its host
    /// and port), and removes the account again. The error says what sites would hit.
    async fn prove_site_path(&self, ex: &Executor, server: &Server, service: &DbService) -> Result<(), String> {
        let user = format!("fjordprobe{}", std::process::id());
        let (create, login, drop) = fjord_plan::db::prove_site_path(server, service, &user);
        let engine = service.engine;
        let host = service.host.as_deref().unwrap_or("127.0.0.1");
        let port = service.port.unwrap_or_default();
        let result = match ex.run_command(&create, None, None).await {
            Err(e) => Err(format!("cannot create a test account on {engine} as its admin: {e}")),
            Ok(_) => ex.run_command(&login, None, None).await.map(|_| ()).map_err(|e| {
                let admin_way = match &service.socket {
                    Some(sock) => format!("its admin answers through the socket {sock}, but "),
                    None => String::new(),
                };
                format!(
                    "{engine}: {admin_way}sites connect to {host}:{port} and an account like theirs cannot: {e} \
                     (give the port or host the database listens on: --{}-port / --{}-host)",
                    engine, engine
                )
            }),
        };
        let _ = ex.run_command(&drop, None, None).await;
        let _ = ex.secrets.delete(&fjord_plan::db::probe_password_key(server, engine));
        result
    }

    /// Records a server's new services and queues its verify with `args` (a dry run: its plan). A
    /// refusal records nothing.
    pub async fn set_services_and_verify(
        &self,
        s: &Server,
        services: &[Service],
        args: serde_json::Value,
        created_by: &str,
        dry_run: bool,
    ) -> ActionResult<Outcome> {
        let desired = DesiredChange::ServerServices { server: s.id, services: services.to_vec() };
        let verify = NewTask::new(TaskKind::ServerVerify, s.id.0, args, created_by);
        self.submit(Change::with(desired, verify), dry_run).await
    }

    /// The services with the web server switched to `web` (nginx or apache), and the args of the
    /// verify that moves every vhost over.
    pub async fn web_switch(&self, s: &Server, req: &WebSwitch) -> ActionResult<(Vec<Service>, serde_json::Value)> {
        let kind: HttpKind = parse_enum("web", &req.web)?;
        let Some(http) = s.http() else {
            return Err(ActionError::invalid("web", format!("server {} has no web server", s.name)));
        };
        if kind == HttpKind::Apache && http.mode != WebMode::Own {
            return Err(ActionError::invalid(
                "web",
                format!("Apache runs only as Fjord's own master; server {} uses the system nginx", s.name),
            ));
        }
        let previous = http.kind;
        let version = if s.hostname == "localhost" { web_version(kind).await } else { None };
        let mut services = s.services.clone();
        for svc in &mut services {
            if let Service::Http(h) = svc {
                h.kind = kind;
                h.binary = None;
                h.version = version.clone();
            }
        }
        Ok((services, serde_json::json!({ "previous_web": previous })))
    }

    /// The services with another PHP-FPM runtime, detected from its binary.
    pub async fn php_runtime_added(&self, s: &Server, req: &PhpRuntimeAdd) -> ActionResult<Vec<Service>> {
        let name = Name::parse("runtime name", &req.name)?.to_string();
        if name.len() > 24 {
            // It goes into socket paths, which Unix limits to 108 bytes.
            return Err(ActionError::invalid("name", format!("runtime name {name:?}: at most 24 characters")));
        }
        if s.php_runtimes().any(|r| r.key() == name) {
            return Err(ActionError::invalid("name", format!("server {} already has a PHP runtime {name}", s.name)));
        }
        let binary = validate_abs_path("php-fpm binary", &req.binary)?;
        let cli = req.cli.as_deref().map(|c| validate_abs_path("php cli", c)).transpose()?;
        // Probes run as root: never a program someone else could have put or changed there.
        fjord_exec::probe::trusted_binary(&binary).map_err(|e| ActionError::invalid("binary", e))?;
        if let Some(c) = &cli {
            fjord_exec::probe::trusted_binary(c).map_err(|e| ActionError::invalid("cli", e))?;
        }
        let Some((version, extensions)) = fjord_exec::probe::php_fpm_info(&binary, cli.as_deref()).await else {
            return Err(ActionError::invalid(
                "binary",
                format!("{binary} is not a PHP-FPM binary this machine can run (`{binary} -v` failed)"),
            ));
        };
        let cli = cli.or_else(|| {
            let default = format!("/usr/bin/php{version}");
            std::path::Path::new(&default).exists().then_some(default)
        });
        let mut services = s.services.clone();
        services.push(Service::Php(PhpRuntime { name: Some(name), version, binary, cli, extensions }));
        Ok(services)
    }

    /// The services without the runtime `name`, refused while a site runs on it.
    pub async fn php_runtime_removed(&self, s: &Server, name: &str) -> ActionResult<Vec<Service>> {
        let Some(runtime) = s.php_runtimes().find(|r| r.key() == name) else {
            return Err(ActionError::not_found("PHP runtime", name));
        };
        let default = s.php_runtimes().next().map(|r| r.key()) == Some(runtime.key());
        let platforms: Vec<PlatformId> =
            self.store.platforms().await?.into_iter().filter(|p| p.server_id == s.id).map(|p| p.id).collect();
        let users: Vec<String> = self
            .store
            .sites(None)
            .await?
            .iter()
            .filter(|site| platforms.contains(&site.platform_id) && site.status != SiteStatus::Deleted)
            .filter(|site| match &site.php {
                Some(p) => p == runtime.key() || p == &runtime.version && !s.php_runtimes().any(|r| r.key() == p),
                None => default,
            })
            .map(|site| site.domain.to_string())
            .collect();
        if !users.is_empty() {
            return Err(ActionError::Conflict(format!(
                "PHP runtime {name} still runs {}: move them first (fjord site php DOMAIN --runtime R)",
                users.join(", ")
            )));
        }
        Ok(s.services.iter().filter(|svc| !matches!(svc, Service::Php(r) if r.key() == name)).cloned().collect())
    }

    /// Cloudflare's ranges as last updated in the state database, or as shipped: (ranges, source, when).
    pub async fn cloudflare_ranges(&self) -> ActionResult<(Vec<String>, String, Option<Millis>)> {
        Ok(match self.store.proxy_ranges(CLOUDFLARE).await? {
            Some((ranges, source, at)) => (ranges, source, Some(at)),
            None => (
                parse_range_list(CLOUDFLARE_RANGES).map_err(ActionError::Internal)?,
                "shipped with Fjord".to_string(),
                None,
            ),
        })
    }

    /// The services with the trusted proxies `req` names (or none, with `off`).
    pub async fn real_ip_set(&self, s: &Server, req: &RealIpSet) -> ActionResult<Vec<Service>> {
        if s.http().is_none() {
            return Err(ActionError::invalid("trust", format!("server {} has no web server", s.name)));
        }
        let real_ip = if req.off {
            if !req.trust.is_empty() || req.cloudflare || req.header.is_some() {
                return Err(ActionError::invalid("off", "off trusts no proxy: give no trust, cloudflare or header"));
            }
            None
        } else {
            if req.trust.is_empty() && !req.cloudflare {
                return Err(ActionError::invalid(
                    "trust",
                    "name the proxies to trust: trust CIDR blocks and/or cloudflare (or off)",
                ));
            }
            let mut ranges = Vec::new();
            for t in &req.trust {
                let r = parse_cidr(t).map_err(|e| ActionError::invalid("trust", format!("invalid trust: {e}")))?;
                if !ranges.contains(&r) {
                    ranges.push(r);
                }
            }
            let header = match &req.header {
                Some(h) => {
                    RealIpHeader::ALL.iter().copied().find(|k| k.as_str().eq_ignore_ascii_case(h)).ok_or_else(|| {
                        ActionError::invalid(
                            "header",
                            format!("invalid header {h:?}: one of CF-Connecting-IP, X-Forwarded-For, X-Real-IP"),
                        )
                    })?
                }
                None if req.cloudflare => RealIpHeader::CfConnectingIp,
                None => RealIpHeader::XForwardedFor,
            };
            let cloudflare_ranges = if req.cloudflare { self.cloudflare_ranges().await?.0 } else { vec![] };
            Some(RealIp { header, cloudflare: req.cloudflare, cloudflare_ranges, ranges })
        };
        let mut services = s.services.clone();
        for svc in &mut services {
            if let Service::Http(h) = svc {
                h.real_ip = real_ip.clone();
            }
        }
        Ok(services)
    }
}

/// What refreshing a provider's proxy ranges did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProxyRangesRefresh {
    pub ranges: Vec<String>,
    /// One line per thing done, for people.
    pub report: Vec<String>,
    /// The verifies queued on servers that trust the provider.
    pub tasks: Vec<i64>,
}

impl Actions<'_> {
    /// Fetches Cloudflare's published ranges from `urls` (http, https or file), records them, and gives
    /// every server that trusts Cloudflare the new list and a verify to apply it: one transaction.
    /// All or nothing: one bad line and the recorded list stays as it was.
    pub async fn refresh_cloudflare_ranges(
        &self,
        urls: &[String],
        created_by: &str,
    ) -> ActionResult<ProxyRangesRefresh> {
        let mut text = String::new();
        for url in urls {
            if !["http://", "https://", "file://"].iter().any(|p| url.starts_with(p)) {
                return Err(ActionError::invalid(
                    "from",
                    format!("invalid --from {url:?}: an http://, https:// or file:// URL"),
                ));
            }
            // curl speaks all three; --proto keeps a redirect from leaving them.
            let cmd = Command::new(["curl", "-fsS", "--max-time", "30", "--proto", "=http,https,file", "--", url])
                .timeout(60);
            let out = self
                .executor()?
                .run_command(&cmd, None, None)
                .await
                .map_err(|e| ActionError::invalid("from", format!("fetching {url}: {e}")))?;
            text.push_str(&out.stdout);
            text.push('\n');
        }
        let ranges = parse_range_list(&text)
            .map_err(|e| ActionError::invalid("from", format!("the fetched list is not valid: {e}")))?;
        let old = self.store.proxy_ranges(CLOUDFLARE).await?.map(|(r, ..)| r);
        let source = urls.join(" ");
        let mut report = vec![format!(
            "cloudflare: {} ranges from {source}{}",
            ranges.len(),
            if old.as_ref() == Some(&ranges) { " (unchanged)" } else { "" }
        )];
        let mut change = Change {
            desired: vec![DesiredChange::ProxyRanges { name: CLOUDFLARE.into(), ranges: ranges.clone(), source }],
            tasks: vec![],
        };
        let mut names = Vec::new();
        for s in self.store.servers().await? {
            let Some(mut rip) = s.http().and_then(|h| h.real_ip.clone()).filter(|r| r.cloudflare) else {
                continue;
            };
            if rip.cloudflare_ranges == ranges {
                continue;
            }
            rip.cloudflare_ranges = ranges.clone();
            let mut services = s.services.clone();
            for svc in &mut services {
                if let Service::Http(h) = svc {
                    h.real_ip = Some(rip.clone());
                }
            }
            change.desired.push(DesiredChange::ServerServices { server: s.id, services });
            change.tasks.push(NewTask::new(TaskKind::ServerVerify, s.id.0, serde_json::json!({}), created_by));
            names.push(s.name.to_string());
        }
        self.plan_change(&change).await?;
        let tasks = self.store.commit_change(&change).await?;
        for (name, t) in names.iter().zip(&tasks) {
            report.push(format!("server {name}: verify queued (task {})", t.id));
        }
        Ok(ProxyRangesRefresh { ranges, report, tasks: tasks.iter().map(|t| t.id.0).collect() })
    }
}
