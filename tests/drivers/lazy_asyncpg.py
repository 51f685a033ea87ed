"""asyncpg in transactions through pgsplit (conn.transaction(): BEGIN as a
simple query, then statements it prepares: Parse, Describe, Flush, then
Bind, Execute, Sync).

Inside a transaction reads run on the replica; after a write, reads run on
the primary and see the write; READ ONLY transactions read on the replica;
REPEATABLE READ ones run on the primary; an error aborts the transaction as
on PostgreSQL; and is_in_transaction(), printed on the `statuses:` line, is
what it is directly (the test compares).

Usage: lazy_asyncpg.py DSN PRIMARY_PORT REPLICA_PORT direct|proxy
Expects table drv_lazy(id int primary key, n int) with rows 1..10.
"""
import asyncio
import sys

import asyncpg


async def main(dsn, primary, replica, mode):
    reads_on = replica if mode == "proxy" else primary
    failures, statuses = [], []

    def check(ok, what):
        if not ok:
            failures.append(what)

    conn = await asyncpg.connect(dsn)
    status = lambda label: statuses.append(f"{label}={conn.is_in_transaction()}")
    status("connected")
    read = "select inet_server_port() as port, n from drv_lazy where id = $1"

    async with conn.transaction():
        status("begun")
        row = await conn.fetchrow(read, 3)
        n = row["n"]
        check(row["port"] == reads_on, f"the first read of a transaction ran on port {row['port']}, not {reads_on}")
        port = await conn.fetchval("select inet_server_port()")
        check(port == reads_on, f"the second read ran on port {port}, not {reads_on}")
        await conn.execute("update drv_lazy set n = n + 1 where id = $1", 3)
        status("wrote")
        row = await conn.fetchrow(read, 3)
        check((row["port"], row["n"]) == (primary, n + 1),
              f"the read after the write gave n={row['n']} on port {row['port']}; "
              f"expected n={n + 1} on the primary {primary}")
    status("committed")

    async with conn.transaction(readonly=True):
        row = await conn.fetchrow(read, 3)
        check(row["port"] == reads_on, f"a read in a READ ONLY transaction ran on port {row['port']}, not {reads_on}")
        check(row["n"] == n + 1, f"the next transaction read n={row['n']}, not the committed {n + 1}")

    async with conn.transaction(isolation="repeatable_read"):
        row = await conn.fetchrow(read, 3)
        check(row["port"] == primary,
              f"a read in a REPEATABLE READ transaction ran on port {row['port']}, not the primary {primary}")
        level = await conn.fetchval("select current_setting('transaction_isolation')")
        check(level == "repeatable read", f"transaction_isolation is {level}")

    tr = conn.transaction()
    await tr.start()
    await conn.fetchval("select inet_server_port()")
    try:
        await conn.fetchval("select 1/0")
        failures.append("select 1/0 did not fail")
    except asyncpg.DivisionByZeroError:
        pass
    status("error")
    try:
        await conn.fetchval("select 1")
        failures.append("a statement after an error did not fail")
    except asyncpg.InFailedSQLTransactionError:
        pass
    except asyncpg.PostgresError as e:
        failures.append(f"a statement after an error failed with {e.sqlstate}, not 25P02")
    status("aborted")
    await tr.rollback()
    status("rolled back")
    await conn.close()

    return statuses, failures


statuses, failures = asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]), 60))
print("statuses: " + " ".join(statuses))
if failures:
    sys.exit("asyncpg through pgsplit:\n - " + "\n - ".join(failures))
print("asyncpg ok")
