"""asyncpg through pgsplit: asyncpg prepares every statement under a name
and caches it, runs transactions and COPY. Usage: asyncpg_check.py DSN
PRIMARY_PORT REPLICA_PORT. Exits non-zero with a message on any mismatch."""
import asyncio
import sys

import asyncpg


async def main(dsn, primary, replica):
    conn = await asyncpg.connect(dsn)
    await conn.execute("drop table if exists drv_asyncpg")
    await conn.execute("create table drv_asyncpg(id int primary key, name text)")
    # executemany: one prepared statement, many Bind/Execute.
    await conn.executemany("insert into drv_asyncpg values ($1, $2)", [(i, f"n{i}") for i in range(100)])
    # The same statement text many times: asyncpg's statement cache reuses
    # its server-side name, which pgsplit maps onto whatever server runs it.
    for i in range(200):
        port = await conn.fetchval("select inet_server_port()")
        if port not in (primary, replica):
            raise SystemExit(f"unexpected server port {port}")
    async with conn.transaction():
        await conn.execute("update drv_asyncpg set name = $1 where id = $2", "changed", 1)
        row = await conn.fetchrow("select name, inet_server_port() as port from drv_asyncpg where id = $1", 1)
        if row["name"] != "changed" or row["port"] != primary:
            raise SystemExit(f"transaction read {dict(row)}: expected its own write on the primary")
    # A statement prepared explicitly and used across transactions.
    stmt = await conn.prepare("select count(*) from drv_asyncpg where id < $1")
    for n in (10, 50):
        await conn.execute(f"/* pgsplit:primary */ select 1")
        got = await stmt.fetchval(n)
        # Reads may be served by the replica, which may lag a little.
        if got not in (n, 0):
            raise SystemExit(f"count below {n} was {got}")
    # COPY both ways.
    await conn.copy_records_to_table("drv_asyncpg", records=[(1000 + i, "copied") for i in range(50)])
    total = await conn.fetchval("/* pgsplit:primary */ select count(*) from drv_asyncpg")
    if total != 150:
        raise SystemExit(f"expected 150 rows after COPY, got {total}")
    out = []

    async def sink(chunk):
        out.append(chunk)

    await conn.copy_from_query("select id from drv_asyncpg where id < 3 order by id", output=sink)
    if b"".join(out) != b"0\n1\n2\n":
        raise SystemExit(f"COPY TO gave {b''.join(out)!r}")
    await conn.close()
    print("asyncpg ok")


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
