"""psycopg 3 through pgsplit: server-side prepared statements (prepare=True),
pipeline mode, transactions. Usage: psycopg_check.py DSN PRIMARY_PORT
REPLICA_PORT."""
import sys

import psycopg


def main(dsn, primary, replica):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("drop table if exists drv_psycopg")
        conn.execute("create table drv_psycopg(id int primary key, name text)")
        with conn.cursor() as cur:
            cur.executemany("insert into drv_psycopg values (%s, %s)", [(i, f"n{i}") for i in range(50)])
        for i in range(100):
            port = conn.execute("select inet_server_port() where %s = %s", (i, i), prepare=True).fetchone()[0]
            if port not in (primary, replica):
                raise SystemExit(f"unexpected port {port}")
        with conn.pipeline():
            conn.execute("insert into drv_psycopg values (%s, %s)", (100, "pipelined"))
            conn.execute("update drv_psycopg set name = %s where id = %s", ("x", 100))
            cur = conn.execute("/* pgsplit:primary */ select name from drv_psycopg where id = %s", (100,))
        if cur.fetchone()[0] != "x":
            raise SystemExit("pipeline lost a write")
        with conn.transaction():
            conn.execute("update drv_psycopg set name = 'tx' where id = 1")
            row = conn.execute("select name, inet_server_port() from drv_psycopg where id = 1").fetchone()
            if row != ("tx", primary):
                raise SystemExit(f"transaction read {row}")
        # Binary results.
        with conn.cursor(binary=True) as cur:
            cur.execute("/* pgsplit:primary */ select id, name from drv_psycopg where id = %s", (2,))
            if cur.fetchone() != (2, "n2"):
                raise SystemExit("binary fetch mismatch")
    print("psycopg ok")


main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
