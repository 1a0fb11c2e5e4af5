#!/usr/bin/env bash
# Fjord's main job, on a fresh Debian bookworm machine as root: build Fjord, initialise its state,
# start the task daemon in the background, register this machine as a server, and print what runs.
# Running it again is harmless: it rebuilds if needed, keeps the state, and starts the daemon only if
# none is running.
#
# Environment: FJORD_STATE (default /var/lib/fjord), FJORD_DB (default SQLite in the state dir).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${FJORD_STATE:-/var/lib/fjord}"
export PATH="$HOME/.cargo/bin:$PATH"

if [[ $EUID -ne 0 ]]; then
    echo "main.sh: run as root (it installs packages and manages services)" >&2
    exit 1
fi

# Build tools the crates need (a C compiler for SQLite), installed only when missing.
missing=()
for p in build-essential pkg-config; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

echo "==> building fjord"
(cd "$REPO_ROOT" && cargo build --release --locked -p fjord)
install -m 0755 "$REPO_ROOT/target/release/fjord" /usr/local/bin/fjord

echo "==> initialising state in $STATE"
fjord --state "$STATE" init

if fjord --state "$STATE" --json health | grep -q '"daemon_running": true'; then
    echo "==> fjord serve is already running"
else
    echo "==> starting fjord serve (log: $STATE/log/fjord.log)"
    # setsid detaches it from this shell so it outlives the script.
    setsid fjord --state "$STATE" serve >>"$STATE/log/fjord.log" 2>&1 </dev/null &
    for _ in $(seq 1 100); do
        fjord --state "$STATE" --json health | grep -q '"daemon_running": true' && break
        sleep 0.1
    done
fi

if ! fjord --state "$STATE" server show localhost >/dev/null 2>&1; then
    echo "==> registering this machine as server localhost"
    fjord --state "$STATE" server add localhost --database sqlite --wait
fi

echo
fjord --state "$STATE" health
echo
fjord --state "$STATE" server list
cat <<EOT

Fjord is running. Try:
  fjord --state $STATE platform add NAME --path /path/to/codebase --wait
  fjord --state $STATE site create example.test --platform NAME --db-engine sqlite --wait
  fjord --state $STATE task list
Stop the daemon with: kill \$(cat $STATE/serve.pid)
EOT
