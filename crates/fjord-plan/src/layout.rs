//! Where Fjord puts things on a host. All paths derive from the state dir and validated names, so they
//! never contain `..` or anything a user typed unchecked.

use fjord_core::{Server, Site};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub state_dir: String,
}

impl Layout {
    pub fn new(state_dir: impl Into<String>) -> Layout {
        Layout {
            state_dir: state_dir.into(),
        }
    }
    /// Per-server generated config: `<state>/servers/<name>`.
    pub fn server_dir(&self, server: &Server) -> String {
        format!("{}/servers/{}", self.state_dir, server.name)
    }
    pub fn vhost_dir(&self, server: &Server) -> String {
        format!("{}/nginx/vhost.d", self.server_dir(server))
    }
    /// The file the web server's main config includes.
    pub fn server_include(&self, server: &Server) -> String {
        format!("{}/nginx/fjord.conf", self.server_dir(server))
    }
    pub fn vhost_path(&self, server: &Server, site: &Site) -> String {
        format!("{}/{}.conf", self.vhost_dir(server), site.domain)
    }
    /// A site's own directory (files, private files, temp), outside any platform's code.
    pub fn site_dir(&self, site: &Site) -> String {
        format!("{}/sites/{}", self.state_dir, site.domain)
    }
    /// Where HTTP-01 challenge files are served from, for every site.
    pub fn acme_dir(&self) -> String {
        format!("{}/acme", self.state_dir)
    }
    /// Pages Fjord serves itself (the "site disabled" page).
    pub fn static_dir(&self) -> String {
        format!("{}/static", self.state_dir)
    }
    pub fn php_socket(&self, site: &Site) -> String {
        format!("{}/run/php-{}.sock", self.state_dir, site.domain)
    }
}
