#!/usr/bin/env bash
# Start and stop a throwaway S3 server (s3rver, from the repository's node_modules) for
# tests, on loopback.
#   tests/services/s3.sh start DIR [ADDR]
#                                     serve DIR/objects on a free port of ADDR (default
#                                     127.0.0.1) and print the --blobs URL to use
#                                     (path-style, bucket "mecapy-test", created by
#                                     MecaPy on first open). Started again on a DIR whose
#                                     server was stopped, it uses the same address, port
#                                     and objects (the tests stop S3 under load that way)
#   tests/services/s3.sh url DIR     print the URL of the server started in DIR
#   tests/services/s3.sh stop DIR    stop it (by the pid in DIR/s3rver.pid); DIR is left
#                                     for the caller to remove
# s3rver accepts only the keys S3RVER / S3RVER: export AWS_ACCESS_KEY_ID=S3RVER and
# AWS_SECRET_ACCESS_KEY=S3RVER for the programs that talk to it.
# This script installs nothing: run `npm ci` first. Exit 0 on success; on failure a
# sentence on stderr and exit 1 (or 77 when s3rver or node is missing, so callers can skip).
set -euo pipefail

. "$(dirname "$0")/common.sh"
service_args s3rver.addr "$@"
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/node_modules/s3rver/bin/s3rver.js
bucket=mecapy-test

url() {
  local port
  port=$(cat "$dir/s3rver.port" 2>/dev/null) || { echo "s3.sh: no server was started in $dir" >&2; exit 1; }
  echo "s3://$bucket?endpoint=http://$addr:$port&region=us-east-1&path_style=1"
}

# True once something accepts connections on the port.
listening() {
  /usr/bin/python3 - "$1" "$addr" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.2)
try:
    s.connect((sys.argv[2], int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

case $cmd in
start)
  if ! command -v node >/dev/null 2>&1; then
    echo "s3.sh: node is not installed; install Node.js (20 or later)" >&2
    exit 77
  fi
  if [ ! -f "$bin" ]; then
    echo "s3.sh: s3rver is not installed in $root/node_modules: run 'npm ci' there" >&2
    exit 77
  fi
  mkdir -p "$dir/objects"
  started=0
  # The same port again after a stop; a new free one the first time.
  reuse=0
  [ -f "$dir/s3rver.port" ] && reuse=1
  for attempt in 1 2 3; do
    if [ "$reuse" -eq 1 ]; then port=$(cat "$dir/s3rver.port"); else port=$(free_port); fi
    node "$bin" -d "$dir/objects" -a "$addr" -p "$port" --silent \
      </dev/null >"$dir/s3rver.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/s3rver.pid"
    # s3rver is up in about half a second; give it ten.
    for _ in $(seq 1 100); do
      if listening "$port"; then started=1; break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    [ "$started" -eq 1 ] && break
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sleep 0.3
  done
  if [ "$started" -ne 1 ]; then
    echo "s3.sh: s3rver did not start (see $dir/s3rver.log):" >&2
    tail -n 5 "$dir/s3rver.log" >&2 || true
    exit 1
  fi
  echo "$port" >"$dir/s3rver.port"
  echo "$addr" >"$dir/s3rver.addr"
  url
  ;;
url)
  url
  ;;
stop)
  if [ -f "$dir/s3rver.pid" ]; then
    pid=$(cat "$dir/s3rver.pid")
    if kill "$pid" 2>/dev/null; then
      # Wait for the port to close, not for the pid: a killed server can linger as a zombie.
      port=$(cat "$dir/s3rver.port" 2>/dev/null || echo 0)
      for _ in $(seq 1 50); do
        listening "$port" || break
        sleep 0.1
      done
    fi
    rm -f "$dir/s3rver.pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop|url DIR" >&2
  exit 2
  ;;
esac
