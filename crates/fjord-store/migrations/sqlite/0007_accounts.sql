-- Accounts for the web UI and HTTP API (sqlite dialect; keep in step with the other dialect).
-- Users, clients and user_clients exist since 0001. Secrets are stored only as hashes: a session's id
-- and an API token as SHA-256 (they are long random strings), passwords as argon2 (in users).

-- A browser session: the cookie carries the random id, the table only its hash.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    csrf TEXT NOT NULL,
    remote_addr TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- An API token (Authorization: Bearer): scope 'read' or 'write', revoked by setting revoked_at.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Who did what, when, from where: one row per mutating request (API and UI) and per login.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    user_id INTEGER,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    remote_addr TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_ts ON audit_log (ts, id);

-- Paginated, filtered, sorted listings (listing.rs): sites by domain within a status, client or platform,
-- and tasks of a site newest first.
CREATE INDEX sites_status_domain ON sites (status, domain, id);
CREATE INDEX sites_client_domain ON sites (client_id, domain, id);
CREATE INDEX sites_platform_domain ON sites (platform_id, domain, id);
CREATE INDEX sites_domain ON sites (domain, id);
CREATE INDEX tasks_kind ON tasks (kind, id);
CREATE INDEX backups_site_id ON backups (site_id, id);
