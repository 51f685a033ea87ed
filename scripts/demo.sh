#!/usr/bin/env bash
# Demo: a PostgreSQL 15 primary, a streaming replica and pgsplit in front of
# them, then a few statements through pgsplit showing which server ran each;
# then the users-api demo application (src/bin/users_api) with pgsplit as its
# only database, and the seed's curl examples against it.
#
# Usage:
#   scripts/demo.sh          start everything (or, if it runs, show it again)
#   scripts/demo.sh stop     stop users-api, pgsplit and both servers, remove the state
#
# Ctrl-C while it starts things stops what it started. State lives in
# /tmp/pgsplit-demo: pg/ (data dirs, logs, sockets; see scripts/pgcluster.sh),
# pgsplit.log, pgsplit.pid, users-api.log, users-api.pid and ports. `stop`
# removes it but first copies the logs (pgsplit.log, users-api.log, the
# servers' logs) to /tmp/pgsplit-demo-logs (PGSPLIT_DEMO_LOGS), replacing
# the previous run's. Run as
# root on Debian 12 it installs PostgreSQL and curl with apt-get if missing;
# it needs cargo.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=/tmp/pgsplit-demo
LOGS=${PGSPLIT_DEMO_LOGS:-/tmp/pgsplit-demo-logs}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH" PGBIN
# Durability is irrelevant for a demo: fsync=off and friends (see pgcluster.sh).
export PGC_FAST=1
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# PGSPLIT_BIN=/path/to/pgsplit, USERS_API_BIN=/path/to/users-api: run those
# binaries instead of building them.
BIN=${PGSPLIT_BIN:-$TARGET/release/pgsplit}
API_BIN=${USERS_API_BIN:-$TARGET/release/users-api}

say() { if [ -t 1 ]; then printf '\n\033[1m%s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
die() { echo "demo: $*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# First port from $1 upward that nothing listens on and is not in $2 (a list).
pick_port() {
  local p=$1 taken=${2:-}
  while port_busy "$p" || [[ " $taken " == *" $p "* ]]; do
    p=$((p + 1))
    [ "$p" -lt 65535 ] || die "no free port above $1"
  done
  echo "$p"
}

# live_pid NAME: the pid in $STATE/NAME.pid, only if that process still is
# NAME (pids get reused).
live_pid() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == *"$1"* ]] || return 1
  echo "$pid"
}
pgsplit_pid() { live_pid pgsplit; }
api_pid() { live_pid users-api; }

# stop_pid NAME: SIGTERM, up to 5 s for a clean exit, then SIGKILL.
stop_pid() {
  local pid i
  pid=$(live_pid "$1") || return 0
  echo "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cluster_running() {
  local status
  [ -d "$STATE/pg" ] || return 1
  # Captured first: `grep -q` in a pipe would SIGPIPE the writer under pipefail.
  status=$(scripts/pgcluster.sh status "$STATE/pg" 2>/dev/null) || true
  [[ "$status" == *"primary: running"* && "$status" == *"replica: running"* ]]
}

# The logs outlive the state: what went wrong is still there after a stop.
keep_logs() {
  local logs=()
  shopt -s nullglob
  logs=("$STATE"/*.log "$STATE"/pg/*.log)
  shopt -u nullglob
  [ ${#logs[@]} -gt 0 ] || return 0
  rm -rf "$LOGS"
  mkdir -p "$LOGS"
  cp -p "${logs[@]}" "$LOGS"/ || true
  echo "logs kept in $LOGS"
}

stop_all() {
  # Front to back: the app, then pgsplit, then the servers.
  stop_pid users-api
  stop_pid pgsplit
  if [ -d "$STATE/pg" ]; then
    scripts/pgcluster.sh down "$STATE/pg" || true
  fi
  keep_logs
  rm -rf "$STATE"
}

# psql through pgsplit (or straight to a server with -p): unaligned, no headers.
q() { # q PORT SQL
  psql -X -q -A -t -w -h 127.0.0.1 -p "$1" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$2"
}

label() {
  case "$1" in
    "$PPORT") echo "primary" ;;
    "$RPORT") echo "replica" ;;
    *) echo "unknown server" ;;
  esac
}

# show SQL: runs SQL through pgsplit; the first column of the last row must be
# inet_server_port(), which names the server that ran it.
show() {
  local out port
  printf '\n  %s\n' "$1"
  if out=$(q "$LPORT" "$1" 2>&1); then
    port=$(printf '%s\n' "$out" | awk 'NF { last = $0 } END { split(last, f, "|"); print f[1] }')
    printf '    -> %s\n' "${out//$'\n'/$'\n       '}"
    printf '    -> landed on port %s: %s\n' "$port" "$(label "$port")"
  else
    printf '    -> error: %s\n' "$out"
  fi
}

run_statements() {
  local out
  say "Statements through pgsplit at 127.0.0.1:$LPORT (primary :$PPORT, replica :$RPORT)"
  printf '\n  %s\n' "create table if not exists demo(id serial primary key, note text)"
  if out=$(q "$LPORT" "create table if not exists demo(id serial primary key, note text)" 2>&1); then
    echo "    -> ok (DDL is a write: primary)"
  else
    printf '    -> error: %s\n' "$out"
  fi
  show "insert into demo(note) values ('hi') returning inet_server_port()"
  # Let the replica replay the insert before reading it there.
  local rows i
  rows=$(q "$PPORT" "select count(*) from demo" 2>/dev/null) || true
  for ((i = 0; i < 50; i++)); do
    [ "$(q "$RPORT" "select count(*) from demo" 2>/dev/null)" = "$rows" ] && break
    sleep 0.1
  done
  show "select inet_server_port() as served_by_port, count(*) from demo"
  show "BEGIN; select inet_server_port(); COMMIT"
  show "/* pgsplit:primary */ select inet_server_port()"
}

# ---------------------------------------------------------------- users-api

# api METHOD PATH [JSON]: one request to users-api, shown as the curl
# command a person would type, then its status, body and serving server.
# Sets BODY to the response body.
api() {
  local method=$1 path=$2 data=${3:-} url="http://127.0.0.1:$APORT$2" out code port
  local args=(-sS -X "$method" -D "$STATE/headers" -w '\n%{http_code}')
  if [ -n "$data" ]; then
    args+=(-H 'Content-Type: application/json' -d "$data")
    printf "\n  \$ curl -X %s '%s' -H 'Content-Type: application/json' -d '%s'\n" "$method" "$url" "$data"
  else
    printf "\n  \$ curl -X %s '%s'\n" "$method" "$url"
  fi
  if ! out=$(curl "${args[@]}" "$url" 2>&1); then
    printf '    -> error: %s\n' "$out"
    BODY=
    return
  fi
  code=${out##*$'\n'}
  BODY=${out%$'\n'*}
  printf '    -> %s %s\n' "$code" "$BODY"
  port=$(tr -d '\r' <"$STATE/headers" | awk -F': ' 'tolower($1) == "x-served-by" { print $2 }')
  if [ -n "$port" ]; then
    printf '    -> x-served-by: %s (%s)\n' "$port" "$(label "$port")"
  fi
}

# The "id" of the first object in BODY (no jq on a fresh Debian).
first_id() { sed -n 's/^[[:space:]]*\[\{0,1\}{"id":\([0-9][0-9]*\).*/\1/p' <<<"$BODY"; }

metrics() { # the pgsplit_statements_total lines of /metrics, if served
  [ -n "$MPORT" ] || return 0
  curl -sS "http://127.0.0.1:$MPORT/metrics" 2>/dev/null | grep '^pgsplit_statements_total' || true
}

# Lines of $2 (after) whose value differs from $1 (before), with both values.
metrics_moved() {
  awk 'function key() { return substr($0, 1, length($0) - length($NF) - 1) }
       NR == FNR { before[key()] = $NF; next }
       { k = key(); if (before[k] != $NF) printf "    %s %s -> %s\n", k, (before[k] == "" ? 0 : before[k]), $NF }' \
    <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# wait_for_replica ID: until the replica has replayed user ID, then a second
# more. Right after a write pgsplit reads from the primary unless a replica
# has the writer's commits (read-your-writes); the demo's servers commit
# asynchronously, so that takes a moment, and after a read found no replica
# caught up pgsplit keeps such reads on the primary for a second.
wait_for_replica() {
  local i
  printf '\n  (waiting until the replica has replayed user %s, so that reads go there)\n' "$1"
  for ((i = 0; i < 50; i++)); do
    [ "$(q "$RPORT" "select count(*) from users where id = $1" 2>/dev/null)" = 1 ] && break
    sleep 0.1
  done
  sleep 1
}

run_api_examples() {
  local runs suffix alice bob before after
  # Emails are unique per run, so a second call shows the same answers.
  runs=$(($(cat "$STATE/api-runs" 2>/dev/null || echo 0) + 1))
  echo "$runs" >"$STATE/api-runs"
  suffix=$([ "$runs" -eq 1 ] || echo "$runs")
  before=$(metrics)

  say "users-api at http://127.0.0.1:$APORT (DATABASE_URL points at pgsplit; x-served-by is the server's port)"
  api POST /users "{\"name\": \"Alice\", \"email\": \"alice$suffix@example.com\", \"balance\": 100}"
  alice=$(first_id)
  api POST /users "{\"name\": \"Alice again\", \"email\": \"alice$suffix@example.com\"}"
  wait_for_replica "${alice:-0}"
  api GET "/users/${alice:-1}"
  api GET "/users?skip=0&limit=5"
  api PUT "/users/${alice:-1}" '{"name": "Alice Smith"}'
  api POST /async/users "{\"name\": \"Bob\", \"email\": \"bob$suffix@example.com\", \"balance\": 20}"
  bob=$(first_id)
  api POST /users/batch "[{\"name\": \"Carol\", \"email\": \"carol$suffix@example.com\"}, {\"name\": \"Dave\", \"email\": \"dave$suffix@example.com\", \"balance\": 5}]"
  api POST "/transfer?from_user_id=${alice:-1}&to_user_id=${bob:-2}&amount=25"
  api POST "/transfer?from_user_id=${alice:-1}&to_user_id=${bob:-2}&amount=1000"
  api POST "/transfer?from_user_id=${alice:-1}&to_user_id=${bob:-2}&amount=-1"
  api GET /pool/status

  if [ -n "$MPORT" ]; then
    after=$(metrics)
    say "pgsplit /metrics: pgsplit_statements_total lines that moved during the examples"
    metrics_moved "$before" "$after"
  else
    say "This pgsplit has no --metrics-listen yet, so there is no /metrics to show"
  fi
}

start_users_api() {
  local pid i status_url=
  [ -n "$MPORT" ] && status_url="http://127.0.0.1:$MPORT/status"
  say "Starting users-api on 127.0.0.1:$APORT"
  # setsid: like pgsplit, it must outlive this script and the terminal.
  DATABASE_URL="postgresql://postgres@127.0.0.1:$LPORT/postgres" BIND="127.0.0.1:$APORT" \
    PGSPLIT_STATUS_URL="$status_url" RUST_LOG=${RUST_LOG:-info} \
    setsid "$API_BIN" </dev/null >"$STATE/users-api.log" 2>&1 &
  pid=$!
  echo "$pid" >"$STATE/users-api.pid"
  for ((i = 0; i < 150; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$STATE/users-api.log" >&2 || true
      die "users-api exited; log above. Clean up with: $0 stop"
    fi
    curl -fsS "http://127.0.0.1:$APORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -n 30 "$STATE/users-api.log" >&2 || true
  die "users-api does not answer on 127.0.0.1:$APORT after 30 s; log above. Clean up with: $0 stop"
}

print_footer() {
  say "Running"
  echo "  pgsplit:   psql -h 127.0.0.1 -p $LPORT -U postgres postgres   (log: $STATE/pgsplit.log)"
  [ -z "$MPORT" ] || echo "  metrics:   curl http://127.0.0.1:$MPORT/metrics   (also /status, /healthz)"
  echo "  users-api: curl http://127.0.0.1:$APORT/users   (log: $STATE/users-api.log)"
  echo "  primary:   127.0.0.1:$PPORT   replica: 127.0.0.1:$RPORT   (logs: $STATE/pg/*.log)"
  echo "  stop everything: $0 stop"
}

# curl is the demo's HTTP client; a minimal Debian may lack it.
ensure_curl() {
  command -v curl >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    die "curl not found; install it (apt-get install curl)"
  fi
  echo "installing curl"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
}

interrupted() {
  trap - INT TERM
  say "Interrupted: stopping what was started"
  stop_all
  exit 130
}

start() {
  ensure_curl
  if [ -f "$STATE/ports" ] && pgsplit_pid >/dev/null && api_pid >/dev/null && cluster_running; then
    read -r LPORT PPORT RPORT APORT MPORT <"$STATE/ports"
    [ "$MPORT" != - ] || MPORT=
    say "The demo is already running (pgsplit pid $(pgsplit_pid), users-api pid $(api_pid))"
    run_statements
    run_api_examples
    print_footer
    return
  fi
  if [ -e "$STATE" ]; then
    say "Cleaning up a previous, partly stopped demo"
    stop_all
  fi

  scripts/pgcluster.sh deps
  local build=()
  [ -n "${PGSPLIT_BIN:-}" ] || build+=(--bin pgsplit)
  [ -n "${USERS_API_BIN:-}" ] || build+=(--bin users-api)
  if [ ${#build[@]} -gt 0 ]; then
    command -v cargo >/dev/null ||
      die "cargo not found; install Rust with https://rustup.rs (curl --proto '=https' -sSf https://sh.rustup.rs | sh)"
    say "Building ${build[*]//--bin /} (release)"
    # users-api is built only with the demo feature (Cargo.toml).
    cargo build --release --features demo "${build[@]}"
  fi
  [ -x "$BIN" ] || die "$BIN is not an executable"
  [ -x "$API_BIN" ] || die "$API_BIN is not an executable"

  # From here on Ctrl-C stops what was started instead of leaving half of it.
  trap interrupted INT TERM
  mkdir -p "$STATE"
  PPORT=$(pick_port 55432)
  RPORT=$(pick_port 55433 "$PPORT")
  LPORT=$(pick_port 6432 "$PPORT $RPORT")
  APORT=$(pick_port 8000 "$PPORT $RPORT $LPORT")
  # The metrics endpoint only if this pgsplit has it (it is being added).
  local metrics_args=()
  MPORT=
  if "$BIN" --help 2>&1 | grep -q -- '--metrics-listen'; then
    MPORT=$(pick_port 9930 "$PPORT $RPORT $LPORT $APORT")
    metrics_args=(--metrics-listen "127.0.0.1:$MPORT")
  fi
  echo "$LPORT $PPORT $RPORT $APORT ${MPORT:--}" >"$STATE/ports"

  say "Starting primary on :$PPORT and replica on :$RPORT"
  scripts/pgcluster.sh up "$STATE/pg" "$PPORT" "$RPORT"

  say "Starting pgsplit on 127.0.0.1:$LPORT"
  # setsid: pgsplit must outlive this script and the terminal's signals.
  RUST_LOG=${RUST_LOG:-info} setsid "$BIN" --listen "127.0.0.1:$LPORT" \
    --primary "127.0.0.1:$PPORT" --replica "127.0.0.1:$RPORT" --auth trust "${metrics_args[@]}" \
    </dev/null >"$STATE/pgsplit.log" 2>&1 &
  local pid=$! i
  echo "$pid" >"$STATE/pgsplit.pid"
  for ((i = 0; i < 100; i++)); do
    # kill -0, not pgsplit_pid: until setsid execs, the child is still a bash.
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$STATE/pgsplit.log" >&2 || true
      die "pgsplit exited; log above. Clean up with: $0 stop"
    fi
    q "$LPORT" "select 1" >/dev/null 2>&1 && break
    sleep 0.2
  done
  if ! q "$LPORT" "select 1" >/dev/null 2>&1; then
    tail -n 30 "$STATE/pgsplit.log" >&2 || true
    die "pgsplit does not answer on 127.0.0.1:$LPORT after 20 s; log above. Clean up with: $0 stop"
  fi

  start_users_api
  trap - INT TERM

  run_statements
  run_api_examples
  print_footer
}

case "${1:-start}" in
  start) start ;;
  stop) stop_all; echo "demo stopped" ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
