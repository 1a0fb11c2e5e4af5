-- Fjord state, PostgreSQL dialect. Keep in step with ../sqlite/0001_initial.sql: same tables, same columns,
-- same meaning. Times are milliseconds since the Unix epoch; booleans are 0/1 integers.

CREATE TABLE servers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    services TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX servers_name ON servers (name) WHERE status <> 'deleted';

CREATE TABLE platforms (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    server_id BIGINT NOT NULL REFERENCES servers (id),
    root TEXT NOT NULL,
    docroot TEXT,
    source TEXT NOT NULL,
    app TEXT,
    app_version TEXT,
    locked BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    verified_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX platforms_name ON platforms (name) WHERE status <> 'deleted';

CREATE TABLE clients (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    site_quota BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT,
    password_hash TEXT,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE user_clients (
    user_id BIGINT NOT NULL REFERENCES users (id),
    client_id BIGINT NOT NULL REFERENCES clients (id),
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE sites (
    id BIGSERIAL PRIMARY KEY,
    domain TEXT NOT NULL,
    platform_id BIGINT NOT NULL REFERENCES platforms (id),
    db_server_id BIGINT REFERENCES servers (id),
    db_engine TEXT NOT NULL,
    db_name TEXT NOT NULL,
    db_user TEXT NOT NULL,
    php TEXT,
    profile TEXT,
    language TEXT NOT NULL,
    client_id BIGINT REFERENCES clients (id),
    redirect_aliases BIGINT NOT NULL DEFAULT 0,
    https TEXT NOT NULL,
    status TEXT NOT NULL,
    cron_interval BIGINT,
    last_cron_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sites_platform ON sites (platform_id);
CREATE INDEX sites_status ON sites (status);
CREATE UNIQUE INDEX sites_db_name ON sites (db_server_id, db_name) WHERE status <> 'deleted';

-- Every host name a live site answers to (main domain and aliases) is unique across all live sites.
CREATE TABLE site_domains (
    domain TEXT PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites (id),
    is_alias BIGINT NOT NULL
);
CREATE INDEX site_domains_site ON site_domains (site_id);

CREATE TABLE backups (
    id BIGSERIAL PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites (id),
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    checksum TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX backups_site ON backups (site_id);

CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id BIGINT NOT NULL,
    lane_server BIGINT NOT NULL,
    lane_platform BIGINT,
    lane_site BIGINT,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL DEFAULT 3,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    plan TEXT,
    error TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    run_after BIGINT NOT NULL
);
-- The claim query looks only at active tasks; these partial indexes keep it cheap however long the
-- history grows.
CREATE INDEX tasks_active ON tasks (id) WHERE status IN ('queued', 'running', 'interrupted');
CREATE INDEX tasks_active_lane ON tasks (lane_server, lane_platform, lane_site, id)
    WHERE status IN ('queued', 'running', 'interrupted');
CREATE INDEX tasks_target ON tasks (target_kind, target_id, id);
CREATE INDEX tasks_status ON tasks (status, id);

CREATE TABLE task_steps (
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    idx BIGINT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    undo TEXT,
    PRIMARY KEY (task_id, idx)
);

CREATE TABLE task_log (
    seq BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks (id),
    ts BIGINT NOT NULL,
    level TEXT NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX task_log_task ON task_log (task_id, seq);
