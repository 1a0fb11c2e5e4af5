//! `fjord user` and `fjord token`: accounts of the web UI and API, managed by the operator locally.
//! Validation and hashing are fjord-web's (the same code the API runs); changes are audited as `cli:USER`.

use super::Ctx;
use crate::cli::{TokenCmd, UserCmd};
use crate::output::{table, when};
use anyhow::{bail, Context as _, Result};
use fjord_actions::{Actions, UserCreate};
use fjord_store::{AuditEntry, Store, TokenScope};
use std::io::Read as _;
use std::process::ExitCode;

/// A password from stdin (first line), or a generated one; the flag says which.
pub fn password_from(stdin: bool) -> Result<(String, bool)> {
    if !stdin {
        return Ok((fjord_web::auth::generate_password(), true));
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("reading the password from stdin")?;
    let password = text.lines().next().unwrap_or("").to_string();
    fjord_web::auth::check_password(&password)?;
    Ok((password, false))
}

pub async fn audit_cli(ctx: &Ctx, store: &Store, action: &str, target: &str, detail: &str) -> Result<()> {
    store
        .audit(&AuditEntry {
            id: 0,
            ts: 0,
            user_id: None,
            actor: ctx.actor(),
            action: action.into(),
            target: target.into(),
            detail: detail.into(),
            remote_addr: None,
            outcome: "ok".into(),
        })
        .await?;
    Ok(())
}

pub async fn user(ctx: &mut Ctx, cmd: UserCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    let layout = ctx.layout();
    match cmd {
        UserCmd::Add { name, role, clients, email, password_stdin } => {
            let (password, generated) = password_from(password_stdin)?;
            let req = UserCreate { name, email, role, password: password.clone(), clients };
            if ctx.global.dry_run {
                println!("dry run: would add user {}; nothing was changed", req.name);
                return Ok(ExitCode::SUCCESS);
            }
            let user = Actions::new(&store, &layout).add_user(&req).await?;
            audit_cli(ctx, &store, "user.add", &format!("user:{}", user.name), user.role.as_str()).await?;
            let shown = generated.then_some(password);
            ctx.out.emit(&serde_json::json!({ "user": user, "password": shown }), || {
                println!("user {} added ({})", user.name, user.role);
                if let Some(p) = &shown {
                    println!("password: {p}   (shown only now)");
                }
            });
        }
        UserCmd::List => {
            let users = store.users().await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for u in &users {
                let mut names = Vec::new();
                for c in store.user_clients(u.id).await? {
                    names.push(store.client(c).await?.name.to_string());
                }
                rows.push(vec![u.name.to_string(), u.role.to_string(), names.join(","), when(Some(u.created_at))]);
                json.push(serde_json::json!({ "user": u, "clients": names }));
            }
            ctx.out.emit(&json, || table(&["name", "role", "clients", "created"], &rows));
        }
        UserCmd::Passwd { name, password_stdin } => {
            let user = store.user_auth(&name).await?.user;
            let (password, generated) = password_from(password_stdin)?;
            let hash = fjord_web::auth::hash_password(&password)?;
            store.set_password_hash(user.id, &hash, None).await?;
            audit_cli(ctx, &store, "password.set", &format!("user:{name}"), "").await?;
            let shown = generated.then_some(password);
            ctx.out.emit(&serde_json::json!({ "user": name, "password": shown }), || {
                println!("password of {name} set; their sessions were ended");
                if let Some(p) = &shown {
                    println!("password: {p}   (shown only now)");
                }
            });
        }
        UserCmd::Delete { name } => {
            let user = store.user_auth(&name).await?.user;
            if user.role == fjord_core::Role::Admin && store.user_count(Some(fjord_core::Role::Admin)).await? <= 1 {
                bail!("{name} is the last admin; add another admin first");
            }
            store.delete_user(user.id).await?;
            audit_cli(ctx, &store, "user.delete", &format!("user:{name}"), "").await?;
            ctx.out.emit(&serde_json::json!({ "deleted": name }), || println!("user {name} deleted"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(ctx: &mut Ctx, cmd: TokenCmd) -> Result<ExitCode> {
    let store = ctx.store().await?;
    match cmd {
        TokenCmd::Create { user, name, scope } => {
            let scope: TokenScope = scope.parse().map_err(|e| anyhow::anyhow!("invalid --scope: {e}"))?;
            let owner = store.user_auth(&user).await?.user;
            if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                bail!("--name must be one line of 1 to 100 bytes");
            }
            let secret = format!("{}{}", fjord_web::auth::TOKEN_PREFIX, fjord_web::auth::random_secret(32));
            let token = store.create_token(owner.id, &name, &fjord_web::auth::secret_hash(&secret), scope).await?;
            audit_cli(ctx, &store, "token.create", &format!("user:{user}"), &name).await?;
            ctx.out.emit(&serde_json::json!({ "token": token, "secret": secret }), || {
                println!("token {} ({scope}) for {user}: {secret}", token.id);
                println!("shown only now; keep it in a 0600 file (FJORD_TOKEN_FILE) or FJORD_TOKEN");
            });
        }
        TokenCmd::List { user } => {
            let owner = match &user {
                Some(u) => Some(store.user_auth(u).await?.user.id),
                None => None,
            };
            let tokens = store.tokens(owner).await?;
            let users = store.users().await?;
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        users.iter().find(|u| u.id == t.user_id).map(|u| u.name.to_string()).unwrap_or_default(),
                        t.name.clone(),
                        t.scope.to_string(),
                        when(t.last_used_at),
                        if t.revoked_at.is_some() { "revoked".into() } else { "live".into() },
                    ]
                })
                .collect::<Vec<_>>();
            ctx.out.emit(&tokens, || table(&["id", "user", "name", "scope", "last used", "state"], &rows));
        }
        TokenCmd::Revoke { id } => {
            let t = store.revoke_token(id).await?;
            audit_cli(ctx, &store, "token.revoke", &format!("token:{id}"), &t.name).await?;
            ctx.out.emit(&t, || println!("token {id} ({}) revoked", t.name));
        }
    }
    Ok(ExitCode::SUCCESS)
}
