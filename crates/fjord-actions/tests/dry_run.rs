//! A dry run shows what will run: for every task kind with a dry run on an existing object, the plan a
//! request's dry run returns equals, as data, the plan the daemon makes for the task the same request
//! queues (`planning::plan_task`, as `fjord-daemon`'s runner calls it). A dry run writes nothing, and
//! neither does a request the planner refuses.
//!
//! The state is built in a scratch store on every backend without real hosts: planning is pure except
//! for a platform verify's read-only probes, which look at the Drupal 10 fixture codebase. Queued setup
//! tasks are finished the way the daemon finishes them (claimed, planned, their `on_success` recorded),
//! with nothing run.

use fjord_actions::{
    planning, ActionError, ActionResult, Actions, CertChange, HttpsChange, Outcome, PhpLimitsChange, RealIpSet,
    SiteCreate, SyncRequest, WebSwitch,
};
use fjord_core::*;
use fjord_plan::Layout;
use fjord_store::{NewPlatform, NewServer, Store, TaskFilter};
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};

const BY: &str = "test";

/// The Drupal 10 fixture codebase, probed read-only by platform verifies.
fn drupal10_fixture() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/platforms/drupal10");
    std::fs::canonicalize(path).expect("the Drupal 10 fixture is there")
}

/// One backend's state: a server with two PHP runtimes, two verified Drupal 10 platforms (`d10`, and
/// `d10b` to migrate to), a client, and two enabled SQLite sites on `d10`.
struct World {
    store: Store,
    layout: Layout,
    server: ServerId,
    site: SiteId,
    other_site: SiteId,
}

impl World {
    async fn build(backend: &str, store: Store, dir: &Path) -> World {
        let dir = dir.join(backend);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let layout = Layout::new(dir.join("state").to_str().expect("a UTF-8 path"));
        let services = vec![
            Service::Http(HttpService {
                kind: HttpKind::Nginx,
                mode: WebMode::Own,
                version: None,
                binary: None,
                listen: None,
                port: 8080,
                https_port: Some(8443),
                real_ip: None,
            }),
            Service::Db(DbService::sqlite()),
            Service::Php(php_runtime(None, "8.2")),
            Service::Php(php_runtime(Some("php83"), "8.3")),
        ];
        let new = NewServer {
            name: Name::parse("server", "web1").expect("server name"),
            hostname: "web1.example.com".into(),
            services,
        };
        let (server, _) = store.add_server(&new, BY).await.expect("add the server");
        // Two platforms on one codebase: a second root is a link to the same fixture.
        let fixture = drupal10_fixture();
        let link = dir.join("d10b");
        std::os::unix::fs::symlink(&fixture, &link).expect("link the fixture");
        for (name, root) in [("d10", fixture), ("d10b", link)] {
            let new = NewPlatform {
                name: Name::parse("platform", name).expect("platform name"),
                server: server.id,
                root: root.to_str().expect("a UTF-8 path").into(),
                source: PlatformSource::Path,
            };
            store.add_platform(&new, BY).await.expect("add the platform");
        }
        run_queued(&store, &layout).await;
        store
            .add_client(&Name::parse_client("acme").expect("client name"), "Acme", None)
            .await
            .expect("add the client");
        let actions = Actions::new(&store, &layout);
        let (site, _) = actions.create_site(&site_create("a.example.com"), BY).await.expect("create site a");
        let (other_site, _) = actions.create_site(&site_create("b.example.com"), BY).await.expect("create site b");
        run_queued(&store, &layout).await;
        let w = World { store, layout, server: server.id, site: site.id, other_site: other_site.id };
        for p in w.store.platforms().await.expect("platforms") {
            assert_eq!((p.status, p.app), (ObjectStatus::Enabled, Some(AppKind::Drupal)), "platform {}", p.name);
        }
        assert_eq!(w.site().await.status, SiteStatus::Enabled);
        assert_eq!(w.store.active_task_count().await.expect("active tasks"), 0);
        w
    }

    fn actions(&self) -> Actions<'_> {
        Actions::new(&self.store, &self.layout)
    }

    async fn site(&self) -> Site {
        self.store.site(self.site).await.expect("the site")
    }

    async fn server(&self) -> Server {
        self.store.server(self.server).await.expect("the server")
    }

    async fn platform(&self, name: &str) -> Platform {
        self.store.platform_by_name(name).await.expect("the platform")
    }
}

fn php_runtime(name: Option<&str>, version: &str) -> PhpRuntime {
    PhpRuntime {
        name: name.map(String::from),
        version: version.into(),
        binary: format!("/usr/sbin/php-fpm{version}"),
        cli: Some(format!("/usr/bin/php{version}")),
        extensions: vec![],
    }
}

fn site_create(domain: &str) -> SiteCreate {
    SiteCreate {
        domain: domain.into(),
        platform: "d10".into(),
        aliases: vec![],
        www: false,
        db_engine: "sqlite".into(),
        db_server: None,
        php: None,
        profile: None,
        language: "en".into(),
        client: Some("acme".into()),
        redirect_aliases: false,
        https: "off".into(),
        cron_interval: 3600,
    }
}

/// What the daemon does with each runnable task, without running a step: claims it, plans it, and
/// finishes it succeeded with the plan's state changes. A backup's archive is an empty file, its size
/// and checksum filled in as the daemon fills them from the archive it wrote.
async fn run_queued(store: &Store, layout: &Layout) {
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    while let Some(task) = store.claim("test-daemon", 60_000).await.expect("claim") {
        let planned = planning::plan_task(store, layout, &task).await.expect("plan the claimed task");
        let mut changes = planned.on_success;
        for change in &mut changes {
            if let StateChange::BackupRecorded { path, size, checksum, .. } = change {
                std::fs::create_dir_all(Path::new(path).parent().expect("the backups dir"))
                    .expect("make the backups dir");
                std::fs::File::create(&*path).expect("write the archive");
                *size = 0;
                *checksum = EMPTY_SHA256.into();
            }
        }
        let done = store
            .finish(task.id, "test-daemon", TaskStatus::Succeeded, None, &changes, &[])
            .await
            .expect("finish the task");
        assert!(done, "task {} finished", task.id);
    }
}

/// Everything a request could write: the records, the backups and the queue.
#[derive(Debug, PartialEq)]
struct Recorded {
    servers: Vec<Server>,
    platforms: Vec<Platform>,
    sites: Vec<Site>,
    clients: Vec<Client>,
    backups: Vec<Backup>,
    tasks: Vec<Task>,
}

async fn recorded(store: &Store) -> Recorded {
    Recorded {
        servers: store.servers().await.expect("servers"),
        platforms: store.platforms().await.expect("platforms"),
        sites: store.sites(None).await.expect("sites"),
        clients: store.clients().await.expect("clients"),
        backups: store.backups(None).await.expect("backups"),
        tasks: store.tasks(&TaskFilter { limit: Some(10_000), ..Default::default() }).await.expect("tasks"),
    }
}

/// A request's time stamp (backups, deletes, migrates, restores, syncs), if its arguments carry one.
fn stamp_of(args: &Value) -> Option<String> {
    args.get("stamp").or_else(|| args.get("backup_stamp")).and_then(Value::as_str).map(String::from)
}

/// `v` with every occurrence of `from` inside its strings replaced by `to`.
fn replace_in(v: &Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(a) => Value::Array(a.iter().map(|x| replace_in(x, from, to)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), replace_in(x, from, to))).collect()),
        other => other.clone(),
    }
}

/// `v` with the stamp `from` replaced by `to`: the stamp itself (archive names, directories set aside)
/// and the time part planners name new databases by (`fjord_plan::moves::new_db_name`: its last nine
/// digits).
fn restamp(v: &Value, from: &str, to: &str) -> Value {
    let tail = |s: &str| {
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        digits[digits.len().saturating_sub(9)..].to_string()
    };
    replace_in(&replace_in(v, from, to), &tail(from), &tail(to))
}

/// Where two values first differ, for a readable failure.
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| match (x.get(k), y.get(k)) {
            (Some(p), Some(q)) => difference(p, q, &format!("{at}.{k}")),
            (p, q) => Some(format!("{at}.{k}: {p:?} vs {q:?}")),
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| difference(p, q, &format!("{at}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

/// Makes one request twice, as a dry run and for real, and checks the dry run wrote nothing and its
/// plan is the plan the daemon makes for the task the real run queued. `args` are the request's
/// arguments for each run, made the way a caller makes them (each stamped when it is made); `request`
/// makes the request with the given arguments (requests without any ignore them). The queued task is
/// cancelled after, so it blocks nothing.
async fn same_plan<F, Fut>(w: &World, what: &str, args: [Value; 2], request: F)
where
    F: Fn(Value, bool) -> Fut,
    Fut: Future<Output = ActionResult<Outcome>>,
{
    let [dry_args, real_args] = args;
    let stamps = (stamp_of(&dry_args), stamp_of(&real_args));
    if let (Some(dry), Some(real)) = &stamps {
        assert_ne!(dry, real, "{what}: the two runs' stamps differ, so their normalization is tested");
        assert_eq!(replace_in(&dry_args, dry, real), real_args, "{what}: the two runs make the same request");
    }
    let before = recorded(&w.store).await;
    let dry = match request(dry_args, true).await {
        Ok(Outcome::Planned(p)) => p,
        Ok(Outcome::Queued(t)) => panic!("{what}: the dry run queued task {}", t.id),
        Err(e) => panic!("{what}: the dry run was refused: {e}"),
    };
    assert_eq!(recorded(&w.store).await, before, "{what}: the dry run wrote to the state database");
    let task = match request(real_args, false).await {
        Ok(Outcome::Queued(t)) => t,
        Ok(Outcome::Planned(_)) => panic!("{what}: the real run only planned"),
        Err(e) => panic!("{what}: the real run was refused: {e}"),
    };
    let run = planning::plan_task(&w.store, &w.layout, &task).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    // The two runs are stamped when each is asked for, so their stamps may differ: the dry run's plan
    // is compared with its stamp replaced by the real run's wherever it occurs (archive names, paths,
    // database names).
    let dry = match &stamps {
        (Some(dry_stamp), Some(real_stamp)) => {
            let v = restamp(&serde_json::to_value(&dry).expect("a plan is JSON"), dry_stamp, real_stamp);
            serde_json::from_value::<Planned>(v).expect("the restamped plan")
        }
        _ => dry,
    };
    assert!(!run.plan.steps.is_empty() || !run.on_success.is_empty(), "{what}: an empty plan proves nothing");
    if dry != run {
        let (d, r) =
            (serde_json::to_value(&dry).expect("a plan is JSON"), serde_json::to_value(&run).expect("a plan is JSON"));
        panic!(
            "{what}: the dry run's plan is not the one the daemon runs for task {} (dry run vs daemon): {}",
            task.id,
            difference(&d, &r, "plan").unwrap_or_default()
        );
    }
    w.store.cancel(task.id).await.expect("cancel the task");
}

/// Makes a request the planner refuses, as a dry run and for real: both are refused and write nothing.
async fn refused<F, Fut>(w: &World, what: &str, request: F)
where
    F: Fn(bool) -> Fut,
    Fut: Future<Output = ActionResult<Outcome>>,
{
    let before = recorded(&w.store).await;
    for dry_run in [true, false] {
        match request(dry_run).await {
            Err(ActionError::Conflict(_)) => {}
            Err(e) => panic!("{what} (dry run {dry_run}): refused, but not by the planner: {e}"),
            Ok(_) => panic!("{what} (dry run {dry_run}): accepted"),
        }
        assert_eq!(
            recorded(&w.store).await,
            before,
            "{what} (dry run {dry_run}): a refusal wrote to the state database"
        );
    }
}

/// A request's arguments made twice, as a caller makes them for each run, a few milliseconds apart so
/// stamped ones always differ.
async fn twice<F, Fut>(make: F) -> [Value; 2]
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    let first = make().await;
    tick().await;
    [first, make().await]
}

/// Lets the clock move on, so a request made again gets another stamp.
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
}

fn none() -> [Value; 2] {
    [json!({}), json!({})]
}

async fn backends(dir: &Path) -> Vec<World> {
    let mut worlds = Vec::new();
    for (backend, store) in fjord_store::testing::all_backends(dir).await.expect("the backends") {
        worlds.push(World::build(backend, store, dir).await);
    }
    worlds
}

/// Plain site tasks, and those whose arguments carry a time stamp.
#[tokio::test]
async fn site_tasks_plan_as_their_dry_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    for w in backends(dir.path()).await {
        let a = &w.actions();
        let id = w.site.0;
        for (what, kind) in [
            ("site verify", TaskKind::SiteVerify),
            ("site enable", TaskKind::SiteEnable),
            ("site disable", TaskKind::SiteDisable),
            ("site login link", TaskKind::SiteLoginLink),
            ("site cron", TaskKind::SiteCron),
        ] {
            same_plan(&w, what, none(), move |args, dry| a.run(kind, id, args, BY, dry)).await;
        }

        let backup =
            twice(|| async { fjord_actions::backup_args(Compression::Zstd, fjord_core::BackupMethod::Auto) }).await;
        same_plan(&w, "site backup", backup, move |args, dry| a.run(TaskKind::SiteBackup, id, args, BY, dry)).await;

        let delete = twice(|| async { fjord_actions::delete_args(true, true) }).await;
        same_plan(&w, "site delete", delete, move |args, dry| a.run(TaskKind::SiteDelete, id, args, BY, dry)).await;

        let site = &w.site().await;
        let migrate =
            twice(|| async { a.migrate_args(site, "d10b", None, true, None).await.expect("migrate args") }).await;
        same_plan(&w, "site migrate", migrate, move |args, dry| a.run(TaskKind::SiteMigrate, id, args, BY, dry)).await;

        let rename = twice(|| async {
            a.migrate_args(site, "d10", Some("renamed.example.com"), true, None).await.expect("rename args")
        })
        .await;
        same_plan(&w, "site rename", rename, move |args, dry| a.run(TaskKind::SiteMigrate, id, args, BY, dry)).await;

        let source = &w.store.site(w.other_site).await.expect("site b");
        let req = &SyncRequest { from: source.domain.to_string(), db: true, files: true };
        let sync = twice(|| async { a.sync_args(source, site, req).await.expect("sync args") }).await;
        same_plan(&w, "site sync", sync, move |args, dry| a.run(TaskKind::SiteSync, id, args, BY, dry)).await;

        // A backup to restore: one that ran (its archive recorded the way the daemon records it).
        a.run(
            TaskKind::SiteBackup,
            id,
            fjord_actions::backup_args(Compression::Zstd, fjord_core::BackupMethod::Auto),
            BY,
            false,
        )
        .await
        .expect("queue a backup");
        run_queued(&w.store, &w.layout).await;
        let b = w.store.backups(Some(w.site)).await.expect("backups").remove(0).id;
        // The real run also fetches the archive back from offsite if it is gone (it is here).
        let dry_restore = a.restore_args_fetched(site, b, None, true).await.expect("restore args");
        tick().await;
        let restore = [dry_restore, a.restore_args_fetched(site, b, None, false).await.expect("restore args")];
        same_plan(&w, "site restore", restore, move |args, dry| a.run(TaskKind::SiteRestore, id, args, BY, dry)).await;
    }
}

/// Site settings: each records desired state and queues the task that applies it; the dry run plans
/// that task against the state with the change applied in memory.
#[tokio::test]
async fn site_settings_plan_as_their_dry_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    for w in backends(dir.path()).await {
        let a = &w.actions();

        let site = &w.site().await;
        let aliases =
            &[Domain::parse("www.a.example.com").expect("alias"), Domain::parse("a.example.org").expect("alias")];
        same_plan(&w, "site aliases", none(), move |_, dry| a.set_aliases(site, aliases, true, BY, dry)).await;

        let site = &w.site().await;
        let limits = &PhpLimitsChange {
            max_children: Some(9),
            memory_limit: Some("512M".into()),
            upload_max: Some("96M".into()),
            max_execution_time: Some(120),
        };
        same_plan(&w, "site PHP limits", none(), move |_, dry| a.set_php_limits(site, limits, dry, BY)).await;

        let site = &w.site().await;
        same_plan(&w, "site PHP runtime", none(), move |_, dry| a.set_php_runtime(site, "php83", dry, BY)).await;

        let site = &w.site().await;
        same_plan(&w, "site isolation", none(), move |_, dry| a.set_isolation(site, Isolation::Client, dry, BY)).await;

        let site = &w.site().await;
        let https = &HttpsChange { mode: "required".into(), hsts: Some(true), self_signed: true };
        same_plan(&w, "site HTTPS", none(), move |_, dry| a.set_https(site, https, None, dry, BY)).await;

        // HTTPS is on now (recorded by the real run above): a new certificate for it.
        let site = &w.site().await;
        assert_eq!(site.https, HttpsMode::Required);
        let cert = &CertChange { self_signed: true, ..Default::default() };
        same_plan(&w, "site certificate", none(), move |_, dry| async move {
            a.new_certificate(site, cert, None, dry, BY).await.map(|(outcome, _)| outcome)
        })
        .await;
    }
}

/// Server and platform tasks, and server services changed with the verify that applies them.
#[tokio::test]
async fn server_and_platform_tasks_plan_as_their_dry_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    for w in backends(dir.path()).await {
        let a = &w.actions();
        let server = w.server.0;
        same_plan(&w, "server verify", none(), move |args, dry| a.run(TaskKind::ServerVerify, server, args, BY, dry))
            .await;

        let d10 = w.platform("d10").await.id.0;
        same_plan(&w, "platform verify", none(), move |args, dry| a.run(TaskKind::PlatformVerify, d10, args, BY, dry))
            .await;
        // d10b has no sites.
        let d10b = w.platform("d10b").await.id.0;
        same_plan(&w, "platform remove", none(), move |args, dry| a.run(TaskKind::PlatformRemove, d10b, args, BY, dry))
            .await;

        let s = &w.server().await;
        let removed = &a.php_runtime_removed(s, "php83").await.expect("remove runtime php83");
        same_plan(&w, "PHP runtime removed", none(), move |args, dry| {
            a.set_services_and_verify(s, removed, args, BY, dry)
        })
        .await;

        let s = &w.server().await;
        let trust = RealIpSet { trust: vec!["10.0.0.0/8".into()], ..Default::default() };
        let real_ip = &a.real_ip_set(s, &trust).await.expect("trusted proxies");
        same_plan(&w, "trusted proxies", none(), move |args, dry| a.set_services_and_verify(s, real_ip, args, BY, dry))
            .await;

        let s = &w.server().await;
        let switch = WebSwitch { web: "apache".into() };
        let mut switched = Vec::new();
        for _ in 0..2 {
            switched.push(a.web_switch(s, &switch).await.expect("web switch"));
        }
        let services = &switched[0].0;
        assert_eq!(services, &switched[1].0);
        let args = [switched[0].1.clone(), switched[1].1.clone()];
        same_plan(&w, "web server switch", args, move |args, dry| {
            a.set_services_and_verify(s, services, args, BY, dry)
        })
        .await;

        // A server without platforms, verified, to remove.
        let new = NewServer {
            name: Name::parse("server", "spare").expect("server name"),
            hostname: "spare.example.com".into(),
            services: vec![],
        };
        let (spare, _) = w.store.add_server(&new, BY).await.expect("add the spare server");
        run_queued(&w.store, &w.layout).await;
        let spare = spare.id.0;
        same_plan(&w, "server remove", none(), move |args, dry| a.run(TaskKind::ServerRemove, spare, args, BY, dry))
            .await;
    }
}

/// Changes the planner refuses: an error, and nothing written (neither desired state nor a task).
#[tokio::test]
async fn refused_changes_write_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for w in backends(dir.path()).await {
        let a = &w.actions();
        let id = w.site.0;
        refused(&w, "deleting an enabled site without force", move |dry| {
            a.run(TaskKind::SiteDelete, id, fjord_actions::delete_args(false, true), BY, dry)
        })
        .await;

        // The server's sites run on its PHP runtimes: a record without any is refused by the verify
        // that would apply it, and the services stay as they were.
        let s = &w.server().await;
        let without_php = &s.services.iter().filter(|svc| !matches!(svc, Service::Php(_))).cloned().collect::<Vec<_>>();
        refused(&w, "a server without the PHP runtime its sites run on", move |dry| {
            a.set_services_and_verify(s, without_php, json!({}), BY, dry)
        })
        .await;
        assert_eq!(&w.server().await, s);

        // HTTPS stays off: a certificate for the site is refused.
        assert_eq!(w.site().await.https, HttpsMode::Off);
        refused(&w, "a certificate for a site with HTTPS off", move |dry| {
            a.run(TaskKind::SiteCert, id, json!({ "request": CertRequest::SelfSigned { days: 365 } }), BY, dry)
        })
        .await;

        let server = w.server.0;
        refused(&w, "removing a server with platforms", move |dry| {
            a.run(TaskKind::ServerRemove, server, json!({}), BY, dry)
        })
        .await;
    }
}
