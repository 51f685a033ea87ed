//! To introspection pgsplit is a read-write primary: libpq's
//! `target_session_attrs=read-write` accepts it, and views of cluster-wide
//! state a standby lacks or lags on (here `pg_prepared_xacts`, with the
//! replica's replay paused) are read on the primary.

mod support;

use support::cluster::Cluster;
use support::proxy::{connect, one, proxy_config, psql_args, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_read_write_target_accepts_pgsplit() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let port = p.port();
    let out = tokio::task::spawn_blocking(move || {
        psql_args(
            port,
            &[
                "-d",
                "dbname=postgres user=postgres target_session_attrs=read-write",
                "-c",
                "select 1",
            ],
            &[],
        )
    })
    .await
    .expect("join");
    assert_eq!(out.as_deref(), Ok("1"));
    let client = connect(port).await;
    assert_eq!(
        one(&client, "show transaction_read_only").await.as_deref(),
        Some("off")
    );
    assert_eq!(
        one(&client, "show in_hot_standby").await.as_deref(),
        Some("off")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_transactions_are_read_on_the_primary() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table t(x int)");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    c.pause_replay();
    let client = connect(p.port()).await;
    client
        .batch_execute("begin; insert into t values (1); prepare transaction 'tx1'")
        .await
        .expect("prepare transaction");
    // Another client, which has not written: read-your-writes does not
    // keep it off the stale replica.
    let other = connect(p.port()).await;
    assert_eq!(
        one(&other, "select gid from pg_prepared_xacts")
            .await
            .as_deref(),
        Some("tx1"),
        "a recovery tool would miss the prepared transaction"
    );
    client
        .batch_execute("commit prepared 'tx1'")
        .await
        .expect("commit prepared");
    c.resume_replay();
}
