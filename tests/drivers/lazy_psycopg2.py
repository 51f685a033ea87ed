"""psycopg2 in transactions through pgsplit, with autocommit off (its
default: it sends BEGIN before the first statement of every transaction).

Inside a transaction reads run on the replica; after a write, reads run on
the primary and see the write; an error aborts the transaction as on
PostgreSQL (25P02 until ROLLBACK); a named (server-side) cursor works; and
psycopg2's view of the transaction status, printed on the `statuses:` line,
is what it is directly (the test runs the script both ways and compares).

Usage: lazy_psycopg2.py DSN PRIMARY_PORT REPLICA_PORT direct|proxy
Expects table drv_lazy(id int primary key, n int) with rows 1..10.
Prints "psycopg2 ok" and exits 0, or exits non-zero listing every mismatch.
"""
import sys

import psycopg2
import psycopg2.errors
from psycopg2 import extensions as ext

NAMES = {
    ext.TRANSACTION_STATUS_IDLE: "idle",
    ext.TRANSACTION_STATUS_ACTIVE: "active",
    ext.TRANSACTION_STATUS_INTRANS: "intrans",
    ext.TRANSACTION_STATUS_INERROR: "inerror",
    ext.TRANSACTION_STATUS_UNKNOWN: "unknown",
}


def main(dsn, primary, replica, mode):
    reads_on = replica if mode == "proxy" else primary
    failures, statuses = [], []

    def check(ok, what):
        if not ok:
            failures.append(what)

    conn = psycopg2.connect(dsn)
    status = lambda label: statuses.append(f"{label}={NAMES[conn.info.transaction_status]}")
    status("connected")
    cur = conn.cursor()

    # Reads: psycopg2 has sent BEGIN before the first.
    cur.execute("select inet_server_port(), n from drv_lazy where id = %s", (1,))
    port, n = cur.fetchone()
    status("read")
    check(port == reads_on, f"the first read of a transaction ran on port {port}, not {reads_on}")
    cur.execute("select inet_server_port(), count(*) from drv_lazy")
    port, count = cur.fetchone()
    check(port == reads_on and count == 10, f"the second read gave {count} rows on port {port}")

    # A write, then reads on the primary that see it.
    cur.execute("update drv_lazy set n = n + 1 where id = %s", (1,))
    check(cur.rowcount == 1, f"the update touched {cur.rowcount} rows")
    status("wrote")
    cur.execute("select inet_server_port(), n from drv_lazy where id = %s", (1,))
    port, n2 = cur.fetchone()
    check((port, n2) == (primary, n + 1),
          f"the read after the write gave n={n2} on port {port}; expected n={n + 1} on the primary {primary}")
    conn.commit()
    status("committed")

    # A named cursor (DECLARE ... ; FETCH) in a transaction.
    cur.execute("select inet_server_port()")
    check(cur.fetchone()[0] == reads_on, "the read of the second transaction did not run where expected")
    named = conn.cursor(name="lazy_named")
    named.itersize = 3
    named.execute("select id from drv_lazy order by id")
    ids = [row[0] for row in named]
    check(ids == list(range(1, 11)), f"the named cursor gave {ids}")
    named.close()
    conn.commit()
    status("cursor")

    # An error aborts the transaction; COMMIT of it is a rollback.
    cur.execute("select inet_server_port()")
    check(cur.fetchone()[0] == reads_on, "the read of the third transaction did not run where expected")
    try:
        cur.execute("select 1/0")
        failures.append("select 1/0 did not fail")
    except psycopg2.errors.DivisionByZero:
        pass
    status("error")
    try:
        cur.execute("select 1")
        failures.append("a statement after an error did not fail")
    except psycopg2.errors.InFailedSqlTransaction:
        pass
    except psycopg2.Error as e:
        failures.append(f"a statement after an error failed with {e.pgcode}, not 25P02")
    status("aborted")
    conn.rollback()
    status("rolled back")

    # The committed write is seen by the next transaction.
    cur.execute("select n from drv_lazy where id = %s", (1,))
    check(cur.fetchone()[0] == n + 1, "the next transaction does not see the committed write")
    conn.commit()

    # `with conn:` commits at the end of the block.
    with conn:
        with conn.cursor() as c:
            c.execute("select inet_server_port()")
            check(c.fetchone()[0] == reads_on, "a read in `with conn:` did not run where expected")
            status("with")
    status("after with")
    conn.close()

    print("statuses: " + " ".join(statuses))
    if failures:
        sys.exit("psycopg2 through pgsplit:\n - " + "\n - ".join(failures))
    print("psycopg2 ok")


main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
