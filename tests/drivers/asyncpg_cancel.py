"""asyncpg through pgsplit: a cancel must never hit the next statement.
Usage: asyncpg_cancel.py DSN PRIMARY_PORT REPLICA_PORT [ITERATIONS].

With command_timeout=0.2, `select pg_sleep(10)` times out: asyncpg sends a
CancelRequest on a new connection, waits until that connection is closed
and until the cancelled statement's error has arrived, and then runs the
next statement. PostgreSQL signals the backend twice per cancel
(kill(pid, SIGINT), then kill(-pid, SIGINT)) and closes the cancel
connection after both. If pgsplit closes the client's cancel connection
before the server has closed its own, the second signal can land on the
statements that follow: `select 1`, or the next `pg_sleep(10)`, which then
fails at once with 57014 instead of timing out (directly: 0 of 40; through
pgsplit before the fix, up to a third). The first half of the sleeps run
on the replica (reads), the second half on the primary (hint): the
statements after a cancel must run on the same server for it to matter."""
import asyncio
import sys
import time

import asyncpg


async def main(dsn, primary, replica, iterations):
    conn = await asyncpg.connect(dsn, command_timeout=0.2)
    hit = []
    # asyncpg closes its connection when a cancel it sent did not end the
    # statement in time. A statement still waiting in pgsplit for a server
    # connection when the cancel comes is not sent (57014 at once), so this
    # should not happen; if it does, it is not a cancel that hit the next
    # statement: counted apart, and the loop goes on on a new connection.
    lost = []
    for i in range(iterations):
        if conn.is_closed():
            lost.append(i)
            conn = await asyncpg.connect(dsn, command_timeout=0.2)
        on_primary = i >= iterations // 2
        where = "primary" if on_primary else "replica"
        hint = "/* pgsplit:primary */ " if on_primary else ""
        started = time.monotonic()
        try:
            await conn.fetchval(f"{hint}select pg_sleep(10)")
            hit.append(f"iteration {i} ({where}): pg_sleep(10) returned")
        except asyncio.TimeoutError:
            pass
        except asyncpg.exceptions.InterfaceError:
            continue
        except Exception as e:
            hit.append(f"iteration {i} ({where}): pg_sleep(10) failed after "
                       f"{time.monotonic() - started:.3f} s instead of timing out: {type(e).__name__}: {e}")
        try:
            # Its own timeout: on a loaded machine a statement can take
            # longer than the 0.2 s meant for the sleeps, and a timeout
            # here would be a cancel of its own, not one that hit it.
            got = await conn.fetchval("select 1", timeout=10)
            if got != 1:
                hit.append(f"iteration {i} ({where}): select 1 gave {got!r}")
        except asyncpg.exceptions.InterfaceError:
            continue
        except Exception as e:
            hit.append(f"iteration {i} ({where}): select 1: {type(e).__name__}: {e}")
    await conn.close()
    if len(lost) > iterations // 4:
        hit.append(f"the connection was closed in {len(lost)} iterations: {lost}")
    elif lost:
        print(f"asyncpg closed its connection after a cancel in iterations {lost} (reconnected)")
    if hit:
        raise SystemExit(
            f"{len(hit)} statements of {iterations} iterations were hit by a cancel meant for an earlier one "
            "(directly: none):\n" + "\n".join("  " + h for h in hit)
        )
    print(f"asyncpg cancel ok ({iterations} iterations)")


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 40))
