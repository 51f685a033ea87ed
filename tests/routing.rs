//! Which server runs what: reads on the replica, writes and everything that
//! is not provably read-only on the primary, transactions on one backend,
//! and reads falling back to the primary while the replica is down.
//!
//! `inet_server_port()` in a statement's result tells where it ran.

mod support;

use std::time::Duration;

use pgsplit::config::{Config, ReadOnlyTransactions, TransactionReads};
use support::cluster::Cluster;
use support::proxy::{connect, eventually, one, port_of, proxy_config, Proxy};
use tokio_postgres::{Client, SimpleQueryMessage};

/// All rows of a simple query, columns joined with '|'.
async fn rows(client: &Client, sql: &str) -> Vec<String> {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} ({:?})", e.as_db_error()));
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// Gives the replica a work_mem the primary does not have, so SHOW and
/// EXPLAIN (SETTINGS), which return no port, still tell where they ran.
fn mark_replica_work_mem(c: &Cluster) {
    use std::io::Write;
    let conf = c.dir().join("replica").join("postgresql.conf");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| f.write_all(b"work_mem = '7MB'\n"))
        .expect("append to the replica's postgresql.conf");
    c.psql(c.replica_port(), "select pg_reload_conf()");
    assert!(
        eventually(Duration::from_secs(5), || c
            .psql(c.replica_port(), "show work_mem")
            == "7MB"),
        "replica did not reload work_mem"
    );
}

fn setup_schema(c: &Cluster) {
    c.psql(
        c.primary_port(),
        "create table t(x int primary key, note text); \
         insert into t select g, 'n' || g from generate_series(1, 10) g; \
         create sequence seq; \
         create function bump() returns int language sql volatile as 'select 1'; \
         create function imm() returns int language sql immutable as 'select 2'",
    );
    c.wait_replica_caught_up();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica() {
    let c = Cluster::start();
    setup_schema(&c);
    mark_replica_work_mem(&c);
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;
    let replica = c.replica_port();

    for sql in [
        "select inet_server_port(), note from t where x = 1",
        "values (inet_server_port(), 1)",
        "select inet_server_port(), count(*) from t a join t b on a.x = b.x",
        "select inet_server_port(), now()",
        "select inet_server_port(), imm()",
        "/* pgsplit:replica */ select inet_server_port(), pg_is_in_recovery()",
    ] {
        assert_eq!(port_of(&client, sql).await, replica, "{sql}");
    }
    assert_eq!(
        rows(&client, "/* pgsplit:replica */ select pg_is_in_recovery()").await,
        ["t"]
    );
    // By design, introspection answers as a primary would.
    assert_eq!(rows(&client, "select pg_is_in_recovery()").await, ["f"]);
    // SHOW and EXPLAIN return no port: the replica's own work_mem shows them.
    assert_eq!(one(&client, "show work_mem").await.as_deref(), Some("7MB"));
    let plan = rows(&client, "explain (settings) select * from t where x = 1").await;
    assert!(
        plan.iter().any(|l| l.contains("work_mem = '7MB'")),
        "EXPLAIN did not run on the replica: {plan:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_primary() {
    let c = Cluster::start();
    setup_schema(&c);
    mark_replica_work_mem(&c);
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;
    let primary = c.primary_port();

    for sql in [
        "insert into t values (100, 'a') returning inet_server_port()",
        "update t set note = 'b' where x = 100 returning inet_server_port()",
        "delete from t where x = 100 returning inet_server_port()",
        "select inet_server_port(), nextval('seq')",
        "select inet_server_port(), setval('seq', 10)",
        "select inet_server_port(), x from t where x = 1 for update",
        "select inet_server_port(), x from t where x = 1 for share",
        "with ins as (insert into t values (101, 'c') returning *) select inet_server_port(), x from ins",
        "select inet_server_port(), set_config('x.y', '1', false)",
        "select inet_server_port(), pg_advisory_lock(1)",
        "select inet_server_port(), pg_advisory_unlock(1)",
        "select inet_server_port(), bump()",
        "/* pgsplit:primary */ select inet_server_port()",
        "select inet_server_port(), pg_is_in_recovery()",
    ] {
        assert_eq!(port_of(&client, sql).await, primary, "{sql}");
    }
    assert_eq!(c.psql(primary, "select note from t where x = 101"), "c");

    // Multi-statement simple query with a write: all of it on the primary.
    let out = rows(
        &client,
        "select inet_server_port(); insert into t values (102, 'd')",
    )
    .await;
    assert_eq!(out, [primary.to_string()]);
    assert_eq!(c.psql(primary, "select note from t where x = 102"), "d");

    // DDL succeeds (it would fail on the replica) and the objects exist.
    client
        .batch_execute("create table ddl_t(x int)")
        .await
        .expect("create table");
    client
        .batch_execute("alter table ddl_t add column y int")
        .await
        .expect("alter table");
    assert_eq!(
        c.psql(
            primary,
            "select count(*) from information_schema.columns where table_name = 'ddl_t'"
        ),
        "2"
    );
    client
        .batch_execute("drop table ddl_t")
        .await
        .expect("drop table");
    assert_eq!(c.psql(primary, "select to_regclass('ddl_t') is null"), "t");

    // SELECT INTO creates a table.
    client
        .batch_execute("select * into newtable from t")
        .await
        .expect("select into");
    assert_eq!(c.psql(primary, "select count(*) > 0 from newtable"), "t");

    // EXPLAIN ANALYZE executes the statement: primary (no replica work_mem).
    let plan = rows(
        &client,
        "explain (analyze, settings) select * from t where x = 1",
    )
    .await;
    assert!(
        !plan.iter().any(|l| l.contains("work_mem = '7MB'")),
        "EXPLAIN ANALYZE ran on the replica: {plan:?}"
    );
}

/// The extended protocol routes each Sync-delimited batch on its own: a
/// write does not send the client's later reads to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_reads_after_an_extended_write_use_the_replica() {
    let c = Cluster::start();
    setup_schema(&c);
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;
    let port = |row: &tokio_postgres::Row| row.get::<_, i32>(0) as u16;
    let wrote = client
        .query_one(
            "insert into t values ($1, 'w') returning inet_server_port()",
            &[&200i32],
        )
        .await
        .expect("insert");
    assert_eq!(port(&wrote), c.primary_port());
    c.wait_replica_caught_up();
    for _ in 0..3 {
        let read = client
            .query_one("select inet_server_port() from t where x = $1", &[&200i32])
            .await
            .expect("select");
        assert_eq!(port(&read), c.replica_port());
    }
}

/// Inside a transaction, the reads before its first write run on the
/// replica (the transaction has reached no server yet); from the first
/// statement that needs the primary on, one primary backend runs the rest.
/// With `transaction_reads = "primary"`, the whole transaction runs on one
/// primary backend from its BEGIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_move_to_one_primary_backend_at_their_first_write() {
    let c = Cluster::start();
    setup_schema(&c);
    c.wait_replica_caught_up();
    for transaction_reads in [TransactionReads::Replica, TransactionReads::Primary] {
        let p = Proxy::start(Config {
            transaction_reads,
            ..proxy_config(&c)
        });
        let mut client = connect(p.port()).await;
        let first = transaction_reads == TransactionReads::Replica;
        let read = |port: &str| match first {
            true => port == c.replica_port().to_string(),
            false => port == c.primary_port().to_string(),
        };

        // Simple protocol.
        client.batch_execute("begin").await.unwrap();
        let a = rows(&client, "select inet_server_port(), pg_backend_pid()").await;
        let b = rows(
            &client,
            "select inet_server_port(), pg_backend_pid() from t where x = 1",
        )
        .await;
        let w = rows(
            &client,
            &format!(
                "insert into t values ({}) returning inet_server_port(), pg_backend_pid()",
                if first { 200 } else { 201 }
            ),
        )
        .await;
        let after = rows(&client, "select inet_server_port(), pg_backend_pid()").await;
        client.batch_execute("commit").await.unwrap();
        let port = |r: &[String]| r[0].split('|').next().unwrap_or_default().to_string();
        assert!(
            read(&port(&a)) && read(&port(&b)),
            "{transaction_reads:?}: reads {a:?} {b:?}"
        );
        assert_eq!(port(&w), c.primary_port().to_string());
        assert_eq!(w, after, "the write and what follows share a backend");
        if !first {
            assert_eq!(a, w, "{transaction_reads:?}: one backend from BEGIN");
        }

        // Extended protocol (client.transaction()).
        let tx = client.transaction().await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let r = tx
                .query_one(
                    "select inet_server_port(), pg_backend_pid() from t where x = $1",
                    &[&1i32],
                )
                .await
                .unwrap();
            seen.push((r.get::<_, i32>(0), r.get::<_, i32>(1)));
        }
        let r = tx
            .query_one(
                "insert into t values ($1) returning inet_server_port(), pg_backend_pid()",
                &[&(if first { 202i32 } else { 203 })],
            )
            .await
            .unwrap();
        let wrote = (r.get::<_, i32>(0), r.get::<_, i32>(1));
        let r = tx
            .query_one("select inet_server_port(), pg_backend_pid()", &[])
            .await
            .unwrap();
        let then = (r.get::<_, i32>(0), r.get::<_, i32>(1));
        tx.commit().await.unwrap();
        assert!(seen.iter().all(|s| read(&s.0.to_string())), "{seen:?}");
        assert_eq!(wrote.0, c.primary_port() as i32);
        assert_eq!(wrote, then);
        if !first {
            assert!(seen.iter().all(|s| *s == wrote), "{seen:?}");
        }
        drop(p);
    }
    assert_eq!(
        c.psql(
            c.primary_port(),
            "select count(*) from t where x in (200, 201, 202, 203)"
        ),
        "4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_overrides_routing() {
    let c = Cluster::start();
    setup_schema(&c);
    let config = Config {
        read_only_transactions: ReadOnlyTransactions::Replica,
        read_only_functions: vec!["bump".into()],
        write_functions: vec!["imm".into()],
        ..proxy_config(&c)
    };
    let p = Proxy::start(config);
    let client = connect(p.port()).await;

    assert_eq!(
        port_of(&client, "select inet_server_port(), bump()").await,
        c.replica_port()
    );
    assert_eq!(
        port_of(&client, "select inet_server_port(), imm()").await,
        c.primary_port()
    );

    // A read-only transaction that keeps its snapshot runs whole on the
    // replica, on one backend.
    client
        .batch_execute("begin isolation level repeatable read read only")
        .await
        .unwrap();
    let a = rows(&client, "select inet_server_port(), pg_backend_pid()").await;
    let b = rows(
        &client,
        "select inet_server_port(), pg_backend_pid() from t limit 1",
    )
    .await;
    let in_recovery = rows(&client, "select pg_is_in_recovery()").await;
    client.batch_execute("commit").await.unwrap();
    assert_eq!(a, b);
    assert!(a[0].starts_with(&format!("{}|", c.replica_port())), "{a:?}");
    assert_eq!(
        in_recovery,
        ["t"],
        "the read-only transaction is on the standby"
    );

    // A READ COMMITTED transaction's reads before any write run on the
    // replica, whatever read_only_transactions says; its write opens it
    // on the primary.
    client.batch_execute("begin read only").await.unwrap();
    let a = rows(&client, "select inet_server_port()").await;
    client.batch_execute("commit").await.unwrap();
    assert_eq!(a, [c.replica_port().to_string()]);
    client.batch_execute("begin").await.unwrap();
    let w = rows(&client, "select inet_server_port(), nextval('seq')").await;
    client.batch_execute("commit").await.unwrap();
    assert!(w[0].starts_with(&format!("{}|", c.primary_port())), "{w:?}");
}

/// Idle pooled connections to the stopped replica hold its FATAL 57P01 and
/// must not be handed out; a replica refusing connections must be banned
/// at once (not after pool_timeout) and reads go to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_the_primary_while_the_replica_is_down() {
    let config = Config {
        replica_ban_time: 0.5,
        ..Config::default()
    };
    replica_outage(config).await;
}

/// Stops the replica under a running proxy (built from `settings`' ban time
/// and pool flags) and checks that reads never fail and come back.
async fn replica_outage(settings: Config) {
    let c = Cluster::start();
    setup_schema(&c);
    let mut config = proxy_config(&c);
    config.replica_ban_time = settings.replica_ban_time;
    config.pool.replica.pool_pre_ping = settings.pool.replica.pool_pre_ping;
    let p = Proxy::start(config);
    let client = connect(p.port()).await;
    let read = "select inet_server_port(), note from t where x = 1";
    assert_eq!(port_of(&client, read).await, c.replica_port());

    c.stop_replica();
    for i in 0..10 {
        assert_eq!(
            port_of(&client, read).await,
            c.primary_port(),
            "simple read {i}"
        );
        let row = client
            .query_one("select inet_server_port() from t where x = $1", &[&1i32])
            .await
            .unwrap_or_else(|e| panic!("extended read {i}: {e}"));
        assert_eq!(row.get::<_, i32>(0), c.primary_port() as i32);
    }
    // A client that connects while the replica is down works too.
    let fresh = connect(p.port()).await;
    assert_eq!(port_of(&fresh, read).await, c.primary_port());

    c.start_replica();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if port_of(&client, read).await == c.replica_port() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reads did not return to the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
