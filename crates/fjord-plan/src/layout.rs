//! Where Fjord puts things on a host. All paths derive from the state dir and validated names, so they
//! never contain `..` or anything a user typed unchecked.

use fjord_core::{HttpKind, Isolation, Platform, Server, Site};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub state_dir: String,
    /// The Unix user PHP-FPM pools and web-server workers run as.
    pub web_user: String,
}

impl Layout {
    pub fn new(state_dir: impl Into<String>) -> Layout {
        Layout { state_dir: state_dir.into(), web_user: "www-data".into() }
    }
    /// `user:group` of the web user.
    pub fn web_owner(&self) -> String {
        format!("{0}:{0}", self.web_user)
    }
    /// A short tag of this installation (a hash of its state dir), part of every Unix user it makes, so
    /// two Fjords on one machine (tests run many) never share a user.
    fn install_tag(&self) -> String {
        // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
        let mut h: u32 = 0x811c_9dc5;
        for b in self.state_dir.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        format!("{:05x}", h & 0xf_ffff)
    }
    /// The prefix of every Unix user this installation makes (`fj` + its tag).
    pub fn user_prefix(&self) -> String {
        format!("fj{}", self.install_tag())
    }
    /// The Unix user (and group of the same name) a site's PHP runs as. Derived from ids, which never
    /// change (a renamed site keeps its user), and at most 2 + 5 + 1 + 19 characters: within Linux's
    /// 32. `shared` isolation runs as the web user.
    pub fn php_user(&self, site: &Site) -> String {
        match (site.isolation, site.client_id) {
            (Isolation::Shared, _) => self.web_user.clone(),
            (Isolation::Client, Some(client)) => format!("{}c{client}", self.user_prefix()),
            _ => format!("{}s{}", self.user_prefix(), site.id),
        }
    }
    /// `user:group` of the site's PHP user.
    pub fn php_owner(&self, site: &Site) -> String {
        format!("{0}:{0}", self.php_user(site))
    }
    /// Whether the site runs as a user of its own (or its client's), not the web user.
    pub fn isolated(&self, site: &Site) -> bool {
        site.isolation != Isolation::Shared
    }
    /// Per-server generated config: `<state>/servers/<name>`.
    pub fn server_dir(&self, server: &Server) -> String {
        format!("{}/servers/{}", self.state_dir, server.name)
    }
    pub fn nginx_dir(&self, server: &Server) -> String {
        format!("{}/nginx", self.server_dir(server))
    }
    /// The generated config of the server's web server: `nginx/` or `apache/`.
    pub fn web_dir(&self, server: &Server) -> String {
        match server.http().map(|h| h.kind) {
            Some(HttpKind::Apache) => self.apache_dir(server),
            _ => self.nginx_dir(server),
        }
    }
    pub fn apache_dir(&self, server: &Server) -> String {
        format!("{}/apache", self.server_dir(server))
    }
    /// The vhosts, one file per site, of the server's web server.
    pub fn vhost_dir(&self, server: &Server) -> String {
        format!("{}/vhost.d", self.web_dir(server))
    }
    /// The file that includes every vhost; the web server's main config includes it.
    pub fn server_include(&self, server: &Server) -> String {
        format!("{}/fjord.conf", self.web_dir(server))
    }
    /// The main config of the Apache master Fjord runs itself.
    pub fn apache_conf(&self, server: &Server) -> String {
        format!("{}/apache2.conf", self.apache_dir(server))
    }
    pub fn apache_pid(&self, server: &Server) -> String {
        format!("{}/apache-{}.pid", self.run_dir(), server.name)
    }
    /// Apache's own runtime files (scoreboard, mutexes, sockets).
    pub fn apache_run_dir(&self, server: &Server) -> String {
        format!("{}/apache-{}", self.run_dir(), server.name)
    }
    /// The main config of the nginx master Fjord runs itself.
    pub fn nginx_conf(&self, server: &Server) -> String {
        format!("{}/nginx.conf", self.nginx_dir(server))
    }
    pub fn nginx_pid(&self, server: &Server) -> String {
        format!("{}/nginx-{}.pid", self.run_dir(), server.name)
    }
    /// The include Fjord drops into the system's nginx in `system` mode.
    pub fn system_nginx_include(&self, server: &Server) -> String {
        format!("/etc/nginx/conf.d/fjord-{}.conf", server.name)
    }
    pub fn vhost_path(&self, server: &Server, site: &Site) -> String {
        format!("{}/{}.conf", self.vhost_dir(server), site.domain)
    }
    pub fn php_dir(&self, server: &Server, version: &str) -> String {
        format!("{}/php/{version}", self.server_dir(server))
    }
    pub fn php_conf(&self, server: &Server, version: &str) -> String {
        format!("{}/php-fpm.conf", self.php_dir(server, version))
    }
    pub fn php_pool_dir(&self, server: &Server, version: &str) -> String {
        format!("{}/pool.d", self.php_dir(server, version))
    }
    pub fn php_pool(&self, server: &Server, version: &str, site: &Site) -> String {
        format!("{}/{}.conf", self.php_pool_dir(server, version), site.domain)
    }
    pub fn php_pid(&self, server: &Server, version: &str) -> String {
        format!("{}/php-fpm-{}-{version}.pid", self.run_dir(), server.name)
    }
    /// A site's PHP-FPM socket; one per runtime, so a site moving to another runtime's master is
    /// served by the old socket until the web server switches.
    pub fn php_socket(&self, site: &Site) -> String {
        match &site.php {
            Some(runtime) => format!("{}/php-{runtime}-{}.sock", self.run_dir(), site.domain),
            None => format!("{}/php-{}.sock", self.run_dir(), site.domain),
        }
    }
    /// Where the site's PHP-FPM pool logs PHP errors: in a directory of the site's own that its PHP
    /// user can write.
    pub fn php_error_log(&self, site: &Site) -> String {
        format!("{}/log/php-error.log", self.site_dir(site))
    }
    /// A site's own directory outside any platform: private files, temp files, SQLite database.
    pub fn site_dir(&self, site: &Site) -> String {
        format!("{}/sites/{}", self.state_dir, site.domain)
    }
    /// The site's own `bin/`: a `php` that runs its PHP runtime, first on `PATH` in `fjord site exec`.
    pub fn site_bin_dir(&self, site: &Site) -> String {
        format!("{}/bin", self.site_dir(site))
    }
    pub fn sqlite_path(&self, site: &Site) -> String {
        format!("{}/db/{}.sqlite", self.site_dir(site), site.db_name)
    }
    /// The web root of a platform.
    pub fn docroot(&self, platform: &Platform) -> String {
        match platform.docroot.as_deref() {
            Some("") | None => platform.root.clone(),
            Some(d) => format!("{}/{d}", platform.root),
        }
    }
    /// Backup archives, one directory per site (0700).
    pub fn backups_dir(&self) -> String {
        format!("{}/backups", self.state_dir)
    }
    /// Where HTTP-01 challenge files are served from, for every site.
    pub fn acme_dir(&self) -> String {
        format!("{}/acme", self.state_dir)
    }
    /// A site's certificate: `fullchain.pem`, `key.pem` (0600) and `cert.json`, in a 0700 directory.
    pub fn tls_dir(&self, site: &Site) -> String {
        format!("{}/tls/{}", self.state_dir, site.domain)
    }
    /// Pages Fjord serves itself (the "site disabled" page).
    pub fn static_dir(&self) -> String {
        format!("{}/static", self.state_dir)
    }
    /// Root's alone: what `RunOnce` steps last ran (see `fjord_core::Step::RunOnce`).
    pub fn stamp_path(&self, name: &str) -> String {
        format!("{}/stamps/{name}", self.state_dir)
    }
    pub fn run_dir(&self) -> String {
        format!("{}/run", self.state_dir)
    }
    pub fn log_dir(&self) -> String {
        format!("{}/log", self.state_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_core::{ClientId, SiteId, SiteStatus};

    #[test]
    fn php_users_fit_linux_and_follow_the_isolation() {
        let layout = Layout::new("/var/lib/fjord");
        let mut site = crate::tests::site(SiteStatus::Enabled, &[], false);
        site.id = SiteId(i64::MAX);
        let user = layout.php_user(&site);
        assert!(user.len() <= 32 && user.starts_with("fj"), "{user}");
        // Two installations on one machine never share a user.
        assert_ne!(user, Layout::new("/srv/other-fjord").php_user(&site));
        site.isolation = Isolation::Client;
        assert_eq!(layout.php_user(&site), user, "a site without a client keeps its own user");
        site.client_id = Some(ClientId(7));
        assert_eq!(layout.php_user(&site), format!("{}c7", layout.user_prefix()));
        site.isolation = Isolation::Shared;
        assert_eq!(layout.php_user(&site), "www-data");
        assert!(!layout.isolated(&site));
    }
}
