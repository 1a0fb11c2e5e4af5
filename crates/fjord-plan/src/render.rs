//! Rendering config files from the embedded templates.

use crate::{Layout, PlanError, PlanResult};
use fjord_core::{Platform, Server, Site};
use minijinja::{context, Environment};
use std::sync::OnceLock;

const SERVER_INCLUDE: &str = "nginx/server.conf.j2";
const VHOST: &str = "nginx/vhost.conf.j2";
const SITE_DISABLED: &str = "nginx/site-disabled.html.j2";

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        for (name, source) in [
            (SERVER_INCLUDE, include_str!("../templates/nginx/server.conf.j2")),
            (VHOST, include_str!("../templates/nginx/vhost.conf.j2")),
            (SITE_DISABLED, include_str!("../templates/nginx/site-disabled.html.j2")),
        ] {
            env.add_template(name, source).expect("embedded templates parse");
        }
        env
    })
}

fn render(name: &str, ctx: minijinja::Value) -> PlanResult<String> {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|source| PlanError::Template {
            name: name.into(),
            source,
        })
}

pub(crate) fn server_include(layout: &Layout, server: &Server) -> PlanResult<String> {
    render(
        SERVER_INCLUDE,
        context! { server => server.name.as_str(), vhost_dir => layout.vhost_dir(server) },
    )
}

pub(crate) fn site_disabled_page() -> PlanResult<String> {
    render(SITE_DISABLED, context! {})
}

pub(crate) fn vhost(
    layout: &Layout,
    server: &Server,
    platform: &Platform,
    site: &Site,
    disabled: bool,
) -> PlanResult<String> {
    let port = server.http().map(|(_, p)| p).unwrap_or(80);
    let docroot = match platform.docroot.as_deref() {
        Some("") | None => platform.root.clone(),
        Some(d) => format!("{}/{d}", platform.root),
    };
    let aliases: Vec<&str> = site.aliases.iter().map(|a| a.as_str()).collect();
    let names: Vec<&str> = if site.redirect_aliases {
        vec![site.domain.as_str()]
    } else {
        site.all_domains().map(|d| d.as_str()).collect()
    };
    render(
        VHOST,
        context! {
            site => context! { domain => site.domain.as_str() },
            platform => context! { name => platform.name.as_str() },
            listen => port,
            names,
            aliases,
            redirect_aliases => site.redirect_aliases && !site.aliases.is_empty(),
            docroot,
            disabled,
            acme_dir => layout.acme_dir(),
            static_dir => layout.static_dir(),
            fastcgi_pass => format!("unix:{}", layout.php_socket(site)),
        },
    )
}
