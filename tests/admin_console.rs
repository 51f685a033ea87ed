//! The admin console as a PgBouncer operator knows it: PgBouncer's SHOW
//! tables (its column names first, in its order, integers typed int8 so
//! drivers read numbers) and its commands (PAUSE and RESUME of one
//! database, RECONNECT, WAIT_CLOSE, KILL, KILL_CLIENT, DISABLE, ENABLE),
//! against a real primary and replica.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use pgsplit::config::Config;
use support::admin::{console, rows};
use support::cluster::{free_port, Cluster};
use support::proxy::{code_of, message_of, one, proxy_config, try_connect, Proxy};
use support::wire::{frame, RawClient};
use tokio_postgres::Client;

/// (name, type OID) of each column SHOW `what` answers with, read from
/// its RowDescription on the wire.
async fn described(proxy: &Proxy, what: &str) -> Vec<(String, u32)> {
    let mut raw = RawClient::login(proxy.addr(), "postgres", "pgsplit").await;
    raw.send(&frame::query(&format!("SHOW {what}"))).await;
    let seen = raw.read_until_ready(1, Duration::from_secs(10)).await;
    let description = seen
        .messages
        .iter()
        .find(|m| m.tag == b'T')
        .unwrap_or_else(|| panic!("SHOW {what}: no RowDescription in {}", seen.describe()));
    assert!(
        seen.messages.iter().any(|m| m.summary() == "C:SHOW"),
        "PgBouncer's tag: {}",
        seen.describe()
    );
    parse_row_description(&description.body)
}

fn parse_row_description(body: &[u8]) -> Vec<(String, u32)> {
    let count = u16::from_be_bytes([body[0], body[1]]);
    let mut at = 2;
    (0..count)
        .map(|_| {
            let end = at + body[at..].iter().position(|&b| b == 0).unwrap();
            let name = String::from_utf8_lossy(&body[at..end]).into_owned();
            let oid_at = end + 1 + 4 + 2;
            let oid = u32::from_be_bytes(body[oid_at..oid_at + 4].try_into().unwrap());
            at = oid_at + 4 + 2 + 4 + 2;
            (name, oid)
        })
        .collect()
}

const INT8: u32 = 20;
const TEXT: u32 = 25;

/// PgBouncer 1.23's columns, with their kind: integer or text.
const POOLS: &[(&str, u32)] = &[
    ("database", TEXT),
    ("user", TEXT),
    ("cl_active", INT8),
    ("cl_waiting", INT8),
    ("cl_active_cancel_req", INT8),
    ("cl_waiting_cancel_req", INT8),
    ("sv_active", INT8),
    ("sv_active_cancel", INT8),
    ("sv_being_canceled", INT8),
    ("sv_idle", INT8),
    ("sv_used", INT8),
    ("sv_tested", INT8),
    ("sv_login", INT8),
    ("maxwait", INT8),
    ("maxwait_us", INT8),
    ("pool_mode", TEXT),
];

const STATS: &[(&str, u32)] = &[
    ("database", TEXT),
    ("total_server_assignment_count", INT8),
    ("total_xact_count", INT8),
    ("total_query_count", INT8),
    ("total_received", INT8),
    ("total_sent", INT8),
    ("total_xact_time", INT8),
    ("total_query_time", INT8),
    ("total_wait_time", INT8),
    ("avg_server_assignment_count", INT8),
    ("avg_xact_count", INT8),
    ("avg_query_count", INT8),
    ("avg_recv", INT8),
    ("avg_sent", INT8),
    ("avg_xact_time", INT8),
    ("avg_query_time", INT8),
    ("avg_wait_time", INT8),
];

const SOCKETS: &[(&str, u32)] = &[
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("replication", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT8),
    ("local_addr", TEXT),
    ("local_port", INT8),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT8),
    ("wait_us", INT8),
    ("close_needed", INT8),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT8),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("prepared_statements", INT8),
];

const DATABASES: &[(&str, u32)] = &[
    ("name", TEXT),
    ("host", TEXT),
    ("port", INT8),
    ("database", TEXT),
    ("force_user", TEXT),
    ("pool_size", INT8),
    ("min_pool_size", INT8),
    ("reserve_pool", INT8),
    ("server_lifetime", INT8),
    ("pool_mode", TEXT),
    ("max_connections", INT8),
    ("current_connections", INT8),
    ("paused", INT8),
    ("disabled", INT8),
];

const USERS: &[(&str, u32)] = &[
    ("name", TEXT),
    ("pool_size", INT8),
    ("pool_mode", TEXT),
    ("max_user_connections", INT8),
    ("current_connections", INT8),
];

const CONFIG: &[(&str, u32)] = &[
    ("key", TEXT),
    ("value", TEXT),
    ("default", TEXT),
    ("changeable", TEXT),
];

const LISTS: &[(&str, u32)] = &[("list", TEXT), ("items", INT8)];

fn get<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == column)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
}

/// The row of `command` whose `column` is `value`.
async fn row_where(
    console: &Client,
    command: &str,
    column: &str,
    value: &str,
) -> Vec<(String, String)> {
    let all = rows(console, command).await;
    all.iter()
        .find(|r| get(r, column) == value)
        .cloned()
        .unwrap_or_else(|| panic!("{command}: no row with {column} = {value} in {all:?}"))
}

async fn app_client(proxy: &Proxy, application: &str) -> Client {
    try_connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres application_name={application} connect_timeout=10",
        proxy.port()
    ))
    .await
    .unwrap_or_else(|e| panic!("client {application}: {e}"))
}

/// SHOW CLIENTS' id of the client named `application`.
async fn client_id(console: &Client, application: &str) -> String {
    let row = row_where(console, "SHOW CLIENTS", "application_name", application).await;
    get(&row, "id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tables_have_pgbouncers_columns_typed_and_tied_together() {
    let cluster = Cluster::start();
    let proxy = Proxy::start(proxy_config(&cluster));
    let client = app_client(&proxy, "tied").await;
    client.simple_query("SELECT 1").await.unwrap();
    // In a transaction on the primary: the client holds that connection.
    client
        .batch_execute("BEGIN; CREATE TEMP TABLE t(x int)")
        .await
        .unwrap();
    let pid = one(&client, "SELECT pg_backend_pid()").await.unwrap();

    for (what, expected, extra) in [
        (
            "POOLS",
            POOLS,
            &["server", "role", "pool_size", "checked_out", "parked"][..],
        ),
        (
            "STATS",
            STATS,
            &["total_primary_query_count", "total_replica_query_count"][..],
        ),
        ("SERVERS", SOCKETS, &["id", "role", "server"][..]),
        (
            "CLIENTS",
            SOCKETS,
            &["id", "pinned", "statements", "connected_seconds"][..],
        ),
        (
            "DATABASES",
            DATABASES,
            &["replicas", "current_client_connections"][..],
        ),
        ("USERS", USERS, &["current_client_connections"][..]),
        ("CONFIG", CONFIG, &[][..]),
        ("LISTS", LISTS, &[][..]),
    ] {
        let columns = described(&proxy, what).await;
        let theirs: Vec<(&str, u32)> = columns
            .iter()
            .take(expected.len())
            .map(|(n, t)| (n.as_str(), *t))
            .collect();
        assert_eq!(theirs, expected, "SHOW {what}: PgBouncer's columns first");
        let ours: Vec<&str> = columns[expected.len()..]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(
            ours.starts_with(extra),
            "SHOW {what}: pgsplit's after them: {ours:?}"
        );
    }

    let console = console(proxy.port()).await;
    // The client, its server connection and the two linked both ways.
    let id = client_id(&console, "tied").await;
    let server = row_where(&console, "SHOW SERVERS", "remote_pid", &pid).await;
    assert_eq!(get(&server, "state"), "active", "{server:?}");
    assert_eq!(get(&server, "role"), "primary", "{server:?}");
    assert_eq!(get(&server, "link"), format!("c{id}"), "{server:?}");
    assert_eq!(get(&server, "port"), cluster.primary_port().to_string());
    let me = row_where(&console, "SHOW CLIENTS", "id", &id).await;
    assert_eq!(get(&me, "link"), get(&server, "ptr"), "{me:?}");
    assert_eq!(get(&me, "state"), "active", "{me:?}");
    assert_eq!(get(&me, "type"), "C");
    client.batch_execute("COMMIT").await.unwrap();

    // Traffic by database, counted as it ran.
    let stats = row_where(&console, "SHOW STATS", "database", "postgres").await;
    let count = |c: &str| get(&stats, c).parse::<u64>().unwrap();
    assert!(count("total_query_count") >= 3, "{stats:?}");
    assert!(count("total_xact_count") >= 2, "{stats:?}");
    assert!(
        count("total_received") > 0 && count("total_sent") > 0,
        "{stats:?}"
    );
    assert!(
        count("total_replica_query_count") >= 1,
        "SELECT 1 ran on the replica: {stats:?}"
    );
    assert!(count("total_server_assignment_count") >= 2, "{stats:?}");

    // Numbers reach a driver as numbers: int8 decodes as i64.
    let lists = rows(&console, "SHOW LISTS").await;
    let used: HashMap<_, _> = lists
        .iter()
        .map(|r| (get(r, "list").to_string(), get(r, "items").to_string()))
        .collect();
    assert_eq!(used["used_clients"], "1", "{lists:?}");
    let pools = row_where(&console, "SHOW DATABASES", "name", "postgres").await;
    assert_eq!(get(&pools, "host"), "127.0.0.1");
    assert_eq!(get(&pools, "port"), cluster.primary_port().to_string());
    assert_eq!(get(&pools, "paused"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_and_kill_drop_their_clients_only() {
    let cluster = Cluster::start();
    let proxy = Proxy::start(Config {
        databases: vec!["postgres".into()],
        ..proxy_config(&cluster)
    });
    let console = console(proxy.port()).await;
    let victim = app_client(&proxy, "victim").await;
    let bystander = app_client(&proxy, "bystander").await;
    victim.simple_query("SELECT 1").await.unwrap();
    let id = client_id(&console, "victim").await;

    console
        .simple_query(&format!("KILL_CLIENT {id}"))
        .await
        .unwrap();
    let error = victim
        .simple_query("SELECT 1")
        .await
        .expect_err("a killed client runs nothing");
    assert!(
        victim.is_closed() || code_of(&error).as_deref() == Some("57P01"),
        "{error}"
    );
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("the other client goes on");
    let gone = console
        .simple_query(&format!("KILL_CLIENT {id}"))
        .await
        .unwrap_err();
    assert!(message_of(&gone).contains("client not found"), "{gone}");
    assert_eq!(code_of(&gone).as_deref(), Some("42704"));

    // KILL: every client of the database, in a transaction or not.
    bystander.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let idle = app_client(&proxy, "idle").await;
    console.simple_query("KILL postgres").await.unwrap();
    for (name, client) in [("in a transaction", &bystander), ("idle", &idle)] {
        let result = client.simple_query("SELECT 1").await;
        assert!(result.is_err(), "the {name} client survived KILL");
    }
    // The database is not disabled: a new client gets in.
    let next = app_client(&proxy, "next").await;
    next.simple_query("SELECT 1")
        .await
        .expect("a client after KILL");

    for (command, message) in [
        ("KILL nope", "no such database: nope"),
        ("KILL pgsplit", "cannot kill admin db: pgsplit"),
        ("KILL", "a database is required"),
    ] {
        let e = console.simple_query(command).await.unwrap_err();
        assert_eq!(message_of(&e), message, "{command}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_refuses_new_clients_and_pause_holds_one_database() {
    let cluster = Cluster::start();
    cluster.psql(cluster.primary_port(), "CREATE DATABASE other");
    cluster.wait_replica_caught_up();
    let proxy = Proxy::start(proxy_config(&cluster));
    let console = console(proxy.port()).await;
    let connected = app_client(&proxy, "connected").await;

    console.simple_query("DISABLE postgres").await.unwrap();
    let refused = try_connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10",
        proxy.port()
    ))
    .await
    .map(|_| ())
    .expect_err("a new client of a disabled database");
    assert_eq!(code_of(&refused).as_deref(), Some("55000"), "{refused}");
    assert!(
        message_of(&refused).starts_with("database \"postgres\" is disabled"),
        "{refused}"
    );
    connected
        .simple_query("SELECT 1")
        .await
        .expect("clients in already stay");
    let database = row_where(&console, "SHOW DATABASES", "name", "postgres").await;
    assert_eq!(get(&database, "disabled"), "1");
    console.simple_query("ENABLE postgres").await.unwrap();
    app_client(&proxy, "after")
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();

    // PAUSE other: its clients wait, the others go on.
    let other = try_connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=other connect_timeout=10",
        proxy.port()
    ))
    .await
    .unwrap();
    other.simple_query("SELECT 1").await.unwrap();
    console.simple_query("PAUSE other").await.unwrap();
    let waiting = tokio::spawn(async move { other.simple_query("SELECT 2").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a statement of the paused database ran"
    );
    connected
        .simple_query("SELECT 3")
        .await
        .expect("another database is not paused");
    let database = row_where(&console, "SHOW DATABASES", "name", "other").await;
    assert_eq!(get(&database, "paused"), "1");
    console.simple_query("RESUME other").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the statement ran after RESUME other")
        .unwrap()
        .unwrap();
    let again = console.simple_query("RESUME other").await.unwrap_err();
    assert_eq!(message_of(&again), "database other is not paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_makes_the_next_statement_run_on_a_new_backend() {
    let cluster = Cluster::start();
    let proxy = Proxy::start(proxy_config(&cluster));
    let console = console(proxy.port()).await;
    let client = app_client(&proxy, "moving").await;
    let before = one(&client, "SELECT pg_backend_pid()").await.unwrap();
    // Without RECONNECT, the client's reads stay on the connection it has.
    for _ in 0..3 {
        assert_eq!(
            one(&client, "SELECT pg_backend_pid()").await.unwrap(),
            before
        );
    }
    console.simple_query("RECONNECT postgres").await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        console.simple_query("WAIT_CLOSE postgres"),
    )
    .await
    .expect("WAIT_CLOSE returned: the connections asked to close are closed")
    .unwrap();
    let closing = rows(&console, "SHOW SERVERS").await;
    assert!(
        closing.iter().all(|s| get(s, "close_needed") == "0"),
        "{closing:?}"
    );
    assert!(
        closing.iter().all(|s| get(s, "remote_pid") != before),
        "the old backend is gone: {closing:?}"
    );
    let after = one(&client, "SELECT pg_backend_pid()").await.unwrap();
    assert_ne!(after, before, "the statement ran on the old backend");
}

/// SHOW CONFIG lists the value in force: after a RELOAD of a file that
/// changes `listen` (which needs a restart), the running address, and
/// the reloaded value of a key a reload does change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_config_lists_the_values_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgsplit.toml");
    let (port, other) = (free_port(), free_port());
    let write = |listen: u16, max_client_conn: u32| {
        std::fs::write(
            &file,
            format!("listen = \"127.0.0.1:{listen}\"\nprimary = \"127.0.0.1:1\"\nmax_client_conn = {max_client_conn}\n"),
        )
        .unwrap()
    };
    write(port, 50);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["--config", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let console = {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match try_connect(&format!(
                "host=127.0.0.1 port={port} user=postgres dbname=pgsplit"
            ))
            .await
            {
                Ok(c) => break c,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("pgsplit did not listen on {port}: {e}"),
            }
        }
    };
    write(other, 60);
    console.simple_query("RELOAD").await.unwrap();
    let listen = row_where(&console, "SHOW CONFIG", "key", "listen").await;
    assert_eq!(
        get(&listen, "value"),
        format!("127.0.0.1:{port}"),
        "{listen:?}"
    );
    assert_eq!(get(&listen, "default"), "127.0.0.1:6432");
    assert_eq!(get(&listen, "changeable"), "no");
    let max = row_where(&console, "SHOW CONFIG", "key", "max_client_conn").await;
    assert_eq!(get(&max, "value"), "60", "{max:?}");
    assert_eq!(get(&max, "changeable"), "yes");
    let _ = child.kill();
    let _ = child.wait();
}
