//! Client sessions and the pool: clients that vanish mid-transaction or
//! mid-query, cancel requests, named prepared statements shared over a
//! small transaction pool, pool timeouts, session-pool resets, and parked
//! connections handed to the next client that waits.

mod support;

use std::time::Duration;

use pgsplit::config::{Config, PoolMode};
use support::cluster::Cluster;
use support::proxy::{
    code_of, connect, connect_with_task, eventually, message_of, one, proxy_config, Proxy,
};
use tokio_postgres::NoTls;

/// Backends on `port` running exactly `query` right now.
fn running(c: &Cluster, port: u16, query: &str) -> usize {
    c.psql(
        port,
        &format!(
            "select count(*) from pg_stat_activity where query = '{query}' and state = 'active'"
        ),
    )
    .parse()
    .unwrap()
}

fn wait_running(c: &Cluster, port: u16, query: &str) {
    assert!(
        eventually(Duration::from_secs(5), || running(c, port, query) == 1),
        "{query:?} never ran on port {port}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_clients_leave_nothing_behind() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table k(x int)");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));

    // (a) Killed inside a transaction: pgsplit rolls it back.
    let (client, task) = connect_with_task(p.port()).await;
    client.batch_execute("begin").await.unwrap();
    client
        .batch_execute("insert into k values (1)")
        .await
        .unwrap();
    assert_eq!(
        c.psql(
            c.primary_port(),
            "select count(*) from pg_stat_activity where state = 'idle in transaction'"
        ),
        "1"
    );
    drop(client);
    task.abort();
    assert!(
        eventually(Duration::from_secs(3), || c.psql(
            c.primary_port(),
            "select count(*) from pg_stat_activity where state like 'idle in transaction%'"
        ) == "0"),
        "a backend stayed idle in transaction"
    );
    assert_eq!(c.psql(c.primary_port(), "select count(*) from k"), "0");
    let fresh = connect(p.port()).await;
    for _ in 0..4 {
        assert_eq!(
            one(&fresh, "select txid_current_if_assigned()").await,
            None,
            "leftover transaction"
        );
    }

    // (b) Gone while a statement runs: pgsplit cancels it.
    let query = "select pg_sleep(30)";
    let (client, task) = connect_with_task(p.port()).await;
    let running_query = tokio::spawn(async move {
        let _ = client.simple_query(query).await;
    });
    wait_running(&c, c.replica_port(), query);
    running_query.abort();
    task.abort();
    assert!(
        eventually(Duration::from_secs(2), || running(
            &c,
            c.replica_port(),
            query
        ) == 0),
        "pg_sleep still runs after its client left"
    );
    for _ in 0..4 {
        assert_eq!(
            one(&fresh, "select count(*) from k").await.as_deref(),
            Some("0")
        );
        assert_eq!(one(&fresh, "select 1 + 1").await.as_deref(), Some("2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_only_the_right_query() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    for (sql, port) in [
        ("select pg_sleep(10)", c.replica_port()),
        (
            "/* pgsplit:primary */ select pg_sleep(10)",
            c.primary_port(),
        ),
    ] {
        let victim = connect(p.port()).await;
        let bystander = connect(p.port()).await;
        // Replica connections open as reads need them, the first alone
        // (reads meanwhile go to the primary): open it before the two race.
        one(&victim, "select 1").await;
        let token = victim.cancel_token();
        let cancelled = tokio::spawn(async move { victim.simple_query(sql).await.map(|_| ()) });
        // The bystander runs the same kind of statement on the same server.
        let bystander_sql = sql.replace("pg_sleep(10)", "pg_sleep(1.5)");
        let other =
            tokio::spawn(async move { bystander.simple_query(&bystander_sql).await.map(|_| ()) });
        wait_running(&c, port, sql);
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel_query(NoTls).await.expect("send cancel");
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), cancelled)
            .await
            .expect("cancelled query did not stop")
            .unwrap()
            .expect_err("the query should have been cancelled");
        assert_eq!(code_of(&err).as_deref(), Some("57014"), "{sql}: {err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        other
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{sql}: the bystander's query failed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_survive_shared_connections() {
    let c = Cluster::start();
    c.psql(
        c.primary_port(),
        "create table pp(id int primary key, v text); \
         insert into pp select g, 'v' || g from generate_series(1, 100) g",
    );
    c.wait_replica_caught_up();
    let mut config = proxy_config(&c);
    for pool in [&mut config.pool.primary, &mut config.pool.replica] {
        pool.pool_size = 1;
        pool.max_overflow = 1;
    }
    let p = Proxy::start(config);

    let mut clients = Vec::new();
    for n in 0..4i32 {
        let port = p.port();
        clients.push(tokio::spawn(async move {
            let client = connect(port).await;
            let add = client.prepare("select $1::int + $2::int").await.unwrap();
            let label = client.prepare("select v from pp where id = $1").await.unwrap();
            let concat = client.prepare("select $1::text || '-' || $2::text").await.unwrap();
            let write = client
                .prepare("insert into pp values ($1, $2) on conflict (id) do update set v = excluded.v returning id")
                .await
                .unwrap();
            for i in 0..200i32 {
                let sum: i32 = client.query_one(&add, &[&i, &n]).await.unwrap().get(0);
                assert_eq!(sum, i + n);
                let id = i % 100 + 1;
                let v: String = client.query_one(&label, &[&id]).await.unwrap().get(0);
                assert_eq!(v, format!("v{id}"));
                let s: String = client
                    .query_one(&concat, &[&format!("c{n}"), &i.to_string()])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(s, format!("c{n}-{i}"));
                if i % 20 == 0 {
                    let key = 1000 + n * 1000 + i;
                    let got: i32 = client.query_one(&write, &[&key, &"w"]).await.unwrap().get(0);
                    assert_eq!(got, key);
                }
            }
        }));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("clients did not finish")
            .expect("a client failed");
    }
    assert_eq!(
        c.psql(c.primary_port(), "select count(*) from pp where id >= 1000"),
        "40"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_timeout_and_session_reset() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table w(x int)");
    c.wait_replica_caught_up();

    // (e) One primary connection, held by A's transaction.
    let mut config = proxy_config(&c);
    config.pool.primary.pool_size = 1;
    config.pool.primary.max_overflow = 0;
    config.pool.primary.pool_timeout = 0.5;
    let p = Proxy::start(config);
    let a = connect(p.port()).await;
    let b = connect(p.port()).await;
    a.batch_execute("begin").await.unwrap();
    a.batch_execute("insert into w values (1)").await.unwrap();
    let started = std::time::Instant::now();
    let err = b
        .batch_execute("insert into w values (2)")
        .await
        .unwrap_err();
    assert_eq!(code_of(&err).as_deref(), Some("53300"), "{err}");
    let message = message_of(&err);
    assert!(
        message.contains(&format!("primary 127.0.0.1:{}", c.primary_port())),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited {:?}",
        started.elapsed()
    );
    a.batch_execute("commit").await.unwrap();
    b.batch_execute("insert into w values (2)")
        .await
        .expect("B after A committed");
    assert_eq!(c.psql(c.primary_port(), "select count(*) from w"), "2");
    drop(p);

    // (f) Session pooling with one connection per role: the next client
    // gets the same backends, without the previous client's settings.
    let mut config = Config {
        pool_mode: PoolMode::Session,
        ..proxy_config(&c)
    };
    for pool in [&mut config.pool.primary, &mut config.pool.replica] {
        pool.pool_size = 1;
        pool.max_overflow = 0;
    }
    let p = Proxy::start(config);
    let first = connect(p.port()).await;
    first.batch_execute("set work_mem = '9MB'").await.unwrap();
    let pid1 = one(&first, "/* pgsplit:primary */ select pg_backend_pid()").await;
    assert_eq!(
        one(&first, "/* pgsplit:primary */ show work_mem")
            .await
            .as_deref(),
        Some("9MB")
    );
    drop(first);
    let second = eventually_connect(p.port()).await;
    let pid2 = one(&second, "/* pgsplit:primary */ select pg_backend_pid()").await;
    assert_eq!(pid1, pid2, "session pool of one should reuse the backend");
    assert_eq!(
        one(&second, "/* pgsplit:primary */ show work_mem")
            .await
            .as_deref(),
        Some("4MB"),
        "SET leaked into the next session"
    );
}

/// The previous client's connection goes back after its DISCARD ALL; a new
/// client may have to wait a moment for it.
async fn eventually_connect(port: u16) -> tokio_postgres::Client {
    tokio::time::sleep(Duration::from_millis(200)).await;
    connect(port).await
}

/// The replica pool's line in GET /status.
fn replica_pool(metrics_port: u16) -> serde_json::Value {
    let (code, body) = support::http::get(metrics_port, "/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["pools"]
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["role"] == "replica").cloned())
        .unwrap_or_else(|| panic!("no replica pool in {body}"))
}

/// Checkouts from the replica pool so far.
fn replica_checkouts(metrics_port: u16) -> f64 {
    let (_, body) = support::http::get(metrics_port, "/metrics");
    body.lines()
        .filter(|l| l.starts_with("pgsplit_pool_checkout_wait_seconds_count{"))
        .filter(|l| l.contains("role=\"replica\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Transaction pooling parks a client's connection with it between its
/// transactions: its next ones skip the checkout. The moment another client
/// waits for that pool, the parked connection goes to it (well inside a
/// pool_timeout shorter than the sweep), and an idle client's parked
/// connection is back in the pool within the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_go_to_the_next_client_that_waits() {
    let c = Cluster::start();
    let metrics_port = support::cluster::free_port();
    let mut config = proxy_config(&c);
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    config.pool.replica.pool_size = 1;
    config.pool.replica.max_overflow = 0;
    config.pool.replica.pool_timeout = 0.5;
    let p = Proxy::start(config);
    let a = connect(p.port()).await;
    let b = connect(p.port()).await;

    let pid = one(&a, "select pg_backend_pid()").await;
    let before = replica_checkouts(metrics_port);
    for _ in 0..10 {
        assert_eq!(one(&a, "select pg_backend_pid()").await, pid);
    }
    // One more checkout at most: the sweep may have taken it back once.
    let checkouts = replica_checkouts(metrics_port) - before;
    assert!(checkouts <= 1.0, "{checkouts} checkouts for 10 reads");

    // Each client's read needs the one connection the other has parked;
    // waiting for the sweep would exceed pool_timeout half of the time.
    for turn in 0..6 {
        let client = if turn % 2 == 0 { &b } else { &a };
        let got = client.simple_query("select pg_backend_pid()").await;
        assert!(got.is_ok(), "turn {turn}: {got:?}");
    }

    assert!(
        eventually(Duration::from_secs(5), || {
            let pool = replica_pool(metrics_port);
            pool["parked"] == 0 && pool["checked_in"] == 1
        }),
        "{}",
        replica_pool(metrics_port)
    );
}
