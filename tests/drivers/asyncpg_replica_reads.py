"""asyncpg through pgsplit: reads run on the replica, including the very
first run of each statement text, with the default statement cache and
with statement_cache_size=0 (asyncpg's advice behind a pooler), and after
asyncpg's type introspection ran. Writes run on the primary and a read
right after a write sees it. Usage: asyncpg_replica_reads.py DSN
PRIMARY_PORT REPLICA_PORT (the DSN's port is pgsplit's, whose admin console
answers SHOW CLIENTS). Exits non-zero with every mismatch.

asyncpg prepares with Parse/Describe/Flush and sends Bind/Execute/Sync
after the reply; with statement_cache_size=0 it does so for every
statement. A flushed batch must still go where its statement belongs.
Introspecting a type it does not know (an enum, a composite) asyncpg runs
`SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS
new`, its catalog query, and (if jit was on, as by default) `SELECT
set_config('jit', $1, false)` to restore it: a session setting, which must
not pin the client to one primary connection (SHOW CLIENTS, admin
console)."""
import asyncio
import os
import subprocess
import sys
import urllib.parse

import asyncpg


def psql_bin():
    for path in ("/usr/lib/postgresql/15/bin/psql",):
        if os.path.exists(path):
            return path
    return "psql"


def show_clients(proxy_port):
    """SHOW CLIENTS rows as dicts by column name (PgBouncer's columns,
    then pgsplit's: id, pinned, statements, connected_seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    out = subprocess.run(
        [psql_bin(), "-X", "-A", "-q", "-P", "footer=off", "-h", "127.0.0.1", "-p", str(proxy_port),
         "-U", "postgres", "-d", "pgsplit", "-c", "SHOW CLIENTS"],
        capture_output=True, text=True, env=env, timeout=30,
    )
    if out.returncode != 0:
        raise SystemExit(f"SHOW CLIENTS failed: {out.stderr}")
    lines = [line.split("|") for line in out.stdout.splitlines() if line]
    if not lines:
        return []
    header, rows = lines[0], lines[1:]
    return [dict(zip(header, row)) for row in rows]


async def setup(primary, replica):
    """Creates the tables and types on the primary directly and waits until
    the replica has them."""
    conn = await asyncpg.connect(host="127.0.0.1", port=primary, user="postgres", database="postgres")
    await conn.execute("""
        DROP TABLE IF EXISTS drv_reads, drv_typed;
        DROP TYPE IF EXISTS drv_mood, drv_pair;
        CREATE TYPE drv_mood AS ENUM ('sad', 'happy');
        CREATE TYPE drv_pair AS (n int, s text);
        CREATE TABLE drv_reads(id int PRIMARY KEY, v text);
        INSERT INTO drv_reads SELECT g, 'v' || g FROM generate_series(1, 100) g;
        CREATE TABLE drv_typed(id int PRIMARY KEY, m drv_mood, p drv_pair);
        INSERT INTO drv_typed VALUES (1, 'happy', ROW(7, 'x'));
    """)
    await conn.close()
    direct = await asyncpg.connect(host="127.0.0.1", port=replica, user="postgres", database="postgres")
    for _ in range(200):
        if await direct.fetchval("select to_regclass('drv_typed') is not null") and \
                await direct.fetchval("select count(*) from drv_typed") == 1:
            break
        await asyncio.sleep(0.05)
    else:
        raise SystemExit("the replica never got the test tables")
    await direct.close()


async def one_mode(dsn, primary, replica, proxy_port, cache_size, bad):
    label = f"statement_cache_size={cache_size}"
    app = f"drv_reads_cache_{cache_size}"
    conn = await asyncpg.connect(dsn, statement_cache_size=cache_size,
                                 server_settings={"application_name": app})

    async def read(sql, *args, want=None):
        """Runs a read whose last column is inet_server_port(); checks it
        ran on the replica and, if given, the other columns."""
        row = tuple(await conn.fetchrow(sql, *args))
        if row[-1] != replica:
            where = "the primary" if row[-1] == primary else f"port {row[-1]}"
            bad.append(f"{label}: {sql!r} ran on {where}")
        if want is not None and row[:-1] != want:
            bad.append(f"{label}: {sql!r} gave {row[:-1]!r}, expected {want!r}")

    # The very first run of each text (a new Parse/Describe/Flush each).
    for i in range(5):
        await read(f"select {i} as n, inet_server_port()", want=(i,))
    # A table read with a parameter, first run then cached runs.
    for n in (5, 5, 17):
        await read("select count(*), inet_server_port() from drv_reads where id <= $1", n, want=(n,))
    # An explicitly prepared statement, reused.
    stmt = await conn.prepare("select v, inet_server_port() from drv_reads where id = $1")
    for n in (3, 4):
        row = tuple(await stmt.fetchrow(n))
        if row != (f"v{n}", replica):
            bad.append(f"{label}: prepared read gave {row!r}, expected ('v{n}', {replica})")

    # Types asyncpg does not know: it introspects them (and sets jit).
    row = tuple(await conn.fetchrow("select m, p, inet_server_port() from drv_typed where id = 1"))
    if row[0] != "happy" or tuple(row[1]) != (7, "x"):
        bad.append(f"{label}: typed read gave {row!r}")
    if row[-1] != replica:
        bad.append(f"{label}: the read that needed type introspection ran on port {row[-1]}, not the replica")
    # Introspection is done: is the client pinned?
    mine = [r for r in show_clients(proxy_port) if r.get("application_name") == app]
    if len(mine) != 1:
        bad.append(f"{label}: SHOW CLIENTS has {len(mine)} rows for {app}: {mine}")
    elif mine[0]["pinned"].strip():
        bad.append(f"{label}: after type introspection the client is pinned: {mine[0]['pinned']!r}")
    # Reads after introspection, new texts and cached ones.
    for i in range(5, 8):
        await read(f"select {i} as n, inet_server_port()", want=(i,))
    await read("select count(*), inet_server_port() from drv_reads where id <= $1", 9, want=(9,))
    await read("select m::text, inet_server_port() from drv_typed where id = $1", 1, want=("happy",))
    jit = await conn.fetchval("show jit")
    if jit != "on":
        bad.append(f"{label}: jit is {jit!r} after introspection (asyncpg restores it: 'on')")

    # A write runs on the primary; a read right after it sees it.
    key = 1000 + cache_size
    port = await conn.fetchval("insert into drv_reads values ($1, 'w') returning inet_server_port()", key)
    if port != primary:
        bad.append(f"{label}: an INSERT ran on port {port}, not the primary")
    seen = await conn.fetchval("select count(*) from drv_reads where id = $1", key)
    if seen != 1:
        bad.append(f"{label}: a read right after the INSERT saw {seen} rows")
    await conn.execute("delete from drv_reads where id = $1", key)
    await conn.close()


async def main(dsn, primary, replica, proxy_port):
    await setup(primary, replica)
    bad = []
    for cache_size in (100, 0):
        await one_mode(dsn, primary, replica, proxy_port, cache_size, bad)
    if bad:
        raise SystemExit(f"{len(bad)} mismatches:\n" + "\n".join("  " + b for b in bad))
    print("asyncpg replica reads ok")


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), urllib.parse.urlparse(sys.argv[1]).port))
