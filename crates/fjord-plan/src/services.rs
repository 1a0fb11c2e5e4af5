//! The web server and PHP-FPM masters of a server: their config files, and the steps that check and
//! reload (or start) them.

use crate::render;
use crate::{Layout, PlanError, PlanResult};
use fjord_core::*;

fn nginx_binary(http: &HttpService) -> String {
    http.binary.clone().unwrap_or_else(|| "nginx".into())
}

/// The step that validates and reloads the server's web server. `watch`: the files whose change calls
/// for a reload (empty: always).
pub fn web_reload(layout: &Layout, server: &Server, watch: Vec<String>) -> PlanResult<Step> {
    let http = server.http().ok_or_else(|| PlanError::Refused(format!("server {} has no web server", server.name)))?;
    if http.kind == HttpKind::Apache {
        return apache_reload(layout, server, http, watch);
    }
    let bin = nginx_binary(http);
    let (conf_args, pidfile) = match http.mode {
        WebMode::Own => (vec!["-c".to_string(), layout.nginx_conf(server)], layout.nginx_pid(server)),
        WebMode::System => (vec![], "/run/nginx.pid".to_string()),
    };
    let with = |extra: &[&str]| {
        let mut argv = vec![bin.clone()];
        argv.extend(conf_args.iter().cloned());
        argv.extend(extra.iter().map(|s| s.to_string()));
        Command::new(argv).timeout(60)
    };
    Ok(Step::Service {
        service: format!("nginx:{}", server.name),
        check: Some(with(&["-t", "-q"])),
        start: with(&[]),
        reload: with(&["-s", "reload"]),
        pidfile,
        watch,
    })
}

fn apache_binary(http: &HttpService) -> String {
    http.binary.clone().unwrap_or_else(|| "/usr/sbin/apache2".into())
}

/// An `apache2` command on Fjord's own config. Everything it needs is in that config, so no
/// environment (Debian's `envvars`) is read.
fn apache_command(layout: &Layout, server: &Server, http: &HttpService, extra: &[&str]) -> Command {
    let mut argv = vec![apache_binary(http), "-f".into(), layout.apache_conf(server)];
    argv.extend(extra.iter().map(|s| s.to_string()));
    Command::new(argv).timeout(60)
}

/// Apache: `-t` validates (as `apachectl configtest` does), `-k graceful` reloads without dropping
/// a request, `-k start` starts the master when it is not running.
fn apache_reload(layout: &Layout, server: &Server, http: &HttpService, watch: Vec<String>) -> PlanResult<Step> {
    if http.mode != WebMode::Own {
        return Err(PlanError::Refused(format!(
            "server {}: Apache runs only as Fjord's own master (--http-mode own)",
            server.name
        )));
    }
    Ok(Step::Service {
        service: format!("apache:{}", server.name),
        check: Some(apache_command(layout, server, http, &["-t"])),
        start: apache_command(layout, server, http, &["-k", "start"]),
        reload: apache_command(layout, server, http, &["-k", "graceful"]),
        pidfile: layout.apache_pid(server),
        watch,
    })
}

/// The steps that hand a server's web from the master of `previous` to the current one: the new
/// config is checked first, the old master stopped (restarted by the undo), the new one started,
/// and only then (see `server_verify`) the old config removed. Nothing when the kind is the same.
pub fn web_switch(layout: &Layout, server: &Server, previous: HttpKind, plan: &mut Plan) -> PlanResult<()> {
    let Some(http) = server.http() else { return Ok(()) };
    if http.kind == previous {
        return Ok(());
    }
    let mut old = server.clone();
    for s in &mut old.services {
        if let Service::Http(h) = s {
            h.kind = previous;
            h.binary = None;
        }
    }
    let (Step::Service { check: Some(check), .. }, Step::Service { start: old_start, pidfile: old_pid, .. }) =
        (web_reload(layout, server, vec![])?, web_reload(layout, &old, vec![])?)
    else {
        return Err(PlanError::Refused("web server steps without a check".into()));
    };
    plan.push(Step::Run { label: format!("check the new {} config", http.kind), cmd: check, undo: None });
    plan.push(stop(&format!("the {previous} master"), &old_pid, previous == HttpKind::Apache, old_start));
    Ok(())
}

/// Stops Fjord's own masters of the server (web server first, so nothing is sent to a PHP-FPM that
/// is going; then every PHP runtime), each waited for until it is gone. A system web server
/// (`--http-mode system`) is not Fjord's to stop. A failure restarts what was stopped.
pub fn stop_masters(layout: &Layout, server: &Server) -> PlanResult<Planned> {
    let mut plan = Plan::default();
    if let Some(http) = server.http().filter(|h| h.mode == WebMode::Own) {
        if let Step::Service { start, pidfile, .. } = web_reload(layout, server, vec![])? {
            plan.push(stop(&format!("the {} master", http.kind), &pidfile, http.kind == HttpKind::Apache, start));
        }
    }
    for runtime in server.php_runtimes() {
        if let Step::Service { start, pidfile, .. } = php_reload(layout, server, runtime, vec![]) {
            plan.push(stop(&format!("the PHP-FPM {} master", runtime.key()), &pidfile, false, start));
        }
    }
    Ok(Planned { plan, ..Default::default() })
}

/// Starts Fjord's own masters of the server from the config a verify wrote (PHP-FPM first, so the
/// sites' sockets are there when the web server takes requests); one already running is reloaded.
/// After a reboot this is what brings the sites back.
pub fn start_masters(layout: &Layout, server: &Server) -> PlanResult<Planned> {
    let mut plan = Plan::default();
    for runtime in server.php_runtimes() {
        plan.push(php_reload(layout, server, runtime, vec![]));
    }
    if server.http().is_some() {
        plan.push(web_reload(layout, server, vec![])?);
    }
    Ok(Planned { plan, ..Default::default() })
}

/// Stops the master whose pid is in `pidfile` and waits until it is gone (its port free); one that is
/// not running is fine. nginx and PHP-FPM stop gracefully on QUIT; Apache's master would die of it and
/// leave its children holding the port: it stops (children first) on TERM.
fn stop(what: &str, pidfile: &str, apache: bool, start: Command) -> Step {
    Step::Run {
        label: format!("stop {what}"),
        cmd: Command::new([
            "start-stop-daemon",
            "--stop",
            "--oknodo",
            "--pidfile",
            pidfile,
            "--retry",
            if apache { "TERM/15/KILL/5" } else { "QUIT/15/TERM/5" },
        ])
        .timeout(60),
        undo: Some(start),
    }
}

/// Files and directories the server's web server needs (before any vhost).
pub fn web_files(layout: &Layout, server: &Server, plan: &mut Plan) -> PlanResult<Vec<String>> {
    let Some(http) = server.http() else { return Ok(vec![]) };
    if http.kind == HttpKind::Apache {
        return apache_files(layout, server, http, plan);
    }
    let mut watch = vec![layout.server_include(server)];
    plan.push(Step::MakeDir { path: layout.vhost_dir(server), mode: 0o755, owner: None });
    plan.push(Step::WriteFile {
        path: layout.server_include(server),
        content: FileContent::Text { text: render::server_include(layout, server)? },
        mode: 0o644,
        owner: None,
    });
    match http.mode {
        WebMode::Own => {
            for sub in ["client_body", "fastcgi", "proxy", "uwsgi", "scgi"] {
                plan.push(Step::MakeDir {
                    path: format!("{}/nginx-{}/{sub}", layout.run_dir(), server.name),
                    mode: 0o700,
                    owner: Some(layout.web_owner()),
                });
            }
            plan.push(Step::WriteFile {
                path: layout.nginx_conf(server),
                content: FileContent::Text { text: render::nginx_conf(layout, server, http)? },
                mode: 0o644,
                owner: None,
            });
            watch.push(layout.nginx_conf(server));
        }
        WebMode::System => {
            let include = format!(
                "# Managed by Fjord: sites of server {}.\ninclude {};\n",
                server.name,
                layout.server_include(server)
            );
            plan.push(Step::WriteFile {
                path: layout.system_nginx_include(server),
                content: FileContent::Text { text: include },
                mode: 0o644,
                owner: None,
            });
            watch.push(layout.system_nginx_include(server));
        }
    }
    Ok(watch)
}

/// The php CLI that goes with a runtime (for installers and scripts).
pub fn php_cli(runtime: &PhpRuntime) -> String {
    runtime.cli.clone().unwrap_or_else(|| format!("/usr/bin/php{}", runtime.version))
}

/// The step that validates and reloads one PHP-FPM master.
pub fn php_reload(layout: &Layout, server: &Server, runtime: &PhpRuntime, watch: Vec<String>) -> Step {
    let conf = layout.php_conf(server, runtime.key());
    let pid = layout.php_pid(server, runtime.key());
    Step::Service {
        service: format!("php-fpm:{}:{}", server.name, runtime.key()),
        check: Some(Command::new([runtime.binary.as_str(), "-t", "-y", conf.as_str()]).timeout(60)),
        start: Command::new([runtime.binary.as_str(), "-y", conf.as_str()]).timeout(60),
        // USR2 makes PHP-FPM re-read its config and restart workers gracefully.
        reload: Command::new(["kill".to_string(), "-USR2".to_string(), format!("{{pid:{pid}}}")]).timeout(30),
        pidfile: pid,
        watch,
    }
}

/// Files a PHP-FPM master needs.
pub fn php_files(layout: &Layout, server: &Server, runtime: &PhpRuntime, plan: &mut Plan) -> PlanResult<Vec<String>> {
    plan.push(Step::MakeDir { path: layout.php_pool_dir(server, runtime.key()), mode: 0o755, owner: None });
    let conf = layout.php_conf(server, runtime.key());
    plan.push(Step::WriteFile {
        path: conf.clone(),
        content: FileContent::Text { text: render::php_fpm_conf(layout, server, runtime)? },
        mode: 0o644,
        owner: None,
    });
    Ok(vec![conf])
}

fn apache_files(layout: &Layout, server: &Server, http: &HttpService, plan: &mut Plan) -> PlanResult<Vec<String>> {
    plan.push(Step::MakeDir { path: layout.vhost_dir(server), mode: 0o755, owner: None });
    plan.push(Step::MakeDir { path: layout.apache_run_dir(server), mode: 0o755, owner: None });
    plan.push(Step::WriteFile {
        path: layout.server_include(server),
        content: FileContent::Text { text: render::server_include(layout, server)? },
        mode: 0o644,
        owner: None,
    });
    plan.push(Step::WriteFile {
        path: layout.apache_conf(server),
        content: FileContent::Text { text: render::apache_conf(layout, server, http)? },
        mode: 0o644,
        owner: None,
    });
    Ok(vec![layout.server_include(server), layout.apache_conf(server)])
}
