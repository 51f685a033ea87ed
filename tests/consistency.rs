//! Read-your-writes by WAL position and lag-aware routing, against a
//! replica whose replay is paused (streaming and healthy, but stale):
//! session mode never shows a client stale data after its own write,
//! global mode never shows any client stale data after any write through
//! pgsplit, eventual mode may, and a replica lagging past
//! `max_replica_lag_bytes` serves no reads until it catches up.
//!
//! `inet_server_port()` in a statement's result tells where it ran.

mod support;

use std::time::{Duration, Instant};

use pgsplit::config::{Config, Consistency};
use support::cluster::Cluster;
use support::proxy::{connect, one, port_of, proxy_config, Proxy};
use tokio_postgres::Client;

/// Write-then-read round trips on one connection in each protocol.
const SIMPLE_ROUNDS: i32 = 200;
const EXTENDED_ROUNDS: i32 = 50;

/// A config for `c` in `mode`, waiting at most 50 ms for the replica to
/// catch up, with a health monitor that reacts within about 0.2 s.
fn config(c: &Cluster, mode: Consistency) -> Config {
    let mut config = proxy_config(c);
    config.consistency = mode;
    config.max_wait_for_replica = 0.05;
    config.health.interval = 0.1;
    config.health.threshold = 2;
    config
}

/// A cluster with an empty `t(id int primary key)` on both servers.
fn cluster_with_table() -> Cluster {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table t(id int primary key)");
    c.wait_replica_caught_up();
    c
}

/// Starts pgsplit in `mode` and then pauses replay, so from now on every
/// write is missing on the replica until the test resumes replay.
fn stale_replica(mode: Consistency) -> (Cluster, Proxy) {
    let c = cluster_with_table();
    let p = Proxy::start(config(&c, mode));
    c.pause_replay();
    (c, p)
}

/// Polls until a read on `client` runs on `port`, for up to `timeout`.
async fn reads_move_to(client: &Client, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if port_of(client, "select inet_server_port()").await == port {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Inserts `id` on `writer`, then counts it on `reader` (the same client
/// or another), in the simple protocol with literals.
async fn write_then_count(writer: &Client, reader: &Client, id: i32) -> String {
    writer
        .batch_execute(&format!("insert into t values ({id})"))
        .await
        .unwrap_or_else(|e| panic!("insert {id}: {e}"));
    one(reader, &format!("select count(*) from t where id = {id}"))
        .await
        .expect("count returns a row")
}

/// Like [`write_then_count`] in the extended protocol, with parameters.
async fn write_then_count_extended(writer: &Client, reader: &Client, id: i32) -> i64 {
    writer
        .execute("insert into t values ($1)", &[&id])
        .await
        .unwrap_or_else(|e| panic!("insert ${id}: {e}"));
    reader
        .query_one("select count(*) from t where id = $1", &[&id])
        .await
        .unwrap_or_else(|e| panic!("count ${id}: {e}"))
        .get(0)
}

/// Every read right after a write on the same connection sees it, in both
/// protocols; ids start at `first`.
async fn reads_own_writes(client: &Client, first: i32) {
    for id in first..first + SIMPLE_ROUNDS {
        assert_eq!(
            write_then_count(client, client, id).await,
            "1",
            "simple protocol: row {id} not visible right after inserting it"
        );
    }
    let first = first + SIMPLE_ROUNDS;
    for id in first..first + EXTENDED_ROUNDS {
        assert_eq!(
            write_then_count_extended(client, client, id).await,
            1,
            "extended protocol: row {id} not visible right after inserting it"
        );
    }
}

/// Replay really is paused: none of the test's rows reached the replica,
/// so the reads above could only be right by routing, not by luck.
fn assert_replica_stale(c: &Cluster) {
    assert_eq!(
        c.psql(c.replica_port(), "select count(*) from t"),
        "0",
        "replay was not paused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_reads_own_writes_with_replay_paused() {
    let (c, p) = stale_replica(Consistency::Session);
    let writer = connect(p.port()).await;
    let other = connect(p.port()).await;

    reads_own_writes(&writer, 1).await;
    // Only the writer pays for its writes: a client that never wrote still
    // reads from the stale replica.
    assert_eq!(
        port_of(&other, "select inet_server_port()").await,
        c.replica_port(),
        "a client that never wrote left the replica"
    );
    assert_replica_stale(&c);
    c.resume_replay();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_mode_reads_see_every_write_with_replay_paused() {
    let (c, p) = stale_replica(Consistency::Global);
    let a = connect(p.port()).await;
    let b = connect(p.port()).await;

    reads_own_writes(&a, 1).await;
    // A web app with a writer pool and a reader pool: the row written on
    // one connection is visible on the other right away.
    for id in 10_000..10_050 {
        assert_eq!(
            write_then_count(&a, &b, id).await,
            "1",
            "row {id} written on A not visible on B"
        );
    }
    for id in 20_000..20_010 {
        assert_eq!(
            write_then_count_extended(&a, &b, id).await,
            1,
            "extended protocol: row {id} written on A not visible on B"
        );
    }
    assert_replica_stale(&c);
    c.resume_replay();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_reads_see_writes_made_anywhere() {
    let (c, p) = stale_replica(Consistency::Cluster);
    let reader = connect(p.port()).await;
    // Written straight on the primary (another instance, an admin, a
    // job): pgsplit never saw these writes.
    let direct = connect(c.primary_port()).await;
    for id in 1..=30 {
        assert_eq!(
            write_then_count(&direct, &reader, id).await,
            "1",
            "row {id} written on the primary directly not visible through pgsplit"
        );
    }
    assert_replica_stale(&c);
    c.resume_replay();
    c.wait_replica_caught_up();
    // Once the replica has everything, reads go back to it.
    assert!(
        reads_move_to(&reader, c.replica_port(), Duration::from_secs(5)).await,
        "reads did not return to the replica once it caught up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_does_not_see_writes_made_elsewhere() {
    // The other side of the cluster mode test: without it, a write made
    // elsewhere is not waited for (so the test above shows the mode works).
    let (c, p) = stale_replica(Consistency::Session);
    let reader = connect(p.port()).await;
    let direct = connect(c.primary_port()).await;
    assert_eq!(write_then_count(&direct, &reader, 1).await, "0");
    c.resume_replay();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_mode_may_read_stale() {
    let (c, p) = stale_replica(Consistency::Eventual);
    let client = connect(p.port()).await;

    let mut counts = Vec::new();
    for id in 1..=20 {
        counts.push(write_then_count(&client, &client, id).await);
    }
    // Nothing waits for the replica, which has none of these rows.
    assert!(
        counts.iter().any(|n| n == "0"),
        "every read saw its write, so none went to the paused replica: {counts:?}"
    );
    c.resume_replay();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_is_skipped() {
    let c = cluster_with_table();
    let mut config = config(&c, Consistency::Eventual);
    // Far below the ~100 kB the insert below writes, yet above the few
    // bytes background records (running-xacts snapshots) briefly put the
    // replica behind on an idle cluster.
    config.max_replica_lag_bytes = 1024;
    let p = Proxy::start(config);
    let client = connect(p.port()).await;
    assert!(
        reads_move_to(&client, c.replica_port(), Duration::from_secs(10)).await,
        "reads never went to the caught-up replica"
    );

    c.pause_replay();
    // Straight to the primary, so only the lag (no write of this client
    // and no consistency mode) can move reads.
    c.psql(
        c.primary_port(),
        "insert into t select generate_series(1000, 2000)",
    );
    assert!(
        reads_move_to(&client, c.primary_port(), Duration::from_secs(10)).await,
        "reads stayed on the replica lagging by {} bytes",
        c.psql(
            c.primary_port(),
            "select pg_current_wal_lsn() - replay_lsn from pg_stat_replication"
        )
    );
    assert_replica_stale(&c);

    c.resume_replay();
    c.wait_replica_caught_up();
    assert!(
        reads_move_to(&client, c.replica_port(), Duration::from_secs(10)).await,
        "reads did not return to the replica after it caught up"
    );
}

/// Read-your-writes does not simply send a writer's reads to the primary:
/// once the replica has replayed the write (within max_wait_for_replica),
/// the read goes there, and sees the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_writes_use_the_replica_once_it_has_them() {
    let c = cluster_with_table();
    let mut config = config(&c, Consistency::Session);
    // Generous: the harness's replica gets commits within ~10 ms.
    config.max_wait_for_replica = 2.0;
    let p = Proxy::start(config);
    let client = connect(p.port()).await;
    let mut on_replica = 0;
    for id in 1..=20 {
        client
            .batch_execute(&format!("insert into t values ({id})"))
            .await
            .expect("insert");
        let row = client
            .query_one(
                "select count(*), inet_server_port() from t where id = $1",
                &[&id],
            )
            .await
            .expect("read");
        assert_eq!(row.get::<_, i64>(0), 1, "row {id} not visible after insert");
        if row.get::<_, i32>(1) as u16 == c.replica_port() {
            on_replica += 1;
        }
    }
    assert!(
        on_replica > 0,
        "no read after a write went to the replica, though it replays within milliseconds"
    );
}
