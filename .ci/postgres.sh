#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on 127.0.0.1:55432 (trust auth, data under /tmp) for the gateway's
# PostgreSQL tests, installing the server from Debian's packages when it is missing. Prints the URL.
set -euo pipefail
port=55432
bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bin="$d"; done
if [ -z "$bin" ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bin="$d"; done
fi
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }
data=/tmp/paddock-pg
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  rm -rf "$data"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres "$data"
  run "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
  run "$bin/pg_ctl" -D "$data" -l "$data/log" -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" -w start >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$port"
