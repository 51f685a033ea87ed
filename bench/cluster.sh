#!/usr/bin/env bash
# What consistency = "cluster" costs readers: pgbench's select-only script
# (one autocommit SELECT by primary key per transaction) at 1, 16 and 64
# clients, through pgsplit in eventual, session and cluster mode, with a
# writer updating rows on the primary directly (so cluster mode has writes
# to wait for that pgsplit never saw). For each: TPS, mean latency, the
# latency added over eventual, the share of reads the replica served, and
# the primary's load as the queries pgsplit sent it per read: reads it sent
# there, and position samples (pgsplit_position_samples_total).
# Usage: bench/cluster.sh [DUR=10] [CLIENTS="1 16 64"] [WRITER_TPS=200]
# (root, Debian 12, postgresql installed; builds pgsplit in release mode).
set -euo pipefail
cd "$(dirname "$0")/.."
for kv in "$@"; do export "${kv?}"; done
DUR=${DUR:-10} CLIENTS=${CLIENTS:-"1 16 64"} WRITER_TPS=${WRITER_TPS:-200}
PRIMARY=56532 REPLICA=56533
cargo build --release --bin pgsplit
WORK=$(mktemp -d /tmp/pgsplit-cluster.XXXXXX)
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
psql -X -q -h 127.0.0.1 -p $PRIMARY -U postgres postgres \
  -c "alter system set synchronous_commit = on" -c "select pg_reload_conf()" >/dev/null
pgbench -i -q -s 10 -h 127.0.0.1 -p $PRIMARY -U postgres postgres >/dev/null 2>&1
declare -A PORT=([eventual]=6546 [session]=6544 [cluster]=6547)
declare -A METRICS=([eventual]=9546 [session]=9544 [cluster]=9547)
for mode in eventual session cluster; do
  RUST_LOG=warn "$BIN" --primary 127.0.0.1:$PRIMARY --replica 127.0.0.1:$REPLICA \
    --listen 127.0.0.1:${PORT[$mode]} --metrics-listen 127.0.0.1:${METRICS[$mode]} \
    --pool-size 20 --consistency $mode &
  pids+=($!)
done
sleep 2
cat >"$WORK/write.sql" <<'SQL'
\set aid random(1, 1000000)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SQL
samples() {
  curl -s "127.0.0.1:${METRICS[$1]}/metrics" | sed -n 's/^pgsplit_position_samples_total \([0-9]*\).*/\1/p'
}
replica_scans() {
  psql -X -A -t -h 127.0.0.1 -p $REPLICA -U postgres postgres \
    -c "select coalesce(sum(idx_scan), 0) from pg_stat_user_tables where relname = 'pgbench_accounts'"
}
printf '%-8s %-9s %8s %9s %9s %8s %14s\n' clients mode tps lat_ms added_ms replica primary_per_read
for c in $CLIENTS; do
  eventual_lat=
  for mode in eventual session cluster; do
    before_x=$(samples $mode) before_s=$(replica_scans)
    pgbench -n -M simple -c 1 -R "$WRITER_TPS" -T "$DUR" -f "$WORK/write.sql" \
      -h 127.0.0.1 -p $PRIMARY -U postgres postgres >"$WORK/writer.out" 2>&1 &
    writer=$!
    out=$(pgbench -n -S -M simple -c "$c" -j "$(( c < 2 ? 1 : 2 ))" -T "$DUR" \
      -h 127.0.0.1 -p "${PORT[$mode]}" -U postgres postgres 2>&1)
    wait $writer
    # Standby backends report scan counts when idle for a while (10 s).
    sleep 11
    after_x=$(samples $mode) after_s=$(replica_scans)
    writes=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/writer.out")
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    reads=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    eventual_lat=${eventual_lat:-$lat}
    python3 - "$c" "$mode" "$tps" "$lat" "$eventual_lat" "$reads" "$writes" \
      "$before_x" "$after_x" "$before_s" "$after_s" <<'PY'
import sys
c, mode, tps, lat, ev, reads, writes, bx, ax, bs, as_ = sys.argv[1:]
reads = int(reads)
replica = (int(as_) - int(bs)) / max(reads, 1) * 100
# Position samples, and the reads that went to the primary.
primary = (int(ax or 0) - int(bx or 0)) / max(reads, 1) + max(0.0, 1 - replica / 100)
print(f"{c:<8} {mode:<9} {float(tps):8.0f} {float(lat):9.3f} {float(lat) - float(ev):9.3f} "
      f"{replica:7.0f}% {primary:14.3f}")
PY
  done
done
