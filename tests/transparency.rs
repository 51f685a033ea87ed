//! What drivers do beyond plain statements, through pgsplit in transaction
//! pooling: portals fetched a few rows at a time (Execute with a row limit,
//! PortalSuspended), COPY FROM STDIN that the client abandons (CopyFail) or
//! the server rejects midway, a backend terminated under a client (inside a
//! transaction: a clear error; idle in the pool: replaced unseen).

mod support;

use bytes::Bytes;
use futures::SinkExt;
use support::cluster::Cluster;
use support::proxy::{code_of, connect, one, proxy_config, Proxy};
use tokio_postgres::SimpleQueryMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_rows_come_in_batches() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let mut client = connect(p.port()).await;
    let tx = client.transaction().await.expect("begin");
    let statement = tx
        .prepare("select g from generate_series(1, 7) g order by g")
        .await
        .expect("prepare");
    let portal = tx.bind(&statement, &[]).await.expect("bind");
    let mut seen = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 3).await.expect("execute 3 rows");
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 3, "a batch of {} rows", rows.len());
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_in_a_transaction_is_a_clear_error() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;
    client.batch_execute("begin").await.expect("begin");
    // txid_current() opens the transaction on the primary.
    let pid = one(
        &client,
        "select pg_backend_pid() from (select txid_current()) x",
    )
    .await
    .expect("pid");
    c.psql(
        c.primary_port(),
        &format!("select pg_terminate_backend({pid})"),
    );
    let err = client
        .simple_query("select 1")
        .await
        .expect_err("the transaction's backend is gone");
    let text = format!("{err} {:?}", err.as_db_error());
    assert!(
        text.contains("terminat") || text.contains("lost the connection") || err.is_closed(),
        "unclear error: {text}"
    );
    // Everyone else goes on, on a replacement connection.
    let other = connect(p.port()).await;
    assert_eq!(
        one(&other, "/* pgsplit:primary */ select 1")
            .await
            .as_deref(),
        Some("1")
    );
}

/// A backend terminated while it runs a client's statement sends FATAL
/// 57P01 and closes; direct, that ends the client's session. Through
/// pgsplit the client gets the same FATAL and the same close, not a second
/// error for the statement and a session that goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_statement_ends_the_session_as_direct() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;
    let sleeping = tokio::spawn(async move {
        let result = client
            .simple_query("/* pgsplit:primary */ select pg_sleep(30)")
            .await;
        (client, result)
    });
    let find = "select pid from pg_stat_activity \
                where query like '%pg_sleep(30)%' and pid <> pg_backend_pid()";
    let mut pid = String::new();
    for _ in 0..100 {
        pid = c.psql(c.primary_port(), find);
        if !pid.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!pid.is_empty(), "the statement never started");
    c.psql(
        c.primary_port(),
        &format!("select pg_terminate_backend({pid})"),
    );
    let (client, result) = sleeping.await.expect("query task");
    let err = result.expect_err("the statement's backend was terminated");
    assert_eq!(code_of(&err).as_deref(), Some("57P01"), "{err}");
    assert_eq!(
        err.as_db_error().map(|e| e.severity()),
        Some("FATAL"),
        "{err}"
    );
    let mut closed = false;
    for _ in 0..40 {
        if client.is_closed() {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(closed, "the session went on after the server's FATAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_idle_pooled_backend_is_replaced_unseen() {
    let c = Cluster::start();
    let mut config = proxy_config(&c);
    config.pool.primary.pool_size = 1;
    config.pool.primary.max_overflow = 0;
    let p = Proxy::start(config);
    let client = connect(p.port()).await;
    let pid = one(&client, "/* pgsplit:primary */ select pg_backend_pid()")
        .await
        .expect("pid");
    c.psql(
        c.primary_port(),
        &format!("select pg_terminate_backend({pid}, 5000)"),
    );
    // The only pooled primary connection is dead: the next statement gets
    // a new one, and the client sees nothing.
    let rows = client
        .simple_query("/* pgsplit:primary */ select pg_backend_pid()")
        .await
        .expect("a statement after the pooled backend was terminated");
    let new_pid = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_ne!(new_pid.as_deref(), Some(pid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_copy_in_leaves_nothing_and_the_session_usable() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table cp(id int)");
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;

    // The client gives up: dropping the sink unfinished sends CopyFail.
    {
        let sink = client.copy_in("copy cp from stdin").await.expect("copy in");
        futures::pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\n2\n"))
            .await
            .expect("data");
    }
    assert_eq!(one(&client, "select 1").await.as_deref(), Some("1"));

    // The server rejects a row midway: the error, then business as usual.
    let sink = client.copy_in("copy cp from stdin").await.expect("copy in");
    futures::pin_mut!(sink);
    let sent = async {
        sink.send(Bytes::from_static(b"3\nnot a number\n4\n"))
            .await?;
        sink.finish().await
    }
    .await;
    let err = sent.expect_err("a bad row was accepted");
    assert_eq!(code_of(&err).as_deref(), Some("22P02"), "{err}");
    assert_eq!(
        one(&client, "/* pgsplit:primary */ select count(*) from cp")
            .await
            .as_deref(),
        Some("0"),
        "a failed COPY left rows behind"
    );
}
