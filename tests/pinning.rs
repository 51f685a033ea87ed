//! Session state in transaction pooling: a statement that leaves state in
//! the server session (LISTEN, a temporary table, a session advisory lock,
//! PREPARE, a WITH HOLD cursor, SET ROLE) pins its client to one primary
//! connection, so the state is there for the client's next statements and
//! never reaches another client; the connection is reset (DISCARD ALL)
//! before anyone else gets it. A plain SET is tracked instead (see
//! settings.rs); here it is checked never to reach another client.

mod support;

use std::time::Duration;

use futures::StreamExt;
use pgsplit::config::{Config, PoolMode};
use support::cluster::Cluster;
use support::proxy::{code_of, connect, eventually, one, proxy_config, Proxy};
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Two primary connections at most, so the clients of a test share them.
fn two_primary_connections(c: &Cluster) -> Config {
    let mut config = proxy_config(c);
    config.pool.primary.pool_size = 1;
    config.pool.primary.max_overflow = 1;
    config
}

/// Forces the primary connection used most recently onto another client:
/// a transaction that holds it, so the next checkout gets the other one.
async fn hold_a_primary_connection(port: u16) -> Client {
    let holder = connect(port).await;
    holder.batch_execute("begin").await.expect("begin");
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_setting_stays_with_its_client() {
    let c = Cluster::start();
    let p = Proxy::start(two_primary_connections(&c));
    let a = connect(p.port()).await;
    let b = connect(p.port()).await;

    a.batch_execute("set statement_timeout = '1234ms'")
        .await
        .expect("set");
    // Read-only, yet it runs where the client's setting is.
    assert_eq!(
        one(&a, "show statement_timeout").await.as_deref(),
        Some("1234ms")
    );
    for _ in 0..3 {
        assert_eq!(
            one(&b, "/* pgsplit:primary */ show statement_timeout")
                .await
                .as_deref(),
            Some("0"),
            "another client saw the setting"
        );
    }
    drop(a);
    // Once the client is gone, its connection is reset before reuse: two
    // clients in transactions hold both primary connections, one of them
    // the connection the setting was made on.
    let (c1, c2) = (connect(p.port()).await, connect(p.port()).await);
    for client in [&c1, &c2] {
        client.batch_execute("begin").await.expect("begin");
        assert_eq!(
            one(client, "show statement_timeout").await.as_deref(),
            Some("0"),
            "the setting outlived its client"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_receives_notifications_while_idle() {
    let c = Cluster::start();
    let p = Proxy::start(two_primary_connections(&c));
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        p.port()
    );
    let (listener, mut connection) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .expect("connect");
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener.batch_execute("listen jobs").await.expect("listen");

    let notifier = connect(p.port()).await;
    notifier
        .batch_execute("notify jobs, 'hello'")
        .await
        .expect("notify");
    let got = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("no notification within 5 s while the listener was idle");
    assert_eq!(got, Some(("jobs".to_string(), "hello".to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_table_lives_across_transactions() {
    let c = Cluster::start();
    let p = Proxy::start(two_primary_connections(&c));
    let a = connect(p.port()).await;
    a.batch_execute("create temp table scratch(x int)")
        .await
        .expect("create temp table");
    let holder = hold_a_primary_connection(p.port()).await;
    a.batch_execute("insert into scratch values (1)")
        .await
        .expect("insert");
    a.batch_execute("begin; insert into scratch values (2); commit")
        .await
        .expect("transaction");
    // A plain read: without the pin it would go to the replica.
    assert_eq!(
        one(&a, "select count(*) from scratch").await.as_deref(),
        Some("2")
    );
    drop(holder);
    let b = connect(p.port()).await;
    let err = b
        .simple_query("/* pgsplit:primary */ select * from scratch")
        .await
        .expect_err("another client sees the temporary table");
    assert_eq!(code_of(&err).as_deref(), Some("42P01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_advisory_lock_is_held_until_the_client_leaves() {
    let c = Cluster::start();
    let p = Proxy::start(two_primary_connections(&c));
    let a = connect(p.port()).await;
    // Extended protocol: the pin is seen at Parse.
    a.execute("select pg_advisory_lock($1)", &[&77i64])
        .await
        .expect("lock");
    let b = connect(p.port()).await;
    assert_eq!(
        one(&b, "select pg_try_advisory_lock(77)").await.as_deref(),
        Some("f"),
        "the lock was not held"
    );
    drop(b);
    drop(a);
    let port = p.port();
    let unlocked = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), || {
            support::proxy::psql_via(port, "select pg_try_advisory_lock(77)").as_deref() == Ok("t")
        })
    })
    .await
    .expect("join");
    assert!(unlocked, "the lock outlived its client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_and_hold_cursor_survive_between_transactions() {
    let c = Cluster::start();
    let p = Proxy::start(two_primary_connections(&c));
    let a = connect(p.port()).await;
    a.batch_execute("prepare add_one(int) as select $1 + 1")
        .await
        .expect("prepare");
    a.batch_execute("begin; declare c cursor with hold for select generate_series(1, 3); commit")
        .await
        .expect("declare with hold");
    // Another client takes the connection used last, unless it is pinned.
    let b = connect(p.port()).await;
    assert_eq!(
        one(
            &b,
            "/* pgsplit:primary */ select (select count(*) from pg_prepared_statements) \
             + (select count(*) from pg_cursors)"
        )
        .await
        .as_deref(),
        Some("0"),
        "another client's connection has the statement or the cursor"
    );
    assert_eq!(one(&a, "execute add_one(41)").await.as_deref(), Some("42"));
    let rows = a.simple_query("fetch all from c").await.expect("fetch");
    let rows = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_reads_run_where_the_setting_is() {
    let c = Cluster::start();
    c.psql(
        c.primary_port(),
        "create schema app; create table app.t(x int); insert into app.t values (1)",
    );
    c.wait_replica_caught_up();
    let mut config = proxy_config(&c);
    config.pool_mode = PoolMode::Session;
    let p = Proxy::start(config);
    let a = connect(p.port()).await;
    a.batch_execute("set search_path = app").await.expect("set");
    // The client's replica connection does not have the setting.
    assert_eq!(
        one(&a, "select count(*) from t").await.as_deref(),
        Some("1")
    );
}

/// `CREATE TABLE pg_temp.t` makes a temporary table without the TEMP
/// keyword (tokio-postgres's own tests do it): it pins as well, and the
/// next client on that connection does not find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_in_the_temp_schema_pin_and_do_not_leak() {
    let c = Cluster::start();
    let mut config = proxy_config(&c);
    config.pool.primary.pool_size = 1;
    config.pool.primary.max_overflow = 0;
    let p = Proxy::start(config);
    let a = connect(p.port()).await;
    a.batch_execute("create table pg_temp.scratch(x int)")
        .await
        .expect("create");
    assert_eq!(
        one(&a, "select count(*) from pg_temp.scratch")
            .await
            .as_deref(),
        Some("0")
    );
    drop(a);
    let b = connect(p.port()).await;
    b.batch_execute("create table pg_temp.scratch(x int)")
        .await
        .expect("the first client's temporary table leaked to the next");
}

/// DISCARD ALL undoes what pinned a client: once it succeeds the client's
/// reads move to the replica again; a DISCARD ALL that fails (inside a
/// transaction block) keeps the pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_unpins() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let a = connect(p.port()).await;
    let read = "select inet_server_port()";
    a.batch_execute("LISTEN unpin_me").await.unwrap();
    assert_eq!(support::proxy::port_of(&a, read).await, c.primary_port());

    a.batch_execute("BEGIN").await.unwrap();
    assert!(a.batch_execute("DISCARD ALL").await.is_err());
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(support::proxy::port_of(&a, read).await, c.primary_port());

    a.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(support::proxy::port_of(&a, read).await, c.replica_port());
    let clients = support::proxy::psql_args(
        p.port(),
        &["-U", "postgres", "-d", "pgsplit", "-c", "SHOW CLIENTS"],
        &[],
    )
    .unwrap();
    assert!(!clients.contains("LISTEN"), "{clients}");
}

/// Session pooling keeps the replica connection a client's first read
/// used: a pin taken after it (here a temporary table, then a session
/// advisory lock) belongs on the primary, and so does everything after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_pin_after_a_read_goes_to_the_primary() {
    let c = Cluster::start();
    let mut config = proxy_config(&c);
    config.pool_mode = PoolMode::Session;
    let p = Proxy::start(config);
    let a = connect(p.port()).await;
    let replica = c.replica_port().to_string();
    let primary = c.primary_port().to_string();
    assert_eq!(
        one(&a, "select inet_server_port()").await.as_deref(),
        Some(replica.as_str())
    );
    a.batch_execute("create temp table scratch(x int)")
        .await
        .expect("create temp table after a read");
    a.batch_execute("insert into scratch values (1)")
        .await
        .expect("insert");
    assert_eq!(
        one(&a, "select inet_server_port()").await.as_deref(),
        Some(primary.as_str()),
        "a pinned client's reads run where its state is"
    );
    assert_eq!(
        one(&a, "select count(*) from scratch").await.as_deref(),
        Some("1")
    );
}

/// A pin taken inside a read-only transaction on a replica: once that
/// transaction ends, the client's writes still reach the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_inside_a_replica_transaction_leaves_writes_on_the_primary() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table marks(x int)");
    c.wait_replica_caught_up();
    let mut config = proxy_config(&c);
    config.read_only_transactions = pgsplit::config::ReadOnlyTransactions::Replica;
    let p = Proxy::start(config);
    let a = connect(p.port()).await;
    a.batch_execute("begin read only").await.expect("begin");
    assert_eq!(
        one(&a, "select inet_server_port()").await.as_deref(),
        Some(c.replica_port().to_string().as_str())
    );
    a.batch_execute("select pg_advisory_lock(7)")
        .await
        .expect("advisory lock on the replica");
    a.batch_execute("commit").await.expect("commit");
    a.batch_execute("insert into marks values (1)")
        .await
        .expect("a write after the pin runs on the primary");
    assert_eq!(
        one(&a, "select inet_server_port()").await.as_deref(),
        Some(c.primary_port().to_string().as_str())
    );
}
