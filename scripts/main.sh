#!/usr/bin/env bash
# Fjord's main job, on a fresh Debian bookworm machine as root: build Fjord, initialise its state,
# start the task daemon in the background, register this machine as a server (Fjord runs its own
# nginx and PHP-FPM masters), and create a demo site that is really served, then print how to reach it.
# Running it again is harmless: it rebuilds if needed, keeps the state, starts the daemon only if none
# is running, and creates only what is missing.
#
# Environment: FJORD_STATE (default /var/lib/fjord), FJORD_DB (default SQLite in the state dir),
# FJORD_HTTP_PORT (default 8080): the port Fjord's nginx serves sites on.
# FJORD_PANEL (default 127.0.0.1:8090): where `fjord serve` answers the web control panel and the API.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${FJORD_STATE:-/var/lib/fjord}"
PORT="${FJORD_HTTP_PORT:-8080}"
DEMO=demo.localhost
export PATH="$HOME/.cargo/bin:$PATH"

if [[ $EUID -ne 0 ]]; then
    echo "main.sh: run as root (it installs packages and manages services)" >&2
    exit 1
fi

missing=()
# Build tools for the crates (a C compiler for SQLite), and the web stack the demo site runs on.
for p in build-essential pkg-config curl nginx-light php8.2-fpm php8.2-cli php8.2-sqlite3 php8.2-mysql \
    php8.2-pgsql php8.2-gd php8.2-xml php8.2-mbstring php8.2-curl mariadb-client postgresql-client; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    # Fjord runs its own nginx and PHP-FPM masters: keep the packages' own services from starting.
    policy=/usr/sbin/policy-rc.d
    created_policy=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    [[ -n $created_policy ]] && rm -f "$policy"
fi

echo "==> building fjord"
(cd "$REPO_ROOT" && cargo build --release --locked -p fjord)
install -m 0755 "$REPO_ROOT/target/release/fjord" /usr/local/bin/fjord

PANEL="${FJORD_PANEL:-127.0.0.1:8090}"
echo "==> initialising state in $STATE (the first run creates the user admin and prints its password once)"
fjord --state "$STATE" init

if fjord --state "$STATE" --json health | grep -q '"daemon_running": true'; then
    echo "==> fjord serve is already running"
else
    echo "==> starting fjord serve (log: $STATE/log/fjord.log)"
    # setsid detaches it from this shell so it outlives the script.
    setsid fjord --state "$STATE" serve --listen "$PANEL" >>"$STATE/log/fjord.log" 2>&1 </dev/null &
    for _ in $(seq 1 100); do
        fjord --state "$STATE" --json health | grep -q '"daemon_running": true' && break
        sleep 0.1
    done
fi

if ! fjord --state "$STATE" server show localhost >/dev/null 2>&1; then
    echo "==> registering this machine as server localhost (nginx on port $PORT, PHP-FPM, SQLite)"
    fjord --state "$STATE" server add localhost --http-port "$PORT" --database sqlite --wait
else
    # After a reboot Fjord's nginx and PHP-FPM masters are gone: start them (a reload if running).
    fjord --state "$STATE" server start localhost --wait >/dev/null
fi

# The demo platform is the project's Drupal 10-shaped fixture app (a real PHP app with its own
# installer and drush); real Drupal codebases are added the same way with `platform add --path`.
if ! fjord --state "$STATE" platform show demo >/dev/null 2>&1; then
    echo "==> adding the demo platform"
    mkdir -p "$STATE/platforms"
    rm -rf "$STATE/platforms/demo"
    cp -a "$REPO_ROOT/tests/fixtures/platforms/drupal10" "$STATE/platforms/demo"
    fjord --state "$STATE" platform add demo --path "$STATE/platforms/demo" --wait
fi
if ! fjord --state "$STATE" site show "$DEMO" >/dev/null 2>&1; then
    echo "==> creating the demo site $DEMO"
    fjord --state "$STATE" site create "$DEMO" --platform demo --db-engine sqlite --wait
fi

echo
fjord --state "$STATE" health
echo
fjord --state "$STATE" server list
echo
fjord --state "$STATE" site list
echo
echo "==> the demo site, served by nginx + PHP-FPM from its database:"
curl -s -H "Host: $DEMO:$PORT" "http://127.0.0.1:$PORT/" | head -n 20
echo
echo "One-time admin login link: $(fjord --state "$STATE" site login-link "$DEMO")"
cat <<EOT

Fjord is running. Its web control panel and API answer at http://$PANEL/ (user admin; the password
was printed by the first run's init; set another with: fjord --state $STATE user passwd admin).
The demo site answers at http://$DEMO:$PORT/ (browsers resolve *.localhost to
this machine; with curl: curl -H 'Host: $DEMO' http://127.0.0.1:$PORT/). Try:
  fjord --state $STATE platform add NAME --path /path/to/codebase --wait
  fjord --state $STATE site create example.test --platform NAME --db-engine sqlite --wait
  fjord --state $STATE task list
Stop the daemon with: kill \$(cat $STATE/serve.pid)
EOT
