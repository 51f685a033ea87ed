//! The life of pools beyond serving statements: `DROP DATABASE`, `ALTER
//! DATABASE ... RENAME` and `CREATE DATABASE ... TEMPLATE` work through
//! pgsplit after clients used the database (its idle connections, parked
//! ones included, are closed first); a database created a moment ago is
//! served at once without a flood of refused logins on the replica; a
//! replica that refuses a login the primary accepts sends reads to the
//! primary; replica connections open only when reads need them; and pools
//! nobody uses are retired after `autodb_idle_timeout`.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{free_port, Cluster};
use support::http::get;
use support::proxy::{
    code_of, connect, eventually, message_of, one, port_of, proxy_config, psql_args, try_connect,
    Proxy,
};
use tokio_postgres::Client;

/// Connects as `postgres` to `database` through pgsplit (or a server) on
/// 127.0.0.1:`port`.
async fn connect_to(port: u16, database: &str) -> Client {
    try_connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname={database} connect_timeout=10"
    ))
    .await
    .unwrap_or_else(|e| panic!("connect to {database} on {port}: {e}"))
}

/// Backends connected to `database` on the server at `port`.
fn backends(c: &Cluster, port: u16, database: &str) -> usize {
    c.psql(
        port,
        &format!("select count(*) from pg_stat_activity where datname = '{database}'"),
    )
    .parse()
    .unwrap()
}

fn database_exists(c: &Cluster, database: &str) -> bool {
    c.psql(
        c.primary_port(),
        &format!("select count(*) from pg_database where datname = '{database}'"),
    ) == "1"
}

/// A client of `database` that wrote and read through pgsplit and stays
/// connected, idle: the primary's and the replica's pools have
/// connections to it, the client's last one parked with it.
async fn regular_of(c: &Cluster, port: u16, database: &str) -> Client {
    let client = connect_to(port, database).await;
    client
        .batch_execute("create table t(x int); insert into t values (1)")
        .await
        .unwrap();
    c.wait_replica_caught_up();
    // The replica serves the client's reads once pgsplit has seen it
    // replay the write (read-your-writes).
    reads_reach_the_replica(c, &client, "select inet_server_port() from t").await;
    assert_eq!(one(&client, "select count(*) from t").await.unwrap(), "1");
    assert!(
        backends(c, c.primary_port(), database) > 0 && backends(c, c.replica_port(), database) > 0,
        "pgsplit should hold connections to {database} on both servers"
    );
    client
}

/// Runs `sql` (which returns the server's port) until the replica
/// answers it, for at most 10 s.
async fn reads_reach_the_replica(c: &Cluster, client: &Client, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while port_of(client, sql).await != c.replica_port() {
        assert!(Instant::now() < deadline, "{sql}: never ran on the replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_database_works_after_clients_used_it() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database shop");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    let idle = regular_of(&c, p.port(), "shop").await;
    // A client that came and went: its connections wait in the pools.
    let gone = connect_to(p.port(), "shop").await;
    one(&gone, "select 1").await;
    drop(gone);

    let admin = connect(p.port()).await;
    let started = Instant::now();
    admin
        .batch_execute("DROP DATABASE shop")
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE: {}", message_of(&e)));
    assert!(!database_exists(&c, "shop"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "PostgreSQL waited for pgsplit's connections to go: {:?}",
        started.elapsed()
    );
    assert!(eventually(Duration::from_secs(5), || backends(
        &c,
        c.replica_port(),
        "shop"
    ) == 0));

    // The idle client's database is gone: it hears so on its next statement.
    c.wait_replica_caught_up();
    let error = idle.simple_query("select 1").await.unwrap_err();
    assert_eq!(code_of(&error).as_deref(), Some("3D000"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy_a_database_clients_used() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database old_name");
    c.psql(c.primary_port(), "create database pattern");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    let _renamed_under_it = regular_of(&c, p.port(), "old_name").await;
    let user_of_template = regular_of(&c, p.port(), "pattern").await;
    let admin = connect(p.port()).await;

    // Extended protocol: Parse, then Bind and Execute.
    admin
        .execute("ALTER DATABASE old_name RENAME TO new_name", &[])
        .await
        .unwrap_or_else(|e| panic!("ALTER DATABASE ... RENAME: {}", message_of(&e)));
    assert!(database_exists(&c, "new_name"));

    admin
        .batch_execute("CREATE DATABASE copy WITH TEMPLATE = pattern OWNER postgres")
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE ... TEMPLATE: {}", message_of(&e)));
    let copy = connect_to(c.primary_port(), "copy").await;
    assert_eq!(one(&copy, "select count(*) from t").await.unwrap(), "1");

    // The template's client goes on: its pools open connections again.
    assert_eq!(
        one(&user_of_template, "select count(*) from t")
            .await
            .unwrap(),
        "1"
    );
    user_of_template
        .batch_execute("insert into t values (2)")
        .await
        .unwrap();
}

/// A connection in use by another client stays: PostgreSQL's own 55006
/// answers, as it would directly. Once that client is done, the statement
/// runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_the_database_keeps_it_from_being_dropped() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database busy");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    let busy = regular_of(&c, p.port(), "busy").await;
    busy.batch_execute("begin; insert into t values (2)")
        .await
        .unwrap();

    let admin = connect(p.port()).await;
    let error = admin.batch_execute("DROP DATABASE busy").await.unwrap_err();
    assert_eq!(code_of(&error).as_deref(), Some("55006"), "{error}");
    assert!(
        message_of(&error).contains("is being accessed by other users"),
        "{error}"
    );
    assert!(database_exists(&c, "busy"));

    busy.batch_execute("commit").await.unwrap();
    admin
        .batch_execute("DROP DATABASE busy")
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE once the client is done: {}", message_of(&e)));
    assert!(!database_exists(&c, "busy"));
}

/// Right after `CREATE DATABASE`, before the replica has replayed it, a
/// client of the new database gets its reads answered (by the primary),
/// and the replica sees a few logins, not one or more per read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_created_a_moment_ago_is_served_without_flooding_the_replica() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    c.pause_replay();
    let admin = connect(p.port()).await;
    admin.batch_execute("CREATE DATABASE fresh").await.unwrap();

    let client = connect_to(p.port(), "fresh").await;
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let port = port_of(&client, "select inet_server_port()").await;
        assert_eq!(port, c.primary_port(), "read {reads}");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = std::fs::read_to_string(c.log_path("replica")).unwrap();
    let refused = log
        .lines()
        .filter(|l| l.contains("database \"fresh\" does not exist"))
        .count();
    assert!(
        (1..=6).contains(&refused),
        "{refused} logins refused on the replica for {reads} reads"
    );

    // Once the replica has it, reads go there (after the back-off).
    c.resume_replay();
    c.wait_replica_caught_up();
    reads_reach_the_replica(&c, &client, "select inet_server_port()").await;
}

/// A role the replica does not know yet (replay paused) is one it refuses:
/// the client's reads go to the primary, which accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_a_user_the_replica_refuses_go_to_the_primary() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    c.pause_replay();
    c.psql(c.primary_port(), "create role newcomer login");
    let client = try_connect(&format!(
        "host=127.0.0.1 port={} user=newcomer dbname=postgres",
        p.port()
    ))
    .await
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            port_of(&client, "select inet_server_port()").await,
            c.primary_port()
        );
    }
    c.resume_replay();
}

/// Replica connections open only when a read needs one; the primary's
/// pool opens `pool_size` once the first login succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_connections_open_only_when_reads_need_them() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database lazy");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    let client = connect_to(p.port(), "lazy").await;
    client.batch_execute("create table t(x int)").await.unwrap();
    // pool_size is 2 in the test config.
    assert!(eventually(Duration::from_secs(5), || backends(
        &c,
        c.primary_port(),
        "lazy"
    ) == 2));
    assert_eq!(backends(&c, c.replica_port(), "lazy"), 0);
    c.wait_replica_caught_up();
    reads_reach_the_replica(&c, &client, "select inet_server_port()").await;
    assert_eq!(backends(&c, c.replica_port(), "lazy"), 1);
}

/// A pool no client has used for `autodb_idle_timeout` is closed and
/// forgotten: gone from /status, SHOW POOLS and the metrics, its
/// connections closed. A connected client keeps its pool, idle or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_nobody_uses_are_retired() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create database brief");
    c.psql(c.primary_port(), "create database steady");
    c.wait_replica_caught_up();
    let metrics_port = free_port();
    let mut config = proxy_config(&c);
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    config.autodb_idle_timeout = 0.5;
    let p = Proxy::start(config);
    let stays = regular_of(&c, p.port(), "steady").await;
    drop(regular_of(&c, p.port(), "brief").await);

    let pools_of = |database: &str| {
        let (code, body) = get(metrics_port, "/status");
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["pools"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["database"] == database)
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || pools_of("brief") == 0),
        "the unused pools are still there"
    );
    assert!(eventually(Duration::from_secs(5), || {
        backends(&c, c.primary_port(), "brief") == 0 && backends(&c, c.replica_port(), "brief") == 0
    }));
    let shown = psql_args(
        p.port(),
        &["-U", "postgres", "-d", "pgsplit", "-c", "SHOW POOLS"],
        &[],
    )
    .unwrap();
    assert!(!shown.contains("brief"), "{shown}");
    assert!(shown.contains("steady"), "{shown}");
    let (_, metrics) = get(metrics_port, "/metrics");
    assert!(!metrics.contains("database=\"brief\""), "{metrics}");

    // Well past the timeout, the connected client's pools stay.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pools_of("steady"), 2);
    assert_eq!(one(&stays, "select count(*) from t").await.unwrap(), "1");
    // A client of the retired database gets new pools.
    let back = connect_to(p.port(), "brief").await;
    assert_eq!(one(&back, "select count(*) from t").await.unwrap(), "1");
    assert_eq!(pools_of("brief"), 2);
}

/// Trust mode: a misspelled database makes pools (the server then refuses
/// the login), but they and their metric series do not stay for good:
/// unused, they are retired after `autodb_idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_database_leaves_no_pool_or_series_behind() {
    let c = Cluster::start();
    let metrics_port = free_port();
    let mut config = proxy_config(&c);
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    config.autodb_idle_timeout = 0.5;
    let p = Proxy::start(config);
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgress connect_timeout=5",
        p.port()
    );
    let refused = support::proxy::try_connect(&conninfo)
        .await
        .err()
        .expect("logged in");
    assert_eq!(
        support::proxy::code_of(&refused).as_deref(),
        Some("3D000"),
        "{refused}"
    );
    let (_, metrics) = get(metrics_port, "/metrics");
    assert!(
        metrics.contains("database=\"postgress\""),
        "no series to retire:\n{metrics}"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            !get(metrics_port, "/metrics")
                .1
                .contains("database=\"postgress\"")
        }),
        "the misspelled database's series stay:\n{}",
        get(metrics_port, "/metrics").1
    );
    let (_, status) = get(metrics_port, "/status");
    assert!(!status.contains("postgress"), "{status}");
}

/// `pgsplit_pool_max_wait_seconds`: while a client waits for the only
/// connection of an exhausted pool, the gauge shows how long it has
/// waited so far; once it is served, 0 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_wait_in_progress_is_a_gauge() {
    let c = Cluster::start();
    let metrics_port = free_port();
    let mut config = proxy_config(&c);
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    config.pool.primary.pool_size = 1;
    config.pool.primary.max_overflow = 0;
    let p = Proxy::start(config);
    let holder = support::proxy::connect(p.port()).await;
    holder
        .simple_query("begin; create table held(x int)")
        .await
        .unwrap();
    // Its login already needs the primary's connection: it waits there.
    let port = p.port();
    let waiting = tokio::spawn(async move {
        let waiter = support::proxy::try_connect(&format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"
        ))
        .await?;
        waiter
            .simple_query("create table waited(x int)")
            .await
            .map(|_| waiter)
    });
    let series = format!(
        "pgsplit_pool_max_wait_seconds{{database=\"postgres\",role=\"primary\",server=\"{}\",user=\"postgres\"}}",
        c.primary_addr()
    );
    let waited = || support::http::value(&get(metrics_port, "/metrics").1, &series);
    assert!(
        eventually(Duration::from_secs(5), || waited() >= 0.5),
        "no wait shown: {}",
        get(metrics_port, "/metrics").1
    );
    holder.simple_query("commit").await.unwrap();
    if let Err(e) = waiting.await.unwrap() {
        panic!("{e:?}");
    }
    assert!(eventually(Duration::from_secs(5), || waited() == 0.0));
    assert!(get(metrics_port, "/metrics").1.contains(&series));
}
