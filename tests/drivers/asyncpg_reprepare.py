"""asyncpg through pgsplit: a cached statement must never change its result
type under the client. Usage: asyncpg_reprepare.py DSN PRIMARY_PORT
REPLICA_PORT. Exits non-zero with a message on any mismatch.

Several asyncpg connections cache `SELECT * FROM reprep` while column b is
int4, so pgsplit prepares it on several server connections. Another client
then runs `ALTER TABLE reprep ALTER b TYPE text USING '1234'`. Directly,
PostgreSQL answers the stale statement with 0A000 "cached plan must not
change result type" and asyncpg re-prepares (outside a transaction,
transparently; inside one it raises InvalidCachedStatementError). Through
pgsplit the statement also runs on server connections where it was never
prepared (here: while other clients hold the connections it used, and
inside transactions, which run on the primary); prepared fresh there, b
comes back as text and the client decodes '1234' with its int4 codec:
825373492. Every row must read (1, '1234') once the ALTER is in."""
import asyncio
import os
import sys

import asyncpg

# A table of its own per run: pgsplit's server connections outlive a run,
# and a statement of the same text left from an earlier one would be stale.
TABLE = f"reprep_{os.getpid()}"
QUERY = f"SELECT * FROM {TABLE}"
TYPE_OF_B = f"select atttypid::regtype::text from pg_attribute where attrelid = '{TABLE}'::regclass and attname = 'b'"
READERS = 4  # and one that runs the statement once before the ALTER


async def wait_replayed(replica, sql, want):
    """Polls the replica directly until `sql` returns `want` there."""
    direct = await asyncpg.connect(host="127.0.0.1", port=replica, user="postgres", database="postgres")
    try:
        for _ in range(200):
            if await direct.fetchval(sql) == want:
                return
            await asyncio.sleep(0.05)
        raise SystemExit(f"the replica never showed {want!r} for {sql}")
    finally:
        await direct.close()


async def hold(conn, hint, seconds):
    """Keeps a server connection busy for `seconds` (a replica's, or with
    the hint the primary's), then disconnects."""
    try:
        await conn.execute(f"{hint} select pg_sleep({seconds})")
    finally:
        await conn.close()


def check(row, where, wrong):
    value = tuple(row)
    if value != (1, "1234"):
        wrong.append(f"{where}: {value!r}")


async def main(dsn, primary, replica):
    setup = await asyncpg.connect(dsn)
    await setup.execute(f"DROP TABLE IF EXISTS {TABLE}")
    await setup.execute(f"CREATE TABLE {TABLE}(a int, b int)")
    await setup.execute(f"INSERT INTO {TABLE} VALUES (1, 2)")
    await wait_replayed(replica, f"select to_regclass('{TABLE}') is not null", True)
    await wait_replayed(replica, f"select count(*) from {TABLE}", 1)

    readers = [await asyncpg.connect(dsn) for _ in range(READERS)]
    # Each reader caches the statement (b int4) and runs it, all at once
    # and in a transaction, so that pgsplit prepares it on several server
    # connections of both servers.
    for round in range(5):
        for got in await asyncio.gather(*(r.fetchrow(QUERY) for r in readers)):
            if tuple(got) != (1, 2):
                raise SystemExit(f"before the ALTER: {tuple(got)!r}")
    for r in readers:
        async with r.transaction():
            if tuple(await r.fetchrow(QUERY)) != (1, 2):
                raise SystemExit("before the ALTER, in a transaction")
    # One more reader runs it once only, as asyncpg's own
    # test_prepare_cache_invalidation_silent does: its first run is all the
    # server connections saw of it before the ALTER.
    once = await asyncpg.connect(dsn)
    if tuple(await once.fetchrow(QUERY)) != (1, 2):
        raise SystemExit("before the ALTER, run once")
    readers.append(once)

    await setup.execute(f"ALTER TABLE {TABLE} ALTER b TYPE text USING '1234'")
    await wait_replayed(replica, TYPE_OF_B, "text")

    wrong = []
    errors = []

    async def read(i, r, label):
        try:
            check(await r.fetchrow(QUERY), f"reader {i} {label}", wrong)
        except Exception as e:  # asyncpg retries 0A000 once by itself
            errors.append(f"reader {i} {label}: {type(e).__name__}: {e}")

    # Outside transactions: asyncpg re-prepares on 0A000 without a word.
    for round, blocking in enumerate((6, 4, 2, 1, 0, 5)):
        # Busy clients take the connections the readers used last (pools
        # hand out the most recently used first), so the readers' statement
        # runs on connections where it is not prepared; a different number
        # each round, so that they reach most connections of the pools.
        hints = [""] * blocking + ["/* pgsplit:primary */"] * 2
        # Connected first, so that all of them sleep when the readers read.
        busy = [await asyncpg.connect(dsn) for _ in hints]
        blockers = [asyncio.create_task(hold(c, hint, 0.6)) for c, hint in zip(busy, hints)]
        await asyncio.sleep(0.2)
        await asyncio.gather(*(read(i, r, f"round {round}") for i, r in enumerate(readers)))
        await asyncio.gather(*blockers)
        await asyncio.gather(*(read(i, r, f"round {round}, no blockers") for i, r in enumerate(readers)))

    # A new client's statement of the same text, prepared after the ALTER,
    # is no stale statement: it must work at once, wherever it runs.
    late = await asyncpg.connect(dsn)
    for i in range(3):
        await read(len(readers), late, f"(a new client) {i}")

    # Back to int, and the new client's statement inside a transaction (on
    # the primary): directly, the stale statement raises
    # InvalidCachedStatementError, which asyncpg does not retry in a
    # transaction; the right value is fine too; a wrong one (the int's
    # bytes decoded as text) never is.
    await setup.execute(f"ALTER TABLE {TABLE} ALTER b TYPE int USING 2")
    await wait_replayed(replica, TYPE_OF_B, "integer")
    for attempt in range(3):
        try:
            async with late.transaction():
                got = tuple(await late.fetchrow(QUERY))
                if got != (1, 2):
                    wrong.append(f"in a transaction, attempt {attempt}: {got!r}")
        except asyncpg.InvalidCachedStatementError:
            pass
        except Exception as e:
            errors.append(f"in a transaction, attempt {attempt}: {type(e).__name__}: {e}")
    try:
        got = tuple(await late.fetchrow(QUERY))
        if got != (1, 2):
            wrong.append(f"after the transaction: {got!r}")
    except Exception as e:
        errors.append(f"after the transaction: {type(e).__name__}: {e}")

    await setup.execute(f"DROP TABLE {TABLE}")
    for c in readers + [late, setup]:
        await c.close()
    if wrong or errors:
        lines = [f"{len(wrong)} wrong rows, {len(errors)} errors, where directly every read gives the new type:"]
        lines += [f"  wrong: {w}" for w in wrong[:20]]
        lines += [f"  error: {e}" for e in errors[:20]]
        raise SystemExit("\n".join(lines))
    print("asyncpg reprepare ok")


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
