#!/usr/bin/env bash
# Start and stop a throwaway PostgreSQL server for tests, on loopback.
#   tests/services/postgres.sh start DIR [ADDR]
#                                           initdb into DIR/pgdata, start on a free
#                                           port of ADDR (default 127.0.0.1; unix socket
#                                           in DIR; clients of ADDR's /24 are trusted),
#                                           create the database "mecapy", print its URL.
#                                           Started again on a DIR whose server was
#                                           stopped, it uses the same data, address and
#                                           port (the tests stop PostgreSQL under load)
#   tests/services/postgres.sh url DIR     print the URL of the server started in DIR
#   tests/services/postgres.sh stop DIR    stop it (pg_ctl -m fast); DIR is left for the
#                                           caller to remove
# DIR must exist (a mktemp -d folder is fine); it is handed to the postgres user, since
# the server refuses to run as root. Exit 0 on success; on failure a sentence on stderr
# and exit 1 (or 77 when PostgreSQL is not installed, so callers can skip).
set -euo pipefail

. "$(dirname "$0")/common.sh"
service_args addr "$@"
data=$dir/pgdata
db=mecapy
user=postgres

bindir=${MECAPY_PG_BINDIR:-}
if [ -z "$bindir" ]; then
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && bindir=$d
  done
fi
if [ -z "$bindir" ] && command -v pg_ctl >/dev/null 2>&1; then
  bindir=$(dirname "$(command -v pg_ctl)")
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
  echo "postgres.sh: PostgreSQL server programs (initdb, pg_ctl) are not installed;" \
       "install the 'postgresql' package or set MECAPY_PG_BINDIR" >&2
  exit 77
fi

# As root, run the server programs as the postgres user; otherwise as ourselves.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    if ! id -u "$user" >/dev/null 2>&1; then
      echo "postgres.sh: running as root but there is no '$user' user to run the server as" >&2
      exit 1
    fi
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

url() {
  local port
  port=$(cat "$dir/port" 2>/dev/null) || { echo "postgres.sh: no server was started in $dir" >&2; exit 1; }
  echo "postgres://$user@$addr:$port/$db"
}

case $cmd in
start)
  if [ "$(id -u)" -eq 0 ]; then
    chown "$user": "$dir"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    if ! as_pg "$bindir/initdb" -D "$data" -A trust -U "$user" -E UTF8 --locale=C --no-sync \
         >"$dir/initdb.log" 2>&1; then
      echo "postgres.sh: initdb failed (see $dir/initdb.log):" >&2
      tail -n 5 "$dir/initdb.log" >&2
      if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: not root: run as root, or as a user who may run PostgreSQL" >&2
      fi
      exit 1
    fi
  fi
  subnet=${addr%.*}.0/24
  if [ "$addr" != 127.0.0.1 ] && ! grep -qF "host all all $subnet trust" "$data/pg_hba.conf"; then
    echo "host all all $subnet trust" >>"$data/pg_hba.conf"
  fi
  # The same port again after a stop; a new free one the first time.
  reuse=0
  [ -f "$dir/port" ] && reuse=1
  started=0
  for attempt in 1 2 3; do
    if [ "$reuse" -eq 1 ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    if as_pg "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 30 \
         -o "-c listen_addresses=$addr -p $port -k $dir -c fsync=off -c max_connections=200" \
         start >/dev/null 2>&1; then
      started=1
      break
    fi
  done
  if [ "$started" -ne 1 ]; then
    echo "postgres.sh: the server did not start (see $dir/server.log):" >&2
    tail -n 5 "$dir/server.log" >&2 || true
    exit 1
  fi
  echo "$port" >"$dir/port"
  echo "$addr" >"$dir/addr"
  if ! as_pg "$bindir/psql" -h "$addr" -p "$port" -U "$user" -d postgres -qAt \
       -c "CREATE DATABASE $db" >/dev/null 2>"$dir/createdb.log"; then
    grep -q "already exists" "$dir/createdb.log" || {
      echo "postgres.sh: cannot create the database $db:" >&2; cat "$dir/createdb.log" >&2; exit 1; }
  fi
  url
  ;;
url)
  url
  ;;
stop)
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
  ;;
*)
  echo "usage: $0 start|stop|url DIR" >&2
  exit 2
  ;;
esac
