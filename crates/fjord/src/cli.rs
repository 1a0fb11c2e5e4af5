//! The command line, as clap definitions only. `fjord <noun> <verb>`; every command takes `--json`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "fjord", version, about = "Fjord: a hosting control plane for Drupal, WordPress and other PHP sites")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// State directory (database, secrets, generated config, logs).
    #[arg(long, global = true, env = "FJORD_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Config file [default: STATE/fjord.toml].
    #[arg(long, global = true, env = "FJORD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State database URL (sqlite:///path or postgres://…) [default: sqlite in the state dir].
    #[arg(
        id = "state_db",
        long = "state-db",
        global = true,
        env = "FJORD_DB",
        value_name = "URL",
        hide_env_values = true
    )]
    pub db: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print what a state-changing command would do (files with a diff, commands) and change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// After queueing a task, follow its log until it ends; exit non-zero if it fails.
    #[arg(long, global = true)]
    pub wait: bool,
    /// Act on a remote Fjord through its HTTP API (e.g. https://fjord.example.org); the token comes
    /// from FJORD_TOKEN or --token-file, never the command line. (Not `--server`: that names a
    /// Fjord server object in `platform add` and others.)
    #[arg(long, global = true, env = "FJORD_REMOTE", value_name = "URL")]
    pub remote: Option<String>,
    /// A 0600 file holding the API token for --remote.
    #[arg(long, global = true, env = "FJORD_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the state directory and database, and the first admin user (harmless to run again).
    Init(InitArgs),
    /// Run the task daemon (the worker pool).
    Serve(ServeArgs),
    /// Check that the state database is reachable and whether a daemon is running.
    Health,
    #[command(subcommand)]
    Server(ServerCmd),
    #[command(subcommand)]
    Platform(PlatformCmd),
    #[command(subcommand)]
    Site(SiteCmd),
    #[command(subcommand)]
    Client(ClientCmd),
    /// Users of the web UI and API (admin, platform-manager, client).
    #[command(subcommand)]
    User(UserCmd),
    /// API tokens (`Authorization: Bearer`), for automation and `--remote`.
    #[command(subcommand)]
    Token(TokenCmd),
    #[command(subcommand)]
    Backup(BackupCmd),
    #[command(subcommand)]
    Task(TaskCmd),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages into a directory.
    Man { dir: PathBuf },
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Published address ranges of proxy providers (Cloudflare) that servers can trust.
    #[command(subcommand)]
    ProxyRanges(ProxyRangesCmd),
}

#[derive(Debug, Subcommand)]
pub enum ProxyRangesCmd {
    /// Show the Cloudflare ranges in use (shipped with Fjord until first updated).
    Show,
    /// Fetch Cloudflare's current ranges, record them, and queue a verify of every server that
    /// trusts them.
    Update {
        /// Where to read the list (http://, https:// or file://; one CIDR block a line)
        /// [default: Cloudflare's published IPv4 and IPv6 lists].
        #[arg(long, value_name = "URL")]
        from: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Most tasks run at once [default: number of CPUs]; 0 with --listen serves HTTP only.
    #[arg(long, env = "FJORD_WORKERS")]
    pub workers: Option<usize>,
    /// This daemon's name in task leases [default: the host name].
    #[arg(long, env = "FJORD_NODE")]
    pub node: Option<String>,
    /// Also serve the web UI and HTTP API on this address (e.g. 127.0.0.1:8080) [config: listen].
    #[arg(long, env = "FJORD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of the first admin user, created when there are no users yet.
    #[arg(long, default_value = "admin")]
    pub admin: String,
    /// Read the first admin's password from standard input instead of generating one.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user; the password is read from stdin with --password-stdin, else generated and printed once.
    Add {
        name: String,
        /// admin, platform-manager or client.
        #[arg(long)]
        role: String,
        /// A client the user belongs to (client users; repeatable).
        #[arg(long = "client", value_name = "CLIENT")]
        clients: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    /// Set a user's password (from stdin with --password-stdin, else generated and printed once).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an API token for a user; its secret is printed once.
    Create {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// read or write.
        #[arg(long, default_value = "read")]
        scope: String,
    },
    /// List tokens (of one user with --user).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    Revoke {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// Register a server and queue its verify.
    Add(Box<ServerAdd>),
    List,
    Show {
        name: String,
    },
    /// Regenerate and check the server's config.
    Verify {
        name: String,
    },
    /// Stop Fjord's own web-server and PHP-FPM masters of the server (its sites stop being served).
    Stop {
        name: String,
    },
    /// Start Fjord's own web-server and PHP-FPM masters of the server (e.g. after a reboot).
    Start {
        name: String,
    },
    /// Remove a server (refused while it has platforms).
    Remove {
        name: String,
    },
    /// Trust proxies to report the visitor's address: the web server logs it and gives it to PHP as
    /// REMOTE_ADDR; from any other address the header is ignored.
    RealIp(ServerRealIp),
    /// Change the server's web server (nginx or apache): its verify regenerates every vhost for the
    /// new one, stops the old master and starts the new one.
    Web {
        name: String,
        /// nginx or apache.
        kind: String,
    },
    /// The server's PHP-FPM runtimes (one PHP-FPM master each).
    #[command(subcommand)]
    Php(PhpCmd),
}

#[derive(Debug, Subcommand)]
pub enum PhpCmd {
    /// Record a PHP-FPM runtime (version and extensions detected from the binary), then verify the
    /// server (starts its master). Several runtimes may share a binary.
    Add {
        server: String,
        name: String,
        /// The php-fpm binary, e.g. /usr/sbin/php-fpm8.3.
        #[arg(long)]
        binary: String,
        /// The matching CLI [default: /usr/bin/phpVERSION if it exists].
        #[arg(long)]
        cli: Option<String>,
    },
    List {
        server: String,
    },
    /// Forget a runtime no site uses, then verify the server.
    Remove {
        server: String,
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ServerRealIp {
    pub name: String,
    /// A trusted proxy address or CIDR block (repeatable), e.g. 192.0.2.0/24.
    #[arg(long = "trust", value_name = "CIDR")]
    pub trust: Vec<String>,
    /// Trust Cloudflare's published ranges too.
    #[arg(long)]
    pub cloudflare: bool,
    /// The header holding the visitor's address: CF-Connecting-IP, X-Forwarded-For or X-Real-IP
    /// [default: CF-Connecting-IP with --cloudflare, X-Forwarded-For otherwise].
    #[arg(long)]
    pub header: Option<String>,
    /// Trust no proxy any more.
    #[arg(long, conflicts_with_all = ["trust", "cloudflare", "header"])]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct ServerAdd {
    pub name: String,
    /// Host name or address Fjord reaches it at.
    #[arg(long, default_value = "localhost")]
    pub hostname: String,
    /// Web server: nginx, apache, or none.
    #[arg(long, visible_alias = "web", default_value = "nginx")]
    pub http: String,
    /// own: Fjord runs its own web-server master with a config it owns; system: Fjord drops an
    /// include into the system nginx and reloads it (nginx only).
    #[arg(long, default_value = "own")]
    pub http_mode: String,
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Port sites answer HTTPS on [default: 443].
    #[arg(long)]
    pub https_port: Option<u16>,
    /// Address the sites listen on [default: all].
    #[arg(long)]
    pub listen: Option<String>,
    /// Database engines it offers (repeatable): mariadb, postgres, sqlite.
    #[arg(long = "database", value_name = "ENGINE")]
    pub dbs: Vec<String>,
    #[command(flatten)]
    pub mariadb: DbAdminArgs,
    #[command(flatten)]
    pub postgres: PgAdminArgs,
    /// PHP-FPM runtimes (repeatable), as VERSION=FPM_BINARY, e.g. 8.2=/usr/sbin/php-fpm8.2
    /// [default on localhost: every php-fpm found].
    #[arg(long = "php", value_name = "VERSION=BINARY")]
    pub phps: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DbAdminArgs {
    /// MariaDB: unix socket for the admin connection.
    #[arg(long)]
    pub mariadb_socket: Option<String>,
    /// MariaDB: TCP host sites connect to.
    #[arg(long, default_value = "127.0.0.1")]
    pub mariadb_host: String,
    #[arg(long, default_value_t = 3306)]
    pub mariadb_port: u16,
    #[arg(long, default_value = "root")]
    pub mariadb_admin: String,
    /// MariaDB: file holding the admin password (it is copied into Fjord's secrets store).
    #[arg(long, value_name = "FILE")]
    pub mariadb_password_file: Option<String>,
}

#[derive(Debug, Args)]
pub struct PgAdminArgs {
    /// PostgreSQL: socket directory for the admin connection.
    #[arg(long)]
    pub postgres_socket: Option<String>,
    /// PostgreSQL: TCP host sites connect to.
    #[arg(long, default_value = "127.0.0.1")]
    pub postgres_host: String,
    #[arg(long, default_value_t = 5432)]
    pub postgres_port: u16,
    #[arg(long, default_value = "postgres")]
    pub postgres_admin: String,
    /// PostgreSQL: file holding the admin password (it is copied into Fjord's secrets store).
    #[arg(long, value_name = "FILE")]
    pub postgres_password_file: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PlatformCmd {
    /// Register a codebase and queue its verify.
    Add(PlatformAdd),
    List,
    Show {
        name: String,
    },
    /// Detect the app, version and docroot.
    Verify {
        name: String,
    },
    /// Hide the platform from new sites.
    Lock {
        name: String,
    },
    Unlock {
        name: String,
    },
    /// Remove a platform (refused while it has sites).
    Remove {
        name: String,
    },
    /// Migrate every site of a platform to another (e.g. a security update), each with its own
    /// backup and rollback; prints what succeeded and what was rolled back.
    Migrate {
        name: String,
        /// The platform the sites move to.
        #[arg(long)]
        to: String,
        /// How many sites migrate at the same time.
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// Migrate this many sites first and stop before the rest if any of them fails.
        #[arg(long)]
        canary: Option<usize>,
        /// Move every site through a maintenance window (a copy of its database, updated while it
        /// shows a maintenance page), even those the new code has no database updates for, which
        /// otherwise switch live.
        #[arg(long)]
        maintenance: bool,
        /// Queue the batch and return (follow it with `fjord task log ID --follow`) instead of
        /// waiting for its summary.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Args)]
pub struct PlatformAdd {
    pub name: String,
    /// Server it lives on [default: the only server].
    #[arg(long)]
    pub server: Option<String>,
    /// An existing codebase directory.
    #[arg(long, conflicts_with_all = ["git", "composer", "archive"])]
    pub path: Option<String>,
    /// Build from a git repository (with --ref).
    #[arg(long, requires = "git_ref")]
    pub git: Option<String>,
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Build with composer create-project PACKAGE[:VERSION].
    #[arg(long)]
    pub composer: Option<String>,
    /// Build from a tar archive.
    #[arg(long)]
    pub archive: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SiteCmd {
    /// Create a site and queue its install.
    Create(Box<SiteCreate>),
    List {
        #[arg(long)]
        status: Option<String>,
    },
    Show {
        domain: String,
    },
    /// Regenerate everything derived for the site.
    Verify {
        domain: String,
    },
    Enable {
        domain: String,
    },
    Disable {
        domain: String,
    },
    /// Add or remove domain aliases, or change whether they redirect to the main domain; then verify.
    Alias {
        domain: String,
        /// Alias to add (repeatable).
        #[arg(long = "add", value_name = "ALIAS")]
        add: Vec<String>,
        /// Alias to remove (repeatable).
        #[arg(long = "remove", value_name = "ALIAS")]
        remove: Vec<String>,
        /// Answer aliases with a 301 to the main domain: on or off.
        #[arg(long)]
        redirect: Option<String>,
        /// Add www.DOMAIN.
        #[arg(long)]
        www: bool,
    },
    /// Set the site's HTTPS mode (off, on: both served, required: HTTP redirects to HTTPS), then get
    /// its certificate (or, for off, regenerate its vhost).
    Https {
        domain: String,
        /// off, on or required.
        #[arg(long)]
        mode: String,
        /// Send Strict-Transport-Security on HTTPS answers: on or off [default: unchanged].
        #[arg(long)]
        hsts: Option<String>,
        /// Use a self-signed certificate instead of ACME (internal domains).
        #[arg(long)]
        self_signed: bool,
    },
    /// Get a new certificate for the site now: from ACME (issue, renew), self-signed, or an upload.
    Cert {
        domain: String,
        /// A self-signed certificate (internal domains).
        #[arg(long, conflicts_with_all = ["cert", "revoke_old"])]
        self_signed: bool,
        /// Install this certificate (PEM, the site's first, then its chain) …
        #[arg(long, requires = "key", value_name = "FILE")]
        cert: Option<std::path::PathBuf>,
        /// … with this private key (PEM, PKCS#8); kept 0600 in the secrets store, never on argv.
        #[arg(long, requires = "cert", value_name = "FILE")]
        key: Option<std::path::PathBuf>,
        /// ACME: revoke the certificate being replaced once the new one is installed.
        #[arg(long)]
        revoke_old: bool,
    },
    /// Adopt a site that already exists (its database; for Drupal, its sites/DOMAIN directory).
    Import(Box<SiteImport>),
    /// Print a one-time login link for the site's administrator.
    LoginLink {
        domain: String,
    },
    /// Run the site's cron now.
    Cron {
        domain: String,
    },
    /// Write a backup archive of the site (database dump, its files, a manifest).
    Backup {
        domain: String,
        /// zstd (multi-threaded, `.tar.zst`) or gzip (`.tar.gz`).
        #[arg(long, default_value = "zstd")]
        compression: String,
        /// Dump the database as SQL whatever its size: an archive any database server can restore.
        /// By default a MariaDB database on this host is dumped when small and its InnoDB files are
        /// archived when large (faster to restore).
        #[arg(long, conflicts_with = "physical")]
        logical: bool,
        /// Archive the database's InnoDB files whatever its size, where the server allows.
        #[arg(long)]
        physical: bool,
    },
    /// Bring a site back to one of its backups (the data it replaces becomes a pre-restore backup).
    Restore {
        domain: String,
        /// The backup's id (see `fjord backup list`).
        #[arg(long)]
        backup: i64,
        /// For a deleted site brought back: the platform to restore it on [default: its old one].
        #[arg(long)]
        platform: Option<String>,
    },
    /// Make a new site from an existing one: new database, copied files, its own settings.
    Clone {
        /// The site copied from.
        source: String,
        /// The new site's domain.
        domain: String,
        /// Platform of the new site [default: the source's].
        #[arg(long)]
        platform: Option<String>,
        /// Domain alias of the new site (repeatable; the source's aliases are not copied).
        #[arg(long = "alias", value_name = "DOMAIN")]
        aliases: Vec<String>,
    },
    /// Move a site to another platform (running its database updates), with a backup first and an
    /// automatic rollback when anything fails.
    Migrate {
        domain: String,
        /// The platform the site moves to.
        #[arg(long)]
        to: String,
        /// A new main domain for the site (a rename on the way).
        #[arg(long = "domain", value_name = "NEW_DOMAIN")]
        new_domain: Option<String>,
        /// After a rename, do not keep the old domain as an alias.
        #[arg(long)]
        drop_old_domain: bool,
        /// Move the database to this server too.
        #[arg(long)]
        db_server: Option<String>,
    },
    /// Give a site a new main domain (its old one stays as an alias unless --drop-old-domain).
    Rename {
        domain: String,
        new_domain: String,
        #[arg(long)]
        drop_old_domain: bool,
    },
    /// Copy the database and/or files of one site into another (e.g. live → staging), after a backup
    /// of the target.
    Sync {
        from: String,
        to: String,
        /// Copy the database.
        #[arg(long)]
        db: bool,
        /// Copy the files (public and private).
        #[arg(long)]
        files: bool,
    },
    /// Set the text the site's front page must contain for health checks (after a migrate, restore,
    /// clone or sync) to pass; without TEXT, only the status is checked.
    HealthMarker {
        domain: String,
        text: Option<String>,
    },
    /// Set the limits of the site's PHP-FPM pool, then verify the site (one reload).
    PhpLimits {
        domain: String,
        /// pm.max_children: requests of the site running at once.
        #[arg(long)]
        max_children: Option<u32>,
        /// memory_limit, e.g. 256M.
        #[arg(long)]
        memory_limit: Option<String>,
        /// upload_max_filesize and post_max_size, e.g. 64M.
        #[arg(long)]
        upload_max: Option<String>,
        /// max_execution_time in seconds.
        #[arg(long)]
        max_execution_time: Option<u32>,
    },
    /// Set whose Unix user the site's PHP runs as, then verify the site: `site` (its own user, group,
    /// pool and open_basedir; the default), `client` (one user for the sites of its client).
    Isolation {
        domain: String,
        /// site | client (`shared`, the web server's user without open_basedir, is refused unless
        /// FJORD_ALLOW_SHARED_POOL=1: it exists only so tests can prove they see a leak).
        #[arg(long)]
        mode: fjord_core::Isolation,
    },
    /// Move the site to one of its server's PHP runtimes (by name), then verify it: its pool moves
    /// to that runtime's master, one reload each, without a failed request.
    Php {
        domain: String,
        #[arg(long)]
        runtime: String,
    },
    /// Run a command in the site's context: as its PHP user, in its docroot, its PHP runtime and
    /// site-local drush first on PATH (e.g. `fjord site exec example.org -- drush status`).
    Exec {
        domain: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Write the site's drush alias (drush 12/13 `PROJECT/drush/sites/DOMAIN.site.yml`, drush 8
    /// `sites/all/drush/DOMAIN.alias.drushrc.php` for Drupal 7) by verifying it; prints the file.
    Aliases {
        domain: String,
    },
    /// Delete a disabled site (or any, with --force), after a pre-delete backup.
    Delete {
        domain: String,
        #[arg(long)]
        force: bool,
        /// Skip the pre-delete backup.
        #[arg(long)]
        no_backup: bool,
    },
}

#[derive(Debug, Args)]
pub struct SiteImport {
    pub domain: String,
    #[arg(long)]
    pub platform: String,
    /// Database engine of the existing database: mariadb or postgres.
    #[arg(long)]
    pub db_engine: String,
    /// The existing database.
    #[arg(long)]
    pub db_name: String,
    /// Its user [default: the database name].
    #[arg(long)]
    pub db_user: Option<String>,
    /// File holding that user's password (copied into Fjord's secrets store).
    #[arg(long, value_name = "FILE")]
    pub db_password_file: String,
    /// Domain alias (repeatable).
    #[arg(long = "alias", value_name = "DOMAIN")]
    pub aliases: Vec<String>,
    #[arg(long)]
    pub php: Option<String>,
    #[arg(long)]
    pub client: Option<String>,
}

#[derive(Debug, Args)]
pub struct SiteCreate {
    pub domain: String,
    #[arg(long)]
    pub platform: String,
    /// Database engine: mariadb, postgres or sqlite.
    #[arg(long, default_value = "mariadb")]
    pub db_engine: String,
    /// Server holding the database [default: the platform's server].
    #[arg(long)]
    pub db_server: Option<String>,
    /// PHP version [default: the server's default].
    #[arg(long)]
    pub php: Option<String>,
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long, default_value = "en")]
    pub language: String,
    #[arg(long)]
    pub client: Option<String>,
    /// Domain alias (repeatable).
    #[arg(long = "alias", value_name = "DOMAIN")]
    pub aliases: Vec<String>,
    /// Answer aliases with a 301 to the main domain.
    #[arg(long)]
    pub redirect_aliases: bool,
    /// Add www.DOMAIN as an alias.
    #[arg(long)]
    pub www: bool,
    /// HTTPS mode: off, on, required.
    #[arg(long, default_value = "off")]
    pub https: String,
    /// Seconds between cron runs (0 disables cron).
    #[arg(long, default_value_t = 3600)]
    pub cron_interval: i64,
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Backups, newest first.
    List {
        /// Only this site's.
        #[arg(long)]
        site: Option<String>,
    },
    /// Re-read an archive: checksum and every entry.
    Verify { id: i64 },
    /// Remove an archive (and its offsite copy) and its record.
    Delete { id: i64 },
    /// Backup schedules and their retention, per site or per platform.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
}

/// Which object a schedule is for: one site, or every site of a platform (a site's own schedule wins).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ScheduleTargetArgs {
    #[arg(long)]
    pub site: Option<String>,
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Back up on a schedule and keep the newest backup of each of the last N hours, days and weeks.
    /// Backups are taken every hour if --hourly is set, else every day if --daily is, else weekly.
    Set {
        #[command(flatten)]
        target: ScheduleTargetArgs,
        #[arg(long, default_value_t = 0)]
        hourly: u32,
        #[arg(long, default_value_t = 0)]
        daily: u32,
        #[arg(long, default_value_t = 0)]
        weekly: u32,
        /// Let retention prune manual and pre-restore/pre-migrate/pre-delete backups too.
        #[arg(long)]
        prune_manual: bool,
        /// zstd or gzip.
        #[arg(long, default_value = "zstd")]
        compression: String,
    },
    /// Every schedule (or the one applying to a site or platform).
    Show {
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        platform: Option<String>,
    },
    /// Remove a schedule (existing backups stay).
    Clear {
        #[command(flatten)]
        target: ScheduleTargetArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    Add {
        name: String,
        #[arg(long)]
        title: Option<String>,
        /// Most sites the client may have.
        #[arg(long)]
        quota: Option<i64>,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    Show {
        id: i64,
    },
    /// Print a task's log; --follow keeps printing until it ends.
    Log {
        id: i64,
        #[arg(long, short)]
        follow: bool,
    },
    Cancel {
        id: i64,
    },
    Retry {
        id: i64,
    },
    /// Queue a task that does nothing but wait (for testing the queue).
    #[command(hide = true)]
    Noop {
        #[arg(long, default_value_t = 1)]
        server: i64,
        #[arg(long)]
        platform: Option<i64>,
        #[arg(long)]
        site: Option<i64>,
        #[arg(long, default_value_t = 0)]
        sleep_ms: u64,
        #[arg(long = "file")]
        files: Vec<String>,
        #[arg(long)]
        fail: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// The HTTP API and UI pages under load: 10,000 sites and 100,000 tasks in a scratch SQLite state
    /// database, 50 concurrent clients; prints p50/p99 per page and the process's RSS.
    Web {
        #[arg(long, default_value_t = 10_000)]
        sites: i64,
        #[arg(long, default_value_t = 100_000)]
        tasks: i64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Requests per page measured.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Measure only this page (repeatable), e.g. `--page /sites` to profile one.
        #[arg(long = "page", value_name = "PATH")]
        pages: Vec<String>,
    },
    /// No-op tasks through the whole queue vs. bare INSERT+UPDATE statements.
    Queue {
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Sites the tasks are spread over.
        #[arg(long, default_value_t = 200)]
        sites: i64,
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Verify of many sites on one server (real nginx and PHP-FPM) vs. writing the same files.
    Verify {
        #[arg(long, default_value_t = 1000)]
        sites: usize,
        /// Uploads in each site's files directory (empty files, ten per directory, two levels deep),
        /// written as root before the first verify, which gives them to the site's user.
        #[arg(long, default_value_t = 0)]
        files_per_site: usize,
        /// Platform codebase [default: the Drupal 10 fixture under tests/fixtures/platforms].
        #[arg(long)]
        codebase: Option<String>,
    },
    /// Site installs on a fixture platform: Fjord's time beyond the application's own installer.
    Create {
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long)]
        codebase: Option<String>,
    },
    /// Backup, restore and clone of a generated MariaDB site vs. `mariadb-dump | gzip` + `tar czf`
    /// (and their reverse) in the same run.
    Backup {
        /// Size of the generated database and of the generated files, each, in MB.
        #[arg(long, default_value_t = 1024)]
        size_mb: u64,
        /// Leave out the clone measurement.
        #[arg(long)]
        no_clone: bool,
        #[command(flatten)]
        env: BenchEnv,
    },
    /// `platform migrate` of many small sites, `--parallel 2` vs. one at a time, with each site's downtime.
    Migrate {
        #[arg(long, default_value_t = 50)]
        sites: usize,
        #[command(flatten)]
        env: BenchEnv,
    },
}

/// Where the site benchmarks find MariaDB and put their data.
#[derive(Debug, Args)]
pub struct BenchEnv {
    /// MariaDB socket where root gets in by unix_socket auth (as `scripts/test.sh` starts it).
    #[arg(long, env = "FJORD_TEST_MARIADB_SOCKET")]
    pub mariadb_socket: String,
    /// The same MariaDB's TCP port on 127.0.0.1, for the sites' own accounts.
    #[arg(long, env = "FJORD_TEST_MARIADB_PORT", default_value_t = 3306)]
    pub mariadb_port: u16,
    /// Platform codebase [default: the Drupal 10 fixture under tests/fixtures/platforms].
    #[arg(long)]
    pub codebase: Option<String>,
    /// Directory for the bench's state, sites and archives (removed at the end) [default: the temp dir].
    #[arg(long)]
    pub dir: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
