//! A fleet of pgsplit instances in front of one primary and replica: a
//! CancelRequest that a load balancer sends to the wrong instance still
//! cancels the right statement (the instance forwards it to the peer whose
//! client it is, by `[[peers]]` id or to everyone `peers_dns` names), and
//! a key nobody knows cancels nothing.

mod support;

use std::time::{Duration, Instant};

use pgsplit::config::Peer;
use support::cluster::Cluster;
use support::proxy::{code_of, connect, proxy_config, Proxy};
use tokio::io::AsyncReadExt;
use tokio_postgres::{CancelToken, NoTls};

/// Sends `token`'s CancelRequest to the instance on `port` and waits, as
/// libpq does, until that instance closes the connection.
async fn cancel_through(token: &CancelToken, port: u16) {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect for the cancel request");
    token
        .cancel_query_raw(&mut socket, NoTls)
        .await
        .expect("send the cancel request");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest))
        .await
        .expect("the instance never closed the cancel connection")
        .expect("read the cancel connection to its end");
}

/// A statement sleeping 10 s on the instance at `home`, cancelled through
/// the instance at `via`: how long it ran and how it ended.
async fn sleep_cancelled_via(home: u16, via: u16) -> (Duration, Option<String>) {
    let client = connect(home).await;
    let token = client.cancel_token();
    let started = Instant::now();
    let sleeping = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(10)").await;
        (result.err().and_then(|e| code_of(&e)), client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel_through(&token, via).await;
    let (code, client) = sleeping.await.expect("the sleeping statement's task");
    // The session goes on after the cancel.
    client
        .simple_query("SELECT 1")
        .await
        .expect("a statement after the cancel");
    (started.elapsed(), code)
}

/// `pgsplit_cancel_requests_total{outcome}` of the instance on `port`.
async fn stat(port: u16, outcome: &str) -> String {
    let console = support::admin::console(port).await;
    let rows = support::admin::rows(&console, "SHOW METRICS").await;
    let label = format!("outcome={outcome}");
    let value = |row: &Vec<(String, String)>, column: &str| {
        row.iter()
            .find(|(c, _)| c == column)
            .map(|(_, v)| v.clone())
    };
    rows.iter()
        .find(|row| {
            value(row, "metric").as_deref() == Some("pgsplit_cancel_requests_total")
                && value(row, "labels").as_deref() == Some(label.as_str())
        })
        .and_then(|row| value(row, "value"))
        .unwrap_or_else(|| format!("no {label} row"))
}

/// Instance 1 (A), and instance 2 (B) that knows A as its peer.
fn two_instances(cluster: &Cluster) -> (Proxy, Proxy) {
    let a = Proxy::start(pgsplit::config::Config {
        instance_id: 1,
        ..proxy_config(cluster)
    });
    let b = Proxy::start(pgsplit::config::Config {
        instance_id: 2,
        peers: vec![Peer {
            id: 1,
            address: format!("127.0.0.1:{}", a.port()),
        }],
        ..proxy_config(cluster)
    });
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_another_instance_reaches_its_statement() {
    let cluster = Cluster::start();
    let (a, b) = two_instances(&cluster);
    // A third instance that knows its peers only by a DNS name.
    let c = Proxy::start(pgsplit::config::Config {
        peers_dns: Some(format!("localhost:{}", a.port())),
        ..proxy_config(&cluster)
    });

    for via in [b.port(), c.port()] {
        let (took, code) = sleep_cancelled_via(a.port(), via).await;
        assert_eq!(
            code.as_deref(),
            Some("57014"),
            "cancelled through port {via}"
        );
        assert!(took < Duration::from_secs(5), "the cancel took {took:?}");
    }
    assert_eq!(stat(b.port(), "forwarded").await, "1");
    assert_eq!(stat(c.port(), "forwarded").await, "1");
    assert_eq!(stat(a.port(), "from_peer").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_cancels_nothing_and_is_counted() {
    let cluster = Cluster::start();
    let (a, b) = two_instances(&cluster);
    let client = connect(a.port()).await;
    let sleeping = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(1)").await });
    // A forged key that claims to be instance 1's: B forwards it, A knows
    // no such client, nothing is cancelled.
    let forged = [
        0u8, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0x80, 0, 1, 0, 0, 0, 7,
    ];
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", b.port()))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut socket, &forged)
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest).await;
    assert!(
        sleeping.await.unwrap().is_ok(),
        "a forged key cancelled a statement"
    );
    assert_eq!(stat(b.port(), "forwarded").await, "1");
    assert_eq!(stat(a.port(), "peer_miss").await, "1");
    // Sent straight to A, which has no peers to ask: unknown.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", a.port()))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut socket, &forged)
        .await
        .unwrap();
    let _ = socket.read_to_end(&mut rest).await;
    assert_eq!(stat(a.port(), "unknown").await, "1");
    assert_eq!(stat(a.port(), "local").await, "0");
}

/// A consistency token: a write through one instance, its WAL position
/// read back, and a read through another instance that carries the token
/// (a hint, SET pgsplit.min_lsn, or a startup option) sees the write while
/// the replica has not replayed it; without the token it reads stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_carries_read_your_writes_to_another_instance() {
    let cluster = Cluster::start();
    cluster.psql(cluster.primary_port(), "create table t(id int)");
    cluster.wait_replica_caught_up();
    let a = Proxy::start(proxy_config(&cluster));
    let b = Proxy::start(proxy_config(&cluster));
    cluster.pause_replay();

    let writer = connect(a.port()).await;
    writer
        .batch_execute("insert into t values (1)")
        .await
        .unwrap();
    let token = support::proxy::one(&writer, "select pg_current_wal_insert_lsn()::text")
        .await
        .expect("a WAL position");

    let reader = connect(b.port()).await;
    let count = |sql: String| {
        let reader = &reader;
        async move { support::proxy::one(reader, &sql).await.unwrap_or_default() }
    };
    assert_eq!(
        count("select count(*) from t".into()).await,
        "0",
        "without a token B reads the stale replica"
    );
    assert_eq!(
        count(format!(
            "/* pgsplit:min_lsn={token} */ select count(*) from t"
        ))
        .await,
        "1",
        "the hint did not make B's read see A's write"
    );
    // The hint holds for its statement only.
    assert_eq!(count("select count(*) from t".into()).await, "0");
    reader
        .batch_execute(&format!("SET pgsplit.min_lsn = '{token}'"))
        .await
        .expect("SET pgsplit.min_lsn");
    assert_eq!(
        count("select count(*) from t".into()).await,
        "1",
        "SET pgsplit.min_lsn"
    );
    let rows = reader
        .query("select count(*)::text from t", &[])
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<_, String>(0),
        "1",
        "extended protocol with the token"
    );

    let with_option = support::proxy::try_connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres options='-c pgsplit.min_lsn={token}'",
        b.port()
    ))
    .await
    .expect("a connection with the token as a startup option");
    assert_eq!(
        support::proxy::one(&with_option, "select count(*) from t")
            .await
            .as_deref(),
        Some("1"),
        "the startup option"
    );
    cluster.resume_replay();
}

/// `pgsplit.commit_lsn`: a client that asks for it
/// (`-c pgsplit.report_commit_lsn=on`) is told, when its write commits, a
/// WAL position covering it; given to another instance, that position
/// makes the read see the write while the replica has not replayed it.
/// Clients that did not ask get nothing new (psycopg 3 reads the token
/// with `conn.info.parameter_status`).
#[test]
fn a_commit_tells_the_client_its_token() {
    if !support::drivers::python_has("psycopg") {
        return;
    }
    let cluster = Cluster::start();
    cluster.psql(cluster.primary_port(), "create table t(id int)");
    cluster.wait_replica_caught_up();
    let a = Proxy::start(proxy_config(&cluster));
    let b = Proxy::start(proxy_config(&cluster));
    cluster.pause_replay();
    run_script("commit_lsn_psycopg.py", &[dsn(a.port()), dsn(b.port())]);
}

/// A free port on 127.0.0.1 (bound and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two processes sharing one port (`reuse_port`), each with a
/// `peer_listen` of its own that the other knows it by: whichever process
/// the kernel hands a CancelRequest to, it reaches its statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_port_cancel_each_others_statements() {
    let cluster = Cluster::start();
    let (peer_a, peer_b) = (free_port(), free_port());
    let config = |id: u8, own: u16, other: u16, other_id: u8| pgsplit::config::Config {
        instance_id: id,
        reuse_port: true,
        peer_listen: Some(format!("127.0.0.1:{own}")),
        peers: vec![Peer {
            id: other_id,
            address: format!("127.0.0.1:{other}"),
        }],
        ..proxy_config(&cluster)
    };
    let a = Proxy::start(config(1, peer_a, peer_b, 2));
    let shared = a.port();
    let b = Proxy::start_on(config(2, peer_b, peer_a, 1), &format!("127.0.0.1:{shared}"));
    assert_eq!(b.port(), shared);
    // Sessions and cancels land on either process; every cancel must
    // reach its statement.
    for _ in 0..6 {
        let (took, code) = sleep_cancelled_via(shared, shared).await;
        assert_eq!(
            code.as_deref(),
            Some("57014"),
            "a cancel through the shared port"
        );
        assert!(took < Duration::from_secs(5), "the cancel took {took:?}");
    }
    let forwarded = |port| async move { stat(port, "forwarded").await.parse::<u32>().unwrap_or(0) };
    eprintln!(
        "forwarded: A {}, B {}",
        forwarded(peer_a).await,
        forwarded(peer_b).await
    );
}

/// The fleet's read-your-writes under load: four workers write through
/// instance A and read each write back through instance B with the token
/// A's commit gave them (`pgsplit.commit_lsn`), 100 times each, replication
/// running as usual: every read sees its write.
#[test]
fn writes_through_one_instance_are_read_through_another() {
    if !support::drivers::python_has("psycopg") {
        return;
    }
    let cluster = Cluster::start();
    cluster.psql(
        cluster.primary_port(),
        "create table fleet_rw(worker int, n int)",
    );
    cluster.wait_replica_caught_up();
    let a = Proxy::start(proxy_config(&cluster));
    let b = Proxy::start(proxy_config(&cluster));
    run_script(
        "fleet_rw_psycopg.py",
        &[
            dsn(a.port()),
            dsn(b.port()),
            cluster.replica_port().to_string(),
        ],
    );
}

/// A libpq connection string for pgsplit on `port`.
fn dsn(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname=postgres")
}

/// Runs the Python script `name` from tests/drivers/ with `args`; panics
/// unless it succeeds.
fn run_script(name: &str, args: &[String]) {
    let mut command = std::process::Command::new("python3");
    command.arg(support::drivers::script(name)).args(args);
    support::drivers::run(command);
}
