//! A site's settings page (`/sites/{domain}/settings`): aliases, HTTPS and its certificate, PHP limits
//! and runtime, isolation, health marker, content sync from another site, and cron now. Each form posts to
//! `/sites/{domain}/settings/{form}`, calls the API handler that does it, and on a refusal shows the
//! page again with the error next to its field.

use super::{see_other, FormErrors, UiResult, Viewer};
use crate::api::site_settings as api;
use crate::api::sites as api_sites;
use crate::csrf::CsrfForm;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::{AppState, SiteAction};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fjord_core::*;
use fjord_store::SiteQuery;
use minijinja::{context, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Every field of every form on the page; each form sends its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsForm {
    add_alias: Option<String>,
    remove_alias: Option<String>,
    redirect_aliases: Option<String>,
    max_children: Option<String>,
    memory_limit: Option<String>,
    upload_max: Option<String>,
    max_execution_time: Option<String>,
    runtime: Option<String>,
    mode: Option<String>,
    marker: Option<String>,
    from: Option<String>,
    db: Option<String>,
    files: Option<String>,
    https_mode: Option<String>,
    hsts: Option<String>,
    self_signed: Option<String>,
}

/// What a failed form brings back to the page: its values and errors.
#[derive(Default)]
struct Shown {
    form: BTreeMap<&'static str, String>,
    errors: HashMap<&'static str, FormErrors>,
}

async fn page(state: &AppState, v: &Viewer, domain: &str, status: StatusCode, shown: Shown) -> UiResult {
    let site = api_sites::site_for(state, &v.0, domain, SiteAction::View).await?;
    let platform = state.store.platform(site.platform_id).await?;
    let server = state.store.server(platform.server_id).await?;
    let can = |a| v.0.can_site(&site, a);
    let can_v = context! {
        settings => can(SiteAction::Settings), aliases => can(SiteAction::Aliases),
        sync => can(SiteAction::Restore), cron => can(SiteAction::Verify),
    };
    let runtimes: Vec<(String, String)> =
        server.php_runtimes().map(|r| (r.key().to_string(), format!("{} (PHP {})", r.key(), r.version))).collect();
    let current_runtime = site.php.clone().or_else(|| server.php_runtimes().next().map(|r| r.key().to_string()));
    // The sites this one can be synced from: the others the viewer may see.
    let others: Vec<(String, String)> = if can(SiteAction::Restore) {
        let q = SiteQuery { only_clients: v.0.only_clients(), limit: 500, ..Default::default() };
        state
            .store
            .list_sites(&q)
            .await?
            .items
            .into_iter()
            .filter(|s| s.id != site.id && s.status != SiteStatus::Deleted)
            .map(|s| (s.domain.to_string(), s.domain.to_string()))
            .collect()
    } else {
        vec![]
    };
    let errors: HashMap<&str, Value> = shown
        .errors
        .into_iter()
        .map(|(k, e)| {
            let mut fields = e.fields;
            if let Some(g) = e.general {
                fields.insert("general".into(), g);
            }
            (k, Value::from_serialize(&fields))
        })
        .collect();
    let l = &site.php_limits;
    let mut form: BTreeMap<&str, String> = BTreeMap::from([
        ("max_children", l.max_children.to_string()),
        ("memory_limit", l.memory_limit.clone()),
        ("upload_max", l.upload_max.clone()),
        ("max_execution_time", l.max_execution_time.to_string()),
        ("runtime", current_runtime.unwrap_or_default()),
        ("mode", site.isolation.to_string()),
        ("marker", site.health_marker.clone().unwrap_or_default()),
        ("https_mode", site.https.to_string()),
    ]);
    form.extend(shown.form);
    let site_v = context! {
        domain => site.domain.as_str(), status => site.status.as_str(),
        aliases => site.aliases.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        redirect_aliases => site.redirect_aliases, has_client => site.client_id.is_some(),
        hsts => site.tls.hsts, self_signed => site.tls.source == CertSource::SelfSigned,
    };
    let alias_options: Vec<(String, String)> = std::iter::once((String::new(), "—".to_string()))
        .chain(site.aliases.iter().map(|a| (a.to_string(), a.to_string())))
        .collect();
    v.page_with_status(
        status,
        "site_settings.html",
        "sites",
        context! { site => site_v, can => can_v, runtimes, others, alias_options, form, errors },
    )
}

pub async fn show(State(state): State<AppState>, v: Viewer, Path(domain): Path<String>) -> UiResult {
    page(&state, &v, &domain, StatusCode::OK, Shown::default()).await
}

fn text(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn number(field: &'static str, v: &Option<String>) -> Result<Option<u32>, ApiError> {
    text(v)
        .map(|s| s.parse::<u32>().map_err(|_| ApiError::invalid(field, format!("{field}: a whole number, e.g. 8"))))
        .transpose()
}

/// One form's post: `form` names it. Success shows the queued task (or the page again, for the health
/// marker, which queues nothing).
pub async fn post(
    State(state): State<AppState>,
    v: Viewer,
    Path((domain, form)): Path<(String, String)>,
    CsrfForm(f): CsrfForm<SettingsForm>,
) -> UiResult {
    let (s, a, d) = (State(state.clone()), v.0.clone(), ApiPath(domain.clone()));
    let (known, outcome): (&[&str], Result<Option<i64>, ApiError>) = match form.as_str() {
        "aliases" => {
            let req = api_sites::AliasesRequest {
                add: text(&f.add_alias).into_iter().collect(),
                remove: text(&f.remove_alias).into_iter().collect(),
                redirect: Some(f.redirect_aliases.is_some()),
                www: false,
            };
            let r = api_sites::aliases(s, a, d, ApiJson(req)).await.map(|q| Some(q.0.id.0));
            (&["add", "remove", "add_alias", "remove_alias"], r)
        }
        "php-limits" => {
            let r = async {
                let req = fjord_actions::PhpLimitsChange {
                    max_children: number("max_children", &f.max_children)?,
                    memory_limit: text(&f.memory_limit),
                    upload_max: text(&f.upload_max),
                    max_execution_time: number("max_execution_time", &f.max_execution_time)?,
                };
                api::php_limits(s, a, d, ApiJson(req)).await.map(|q| Some(q.0.id.0))
            }
            .await;
            (&["max_children", "memory_limit", "upload_max", "max_execution_time"], r)
        }
        "php" => {
            let req = api::PhpRuntimeChoice { runtime: f.runtime.clone().unwrap_or_default() };
            (&["runtime"], api::php_runtime(s, a, d, ApiJson(req)).await.map(|q| Some(q.0.id.0)))
        }
        "isolation" => {
            let req = api::IsolationChoice { mode: f.mode.clone().unwrap_or_default() };
            (&["mode"], api::isolation(s, a, d, ApiJson(req)).await.map(|q| Some(q.0.id.0)))
        }
        "health-marker" => {
            let req = api::HealthMarker { text: text(&f.marker) };
            (&["text"], api::health_marker(s, a, d, ApiJson(req)).await.map(|_| None))
        }
        "sync" => {
            let req = fjord_actions::SyncRequest {
                from: f.from.clone().unwrap_or_default(),
                db: f.db.is_some(),
                files: f.files.is_some(),
            };
            (&["from", "db"], api::sync(s, a, d, ApiJson(req)).await.map(|q| Some(q.0.id.0)))
        }
        "cron" => (&[], api::cron(s, a, d).await.map(|q| Some(q.0.id.0))),
        "https" => {
            let req = fjord_actions::HttpsChange {
                mode: f.https_mode.clone().unwrap_or_default(),
                hsts: Some(f.hsts.is_some()),
                self_signed: f.self_signed.is_some(),
            };
            (&["mode", "self_signed"], api::https(s, a, d, ApiJson(req)).await.map(|q| Some(q.0.id.0)))
        }
        "cert" => {
            let req = fjord_actions::CertChange { self_signed: f.self_signed.is_some(), ..Default::default() };
            let r = api::cert(s, a, d, ApiJson(req)).await;
            (&["self_signed"], r.map(|j| j.0["task"]["id"].as_i64()))
        }
        _ => return Err(ApiError::not_found("form", form).into()),
    };
    match outcome {
        Ok(Some(task)) => Ok(see_other(&format!("/tasks/{task}"))),
        Ok(None) => Ok(see_other(&format!("/sites/{domain}/settings"))),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict(_) | ApiError::BadRequest { .. })) => {
            let key: &'static str = match form.as_str() {
                "aliases" => "aliases",
                "php-limits" => "php_limits",
                "php" => "php",
                "isolation" => "isolation",
                "health-marker" => "marker",
                "sync" => "sync",
                "https" | "cert" => "https",
                _ => "cron",
            };
            let mut shown = Shown::default();
            let sent = [
                ("add_alias", &f.add_alias),
                ("max_children", &f.max_children),
                ("memory_limit", &f.memory_limit),
                ("upload_max", &f.upload_max),
                ("max_execution_time", &f.max_execution_time),
                ("runtime", &f.runtime),
                ("mode", &f.mode),
                ("marker", &f.marker),
                ("from", &f.from),
            ];
            for (k, val) in sent {
                if let Some(val) = val {
                    shown.form.insert(k, val.clone());
                }
            }
            shown.errors.insert(key, FormErrors::from_error(&e, known, &[("text", "marker")]));
            page(&state, &v, &domain, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(e) => Err(e.into()),
    }
}
