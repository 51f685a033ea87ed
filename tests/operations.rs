//! What operators see: the Prometheus metrics moving by the right amounts
//! for a known workload, GET /status and /healthz, and the admin console
//! (the virtual database `pgsplit`) through psql and tokio-postgres.

mod support;

use std::time::Duration;

use support::cluster::{free_port, Cluster};
use support::http::{get, value};
use support::proxy::{connect, eventually, proxy_config, psql_args, try_connect, Proxy};
use tokio_postgres::SimpleQueryMessage;

fn with_metrics(cluster: &Cluster) -> (Proxy, u16) {
    let metrics_port = free_port();
    let mut config = proxy_config(cluster);
    config.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let proxy = Proxy::start(config);
    (proxy, metrics_port)
}

fn scrape(port: u16) -> String {
    let (code, body) = get(port, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_the_workload() {
    let cluster = Cluster::start();
    cluster.psql(cluster.primary_port(), "CREATE TABLE m(id int)");
    cluster.wait_replica_caught_up();
    let (proxy, port) = with_metrics(&cluster);
    let client = connect(proxy.port()).await;
    let before = scrape(port);

    for _ in 0..5 {
        client.simple_query("SELECT 1").await.unwrap();
    }
    assert!(client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .is_err());
    for i in 0..3 {
        client
            .simple_query(&format!("INSERT INTO m VALUES ({i})"))
            .await
            .unwrap();
    }
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("INSERT INTO m VALUES (9)")
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    // The client has its answer a moment before pgsplit records the end of
    // the exchange and marks the client idle: wait for that.
    let idle = "pgsplit_client_connections{state=\"idle\"}";
    assert!(eventually(Duration::from_secs(5), || value(
        &scrape(port),
        idle
    ) == 1.0));
    let after = scrape(port);

    let delta = |series: &str| value(&after, series) - value(&before, series);
    let stmt = |d: &str, r: &str| {
        delta(&format!(
            "pgsplit_statements_total{{destination=\"{d}\",reason=\"{r}\"}}"
        ))
    };
    assert_eq!(stmt("replica", "read_only"), 6.0, "{after}");
    assert_eq!(stmt("primary", "write"), 3.0, "{after}");
    // BEGIN is pgsplit's answer (no server ran it); the INSERT opens the
    // transaction on the primary; COMMIT runs where it is.
    assert_eq!(stmt("primary", "transaction"), 0.0, "{after}");
    assert_eq!(stmt("primary", "opens_transaction"), 1.0, "{after}");
    assert_eq!(stmt("primary", "in_transaction"), 1.0, "{after}");
    assert_eq!(
        delta("pgsplit_errors_total{class=\"42\",side=\"server\"}"),
        1.0
    );
    assert_eq!(
        delta("pgsplit_statement_duration_seconds_count{destination=\"replica\"}"),
        6.0
    );
    // Three autocommit writes and one explicit transaction.
    assert_eq!(
        delta("pgsplit_transactions_total{destination=\"primary\"}"),
        4.0
    );
    assert!(delta("pgsplit_client_received_bytes_total") > 0.0);
    assert!(delta("pgsplit_client_sent_bytes_total") > 0.0);
    assert!(delta("pgsplit_routing_cache_hits_total") >= 4.0, "{after}");

    let primary = cluster.primary_addr();
    let replica = cluster.replica_addr();
    for server in [&primary, &replica] {
        assert_eq!(
            value(&after, &format!("pgsplit_server_up{{server=\"{server}\"}}")),
            1.0,
            "{after}"
        );
    }
    assert_eq!(
        value(
            &after,
            &format!("pgsplit_server_primary{{server=\"{primary}\"}}")
        ),
        1.0
    );
    let pool = format!(
        "database=\"postgres\",role=\"replica\",server=\"{replica}\",state=\"idle\",user=\"postgres\""
    );
    assert!(
        after.contains(&format!("pgsplit_pool_connections{{{pool}}}")),
        "{after}"
    );
    assert!(after.contains("pgsplit_pool_checkout_wait_seconds_bucket"));
    assert_eq!(
        value(&after, "pgsplit_client_connections{state=\"idle\"}"),
        1.0
    );
    assert!(after.contains("pgsplit_build_info{version=\""));
    assert!(after.contains("pgsplit_uptime_seconds"));
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_healthz_describe_pools_and_servers() {
    let cluster = Cluster::start();
    let (proxy, port) = with_metrics(&cluster);
    let client = connect(proxy.port()).await;
    client.simple_query("SELECT 1").await.unwrap();

    // The client has its answer a moment before pgsplit puts the
    // connection back: wait for that moment.
    let idle = |s: &serde_json::Value| {
        s["pools"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["checked_out"] == 0))
    };
    let status_now = || {
        let (code, body) = get(port, "/status");
        assert_eq!(code, 200);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert!(eventually(Duration::from_secs(5), || idle(&status_now())));
    let status = status_now();
    let body = status.to_string();
    let pools = status["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2, "{body}");
    for pool in pools {
        for field in ["size", "checked_in", "checked_out", "overflow", "waiting"] {
            assert!(pool[field].is_u64(), "{field} missing in {pool}");
        }
        assert_eq!(pool["checked_out"], 0, "{pool}");
        assert_eq!(pool["healthy"], true, "{pool}");
    }
    assert_eq!(status["servers"].as_array().unwrap().len(), 2);

    let (code, body) = get(port, "/healthz");
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["writes"], true, "{body}");
    assert_eq!(health["reads"], true, "{body}");
    assert_eq!(health["primary"], cluster.primary_addr());
}

fn admin(port: u16, command: &str) -> Result<String, String> {
    psql_args(
        port,
        &["-U", "postgres", "-d", "pgsplit", "-c", command],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_answers_psql_and_drivers() {
    let cluster = Cluster::start();
    let proxy = Proxy::start(proxy_config(&cluster));
    let port = proxy.port();
    let client = connect(port).await;
    client.simple_query("SELECT 1").await.unwrap();

    let pools = admin(port, "SHOW POOLS").unwrap();
    assert!(pools.contains(&cluster.replica_addr()), "{pools}");
    assert_eq!(pools.lines().count(), 2, "{pools}");
    let servers = admin(port, "show health;").unwrap();
    assert!(servers.contains("|primary|"), "{servers}");
    let clients = admin(port, "SHOW CLIENTS").unwrap();
    assert!(clients.contains("postgres|postgres"), "{clients}");
    assert!(admin(port, "SHOW VERSION").unwrap().starts_with("pgsplit "));
    let config = admin(port, "SHOW CONFIG").unwrap();
    assert!(config.contains("pool.replica.pool_size|2"), "{config}");
    let stats = admin(port, "SHOW METRICS").unwrap();
    assert!(
        stats.contains("pgsplit_statements_total|destination=replica,reason=read_only|1"),
        "{stats}"
    );
    // SHOW ROUTE reports the decision in each transaction context, with the
    // database's catalog (nextval is looked up on the primary).
    let route = admin(port, "SHOW ROUTE SELECT nextval('s')").unwrap();
    let lines: Vec<&str> = route.lines().collect();
    assert_eq!(lines.len(), 3, "{route}");
    assert!(
        lines[0].starts_with("outside a transaction|primary|function|calls nextval()"),
        "{route}"
    );
    assert!(
        lines[1].starts_with(
            "in a transaction that has only read|primary (BEGIN there first)|opens_transaction|"
        ),
        "{route}"
    );
    assert!(lines[2].contains("|in_transaction|"), "{route}");
    let route = admin(port, "SHOW ROUTE in postgres select * from t").unwrap();
    let lines: Vec<&str> = route.lines().collect();
    assert_eq!(
        lines[0],
        "outside a transaction|replica|read_only|read-only statement"
    );
    assert!(
        lines[1].starts_with("in a transaction that has only read|replica|read_in_transaction|"),
        "{route}"
    );
    let route = admin(port, "SHOW ROUTE select now()").unwrap();
    assert!(
        route
            .lines()
            .nth(1)
            .unwrap_or_default()
            .contains("|opens_transaction|"),
        "{route}"
    );
    let route = admin(port, "SHOW ROUTE begin").unwrap();
    assert!(
        route.starts_with("outside a transaction|answered by pgsplit|answered|"),
        "{route}"
    );
    let refused = admin(port, "DROP TABLE t").unwrap_err();
    assert!(refused.contains("unknown admin command"), "{refused}");
    let reload = admin(port, "RELOAD").unwrap_err();
    assert!(reload.contains("without a config file"), "{reload}");

    // The same through a driver.
    let console = try_connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=pgsplit"
    ))
    .await
    .unwrap();
    let rows: Vec<_> = console
        .simple_query("SHOW HEALTH")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get("server").unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, [cluster.primary_addr(), cluster.replica_addr()]);

    // PAUSE holds new transactions until RESUME.
    console.simple_query("PAUSE").await.unwrap();
    let waiting = tokio::spawn(async move { client.simple_query("SELECT 2").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a statement ran while paused");
    let clients = admin(port, "SHOW CLIENTS").unwrap();
    assert!(clients.contains("|waiting|"), "{clients}");
    console.simple_query("RESUME").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the statement ran after RESUME")
        .unwrap()
        .unwrap();
}
