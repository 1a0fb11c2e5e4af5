#!/usr/bin/env bash
# Fjord: run every test (fmt, clippy, cargo test) against real local services.
#
# Meant for a fresh Debian bookworm machine, run as root, without systemd or
# docker. It installs the system packages the tests need (only when missing),
# starts a throwaway PostgreSQL 15 on loopback, runs the checks, and always
# stops the server and deletes its data on exit, so it is safe to re-run.
#
# Usage: scripts/test.sh [extra args passed to `cargo test --workspace`]
#   e.g. scripts/test.sh -p fjord-store -- --nocapture
#
# Environment:
#   FJORD_TEST_ONLY_SERVICES=1  install packages, start the services, run
#                               `select version()` through psql, then stop and
#                               exit without running cargo. Handy for
#                               checking the service setup on its own.
#   FJORD_TEST_PG_PORT=N        start the search for a free Postgres port at N
#                               (default 55432).
#
# Exported to the tests:
#   FJORD_TEST_SERVICES=1       the real services (postgres, nginx, php-fpm,
#                               mariadb, sqlite3, ...) are installed.
#   FJORD_TEST_PG_URL           postgres://postgres@127.0.0.1:PORT/fjord_test
#   FJORD_TEST_PG_ADMIN_URL     same server, database `postgres` (for tests
#                               that create their own databases).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
# rustup installs cargo here; a non-login shell (CI) may not have it on PATH.
export PATH="$HOME/.cargo/bin:$PATH"

banner() {
    printf '\n==================== %s ====================\n' "$*"
}

if [[ $EUID -ne 0 ]]; then
    echo "test.sh: must run as root (installs packages, runs postgres as the postgres user)" >&2
    exit 1
fi

# ---------------------------------------------------------------------------
# System packages
# ---------------------------------------------------------------------------
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_CREATED=""    # set if we created POLICY_RC and must remove it

PACKAGES=(
    postgresql postgresql-client
    nginx-light
    php8.2-fpm php8.2-cli php8.2-mysql php8.2-pgsql php8.2-sqlite3
    php8.2-gd php8.2-xml php8.2-mbstring php8.2-curl
    mariadb-server mariadb-client
    sqlite3 rsync git pkg-config build-essential
)

# `dpkg -s` also succeeds for removed-but-not-purged packages, so look at the
# actual status string.
is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        echo "all system packages already installed"
        return
    fi
    echo "installing: ${missing[*]}"

    # Without systemd, package postinst scripts start daemons through
    # invoke-rc.d (postgresql's main cluster on :5432, nginx, mariadb,
    # php-fpm). Tests start what they need themselves, so forbid that with a
    # temporary policy-rc.d (exit 101 = "action not allowed"), unless the
    # machine already has one (docker images do). cleanup() also removes it,
    # so it cannot outlive a failed apt run or an interrupt.
    if [[ ! -e $POLICY_RC ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_CREATED=1
    fi

    export DEBIAN_FRONTEND=noninteractive
    apt-get -q update
    apt-get -q -y install "${missing[@]}"

    if [[ -n $POLICY_RC_CREATED ]]; then
        rm -f "$POLICY_RC"
        POLICY_RC_CREATED=""
    fi
}

# ---------------------------------------------------------------------------
# Throwaway PostgreSQL server
# ---------------------------------------------------------------------------
PG_DIR=""     # temp dir holding data/, the unix socket and the logs
PG_PORT=""
PG_PID=""     # pid of the postmaster (a child of this script)

cleanup() {
    local rc=$?
    set +e
    if [[ -n $PG_PID ]] && kill -0 "$PG_PID" 2>/dev/null; then
        echo "stopping test postgres (port $PG_PORT)"
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null ||
            kill -INT "$PG_PID" # SIGINT = fast shutdown
    fi
    # Reap it, so nothing (not even a zombie) outlives the script.
    [[ -n $PG_PID ]] && wait "$PG_PID" 2>/dev/null
    [[ -n $PG_DIR ]] && rm -rf "$PG_DIR"
    [[ -n $POLICY_RC_CREATED ]] && rm -f "$POLICY_RC"
    exit "$rc"
}
trap cleanup EXIT
# Turn Ctrl-C / kill into a normal exit so the EXIT trap cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command as the postgres user from inside PG_DIR (the caller's cwd,
# e.g. /root, is usually unreadable for postgres and makes it warn).
# setpriv (util-linux, always present) execs the command directly, unlike
# runuser/su which stay around as a parent process; so for the server, $! is
# the postmaster itself and we can stop and reap it precisely.
as_postgres() {
    (cd "$PG_DIR" && exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@")
}

port_in_use() {
    # A successful TCP connect means someone is listening.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_postgres() {
    PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fjord-test-pg.XXXXXX")"
    # postgres refuses to run as root, so the postgres system user owns it all.
    chown postgres:postgres "$PG_DIR"
    chmod 700 "$PG_DIR"

    PG_PORT="${FJORD_TEST_PG_PORT:-55432}"
    local limit=$((PG_PORT + 100))
    while port_in_use "$PG_PORT"; do
        PG_PORT=$((PG_PORT + 1))
        if ((PG_PORT > limit)); then
            echo "no free port for test postgres near ${FJORD_TEST_PG_PORT:-55432}" >&2
            return 1
        fi
    done

    # Trust auth is fine: the server only listens on loopback and the unix
    # socket sits in a 0700 directory, and it lives only for this run.
    as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres \
        --auth=trust --encoding=UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        return 1
    }

    # Settings in the config file avoid quoting paths on the command line.
    # Durability is pointless for a throwaway server; turning it off makes
    # tests that create/drop databases much faster.
    cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# --- fjord test server ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF

    # Run postgres in the foreground as a child of this script rather than
    # via `pg_ctl start`: pg_ctl daemonizes it, and on machines whose PID 1
    # does not reap orphans (containers, VMs without a real init) the stopped
    # postmaster would linger as a zombie.
    # `( ... exec ...) &` rather than `as_postgres ... &`: backgrounding a
    # function adds an extra bash process and $! would point at that instead.
    (cd "$PG_DIR" && exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
        "$PG_BIN/postgres" -D "$PG_DIR/data") >"$PG_DIR/postgres.log" 2>&1 &
    PG_PID=$!

    # Wait on the TCP listener the tests will use.
    local i
    for ((i = 0; i < 120; i++)); do
        if ! kill -0 "$PG_PID" 2>/dev/null; then
            echo "test postgres exited during startup; log:" >&2
            cat "$PG_DIR/postgres.log" >&2
            return 1
        fi
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres && break
        sleep 0.5
    done
    if ! "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U postgres; then
        echo "test postgres not ready after 60s; log:" >&2
        cat "$PG_DIR/postgres.log" >&2
        return 1
    fi

    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres fjord_test

    export FJORD_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/fjord_test"
    export FJORD_TEST_PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "test postgres ready: $FJORD_TEST_PG_URL"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
banner "system packages"
install_packages

banner "services"
start_postgres
export FJORD_TEST_SERVICES=1

if [[ ${FJORD_TEST_ONLY_SERVICES:-} == 1 ]]; then
    "$PG_BIN/psql" "$FJORD_TEST_PG_URL" -X -A -t -v ON_ERROR_STOP=1 -c 'select version()'
    echo "FJORD_TEST_ONLY_SERVICES=1: services OK, skipping cargo"
    exit 0
fi

cd "$REPO_ROOT"

# A minimal rustup profile lacks rustfmt/clippy; add them rather than fail.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi

# Run every phase even if an earlier one fails (a formatting nit should not
# hide test results), then report and fail if any phase failed.
FAILED=()
phase() {
    banner "$*"
    "$@" || FAILED+=("$*")
}

phase cargo fmt --all --check
phase cargo clippy --workspace --all-targets -- -D warnings
phase cargo test --workspace --no-fail-fast "$@"

if ((${#FAILED[@]})); then
    banner "FAILED"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
banner "all checks passed"
