-- Login attempts that did not succeed, counted apart per account and per client address (postgres
-- dialect; keep in step with the other dialect). An attempt is written before its password is
-- checked, so guesses sent in parallel see each other, and deleted if it succeeds or is refused
-- unchecked. The old table counted one string key per address and name pair; its rows only mattered
-- for a 15-minute window and are dropped.
DROP TABLE login_failures;
CREATE TABLE login_attempts (
    id BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    addr TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_attempts_account_at ON login_attempts (account, addr, at);
CREATE INDEX login_attempts_addr_at ON login_attempts (addr, at);
CREATE INDEX login_attempts_at ON login_attempts (at);
