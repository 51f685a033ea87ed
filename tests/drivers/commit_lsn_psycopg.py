"""pgsplit.commit_lsn with psycopg 3: after a write commits, the client has
the token (conn.info.parameter_status) and another pgsplit instance, given
it, reads the write from a replica that has not replayed it otherwise.

Usage: commit_lsn_psycopg.py WRITER_DSN READER_DSN
The writer's instance reports commit LSNs only to clients that ask
(`-c pgsplit.report_commit_lsn=on`); expects an empty table t(id int) and
the replica's replay paused.
"""
import sys

import psycopg

TOKEN = "pgsplit.commit_lsn"


def lsn(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def main(writer_dsn, reader_dsn):
    failures = []
    plain = psycopg.connect(writer_dsn, autocommit=True)
    plain.execute("insert into t values (0)")
    if plain.info.parameter_status(TOKEN) is not None:
        failures.append("a client that did not ask got a commit LSN")
    plain.close()

    writer = psycopg.connect(writer_dsn, autocommit=True,
                             options="-c pgsplit.report_commit_lsn=on")
    if writer.info.parameter_status(TOKEN) is not None:
        failures.append("a token before any write")
    writer.execute("select count(*) from t").fetchone()
    if writer.info.parameter_status(TOKEN) is not None:
        failures.append("a read reported a commit LSN")
    writer.execute("insert into t values (1)")
    first = writer.info.parameter_status(TOKEN)
    if first is None:
        sys.exit("no pgsplit.commit_lsn after an autocommit insert")
    with writer.transaction():
        writer.execute("insert into t values (2)")
        if writer.info.parameter_status(TOKEN) != first:
            failures.append("the token changed before the transaction committed")
    second = writer.info.parameter_status(TOKEN)
    if second is None or lsn(second) <= lsn(first):
        failures.append(f"the commit of a transaction reported {second}, not past {first}")

    reader = psycopg.connect(reader_dsn, autocommit=True)
    stale, = reader.execute("select count(*) from t").fetchone()
    if stale != 0:
        failures.append(f"the reader saw {stale} rows without a token: replay is not paused")
    seen, = reader.execute(f"/* pgsplit:min_lsn={second} */ select count(*) from t").fetchone()
    if seen != 3:
        failures.append(f"with the token the reader saw {seen} rows, not 3")
    reader.execute("set pgsplit.min_lsn = %s" % psycopg.sql.quote(second))
    seen, = reader.execute("select count(*) from t").fetchone()
    if seen != 3:
        failures.append(f"with SET pgsplit.min_lsn the reader saw {seen} rows, not 3")

    if failures:
        sys.exit("pgsplit.commit_lsn:\n - " + "\n - ".join(failures))
    print(f"commit_lsn {first} {second} ok")


main(sys.argv[1], sys.argv[2])
