#!/usr/bin/env bash
# Memory per idle client: the resident memory (VmRSS) of pgsplit, and of
# PgBouncer beside it, with N clients logged in (trust, outside a
# transaction, each having run one `select 1`): just after they connected,
# and once they have been idle IDLE seconds (pgsplit's sessions give their
# buffers back after 5 to 10 s of silence); and again SETTLE seconds after
# they all left (pgsplit returns freed memory to the system every 10 s).
# Per client = (RSS with N clients - RSS with one) / N.
#
# The clients are raw protocol connections from one Python process (no
# driver, so the numbers are the proxies', not a driver's), opened a few
# hundred at a time.
#
# Usage: bench/idle_clients.sh PRIMARY_PORT REPLICA_PORT [name:binary ...]
#   scripts/pgcluster.sh up /tmp/idle 56000 56001     # a cluster, if none runs
#   bench/idle_clients.sh 56000 56001                  # target/release/pgsplit
#   bench/idle_clients.sh 56000 56001 old:/tmp/pgsplit-main new:target/release/pgsplit
#   COUNTS="1000" PGBOUNCER=0 bench/idle_clients.sh 56000 56001
# Needs python3, pgbouncer (PGBOUNCER=0 skips it), Linux /proc, and an open
# file limit above the largest count (raised here up to the hard limit).
set -euo pipefail
cd "$(dirname "$0")/.."
PRIMARY=${1:?usage: bench/idle_clients.sh PRIMARY_PORT REPLICA_PORT [name:binary ...]}
REPLICA=${2:?usage: bench/idle_clients.sh PRIMARY_PORT REPLICA_PORT [name:binary ...]}
shift 2
TARGETS=${*:-"pgsplit:target/release/pgsplit"}
COUNTS=${COUNTS:-"1000 10000"}
IDLE=${IDLE:-12}
SETTLE=${SETTLE:-12}
PGBOUNCER=${PGBOUNCER:-1}
# Below the ephemeral port range, which outgoing connections take ports from.
PORT=${PORT:-6460}
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/pgsplit-idle.XXXXXX)
chmod 755 "$WORK"
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Opens N idle clients against PORT, prints the proxy's RSS (KiB) with one
# client, with N just connected, with N idle, and after they all left.
measure() {
  python3 - "$1" "$2" "$3" "$IDLE" "$SETTLE" <<'PY'
import asyncio, struct, sys

pid, port, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
idle, settle = float(sys.argv[4]), float(sys.argv[5])


def rss():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def startup():
    body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
    return struct.pack("!I", len(body) + 4) + body


def query(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


async def until_ready(reader):
    while True:
        head = await reader.readexactly(5)
        body = await reader.readexactly(struct.unpack("!I", head[1:])[0] - 4)
        if head[:1] == b"E":
            raise RuntimeError(body.decode(errors="replace"))
        if head[:1] == b"Z":
            return


async def client():
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(startup())
    await until_ready(reader)
    writer.write(query("select 1"))
    await until_ready(reader)
    return writer


async def main():
    first = await client()
    await asyncio.sleep(1)
    base = rss()
    clients = []
    while len(clients) < count:
        batch = min(200, count - len(clients))
        clients += await asyncio.gather(*(client() for _ in range(batch)))
    connected = rss()
    await asyncio.sleep(idle)
    loaded = rss()
    for writer in clients + [first]:
        writer.write(b"X\0\0\0\x04")
        writer.close()
    await asyncio.sleep(settle)
    print(base, connected, loaded, rss())


asyncio.run(main())
PY
}

# Waits until something accepts on PORT.
listening() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

report() {
  read -r base connected loaded left <<<"$3"
  awk -v n="$1" -v t="$2" -v b="$base" -v c="$connected" -v l="$loaded" -v a="$left" 'BEGIN {
    printf "%-10s %6d clients: RSS %6.1f MiB with one, %6.1f MiB all connected, %6.1f MiB all idle, %6.1f MiB after they left; per client %5.2f KiB connected, %5.2f KiB idle\n",
      t, n, b / 1024, c / 1024, l / 1024, a / 1024, (c - b) / n, (l - b) / n }'
}

for count in $COUNTS; do
  for spec in $TARGETS; do
    name=${spec%%:*} bin=${spec#*:}
    cat >"$WORK/pgsplit.toml" <<EOF
listen = "127.0.0.1:$PORT"
primary = "127.0.0.1:$PRIMARY"
replicas = ["127.0.0.1:$REPLICA"]
pool_mode = "transaction"
EOF
    # Builds with client limits need room for every client; older builds
    # refuse the key and exit at once: they run without it.
    cp "$WORK/pgsplit.toml" "$WORK/plain.toml"
    echo "max_client_conn = $((count + 100))" >>"$WORK/pgsplit.toml"
    RUST_LOG=warn "$bin" --config "$WORK/pgsplit.toml" >"$WORK/$name.log" 2>&1 &
    PID=$!
    sleep 0.5
    if ! kill -0 "$PID" 2>/dev/null; then
      RUST_LOG=warn "$bin" --config "$WORK/plain.toml" >"$WORK/$name.log" 2>&1 &
      PID=$!
    fi
    listening "$PORT"
    report "$count" "$name" "$(measure "$PID" "$PORT" "$count")"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
  done
  if [ "$PGBOUNCER" = 1 ]; then
    printf '"postgres" ""\n' >"$WORK/userlist.txt"
    cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PRIMARY
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = $((count + 100))
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
    chown -R postgres "$WORK" 2>/dev/null || true
    if [ "$(id -u)" = 0 ]; then
      pgbouncer -u postgres "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
    else
      pgbouncer "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
    fi
    PID=$!
    listening "$PORT"
    report "$count" pgbouncer "$(measure "$PID" "$PORT" "$count")"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
  fi
done
