#!/usr/bin/env bash
# The cost of read-your-writes: each pgbench transaction updates an account
# and reads it back at once (two autocommit statements, the read right after
# the write), 16 clients, against the primary directly and pgsplit in
# session, global and eventual mode, interleaved for ROUNDS rounds. Prints TPS,
# the ratio to direct, and the share of reads the replica served.
# Usage: bench/rw.sh [DUR=10] [ROUNDS=2] [CLIENTS=16]  (root, Debian 12,
# postgresql installed; builds pgsplit in release mode first).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
for kv in "$@"; do export "${kv?}"; done
DUR=${DUR:-10} ROUNDS=${ROUNDS:-2} CLIENTS=${CLIENTS:-16}
PRIMARY=56432 REPLICA=56433
cargo build --release --bin pgsplit
WORK=$(mktemp -d /tmp/pgsplit-rw.XXXXXX)
chmod 755 "$WORK"
BIN=$WORK/pgsplit
cp target/release/pgsplit "$BIN"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  scripts/pgcluster.sh down "$WORK/cluster" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
PGC_FAST=1 scripts/pgcluster.sh up "$WORK/cluster" $PRIMARY $REPLICA >/dev/null
# The cluster runs without fsync; SYNC_COMMIT=off (the harness default)
# leaves commits in WAL buffers for up to 3 x wal_writer_delay (200 ms), so
# replicas see them that late. SYNC_COMMIT=on (the default here, and
# PostgreSQL's) sends each commit to the replica as it is acknowledged.
psql -X -q -h 127.0.0.1 -p $PRIMARY -U postgres postgres \
  -c "alter system set synchronous_commit = ${SYNC_COMMIT:-on}" -c "select pg_reload_conf()" >/dev/null
pgbench -i -q -s 10 -h 127.0.0.1 -p $PRIMARY -U postgres postgres >/dev/null 2>&1
declare -A PORT=([direct]=$PRIMARY [session]=6444 [global]=6445 [eventual]=6446)
for mode in session global eventual; do
  RUST_LOG=warn "$BIN" --primary 127.0.0.1:$PRIMARY --replica 127.0.0.1:$REPLICA \
    --listen 127.0.0.1:${PORT[$mode]} --pool-size 20 --consistency $mode &
  pids+=($!)
done
sleep 2
cat >"$WORK/rw.sql" <<'SQL'
\set aid random(1, 1000000)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SQL
replica_scans() {
  psql -X -A -t -h 127.0.0.1 -p $REPLICA -U postgres postgres \
    -c "select coalesce(sum(idx_scan), 0) from pg_stat_user_tables where relname = 'pgbench_accounts'"
}
printf '%-6s %-9s %8s %7s %13s\n' round target tps ratio replica_reads
for round in $(seq 1 "$ROUNDS"); do
  direct=
  for target in direct session global eventual; do
    before=$(replica_scans)
    tps=$(pgbench -n -M simple -c "$CLIENTS" -j 2 -T "$DUR" -f "$WORK/rw.sql" \
      -h 127.0.0.1 -p "${PORT[$target]}" -U postgres postgres 2>&1 |
      sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    # Standby backends report scan counts when idle for a while (10 s).
    sleep 11
    after=$(replica_scans)
    direct=${direct:-$tps}
    share=$(python3 -c "print(f'{($after-$before)/($tps*$DUR)*100:.0f}%')")
    ratio=$(python3 -c "print(f'{$tps/$direct:.2f}')")
    printf '%-6s %-9s %8.0f %7s %13s\n' "$round" "$target" "$tps" "$ratio" "$share"
  done
done
