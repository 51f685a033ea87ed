"""Write through one pgsplit instance, read through another: every read
must see the write it follows. WORKERS threads each insert a row through
instance A (autocommit, report_commit_lsn on, so the commit returns the
row's pgsplit.commit_lsn), then read it back through instance B with the
token as a hint, ROUNDS times. Prints how many reads missed their write
(must be 0) and how many ran on the replica.

Usage: fleet_rw_psycopg.py A_DSN B_DSN REPLICA_PORT [WORKERS] [ROUNDS]
Expects table fleet_rw(worker int, n int).
"""
import sys
import threading

import psycopg


def worker(w, a_dsn, b_dsn, replica_port, rounds, results):
    writer = psycopg.connect(a_dsn, autocommit=True,
                             options="-c pgsplit.report_commit_lsn=on")
    reader = psycopg.connect(b_dsn, autocommit=True)
    missed = on_replica = 0
    for n in range(rounds):
        writer.execute("insert into fleet_rw values (%s, %s)", (w, n))
        token = writer.info.parameter_status("pgsplit.commit_lsn")
        if token is None:
            results.append(("error", f"worker {w}: no token after insert {n}"))
            return
        seen, port = reader.execute(
            f"/* pgsplit:min_lsn={token} */ "
            "select count(*), inet_server_port() from fleet_rw where worker = %s and n = %s",
            (w, n)).fetchone()
        missed += seen != 1
        on_replica += port == replica_port
    results.append(("ok", missed, on_replica))


def main(a_dsn, b_dsn, replica_port, workers=4, rounds=100):
    results = []
    threads = [threading.Thread(target=worker,
                                args=(w, a_dsn, b_dsn, replica_port, rounds, results))
               for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r[1] for r in results if r[0] == "error"]
    if errors or len(results) != workers:
        sys.exit("fleet read-your-writes: " + "; ".join(errors or ["a worker died"]))
    missed = sum(r[1] for r in results)
    on_replica = sum(r[2] for r in results)
    total = workers * rounds
    print(f"fleet_rw: {total} writes through A, each read back through B: "
          f"{missed} missed, {on_replica} read on the replica")
    if missed:
        sys.exit(f"{missed} of {total} reads through B missed the write they followed")
    print("fleet_rw ok")


args = sys.argv[1:]
main(args[0], args[1], int(args[2]), *(int(a) for a in args[3:]))
