"""asyncpg through pgsplit: an executemany whose first rows fail on the
server stops early, as it does directly. Usage:
asyncpg_executemany_early_stop.py DSN PRIMARY_PORT REPLICA_PORT.

asyncpg writes Bind/Execute pairs in 128 KB chunks under the transport's
flow control and sends one Sync at the end; between chunks it checks
whether the server has already answered with an error, and if so stops
pulling rows from the iterator and sends Sync. The server sends an
ErrorResponse as soon as a row fails. pgsplit holds an extended-protocol
batch until Sync to choose its server, so the server sees nothing until
the client has sent every row: the client cannot stop early. Once the
batch's destination is known pgsplit must forward what it holds and
stream the rest (and, for a write, it is known at the first Bind).

The first case is asyncpg's own (only its error and outcome are required:
4 MB is within what socket buffers hold, so stopping early there is a race)
tests/test_execute.py::TestExecuteMany::test_executemany_server_failure_during_writes
(128 rows, 32 KB each, a unique violation at the second row; directly
the generator stops after a few chunks); the second fails a check
constraint at the first of 1024 rows of 32 KB."""
import asyncio
import sys

import asyncpg


async def run(conn, label, sql, rows, total, error, bad, must_stop_early=True):
    """Runs executemany over `rows` (a generator factory that counts what
    it produced); `error` must be raised, before all `total` rows were
    produced (when `must_stop_early`), and nothing may be inserted."""
    produced = 0

    def gen():
        nonlocal produced
        for row in rows():
            produced += 1
            yield row

    try:
        await conn.executemany(sql, gen())
        bad.append(f"{label}: executemany succeeded")
    except error:
        pass
    except Exception as e:
        bad.append(f"{label}: {type(e).__name__}: {e}")
    left = await conn.fetchval("/* pgsplit:primary */ select count(*) from exmany")
    if left != 0:
        bad.append(f"{label}: {left} rows inserted")
    if produced >= total and must_stop_early:
        bad.append(f"{label}: the client sent all {produced} of {total} rows; directly it stops early")
    print(f"{label}: {produced} of {total} rows produced before the error")
    if await conn.fetchval("select 1") != 1:
        bad.append(f"{label}: the connection is unusable after the error")


async def main(dsn, primary, replica):
    conn = await asyncpg.connect(dsn)
    await conn.execute("DROP TABLE IF EXISTS exmany")
    await conn.execute("CREATE TABLE exmany (a text CHECK (a <> 'bad'), b int PRIMARY KEY)")
    bad = []

    def unique():  # asyncpg's own test
        for pos in range(1, 129):
            yield ("a", 0) if pos < 3 else ("a" * 32768, pos)

    # 4 MB in all: what the client sends before the error is back is a
    # race with the socket buffers (two of them through a proxy), so here
    # only the error and the clean table are required; early stop is the
    # second case's to show.
    await run(conn, "unique violation at row 2", "INSERT INTO exmany VALUES($1, $2)",
              unique, 128, asyncpg.UniqueViolationError, bad, must_stop_early=False)

    def check():
        yield ("bad", 0)
        for pos in range(1, 1024):
            yield ("a" * 32768, pos)

    await run(conn, "check violation at row 1", "INSERT INTO exmany VALUES($1, $2)",
              check, 1024, asyncpg.CheckViolationError, bad)
    await conn.execute("DROP TABLE exmany")
    await conn.close()
    if bad:
        raise SystemExit("\n".join(bad))
    print("asyncpg executemany early stop ok")


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
