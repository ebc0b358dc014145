#!/usr/bin/env bash
# Start and stop a throwaway Redis server for tests, on loopback, without persistence.
#   tests/services/redis.sh start DIR [ADDR]
#                                        start on a free port of ADDR (default 127.0.0.1;
#                                        pidfile, log, address and port in DIR), print its
#                                        URL redis://ADDR:PORT
#   tests/services/redis.sh url DIR     print the URL of the server started in DIR
#   tests/services/redis.sh stop DIR    stop it (shutdown nosave); DIR is left for the
#                                        caller to remove
# `start` on a DIR whose server was stopped starts it again on the same port (the tests
# restart Redis under load that way). Exit 0 on success; on failure a sentence on
# stderr and exit 1 (or 77 when Redis is not installed, so callers can skip).
set -euo pipefail

. "$(dirname "$0")/common.sh"
service_args addr "$@"

server=$(command -v redis-server || true)
cli=$(command -v redis-cli || true)
if [ -z "$server" ] || [ -z "$cli" ]; then
  echo "redis.sh: redis-server and redis-cli are not installed; install the 'redis-server' package" >&2
  exit 77
fi

url() {
  local port
  port=$(cat "$dir/port" 2>/dev/null) || { echo "redis.sh: no server was started in $dir" >&2; exit 1; }
  echo "redis://$addr:$port"
}

ping() {
  "$cli" -h "$addr" -p "$1" ping 2>/dev/null | grep -q PONG
}

case $cmd in
start)
  # The same port again after a stop; a new free one the first time.
  reuse=0
  [ -f "$dir/port" ] && reuse=1
  for attempt in 1 2 3; do
    if [ "$reuse" -eq 1 ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    rm -f "$dir/redis.pid"
    # Another address than loopback: a private one the caller made (the server has
    # no password, so protected mode would refuse every client but loopback).
    protected=yes
    [ "$addr" = 127.0.0.1 ] || protected=no
    if "$server" --bind "$addr" --protected-mode "$protected" --port "$port" --save '' --appendonly no --daemonize yes \
         --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >/dev/null 2>&1; then
      for _ in $(seq 1 100); do
        ping "$port" && break
        sleep 0.05
      done
      if ping "$port"; then
        echo "$port" >"$dir/port"
        echo "$addr" >"$dir/addr"
        url
        exit 0
      fi
    fi
    sleep 0.2
  done
  echo "redis.sh: the server did not start (see $dir/redis.log):" >&2
  tail -n 5 "$dir/redis.log" >&2 || true
  exit 1
  ;;
url)
  url
  ;;
stop)
  if [ -f "$dir/port" ]; then
    port=$(cat "$dir/port")
    "$cli" -h "$addr" -p "$port" shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do
      ping "$port" || break
      sleep 0.05
    done
    # The address may already be gone (a test's network torn down first): then the
    # shutdown above could not reach the server, so end it by its pid in every case.
    if [ -f "$dir/redis.pid" ]; then
      pid=$(cat "$dir/redis.pid")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
  fi
  ;;
*)
  echo "usage: $0 start|stop|url DIR" >&2
  exit 2
  ;;
esac
