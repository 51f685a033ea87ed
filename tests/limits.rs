//! Limits and timeouts, as an attacker and a careful operator would probe
//! them: clients that never finish logging in (silent, half a startup
//! packet, stalled at the password challenge) are closed at
//! `client_login_timeout`; `max_client_conn` refuses with PgBouncer's
//! words; messages before authentication are capped; each decision shows
//! in `pgsplit_refusals_total` / `pgsplit_timeouts_total`.

mod support;

use std::time::{Duration, Instant};

use pgsplit::config::{AuthMethod, Config, User};
use support::cluster::{free_port, Cluster, PASSWORD};
use support::http;
use support::proxy::{code_of, connect, message_of, proxy_config, try_connect, Proxy};
use support::wire::{frame, Message, Reader};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A proxy whose servers are never reached: enough for what happens
/// before a client's login needs one.
fn serverless(config: Config) -> Config {
    Config {
        primary: Some("127.0.0.1:1".into()),
        ..config
    }
}

/// Starts `config` with the metrics endpoint on; returns it and its port.
fn with_metrics(mut config: Config) -> (Proxy, u16) {
    let port = free_port();
    config.metrics_listen = Some(format!("127.0.0.1:{port}"));
    (Proxy::start(config), port)
}

fn metric(port: u16, series: &str) -> f64 {
    http::value(&http::get(port, "/metrics").1, series)
}

/// `series` once it reaches `want`, or its value after 3 s: a count taken
/// as a connection closes may land a moment after the peer sees the close.
async fn metric_reaches(port: u16, series: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let value = metric(port, series);
        if value >= want || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads what the proxy sends until it closes the connection, for at most
/// `within`: the messages, or `None` if it was still open then.
async fn until_closed(stream: TcpStream, within: Duration) -> Option<Vec<Message>> {
    let mut reader = Reader::new(stream);
    let mut seen = Vec::new();
    let read = async {
        loop {
            match reader.next().await {
                Ok(Some(m)) => seen.push(m),
                Ok(None) | Err(_) => return,
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|_| seen)
}

fn error_of(messages: &[Message]) -> Option<(String, String)> {
    let e = messages.iter().find(|m| m.tag == b'E')?;
    let fields = e.fields();
    Some((fields.get(&'C')?.clone(), fields.get(&'M')?.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_startups_are_closed_at_client_login_timeout() {
    let (p, metrics) = with_metrics(serverless(Config {
        client_login_timeout: 1.0,
        ..Config::default()
    }));
    let silent = TcpStream::connect(p.addr()).await.unwrap();
    let mut half = TcpStream::connect(p.addr()).await.unwrap();
    let startup = frame::startup(&[("user", "postgres"), ("database", "postgres")]);
    half.write_all(&startup[..startup.len() / 2]).await.unwrap();
    // An SSLRequest answered, then nothing.
    let mut after_ssl = TcpStream::connect(p.addr()).await.unwrap();
    after_ssl
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    let mut answer = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut after_ssl, &mut answer)
        .await
        .unwrap();
    assert_eq!(&answer, b"N");
    let started = Instant::now();
    let closed = futures::future::join_all(
        [silent, half, after_ssl].map(|s| until_closed(s, Duration::from_secs(10))),
    )
    .await;
    let took = started.elapsed();
    for (what, seen) in ["silent", "half a startup packet", "after SSLRequest"]
        .iter()
        .zip(&closed)
    {
        // Closed without a word, as PostgreSQL does: a client that has not
        // sent its startup packet is not reading.
        let seen = seen
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: still open after 10 s"));
        assert!(seen.is_empty(), "{what}: {seen:?}");
    }
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, client_login_timeout is 1 s"
    );
    let series = "pgsplit_timeouts_total{timeout=\"client_login_timeout\"}";
    assert_eq!(metric_reaches(metrics, series, 3.0).await, 3.0);
}

/// The timeout covers authentication: a client that never answers the
/// md5 (or SCRAM) challenge is closed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalled_at_the_password_challenge_is_closed() {
    for auth in [AuthMethod::Md5, AuthMethod::ScramSha256] {
        let p = Proxy::start(serverless(Config {
            auth,
            users: vec![User {
                name: "app".into(),
                password: PASSWORD.into(),
            }],
            client_login_timeout: 1.0,
            ..Config::default()
        }));
        let mut stream = TcpStream::connect(p.addr()).await.unwrap();
        let startup = frame::startup(&[("user", "app"), ("database", "postgres")]);
        stream.write_all(&startup).await.unwrap();
        let seen = until_closed(stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{auth:?}: still open after 10 s"));
        assert_eq!(
            seen.first().map(|m| m.tag),
            Some(b'R'),
            "{auth:?}: {seen:?}"
        );
        assert_eq!(
            error_of(&seen),
            Some(("08P01".into(), "client_login_timeout".into())),
            "{auth:?}: {seen:?}"
        );
    }
}

/// A client that logs in in time is not cut off when its login time is
/// up: the limit is on logging in, not on the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_client_outlives_client_login_timeout() {
    let c = Cluster::start();
    let p = Proxy::start(Config {
        client_login_timeout: 1.0,
        ..proxy_config(&c)
    });
    let client = connect(p.port()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.simple_query("select 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_refuses_with_pgbouncers_words() {
    let c = Cluster::start();
    let (p, metrics) = with_metrics(Config {
        max_client_conn: 2,
        ..proxy_config(&c)
    });
    let first = connect(p.port()).await;
    let second = connect(p.port()).await;
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10",
        p.port()
    );
    let refused = match try_connect(&conninfo).await {
        Ok(_) => panic!("a third client got in with max_client_conn = 2"),
        Err(e) => e,
    };
    assert_eq!(code_of(&refused).as_deref(), Some("53300"), "{refused}");
    assert_eq!(
        message_of(&refused),
        "no more connections allowed (max_client_conn)"
    );
    let series = "pgsplit_refusals_total{reason=\"max_client_conn\"}";
    assert_eq!(metric_reaches(metrics, series, 1.0).await, 1.0);
    // The admin console still lets an operator look.
    let console = support::admin::console(p.port()).await;
    assert!(console.simple_query("SHOW CLIENTS").await.is_ok());
    drop(console);
    // A client that leaves makes room.
    drop(second);
    let mut third = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while third.is_none() && Instant::now() < deadline {
        third = try_connect(&conninfo).await.ok();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let third = third.expect("no room made by a client that left");
    third.simple_query("select 1").await.unwrap();
    first.simple_query("select 1").await.unwrap();
}

/// Before authentication messages are small: a startup packet over
/// PostgreSQL's 10,000 bytes and a password message over its 65,535 are
/// refused with 08P01 as soon as their length is read, before their bytes
/// are waited for or buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_before_authentication_are_refused_at_once() {
    let (p, metrics) = with_metrics(serverless(Config {
        auth: AuthMethod::Md5,
        users: vec![User {
            name: "app".into(),
            password: PASSWORD.into(),
        }],
        ..Config::default()
    }));
    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    // A startup packet that claims 20,000 bytes; only its first 8 sent.
    stream
        .write_all(&[0, 0, 0x4e, 0x20, 0, 3, 0, 0])
        .await
        .unwrap();
    let seen = until_closed(stream, Duration::from_secs(5))
        .await
        .expect("still open after an oversized startup packet");
    let (code, message) = error_of(&seen).expect("no error");
    assert_eq!(code, "08P01");
    assert!(
        message.starts_with("invalid length of startup packet"),
        "{message}"
    );

    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    let startup = frame::startup(&[("user", "app"), ("database", "postgres")]);
    stream.write_all(&startup).await.unwrap();
    // A password message that claims 1 MiB; only its header sent.
    stream.write_all(&[b'p', 0, 0x10, 0, 0]).await.unwrap();
    let seen = until_closed(stream, Duration::from_secs(5))
        .await
        .expect("still open after an oversized password message");
    let (code, message) = error_of(&seen).expect("no error");
    assert_eq!(code, "08P01", "{seen:?}");
    assert!(message.contains("65539"), "{message}");

    // One of 65,535 bytes is read (and is only a wrong password).
    let mut stream = TcpStream::connect(p.addr()).await.unwrap();
    stream.write_all(&startup).await.unwrap();
    let mut password = vec![b'x'; 65_534];
    password.push(0);
    stream
        .write_all(&frame::message(b'p', &password))
        .await
        .unwrap();
    let seen = until_closed(stream, Duration::from_secs(5))
        .await
        .expect("still open after a wrong password");
    assert_eq!(error_of(&seen).map(|e| e.0).as_deref(), Some("28P01"));

    let series = "pgsplit_refusals_total{reason=\"message_too_large\"}";
    assert_eq!(metric_reaches(metrics, series, 2.0).await, 2.0);
}

/// The keepalive timer of the proxy's end of a client connection, from
/// /proc/net/tcp: the timer kind (2: keepalive) and seconds until it fires.
fn proxy_side_timer(proxy_port: u16, client_port: u16) -> (u32, f64) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{proxy_port:04X}");
    let remote = format!("0100007F:{client_port:04X}");
    let line = table
        .lines()
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str())
        })
        .unwrap_or_else(|| panic!("no socket {local} -> {remote} in /proc/net/tcp"));
    let timer = line.split_whitespace().nth(5).unwrap();
    let (kind, when) = timer.split_once(':').unwrap();
    let ticks = u64::from_str_radix(when, 16).unwrap();
    // In clock ticks (USER_HZ, 100 a second on Linux).
    (u32::from_str_radix(kind, 16).unwrap(), ticks as f64 / 100.0)
}

/// Keepalive is set on the sockets pgsplit accepts (the listener's own
/// code path; the unit test in listener/socket_options.rs reads every
/// option back): with `tcp_keepidle = 77` the kernel's keepalive timer of
/// an idle client connection fires in 77 s; with `tcp_keepalive = false`
/// there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_is_set_on_accepted_client_sockets() {
    for (keepalive, expected) in [(true, Some(77.0)), (false, None)] {
        let p = Proxy::start(serverless(Config {
            tcp_keepalive: keepalive,
            tcp_keepidle: 77,
            ..Config::default()
        }));
        let client = TcpStream::connect(p.addr()).await.unwrap();
        let client_port = client.local_addr().unwrap().port();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (kind, seconds) = proxy_side_timer(p.port(), client_port);
        match expected {
            Some(idle) => {
                assert_eq!(kind, 2, "no keepalive timer");
                assert!(
                    seconds > idle - 10.0 && seconds <= idle,
                    "keepalive fires in {seconds} s, tcp_keepidle is {idle}"
                );
            }
            None => assert_eq!(kind, 0, "a timer ({kind}) with tcp_keepalive = false"),
        }
    }
}

/// `query_timeout`: a statement running longer is cancelled on its server
/// and the client gets ERROR 57014 `query_timeout` (PgBouncer's words);
/// the session goes on, and the cancel never hits the statements after it
/// (run at once, on the same server connection). One that ends in time is
/// left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_a_long_statement_and_the_next_runs() {
    let c = Cluster::start();
    let (p, metrics) = with_metrics(Config {
        query_timeout: 1.0,
        ..proxy_config(&c)
    });
    let client = connect(p.port()).await;
    fn expect_timeout<T>(result: Result<T, tokio_postgres::Error>, what: &str) {
        let e = result
            .err()
            .unwrap_or_else(|| panic!("{what}: not cancelled"));
        assert_eq!(code_of(&e).as_deref(), Some("57014"), "{what}: {e}");
        assert_eq!(message_of(&e), "query_timeout", "{what}");
    }
    for sql in [
        // A read (on the replica) and a write (on the primary).
        "select pg_sleep(30)",
        "select pg_sleep(30) from pg_advisory_xact_lock(1)",
    ] {
        let started = Instant::now();
        expect_timeout(client.simple_query(sql).await, sql);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "{sql}: {took:?}"
        );
        for i in 0..50 {
            assert_eq!(
                support::proxy::one(&client, &format!("select {i}"))
                    .await
                    .as_deref(),
                Some(i.to_string().as_str())
            );
        }
    }
    // The extended protocol, and inside a transaction (which then fails,
    // as it would with statement_timeout).
    expect_timeout(
        client.query("select pg_sleep($1)", &[&30f64]).await,
        "extended",
    );
    client
        .batch_execute("begin; create temp table t(x int)")
        .await
        .unwrap();
    expect_timeout(
        client.simple_query("select pg_sleep(30)").await,
        "in a transaction",
    );
    let failed = client
        .simple_query("select 1")
        .await
        .err()
        .expect("transaction not failed");
    assert_eq!(code_of(&failed).as_deref(), Some("25P02"));
    client.batch_execute("rollback").await.unwrap();
    // In time: not cancelled.
    client.simple_query("select pg_sleep(0.5)").await.unwrap();
    let series = "pgsplit_timeouts_total{timeout=\"query_timeout\"}";
    assert_eq!(metric(metrics, series), 4.0);
}

/// `client_idle_timeout`: a client that sends nothing for that long,
/// outside a transaction, is closed with FATAL 57P05 `client_idle_timeout`
/// (PgBouncer's words); one that keeps talking, or sits in a transaction
/// on a server (`idle_transaction_timeout`'s business), is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_idle_timeout_closes_an_idle_client() {
    use support::wire::RawClient;
    let c = Cluster::start();
    let (p, metrics) = with_metrics(Config {
        client_idle_timeout: 1.0,
        ..proxy_config(&c)
    });
    let mut idle = RawClient::login(p.addr(), "postgres", "postgres").await;
    idle.send(&frame::query("select 1")).await;
    let answered = idle.read_until_ready(1, Duration::from_secs(5)).await;
    assert_eq!(answered.ready_count(), 1, "{}", answered.describe());
    let talking = connect(p.port()).await;
    let in_transaction = connect(p.port()).await;
    in_transaction
        .batch_execute("begin; create temp table t(x int)")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = idle.read_until_ready(1, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(closed.closed, "not closed: {}", closed.describe());
    let error = closed
        .errors()
        .first()
        .map(|m| (m.code(), m.fields().get(&'M').cloned()));
    assert_eq!(
        error,
        Some((Some("57P05".into()), Some("client_idle_timeout".into()))),
        "{}",
        closed.describe()
    );
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
    for _ in 0..6 {
        talking
            .simple_query("select 1")
            .await
            .expect("a talking client was closed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    in_transaction
        .batch_execute("insert into t values (1); commit")
        .await
        .expect("a client in a transaction was closed");
    let series = "pgsplit_timeouts_total{timeout=\"client_idle_timeout\"}";
    assert!(metric(metrics, series) >= 1.0);
}

fn conninfo(p: &Proxy, user: &str, database: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} dbname={database} connect_timeout=10",
        p.port()
    )
}

/// Small pools whose clients give up waiting after a second.
fn quick_pools(config: Config) -> Config {
    let mut config = config;
    for pool in [&mut config.pool.primary, &mut config.pool.replica] {
        pool.pool_size = 1;
        pool.max_overflow = 2;
        pool.pool_timeout = 1.0;
    }
    config
}

/// `max_db_connections`: server connections to a server for one database,
/// across its users' pools. A client that needs another waits as for a
/// pool and gets 53300 naming the limit at `pool_timeout`; once the
/// connection in use is given back, it is closed to make room (its pool
/// is another user's) and the next client gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_waits_then_refuses_with_53300() {
    let c = Cluster::start();
    c.psql(
        c.primary_port(),
        "create role other login; create table lim(x int); grant all on lim to other",
    );
    let (p, metrics) = with_metrics(quick_pools(Config {
        max_db_connections: 1,
        ..proxy_config(&c)
    }));
    let holder = try_connect(&conninfo(&p, "postgres", "postgres"))
        .await
        .unwrap();
    holder
        .batch_execute("begin; insert into lim values (1)")
        .await
        .unwrap();
    let started = Instant::now();
    let refused = try_connect(&conninfo(&p, "other", "postgres"))
        .await
        .err()
        .expect("a second connection to the database was opened");
    let waited = started.elapsed();
    assert_eq!(code_of(&refused).as_deref(), Some("53300"), "{refused}");
    let message = message_of(&refused);
    assert!(
        message.contains("max_db_connections (1) reached for database \"postgres\""),
        "{message}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "refused after {waited:?}, not at pool_timeout"
    );
    assert_eq!(
        metric(
            metrics,
            "pgsplit_refusals_total{reason=\"max_db_connections\"}"
        ),
        1.0
    );

    holder.batch_execute("commit").await.unwrap();
    let other = try_connect(&conninfo(&p, "other", "postgres"))
        .await
        .expect("no room made by the connection given back");
    assert_eq!(
        support::proxy::one(&other, "select current_user")
            .await
            .as_deref(),
        Some("other")
    );
    // The first user's next write waits its turn in the same way.
    other
        .batch_execute("begin; insert into lim values (2)")
        .await
        .unwrap();
    let e = holder
        .batch_execute("insert into lim values (3)")
        .await
        .err()
        .expect("past the limit");
    assert_eq!(code_of(&e).as_deref(), Some("53300"), "{e}");
    other.batch_execute("commit").await.unwrap();
    holder
        .batch_execute("insert into lim values (3)")
        .await
        .unwrap();
}

/// `max_user_connections`: server connections to a server for one user,
/// across the databases it uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_spans_databases() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database second");
    c.psql(c.primary_port(), "create table lim(x int)");
    let (p, metrics) = with_metrics(quick_pools(Config {
        max_user_connections: 1,
        ..proxy_config(&c)
    }));
    let holder = try_connect(&conninfo(&p, "postgres", "postgres"))
        .await
        .unwrap();
    holder
        .batch_execute("begin; insert into lim values (1)")
        .await
        .unwrap();
    let refused = try_connect(&conninfo(&p, "postgres", "second"))
        .await
        .err()
        .expect("a second connection for the user was opened");
    assert_eq!(code_of(&refused).as_deref(), Some("53300"), "{refused}");
    let message = message_of(&refused);
    assert!(
        message.contains("max_user_connections (1) reached for user \"postgres\""),
        "{message}"
    );
    assert_eq!(
        metric(
            metrics,
            "pgsplit_refusals_total{reason=\"max_user_connections\"}"
        ),
        1.0
    );
    holder.batch_execute("commit").await.unwrap();
    let second = try_connect(&conninfo(&p, "postgres", "second"))
        .await
        .unwrap();
    assert_eq!(
        support::proxy::one(&second, "select current_database()")
            .await
            .as_deref(),
        Some("second")
    );
}

/// An idle session gives its buffers back (after 5 to 10 s of silence;
/// see `client::session::idle_memory`) and copies its prepared
/// statements' text out of them: once the client speaks again, in the
/// middle of a message too, its statements run as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_gave_its_memory_back_serves_its_statements() {
    use support::wire::RawClient;
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;
    let statement = client.prepare("select $1::int + 1").await.unwrap();
    let row = client.query_one(&statement, &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    let mut raw = RawClient::login(p.addr(), "postgres", "postgres").await;
    raw.send(&frame::query("select 1")).await;
    assert_eq!(
        raw.read_until_ready(1, Duration::from_secs(5))
            .await
            .ready_count(),
        1
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    let row = client.query_one(&statement, &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // A message sent in two parts, the first after the buffer was given
    // back.
    let query = frame::query("select 'split'");
    raw.send(&query[..3]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.send(&query[3..]).await;
    let answer = raw.read_until_ready(1, Duration::from_secs(5)).await;
    assert_eq!(
        answer.summary(),
        ["T", "D", "C:SELECT 1", "Z:I"],
        "{}",
        answer.describe()
    );
}
