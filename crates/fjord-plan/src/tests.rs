//! Planner tests: each scenario renders its whole plan (steps, files, state changes) into one snapshot.

use super::*;

fn server() -> Server {
    Server {
        id: ServerId(1),
        name: Name::parse("name", "web1").expect("valid"),
        hostname: "localhost".into(),
        services: vec![
            Service::Http(HttpService {
                kind: HttpKind::Nginx,
                mode: WebMode::Own,
                version: None,
                binary: None,
                listen: None,
                port: 8080,
                https_port: None,
                real_ip: None,
            }),
            Service::Db(DbService {
                engine: DbEngine::Mariadb,
                version: None,
                host: Some("127.0.0.1".into()),
                port: Some(3306),
                socket: Some("/run/mysqld/mysqld.sock".into()),
                admin_user: Some("root".into()),
                admin_password: false,
            }),
            Service::Php(PhpRuntime {
                name: None,
                version: "8.2".into(),
                binary: "/usr/sbin/php-fpm8.2".into(),
                cli: Some("/usr/bin/php8.2".into()),
                extensions: vec![],
            }),
        ],
        status: ObjectStatus::Enabled,
        created_at: 0,
        updated_at: 0,
    }
}

fn platform() -> Platform {
    Platform {
        id: PlatformId(2),
        name: Name::parse("name", "d10").expect("valid"),
        server_id: ServerId(1),
        root: "/srv/platforms/d10".into(),
        docroot: Some("web".into()),
        source: PlatformSource::Path,
        app: Some(AppKind::Drupal),
        app_version: Some("10.3.1".into()),
        locked: false,
        status: ObjectStatus::Enabled,
        verified_at: None,
        created_at: 0,
        updated_at: 0,
        details: PlatformDetails::default(),
    }
}

pub(crate) fn site(status: SiteStatus, aliases: &[&str], redirect: bool) -> Site {
    Site {
        id: SiteId(3),
        domain: Domain::parse("example.org").expect("valid"),
        platform_id: PlatformId(2),
        db_server_id: None,
        db_engine: DbEngine::Mariadb,
        db_name: "exampleorg".into(),
        db_user: "exampleorg".into(),
        php: None,
        profile: None,
        language: "en".into(),
        client_id: None,
        aliases: aliases.iter().map(|a| Domain::parse(a).expect("valid")).collect(),
        redirect_aliases: redirect,
        https: HttpsMode::Off,
        tls: Default::default(),
        status,
        cron_interval: None,
        last_cron_at: None,
        health_marker: None,
        php_limits: PhpLimits::default(),
        isolation: Isolation::Site,
        created_at: 0,
        updated_at: 0,
    }
}

fn snap(site: Option<Site>) -> Snapshot {
    Snapshot { platform: Some(platform()), site, ..Snapshot::of_server(server()) }
}

/// Renders a planned task as text: each step, file contents in full, then the state changes.
fn show(kind: TaskKind, args: serde_json::Value, snap: &Snapshot, facts: &Facts) -> String {
    let layout = Layout::new("/var/lib/fjord");
    match plan(&layout, kind, &args, snap, facts) {
        Err(e) => format!("refused: {e}\n"),
        Ok(p) => {
            let mut out = String::new();
            for step in &p.plan.steps {
                out.push_str(&format!("- {}\n", step.describe()));
                match step {
                    Step::WriteFile { content: FileContent::Text { text }, .. } => {
                        for line in text.lines() {
                            out.push_str(&format!("    | {line}\n"));
                        }
                    }
                    Step::Run { cmd, .. } | Step::RunOnce { cmd, .. } => {
                        let undo = match step {
                            Step::Run { undo, .. } | Step::RunOnce { undo, .. } => undo.as_ref(),
                            _ => None,
                        };
                        for line in cmd.stdin.iter().chain(cmd.files.iter().map(|f| &f.content)).flat_map(|t| t.lines())
                        {
                            out.push_str(&format!("    < {line}\n"));
                        }
                        if let Some(u) = undo {
                            out.push_str(&format!("    undo: {}\n", fjord_core::plan::shell_words(&u.argv)));
                        }
                    }
                    _ => {}
                }
            }
            out.push_str(&format!("on success: {:?}\non failure: {:?}\n", p.on_success, p.on_failure));
            out
        }
    }
}

#[test]
fn server_verify() {
    insta::assert_snapshot!(show(TaskKind::ServerVerify, serde_json::json!({}), &snap(None), &Facts::default()));
}

#[test]
fn site_install_with_aliases() {
    let s = snap(Some(site(SiteStatus::Queued, &["www.example.org", "example.net"], false)));
    insta::assert_snapshot!(show(TaskKind::SiteInstall, serde_json::json!({}), &s, &Facts::default()));
}

#[test]
fn site_aliases_redirected() {
    let s = snap(Some(site(SiteStatus::Enabled, &["www.example.org"], true)));
    insta::assert_snapshot!(show(TaskKind::SiteVerify, serde_json::json!({}), &s, &Facts::default()));
}

#[test]
fn site_disable() {
    let s = snap(Some(site(SiteStatus::Enabled, &[], false)));
    insta::assert_snapshot!(show(TaskKind::SiteDisable, serde_json::json!({}), &s, &Facts::default()));
}

#[test]
fn verify_keeps_a_disabled_site_disabled() {
    let s = snap(Some(site(SiteStatus::Disabled, &[], false)));
    let text = show(TaskKind::SiteVerify, serde_json::json!({}), &s, &Facts::default());
    assert!(text.contains("return 503") && text.contains("status: Disabled"), "{text}");
}

#[test]
fn delete_needs_disable_or_force() {
    let enabled = snap(Some(site(SiteStatus::Enabled, &[], false)));
    assert!(show(TaskKind::SiteDelete, serde_json::json!({}), &enabled, &Facts::default())
        .starts_with("refused: site example.org is enabled"));
    insta::assert_snapshot!(show(
        TaskKind::SiteDelete,
        serde_json::json!({"force": true}),
        &enabled,
        &Facts::default()
    ));
    let bad = show(TaskKind::SiteDelete, serde_json::json!({"forse": true}), &enabled, &Facts::default());
    assert!(bad.contains("unknown field"), "{bad}");
}

#[test]
fn platform_verify_and_remove() {
    let facts = Facts { root_exists: false, ..Facts::default() };
    insta::assert_snapshot!(show(TaskKind::PlatformVerify, serde_json::json!({}), &snap(None), &facts));
    let mut s = snap(None);
    s.sites.push(site(SiteStatus::Enabled, &[], false));
    assert!(show(TaskKind::PlatformRemove, serde_json::json!({}), &s, &facts).contains("still has 1 site(s)"));
}

#[test]
fn php_constraints() {
    for (c, v, want) in [
        (">=8.1", "8.2", Some(true)),
        (">=8.3", "8.2", Some(false)),
        ("^8.1", "8.2", Some(true)),
        ("^7.4 || ^8.0", "8.2", Some(true)),
        (">=7.4 <8.2", "8.2", Some(false)),
        ("~8.2.0", "8.2", Some(true)),
        ("8.*", "8.2", Some(true)),
        ("dev-main", "8.2", None),
    ] {
        assert_eq!(php_satisfies(c, v), want, "{c} vs {v}");
    }
}

#[test]
fn an_incomplete_vendor_fails_platform_verify_naming_the_packages() {
    let facts = Facts {
        root_exists: true,
        composer_json: true,
        vendor: true,
        app: Some(AppKind::Drupal),
        docroot: Some("web".into()),
        missing_packages: vec!["symfony/console (no vendor/symfony/console)".into()],
        ..Facts::default()
    };
    let text = show(TaskKind::PlatformVerify, serde_json::json!({}), &snap(None), &facts);
    assert!(
        text.contains("vendor/ is incomplete") && text.contains("symfony/console (no vendor/symfony/console)"),
        "{text}"
    );
}

fn needs_php(constraint: &str, extensions: &[&str]) -> PlatformDetails {
    PlatformDetails {
        php_requirements: vec![PhpRequirement { source: "core/composer.json".into(), constraint: constraint.into() }],
        php_extensions: extensions.iter().map(|e| e.to_string()).collect(),
        ..PlatformDetails::default()
    }
}

#[test]
fn verify_records_which_runtimes_can_run_the_code() {
    let mut s = snap(None);
    s.server.services.push(Service::Php(PhpRuntime {
        name: Some("php83".into()),
        version: "8.3".into(),
        binary: "/usr/sbin/php-fpm8.3".into(),
        cli: None,
        extensions: vec!["gd".into(), "Zend OPcache".into()],
    }));
    let facts = Facts { root_exists: true, details: needs_php(">=8.3", &["gd", "zend-opcache"]), ..Facts::default() };
    let planned = plan(&Layout::new("/var/lib/fjord"), TaskKind::PlatformVerify, &serde_json::json!({}), &s, &facts)
        .expect("planned");
    let Some(StateChange::PlatformVerified { details, .. }) = planned.on_success.first() else { panic!("verified") };
    assert_eq!(details.php_runtimes, ["php83"]);
    assert_eq!(details.php_ok, Some(true));
    // An extension no runtime has: none fits.
    let facts = Facts { details: needs_php(">=8.3", &["gd", "sodium"]), ..facts };
    let planned = plan(&Layout::new("/var/lib/fjord"), TaskKind::PlatformVerify, &serde_json::json!({}), &s, &facts)
        .expect("planned");
    let Some(StateChange::PlatformVerified { details, .. }) = planned.on_success.first() else { panic!("verified") };
    assert!(details.php_runtimes.is_empty());
    assert_eq!(details.php_ok, Some(false));
}

#[test]
fn a_site_is_not_installed_on_a_runtime_the_code_cannot_run_on() {
    let mut s = snap(Some(site(SiteStatus::Queued, &[], false)));
    s.platform.as_mut().expect("platform").details = needs_php(">=8.3", &[]);
    let text = show(TaskKind::SiteInstall, serde_json::json!({}), &s, &Facts::default());
    assert!(
        text.starts_with("refused: example.org: platform d10 cannot run on PHP runtime 8.2: PHP 8.2 does not satisfy >=8.3 (core/composer.json)")
            && text.contains("fjord server php add web1"),
        "{text}"
    );
    s.server.services.push(Service::Php(PhpRuntime {
        name: Some("php83".into()),
        version: "8.3".into(),
        binary: "/usr/sbin/php-fpm8.3".into(),
        cli: None,
        extensions: vec![],
    }));
    let text = show(TaskKind::SiteInstall, serde_json::json!({}), &s, &Facts::default());
    assert!(text.contains("choose a runtime that can (--php): php83 (PHP 8.3)"), "{text}");
    s.site.as_mut().expect("site").php = Some("php83".into());
    let text = show(TaskKind::SiteInstall, serde_json::json!({}), &s, &Facts::default());
    assert!(!text.starts_with("refused"), "{text}");
}

fn on_apache(mut s: Snapshot) -> Snapshot {
    for svc in &mut s.server.services {
        if let Service::Http(h) = svc {
            h.kind = HttpKind::Apache;
            h.real_ip = Some(RealIp {
                header: RealIpHeader::XForwardedFor,
                cloudflare: false,
                cloudflare_ranges: vec![],
                ranges: vec!["192.0.2.0/24".into()],
            });
        }
    }
    s
}

#[test]
fn apache_site_install_with_aliases_redirected() {
    let s = on_apache(snap(Some(site(SiteStatus::Queued, &["www.example.org", "example.net"], true))));
    insta::assert_snapshot!(show(TaskKind::SiteInstall, serde_json::json!({}), &s, &Facts::default()));
}

#[test]
fn apache_server_verify_switching_from_nginx_with_a_disabled_site() {
    let mut s = on_apache(snap(Some(site(SiteStatus::Disabled, &[], false))));
    s.sites = s.site.iter().cloned().collect();
    s.platforms = s.platform.iter().cloned().collect();
    let out = show(TaskKind::ServerVerify, serde_json::json!({ "previous_web": "nginx" }), &s, &Facts::default());
    insta::assert_snapshot!(out);
}

/// A restore leaves the replaced data in place and queues its archiving; that task archives the set-aside
/// directories and old database first, removes them only after, and never touches the live database.
#[test]
fn restore_hands_the_replaced_data_to_an_archive_task() {
    let mut live = site(SiteStatus::Enabled, &[], false);
    live.db_engine = DbEngine::Sqlite;
    let s = snap(Some(live));
    let args = serde_json::json!({
        "archive": "/var/lib/fjord/backups/example.org/example.org-1.tar.zst",
        "sha256": "a".repeat(64),
        "stamp": "20261126-1",
    });
    let layout = Layout::new("/var/lib/fjord");
    let restore = plan(&layout, TaskKind::SiteRestore, &args, &s, &Facts::default()).expect("plans");
    for step in &restore.plan.steps {
        let removes_old = matches!(step, Step::RemovePath { path } if !path.contains("/restore-example.org-"));
        let drops = matches!(step, Step::Run { label, .. } if label.contains("drop"));
        assert!(!removes_old && !drops && !matches!(step, Step::Backup { .. }), "{step:?}");
    }
    let follow_up = StateChange::FollowUp {
        kind: TaskKind::SiteArchiveReplaced,
        target: 3,
        args: serde_json::json!({"stamp": "20261126-1", "db_name": "exampleorg"}),
    };
    assert!(restore.on_success.contains(&follow_up), "{:?}", restore.on_success);

    let live_db = show(
        TaskKind::SiteArchiveReplaced,
        serde_json::json!({"stamp": "20261126-1", "db_name": "exampleorg"}),
        &s,
        &Facts::default(),
    );
    assert!(live_db.starts_with("refused: database \"exampleorg\" is the one"), "{live_db}");
    let bad = show(
        TaskKind::SiteArchiveReplaced,
        serde_json::json!({"stamp": "../x", "db_name": "old"}),
        &s,
        &Facts::default(),
    );
    assert!(bad.starts_with("refused") || bad.contains("bad stamp"), "{bad}");

    let args = serde_json::json!({"stamp": "20261126-1", "db_name": "exampleorg_old"});
    let planned = plan(&layout, TaskKind::SiteArchiveReplaced, &args, &s, &Facts::default()).expect("plans");
    let steps = &planned.plan.steps;
    let backup = steps.iter().position(|st| matches!(st, Step::Backup { .. })).expect("a backup step");
    let Step::Backup { trees, .. } = &steps[backup] else { unreachable!() };
    let aside: Vec<&str> = trees.iter().filter(|t| t.name.contains('/')).map(|t| t.path.as_str()).collect();
    assert!(aside.iter().all(|p| p.contains(".before-restore-20261126-1")) && aside.len() == 2, "{aside:?}");
    let removed: Vec<(usize, &str)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, st)| match st {
            Step::RemovePath { path } => Some((i, path.as_str())),
            _ => None,
        })
        .collect();
    assert!(removed.iter().all(|(i, _)| *i > backup), "removed before archived: {steps:?}");
    assert!(removed.iter().any(|(_, p)| p.ends_with("exampleorg_old.sqlite")), "{removed:?}");
    assert!(
        matches!(&planned.on_success[..], [StateChange::BackupRecorded { kind: BackupKind::PreRestore, .. }]),
        "{:?}",
        planned.on_success
    );
}

/// A Drupal site's backup leaves its cache bins' rows out: on MariaDB the executor lists the tables
/// and names each bin to `mariadb-dump`; SQLite's dump cannot, and other apps have no bins.
#[test]
fn backups_leave_out_drupal_cache_rows() {
    let layout = Layout::new("/var/lib/fjord");
    let args = serde_json::json!({"kind": "manual", "stamp": "20261127-1"});
    let cache_tables_of = |s: &Snapshot| {
        let planned = plan(&layout, TaskKind::SiteBackup, &args, s, &Facts::default()).expect("plans");
        planned.plan.steps.iter().find_map(|st| match st {
            Step::Backup { cache_tables, .. } => Some(cache_tables.clone()),
            _ => None,
        })
    };
    let mariadb = cache_tables_of(&snap(Some(site(SiteStatus::Enabled, &[], false))))
        .expect("a backup step")
        .expect("cache tables");
    assert_eq!(mariadb.patterns, ["cache", "cache_*"]);
    assert_eq!(mariadb.skip_arg, "--ignore-table-data=exampleorg.");
    assert_eq!(mariadb.list.as_ref().expect("a table list").stdin.as_deref(), Some("SHOW TABLES;\n"));
    assert!(mariadb.matches("cache_render") && mariadb.matches("cache") && !mariadb.matches("cachetags"));
    assert!(!mariadb.matches("node_cache") && !mariadb.matches("node"));

    let mut sqlite = site(SiteStatus::Enabled, &[], false);
    sqlite.db_engine = DbEngine::Sqlite;
    assert_eq!(cache_tables_of(&snap(Some(sqlite))), Some(None));
    let mut s = snap(Some(site(SiteStatus::Enabled, &[], false)));
    s.platform.as_mut().expect("platform").app = Some(AppKind::Wordpress);
    assert_eq!(cache_tables_of(&s), Some(None));
}

/// A delete archives what a restore replaced and its failed follow-up left, as that task would have,
/// and drops the old database only past the commit mark, with the site's own.
#[test]
fn a_delete_archives_replaced_data_a_failed_follow_up_left() {
    let mut s = snap(Some(site(SiteStatus::Disabled, &[], false)));
    s.site.as_mut().expect("site").db_name = "exampleorg_r1".into();
    let layout = Layout::new("/var/lib/fjord");
    let replaced = ArchiveReplacedArgs { stamp: "20261127-1".into(), db_name: "exampleorg".into() };
    let facts = Facts { unarchived_replaced: vec![replaced], ..Default::default() };
    let args = serde_json::json!({"backup_stamp": "20261127-2"});
    let planned = plan(&layout, TaskKind::SiteDelete, &args, &s, &facts).expect("plans");
    let steps = &planned.plan.steps;
    let commit =
        steps.iter().position(|st| matches!(st, Step::Mark { name: fjord_core::plan::Mark::Commit })).expect("commit");
    let archives: Vec<usize> =
        steps.iter().enumerate().filter_map(|(i, st)| matches!(st, Step::Backup { .. }).then_some(i)).collect();
    assert_eq!(archives.len(), 2, "the pre-delete and the pre-restore backups: {steps:?}");
    assert!(archives.iter().all(|i| *i < commit), "{steps:?}");
    let drops: Vec<(usize, &str)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, st)| match st {
            Step::Run { label, .. } if label.contains("drop") => Some((i, label.as_str())),
            _ => None,
        })
        .collect();
    assert!(drops.iter().all(|(i, _)| *i > commit), "{drops:?}");
    assert!(drops.iter().any(|(_, l)| l.contains("exampleorg") && !l.contains("exampleorg_r1")), "{drops:?}");
    let kinds: Vec<BackupKind> = planned
        .on_success
        .iter()
        .filter_map(|c| match c {
            StateChange::BackupRecorded { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [BackupKind::PreDelete, BackupKind::PreRestore]);

    // Without such data, the delete is as before: one backup.
    let planned = plan(&layout, TaskKind::SiteDelete, &args, &s, &Facts::default()).expect("plans");
    assert_eq!(planned.plan.steps.iter().filter(|st| matches!(st, Step::Backup { .. })).count(), 1);
}

#[test]
fn a_desired_change_reaches_every_copy_of_its_site_in_a_snapshot() {
    use fjord_core::desired::DesiredChange;
    let site = site(SiteStatus::Enabled, &[], false);
    let mut s = snap(Some(site.clone()));
    s.sites = vec![site.clone()];
    DesiredChange::SitePhp { site: site.id, runtime: Some("8.3".into()) }.apply(&mut s);
    assert_eq!(s.site.as_ref().and_then(|x| x.php.as_deref()), Some("8.3"));
    assert_eq!(s.sites[0].php.as_deref(), Some("8.3"));
    DesiredChange::SitePhp { site: SiteId(site.id.0 + 1), runtime: None }.apply(&mut s);
    assert_eq!(s.sites[0].php.as_deref(), Some("8.3"), "another site's change leaves this one alone");
}

/// A site migrate from `d10` to a second Drupal 10 platform with `args` and `facts`: its steps, and
/// the database name it records.
fn migrate(args: serde_json::Value, facts: &Facts) -> (Vec<String>, String) {
    let layout = Layout::new("/var/lib/fjord");
    let target = Platform {
        id: PlatformId(5),
        name: Name::parse("name", "d10b").expect("valid"),
        root: "/srv/platforms/d10b".into(),
        ..platform()
    };
    let s = Snapshot { other_platform: Some(target), ..snap(Some(site(SiteStatus::Enabled, &[], false))) };
    let mut args = args;
    args["stamp"] = "20260101-101010-001".into();
    let planned = plan(&layout, TaskKind::SiteMigrate, &args, &s, facts).expect("plans");
    let db_name = planned
        .on_success
        .iter()
        .find_map(|c| match c {
            StateChange::SiteMoved { db_name, platform, .. } if *platform == PlatformId(5) => Some(db_name.clone()),
            _ => None,
        })
        .expect("the site moves");
    (planned.plan.steps.iter().map(|s| s.describe()).collect(), db_name)
}

#[test]
fn a_code_move_without_pending_updates_switches_live() {
    let none_pending = Facts { migrate_pending: Some(vec![]), ..Default::default() };
    let (steps, db_name) = migrate(serde_json::json!({ "to_platform": 5 }), &none_pending);
    let text = steps.join("\n");
    insta::assert_snapshot!(text);
    // No window and no copy: the database is the site's own, untouched.
    assert!(!text.contains("maintenance-start") && text.contains("mark no-maintenance"), "{text}");
    assert!(!text.contains("copy the database") && !text.contains("updatedb"), "{text}");
    assert_eq!(db_name, "exampleorg");
    let at = |needle: &str| steps.iter().position(|s| s.contains(needle)).unwrap_or_else(|| panic!("{needle}"));
    // The guard first; the pool opened to both codes before the switch, closed after it.
    assert!(at("no database updates pending") < at("pre-migrate"));
    assert!(at("reload php-fpm") < at("mark no-maintenance") && at("mark no-maintenance") < at("reload nginx"));
    assert!(at("rebuild caches for the new code") < at("mark commit"));

    // Pending updates, an unknown answer, a rename, a database move or the window asked for: the
    // maintenance window, a new database.
    let pending =
        Facts { migrate_pending: Some(vec!["system: updates after 8805 up to 10100".into()]), ..Default::default() };
    for (args, facts) in [
        (serde_json::json!({ "to_platform": 5 }), &pending),
        (serde_json::json!({ "to_platform": 5 }), &Facts::default()),
        (serde_json::json!({ "to_platform": 5, "domain": "new.example.org" }), &none_pending),
        (serde_json::json!({ "to_platform": 5, "maintenance": true }), &none_pending),
    ] {
        let (steps, db_name) = migrate(args.clone(), facts);
        let text = steps.join("\n");
        assert!(text.contains("mark maintenance-start") && text.contains("updatedb"), "{args}: {text}");
        assert_ne!(db_name, "exampleorg", "{args}");
    }
}
