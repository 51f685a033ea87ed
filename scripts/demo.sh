#!/usr/bin/env bash
# Demo: a PostgreSQL 15 primary, a streaming replica and pgsplit in front of
# them, then a few statements through pgsplit showing which server ran each.
#
# Usage:
#   scripts/demo.sh          start everything (or, if it runs, show it again)
#   scripts/demo.sh stop     stop pgsplit and both servers, remove the state
#
# State lives in /tmp/pgsplit-demo: pg/ (data dirs, logs, sockets; see
# scripts/pgcluster.sh), pgsplit.log, pgsplit.pid and ports. Run as root on
# Debian 12 it installs PostgreSQL with apt-get if missing; it needs cargo.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=/tmp/pgsplit-demo
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH" PGBIN
# Durability is irrelevant for a demo: fsync=off and friends (see pgcluster.sh).
export PGC_FAST=1
# PGSPLIT_BIN=/path/to/pgsplit: run that binary instead of building one.
BIN=${PGSPLIT_BIN:-$ROOT/target/release/pgsplit}

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

pgsplit_pid() {
  # Prints the pid only if it still is our pgsplit (pids get reused).
  local pid
  pid=$(cat "$STATE/pgsplit.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == *pgsplit* ]] || return 1
  echo "$pid"
}

cluster_running() {
  local status
  [ -d "$STATE/pg" ] || return 1
  # Captured first: `grep -q` in a pipe would SIGPIPE the writer under pipefail.
  status=$(scripts/pgcluster.sh status "$STATE/pg" 2>/dev/null) || true
  [[ "$status" == *"primary: running"* && "$status" == *"replica: running"* ]]
}

stop_all() {
  local pid i
  if pid=$(pgsplit_pid); then
    echo "stopping pgsplit (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ -d "$STATE/pg" ]; then
    scripts/pgcluster.sh down "$STATE/pg" || true
  fi
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

print_footer() {
  say "Running"
  echo "  pgsplit:  psql -h 127.0.0.1 -p $LPORT -U postgres postgres   (log: $STATE/pgsplit.log)"
  echo "  primary:  127.0.0.1:$PPORT   replica: 127.0.0.1:$RPORT   (logs: $STATE/pg/*.log)"
  echo "  stop everything: $0 stop"
}

start() {
  if [ -f "$STATE/ports" ] && pgsplit_pid >/dev/null && cluster_running; then
    read -r LPORT PPORT RPORT <"$STATE/ports"
    say "The demo is already running (pgsplit pid $(pgsplit_pid))"
    run_statements
    print_footer
    return
  fi
  if [ -e "$STATE" ]; then
    say "Cleaning up a previous, partly stopped demo"
    stop_all
  fi

  scripts/pgcluster.sh deps
  if [ -z "${PGSPLIT_BIN:-}" ]; then
    command -v cargo >/dev/null ||
      die "cargo not found; install Rust with https://rustup.rs (curl --proto '=https' -sSf https://sh.rustup.rs | sh)"
    say "Building pgsplit (release)"
    cargo build --release --bin pgsplit
  fi
  [ -x "$BIN" ] || die "$BIN is not an executable"

  mkdir -p "$STATE"
  PPORT=$(pick_port 55432)
  RPORT=$(pick_port 55433 "$PPORT")
  LPORT=$(pick_port 6432 "$PPORT $RPORT")
  echo "$LPORT $PPORT $RPORT" >"$STATE/ports"

  say "Starting primary on :$PPORT and replica on :$RPORT"
  scripts/pgcluster.sh up "$STATE/pg" "$PPORT" "$RPORT"

  say "Starting pgsplit on 127.0.0.1:$LPORT"
  # setsid: pgsplit must outlive this script and the terminal's signals.
  RUST_LOG=${RUST_LOG:-info} setsid "$BIN" --listen "127.0.0.1:$LPORT" \
    --primary "127.0.0.1:$PPORT" --replica "127.0.0.1:$RPORT" --auth trust \
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

  run_statements
  print_footer
}

case "${1:-start}" in
  start) start ;;
  stop) stop_all; echo "demo stopped" ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
