#!/usr/bin/env bash
# Caucus against Matrix: the same fan-out on a Synapse homeserver
# (issue 17, docs/performance.md).
#
#   bench/synapse.sh [--rooms 40] [--members 5] [--seconds 30] [--warmup 10]
#                    [--window 1] [--no-half-load] [--json FILE]
#
# What it does:
# * Python venv at $SYNAPSE_VENV (default target/synapse-venv, not committed)
#   with matrix-synapse==$SYNAPSE_VERSION (default 1.163.2) and aiohttp from
#   PyPI; kept between runs, reinstalled when the version differs.
# * A throwaway homeserver in a scratch directory under $TMPDIR: SQLite,
#   server_name localhost, one plain-HTTP client listener on a free loopback
#   port, no federation listener, Synapse's main process only (no workers).
#   Every rate limit is off (per_second and burst_count 1e9: rc_message,
#   rc_registration, rc_login.*, rc_joins.*, rc_joins_per_room, rc_invites.*,
#   rc_3pid_validation, rc_admin_redaction, …). Presence is off (Caucus
#   carries none in this measurement). Users are made by shared-secret
#   registration (no open registration), with bcrypt_rounds 4 so that
#   setting up 200 users is quick (it plays no part in what is measured).
#   Logging at WARNING, to a file. filter_timeline_limit is raised to 1000
#   so that no /sync answer is cut short. Caches and SQLite: Synapse's defaults.
# * bench/synapse/load.py then registers rooms x members users, creates each
#   room (by its first member; the others invited and joined), and drives
#   it as caucus-bench drives a relay: closed loop at saturation (each
#   member keeps --window messages not yet received by every other member),
#   then open loop at half that rate (its latency is the one to compare:
#   at saturation it is mostly queueing). --window defaults to 1: five
#   concurrent sends per room of five already keep Synapse busy, and more
#   fork each room's event graph (about 21 forward extremities per room at
#   window 4). Messages are sent with PUT .../send/
#   m.room.message/{txn}, received by every member with long-polling /sync
#   (filter: only the rooms' m.room.message timeline events). It prints
#   messages/s, member deliveries/s, send-to-delivery p50/p99, Synapse's CPU
#   (user+sys of its process over the measured interval) and peak RSS
#   (VmHWM), the load generator's own CPU and how busy the whole machine was.
# * On exit (also on Ctrl-C or an error) Synapse is stopped and the scratch
#   directory removed.
#
# Caucus's payloads are end-to-end encrypted; the Matrix messages here are
# not (an encrypted room adds client-side Olm/Megolm work; the server's cost
# per message is comparable). A default run takes about 3 minutes after the
# first install (which takes about 1 more): start 15-20 s, users and rooms
# about 60 s (half that with the scratch directory on tmpfs, TMPDIR=/dev/shm,
# which also spares SQLite's fsyncs, unlike a real deployment), then two
# runs of warm-up and measurement. On a machine shared with other work, Synapse gets less
# than a core: the "per Synapse core" figures divide by the CPU it got.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
AIOHTTP_VERSION="${AIOHTTP_VERSION:-3.14.5}"
VENV="${SYNAPSE_VENV:-$ROOT/target/synapse-venv}"
PY="${PYTHON:-python3}"
started=$(date +%s)

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "synapse.sh: Synapse $SYNAPSE_VERSION needs Python 3.10 or newer ($PY)" >&2
    exit 1
fi

have="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"), m.version("aiohttp"))' 2>/dev/null || true)"
if [ "$have" != "$SYNAPSE_VERSION $AIOHTTP_VERSION" ]; then
    echo "installing matrix-synapse==$SYNAPSE_VERSION and aiohttp==$AIOHTTP_VERSION in $VENV…" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "matrix-synapse==$SYNAPSE_VERSION" "aiohttp==$AIOHTTP_VERSION"
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/caucus-synapse.XXXXXX")"
SYNAPSE_PID=""
LOAD_PID=""
cleanup() {
    if [ -n "$LOAD_PID" ]; then
        kill -TERM "$LOAD_PID" 2>/dev/null || true
        wait "$LOAD_PID" 2>/dev/null || true
    fi
    if [ -n "$SYNAPSE_PID" ] && kill -0 "$SYNAPSE_PID" 2>/dev/null; then
        kill -TERM "$SYNAPSE_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SYNAPSE_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$SYNAPSE_PID" 2>/dev/null || true
        wait "$SYNAPSE_PID" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SECRET="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
LIMIT='{per_second: 1000000000, burst_count: 1000000000}'

cat >"$DIR/log.yaml" <<EOF
version: 1
formatters:
  plain:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: plain
    filename: $DIR/homeserver.log
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
EOF

cat >"$DIR/homeserver.yaml" <<EOF
server_name: localhost
pid_file: $DIR/homeserver.pid
report_stats: false
listeners:
  - port: $PORT
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: $DIR/homeserver.db
log_config: $DIR/log.yaml
media_store_path: $DIR/media
signing_key_path: $DIR/localhost.signing.key
trusted_key_servers: []
suppress_key_server_warning: true
registration_shared_secret: "$SECRET"
macaroon_secret_key: "$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
form_secret: "$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
enable_registration: false
bcrypt_rounds: 4
presence:
  enabled: false
enable_metrics: false
filter_timeline_limit: 1000
rc_message: $LIMIT
rc_registration: $LIMIT
rc_registration_token_validity: $LIMIT
rc_login:
  address: $LIMIT
  account: $LIMIT
  failed_attempts: $LIMIT
rc_admin_redaction: $LIMIT
rc_joins:
  local: $LIMIT
  remote: $LIMIT
rc_joins_per_room: $LIMIT
rc_key_requests: $LIMIT
rc_3pid_validation: $LIMIT
rc_invites:
  per_room: $LIMIT
  per_user: $LIMIT
  per_issuer: $LIMIT
rc_third_party_invite: $LIMIT
rc_media_create: $LIMIT
rc_presence:
  per_user: $LIMIT
rc_delayed_event_mgmt: $LIMIT
rc_room_creation: $LIMIT
rc_reports: $LIMIT
rc_user_directory: $LIMIT
rc_profile: $LIMIT
EOF

"$VENV/bin/python" -m synapse.app.homeserver -c "$DIR/homeserver.yaml" --generate-keys >/dev/null
echo "starting Synapse $SYNAPSE_VERSION on 127.0.0.1:$PORT ($DIR)…" >&2
"$VENV/bin/python" -m synapse.app.homeserver -c "$DIR/homeserver.yaml" \
    >"$DIR/stdout.log" 2>&1 &
SYNAPSE_PID=$!

URL="http://127.0.0.1:$PORT"
for i in $(seq 600); do
    if "$PY" -c "import urllib.request, sys; urllib.request.urlopen('$URL/health', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SYNAPSE_PID" 2>/dev/null || [ "$i" -eq 600 ]; then
        echo "synapse.sh: Synapse did not start:" >&2
        tail -n 30 "$DIR/stdout.log" "$DIR/homeserver.log" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.2
done
echo "Synapse answered after $(($(date +%s) - started)) s" >&2

# In the background, so that a signal to this script is handled at once.
"$VENV/bin/python" "$ROOT/bench/synapse/load.py" \
    --url "$URL" --pid "$SYNAPSE_PID" --shared-secret "$SECRET" \
    --synapse-version "$SYNAPSE_VERSION" "$@" &
LOAD_PID=$!
wait "$LOAD_PID"
LOAD_PID=""

echo "bench/synapse.sh took $(($(date +%s) - started)) s" >&2
