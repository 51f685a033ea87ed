#!/usr/bin/env bash
# Runs once, from /docker-entrypoint-initdb.d, when the postgres image
# initializes the primary's data directory: creates the role the replica
# streams as and lets it connect for replication (the image's pg_hba.conf
# only admits ordinary connections from other hosts).
#
# Environment: POSTGRES_USER, POSTGRES_DB (the image's), REPLICATION_USER,
# REPLICATION_PASSWORD (docker-compose.yml).
set -euo pipefail

: "${REPLICATION_USER:?REPLICATION_USER is not set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD is not set}"

# psql variables quote the name and password (:"x" and :'x'), which they
# cannot be in -c, hence a script on stdin.
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  --set=repl_user="$REPLICATION_USER" --set=repl_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"repl_user" WITH REPLICATION LOGIN PASSWORD :'repl_password';
SQL

# The image restarts the server after the init scripts, which loads this.
echo "host replication $REPLICATION_USER all scram-sha-256" >>"$PGDATA/pg_hba.conf"
