#!/usr/bin/env bash
# Fjord: run every test (fmt, clippy, cargo test) against real local services.
#
# Meant for a fresh Debian bookworm machine, run as root, without systemd or
# docker. It installs the system packages the tests need (only when missing),
# starts a throwaway PostgreSQL 15 and a throwaway MariaDB 10.11 on loopback,
# runs the checks, and always stops both servers and deletes their data on
# exit (also on failure, Ctrl-C or SIGTERM), so it is safe to re-run.
#
# Usage: scripts/test.sh [extra args passed to `cargo test --workspace`]
#   e.g. scripts/test.sh -p fjord-store -- --nocapture
#
# Environment:
#   FJORD_TEST_RUN="cmd args"   start the services, run only that command
#                               (e.g. "cargo test -p fjord --test sites"), stop.
#   FJORD_TEST_ONLY_SERVICES=1  install packages, start the services, check
#                               them (psql `select version()`; for MariaDB:
#                               root over the socket, plus a throwaway
#                               database and password user reached over TCP),
#                               then stop and exit without running cargo.
#                               Handy for checking the service setup on its
#                               own.
#   FJORD_TEST_PG_PORT=N        start the search for a free Postgres port at N
#                               (default 55432).
#   FJORD_TEST_MARIADB_PORT_START=N
#                               start the search for a free MariaDB port at N
#                               (default 53306).
#
# Exported to the tests:
#   FJORD_TEST_SERVICES=1       the real services (postgres, nginx, apache2, php-fpm,
#                               mariadb, sqlite3, ...) are installed.
#   FJORD_TEST_PG_URL           postgres://postgres@127.0.0.1:PORT/fjord_test
#   FJORD_TEST_PG_ADMIN_URL     same server, database `postgres` (for tests
#                               that create their own databases).
#   FJORD_TEST_MARIADB_SOCKET   unix socket of the throwaway MariaDB. Its
#                               `root` account has no password and uses
#                               unix_socket auth: it works over this socket
#                               for a client running as OS root (as the tests
#                               do), e.g. `mariadb --socket=$SOCKET -uroot`.
#                               Not over TCP. No databases besides the system
#                               ones; server charset utf8mb4.
#   FJORD_TEST_MARIADB_HOST     127.0.0.1 (the server listens on nothing else)
#   FJORD_TEST_S3_URL           http://127.0.0.1:PORT, a throwaway S3-compatible
#                               server (moto, from PyPI, in the venv
#                               /opt/fjord-test-venv) for offsite backups.
#                               Any credentials are accepted; buckets are
#                               created with an unsigned PUT.
#   FJORD_TEST_ACME_DIR         https://127.0.0.1:PORT/dir, a throwaway ACME server
#                               (Debian's pebble) whose HTTP-01 checks go to
#                               FJORD_TEST_ACME_HTTP_PORT on the address a name
#                               resolves to through its DNS (pebble-challtestsrv:
#                               every name is 127.0.0.1 unless a test points it
#                               elsewhere through FJORD_TEST_ACME_DNS_MGMT,
#                               POST /add-a {"host":"x.test.","addresses":[...]}).
#   FJORD_TEST_ACME_CA          PEM root of pebble's own HTTPS listener.
#   FJORD_TEST_ACME_MGMT        pebble's management API (GET /roots/0: the root
#                               its certificates chain to).
#   FJORD_TEST_ACME_HTTP_PORT   the port sites must be served on for HTTP-01.
#   FJORD_TEST_ACME_DNS_MGMT    challtestsrv's management API.
#   FJORD_TEST_MARIADB_PORT     its TCP port, for accounts the tests create
#                               with a password, e.g. 'u'@'127.0.0.1' (the
#                               server runs with skip-name-resolve, so grant
#                               to '127.0.0.1' or '%', not 'localhost').
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
# rustup installs cargo here; a non-login shell (CI) may not have it on PATH.
export PATH="$HOME/.cargo/bin:$PATH"

banner() {
    printf '\n==================== %s ====================\n' "$*"
}

if [[ $EUID -ne 0 ]]; then
    echo "test.sh: must run as root (installs packages, runs postgres and mariadb as their users)" >&2
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
    # wordpress Depends on `libapache2-mod-php | php` and `apache2 | httpd`.
    # Alone, apt takes the first alternatives and installs apache2 with
    # mod_php even though php8.2-fpm and nginx (which provides httpd) are
    # listed here. Listing the `php` metapackage (satisfied by php8.2-fpm)
    # avoids that; install_packages also forbids mod_php outright.
    php wordpress
    # The alternative web server (Fjord runs its own master with `apache2 -f`);
    # libapache2-mod-php stays forbidden below: PHP runs in PHP-FPM.
    apache2
    curl ca-certificates procps
    sqlite3 rsync git composer pkg-config build-essential
    python3-venv
    pebble openssl
    # The web UI's end-to-end tests drive headless Chromium through chromedriver.
    chromium chromium-driver
)
# Never installed by this script: apt must satisfy the dependencies above
# without them (or fail loudly). Ones already on the machine are left alone.
FORBIDDEN_PACKAGES=(libapache2-mod-php8.2)

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

    # `apt-get install pkg-` means "must not be installed"; only used for
    # packages that are not installed, so nothing gets removed.
    local forbid=()
    for p in "${FORBIDDEN_PACKAGES[@]}"; do
        is_installed "$p" || forbid+=("$p-")
    done

    export DEBIAN_FRONTEND=noninteractive
    apt-get -q update
    apt-get -q -y install "${missing[@]}" "${forbid[@]}"

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
MY_DIR=""     # temp dir holding the MariaDB data/, socket, pid file and logs
MY_PORT=""
MY_SOCK=""
MY_PID=""     # pid of mariadbd (a child of this script)
S3_PID=""     # pid of moto_server (a child of this script)
ACME_DIR=""   # temp dir of pebble's config, certificates and logs
ACME_PID=""   # pid of pebble
DNS_PID=""    # pid of pebble-challtestsrv
S3_LOG=""

cleanup() {
    local rc=$?
    set +e
    # A second Ctrl-C / TERM must not cut the cleanup short.
    trap '' INT TERM
    stop_mariadb
    if [[ -n $S3_PID ]]; then
        kill -TERM "$S3_PID" 2>/dev/null
        wait "$S3_PID" 2>/dev/null
    fi
    [[ -n $S3_LOG ]] && rm -f "$S3_LOG"
    for p in $ACME_PID $DNS_PID; do
        kill -TERM "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    [[ -n $ACME_DIR ]] && rm -rf "$ACME_DIR"
    if [[ -n $PG_PID ]] && kill -0 "$PG_PID" 2>/dev/null; then
        echo "stopping test postgres (port $PG_PORT)"
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null ||
            kill -INT "$PG_PID" # SIGINT = fast shutdown
    fi
    # Reap it, so nothing (not even a zombie) outlives the script.
    [[ -n $PG_PID ]] && wait "$PG_PID" 2>/dev/null
    [[ -n $PG_DIR ]] && rm -rf "$PG_DIR"
    [[ -n $MY_DIR ]] && rm -rf "$MY_DIR"
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
    # A successful TCP connect means someone is listening. A port that a connection still holds
    # (a client's ephemeral port, in TIME-WAIT after the tests' database connections) cannot be
    # bound either: pebble then fails with "address already in use".
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    command -v ss >/dev/null && [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
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
# Throwaway MariaDB server
# ---------------------------------------------------------------------------
# Client commands this script runs itself: root over the socket, ignoring
# /etc/mysql (whose socket would be the system server's).
my_admin() {
    mariadb-admin --no-defaults --socket="$MY_SOCK" -uroot --connect-timeout=5 "$@"
}
my_sql() {
    mariadb --no-defaults --socket="$MY_SOCK" -uroot --batch --skip-column-names "$@"
}

# Is $1 still running (a zombie, i.e. exited but not yet reaped, is not)?
child_running() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ $state != Z* ]]
}

start_mariadb() {
    MY_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fjord-test-mariadb.XXXXXX")"
    chown mysql:mysql "$MY_DIR"
    chmod 700 "$MY_DIR"
    MY_SOCK="$MY_DIR/mysqld.sock"
    # sun_path holds 107 bytes; a long TMPDIR would make the bind fail late.
    if ((${#MY_SOCK} > 100)); then
        echo "test mariadb: socket path too long (${#MY_SOCK} > 100): $MY_SOCK; set a shorter TMPDIR" >&2
        return 1
    fi
    install -d -o mysql -g mysql -m 700 "$MY_DIR/tmp"

    local start="${FJORD_TEST_MARIADB_PORT_START:-53306}"
    MY_PORT="$start"
    while port_in_use "$MY_PORT"; do
        MY_PORT=$((MY_PORT + 1))
        if ((MY_PORT > start + 100)); then
            echo "no free port for test mariadb near $start" >&2
            return 1
        fi
    done

    # Our own option file, used as --defaults-file (which also keeps
    # /etc/mysql out: its datadir, socket and pid file are the system
    # server's). Without Debian's 50-server.cnf the server charset would be
    # latin1, so set utf8mb4 here. Durability is pointless for a throwaway
    # server, as for postgres.
    cat >"$MY_DIR/my.cnf" <<EOF
[mysqld]
datadir = $MY_DIR/data
tmpdir = $MY_DIR/tmp
socket = $MY_SOCK
pid-file = $MY_DIR/mariadbd.pid
bind-address = 127.0.0.1
port = $MY_PORT
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
max_connections = 200
innodb_buffer_pool_size = 128M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
EOF
    chown mysql:mysql "$MY_DIR/my.cnf"

    # --auth-root-authentication-method=socket (10.11's default, spelled out)
    # creates root@localhost and mysql@localhost identified via unix_socket
    # (or an unusable password): no password, and only for the OS user of the
    # same name, over the socket. --user=mysql names that second account.
    (cd "$MY_DIR" && exec setpriv --reuid=mysql --regid=mysql --init-groups -- \
        mariadb-install-db --defaults-file="$MY_DIR/my.cnf" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db \
        --skip-name-resolve) >"$MY_DIR/install-db.log" 2>&1 || {
        echo "mariadb-install-db failed; log:" >&2
        cat "$MY_DIR/install-db.log" >&2
        return 1
    }

    # mariadbd itself, in the foreground as our child, for the same reason as
    # postgres above: mysqld_safe would be a wrapper that restarts it, and
    # daemonized servers become zombies where PID 1 does not reap. With no
    # log-error option its log goes to stderr, i.e. mariadbd.log.
    (cd "$MY_DIR" && exec setpriv --reuid=mysql --regid=mysql --init-groups -- \
        mariadbd --defaults-file="$MY_DIR/my.cnf") >"$MY_DIR/mariadbd.log" 2>&1 &
    MY_PID=$!

    local i
    for ((i = 0; i < 120; i++)); do
        if ! child_running "$MY_PID"; then
            echo "test mariadb exited during startup; log:" >&2
            cat "$MY_DIR/mariadbd.log" >&2
            return 1
        fi
        my_admin --silent ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! my_admin ping >/dev/null; then
        echo "test mariadb not ready after 60s; log:" >&2
        cat "$MY_DIR/mariadbd.log" >&2
        return 1
    fi

    export FJORD_TEST_MARIADB_SOCKET="$MY_SOCK"
    export FJORD_TEST_MARIADB_HOST=127.0.0.1
    export FJORD_TEST_MARIADB_PORT="$MY_PORT"
    echo "test mariadb ready: socket $MY_SOCK, tcp 127.0.0.1:$MY_PORT"
}

# Called from cleanup(): clean shutdown, then SIGTERM, then SIGKILL, each
# given time; always reaps the child.
stop_mariadb() {
    [[ -n $MY_PID ]] || return 0
    local i
    if child_running "$MY_PID"; then
        echo "stopping test mariadb (port $MY_PORT)"
        # Waits until the server has removed its pid file.
        my_admin shutdown >/dev/null 2>&1 || kill -TERM "$MY_PID" 2>/dev/null
        for ((i = 0; i < 60; i++)); do
            child_running "$MY_PID" || break
            ((i == 40)) && kill -TERM "$MY_PID" 2>/dev/null
            sleep 0.5
        done
        if child_running "$MY_PID"; then
            echo "test mariadb did not stop in 30s; killing it" >&2
            kill -KILL "$MY_PID" 2>/dev/null
        fi
    fi
    wait "$MY_PID" 2>/dev/null
    MY_PID=""
}

# FJORD_TEST_ONLY_SERVICES check: root over the socket, then what tests do
# with it: a database and a password user for it, used over TCP.
check_mariadb() {
    local db=fjord_probe user=fjord_probe pass="probe-$$-$RANDOM"
    my_sql -e "CREATE DATABASE $db;
        CREATE USER '$user'@'127.0.0.1' IDENTIFIED BY '$pass';
        GRANT ALL ON $db.* TO '$user'@'127.0.0.1';"
    # user() shows how we came in: fjord_probe@127.0.0.1 means TCP.
    local got
    got="$(mariadb --no-defaults --protocol=TCP -h"$FJORD_TEST_MARIADB_HOST" \
        -P"$FJORD_TEST_MARIADB_PORT" -u"$user" -p"$pass" "$db" \
        --batch --skip-column-names -e 'select 1, user(), database()')"
    echo "over TCP as $user: $got"
    [[ $got == $'1\t'"$user@127.0.0.1"$'\t'"$db" ]] || {
        echo "unexpected answer over TCP: $got" >&2
        return 1
    }
    my_sql -e "DROP USER '$user'@'127.0.0.1'; DROP DATABASE $db;"
    echo "mariadb: root over socket, create/grant, password user over TCP, drop: OK"
}

# ---------------------------------------------------------------------------
# Throwaway S3-compatible server (moto)
# ---------------------------------------------------------------------------
S3_VENV=/opt/fjord-test-venv

start_s3() {
    if [[ ! -x $S3_VENV/bin/moto_server ]]; then
        echo "installing moto[server] into $S3_VENV"
        python3 -m venv "$S3_VENV"
        "$S3_VENV/bin/pip" install -q 'moto[server]'
    fi
    # The API test validates its OpenAPI document with a real validator.
    if ! "$S3_VENV/bin/python3" -c 'import openapi_spec_validator' 2>/dev/null; then
        "$S3_VENV/bin/pip" install -q openapi-spec-validator
    fi
    export FJORD_TEST_PYTHON="$S3_VENV/bin/python3"
    local port="${FJORD_TEST_S3_PORT:-53900}"
    local limit=$((port + 100))
    while port_in_use "$port"; do
        port=$((port + 1))
        if ((port > limit)); then
            echo "no free port for the test S3 server" >&2
            return 1
        fi
    done
    S3_LOG="$(mktemp "${TMPDIR:-/tmp}/fjord-test-s3.XXXXXX")"
    "$S3_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$S3_LOG" 2>&1 &
    S3_PID=$!
    local i
    for ((i = 0; i < 60; i++)); do
        if ! kill -0 "$S3_PID" 2>/dev/null; then
            echo "test S3 server exited during startup; log:" >&2
            cat "$S3_LOG" >&2
            return 1
        fi
        curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.5
    done
    export FJORD_TEST_S3_URL="http://127.0.0.1:$port"
    echo "test S3 (moto) ready: $FJORD_TEST_S3_URL"
}

# ---------------------------------------------------------------------------
# Throwaway ACME server (pebble) with its DNS (pebble-challtestsrv)
# ---------------------------------------------------------------------------
free_port_from() {
    local port=$1 limit=$(($1 + 100))
    while port_in_use "$port"; do
        port=$((port + 1))
        ((port > limit)) && return 1
    done
    echo "$port"
}

start_acme() {
    ACME_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fjord-test-acme.XXXXXX")"
    local acme_port mgmt_port http_port tls_port dns_port dns_mgmt
    acme_port="$(free_port_from 54000)"
    mgmt_port="$(free_port_from $((acme_port + 1)))"
    http_port="$(free_port_from $((mgmt_port + 1)))"
    tls_port="$(free_port_from $((http_port + 1)))"
    dns_port="$(free_port_from $((tls_port + 1)))"
    dns_mgmt="$(free_port_from $((dns_port + 1)))"
    # pebble's own HTTPS listener needs a certificate: a throwaway CA and a leaf for 127.0.0.1.
    (
        cd "$ACME_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
            -subj /CN=fjord-test-acme-ca -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
            -keyout key.pem -out leaf.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
            -extfile leaf.ext -out cert.pem 2>/dev/null
    )
    printf '{"pebble": {"listenAddress": "127.0.0.1:%s", "managementListenAddress": "127.0.0.1:%s",
  "certificate": "%s/cert.pem", "privateKey": "%s/key.pem", "httpPort": %s, "tlsPort": %s,
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}\n' \
        "$acme_port" "$mgmt_port" "$ACME_DIR" "$ACME_DIR" "$http_port" "$tls_port" >"$ACME_DIR/pebble.json"
    # Every name resolves to 127.0.0.1 (tests point a name elsewhere to make its validation fail).
    pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns_port" \
        -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$dns_mgmt" >"$ACME_DIR/dns.log" 2>&1 &
    DNS_PID=$!
    # No reuse of valid authorizations: pebble reuses half of them by default, so an order placed
    # after a name stopped resolving to us could succeed without validating it, by chance.
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        pebble -config "$ACME_DIR/pebble.json" -dnsserver "127.0.0.1:$dns_port" >"$ACME_DIR/pebble.log" 2>&1 &
    ACME_PID=$!
    local i
    for ((i = 0; i < 60; i++)); do
        if ! kill -0 "$ACME_PID" 2>/dev/null; then
            echo "pebble exited during startup; log:" >&2
            cat "$ACME_DIR/pebble.log" >&2
            return 1
        fi
        curl -sf --cacert "$ACME_DIR/ca.pem" -o /dev/null "https://127.0.0.1:$acme_port/dir" && break
        sleep 0.5
    done
    curl -sf --cacert "$ACME_DIR/ca.pem" -o /dev/null "https://127.0.0.1:$acme_port/dir" || {
        echo "pebble not ready; log:" >&2
        cat "$ACME_DIR/pebble.log" >&2
        return 1
    }
    chmod 755 "$ACME_DIR"
    export FJORD_TEST_ACME_DIR="https://127.0.0.1:$acme_port/dir"
    export FJORD_TEST_ACME_CA="$ACME_DIR/ca.pem"
    export FJORD_TEST_ACME_MGMT="https://127.0.0.1:$mgmt_port"
    export FJORD_TEST_ACME_HTTP_PORT="$http_port"
    export FJORD_TEST_ACME_DNS_MGMT="http://127.0.0.1:$dns_mgmt"
    echo "test ACME (pebble) ready: $FJORD_TEST_ACME_DIR, HTTP-01 on port $http_port"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
banner "system packages"
install_packages

banner "services"
start_postgres
start_mariadb
start_s3
start_acme
export FJORD_TEST_SERVICES=1

if [[ ${FJORD_TEST_ONLY_SERVICES:-} == 1 ]]; then
    "$PG_BIN/psql" "$FJORD_TEST_PG_URL" -X -A -t -v ON_ERROR_STOP=1 -c 'select version()'
    # Exactly as a test (running as root) would connect.
    mariadb --socket="$FJORD_TEST_MARIADB_SOCKET" -uroot -e 'select version()'
    check_mariadb
    echo "FJORD_TEST_ONLY_SERVICES=1: services OK, skipping cargo"
    exit 0
fi

cd "$REPO_ROOT"

# FJORD_TEST_RUN="cmd args": run just that command with the services up (for working on one test).
if [[ -n ${FJORD_TEST_RUN:-} ]]; then
    read -r -a run_argv <<<"$FJORD_TEST_RUN"
    "${run_argv[@]}"
    exit $?
fi

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
