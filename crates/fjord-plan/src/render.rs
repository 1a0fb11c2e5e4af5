//! Rendering config files from the embedded templates. Template names are constants; every template
//! is parsed once, at first use.

use crate::apps::SiteCtx;
use crate::{Layout, PlanError, PlanResult};
use fjord_core::{CertSource, HttpKind, HttpService, HttpsMode, PhpRuntime, Platform, RealIpHeader, Server, Site};
use minijinja::{context, Environment, Value};
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    ("nginx/server.conf.j2", include_str!("../templates/nginx/server.conf.j2")),
    ("nginx/nginx.conf.j2", include_str!("../templates/nginx/nginx.conf.j2")),
    ("nginx/vhost.conf.j2", include_str!("../templates/nginx/vhost.conf.j2")),
    ("nginx/site-disabled.html.j2", include_str!("../templates/nginx/site-disabled.html.j2")),
    ("nginx/site-maintenance.html.j2", include_str!("../templates/nginx/site-maintenance.html.j2")),
    ("apache/apache2.conf.j2", include_str!("../templates/apache/apache2.conf.j2")),
    ("apache/server.conf.j2", include_str!("../templates/apache/server.conf.j2")),
    ("apache/vhost.conf.j2", include_str!("../templates/apache/vhost.conf.j2")),
    ("php/php-fpm.conf.j2", include_str!("../templates/php/php-fpm.conf.j2")),
    ("php/pool.conf.j2", include_str!("../templates/php/pool.conf.j2")),
    ("apps/drupal.settings.php.j2", include_str!("../templates/apps/drupal.settings.php.j2")),
    ("apps/drupal7-install.php.j2", include_str!("../templates/apps/drupal7-install.php.j2")),
    ("apps/drupal7-script.php.j2", include_str!("../templates/apps/drupal7-script.php.j2")),
    ("apps/wordpress.config.php.j2", include_str!("../templates/apps/wordpress.config.php.j2")),
    ("apps/wordpress-script.php.j2", include_str!("../templates/apps/wordpress-script.php.j2")),
    ("apps/wordpress-login.php.j2", include_str!("../templates/apps/wordpress-login.php.j2")),
    ("apps/wordpress-uploads.php.j2", include_str!("../templates/apps/wordpress-uploads.php.j2")),
    ("apps/schema-check.php.j2", include_str!("../templates/apps/schema-check.php.j2")),
];

/// The keys WordPress expects in its config, each a random secret.
pub const WP_SALT_KEYS: &[&str] = &[
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).expect("embedded templates parse");
        }
        env
    })
}

fn render(name: &str, ctx: Value) -> PlanResult<String> {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|source| PlanError::Template { name: name.into(), source })
}

pub(crate) fn server_include(layout: &Layout, server: &Server) -> PlanResult<String> {
    let name = match server.http().map(|h| h.kind) {
        Some(HttpKind::Apache) => "apache/server.conf.j2",
        _ => "nginx/server.conf.j2",
    };
    // Only proxies that are named are trusted: an empty list trusts nobody, so no directive at all.
    let real_ip = server.http().and_then(|h| h.real_ip.as_ref()).filter(|r| !r.trusted().is_empty()).map(|r| {
        context! {
            header => r.header.as_str(),
            ranges => r.trusted(),
            recursive => r.header == RealIpHeader::XForwardedFor,
        }
    });
    render(name, context! { server => server.name.as_str(), vhost_dir => layout.vhost_dir(server), real_ip })
}

fn listen(http: &HttpService) -> String {
    match &http.listen {
        Some(addr) => format!("{addr}:{}", http.port),
        None => http.port.to_string(),
    }
}

pub(crate) fn nginx_conf(layout: &Layout, server: &Server, http: &HttpService) -> PlanResult<String> {
    render(
        "nginx/nginx.conf.j2",
        context! {
            server => server.name.as_str(),
            web_user => layout.web_user,
            pid => layout.nginx_pid(server),
            log_dir => layout.log_dir(),
            run_dir => layout.run_dir(),
            listen => listen(http),
            include => layout.server_include(server),
        },
    )
}

/// Where Debian's Apache keeps its modules.
const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

pub(crate) fn apache_conf(layout: &Layout, server: &Server, http: &HttpService) -> PlanResult<String> {
    render(
        "apache/apache2.conf.j2",
        context! {
            server => server.name.as_str(),
            web_user => layout.web_user,
            pid => layout.apache_pid(server),
            apache_run_dir => layout.apache_run_dir(server),
            log_dir => layout.log_dir(),
            modules => APACHE_MODULES,
            listen => listen(http),
            port => http.port,
            include => layout.server_include(server),
        },
    )
}

pub(crate) fn site_disabled_page() -> PlanResult<String> {
    render("nginx/site-disabled.html.j2", context! {})
}

pub(crate) fn site_maintenance_page() -> PlanResult<String> {
    render("nginx/site-maintenance.html.j2", context! {})
}

/// What a vhost does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Passes them to the site's PHP.
    Live,
    /// Answers 503 with the "site disabled" page.
    Disabled,
    /// Answers 503 with the "under maintenance" page and a Retry-After (during a migrate).
    Maintenance,
}

pub(crate) fn php_fpm_conf(layout: &Layout, server: &Server, runtime: &PhpRuntime) -> PlanResult<String> {
    render(
        "php/php-fpm.conf.j2",
        context! {
            server => server.name.as_str(),
            version => runtime.key(),
            pid => layout.php_pid(server, runtime.key()),
            log_dir => layout.log_dir(),
            run_dir => layout.run_dir(),
            web_user => layout.web_user,
            pool_dir => layout.php_pool_dir(server, runtime.key()),
        },
    )
}

/// A site's pool; `open_basedir` empty: none (shared isolation).
pub(crate) fn php_pool(layout: &Layout, site: &Site, open_basedir: &[String]) -> PlanResult<String> {
    render(
        "php/pool.conf.j2",
        context! {
            domain => site.domain.as_str(),
            user => layout.php_user(site),
            open_basedir => open_basedir.join(":"),
            web_user => layout.web_user,
            socket => layout.php_socket(site),
            site_dir => layout.site_dir(site),
            error_log => layout.php_error_log(site),
            max_children => site.php_limits.max_children,
            memory_limit => site.php_limits.memory_limit,
            upload_max => site.php_limits.upload_max,
            max_execution_time => site.php_limits.max_execution_time,
        },
    )
}

pub(crate) fn vhost(
    layout: &Layout,
    server: &Server,
    platform: &Platform,
    site: &Site,
    flavour: &str,
    serving: Serving,
) -> PlanResult<String> {
    let http = server.http().ok_or_else(|| PlanError::Refused(format!("server {} has no web server", server.name)))?;
    let aliases: Vec<&str> = site.aliases.iter().map(|a| a.as_str()).collect();
    let names: Vec<&str> = if site.redirect_aliases {
        vec![site.domain.as_str()]
    } else {
        site.all_domains().map(|d| d.as_str()).collect()
    };
    let all_names: Vec<&str> = site.all_domains().map(|d| d.as_str()).collect();
    // HTTPS is served once a certificate is installed; `required` redirects only then.
    let tls = site.https != HttpsMode::Off && site.tls.installed();
    let required = tls && site.https == HttpsMode::Required;
    let https_port = http.https_port.unwrap_or(443);
    let https_suffix = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let http_host = if http.port == 80 { site.domain.to_string() } else { format!("{}:{}", site.domain, http.port) };
    let tls_host = format!("{}{https_suffix}", site.domain);
    let listen_tls = match &http.listen {
        Some(addr) => format!("{addr}:{https_port}"),
        None => https_port.to_string(),
    };
    if http.kind == HttpKind::Apache {
        let page = match serving {
            Serving::Maintenance => "fjord-site-maintenance.html",
            _ => "fjord-site-disabled.html",
        };
        return render(
            "apache/vhost.conf.j2",
            context! {
                site => context! { domain => site.domain.as_str() },
                platform => context! { name => platform.name.as_str() },
                port => http.port,
                https_port,
                // Apache refuses a second `Listen` of the same address: the first HTTPS vhost read
                // declares it, the others see the definition and skip it (reset at every reload).
                listen_tls_once => format!(
                    "<IfDefine !FjordListenTls{https_port}>\n    Define FjordListenTls{https_port}\n    Listen {listen_tls}\n</IfDefine>"
                ),
                names,
                all_names,
                aliases,
                redirect_aliases => site.redirect_aliases && !site.aliases.is_empty(),
                docroot => layout.docroot(platform),
                uploads_dir => format!("{}/uploads", layout.site_dir(site)),
                flavour,
                disabled => serving != Serving::Live,
                maintenance => serving == Serving::Maintenance,
                page,
                acme_dir => layout.acme_dir(),
                static_dir => layout.static_dir(),
                php_socket => layout.php_socket(site),
                tls,
                required,
                tls_dir => layout.tls_dir(site),
                hsts => site.tls.hsts,
                stapling => site.tls.source == CertSource::Acme,
                https_suffix,
                redirect_host_tls => tls_host.clone(),
                // The plain-HTTP vhost of the aliases: to the main domain, over HTTPS once required.
                redirect_target => if required { format!("https://{tls_host}") } else { format!("http://{http_host}") },
            },
        );
    }
    render(
        "nginx/vhost.conf.j2",
        context! {
            site => context! { domain => site.domain.as_str() },
            platform => context! { name => platform.name.as_str() },
            listen => listen(http),
            listen_tls,
            names,
            all_names,
            aliases,
            redirect_aliases => site.redirect_aliases && !site.aliases.is_empty(),
            docroot => layout.docroot(platform),
            uploads_dir => format!("{}/uploads", layout.site_dir(site)),
            flavour,
            disabled => serving != Serving::Live,
            maintenance => serving == Serving::Maintenance,
            acme_dir => layout.acme_dir(),
            static_dir => layout.static_dir(),
            fastcgi_pass => format!("unix:{}", layout.php_socket(site)),
            host_var => if http.port == 80 && https_port == 443 { "$host" } else { "$host:$server_port" },
            tls,
            required,
            tls_dir => layout.tls_dir(site),
            hsts => site.tls.hsts,
            // Stapling needs the CA's OCSP responder; self-signed and uploaded certificates have none
            // Fjord can count on.
            stapling => site.tls.source == CertSource::Acme,
            http2_in_listen => !nginx_at_least(http.version.as_deref(), (1, 25, 1)),
            https_suffix,
            redirect_host_tls => tls_host.clone(),
            redirect_target => if required {
                format!("https://{tls_host}")
            } else if tls {
                format!("http://{http_host}")
            } else {
                format!("$scheme://{http_host}")
            },
        },
    )
}

/// Whether an nginx version string (`1.22.1`, `nginx/1.25.3`) is at least `want`; unknown: no.
fn nginx_at_least(version: Option<&str>, want: (u32, u32, u32)) -> bool {
    let Some(v) = version else { return false };
    let v = v.rsplit('/').next().unwrap_or(v);
    let mut parts = v.split('.').map(|p| p.trim().parse::<u32>().unwrap_or(0));
    let got = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    got >= want
}

fn db_value(ctx: &SiteCtx, namespaced: bool) -> Value {
    let d = &ctx.db;
    // Drupal 10+ keeps its database drivers in core modules and wants them named.
    let (namespace, autoload) = if namespaced {
        (
            format!("Drupal\\\\{0}\\\\Driver\\\\Database\\\\{0}", d.driver),
            format!("core/modules/{0}/src/Driver/Database/{0}/", d.driver),
        )
    } else {
        (String::new(), String::new())
    };
    context! {
        driver => d.driver, database => d.database, username => d.username, password => d.password,
        host => d.host, port => d.port, namespace, autoload,
    }
}

/// Host patterns Drupal accepts: the domain and its aliases, anchored and escaped.
fn trusted_hosts(site: &Site) -> Vec<String> {
    site.all_domains().map(|d| format!("^{}$", d.as_str().replace('.', "\\."))).collect()
}

pub(crate) fn drupal_settings(ctx: &SiteCtx, drupal7: bool, hash_salt: &str) -> PlanResult<String> {
    let major: u32 = ctx.platform.app_version.as_deref().and_then(|v| v.split('.').next()?.parse().ok()).unwrap_or(10);
    render(
        "apps/drupal.settings.php.j2",
        context! {
            domain => ctx.site.domain.as_str(),
            db => db_value(ctx, !drupal7 && major >= 10),
            drupal7,
            hash_salt,
            trusted_hosts => trusted_hosts(ctx.site),
            site_dir => ctx.site_dir(),
            reverse_proxy => ctx.reverse_proxy,
            platform => ctx.platform.id.0,
        },
    )
}

/// `sites/fjord-sites/DOMAIN.php`: the multisite entries that send the aliases (and non-default
/// ports) to the site's directory.
pub(crate) fn drupal_sites_entry(ctx: &SiteCtx) -> PlanResult<String> {
    let mut out = format!("<?php\n// Managed by Fjord for {}: multisite entries.\n", ctx.site.domain);
    for d in ctx.site.all_domains() {
        out.push_str(&format!("$sites['{}'] = '{}';\n", d, ctx.site.domain));
        if ctx.port != 80 {
            out.push_str(&format!("$sites['{}.{}'] = '{}';\n", ctx.port, d, ctx.site.domain));
        }
    }
    Ok(out)
}

pub(crate) fn drupal7_install(ctx: &SiteCtx, profile: &str, admin_password: &str) -> PlanResult<String> {
    render(
        "apps/drupal7-install.php.j2",
        context! {
            domain => ctx.site.domain.as_str(),
            docroot => ctx.docroot(),
            port => ctx.port,
            profile,
            language => ctx.site.language,
            admin_password,
            db => db_value(ctx, false),
        },
    )
}

pub(crate) fn drupal7_script(ctx: &SiteCtx, action: &str) -> PlanResult<String> {
    render(
        "apps/drupal7-script.php.j2",
        context! { domain => ctx.site.domain.as_str(), docroot => ctx.docroot(), port => ctx.port, base_url => ctx.base_url, action },
    )
}

pub(crate) fn wordpress_config(ctx: &SiteCtx, salts: &[(String, String)]) -> PlanResult<String> {
    let salt_keys: Vec<&str> = salts.iter().map(|(k, _)| k.as_str()).collect();
    let salts: std::collections::BTreeMap<&str, &str> = salts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    render(
        "apps/wordpress.config.php.j2",
        context! {
            domain => ctx.site.domain.as_str(),
            db => db_value(ctx, false),
            salt_keys,
            salts,
            base_url => ctx.base_url,
            site_dir => ctx.site_dir(),
            reverse_proxy => ctx.reverse_proxy,
        },
    )
}

pub(crate) fn wordpress_script(ctx: &SiteCtx, action: &str, admin_password: &str) -> PlanResult<String> {
    render(
        "apps/wordpress-script.php.j2",
        context! {
            domain => ctx.site.domain.as_str(), docroot => ctx.docroot(), port => ctx.port,
            language => if ctx.site.language == "en" { String::new() } else { ctx.site.language.clone() },
            admin_password, action,
        },
    )
}

/// The read-only script that compares a site's installed schemas with the code under `scan` (the
/// target docroot first).
pub(crate) fn schema_check(ctx: &SiteCtx, app: &str, scan: &[String], no_updates: bool) -> PlanResult<String> {
    render(
        "apps/schema-check.php.j2",
        context! {
            domain => ctx.site.domain.as_str(), docroot => scan[0], db => db_value(ctx, false), app, scan, no_updates,
        },
    )
}

pub(crate) fn wordpress_login_plugin() -> PlanResult<String> {
    render("apps/wordpress-login.php.j2", context! {})
}

/// The must-use plugin that keeps a WordPress site's uploads in its own directory.
pub(crate) fn wordpress_uploads_plugin(site_dir: &str) -> PlanResult<String> {
    render("apps/wordpress-uploads.php.j2", context! { site_dir })
}

pub(crate) fn php_settings(ctx: &SiteCtx) -> PlanResult<String> {
    let d = &ctx.db;
    Ok(format!(
        "<?php\n// Managed by Fjord for {}: the site's database.\nreturn ['driver' => '{}', 'database' => '{}', 'username' => '{}', 'password' => '{}', 'host' => '{}', 'port' => {}];\n",
        ctx.site.domain, d.driver, d.database, d.username, d.password, d.host, d.port
    ))
}
