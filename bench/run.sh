#!/usr/bin/env bash
# The Caucus benchmark, end to end (docs/performance.md):
#
#   bench/run.sh [caucus-bench flags…]     e.g. bench/run.sh --repeat 5 --json figures.json
#   bench/run.sh --only-cluster --cluster-nodes 1,2,3     several relays (issue 16)
#   bench/run.sh --only-day --day-sessions 1000,2500      a mediation service's day
#
# Installs nats-server from Debian's package if it is missing, builds the
# relay, the bare relay and the load generator in release mode, raises the
# file-descriptor limit for the 10,000-connection measurement, and runs
# caucus-bench, which starts each relay on loopback in turn (its own scratch
# directory under $TMPDIR), drives it, prints the figures, the ratios and
# each target as met or not met, and stops every relay it started. The
# durable peer is NATS JetStream (the same nats-server with file storage,
# every publish and every delivery acknowledged). The figures are also
# drawn as SVG charts into $CHARTS (default target/bench-charts). A
# default run takes about five minutes on two cores, and the service's day
# (`--day-sessions`, on by default) about seven more.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    echo "installing nats-server (Debian package)…" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
    # The package enables a system service; the benchmark runs its own.
    $SUDO systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
NATS="$(command -v nats-server || echo /usr/sbin/nats-server)"

# Several relays (--cluster-nodes) need PostgreSQL: caucus-bench starts a
# throwaway server from the binaries on PATH or Debian's
# /usr/lib/postgresql/<version>/bin (as `nobody` when run as root).
case " $* " in
*" --cluster-nodes"*)
    if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "installing PostgreSQL (Debian package)…" >&2
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
        # The package starts a cluster of its own; the benchmark runs its own.
        $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
    fi
    ;;
esac

cargo build --release --locked -p caucus-server -p caucus-bench

# 10,000 client sockets in the load generator and as many in the relay, plus
# the relays' own files: each process needs well over 10,000 descriptors.
# The service's day holds as many connections as the relay's limit allows
# (its load generator spreads them over several processes) and reports the
# numbers of sessions beyond it as blocked.
want=20000
hard="$(ulimit -Hn)"
if [ "$hard" != "unlimited" ] && [ "$hard" -lt "$want" ]; then want="$hard"; fi
ulimit -n "$want"
if [ "$want" -lt 10100 ]; then
    echo "warning: only $want file descriptors; pass --idle-connections N with N < $((want - 100))" >&2
fi

charts=(--charts "${CHARTS:-target/bench-charts}")
case " $* " in *" --charts"*) charts=() ;; esac

exec "${CARGO_TARGET_DIR:-target}/release/caucus-bench" --nats "$NATS" "${charts[@]}" "$@"
