#!/usr/bin/env bash
# MecaPy benchmarks and their peers, in one run: `make bench` or `bench/run.sh [BUILD_DIR]`.
#
# Installs the peers' Debian packages when run as root (otherwise names them and measures
# what it can), starts everything on 127.0.0.1 in a temporary folder, prints a table and
# writes bench/results.json. Every process it starts is stopped, and the temporary folder
# removed, however the run ends. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${1:-build}
PY=/usr/bin/python3

if ! scripts/install-deps.sh bench; then
  echo "bench: going on; the figures that need the missing packages will be reported as not measured" >&2
fi

if [ ! -x "$PY" ]; then
  echo "bench: $PY is needed (Debian's python3)" >&2
  exit 1
fi

if [ ! -x "$BUILD/mecapy" ]; then
  [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=debugoptimized
  ninja -C "$BUILD"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mecapy-bench.XXXXXX")
child=

cleanup() {
  rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$child" 2>/dev/null || true
  fi
  # Anything bench.py started and could not stop: each was started in its own session,
  # so its pid is also its process group.
  if [ -f "$TMP/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
    done < "$TMP/pids"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

rc=0
PYTHONDONTWRITEBYTECODE=1 "$PY" bench/bench.py --bin "$BUILD/mecapy" --tmp "$TMP" \
  --out bench/results.json &
child=$!
wait "$child" || rc=$?

# Load: 1,000 long-polling clients at once, then a mixed minute (bench/load.py); skipped
# when BENCH_PARTS names other parts only.
if [ -z "${BENCH_PARTS:-}" ] || [[ ",$BENCH_PARTS," == *,load,* ]]; then
  PYTHONDONTWRITEBYTECODE=1 "$PY" bench/load.py --bin "$BUILD/mecapy" --tmp "$TMP" \
    --out bench/results-load.json &
  child=$!
  wait "$child" || rc=$?
fi
# The cost of mecapy.progress() and of the live logs in the guest (docs/benchmarks.md).
PYTHONDONTWRITEBYTECODE=1 "$PY" bench/progress.py || rc=$?
exit "$rc"
