# Sourced by the service scripts beside it (postgres.sh, redis.sh, s3.sh, oidc.sh): the
# arguments they all take and the free port they all pick.

# service_args ADDR_FILE "$@": sets cmd, dir (absolute) and addr: the address given to
# start, else the one kept in DIR/ADDR_FILE by an earlier start, else loopback.
service_args() {
  local addr_file=$1
  shift
  cmd=${1:-}
  dir=${2:-}
  if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start DIR [ADDR] | stop DIR | url DIR" >&2
    exit 2
  fi
  dir=$(cd "$dir" && pwd)
  addr=${3:-}
  [ -n "$addr" ] || addr=$(cat "$dir/$addr_file" 2>/dev/null || true)
  [ -n "$addr" ] || addr=127.0.0.1
}

# A port free on $addr right now (the server binds it next; a rare race is retried by
# the callers that need to).
free_port() {
  /usr/bin/python3 - "$addr" <<'PY'
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])
s.close()
PY
}
