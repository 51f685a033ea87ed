#!/usr/bin/env bash
# Entrypoint of the replica container (postgres:15 image): on first start,
# when the data directory is empty, clone the primary with pg_basebackup -R
# (which writes standby.signal and primary_conninfo); then run postgres, a
# streaming hot standby. Arguments are passed to postgres (-c settings).
#
# Environment: PRIMARY_HOST, PRIMARY_PORT (default 5432), REPLICATION_USER,
# REPLICATION_PASSWORD, PGDATA (the image's default), BASEBACKUP_TIMEOUT
# (seconds to wait for the primary, default 120).
#
# Also runs outside Docker (that is how it was tested; see README "Docker"):
# as a non-root user it runs everything as that user, and POSTGRES_BIN
# names the directory of the server binaries if they are not on PATH.
set -euo pipefail

PGDATA=${PGDATA:-/var/lib/postgresql/data}
PRIMARY_HOST=${PRIMARY_HOST:?PRIMARY_HOST is not set}
PRIMARY_PORT=${PRIMARY_PORT:-5432}
REPLICATION_USER=${REPLICATION_USER:?REPLICATION_USER is not set}
BASEBACKUP_TIMEOUT=${BASEBACKUP_TIMEOUT:-120}
[ -z "${POSTGRES_BIN:-}" ] || PATH="$POSTGRES_BIN:$PATH"
export PGPASSWORD=${REPLICATION_PASSWORD:?REPLICATION_PASSWORD is not set}

log() { echo "replica-entrypoint: $*" >&2; }

# The server refuses to run as root: in the image, drop to postgres with
# gosu (which the image ships), after handing it the data directory.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    gosu postgres "$@"
  else
    "$@"
  fi
}

mkdir -p "$PGDATA"
[ "$(id -u)" -ne 0 ] || chown postgres:postgres "$PGDATA"
# postgres insists on 0700 (or 0750) for its data directory.
chmod 0700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  log "waiting for the primary at $PRIMARY_HOST:$PRIMARY_PORT"
  deadline=$((SECONDS + BASEBACKUP_TIMEOUT))
  until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER"; do
    [ "$SECONDS" -lt "$deadline" ] || { log "primary not ready after ${BASEBACKUP_TIMEOUT}s"; exit 1; }
    sleep 1
  done
  # A directory left by an interrupted clone would stop pg_basebackup.
  find "$PGDATA" -mindepth 1 -delete
  log "cloning the primary with pg_basebackup"
  # application_name: the primary's pg_stat_replication names this standby.
  as_postgres pg_basebackup \
    --dbname="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER application_name=replica" \
    -D "$PGDATA" -R -X stream -c fast --progress
  [ -f "$PGDATA/standby.signal" ] || { log "standby.signal missing after pg_basebackup -R"; exit 1; }
  log "clone done; starting as a streaming standby"
fi

# Only pg_basebackup needed the password; the server should not inherit it.
unset PGPASSWORD
exec_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    exec gosu postgres postgres -D "$PGDATA" "$@"
  fi
  exec postgres -D "$PGDATA" "$@"
}
exec_postgres "$@"
