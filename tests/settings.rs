//! Startup settings (parameters of the StartupMessage, `-c` in `options`)
//! are in force on whichever server connection, primary or replica, runs a
//! client's statement, and never on another client's; RESET goes back to
//! them, as it does on a direct connection; a bad value is refused at login
//! as PostgreSQL refuses it.

mod support;

use support::cluster::Cluster;
use support::proxy::{code_of, one, proxy_config, try_connect, Proxy};
use tokio_postgres::Client;

/// One connection per role, so every client shares them.
fn one_connection_each(c: &Cluster) -> pgsplit::config::Config {
    let mut config = proxy_config(c);
    for pool in [&mut config.pool.primary, &mut config.pool.replica] {
        pool.pool_size = 1;
        pool.max_overflow = 0;
    }
    config
}

async fn client(port: u16, extra: &str) -> Client {
    try_connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres {extra}"
    ))
    .await
    .unwrap_or_else(|e| panic!("connect with {extra:?}: {e}"))
}

/// `show NAME` on the replica and, by hint, on the primary.
async fn both(client: &Client, name: &str) -> [String; 2] {
    let replica = one(client, &format!("show {name}"))
        .await
        .unwrap_or_default();
    let primary = one(client, &format!("/* pgsplit:primary */ show {name}"))
        .await
        .unwrap_or_default();
    [replica, primary]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_follow_the_client_to_every_connection() {
    let c = Cluster::start();
    let p = Proxy::start(one_connection_each(&c));
    let a = client(
        p.port(),
        "application_name=alpha options='-c statement_timeout=1234 -c search_path=a\\,b'",
    )
    .await;
    let b = client(p.port(), "").await;
    for _ in 0..3 {
        assert_eq!(both(&a, "statement_timeout").await, ["1234ms", "1234ms"]);
        // As a direct connection shows it: a list, kept as written.
        assert_eq!(both(&a, "search_path").await, ["a,b", "a,b"]);
        assert_eq!(both(&a, "application_name").await, ["alpha", "alpha"]);
        assert_eq!(both(&b, "statement_timeout").await, ["0", "0"]);
        assert_eq!(
            both(&b, "search_path").await,
            [r#""$user", public"#, r#""$user", public"#]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_returns_to_the_startup_value() {
    let c = Cluster::start();
    let p = Proxy::start(one_connection_each(&c));
    let a = client(p.port(), "options='-c statement_timeout=1234'").await;
    a.batch_execute("/* pgsplit:primary */ reset statement_timeout")
        .await
        .expect("reset");
    assert_eq!(both(&a, "statement_timeout").await, ["1234ms", "1234ms"]);
    a.batch_execute("discard all").await.expect("discard");
    assert_eq!(both(&a, "statement_timeout").await, ["1234ms", "1234ms"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_startup_setting_is_refused_at_login() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let err = try_connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres options='-c TimeZone=Mars/Base'",
        p.port()
    ))
    .await
    .expect_err("a bad TimeZone was accepted");
    assert_eq!(code_of(&err).as_deref(), Some("22023"), "{err}");
}

/// A plain SET is tracked, not pinned: the client keeps reading from the
/// replica, with its setting in force there too; a failed SET changes
/// nothing, RESET undoes it, and no other client sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_follows_the_client_and_reads_stay_on_the_replica() {
    let c = Cluster::start();
    let p = Proxy::start(one_connection_each(&c));
    let a = client(p.port(), "").await;
    let b = client(p.port(), "").await;
    a.batch_execute("set statement_timeout = '4321ms'")
        .await
        .expect("set");
    assert_eq!(
        support::proxy::port_of(&a, "select inet_server_port()").await,
        c.replica_port(),
        "a client that ran SET left the replica"
    );
    assert_eq!(both(&a, "statement_timeout").await, ["4321ms", "4321ms"]);
    assert_eq!(both(&b, "statement_timeout").await, ["0", "0"]);
    let err = a
        .batch_execute("set statement_timeout = 'bogus'")
        .await
        .expect_err("a bad value was accepted");
    assert_eq!(code_of(&err).as_deref(), Some("22023"), "{err}");
    assert_eq!(both(&a, "statement_timeout").await, ["4321ms", "4321ms"]);
    a.batch_execute("set time zone 'Asia/Tokyo'")
        .await
        .expect("set time zone");
    assert_eq!(both(&a, "timezone").await, ["Asia/Tokyo", "Asia/Tokyo"]);
    a.batch_execute("reset statement_timeout")
        .await
        .expect("reset");
    assert_eq!(both(&a, "statement_timeout").await, ["0", "0"]);
    assert_eq!(both(&a, "timezone").await, ["Asia/Tokyo", "Asia/Tokyo"]);
    assert_eq!(both(&b, "timezone").await[0], both(&b, "timezone").await[1]);
    assert_ne!(both(&b, "timezone").await[0], "Asia/Tokyo");
}

/// A hot standby refuses serializable transactions: a client whose
/// default isolation is serializable reads from the primary (psycopg2's
/// `set_session(isolation_level=...)` does this), until it resets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_by_default_reads_from_the_primary() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    let a = client(p.port(), "").await;
    a.batch_execute("set default_transaction_isolation = 'serializable'")
        .await
        .expect("set");
    assert_eq!(
        support::proxy::port_of(&a, "select inet_server_port()").await,
        c.primary_port()
    );
    a.batch_execute("reset default_transaction_isolation")
        .await
        .expect("reset");
    assert_eq!(
        support::proxy::port_of(&a, "select inet_server_port()").await,
        c.replica_port()
    );
}

/// A client encoding given by an alias (`eucjp`): every login is told the
/// encoding the server session really runs in, also when the connection
/// it was checked against served a client with the same settings before
/// (the server then reports nothing while applying them).
#[test]
fn client_encoding_is_reported_as_the_server_has_it() {
    use support::proxy::psql_args;
    let c = Cluster::start();
    let p = Proxy::start(one_connection_each(&c));
    for round in 0..4 {
        let out = psql_args(
            p.port(),
            &[
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "\\encoding",
                "-c",
                "show client_encoding",
            ],
            &[("PGCLIENTENCODING", "eucjp")],
        )
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            ["EUC_JP", "EUC_JP"],
            "round {round}: told vs in force"
        );
    }
}
