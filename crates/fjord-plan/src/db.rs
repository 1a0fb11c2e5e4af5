//! Databases on MariaDB and PostgreSQL: the admin commands that create a site's database and user with
//! grants limited to that database and the web hosts, and that drop them. SQL goes on stdin and admin
//! credentials into 0600 temp files, never on argv. Names come from validated domains (letters and
//! digits only) and passwords from Fjord's own alphabet, so they need no escaping.

use crate::{PlanError, PlanResult};
use fjord_core::plan::{secret_gen, secret_ref};
use fjord_core::*;

/// The secret key of a site's database password.
pub fn site_password_key(site: &Site) -> String {
    format!("site-{}-db", site.id)
}

pub fn admin_password_key(server: &Server, engine: DbEngine) -> String {
    format!("server-{}-{}-admin", server.name, engine)
}

/// Hosts a site's database user may connect from: the web hosts (all local for now).
const WEB_HOSTS: &[&str] = &["localhost", "127.0.0.1"];

/// How an application reaches its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConnection {
    /// PDO-style driver name: mysql, pgsql, sqlite.
    pub driver: &'static str,
    pub database: String,
    pub username: String,
    /// A secret marker; the executor fills it in when writing the settings file.
    pub password: String,
    pub host: String,
    pub port: u16,
}

pub fn connection(server: Option<&Server>, site: &Site, sqlite_path: String) -> PlanResult<DbConnection> {
    let password = secret_gen(&site_password_key(site));
    match site.db_engine {
        DbEngine::Sqlite => Ok(DbConnection {
            driver: "sqlite",
            database: sqlite_path,
            username: String::new(),
            password: String::new(),
            host: String::new(),
            port: 0,
        }),
        engine => {
            let db = service(server, engine)?;
            Ok(DbConnection {
                driver: if engine == DbEngine::Mariadb { "mysql" } else { "pgsql" },
                database: site.db_name.clone(),
                username: site.db_user.clone(),
                password,
                host: db.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                port: db.port.unwrap_or(if engine == DbEngine::Mariadb { 3306 } else { 5432 }),
            })
        }
    }
}

fn service(server: Option<&Server>, engine: DbEngine) -> PlanResult<&DbService> {
    let server = server.ok_or_else(|| PlanError::Refused(format!("no database server for a {engine} site")))?;
    server.db(engine).ok_or_else(|| PlanError::Refused(format!("server {} offers no {engine} database", server.name)))
}

/// An admin command on the database server, with `sql` on stdin.
/// `psql` on the `postgres` database as `user`, stopping at the first error.
fn psql(host: &str, port: &str, user: &str) -> Command {
    Command::new(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", user, "-d", "postgres"])
}

pub fn admin(server: &Server, db: &DbService, sql: String) -> Command {
    match db.engine {
        DbEngine::Mariadb => {
            let mut cnf = format!("[client]\nuser={}\n", db.admin_user.as_deref().unwrap_or("root"));
            match (&db.socket, &db.host) {
                (Some(sock), _) => cnf.push_str(&format!("socket={sock}\n")),
                (None, Some(host)) => cnf.push_str(&format!("host={host}\nport={}\n", db.port.unwrap_or(3306))),
                (None, None) => {}
            }
            if db.admin_password {
                cnf.push_str(&format!("password={}\n", secret_ref(&admin_password_key(server, db.engine))));
            }
            Command::new(["mariadb", "--defaults-extra-file={tmp:admin.cnf}", "--batch", "--skip-column-names"])
                .file("admin.cnf", cnf)
                .stdin(sql)
                .timeout(120)
        }
        DbEngine::Postgres => {
            let host = db.socket.clone().or_else(|| db.host.clone()).unwrap_or_else(|| "127.0.0.1".into());
            let user = db.admin_user.clone().unwrap_or_else(|| "postgres".into());
            let port = db.port.unwrap_or(5432).to_string();
            let mut cmd = psql(&host, &port, &user).stdin(sql).timeout(120);
            if db.admin_password {
                cmd = cmd
                    .file("pgpass", format!("*:*:*:{user}:{}\n", secret_ref(&admin_password_key(server, db.engine))))
                    .env("PGPASSFILE", "{tmp:pgpass}");
            }
            cmd
        }
        DbEngine::Sqlite => unreachable!("SQLite has no admin connection"),
    }
}

fn create_sql(engine: DbEngine, name: &str, user: &str, password: &str) -> String {
    match engine {
        DbEngine::Mariadb => {
            let mut sql = format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;\n");
            for host in WEB_HOSTS {
                sql.push_str(&format!(
                    "CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{password}';\n\
                     ALTER USER '{user}'@'{host}' IDENTIFIED BY '{password}';\n\
                     GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}';\n"
                ));
            }
            sql
        }
        DbEngine::Postgres => format!(
            "SELECT 'CREATE ROLE \"{user}\" LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}')\\gexec\n\
             ALTER ROLE \"{user}\" WITH LOGIN PASSWORD '{password}';\n\
             SELECT 'CREATE DATABASE \"{name}\" OWNER \"{user}\" ENCODING ''UTF8'' TEMPLATE template0' \
             WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}')\\gexec\n\
             REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC;\n\
             GRANT ALL ON DATABASE \"{name}\" TO \"{user}\";\n"
        ),
        DbEngine::Sqlite => String::new(),
    }
}

fn drop_sql(engine: DbEngine, name: &str, user: &str) -> String {
    match engine {
        DbEngine::Mariadb => {
            let users: Vec<String> = WEB_HOSTS.iter().map(|h| format!("'{user}'@'{h}'")).collect();
            format!("DROP DATABASE IF EXISTS `{name}`;\nDROP USER IF EXISTS {};\n", users.join(", "))
        }
        DbEngine::Postgres => {
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE);\nDROP ROLE IF EXISTS \"{user}\";\n")
        }
        DbEngine::Sqlite => String::new(),
    }
}

/// Creates (or, for an existing site, re-asserts) the site's database, user, password and grants.
/// `undoable`: on install, undoing drops them again; on verify, nothing is undone.
pub fn ensure_site_db(server: Option<&Server>, site: &Site, undoable: bool) -> PlanResult<Option<Step>> {
    if site.db_engine == DbEngine::Sqlite {
        return Ok(None);
    }
    let db = service(server, site.db_engine)?;
    let server = server.expect("service() checked it");
    let password = secret_gen(&site_password_key(site));
    Ok(Some(Step::Run {
        label: format!("create {} database {} and user {}", site.db_engine, site.db_name, site.db_user),
        cmd: admin(server, db, create_sql(site.db_engine, &site.db_name, &site.db_user, &password)),
        undo: undoable.then(|| admin(server, db, drop_sql(site.db_engine, &site.db_name, &site.db_user))),
    }))
}

/// A step that fails when the site's database (and, with `user`, its user) already exists: Fjord never
/// takes over, fills or (on rollback) drops a database or account it did not create. Runs before the
/// step that creates them, and has nothing to undo.
pub fn ensure_absent(server: Option<&Server>, site: &Site, user: bool) -> PlanResult<Option<Step>> {
    if site.db_engine == DbEngine::Sqlite {
        return Ok(None);
    }
    let db = service(server, site.db_engine)?;
    let server = server.expect("service() checked it");
    let (name, account) = (&site.db_name, &site.db_user);
    let sql = match site.db_engine {
        DbEngine::Mariadb => {
            // The client splits statements at `;`: the block needs its own delimiter.
            let mut sql = format!(
                "DELIMITER //\nBEGIN NOT ATOMIC\n  IF EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}') THEN\n    \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'database {name} already exists and is not Fjord''s: refusing to use it';\n  END IF;\n"
            );
            if user {
                sql.push_str(&format!(
                    "  IF EXISTS (SELECT 1 FROM mysql.user WHERE User = '{account}') THEN\n    \
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'database user {account} already exists and is not Fjord''s: refusing to use it';\n  END IF;\n"
                ));
            }
            sql.push_str("END//\nDELIMITER ;\n");
            sql
        }
        _ => {
            let mut sql = format!(
                "DO $$ BEGIN\n  IF EXISTS (SELECT FROM pg_database WHERE datname = '{name}') THEN\n    \
                 RAISE EXCEPTION 'database {name} already exists and is not Fjord''s: refusing to use it';\n  END IF;\n"
            );
            if user {
                sql.push_str(&format!(
                    "  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{account}') THEN\n    \
                     RAISE EXCEPTION 'database user {account} already exists and is not Fjord''s: refusing to use it';\n  END IF;\n"
                ));
            }
            sql.push_str("END $$;\n");
            sql
        }
    };
    Ok(Some(Step::Run {
        label: format!("check that {} database {name} does not exist yet", site.db_engine),
        cmd: admin(server, db, sql),
        undo: None,
    }))
}

/// Drops the site's database and user.
pub fn drop_site_db(server: Option<&Server>, site: &Site) -> PlanResult<Option<Step>> {
    if site.db_engine == DbEngine::Sqlite {
        return Ok(None);
    }
    let db = service(server, site.db_engine)?;
    let server = server.expect("service() checked it");
    Ok(Some(Step::Run {
        label: format!("drop {} database {} and user {}", site.db_engine, site.db_name, site.db_user),
        cmd: admin(server, db, drop_sql(site.db_engine, &site.db_name, &site.db_user)),
        undo: None,
    }))
}

/// Proves the admin account can create a database and a user, grant, revoke, and clean up. The probe
/// names come from the server connection's id, so concurrent verifies never collide.
pub fn prove_admin(server: &Server, db: &DbService) -> Step {
    let sql = match db.engine {
        DbEngine::Mariadb => r#"SET @n = CONCAT('fjordprobe', CONNECTION_ID());
EXECUTE IMMEDIATE CONCAT('CREATE DATABASE `', @n, '`');
EXECUTE IMMEDIATE CONCAT('CREATE USER ''', @n, '''@''127.0.0.1'' IDENTIFIED BY ''probe-only''');
EXECUTE IMMEDIATE CONCAT('GRANT ALL PRIVILEGES ON `', @n, '`.* TO ''', @n, '''@''127.0.0.1''');
EXECUTE IMMEDIATE CONCAT('REVOKE ALL PRIVILEGES ON `', @n, '`.* FROM ''', @n, '''@''127.0.0.1''');
EXECUTE IMMEDIATE CONCAT('DROP USER ''', @n, '''@''127.0.0.1''');
EXECUTE IMMEDIATE CONCAT('DROP DATABASE `', @n, '`');
"#
        .to_string(),
        _ => r#"SELECT 'fjordprobe' || pg_backend_pid() AS n \gset
CREATE ROLE :"n" LOGIN PASSWORD 'probe-only';
CREATE DATABASE :"n" OWNER :"n";
GRANT ALL ON DATABASE :"n" TO :"n";
REVOKE ALL ON DATABASE :"n" FROM :"n";
DROP DATABASE :"n";
DROP ROLE :"n";
"#
        .to_string(),
    };
    Step::Run {
        label: format!("prove the {} admin account can create, grant, revoke and drop", db.engine),
        cmd: admin(server, db, sql),
        undo: None,
    }
}

/// The secret key of the throwaway account [`prove_site_path`] logs in with.
pub fn probe_password_key(server: &Server, engine: DbEngine) -> String {
    format!("server-{}-{engine}-probe", server.name)
}

/// How to prove a site's account will reach the database the way sites are configured to (the
/// service's host and port: sites never use the admin's socket): `(create, connect, drop)`, a
/// throwaway account `user` made by the admin, a login as it with the sites' connection options, and
/// its removal (run it whatever the login did). MariaDB and PostgreSQL.
pub fn prove_site_path(server: &Server, db: &DbService, user: &str) -> (Command, Command, Command) {
    let password = secret_gen(&probe_password_key(server, db.engine));
    let host = db.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let port = db.port.unwrap_or(if db.engine == DbEngine::Mariadb { 3306 } else { 5432 });
    match db.engine {
        DbEngine::Mariadb => {
            let hosts: Vec<String> = WEB_HOSTS.iter().map(|h| format!("'{user}'@'{h}'")).collect();
            let create =
                hosts.iter().map(|u| format!("CREATE OR REPLACE USER {u} IDENTIFIED BY '{password}';\n")).collect();
            let login =
                Command::new(["mariadb", "--defaults-extra-file={tmp:site.cnf}", "--batch", "--skip-column-names"])
                    .file(
                        "site.cnf",
                        format!("[client]\nuser={user}\npassword={password}\nhost={host}\nport={port}\nprotocol=tcp\n"),
                    )
                    .stdin("SELECT 1;\n".to_string())
                    .timeout(30);
            (
                admin(server, db, create),
                login,
                admin(server, db, format!("DROP USER IF EXISTS {};\n", hosts.join(", "))),
            )
        }
        _ => {
            let create =
                format!("DROP ROLE IF EXISTS \"{user}\";\nCREATE ROLE \"{user}\" LOGIN PASSWORD '{password}';\n");
            let port = port.to_string();
            let login = psql(&host, &port, user)
                .file("pgpass", format!("*:*:*:{user}:{password}\n"))
                .env("PGPASSFILE", "{tmp:pgpass}")
                .stdin("SELECT 1;\n".to_string())
                .timeout(30);
            (admin(server, db, create), login, admin(server, db, format!("DROP ROLE IF EXISTS \"{user}\";\n")))
        }
    }
}

/// A client command as the site's own database account: `argv` first, then the connection options,
/// then `tail`; the password goes in a 0600 temp file (MariaDB option file, PostgreSQL pgpass).
fn as_site(ctx: &crate::apps::SiteCtx, argv: &[&str], tail: &[&str]) -> Command {
    let c = &ctx.db;
    let mut args: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let cmd = match ctx.site.db_engine {
        DbEngine::Mariadb => {
            args.insert(1, "--defaults-extra-file={tmp:site.cnf}".into());
            args.extend(tail.iter().map(|a| a.to_string()));
            Command::new(args).file(
                "site.cnf",
                format!("[client]\nuser={}\npassword={}\nhost={}\nport={}\n", c.username, c.password, c.host, c.port),
            )
        }
        DbEngine::Postgres => {
            args.extend([
                "-h".into(),
                c.host.clone(),
                "-p".into(),
                c.port.to_string(),
                "-U".into(),
                c.username.clone(),
            ]);
            args.extend(tail.iter().map(|a| a.to_string()));
            Command::new(args)
                .file("pgpass", format!("*:*:*:{}:{}\n", c.username, c.password))
                .env("PGPASSFILE", "{tmp:pgpass}")
        }
        DbEngine::Sqlite => {
            args.extend(tail.iter().map(|a| a.to_string()));
            Command::new(args)
        }
    };
    cmd.timeout(6 * 3600)
}

/// The command that writes the site's database as SQL to stdout, with the site's own account.
/// MariaDB dumps in one consistent transaction without locking.
pub fn dump(ctx: &crate::apps::SiteCtx) -> PlanResult<Command> {
    let db = ctx.db.database.as_str();
    Ok(match ctx.site.db_engine {
        DbEngine::Mariadb => as_site(
            ctx,
            &["mariadb-dump", "--single-transaction", "--quick", "--skip-lock-tables", "--no-tablespaces"],
            &[db],
        ),
        DbEngine::Postgres => as_site(ctx, &["pg_dump", "--no-owner", "--no-privileges"], &[db]),
        DbEngine::Sqlite => as_site(ctx, &["sqlite3", "-readonly", db, ".dump"], &[]),
    })
}

/// A read-only query, as the site's own account the way the site connects, that fails unless every
/// one of `tables` exists in the site's database: proof an installer did its work.
pub fn check_tables(ctx: &crate::apps::SiteCtx, tables: &[&str]) -> Command {
    let db = ctx.db.database.as_str();
    let quote = |t: &str| match ctx.site.db_engine {
        DbEngine::Mariadb => format!("`{t}`"),
        _ => format!("\"{t}\""),
    };
    // Selecting no row from a table still fails when it does not exist.
    let sql: String = tables.iter().map(|t| format!("SELECT 1 FROM {} LIMIT 0;\n", quote(t))).collect();
    let cmd = match ctx.site.db_engine {
        DbEngine::Mariadb => as_site(ctx, &["mariadb", "--batch"], &[db]),
        DbEngine::Postgres => as_site(ctx, &["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], &["-d", db]),
        DbEngine::Sqlite => as_site(ctx, &["sqlite3", "-bail", "-readonly", db], &[]),
    };
    cmd.stdin(sql).timeout(120)
}

/// The dump a backup makes, and the tables it leaves without rows (`patterns`: the app's caches).
/// PostgreSQL takes the patterns as they are; `mariadb-dump` needs each table named, so the executor
/// lists them first; SQLite's `.dump` cannot leave rows out, so its archives keep them.
pub fn backup_dump(ctx: &crate::apps::SiteCtx, patterns: &[&str]) -> PlanResult<(Command, Option<CacheTables>)> {
    let mut dump = dump(ctx)?;
    if patterns.is_empty() {
        return Ok((dump, None));
    }
    let db = ctx.db.database.as_str();
    let mut cache =
        CacheTables { patterns: patterns.iter().map(|p| p.to_string()).collect(), list: None, skip_arg: String::new() };
    match ctx.site.db_engine {
        DbEngine::Mariadb => {
            let list =
                as_site(ctx, &["mariadb", "--batch", "--skip-column-names"], &[db]).stdin("SHOW TABLES;\n".to_string());
            cache.list = Some(list.timeout(120));
            cache.skip_arg = format!("--ignore-table-data={db}.");
        }
        DbEngine::Postgres => {
            for p in patterns {
                dump.insert_option(format!("--exclude-table-data={p}"));
            }
        }
        DbEngine::Sqlite => return Ok((dump, None)),
    }
    Ok((dump, Some(cache)))
}

/// The command that loads a dump (fed on stdin from `dump_file`) into the site's database, with the
/// site's own account.
pub fn import(ctx: &crate::apps::SiteCtx, dump_file: &str) -> PlanResult<Command> {
    let db = ctx.db.database.as_str();
    let mut cmd = match ctx.site.db_engine {
        DbEngine::Mariadb => as_site(ctx, &["mariadb", "--batch"], &[db]),
        DbEngine::Postgres => as_site(ctx, &["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], &["-d", db]),
        DbEngine::Sqlite => as_site(ctx, &["sqlite3", db], &[]),
    };
    cmd.stdin_file = Some(dump_file.to_string());
    Ok(cmd)
}

/// Drops a site's database only (its user stays: the site still uses it with another database).
pub fn drop_database(server: Option<&Server>, site: &Site) -> PlanResult<Option<Step>> {
    if site.db_engine == DbEngine::Sqlite {
        return Ok(None);
    }
    let db = service(server, site.db_engine)?;
    let server = server.expect("service() checked it");
    let sql = match site.db_engine {
        DbEngine::Mariadb => format!("DROP DATABASE IF EXISTS `{}`;\n", site.db_name),
        _ => format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE);\n", site.db_name),
    };
    Ok(Some(Step::Run {
        label: format!("drop the old database {}", site.db_name),
        cmd: admin(server, db, sql),
        undo: None,
    }))
}

/// The structure of the site's database without its rows (tables, views, triggers, routines), as the
/// site's own account: what a physical copy recreates before it brings in the tablespace files.
fn schema(ctx: &crate::apps::SiteCtx) -> Command {
    as_site(
        ctx,
        &["mariadb-dump", "--no-data", "--single-transaction", "--skip-lock-tables", "--no-tablespaces", "--routines"],
        &[ctx.db.database.as_str()],
    )
}

/// A MariaDB database described for a physical copy (see [`PhysicalDb`]): the server's admin client,
/// and, with `source`, the command that dumps its structure. `None` for the other engines.
pub fn physical(server: Option<&Server>, ctx: &crate::apps::SiteCtx, source: bool) -> PlanResult<Option<PhysicalDb>> {
    if ctx.site.db_engine != DbEngine::Mariadb {
        return Ok(None);
    }
    let db = service(server, DbEngine::Mariadb)?;
    let server = server.expect("service() checked it");
    let mut admin = admin(server, db, String::new()).timeout(6 * 3600);
    admin.stdin = None;
    Ok(Some(PhysicalDb { admin, database: ctx.db.database.clone(), schema: source.then(|| schema(ctx)), min_bytes: 0 }))
}
