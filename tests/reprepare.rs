//! A prepared statement never changes its result type under the client.
//!
//! pgsplit prepares a client's named statement lazily on each server
//! connection that runs it. After `ALTER TABLE ... ALTER b TYPE text`, a
//! statement the client had described with `b int4` would be prepared fresh
//! on a connection that never had it, and its rows would come back as text
//! that the client decodes with the int4 codec it was given ('1234' as
//! 825373492). PostgreSQL answers a stale statement with 0A000 "cached plan
//! must not change result type", on every execution, and drivers prepare
//! again on that error (tests/drivers/asyncpg_reprepare.py and
//! JdbcReprepare.java check two of them). Through pgsplit the old statement
//! must give that error wherever it runs, and a statement prepared after the
//! ALTER must work wherever it runs, also on connections that still hold
//! the old plan under pgsplit's name for that text.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use support::cluster::Cluster;
use support::proxy::{code_of, connect, message_of, proxy_config, Proxy};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, Statement};

const READERS: usize = 4;
/// `b` is the column whose type changes; the backend and the server's port
/// say which server connection ran the statement.
const QUERY: &str = "select a, b, pg_backend_pid(), inet_server_port() from rp";

/// Clients that keep `n` server connections of the replica (and two of the
/// primary) busy for a while, so that the readers' statements run on
/// others: a pool hands out its most recently used connections first.
async fn block(port: u16, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    // Connected first, so that all of them sleep when the readers read.
    let mut clients = Vec::new();
    for _ in 0..n + 2 {
        clients.push(connect(port).await);
    }
    let mut sleepers = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let sql = if i < n {
            "select pg_sleep(0.6)"
        } else {
            "/* pgsplit:primary */ select pg_sleep(0.6)"
        };
        sleepers.push(tokio::spawn(async move {
            client.simple_query(sql).await.expect("blocker");
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sleepers
}

/// Runs `stmt` on each reader at once, half of them inside a transaction
/// (which runs on the primary).
async fn run_all(
    readers: &[Arc<Client>],
    stmts: &[Statement],
) -> Vec<Result<Vec<Row>, tokio_postgres::Error>> {
    let mut runs = Vec::new();
    for (i, (client, stmt)) in readers.iter().zip(stmts).enumerate() {
        let client = client.clone();
        let stmt = stmt.clone();
        runs.push(tokio::spawn(async move {
            if i % 2 == 0 {
                return client.query(&stmt, &[]).await;
            }
            client.batch_execute("begin").await.expect("begin");
            let result = client.query(&stmt, &[]).await;
            client.batch_execute("rollback").await.expect("rollback");
            result
        }));
    }
    let mut results = Vec::new();
    for run in runs {
        results.push(run.await.expect("reader task"));
    }
    results
}

/// (port, backend) of a row of [`QUERY`].
fn backend(row: &Row) -> (i32, i32) {
    (row.get(3), row.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_statement_gets_0a000_and_a_fresh_one_works_everywhere() {
    let c = Cluster::start();
    c.psql(
        c.primary_port(),
        "create table rp(a int, b int); insert into rp values (1, 2)",
    );
    c.wait_replica_caught_up();
    let mut config = proxy_config(&c);
    for pool in [&mut config.pool.primary, &mut config.pool.replica] {
        pool.pool_size = 2;
        pool.max_overflow = 14;
    }
    let p = Proxy::start(config);

    let mut readers = Vec::new();
    let mut old = Vec::new();
    for _ in 0..READERS {
        let client = connect(p.port()).await;
        let stmt = client.prepare(QUERY).await.unwrap();
        assert_eq!(stmt.columns()[1].type_(), &Type::INT4);
        old.push(stmt);
        readers.push(Arc::new(client));
    }
    let mut had_old = HashSet::new();
    for blocking in [0, 3, 0] {
        let sleepers = block(p.port(), blocking).await;
        for rows in run_all(&readers, &old).await {
            let rows = rows.expect("the statement before the ALTER");
            assert_eq!(rows[0].get::<_, i32>(1), 2);
            had_old.insert(backend(&rows[0]));
        }
        for s in sleepers {
            s.await.unwrap();
        }
    }
    assert!(
        had_old.len() >= 3,
        "the statement ran on too few server connections to test anything: {had_old:?}"
    );

    let alter = connect(p.port()).await;
    alter
        .batch_execute("alter table rp alter b type text using '1234'")
        .await
        .unwrap();
    c.wait_replica_caught_up();

    // The old statement, wherever it runs: 0A000, never rows.
    let mut wrong = Vec::new();
    for blocking in [6, 4, 1, 0, 5] {
        let sleepers = block(p.port(), blocking).await;
        for (i, result) in run_all(&readers, &old).await.into_iter().enumerate() {
            match result {
                Ok(rows) => wrong.push(format!(
                    "reader {i} ({blocking} blockers): rows from {:?}, b read as int4 = {:?}",
                    backend(&rows[0]),
                    rows[0].try_get::<_, i32>(1)
                )),
                Err(e) => {
                    if code_of(&e).as_deref() != Some("0A000")
                        || !message_of(&e).contains("cached plan must not change result type")
                    {
                        wrong.push(format!(
                            "reader {i} ({blocking} blockers): {:?} {}",
                            code_of(&e),
                            message_of(&e)
                        ));
                    }
                }
            }
        }
        for s in sleepers {
            s.await.unwrap();
        }
    }

    // Prepared again after the ALTER: text, and right on every connection,
    // including those that hold the old plan under the same text.
    let mut fresh = Vec::new();
    for client in &readers {
        let stmt = client
            .prepare(QUERY)
            .await
            .expect("prepare after the ALTER");
        assert_eq!(stmt.columns()[1].type_(), &Type::TEXT);
        fresh.push(stmt);
    }
    let mut had_new = HashSet::new();
    let mut failed = Vec::new();
    for blocking in [0, 2, 5, 0, 3] {
        let sleepers = block(p.port(), blocking).await;
        for (i, result) in run_all(&readers, &fresh).await.into_iter().enumerate() {
            match result {
                Ok(rows) => {
                    let b: String = rows[0].get(1);
                    assert_eq!(b, "1234");
                    had_new.insert(backend(&rows[0]));
                }
                Err(e) => failed.push(format!(
                    "reader {i} ({blocking} blockers): {:?} {}",
                    code_of(&e),
                    message_of(&e)
                )),
            }
        }
        for s in sleepers {
            s.await.unwrap();
        }
    }
    assert!(
        wrong.is_empty() && failed.is_empty(),
        "the stale statement must give 0A000 \"cached plan must not change result type\" \
         on every run, as PostgreSQL does; {} runs did not:\n{}\n\
         a statement prepared after the ALTER must work everywhere; {} runs failed:\n{}",
        wrong.len(),
        wrong.join("\n"),
        failed.len(),
        failed.join("\n")
    );
    assert!(
        had_new.len() >= 3 && had_new.intersection(&had_old).count() >= 1,
        "the new statement should have run on several connections, some of \
         which had the old one: old {had_old:?}, new {had_new:?}"
    );
}
