//! Users, their clients, browser sessions, API tokens and the audit log. Secrets arrive here already
//! hashed (argon2 for passwords, SHA-256 for session ids and tokens): this crate never sees a password.

use crate::{now_millis, Store, StoreError, StoreResult};
use fjord_core::*;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

string_enum!(
    /// What an API token may do: `read` only GETs, `write` everything its user may do.
    TokenScope { Read = "read", Write = "write" }
);

/// A user with the hash of their password, for logging in.
#[derive(Debug, Clone)]
pub struct UserAuth {
    pub user: User,
    pub password_hash: Option<String>,
}

/// A live browser session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user_id: UserId,
    pub csrf: String,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: UserId,
    pub name: String,
    pub scope: TokenScope,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// One audit record: who (`actor`, `user_id`), what (`action` on `target`, `detail`), when, from where,
/// and whether it was accepted (`outcome`: `ok`, `denied`, `invalid`, `failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub ts: Millis,
    pub user_id: Option<UserId>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub remote_addr: Option<String>,
    pub outcome: String,
}

const USER_COLS: &str = "id, name, email, role, created_at, password_hash";
const TOKEN_COLS: &str = "id, user_id, name, scope, created_at, last_used_at, revoked_at";

fn user_row(row: &AnyRow) -> StoreResult<UserAuth> {
    let name: String = row.try_get("name")?;
    Ok(UserAuth {
        user: User {
            id: UserId(row.try_get("id")?),
            name: Name::parse("user", &name)
                .map_err(|e| StoreError::Corrupt { column: "name", detail: e.to_string() })?,
            email: row.try_get("email")?,
            role: crate::rows::text_enum(row, "role", Role::parse)?,
            created_at: row.try_get("created_at")?,
        },
        password_hash: row.try_get("password_hash")?,
    })
}

fn token_row(row: &AnyRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        name: row.try_get("name")?,
        scope: crate::rows::text_enum(row, "scope", TokenScope::parse)?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn not_found(what: &'static str, name: impl ToString) -> StoreError {
    StoreError::NotFound { what, name: name.to_string() }
}

impl Store {
    // ---- users ---------------------------------------------------------------------------------------

    pub async fn add_user(
        &self,
        name: &Name,
        email: Option<&str>,
        role: Role,
        password_hash: &str,
        clients: &[ClientId],
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let taken =
            sqlx::query("SELECT id FROM users WHERE name = $1").bind(name.as_str()).fetch_optional(&mut *tx).await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!("a user named {:?} already exists", name.as_str())));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO users (name, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {USER_COLS}"
        ))
        .bind(name.as_str())
        .bind(email)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_millis())
        .fetch_one(&mut *tx)
        .await?;
        let user = user_row(&row)?.user;
        for c in clients {
            sqlx::query("INSERT INTO user_clients (user_id, client_id) VALUES ($1, $2)")
                .bind(user.id.0)
                .bind(c.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    pub async fn users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY name")).fetch_all(&self.pool).await?;
        rows.iter().map(|r| user_row(r).map(|u| u.user)).collect()
    }

    pub async fn user(&self, id: UserId) -> StoreResult<User> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_row).transpose()?.ok_or_else(|| not_found("user", id))?.user)
    }

    /// A user and their password hash, by name.
    pub async fn user_auth(&self, name: &str) -> StoreResult<UserAuth> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()?.ok_or_else(|| not_found("user", name))
    }

    pub async fn user_count(&self, role: Option<Role>) -> StoreResult<i64> {
        let row = match role {
            Some(r) => sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = $1").bind(r.as_str()),
            None => sqlx::query("SELECT COUNT(*) AS n FROM users"),
        }
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Sets a user's password hash and ends their sessions but `keep_session` (the one that changed it).
    pub async fn set_password_hash(&self, id: UserId, hash: &str, keep_session: Option<&str>) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(not_found("user", id));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(id.0)
            .bind(keep_session.unwrap_or(""))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes a user's role and clients.
    pub async fn set_user_role(&self, id: UserId, role: Role, clients: &[ClientId]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_clients WHERE user_id = $1").bind(id.0).execute(&mut *tx).await?;
        for c in clients {
            sqlx::query("INSERT INTO user_clients (user_id, client_id) VALUES ($1, $2)")
                .bind(id.0)
                .bind(c.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user with their sessions, tokens and client memberships (the audit log keeps their name).
    pub async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for table in ["sessions", "api_tokens", "user_clients"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(id.0).execute(&mut *tx).await?;
        }
        let n = sqlx::query("DELETE FROM users WHERE id = $1").bind(id.0).execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            return Err(not_found("user", id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The clients a user belongs to.
    pub async fn user_clients(&self, id: UserId) -> StoreResult<Vec<ClientId>> {
        let rows = sqlx::query("SELECT client_id FROM user_clients WHERE user_id = $1 ORDER BY client_id")
            .bind(id.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(ClientId(r.try_get("client_id")?))).collect()
    }

    pub async fn client(&self, id: ClientId) -> StoreResult<Client> {
        let row = sqlx::query(&format!("SELECT {} FROM clients WHERE id = $1", crate::rows::CLIENT_COLS))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(crate::rows::client).transpose()?.ok_or_else(|| not_found("client", id))
    }

    // ---- sessions ------------------------------------------------------------------------------------

    pub async fn create_session(
        &self,
        id_hash: &str,
        user: UserId,
        csrf: &str,
        remote_addr: Option<&str>,
        expires_at: Millis,
    ) -> StoreResult<()> {
        let now = now_millis();
        // Expired sessions go whenever a new one starts, so the table stays small without a sweeper.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf, remote_addr, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(user.0)
        .bind(csrf)
        .bind(remote_addr)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id hash, if it exists and has not expired.
    pub async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT user_id, csrf, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2")
            .bind(id_hash)
            .bind(now_millis())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SessionRecord {
                user_id: UserId(r.try_get("user_id")?),
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(())
    }

    // ---- API tokens ----------------------------------------------------------------------------------

    pub async fn create_token(&self, user: UserId, name: &str, hash: &str, scope: TokenScope) -> StoreResult<ApiToken> {
        let row = sqlx::query(&format!(
            "INSERT INTO api_tokens (user_id, name, token_hash, scope, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {TOKEN_COLS}"
        ))
        .bind(user.0)
        .bind(name)
        .bind(hash)
        .bind(scope.as_str())
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
        token_row(&row)
    }

    /// Tokens, of one user if given, newest first (revoked ones too, marked).
    pub async fn tokens(&self, user: Option<UserId>) -> StoreResult<Vec<ApiToken>> {
        let rows = match user {
            Some(u) => {
                sqlx::query(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE user_id = $1 ORDER BY id DESC"))
                    .bind(u.0)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id DESC"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(token_row).collect()
    }

    pub async fn token(&self, id: i64) -> StoreResult<ApiToken> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_row).transpose()?.ok_or_else(|| not_found("token", id))
    }

    /// The live (not revoked) token with this hash; records its use.
    pub async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let row =
            sqlx::query(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        let Some(token) = row.as_ref().map(token_row).transpose()? else { return Ok(None) };
        let now = now_millis();
        // At most one write a minute per token: a busy automation should not turn reads into writes.
        if token.last_used_at.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token.id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(token))
    }

    pub async fn revoke_token(&self, id: i64) -> StoreResult<ApiToken> {
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.token(id).await
    }

    // ---- audit log -----------------------------------------------------------------------------------

    pub async fn audit(&self, e: &AuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (ts, user_id, actor, action, target, detail, remote_addr, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(if e.ts == 0 { now_millis() } else { e.ts })
        .bind(e.user_id.map(|u| u.0))
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .bind(&e.remote_addr)
        .bind(&e.outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit records, newest first.
    pub async fn audit_log(&self, offset: i64, limit: i64) -> StoreResult<crate::Page<AuditEntry>> {
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM audit_log").fetch_one(&self.pool).await?.try_get("n")?;
        let rows = sqlx::query(
            "SELECT id, ts, user_id, actor, action, target, detail, remote_addr, outcome FROM audit_log \
             ORDER BY ts DESC, id DESC LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    ts: r.try_get("ts")?,
                    user_id: r.try_get::<Option<i64>, _>("user_id")?.map(UserId),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: r.try_get("detail")?,
                    remote_addr: r.try_get("remote_addr")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(crate::Page { items, total, offset, limit })
    }
}

/// What the login limits look at, for one attempt: the failed logins since some time from its client
/// address, for its account, and for the account from that address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginFailures {
    /// From the address, any account, and the oldest of them.
    pub addr: i64,
    pub addr_oldest: Option<Millis>,
    /// For the account, from any address.
    pub account: i64,
    /// For the account from the address, and the newest of them.
    pub pair: i64,
    pub pair_newest: Option<Millis>,
}

impl Store {
    /// Records a login attempt for `account` from `addr` (counted as a failure until
    /// [`Store::forget_login_attempt`] or [`Store::clear_login_failures`]), forgetting attempts from
    /// before `forget_before`; returns its id.
    pub async fn begin_login_attempt(
        &self,
        account: &str,
        addr: &str,
        at: Millis,
        forget_before: Millis,
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM login_attempts WHERE at < $1").bind(forget_before).execute(&mut *tx).await?;
        let id: i64 = sqlx::query("INSERT INTO login_attempts (account, addr, at) VALUES ($1, $2, $3) RETURNING id")
            .bind(account)
            .bind(addr)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        tx.commit().await?;
        Ok(id)
    }

    /// The failed logins since `since` that concern an attempt for `account` from `addr`, other than
    /// the attempt `except` itself.
    pub async fn login_failures(
        &self,
        account: &str,
        addr: &str,
        since: Millis,
        except: i64,
    ) -> StoreResult<LoginFailures> {
        let row = sqlx::query(
            "SELECT
                 (SELECT COUNT(*) FROM login_attempts WHERE addr = $2 AND at >= $3 AND id <> $4) AS addr_n,
                 (SELECT MIN(at) FROM login_attempts WHERE addr = $2 AND at >= $3 AND id <> $4) AS addr_oldest,
                 (SELECT COUNT(*) FROM login_attempts WHERE account = $1 AND at >= $3 AND id <> $4) AS account_n,
                 (SELECT COUNT(*) FROM login_attempts
                   WHERE account = $1 AND addr = $2 AND at >= $3 AND id <> $4) AS pair_n,
                 (SELECT MAX(at) FROM login_attempts
                   WHERE account = $1 AND addr = $2 AND at >= $3 AND id <> $4) AS pair_newest",
        )
        .bind(account)
        .bind(addr)
        .bind(since)
        .bind(except)
        .fetch_one(&self.pool)
        .await?;
        Ok(LoginFailures {
            addr: row.try_get("addr_n")?,
            addr_oldest: row.try_get("addr_oldest")?,
            account: row.try_get("account_n")?,
            pair: row.try_get("pair_n")?,
            pair_newest: row.try_get("pair_newest")?,
        })
    }

    /// Dates a failed attempt when its answer was known (its password checked), which is when the
    /// wait before the next one starts.
    pub async fn login_attempt_failed(&self, id: i64, at: Millis) -> StoreResult<()> {
        sqlx::query("UPDATE login_attempts SET at = $2 WHERE id = $1").bind(id).bind(at).execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets one attempt (refused before its password was checked).
    pub async fn forget_login_attempt(&self, id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_attempts WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets the failed logins for `account` from `addr` (after a successful login from there). Other
    /// addresses' failures for the account stay counted: logging in does not reset an attacker's.
    pub async fn clear_login_failures(&self, account: &str, addr: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_attempts WHERE account = $1 AND addr = $2")
            .bind(account)
            .bind(addr)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::LoginFailures;

    /// The login counts, on every backend available (SQLite, and PostgreSQL when `FJORD_TEST_PG_URL`
    /// is set).
    #[tokio::test]
    async fn login_attempts_are_counted_per_address_and_per_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (label, store) in crate::testing::all_backends(dir.path()).await.expect("stores") {
            store.begin_login_attempt("admin", "a", 100, 0).await.expect("old");
            let a1 = store.begin_login_attempt("admin", "a", 1000, 0).await.expect("a1");
            store.login_attempt_failed(a1, 1500).await.expect("dated");
            store.begin_login_attempt("bob", "a", 1200, 0).await.expect("bob");
            store.begin_login_attempt("admin", "b", 1300, 0).await.expect("b");
            let mine = store.begin_login_attempt("admin", "a", 2000, 0).await.expect("mine");
            let f = store.login_failures("admin", "a", 500, mine).await.expect("counts");
            let want = LoginFailures { addr: 2, addr_oldest: Some(1200), account: 2, pair: 1, pair_newest: Some(1500) };
            assert_eq!(f, want, "{label}");
            assert_eq!(store.login_failures("admin", "a", 0, mine).await.expect("counts").pair, 2, "{label}");
            let none = store.login_failures("carol", "c", 0, 0).await.expect("counts");
            assert_eq!(none, LoginFailures::default(), "{label}");
            // Refused unchecked, cleared by a success there, pruned when old: another address's stay.
            store.forget_login_attempt(mine).await.expect("forgotten");
            store.clear_login_failures("admin", "a").await.expect("cleared");
            let f = store.login_failures("admin", "a", 0, 0).await.expect("counts");
            assert_eq!((f.addr, f.account, f.pair), (1, 1, 0), "{label}");
            store.begin_login_attempt("dave", "d", 5000, 1250).await.expect("pruning");
            let f = store.login_failures("admin", "b", 0, 0).await.expect("counts");
            assert_eq!((f.addr, f.account, f.pair), (1, 1, 1), "{label}");
            assert_eq!(store.login_failures("bob", "a", 0, 0).await.expect("counts").addr, 0, "{label}");
        }
    }
}
