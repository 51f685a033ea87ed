"""psycopg 3 in transactions through pgsplit, not in autocommit (its
default: BEGIN before the first statement of a transaction).

Inside a transaction reads run on the replica; after a write, reads run on
the primary and see the write; a nested `with conn.transaction()` is a
savepoint; pipeline mode (BEGIN and the first statements in one batch)
reads on the replica too; an error aborts the transaction as on
PostgreSQL; and conn.info.transaction_status, printed on the `statuses:`
line, is what it is directly (the test compares).

Usage: lazy_psycopg.py DSN PRIMARY_PORT REPLICA_PORT direct|proxy
Expects table drv_lazy(id int primary key, n int) with rows 1..10.
"""
import sys

import psycopg
from psycopg import errors


def main(dsn, primary, replica, mode):
    reads_on = replica if mode == "proxy" else primary
    failures, statuses = [], []

    def check(ok, what):
        if not ok:
            failures.append(what)

    conn = psycopg.connect(dsn)
    status = lambda label: statuses.append(f"{label}={conn.info.transaction_status.name}")
    status("connected")

    port, n = conn.execute("select inet_server_port(), n from drv_lazy where id = %s", (2,)).fetchone()
    status("read")
    check(port == reads_on, f"the first read of a transaction ran on port {port}, not {reads_on}")
    port, = conn.execute("select inet_server_port()", prepare=True).fetchone()
    check(port == reads_on, f"a prepared read ran on port {port}, not {reads_on}")

    conn.execute("update drv_lazy set n = n + 1 where id = %s", (2,))
    status("wrote")
    port, n2 = conn.execute("select inet_server_port(), n from drv_lazy where id = %s", (2,)).fetchone()
    check((port, n2) == (primary, n + 1),
          f"the read after the write gave n={n2} on port {port}; expected n={n + 1} on the primary {primary}")
    # A nested transaction block is a savepoint; rolled back, its write is gone.
    try:
        with conn.transaction():
            conn.execute("update drv_lazy set n = 0 where id = %s", (2,))
            raise RuntimeError("roll back to the savepoint")
    except RuntimeError:
        pass
    status("savepoint")
    n3, = conn.execute("select n from drv_lazy where id = %s", (2,)).fetchone()
    check(n3 == n + 1, f"after ROLLBACK TO SAVEPOINT n is {n3}, not {n + 1}")
    conn.commit()
    status("committed")

    # Pipeline mode: BEGIN goes out in the batch with the first statements.
    with conn.pipeline():
        c1 = conn.execute("select inet_server_port()")
        c2 = conn.execute("select inet_server_port(), n from drv_lazy where id = %s", (2,))
    port1, = c1.fetchone()
    port2, n4 = c2.fetchone()
    check(port1 == reads_on and port2 == reads_on,
          f"reads in a pipelined transaction ran on ports {port1}, {port2}, not {reads_on}")
    check(n4 == n + 1, f"the pipelined read gave n={n4}, not the committed {n + 1}")
    status("pipeline")
    conn.commit()

    # An error aborts the transaction.
    conn.execute("select 1")
    try:
        conn.execute("select 1/0")
        failures.append("select 1/0 did not fail")
    except errors.DivisionByZero:
        pass
    status("error")
    try:
        conn.execute("select 1")
        failures.append("a statement after an error did not fail")
    except errors.InFailedSqlTransaction:
        pass
    except psycopg.Error as e:
        failures.append(f"a statement after an error failed with {e.sqlstate}, not 25P02")
    status("aborted")
    conn.rollback()
    status("rolled back")
    conn.close()

    print("statuses: " + " ".join(statuses))
    if failures:
        sys.exit("psycopg 3 through pgsplit:\n - " + "\n - ".join(failures))
    print("psycopg ok")


main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
