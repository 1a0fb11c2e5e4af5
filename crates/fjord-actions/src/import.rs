//! Adopting a site that already exists on a platform with its database: `fjord site import`, the API's
//! `POST /api/sites/import`, and the daemon's adoption of unknown sites a platform verify found all
//! come here. The site is recorded with its existing database (never copied, never dropped) and its
//! `site-import` task queued; the database password goes to the secrets store, never the state
//! database, before the task can be seen.

use crate::error::{ActionError, ActionResult};
use crate::{field_not_found, parse_aliases, parse_enum, Actions, Outcome};
use fjord_core::*;
use fjord_store::NewSite;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An existing site to adopt.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteImport {
    pub domain: String,
    /// The platform's name.
    pub platform: String,
    /// `mariadb` or `postgres`.
    pub db_engine: String,
    /// The existing database.
    pub db_name: String,
    /// Its user (default: the database name).
    #[serde(default)]
    pub db_user: Option<String>,
    /// That user's password; kept in Fjord's secrets store.
    #[serde(skip_serializing)]
    pub db_password: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub php: Option<String>,
    /// The client's name.
    #[serde(default)]
    pub client: Option<String>,
}

// By hand, so the password never reaches a log line.
impl std::fmt::Debug for SiteImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteImport")
            .field("domain", &self.domain)
            .field("platform", &self.platform)
            .field("db_engine", &self.db_engine)
            .field("db_name", &self.db_name)
            .field("db_user", &self.db_user)
            .field("db_password", &"…")
            .field("aliases", &self.aliases)
            .field("php", &self.php)
            .field("client", &self.client)
            .finish()
    }
}

/// A database identifier as Fjord will use it in SQL and settings: plain.
fn db_identifier(field: &str, s: &str) -> ActionResult<String> {
    if s.is_empty() || s.len() > 63 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ActionError::invalid(field, format!("invalid {field} {s:?}: letters, digits, _ and - only")));
    }
    Ok(s.to_string())
}

impl Actions<'_> {
    /// Records an existing site and queues its import (a dry run: the import's plan, nothing written).
    pub async fn import_site(
        &self,
        i: &SiteImport,
        created_by: &str,
        dry_run: bool,
    ) -> ActionResult<(Option<Site>, Outcome)> {
        let domain = Domain::parse(&i.domain)?;
        let aliases = parse_aliases(&i.aliases)?;
        let db_engine: DbEngine = parse_enum("db_engine", &i.db_engine)?;
        if db_engine == DbEngine::Sqlite {
            return Err(ActionError::invalid(
                "db_engine",
                "importing SQLite sites is not supported yet: their database file would have to move into Fjord's site directory",
            ));
        }
        let db_name = db_identifier("db_name", &i.db_name)?;
        let db_user = db_identifier("db_user", i.db_user.as_deref().unwrap_or(&i.db_name))?;
        let password = i.db_password.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() || password.contains(['\'', '\\', '\n']) {
            return Err(ActionError::invalid(
                "db_password",
                "the password must be one line without quotes or backslashes",
            ));
        }
        if let Some(v) = &i.php {
            fjord_core::names::validate_token("php", v, 16)?;
        }
        let platform = self.store.platform_by_name(&i.platform).await.map_err(|e| field_not_found(e, "platform"))?;
        let server = self.store.server(platform.server_id).await?;
        if !server.db_engines().any(|e| e == db_engine) {
            return Err(ActionError::invalid(
                "db_engine",
                format!("server {} offers no {db_engine} database", server.name),
            ));
        }
        let client = self.client_id(i.client.as_deref()).await?;
        let new = NewSite {
            domain,
            platform: platform.id,
            db_server: Some(server.id),
            db_engine,
            php: i.php.clone(),
            profile: None,
            language: "en".into(),
            client,
            aliases,
            redirect_aliases: false,
            https: HttpsMode::Off,
            cron_interval: Some(3600),
            existing_db: Some((db_name, db_user)),
        };
        let prospective = self.store.prepare_site(&new).await?;
        let snap = Snapshot::of_new_site(server, platform, prospective);
        let args = serde_json::json!({});
        let planned = self.plan_new(TaskKind::SiteImport, &args, &snap)?;
        if dry_run {
            return Ok((None, Outcome::Planned(planned)));
        }
        // The site keeps its password (the grants step re-asserts the same one): stored before the
        // import can be claimed, so no daemon generates another; gone again if the record is not made.
        let secrets = self.secrets()?;
        let mut stored = None;
        let created = self
            .store
            .create_site_then(&new, created_by, Some((TaskKind::SiteImport, args)), |site| {
                let key = fjord_plan::db::site_password_key(site);
                secrets.put(&key, &fjord_exec::Secret::new(password)).map_err(|e| format!("{e:#}"))?;
                stored = Some(key);
                Ok(())
            })
            .await;
        match created {
            Ok((site, Some(task))) => Ok((Some(site), Outcome::Queued(task))),
            Ok((_, None)) => Err(ActionError::Internal("an import without its task".into())),
            Err(e) => {
                if let Some(key) = stored {
                    let _ = secrets.delete(&key);
                }
                Err(e.into())
            }
        }
    }
}

/// A Drupal site's database settings, read by PHP from its `settings.php` (as drush would), as an
/// import request on `platform`. `php` is the CLI to run.
pub async fn drupal_db_settings(
    php: &str,
    web: &std::path::Path,
    domain: &Domain,
    platform: &Platform,
) -> Result<SiteImport, String> {
    let db = fjord_exec::probe::drupal_db_settings(php, web, domain.as_str()).await?;
    let field = |k: &str| db[k].as_str().map(String::from).or_else(|| db[k].as_i64().map(|n| n.to_string()));
    let engine = match field("driver").as_deref() {
        Some("mysql") => DbEngine::Mariadb,
        Some("pgsql") => DbEngine::Postgres,
        Some(other) => {
            return Err(format!("its {other} database cannot be adopted automatically; use `fjord site import`"))
        }
        None => return Err("no database driver in its settings".into()),
    };
    let (Some(name), Some(user), Some(password)) = (field("database"), field("username"), field("password")) else {
        return Err("incomplete database settings".into());
    };
    Ok(SiteImport {
        domain: domain.to_string(),
        platform: platform.name.to_string(),
        db_engine: engine.to_string(),
        db_name: name,
        db_user: Some(user),
        db_password: password,
        aliases: vec![],
        php: None,
        client: None,
    })
}
