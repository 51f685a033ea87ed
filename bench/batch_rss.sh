#!/usr/bin/env bash
# pgsplit's memory while it holds a big extended-protocol batch: an asyncpg
# executemany of ROWS rows of ROW_BYTES bytes (default 100,000 of 1 KB, about
# 100 MB) as one batch (Bind/Execute per row, one Sync at the end), through
# the release binary in front of a running primary and replica. Prints
# pgsplit's resident memory (from /proc/PID/status) before, its peak (VmHWM)
# during, right after, and some seconds after, and the time the executemany
# took through pgsplit and directly on the primary.
#
# pgsplit holds a batch until its Sync to choose its server, so today the
# whole 100 MB is in its memory at once (measured: 10 MB -> 253 MB, and it
# stays there); once the batch streams to its server as soon as its
# destination is known, the peak should stay near the start.
#
# Usage: bench/batch_rss.sh PRIMARY_PORT REPLICA_PORT [PGSPLIT_PORT]
#   scripts/pgcluster.sh up /tmp/rss 56000 56001   # a cluster, if none runs
#   bench/batch_rss.sh 56000 56001                  # pgsplit on 56010
#   ROWS=20000 ROW_BYTES=4096 bench/batch_rss.sh 56000 56001
# Needs python3 with asyncpg (scripts/drivers.sh installs it) and Linux /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
PRIMARY=${1:?usage: bench/batch_rss.sh PRIMARY_PORT REPLICA_PORT [PGSPLIT_PORT]}
REPLICA=${2:?usage: bench/batch_rss.sh PRIMARY_PORT REPLICA_PORT [PGSPLIT_PORT]}
PORT=${3:-$((PRIMARY + 10))}
export ROWS=${ROWS:-100000} ROW_BYTES=${ROW_BYTES:-1024} SETTLE=${SETTLE:-5}

cargo build --release --bin pgsplit
WORK=$(mktemp -d /tmp/pgsplit-rss.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cat >"$WORK/pgsplit.toml" <<EOF
listen = "127.0.0.1:$PORT"
primary = "127.0.0.1:$PRIMARY"
replicas = ["127.0.0.1:$REPLICA"]
pool_mode = "transaction"
EOF
RUST_LOG=warn target/release/pgsplit --config "$WORK/pgsplit.toml" >"$WORK/pgsplit.log" 2>&1 &
PID=$!

python3 - "$PID" "$PORT" "$PRIMARY" <<'PY'
import asyncio, os, sys, time
import asyncpg

pid, port, primary = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows, row_bytes, settle = int(os.environ["ROWS"]), int(os.environ["ROW_BYTES"]), float(os.environ["SETTLE"])


def memory():
    """(VmRSS, VmHWM) of pgsplit in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024


async def connect(p):
    for _ in range(100):
        try:
            return await asyncpg.connect(host="127.0.0.1", port=p, user="postgres", database="postgres")
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{p}")


async def executemany(conn):
    await conn.execute("drop table if exists batch_rss; create table batch_rss(id int, payload text)")
    payload = "x" * row_bytes
    started = time.monotonic()
    await conn.executemany("insert into batch_rss values ($1, $2)", ((i, payload) for i in range(rows)))
    took = time.monotonic() - started
    if await conn.fetchval("/* pgsplit:primary */ select count(*) from batch_rss") != rows:
        raise SystemExit("not every row arrived")
    await conn.execute("drop table batch_rss")
    return took


async def main():
    conn = await connect(port)
    await conn.fetchval("select 1")
    rss_before, hwm_before = memory()
    took = await executemany(conn)
    rss_right_after, peak = memory()
    await conn.close()
    await asyncio.sleep(settle)
    rss_later, _ = memory()
    direct = await connect(primary)
    took_direct = await executemany(direct)
    await direct.close()
    mb = rows * row_bytes / 2**20
    print(f"executemany of {rows} rows of {row_bytes} bytes ({mb:.0f} MB), one Sync")
    print(f"pgsplit RSS before:          {rss_before:8.1f} MB (peak so far {hwm_before:.1f} MB)")
    print(f"pgsplit peak RSS (VmHWM):    {peak:8.1f} MB")
    print(f"pgsplit RSS right after:     {rss_right_after:8.1f} MB")
    print(f"pgsplit RSS {settle:g} s after:      {rss_later:8.1f} MB")
    print(f"time through pgsplit:        {took:8.2f} s")
    print(f"time directly on primary:    {took_direct:8.2f} s")


asyncio.run(main())
PY
