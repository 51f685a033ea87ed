"""Password logins through pgsplit with asyncpg and psycopg 3 (both run
SCRAM-SHA-256 and md5 on their own): the right password logs in and reads
on the replica, a wrong one and an unknown user get 28P01. Usage:
auth_check.py PGSPLIT_PORT USER PASSWORD PRIMARY_PORT REPLICA_PORT."""
import asyncio
import sys

import asyncpg
import psycopg


def dsn(port, user, password):
    return f"postgresql://{user}:{password}@127.0.0.1:{port}/postgres"


def refused(connect, what):
    try:
        connect()
    except Exception as e:  # each driver raises its own class
        # libpq reports a login's error as text: no SQLSTATE to check.
        code = getattr(e, "sqlstate", None)
        if code not in (None, "28P01") or "password authentication failed" not in str(e):
            raise SystemExit(f"{what}: expected 28P01, got {code}: {e}")
        return
    raise SystemExit(f"{what}: logged in")


async def with_asyncpg(port, user, password, replica):
    conn = await asyncpg.connect(dsn(port, user, password))
    try:
        if await conn.fetchval("select current_user") != user:
            raise SystemExit("asyncpg: wrong current_user")
        where = await conn.fetchval("/* pgsplit:replica */ select inet_server_port()")
        if where != replica:
            raise SystemExit(f"asyncpg: read ran on {where}, not the replica {replica}")
    finally:
        await conn.close()
    for wrong_user, wrong_password in [(user, "wrong"), ("ghost", password)]:
        try:
            await asyncpg.connect(dsn(port, wrong_user, wrong_password))
        except asyncpg.PostgresError as e:
            if e.sqlstate != "28P01":
                raise SystemExit(f"asyncpg {wrong_user}: expected 28P01, got {e.sqlstate}: {e}")
        else:
            raise SystemExit(f"asyncpg {wrong_user}/{wrong_password}: logged in")


def with_psycopg(port, user, password, replica):
    with psycopg.connect(dsn(port, user, password), autocommit=True) as conn:
        if conn.execute("select current_user").fetchone()[0] != user:
            raise SystemExit("psycopg: wrong current_user")
        where = conn.execute("/* pgsplit:replica */ select inet_server_port()").fetchone()[0]
        if where != replica:
            raise SystemExit(f"psycopg: read ran on {where}, not the replica {replica}")
    refused(lambda: psycopg.connect(dsn(port, user, "wrong")), "psycopg wrong password")
    refused(lambda: psycopg.connect(dsn(port, "ghost", password)), "psycopg unknown user")


def main(port, user, password, _primary, replica):
    asyncio.run(with_asyncpg(port, user, password, int(replica)))
    with_psycopg(port, user, password, int(replica))
    print("auth_check ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
