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
    if http.kind != HttpKind::Nginx {
        return Err(PlanError::Refused(format!("web server {} is not supported yet", http.kind)));
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

/// Files and directories the server's web server needs (before any vhost).
pub fn web_files(layout: &Layout, server: &Server, plan: &mut Plan) -> PlanResult<Vec<String>> {
    let Some(http) = server.http() else { return Ok(vec![]) };
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
