#!/usr/bin/env bash
# A private PostgreSQL server for tests and demos.
#   scripts/postgres.sh start DIR PORT   -> prints the connection URL
#   scripts/postgres.sh stop DIR
# Installs Debian's postgresql package when no server binaries exist (needs root + apt-get).
set -euo pipefail
action=${1:?usage: postgres.sh start DIR PORT | stop DIR}
dir=${2:?data directory required}

find_bin() { for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return; }; done; }
bin=$(find_bin || true)
if [ -z "$bin" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian packages (once)..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(find_bin || true)
  fi
fi
[ -n "$bin" ] || { echo "PostgreSQL server not found: install it (Debian: apt-get install postgresql)." >&2; exit 1; }

# initdb and postgres refuse to run as root: run them as the postgres account then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$action" in
  start)
    port=${3:?port required}
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir" && chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir" -A trust -U streamrec >/dev/null
    fi
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U streamrec -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='streamrec'" | grep -q 1 ||
      as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U streamrec streamrec
    echo "postgresql://streamrec@127.0.0.1:$port/streamrec"
    ;;
  stop)
    [ -f "$dir/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
