-- Failed logins, counted by `fjord serve`'s login rate limits: one row per failure and key (the
-- address with the user name, and the address alone), so a restart of `fjord serve`, or a second
-- one on the same database, still counts them. Rows older than the window are pruned.
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (key, at);
