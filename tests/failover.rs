//! Servers going away under a running pgsplit: a replica crash under select
//! load that no client notices, a primary crash that fails writes fast with
//! 57P03 while reads carry on, and a promoted replica that takes writes
//! without restarting pgsplit.
//!
//! `inet_server_port()` in a statement's result tells where it ran.

mod support;

use std::thread::sleep;
use std::time::{Duration, Instant};

use pgsplit::config::Config;
use support::cluster::Cluster;
use support::proxy::{
    code_of, connect, eventually, message_of, one, pgbench, proxy_config, psql_via, try_connect,
    Proxy,
};
use tokio_postgres::Client;

/// The longest a write may take to fail once the primary is gone: it must
/// not wait for connect timeouts, pool timeouts or retries.
const FAIL_FAST: Duration = Duration::from_secs(3);
/// SQLSTATE cannot_connect_now: the server exists but takes no work now.
const CANNOT_CONNECT_NOW: &str = "57P03";

/// A config for `c` whose health monitor notices a change within about
/// 0.2 s, so the tests need not wait out the default 3 s.
fn quick_health(c: &Cluster) -> Config {
    let mut config = proxy_config(c);
    config.health.interval = 0.1;
    config.health.threshold = 2;
    // Writes wait this long for a confirmed primary, then fail with 57P03.
    config.failover_wait = 1.0;
    config
}

/// The port a fresh psql connection through pgsplit runs a read on.
fn read_port(proxy: &Proxy) -> Result<u16, String> {
    psql_via(proxy.port(), "select inet_server_port()")
        .map(|out| out.parse().expect("inet_server_port() is a port"))
}

#[test]
fn replica_stopped_under_select_load() {
    let c = Cluster::start();
    // Straight to the primary: this test is about reads, not initialization.
    let (ok, out) = pgbench(c.primary_port(), &["-i", "-s", "1", "-q"]);
    assert!(ok, "pgbench -i:\n{out}");
    c.wait_replica_caught_up();
    let p = Proxy::start(quick_health(&c));
    assert_eq!(read_port(&p), Ok(c.replica_port()), "before the crash");

    let port = p.port();
    let bench =
        std::thread::spawn(move || pgbench(port, &["-S", "-c", "8", "-j", "2", "-T", "12", "-n"]));
    sleep(Duration::from_secs(3));
    // Immediate: the replica's backends die mid-query, as in a crash, so
    // pooled connections and in-flight reads are cut, not closed politely.
    c.stop("replica", "immediate");
    let down_since = Instant::now();
    let mut reads_while_down = 0;
    while down_since.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            read_port(&p),
            Ok(c.primary_port()),
            "a read {:?} after the replica stopped",
            down_since.elapsed()
        );
        reads_while_down += 1;
        sleep(Duration::from_millis(200));
    }
    assert!(reads_while_down > 5, "only {reads_while_down} reads ran");
    c.start_replica();
    assert!(
        eventually(Duration::from_secs(20), || read_port(&p)
            == Ok(c.replica_port())),
        "reads did not return to the replica; last read: {:?}",
        read_port(&p)
    );

    let (ok, out) = bench.join().expect("pgbench thread");
    assert!(ok, "pgbench failed while the replica restarted:\n{out}");
    assert!(
        out.contains("number of failed transactions: 0"),
        "a client saw an error while the replica restarted:\n{out}"
    );
    assert!(!out.contains("aborted"), "a client was aborted:\n{out}");
}

#[test]
fn small_read_cut_off_before_its_end_runs_again() {
    let c = Cluster::start();
    c.wait_replica_caught_up();
    let p = Proxy::start(quick_health(&c));
    assert_eq!(read_port(&p), Ok(c.replica_port()), "before the crash");
    let port = p.port();
    // One Query, two reads: the first one's row waits in the replica's
    // output buffer while the second runs; an immediate shutdown flushes
    // it with a WARNING and closes without ReadyForQuery.
    let read = std::thread::spawn(move || {
        psql_via(
            port,
            "select inet_server_port(); \
             select count(*) > 0 from generate_series(1, 40000000)",
        )
    });
    sleep(Duration::from_millis(700));
    c.stop("replica", "immediate");
    let out = read.join().expect("psql thread");
    let out = out.unwrap_or_else(|e| panic!("the read failed instead of running again: {e}"));
    assert_eq!(
        out.lines().next(),
        Some(c.primary_port().to_string().as_str()),
        "{out}"
    );
}

/// Runs `sql` on `client` and expects it to fail fast with 57P03 naming
/// the primary; `what` says which attempt this is in the failure message.
async fn assert_fails_fast(client: &Client, sql: &str, what: &str) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), client.batch_execute(sql)).await;
    let elapsed = started.elapsed();
    let err = match result {
        Err(_) => panic!("{what}: {sql:?} still waiting after 10 s"),
        Ok(Ok(())) => panic!("{what}: {sql:?} succeeded with the primary down"),
        Ok(Err(e)) => e,
    };
    assert!(
        elapsed < FAIL_FAST,
        "{what}: {sql:?} took {elapsed:?} to fail"
    );
    assert_eq!(
        code_of(&err).as_deref(),
        Some(CANNOT_CONNECT_NOW),
        "{what}: {sql:?} failed with {err} ({:?})",
        err.as_db_error()
    );
    assert!(
        message_of(&err).to_lowercase().contains("primary"),
        "{what}: the message should say the primary is down: {:?}",
        message_of(&err)
    );
}

/// A transaction with the primary down fails with 57P03, at BEGIN or at
/// its first statement (pgsplit may defer BEGIN until it knows the route).
async fn assert_transaction_fails(client: &Client) {
    let started = Instant::now();
    let err = match client.batch_execute("begin").await {
        Err(e) => e,
        Ok(()) => {
            let err = client
                .batch_execute("insert into t values (3)")
                .await
                .expect_err("a write inside BEGIN succeeded with the primary down");
            // Leave the session usable for the reads that follow.
            let _ = client.batch_execute("rollback").await;
            err
        }
    };
    let elapsed = started.elapsed();
    assert!(
        elapsed < FAIL_FAST,
        "the transaction took {elapsed:?} to fail"
    );
    assert_eq!(
        code_of(&err).as_deref(),
        Some(CANNOT_CONNECT_NOW),
        "transaction: {err} ({:?})",
        err.as_db_error()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_stopped_writes_fail_fast_reads_continue() {
    let c = Cluster::start();
    c.psql(
        c.primary_port(),
        "create table t(id int); insert into t values (1)",
    );
    c.wait_replica_caught_up();
    let p = Proxy::start(quick_health(&c));
    let before = connect(p.port()).await;
    // A write leaves a pooled primary connection for the crash to kill.
    before
        .batch_execute("update t set id = 1 where id = 1")
        .await
        .expect("write before the crash");
    c.wait_replica_caught_up();
    assert_eq!(
        one(&before, "select count(*) from t").await.as_deref(),
        Some("1")
    );

    c.stop("primary", "immediate");
    // At once (pgsplit may not have noticed yet) and once health checks
    // have had time to mark the primary down; both protocols.
    assert_fails_fast(&before, "insert into t values (2)", "right after the crash").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_fails_fast(&before, "insert into t values (2)", "a second later").await;
    let started = Instant::now();
    let err = before
        .execute("insert into t values ($1)", &[&2i32])
        .await
        .expect_err("an extended-protocol write succeeded with the primary down");
    assert!(
        started.elapsed() < FAIL_FAST,
        "extended write took {:?}",
        started.elapsed()
    );
    assert_eq!(
        code_of(&err).as_deref(),
        Some(CANNOT_CONNECT_NOW),
        "extended write: {err}"
    );
    assert_transaction_fails(&before).await;

    // Reads carry on, on old and new connections alike.
    assert_eq!(
        one(&before, "select count(*) from t").await.as_deref(),
        Some("1")
    );
    let row = before
        .query_one("select count(*) from t where id = $1", &[&1i32])
        .await
        .expect("extended read with the primary down");
    assert_eq!(row.get::<_, i64>(0), 1);
    let after = connect(p.port()).await;
    assert_eq!(
        one(&after, "select count(*) from t").await.as_deref(),
        Some("1")
    );
    assert_fails_fast(&after, "insert into t values (2)", "a new client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_replica_takes_writes_without_restart() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table t(id int)");
    c.wait_replica_caught_up();
    let p = Proxy::start(quick_health(&c));
    let client = connect(p.port()).await;
    client
        .batch_execute("insert into t values (1)")
        .await
        .expect("write before the failover");
    c.wait_replica_caught_up();

    // Stopped first, so the old primary cannot take writes after the
    // promotion (a split brain pgsplit could not be blamed for).
    c.stop("primary", "immediate");
    c.promote_replica();

    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = insert_on_new_connection(p.port(), "insert into t values (3)").await {
        assert!(
            Instant::now() < deadline,
            "writes did not move to the promoted replica; last error: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        c.psql(c.replica_port(), "select count(*) from t where id = 3"),
        "1",
        "the write is not on the promoted server"
    );
    // The client that wrote before the failover reads its new write too.
    assert_eq!(
        one(&client, "select count(*) from t").await.as_deref(),
        Some("2")
    );
}

/// Connects to pgsplit and runs `sql`, giving up after 5 s; the error text
/// on failure.
async fn insert_on_new_connection(port: u16, sql: &str) -> Result<(), String> {
    let attempt = async {
        let client = try_connect(&format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"
        ))
        .await
        .map_err(|e| format!("connect: {e}"))?;
        client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {} ({:?})", message_of(&e), code_of(&e)))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or_else(|_| Err(format!("{sql}: no answer within 5 s")))
}

/// Writes through pgsplit, one after another on one connection (a new one
/// after an error), for `for_how_long`: (failed writes, the longest gap
/// between two successful ones).
async fn write_continuously(port: u16, for_how_long: Duration) -> (usize, Duration) {
    let started = Instant::now();
    let (mut failures, mut last_ok, mut longest_gap) = (0, Instant::now(), Duration::ZERO);
    let mut client: Option<Client> = None;
    let mut n = 0i32;
    while started.elapsed() < for_how_long {
        n += 1;
        let c = match &client {
            Some(c) => c,
            None => match try_connect(&format!(
                "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"
            ))
            .await
            {
                Ok(c) => client.insert(c),
                Err(e) => {
                    eprintln!("connect: {e} ({})", message_of(&e));
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let sql = format!("insert into t values ({n})");
        match tokio::time::timeout(Duration::from_secs(10), c.batch_execute(&sql)).await {
            Ok(Ok(())) => {
                longest_gap = longest_gap.max(last_ok.elapsed());
                last_ok = Instant::now();
            }
            other => {
                eprintln!("write: {other:?}");
                failures += 1;
                client = None;
            }
        }
    }
    (failures, longest_gap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_under_write_load_moves_writes_within_the_failover_wait() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table t(id int)");
    c.wait_replica_caught_up();
    let mut config = quick_health(&c);
    config.health.threshold = 3;
    config.failover_wait = 10.0;
    let p = Proxy::start(config);
    let port = p.port();
    let load = tokio::spawn(write_continuously(port, Duration::from_secs(6)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.stop("primary", "immediate");
    c.promote_replica();
    let (failures, gap) = load.await.expect("the write load");
    eprintln!(
        "promotion under write load: {failures} failed writes, writes paused for {gap:?} at most"
    );
    // Only the write in flight when the primary went away may fail; the
    // rest wait for the promoted replica (re-checked at once) and succeed.
    assert!(
        failures <= 1,
        "{failures} writes failed during the promotion"
    );
    assert!(gap < Duration::from_secs(5), "writes stopped for {gap:?}");
    assert!(
        c.psql(c.replica_port(), "select count(*) from t")
            .parse::<u64>()
            .unwrap()
            > 10,
        "the writes after the promotion are not on the promoted server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_brain_takes_no_writes_and_healthz_says_so() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table t(id int)");
    c.wait_replica_caught_up();
    let mut config = quick_health(&c);
    let metrics_port = support::cluster::free_port();
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let p = Proxy::start(config);
    let client = connect(p.port()).await;
    client
        .batch_execute("insert into t values (1)")
        .await
        .expect("a write before");

    // Promoted while the old primary still runs: two servers take writes.
    c.promote_replica();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = support::http::get(metrics_port, "/healthz");
        if body.contains("\"split_brain\":true") {
            assert!(body.contains("\"writes\":false"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never reported the split brain: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = client
        .batch_execute("insert into t values (2)")
        .await
        .expect_err("a write went to one of two primaries");
    assert_eq!(code_of(&err).as_deref(), Some(CANNOT_CONNECT_NOW), "{err}");
    assert!(
        message_of(&err).contains("split brain"),
        "{}",
        message_of(&err)
    );
    // Reads go on.
    assert_eq!(
        one(&client, "select count(*) from t").await.as_deref(),
        Some("1")
    );

    // The old primary goes: writes go to the promoted one.
    c.stop("primary", "immediate");
    client
        .batch_execute("insert into t values (3)")
        .await
        .expect("a write once one primary is left");
    assert_eq!(
        c.psql(c.replica_port(), "select count(*) from t where id = 3"),
        "1"
    );
}

/// A fleet: three instances, each with its own writer, in front of one
/// primary and replica. When the replica is promoted under that load,
/// every instance moves its writes there on its own (each re-checks at the
/// first failed write), losing at most the write in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_moves_writes_through_every_instance_of_a_fleet() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table t(id int)");
    c.wait_replica_caught_up();
    let fleet: Vec<Proxy> = (1..=3)
        .map(|id| {
            let mut config = quick_health(&c);
            config.health.threshold = 3;
            config.failover_wait = 10.0;
            config.instance_id = id;
            Proxy::start(config)
        })
        .collect();
    let loads: Vec<_> = fleet
        .iter()
        .map(|p| tokio::spawn(write_continuously(p.port(), Duration::from_secs(6))))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.stop("primary", "immediate");
    c.promote_replica();
    for (i, load) in loads.into_iter().enumerate() {
        let (failures, gap) = load.await.expect("the write load");
        eprintln!(
            "instance {}: {failures} failed writes, writes paused for {gap:?} at most",
            i + 1
        );
        assert!(
            failures <= 1,
            "instance {}: {failures} writes failed during the promotion",
            i + 1
        );
        assert!(
            gap < Duration::from_secs(5),
            "instance {}: writes stopped for {gap:?}",
            i + 1
        );
    }
    assert!(
        c.psql(c.replica_port(), "select count(*) from t")
            .parse::<u64>()
            .unwrap()
            > 30,
        "the writes after the promotion are not on the promoted server"
    );
}
