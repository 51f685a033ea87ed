#!/usr/bin/env bash
# Runs the containers' scripts outside Docker (no engine is needed), against
# a throwaway local PostgreSQL 15, the way the postgres image would:
#   1. initdb a primary with the image's pg_hba rule (scram-sha-256 from
#      any host) and run docker/primary-init.sh as an init script;
#   2. run docker/replica-entrypoint.sh on an empty data directory: it must
#      clone the primary with pg_basebackup as the replication user and
#      start a standby that streams (pg_stat_replication says so);
#   3. stop it and run the entrypoint again on the now full directory: it
#      must start the standby without cloning;
#   4. check that a row written on the primary is read on the replica.
# Prints "check-scripts: ok" at the end; cleans up on exit.
#
# Usage: docker/check-scripts.sh  (as root it runs the servers as postgres)
set -euo pipefail

cd "$(dirname "$0")"
HERE=$(pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- env PATH="$PATH" "$@"; else "$@"; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
say() { echo "check-scripts: $*"; }

DIR=$(mktemp -d /tmp/pgsplit-docker-check.XXXXXX)
[ "$(id -u)" -ne 0 ] || chown postgres: "$DIR"
PPORT=$(free_port)
RPORT=$(free_port)
REPLICA_PID=

cleanup() {
  [ -z "$REPLICA_PID" ] || kill "$REPLICA_PID" 2>/dev/null || true
  as_pg pg_ctl -D "$DIR/replica" -m immediate stop >/dev/null 2>&1 || true
  as_pg pg_ctl -D "$DIR/primary" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

psql_at() { # psql_at PORT SQL, as postgres over the unix socket
  as_pg psql -X -At -h "$DIR" -p "$1" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$2"
}

say "1. primary on :$PPORT, with docker/primary-init.sh"
as_pg initdb -D "$DIR/primary" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
# The image's rule for other hosts; the init script must add replication.
echo "host all all all scram-sha-256" >>"$DIR/primary/pg_hba.conf"
sed -i '/replication/d' "$DIR/primary/pg_hba.conf"
as_pg pg_ctl -D "$DIR/primary" -l "$DIR/primary.log" -w \
  -o "-p $PPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR -c cluster_name=primary" start >/dev/null
as_pg env PGHOST="$DIR" PGPORT="$PPORT" PGDATA="$DIR/primary" POSTGRES_USER=postgres POSTGRES_DB=postgres \
  REPLICATION_USER=replicator REPLICATION_PASSWORD=s3cret bash "$HERE/primary-init.sh"
psql_at "$PPORT" "select pg_reload_conf()" >/dev/null
psql_at "$PPORT" "create table t(x int); insert into t values (1)"

start_replica() {
  as_pg env PGDATA="$DIR/replica" PRIMARY_HOST=127.0.0.1 PRIMARY_PORT="$PPORT" \
    REPLICATION_USER=replicator REPLICATION_PASSWORD=s3cret POSTGRES_BIN="$PGBIN" BASEBACKUP_TIMEOUT=10 \
    bash "$HERE/replica-entrypoint.sh" -c "port=$RPORT" -c listen_addresses=127.0.0.1 \
    -c "unix_socket_directories=$DIR" -c cluster_name=replica >>"$DIR/replica.log" 2>&1 &
  REPLICA_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(psql_at "$RPORT" "select pg_is_in_recovery()" 2>/dev/null)" = t ] &&
      [ "$(psql_at "$PPORT" "select state from pg_stat_replication where application_name = 'replica'")" = streaming ] &&
      return 0
    kill -0 "$REPLICA_PID" 2>/dev/null || { cat "$DIR/replica.log"; say "FAILED: the entrypoint exited"; exit 1; }
    sleep 0.1
  done
  cat "$DIR/replica.log"
  say "FAILED: no streaming standby after 30 s"
  exit 1
}

say "2. replica-entrypoint.sh on an empty data directory (clones, then streams)"
start_replica
grep -q "cloning the primary" "$DIR/replica.log" || { say "FAILED: it did not clone"; exit 1; }
[ "$(stat -c %a "$DIR/replica")" = 700 ] || { say "FAILED: data dir mode"; exit 1; }

say "3. replica-entrypoint.sh again on the full directory (no clone)"
as_pg pg_ctl -D "$DIR/replica" -m fast -w stop >/dev/null
wait "$REPLICA_PID" || true
: >"$DIR/replica.log"
start_replica
if grep -q "cloning the primary" "$DIR/replica.log"; then say "FAILED: it cloned again"; exit 1; fi

say "4. a write on the primary reaches the replica"
psql_at "$PPORT" "insert into t values (2)"
for ((i = 0; i < 100; i++)); do
  [ "$(psql_at "$RPORT" "select sum(x) from t")" = 3 ] && break
  sleep 0.1
done
[ "$(psql_at "$RPORT" "select sum(x) from t")" = 3 ] || { say "FAILED: row not replicated"; exit 1; }
[ "$(psql_at "$RPORT" "show cluster_name")" = replica ] || { say "FAILED: cluster_name"; exit 1; }
say "ok"
