#!/usr/bin/env bash
# pgcluster.sh - throwaway local PostgreSQL primary + one streaming replica.
#
# Copied from the team's benchmark kit (shared/bench/pgcluster.sh) so that the
# repo does not depend on files outside it; the `deps` subcommand was added
# here. Used by scripts/demo.sh and scripts/test.sh (the Rust integration
# tests start their own clusters with tests/support/cluster.rs instead).
#
# Usage:
#   pgcluster.sh up     DIR PRIMARY_PORT REPLICA_PORT
#   pgcluster.sh down   DIR
#   pgcluster.sh status DIR
#   pgcluster.sh deps   [--force]
#       Installs postgresql (15 on Debian 12), postgresql-contrib and pgbouncer
#       with apt-get when run as root, unless initdb, pg_ctl and pgbench are
#       already in $PGBIN (--force: install anyway). Then stops the clusters
#       and services the packages start, so they hold no ports.
#   pgcluster.sh stop-packaged
#       Only that last step: stop Debian's own clusters and pgbouncer service
#       and keep them from starting at boot.
#
# Layout created under DIR (owned by the server OS user):
#   DIR/primary/          primary data directory      (log: DIR/primary.log)
#   DIR/replica/          replica data directory      (log: DIR/replica.log)
#   DIR/ports             "PRIMARY_PORT REPLICA_PORT" (used by status)
#   DIR/                  is also the unix_socket_directories of both servers
#
# Both servers listen on 127.0.0.1 only and trust every loopback / unix-socket
# connection, including replication connections. Superuser is "postgres".
#
# Environment knobs:
#   PGBIN=/usr/lib/postgresql/15/bin   server binaries
#   PGC_FAST=1     fsync=off, synchronous_commit=off, full_page_writes=off
#                  (default 0 = durable settings). Only applied at initdb time;
#                  an existing cluster keeps what it was created with.
#   PGC_USER=postgres   OS user that owns/runs the clusters when invoked as
#                  root (initdb/postgres refuse to run as root). Created if
#                  missing. When not root, the invoking user is used.
#   PGC_TIMEOUT=30 seconds to wait for the replica to reach "streaming".
#   PGC_EXTRA_CONF='max_connections=300;shared_buffers=512MB'  extra settings
#                  (';'-separated) appended to the primary's config at initdb.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGC_FAST=${PGC_FAST:-0}
PGC_USER=${PGC_USER:-postgres}
PGC_TIMEOUT=${PGC_TIMEOUT:-30}
PGC_EXTRA_CONF=${PGC_EXTRA_CONF:-}

die() { echo "pgcluster: $*" >&2; exit 1; }
log() { echo "pgcluster: $*" >&2; }

# Run a command as the server OS user (from / so that an unreadable cwd
# does not produce warnings).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$PGC_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || { PGC_USER=$(id -un); return; }
  if ! id "$PGC_USER" >/dev/null 2>&1; then
    log "creating OS user $PGC_USER"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PGC_USER"
  fi
}

# psql as superuser over the unix socket in DIR
q() { # q DIR PORT SQL
  as_pg "$PGBIN/psql" -X -q -A -t -h "$1" -p "$2" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$3"
}

is_running() { # is_running DATADIR
  [ -d "$1" ] && as_pg "$PGBIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

port_busy() {
  # true if something already listens on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_up() {
  [ $# -eq 3 ] || die "usage: $0 up DIR PRIMARY_PORT REPLICA_PORT"
  local dir=$1 pport=$2 rport=$3
  [ "$pport" != "$rport" ] || die "ports must differ"
  ensure_user
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then chown "$PGC_USER": "$dir"; fi
  chmod 700 "$dir"
  as_pg test -w "$dir" || die "$dir is not writable by $PGC_USER (check parent dir permissions)"
  local P=$dir/primary R=$dir/replica

  # ---------------- primary ----------------
  if [ ! -s "$P/PG_VERSION" ]; then
    log "initdb $P"
    as_pg "$PGBIN/initdb" -D "$P" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=trust --no-instructions >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >"$P/pg_hba.conf" <<'EOF'
# pgcluster.sh: trust everything on unix sockets and IPv4 loopback
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
local   replication  all                  trust
host    replication  all   127.0.0.1/32   trust
EOF
    {
      echo ""
      echo "# ---- pgcluster.sh settings (last value wins) ----"
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $pport"
      echo "unix_socket_directories = '$dir'"
      echo "cluster_name = 'pgsplit_primary'"
      echo "wal_level = replica"
      echo "max_wal_senders = 10"
      echo "max_replication_slots = 10"
      echo "wal_keep_size = '512MB'"
      echo "hot_standby = on"
      echo "hot_standby_feedback = on"
      echo "max_connections = 200"
      echo "shared_buffers = '256MB'"
      echo "logging_collector = off"
      echo "log_line_prefix = '%m [%p] %q%u@%d '"
      if [ "$PGC_FAST" = 1 ]; then
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
      fi
      if [ -n "$PGC_EXTRA_CONF" ]; then
        tr ';' '\n' <<<"$PGC_EXTRA_CONF"
      fi
    } >>"$P/postgresql.conf"
    echo "$pport $rport" >"$dir/ports"
    if [ "$(id -u)" -eq 0 ]; then chown "$PGC_USER": "$dir/ports"; fi
  fi
  if ! is_running "$P"; then
    port_busy "$pport" && die "127.0.0.1:$pport is already in use"
    log "starting primary on 127.0.0.1:$pport"
    as_pg "$PGBIN/pg_ctl" -D "$P" -l "$dir/primary.log" -w -t 60 -o "-p $pport" start >/dev/null \
      || { tail -n 30 "$dir/primary.log" >&2; die "primary failed to start"; }
  fi

  # ---------------- replica ----------------
  if [ ! -s "$R/PG_VERSION" ]; then
    rm -rf "$R"
    log "pg_basebackup -> $R"
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$pport" -U postgres -D "$R" \
      -R -X stream -c fast --no-sync >"$dir/basebackup.log" 2>&1 \
      || { cat "$dir/basebackup.log" >&2; die "pg_basebackup failed"; }
    # postgresql.conf was copied from the primary: override what differs.
    {
      echo ""
      echo "# ---- pgcluster.sh replica overrides ----"
      echo "port = $rport"
      echo "cluster_name = 'pgsplit_replica'"
    } >>"$R/postgresql.conf"
    # make the walreceiver identify itself in pg_stat_replication
    echo "primary_conninfo = 'host=127.0.0.1 port=$pport user=postgres application_name=pgsplit_replica'" \
      >>"$R/postgresql.auto.conf"
    [ -f "$R/standby.signal" ] || die "standby.signal missing after pg_basebackup -R"
  fi
  if ! is_running "$R"; then
    port_busy "$rport" && die "127.0.0.1:$rport is already in use"
    log "starting replica on 127.0.0.1:$rport"
    as_pg "$PGBIN/pg_ctl" -D "$R" -l "$dir/replica.log" -w -t 60 -o "-p $rport" start >/dev/null \
      || { tail -n 30 "$dir/replica.log" >&2; die "replica failed to start"; }
  fi

  # ---------------- wait for streaming ----------------
  local i state rec
  for ((i = 0; i < PGC_TIMEOUT * 10; i++)); do
    state=$(q "$dir" "$pport" "select state from pg_stat_replication where application_name='pgsplit_replica'" 2>/dev/null || true)
    rec=$(q "$dir" "$rport" "select pg_is_in_recovery()" 2>/dev/null || true)
    if [ "$state" = streaming ] && [ "$rec" = t ]; then
      log "up: primary 127.0.0.1:$pport, replica 127.0.0.1:$rport (streaming), sockets in $dir"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$dir/replica.log" >&2
  die "replica not streaming after ${PGC_TIMEOUT}s (state='$state' in_recovery='$rec')"
}

cmd_down() {
  [ $# -eq 1 ] || die "usage: $0 down DIR"
  local dir=$1
  [ -d "$dir" ] || die "no such dir $dir"
  ensure_user
  local d
  for d in "$dir/replica" "$dir/primary"; do
    if is_running "$d"; then
      log "stopping $d"
      as_pg "$PGBIN/pg_ctl" -D "$d" -m fast -w -t 60 stop >/dev/null
    fi
  done
}

cmd_status() {
  [ $# -eq 1 ] || die "usage: $0 status DIR"
  local dir=$1 pport rport
  ensure_user
  read -r pport rport <"$dir/ports"
  for d in primary replica; do
    if is_running "$dir/$d"; then echo "$d: running"; else echo "$d: stopped"; fi
  done
  is_running "$dir/primary" && q "$dir" "$pport" \
    "select application_name, state, sync_state, replay_lsn from pg_stat_replication" || true
  is_running "$dir/replica" && echo "replica in_recovery: $(q "$dir" "$rport" "select pg_is_in_recovery()")" || true
}

PACKAGES=(postgresql postgresql-contrib pgbouncer)

have_pg() {
  [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] && [ -x "$PGBIN/pgbench" ]
}

cmd_deps() {
  local force=0
  [ "${1:-}" = --force ] && force=1
  if [ "$force" = 0 ] && have_pg; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    die "PostgreSQL 15 not found in $PGBIN; as root on Debian 12 run: apt-get install ${PACKAGES[*]}"
  fi
  log "installing ${PACKAGES[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
  have_pg || die "installed ${PACKAGES[*]} but $PGBIN still lacks initdb, pg_ctl or pgbench"
  stop_packaged_services
}

# The packages start Debian's own cluster on 5432 and pgbouncer on 6432 (where
# the demo puts pgsplit). We never use them: stop them and keep them from
# starting at boot. Every step may fail harmlessly (no systemd in containers,
# service not installed, already stopped).
stop_packaged_services() {
  local conf
  for conf in /etc/postgresql/*/*/start.conf; do
    [ -f "$conf" ] || continue
    local ver cluster
    ver=$(basename "$(dirname "$(dirname "$conf")")")
    cluster=$(basename "$(dirname "$conf")")
    pg_ctlcluster "$ver" "$cluster" stop >/dev/null 2>&1 || true
    sed -i 's/^auto$/manual/' "$conf"
  done
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    local unit
    for unit in postgresql.service pgbouncer.socket pgbouncer.service; do
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  elif [ -x /etc/init.d/pgbouncer ]; then
    /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
  fi
}

sub=${1:-}
shift || true
case "$sub" in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  status) cmd_status "$@" ;;
  deps) cmd_deps "$@" ;;
  stop-packaged) stop_packaged_services ;;
  *) echo "usage: $0 {up DIR PRIMARY_PORT REPLICA_PORT | down DIR | status DIR | deps [--force] | stop-packaged}" >&2; exit 2 ;;
esac
