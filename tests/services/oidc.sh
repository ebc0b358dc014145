#!/usr/bin/env bash
# Start and stop a throwaway OpenID provider for tests (tests/services/oidc/provider.mjs,
# oidc-provider from the repository's node_modules), on loopback.
#   tests/services/oidc.sh start DIR   start it on a free port and print its issuer URL
#   tests/services/oidc.sh url DIR     print the issuer URL of the one started in DIR
#   tests/services/oidc.sh stop DIR    stop it (by the pid in DIR/oidc.pid)
# Its clients, accounts and test-only admin routes are described in provider.mjs.
# Installs nothing: run `npm ci` first. Exit 0 on success; on failure a sentence on
# stderr and exit 1 (77 when node or oidc-provider is missing, so callers can skip).
set -euo pipefail

. "$(dirname "$0")/common.sh"
service_args oidc.addr "$@"  # the provider listens on loopback only
root=$(cd "$(dirname "$0")/../.." && pwd)

url() {
  local port
  port=$(cat "$dir/oidc.port" 2>/dev/null) || { echo "oidc.sh: no provider was started in $dir" >&2; exit 1; }
  echo "http://127.0.0.1:$port"
}

case $cmd in
start)
  command -v node >/dev/null 2>&1 || { echo "oidc.sh: node is not installed (Node.js 20 or later)" >&2; exit 77; }
  [ -f "$root/node_modules/oidc-provider/package.json" ] || { echo "oidc.sh: oidc-provider is not installed; run npm ci" >&2; exit 77; }
  port=$(free_port)
  echo "$port" > "$dir/oidc.port"
  (cd "$root" && exec node tests/services/oidc/provider.mjs "$port" >"$dir/oidc.log" 2>&1 < /dev/null) &
  echo $! > "$dir/oidc.pid"
  for _ in $(seq 1 100); do
    if /usr/bin/python3 - "$port" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/.well-known/openid-configuration", timeout=1).read()
PY
    then
      url
      exit 0
    fi
    kill -0 "$(cat "$dir/oidc.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "oidc.sh: the provider did not start; its log:" >&2
  tail -n 20 "$dir/oidc.log" >&2
  exit 1
  ;;
url)
  url
  ;;
stop)
  if [ -f "$dir/oidc.pid" ]; then
    pid=$(cat "$dir/oidc.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/oidc.pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop|url DIR" >&2
  exit 2
  ;;
esac
