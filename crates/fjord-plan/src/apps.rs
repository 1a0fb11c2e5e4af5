//! Application drivers: what differs between Drupal 7, Drupal 8+, WordPress and any other PHP app —
//! where a site's settings go and what they say, how a site is installed, how an admin gets a
//! one-time login link, how cron runs. Adding an application is adding a variant here.

use crate::db::DbConnection;
use crate::render;
use crate::services::php_cli;
use crate::{Layout, PlanError, PlanResult};
use fjord_core::plan::secret_gen;
use fjord_core::*;

/// Everything a driver needs to know about one site.
pub struct SiteCtx<'a> {
    pub layout: &'a Layout,
    pub server: &'a Server,
    pub platform: &'a Platform,
    pub site: &'a Site,
    pub db: DbConnection,
    pub php: &'a PhpRuntime,
    /// `http://DOMAIN[:PORT]`.
    pub base_url: String,
    pub port: u16,
    /// Trusted proxy addresses (for the app's reverse-proxy settings).
    pub reverse_proxy: Vec<String>,
}

impl SiteCtx<'_> {
    pub fn docroot(&self) -> String {
        self.layout.docroot(self.platform)
    }
    pub fn site_dir(&self) -> String {
        self.layout.site_dir(self.site)
    }
    fn secret(&self, name: &str) -> String {
        secret_gen(&format!("site-{}-{name}", self.site.id))
    }
    /// A command of the platform's site-local drush, on this site, run the way that drush runs: its
    /// PHP entry point (as verify found it) with the site's `php`, never `php` on a shell script
    /// (PHP would print it and succeed); a drush that is only a script runs itself, with the site's
    /// `php` first on `PATH`.
    fn drush(&self, args: &[String]) -> Command {
        let details = &self.platform.details;
        let entry = format!("{}/{}", self.platform.root, details.drush.as_deref().unwrap_or("vendor/bin/drush"));
        let mut argv = if details.drush_script { vec![entry] } else { vec![php_cli(self.php), entry] };
        argv.extend([format!("--root={}", self.docroot()), format!("--uri={}", self.base_url)]);
        argv.extend(args.iter().cloned());
        let cmd = Command::new(argv).cwd(self.platform.root.clone()).as_user(self.runs_as());
        if details.drush_script {
            let path = format!("{}:/usr/local/bin:/usr/bin:/bin", self.layout.site_bin_dir(self.site));
            cmd.env("PATH", path)
        } else {
            cmd
        }
    }

    /// Who runs the site's code outside a web request (drush, installers, cron, login links, checks):
    /// the user its PHP-FPM pool runs as. Never root: the site can change code it loads.
    pub fn runs_as(&self) -> String {
        self.layout.php_user(self.site)
    }

    fn php_script(&self, label: &str, script: String, redact: &[&str]) -> Step {
        let mut cmd = Command::new([php_cli(self.php), "{tmp:script.php}".to_string()])
            .file("script.php", script)
            .cwd(self.docroot())
            .timeout(900)
            .as_user(self.runs_as());
        for r in redact {
            cmd = cmd.redact(*r);
        }
        Step::Run { label: label.into(), cmd, undo: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    Drupal7,
    Drupal,
    Wordpress,
    Php,
}

impl App {
    pub fn of(platform: &Platform) -> App {
        match platform.app {
            Some(AppKind::Drupal7) => App::Drupal7,
            Some(AppKind::Drupal) => App::Drupal,
            Some(AppKind::Wordpress) => App::Wordpress,
            Some(AppKind::Php) | None => App::Php,
        }
    }

    /// Refuses database engines the application cannot use.
    pub fn check_engine(self, engine: DbEngine) -> PlanResult<()> {
        if self == App::Wordpress && engine != DbEngine::Mariadb {
            return Err(PlanError::Refused(format!("WordPress needs a MariaDB/MySQL database, not {engine}")));
        }
        Ok(())
    }

    /// Which nginx rules the vhost uses.
    pub fn vhost_flavour(self) -> &'static str {
        match self {
            App::Drupal7 | App::Drupal => "drupal",
            App::Wordpress => "wordpress",
            App::Php => "php",
        }
    }

    /// Tables holding only caches the application rebuilds on demand (name patterns, see
    /// [`fjord_core::CacheTables`]): a backup keeps their structure but not their rows. Drupal's
    /// cache bins; D8+'s `cachetags` is not one (it holds invalidation counters).
    pub fn cache_tables(self) -> &'static [&'static str] {
        match self {
            App::Drupal7 | App::Drupal => &["cache", "cache_*"],
            _ => &[],
        }
    }

    /// The directories of the site's own content in its state directory (what a backup holds and a
    /// restore swaps): private files, and WordPress's uploads (Debian's WordPress would otherwise put
    /// every site's uploads in its one shared `wp-content`).
    pub fn state_content_dirs(self) -> &'static [&'static str] {
        match self {
            App::Wordpress => &["private", "uploads"],
            _ => &["private"],
        }
    }

    /// The site's directory inside the platform, for apps that keep one (Drupal's `sites/DOMAIN`).
    pub fn platform_site_dir(self, ctx: &SiteCtx) -> Option<String> {
        match self {
            App::Drupal7 | App::Drupal => Some(format!("{}/sites/{}", ctx.docroot(), ctx.site.domain)),
            _ => None,
        }
    }

    /// What the site's PHP may open (`open_basedir`; a trailing `/` limits an entry to that
    /// directory): the platform's code, the site's own directory (private files, temp, sessions,
    /// uploads, logs), and what PHP and the application need from the system. Other sites' directories
    /// inside the platform are closed by their permissions.
    pub fn open_basedir(self, ctx: &SiteCtx) -> Vec<String> {
        let mut dirs = vec![format!("{}/", ctx.platform.root), format!("{}/", ctx.site_dir())];
        if self == App::Wordpress {
            // Debian's WordPress: its config files (each readable by its own site's user only), its
            // shared content directory, and its code, where its wp-config.php points ABSPATH.
            dirs.extend(["/etc/wordpress/".into(), "/var/lib/wordpress/".into(), "/usr/share/wordpress/".into()]);
        }
        dirs.extend(["/usr/share/php/".into(), "/dev/urandom".into()]);
        dirs
    }

    /// Directories the site's PHP user must be able to write.
    pub fn writable_dirs(self, ctx: &SiteCtx) -> Vec<String> {
        let site_dir = ctx.site_dir();
        let mut dirs: Vec<String> = self.state_content_dirs().iter().map(|d| format!("{site_dir}/{d}")).collect();
        dirs.extend([format!("{site_dir}/tmp"), format!("{site_dir}/log")]);
        if self == App::Drupal {
            dirs.push(format!("{site_dir}/config"));
        }
        if let Some(dir) = self.platform_site_dir(ctx) {
            dirs.push(format!("{dir}/files"));
        }
        if ctx.site.db_engine == DbEngine::Sqlite {
            dirs.push(format!("{}/db", ctx.site_dir()));
        }
        dirs
    }

    /// Directories and settings files for a site; all derived from the state, so verify rewrites them.
    pub fn settings(self, ctx: &SiteCtx, plan: &mut Plan) -> PlanResult<()> {
        let layout = ctx.layout;
        let isolated = layout.isolated(ctx.site);
        let owner = Some(layout.php_owner(ctx.site));
        // Settings hold the database password: isolated, only the site's own group reads them (PHP-FPM
        // alone needs them; the web server only serves static files); shared, the web user's group.
        // Root owns them either way, so the site can neither change its credentials nor add code to
        // a file its bootstraps load.
        let (settings_mode, settings_owner) = if isolated {
            (0o440, Some(format!("root:{}", layout.php_user(ctx.site))))
        } else {
            (0o640, Some(format!("root:{}", layout.web_user)))
        };
        // Isolated, the site's directory in the platform is closed to other sites' users; the web
        // user (in the site's group) still serves its public files.
        let (site_dir_mode, site_dir_owner, files_mode) = if isolated {
            (0o750, Some(format!("root:{}", layout.php_user(ctx.site))), 0o770)
        } else {
            (0o755, None, 0o775)
        };
        match self {
            App::Drupal7 | App::Drupal => {
                let dir = self.platform_site_dir(ctx).expect("Drupal keeps a site dir");
                plan.push(Step::MakeDir { path: dir.clone(), mode: site_dir_mode, owner: site_dir_owner });
                plan.push(Step::MakeDir { path: format!("{dir}/files"), mode: files_mode, owner: owner.clone() });
                if self == App::Drupal {
                    // Both the user's from the start: `config` is one of its writable trees.
                    plan.push(Step::MakeDir {
                        path: format!("{}/config", ctx.site_dir()),
                        mode: 0o770,
                        owner: owner.clone(),
                    });
                    plan.push(Step::MakeDir {
                        path: format!("{}/config/sync", ctx.site_dir()),
                        mode: 0o770,
                        owner: owner.clone(),
                    });
                }
                // Aliases reach the site through sites/sites.php, which includes one file per site.
                plan.push(Step::MakeDir {
                    path: format!("{}/sites/fjord-sites", ctx.docroot()),
                    mode: 0o755,
                    owner: None,
                });
                plan.push(Step::WriteFile {
                    path: format!("{}/sites/fjord-sites/{}.php", ctx.docroot(), ctx.site.domain),
                    content: FileContent::Text { text: render::drupal_sites_entry(ctx)? },
                    mode: 0o644,
                    owner: None,
                });
                plan.push(Step::WriteFile {
                    path: format!("{dir}/settings.php"),
                    content: FileContent::Text {
                        text: render::drupal_settings(ctx, self == App::Drupal7, &ctx.secret("hash-salt"))?,
                    },
                    mode: settings_mode,
                    owner: settings_owner.clone(),
                });
            }
            App::Wordpress => {
                let salts: Vec<(String, String)> = render::WP_SALT_KEYS
                    .iter()
                    .map(|k| (k.to_string(), ctx.secret(&format!("wp-{}", k.to_lowercase().replace('_', "-")))))
                    .collect();
                let config = render::wordpress_config(ctx, &salts)?;
                for domain in ctx.site.all_domains() {
                    plan.push(Step::WriteFile {
                        path: format!("/etc/wordpress/config-{domain}.php"),
                        content: FileContent::Text { text: config.clone() },
                        mode: settings_mode,
                        owner: settings_owner.clone(),
                    });
                }
                plan.push(Step::MakeDir { path: format!("{}/mu-plugins", ctx.site_dir()), mode: 0o755, owner: None });
                plan.push(Step::WriteFile {
                    path: format!("{}/mu-plugins/fjord-login.php", ctx.site_dir()),
                    content: FileContent::Text { text: render::wordpress_login_plugin()? },
                    mode: 0o644,
                    owner: None,
                });
                plan.push(Step::WriteFile {
                    path: format!("{}/mu-plugins/fjord-uploads.php", ctx.site_dir()),
                    content: FileContent::Text { text: render::wordpress_uploads_plugin(&ctx.site_dir())? },
                    mode: 0o644,
                    owner: None,
                });
            }
            App::Php => {
                // A generic app gets its database settings as a PHP file it can include.
                plan.push(Step::WriteFile {
                    path: format!("{}/fjord-settings.php", ctx.site_dir()),
                    content: FileContent::Text { text: render::php_settings(ctx)? },
                    mode: settings_mode,
                    owner: settings_owner,
                });
            }
        }
        Ok(())
    }

    /// Files the settings step writes outside the site's own directories, removed when the site goes.
    pub fn external_files(self, ctx: &SiteCtx) -> Vec<String> {
        match self {
            App::Wordpress => ctx.site.all_domains().map(|d| format!("/etc/wordpress/config-{d}.php")).collect(),
            App::Drupal | App::Drupal7 => vec![
                format!("{}/sites/fjord-sites/{}.php", ctx.docroot(), ctx.site.domain),
                self.drush_alias_file(ctx).expect("Drupal has drush aliases"),
            ],
            _ => vec![],
        }
    }

    /// The site's drush alias name and the file that defines it: `(alias, path)`.
    ///
    /// Drush 12/13 reads `PROJECT/drush/sites/NAME.site.yml` and parses `@a.b` as site `a`, environment
    /// `b`, with names of `[A-Za-z0-9_-]` only; so a domain's dots become underscores there
    /// (`@www_example_org`, also `@www_example_org.dev`). Drush 8 (Drupal 7) reads
    /// `DRUPAL/sites/all/drush/NAME.alias.drushrc.php`, whose name may hold the domain as it is.
    pub fn drush_alias_at(self, platform_root: &str, docroot: &str, domain: &str) -> Option<(String, String)> {
        match self {
            App::Drupal => {
                let name = domain.replace('.', "_");
                let path = format!("{platform_root}/drush/sites/{name}.site.yml");
                Some((name, path))
            }
            App::Drupal7 => Some((domain.to_string(), format!("{docroot}/sites/all/drush/{domain}.alias.drushrc.php"))),
            _ => None,
        }
    }

    /// Where the site's drush alias goes (see [`App::drush_alias_at`]).
    pub fn drush_alias_file(self, ctx: &SiteCtx) -> Option<String> {
        self.drush_alias_at(&ctx.platform.root, &ctx.docroot(), ctx.site.domain.as_str()).map(|(_, path)| path)
    }

    /// The site's drush alias (root and URI of the site, as its own drush sees it).
    fn drush_alias(self, ctx: &SiteCtx) -> Option<String> {
        let header = format!("Managed by Fjord for {0}: regenerated by `fjord site verify {0}`.", ctx.site.domain);
        match self {
            // Drush's default environment is `dev`: `@NAME` is `@NAME.dev`.
            App::Drupal => Some(format!("# {header}\ndev:\n  root: '{}'\n  uri: '{}'\n", ctx.docroot(), ctx.base_url)),
            App::Drupal7 => Some(format!(
                "<?php\n// {header}\n$aliases['{}'] = array('root' => '{}', 'uri' => '{}');\n",
                ctx.site.domain,
                ctx.docroot(),
                ctx.base_url
            )),
            _ => None,
        }
    }

    /// Writes the site's drush alias file (Drupal only).
    pub fn drush_alias_files(self, ctx: &SiteCtx, plan: &mut Plan) {
        if let (Some(path), Some(text)) = (self.drush_alias_file(ctx), self.drush_alias(ctx)) {
            let dir = path.rsplit_once('/').map(|(d, _)| d.to_string()).expect("an absolute path");
            plan.push(Step::MakeDir { path: dir, mode: 0o755, owner: None });
            plan.push(Step::WriteFile { path, content: FileContent::Text { text }, mode: 0o644, owner: None });
        }
    }

    /// Runs the application's installer (the database and settings exist already).
    pub fn install(self, ctx: &SiteCtx, plan: &mut Plan) -> PlanResult<()> {
        let profile = ctx.site.profile.clone().unwrap_or_else(|| "standard".into());
        match self {
            App::Drupal => {
                let cmd = ctx
                    .drush(&[
                        "site:install".into(),
                        profile,
                        format!("--sites-subdir={}", ctx.site.domain),
                        format!("--site-name={}", ctx.site.domain),
                        "--account-name=admin".into(),
                        format!("--account-mail=admin@{}", ctx.site.domain),
                        format!("--locale={}", ctx.site.language),
                        "--yes".into(),
                    ])
                    // drush prints the generated admin password; the login link is the way in.
                    .redact("password")
                    .timeout(900);
                plan.push(Step::Run { label: "install Drupal with the site-local drush".into(), cmd, undo: None });
            }
            App::Drupal7 => {
                let script = render::drupal7_install(ctx, &profile, &ctx.secret("admin"))?;
                plan.push(ctx.php_script("install Drupal 7", script, &[]));
            }
            App::Wordpress => {
                let script = render::wordpress_script(ctx, "install", &ctx.secret("admin"))?;
                plan.push(ctx.php_script("install WordPress", script, &[]));
            }
            App::Php => {}
        }
        // An installer that exits 0 proves nothing (PHP printing a shell script does, so does
        // WordPress unable to reach its database): its tables must be there before the HTTP check.
        let tables = self.installed_tables();
        if !tables.is_empty() {
            plan.push(Step::Run {
                label: format!(
                    "check the installer created the site's tables ({}), as the site's database account",
                    tables.join(", ")
                ),
                cmd: crate::db::check_tables(ctx, tables),
                undo: None,
            });
        }
        Ok(())
    }

    /// Tables every installed site of the application has.
    pub fn installed_tables(self) -> &'static [&'static str] {
        match self {
            App::Drupal => &["key_value", "users"],
            App::Drupal7 => &["system", "variable", "users"],
            App::Wordpress => &["wp_options", "wp_users"],
            App::Php => &[],
        }
    }

    /// A step whose output is a one-time login URL for the site's administrator.
    pub fn login_link(self, ctx: &SiteCtx) -> PlanResult<Step> {
        let step = match self {
            App::Drupal => Step::Run {
                label: "one-time login link".into(),
                cmd: ctx.drush(&["user:login".into()]).timeout(120),
                undo: None,
            },
            App::Drupal7 => ctx.php_script("one-time login link", render::drupal7_script(ctx, "login")?, &[]),
            App::Wordpress => ctx.php_script("one-time login link", render::wordpress_script(ctx, "login", "")?, &[]),
            App::Php => return Err(PlanError::Refused("a generic PHP site has no admin account to log in to".into())),
        };
        // The link is the task's result, not only a line of its log.
        Ok(match step {
            Step::Run { label, cmd, undo } => {
                Step::Run { label, cmd: cmd.reports(fjord_core::Report::LoginLink), undo }
            }
            other => other,
        })
    }

    /// The steps that bring the site's database up to its (new) code: Drupal's database updates and a
    /// cache rebuild, WordPress's database upgrade. Run after a migrate or a clone to other code.
    pub fn update(self, ctx: &SiteCtx) -> PlanResult<Vec<Step>> {
        Ok(match self {
            App::Drupal => vec![
                Step::Run {
                    label: "run the database updates (drush updatedb)".into(),
                    cmd: ctx.drush(&["updatedb".into(), "--yes".into()]).timeout(3600),
                    undo: None,
                },
                Step::Run {
                    label: "rebuild caches".into(),
                    cmd: ctx.drush(&["cache:rebuild".into()]).timeout(900),
                    undo: None,
                },
            ],
            App::Drupal7 => {
                let mut step = ctx.php_script("run the database updates", render::drupal7_script(ctx, "update")?, &[]);
                if let Step::Run { cmd, .. } = &mut step {
                    cmd.timeout_secs = 3600;
                }
                vec![step]
            }
            App::Wordpress => {
                vec![ctx.php_script(
                    "upgrade the WordPress database",
                    render::wordpress_script(ctx, "upgrade", "")?,
                    &[],
                )]
            }
            App::Php => vec![],
        })
    }

    /// A read-only step that refuses when the code at `target_docroot` is older than the site's
    /// database (a module's installed schema is newer than the code has, or a module is missing), and
    /// lists the updates it will run. `ctx` is the site as it is now; `extra` are further directories
    /// whose modules go with the site (its own `sites/DOMAIN/modules`). With `no_updates` it refuses
    /// pending updates too (a live migrate planned on there being none).
    pub fn schema_check(
        self,
        ctx: &SiteCtx,
        target_docroot: &str,
        extra: Vec<String>,
        no_updates: bool,
    ) -> PlanResult<Option<Step>> {
        let app = match self {
            App::Drupal => "drupal",
            App::Drupal7 => "drupal7",
            App::Wordpress => "wordpress",
            App::Php => return Ok(None),
        };
        let mut scan = vec![target_docroot.to_string()];
        scan.extend(extra);
        let script = render::schema_check(ctx, app, &scan, no_updates)?;
        let cmd = Command::new([php_cli(ctx.php), "{tmp:check.php}".to_string()])
            .file("check.php", script)
            .cwd(target_docroot.to_string())
            .timeout(600)
            .as_user(ctx.runs_as())
            .reports(fjord_core::Report::MigrateCheck);
        let label = if no_updates {
            "check the database's module schemas against the new code: no database updates pending"
        } else {
            "check the database's module schemas against the new code"
        };
        Ok(Some(Step::Run { label: label.into(), cmd, undo: None }))
    }

    /// The command that rebuilds the caches the code fills in the database (Drupal's cache
    /// rebuild, Drupal 7's cache flush with its class registry); `None` for apps without such caches.
    /// A live migrate runs it after the switch, the old code's as its undo.
    pub fn cache_rebuild(self, ctx: &SiteCtx) -> PlanResult<Option<Command>> {
        Ok(match self {
            App::Drupal => Some(ctx.drush(&["cache:rebuild".into()]).timeout(900)),
            App::Drupal7 => match ctx.php_script("", render::drupal7_script(ctx, "cache")?, &[]) {
                Step::Run { cmd, .. } => Some(cmd),
                _ => None,
            },
            App::Wordpress | App::Php => None,
        })
    }

    /// A step that runs the site's cron.
    pub fn cron(self, ctx: &SiteCtx) -> PlanResult<Option<Step>> {
        Ok(match self {
            App::Drupal => {
                Some(Step::Run { label: "run cron".into(), cmd: ctx.drush(&["cron".into()]).timeout(900), undo: None })
            }
            App::Drupal7 => Some(ctx.php_script("run cron", render::drupal7_script(ctx, "cron")?, &[])),
            App::Wordpress => Some(ctx.php_script("run cron", render::wordpress_script(ctx, "cron", "")?, &[])),
            App::Php => None,
        })
    }
}
