//! No client can wedge its session or keep a server connection after it
//! leaves.
//!
//! After an error inside an extended-protocol batch PostgreSQL discards
//! every message until Sync, a simple Query included, so that Query gets
//! no ReadyForQuery of its own. A proxy that still waits for one, and
//! defers the client's next message behind it, stops reading the client:
//! it never sees the Sync that would end the wait, nor the client leaving,
//! and the server connection stays checked out until the proxy restarts.
//!
//! Each test sends such byte sequences on a raw socket, once straight to
//! the primary and once through pgsplit, and checks that
//! - pgsplit answers exactly as PostgreSQL does (message types, SQLSTATEs,
//!   command tags, transaction status; row contents aside), within a
//!   deadline, so a wedged session fails the test rather than hanging it;
//! - once the client has gone, pgsplit holds nothing: no client in SHOW
//!   CLIENTS, no server connection checked out or parked in SHOW POOLS;
//! - fifteen wedging clients against the default pool sizes (5 + 10) do not
//!   leave later writes failing with 53300 once they have gone;
//! - a malformed Describe or Close subtype gets PostgreSQL's ERROR 08P01
//!   and the session goes on, as it does on PostgreSQL, instead of ending.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use pgsplit::config::{Config, PoolSettings, Pools};
use support::admin::{console, held, settled, settled_for};
use support::cluster::Cluster;
use support::panics;
use support::proxy::{code_of, connect, message_of, one, proxy_config, try_connect, Proxy};
use support::wire::frame::{bind, close, describe, execute, parse, query, sync, terminate};
use support::wire::{RawClient, Transcript};

/// How long a client waits for answers PostgreSQL gives at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long pgsplit may take to let go of a departed client's connections.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the answers expected, how long to listen for any unexpected more.
const QUIET: Duration = Duration::from_millis(300);

/// A cluster with the test table, a proxy in front of it and its console.
struct Setup {
    cluster: Cluster,
    proxy: Proxy,
    console: tokio_postgres::Client,
}

impl Setup {
    async fn start(config: impl FnOnce(&Cluster) -> Config) -> Setup {
        panics::record();
        let cluster = Cluster::start();
        cluster.psql(
            cluster.primary_port(),
            "create table wedge(id int primary key, n int not null); insert into wedge values (1, 0)",
        );
        cluster.wait_replica_caught_up();
        let proxy = Proxy::start(Config {
            // A wedged session must not hold up the proxy's shutdown at the
            // end of a failing test for long.
            shutdown_timeout: 1.0,
            ..config(&cluster)
        });
        let console = console(proxy.port()).await;
        Setup {
            cluster,
            proxy,
            console,
        }
    }

    fn primary(&self) -> SocketAddr {
        self.cluster.primary_addr().parse().unwrap()
    }

    /// Runs `script` straight on the primary and through pgsplit, each on
    /// a new connection: checks that PostgreSQL answers `expected`, that
    /// pgsplit answers the same, and that once its client has closed the
    /// connection pgsplit holds nothing. Panics with every failure found.
    async fn same_as_direct(&self, what: &str, script: &[Vec<u8>], expected: &[&str]) {
        let ready = expected.iter().filter(|m| m.starts_with("Z:")).count();
        let (direct, client) = converse(self.primary(), script, ready).await;
        drop(client);
        assert_eq!(
            direct.summary(),
            expected,
            "{what}: PostgreSQL itself answered {}",
            direct.describe()
        );
        assert!(!direct.closed, "{what}: PostgreSQL closed the connection");

        let (proxied, client) = converse(self.proxy.addr(), script, ready).await;
        let mut failures = Vec::new();
        if proxied.summary() != direct.summary() || proxied.closed {
            failures.push(format!(
                "pgsplit answered {}\n   PostgreSQL answered {}",
                proxied.describe(),
                direct.describe()
            ));
        }
        drop(client);
        if let Err(still) = settled(&self.console, RELEASE_TIMEOUT).await {
            failures.push(format!(
                "{RELEASE_TIMEOUT:?} after the client closed its socket pgsplit still holds:\n     {}",
                still.join("\n     ")
            ));
        }
        assert_no_proxy_panics();
        assert!(
            failures.is_empty(),
            "{what}:\n - {}",
            failures.join("\n - ")
        );
    }
}

/// Logs in to `addr`, writes each part of `script` (one write each, back
/// to back), and reads until `ready` ReadyForQuery messages came (or the
/// connection closed, or `ANSWER_TIMEOUT` passed), then for `QUIET` more.
async fn converse(addr: SocketAddr, script: &[Vec<u8>], ready: usize) -> (Transcript, RawClient) {
    let mut client = RawClient::login(addr, "postgres", "postgres").await;
    for part in script {
        client.send(part).await;
    }
    let mut seen = client.read_until_ready(ready, ANSWER_TIMEOUT).await;
    if !seen.closed && !seen.timed_out {
        let more = client.read_until_ready(usize::MAX, QUIET).await;
        seen.messages.extend(more.messages);
        seen.closed = more.closed;
    }
    (seen, client)
}

fn assert_no_proxy_panics() {
    let panics = panics::recorded();
    assert!(panics.is_empty(), "pgsplit panicked: {panics:#?}");
}

/// The default pool sizes (5 + 10), and a short pool_timeout so that a
/// starved pool fails the test quickly.
fn default_pools(cluster: &Cluster) -> Config {
    let pool = PoolSettings {
        pool_timeout: 3.0,
        ..PoolSettings::default()
    };
    Config {
        pool: Pools {
            primary: pool.clone(),
            replica: pool,
        },
        ..proxy_config(cluster)
    }
}

/// The first sequence: the Query after the failed Bind goes to a
/// replica and gets no ReadyForQuery; `begin` needs the primary and waits
/// behind it; the Sync after it is never read. A replica connection stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_then_a_query_then_begin_leaves_no_replica_connection_held() {
    let s = Setup::start(proxy_config).await;
    let script = [
        [bind("", "nosuch", &[]), execute("", 0), query("select 1")].concat(),
        [query("begin"), sync()].concat(),
        // The session goes on.
        query("select 'after'"),
    ];
    // The Query and `begin` are skipped: one ReadyForQuery, for the Sync.
    let expected = ["E:26000", "Z:I", "T", "D", "C:SELECT 1", "Z:I"];
    s.same_as_direct(
        "Bind unknown, Execute, Query select 1; Query begin, Sync",
        &script,
        &expected,
    )
    .await;
}

/// The second sequence: the failed batch ends in a write, so the
/// primary's connection is held; DEALLOCATE of a statement the client
/// prepared with Parse waits behind the Query's ReadyForQuery that never
/// comes. PostgreSQL skips the DEALLOCATE too, so `s1` still exists after
/// the Sync, and the update never ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_then_a_write_then_deallocate_leaves_no_primary_connection_held() {
    let s = Setup::start(proxy_config).await;
    let script = [
        [parse("s1", "select 1", &[]), sync()].concat(),
        [
            bind("", "nosuch", &[]),
            execute("", 0),
            query("update wedge set n = n + 1"),
        ]
        .concat(),
        [query("deallocate s1"), sync()].concat(),
        // The DEALLOCATE was skipped: s1 is still there.
        [bind("", "s1", &[]), execute("", 0), sync()].concat(),
        query("select 'after'"),
    ];
    #[rustfmt::skip]
    let expected = [
        "1", "Z:I",                      // Parse s1, Sync
        "E:26000", "Z:I",                // the failed batch, up to its Sync
        "2", "D", "C:SELECT 1", "Z:I",   // s1 runs
        "T", "D", "C:SELECT 1", "Z:I",   // the simple query
    ];
    s.same_as_direct(
        "Parse s1, Sync; Bind unknown, Execute, Query update; Query deallocate s1, Sync",
        &script,
        &expected,
    )
    .await;
    assert_eq!(
        s.cluster
            .psql(s.cluster.primary_port(), "select n from wedge"),
        "0",
        "the skipped update ran"
    );
}

/// A failed batch whose simple Query the server skipped, answered in full
/// (the client got its ReadyForQuery), must leave nothing pending: not a
/// ReadyForQuery pgsplit still waits for (it would hold the connection,
/// and defer the next statement that needs another server forever), nor
/// an expected answer out of step (pgsplit's own CloseComplete and
/// ParseComplete, for the statement it prepares for the client, would
/// reach the client instead of being cut out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_answered_in_full_leaves_the_session_in_step() {
    let s = Setup::start(proxy_config).await;
    let script = [
        [
            bind("", "nosuch", &[]),
            execute("", 0),
            query("select 1"),
            sync(),
        ]
        .concat(),
        [
            parse("s1", "select 1", &[]),
            bind("", "s1", &[]),
            execute("", 0),
            sync(),
        ]
        .concat(),
        query("begin"),
        query("update wedge set n = n + 1"),
        query("rollback"),
    ];
    #[rustfmt::skip]
    let expected = [
        "E:26000", "Z:I",                     // the Query was skipped
        "1", "2", "D", "C:SELECT 1", "Z:I",   // nothing of pgsplit's own
        "C:BEGIN", "Z:T",                     // the primary, now
        "C:UPDATE 1", "Z:T",
        "C:ROLLBACK", "Z:I",
    ];
    s.same_as_direct(
        "Bind unknown, Execute, Query select 1, Sync; Parse s1, Bind, Execute, Sync; begin",
        &script,
        &expected,
    )
    .await;
}

/// One client of the fifteen: takes a primary connection into a failed
/// batch, sends DEALLOCATE and the Sync a well-behaved client sends, reads
/// for a moment, and leaves. Returns what it saw, for the failure message.
async fn wedging_client(addr: SocketAddr) -> Transcript {
    let mut c = RawClient::login(addr, "postgres", "postgres").await;
    c.send(&[parse("s1", "select 1", &[]), sync()].concat())
        .await;
    let mut seen = c.read_until_ready(1, ANSWER_TIMEOUT).await;
    c.send(
        &[
            bind("", "nosuch", &[]),
            execute("", 0),
            query("update wedge set n = n + 1"),
        ]
        .concat(),
    )
    .await;
    // The error comes at once: the batch has reached the primary.
    seen.messages
        .extend(c.read_until_error(ANSWER_TIMEOUT).await.messages);
    c.send(&[query("deallocate s1"), sync()].concat()).await;
    let rest = c.read_until_ready(1, Duration::from_secs(2)).await;
    seen.messages.extend(rest.messages);
    seen.timed_out = rest.timed_out;
    seen
}

/// The starvation: fifteen wedged sessions took every connection of
/// the default primary pool (5 + 10), and every later write of that
/// database and user failed with 53300. Once those clients have gone, a
/// write must get a connection within pool_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_departed_wedging_clients_do_not_starve_writes() {
    let s = Setup::start(default_pools).await;
    let addr = s.proxy.addr();
    let clients: Vec<_> = (0..15)
        .map(|_| tokio::spawn(wedging_client(addr)))
        .collect();
    let mut wedged = 0;
    for c in clients {
        let seen = c.await.expect("a wedging client panicked");
        if seen.summary() != ["1", "Z:I", "E:26000", "Z:I"] {
            wedged += 1;
            eprintln!("a client saw {}", seen.describe());
        }
    }
    // Every one of them has closed its socket now.
    eprintln!("{wedged} of 15 clients did not get PostgreSQL's answers");

    let write = async {
        // tokio-postgres sends startup settings, which pgsplit checks on
        // the primary at login: a starved pool refuses the login already.
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            s.proxy.port()
        );
        let client = try_connect(&conninfo).await.map_err(|e| ("login", e))?;
        client
            .simple_query("update wedge set n = n + 1")
            .await
            .map_err(|e| ("update", e))
    };
    // pool_timeout is 3 s: a starved pool answers 53300 by then.
    let outcome = tokio::time::timeout(Duration::from_secs(15), write).await;
    let mut failures = Vec::new();
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err((step, e))) => failures.push(format!(
            "a write after the 15 clients left failed at its {step}: {} {}",
            code_of(&e).unwrap_or_default(),
            message_of(&e)
        )),
        Err(_) => failures.push("a write after the 15 clients left got no answer in 15 s".into()),
    }
    if wedged > 0 {
        failures.push(format!(
            "{wedged} of 15 clients did not get PostgreSQL's answers (1, Z, E 26000, Z)"
        ));
    }
    if let Err(still) = settled(&s.console, RELEASE_TIMEOUT).await {
        failures.push(format!(
            "after the 15 clients left pgsplit still holds:\n     {}",
            still.join("\n     ")
        ));
    }
    assert_no_proxy_panics();
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// A client's way of leaving in the middle of a wedging sequence.
struct Leaving {
    what: &'static str,
    /// Sent first; the last part fails on the server.
    up_to_error: Vec<Vec<u8>>,
    /// Sent after the error, and then no Sync.
    then: Vec<u8>,
    /// Whether the client says Terminate before it closes the socket.
    terminate: bool,
}

/// A client that leaves in the middle of a wedging sequence, without the
/// Sync: PostgreSQL sees the socket close and ends the backend; pgsplit
/// must see it too and give back (or close) the server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_without_sync_frees_its_server_connection() {
    let s = Setup::start(proxy_config).await;
    let addr = s.proxy.addr();
    let mut failures = Vec::new();
    // A user per case, so that each case's check sees only its own pools
    // and client, whatever an earlier case left behind.
    let users = ["leaver_a", "leaver_b", "leaver_c"];
    for user in users {
        s.cluster.psql(
            s.cluster.primary_port(),
            &format!("create role {user} login; grant all on wedge to {user}"),
        );
    }
    s.cluster.wait_replica_caught_up();

    let failed_read = [bind("", "nosuch", &[]), execute("", 0), query("select 1")].concat();
    let failed_write = [
        bind("", "nosuch", &[]),
        execute("", 0),
        query("update wedge set n = n + 1"),
    ]
    .concat();
    let cases = [
        Leaving {
            what: "replica: Bind unknown, Execute, Query select 1; Query begin; close",
            up_to_error: vec![failed_read.clone()],
            then: query("begin"),
            terminate: false,
        },
        Leaving {
            what: "primary: Parse s1, Sync; Bind unknown, Execute, Query update; \
                   Query deallocate s1; close",
            up_to_error: vec![
                [parse("s1", "select 1", &[]), sync()].concat(),
                failed_write,
            ],
            then: query("deallocate s1"),
            terminate: false,
        },
        Leaving {
            what: "replica, polite: Bind unknown, Execute, Query select 1; Query begin; \
                   Terminate; close",
            up_to_error: vec![failed_read],
            then: query("begin"),
            terminate: true,
        },
    ];
    for (case, user) in cases.into_iter().zip(users) {
        let what = case.what;
        let mut c = RawClient::login(addr, user, "postgres").await;
        for part in &case.up_to_error {
            c.send(part).await;
        }
        let seen = c.read_until_error(ANSWER_TIMEOUT).await;
        if seen.errors().is_empty() {
            failures.push(format!("{what}: no ErrorResponse: {}", seen.describe()));
        }
        c.send(&case.then).await;
        if case.terminate {
            c.send(&terminate()).await;
        }
        // Let the proxy take the last message before the socket goes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(c);
        if let Err(still) = settled_for(&s.console, Some(user), RELEASE_TIMEOUT).await {
            failures.push(format!(
                "{what}: {RELEASE_TIMEOUT:?} after the client closed its socket pgsplit still holds:\n     {}",
                still.join("\n     ")
            ));
        }
    }
    // Whatever is stuck, others are served.
    let client = connect(s.proxy.port()).await;
    let served = tokio::time::timeout(ANSWER_TIMEOUT, one(&client, "select 40 + 2")).await;
    if served.ok().flatten().as_deref() != Some("42") {
        failures.push("another client's select 40 + 2 got no answer".into());
    }
    assert_no_proxy_panics();
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// PostgreSQL answers a Describe or Close whose subtype is neither S nor P
/// with ERROR 08P01 ("invalid DESCRIBE message subtype 88") and goes on:
/// the rest of the batch is skipped, Sync gets ReadyForQuery, and the
/// session serves what follows, inside a transaction block too (which
/// the error aborts, as any error would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_describe_and_close_subtypes_get_an_error_and_the_session_goes_on() {
    let s = Setup::start(proxy_config).await;
    let script = [
        [
            parse("", "select 1", &[]),
            bind("", "", &[]),
            describe(b'X', ""),
            execute("", 0),
            sync(),
        ]
        .concat(),
        [close(b'Q', "s1"), sync()].concat(),
        query("begin"),
        [
            parse("", "select 2", &[]),
            bind("", "", &[]),
            describe(b'x', ""),
            execute("", 0),
            sync(),
        ]
        .concat(),
        query("rollback"),
        // After an error the server skips messages unread: bad ones too.
        [
            bind("", "nosuch", &[]),
            describe(b'X', ""),
            close(b'Q', ""),
            sync(),
        ]
        .concat(),
        query("select 'after'"),
    ];
    #[rustfmt::skip]
    let expected = [
        "1", "2", "E:08P01", "Z:I",      // the bad Describe
        "E:08P01", "Z:I",                // the bad Close
        "C:BEGIN", "Z:T",
        "1", "2", "E:08P01", "Z:E",      // the bad Describe aborts the transaction
        "C:ROLLBACK", "Z:I",
        "E:26000", "Z:I",                // the bad ones after the error: skipped
        "T", "D", "C:SELECT 1", "Z:I",   // the session goes on
    ];
    s.same_as_direct("bad Describe and Close subtypes", &script, &expected)
        .await;

    // The errors say what PostgreSQL says, through pgsplit too.
    let (seen, _client) = converse(s.proxy.addr(), &script[..2], 2).await;
    let messages: Vec<String> = seen
        .errors()
        .iter()
        .map(|e| e.fields().remove(&'M').unwrap_or_default())
        .collect();
    assert_eq!(
        messages,
        [
            "invalid DESCRIBE message subtype 88",
            "invalid CLOSE message subtype 81"
        ],
        "{}",
        seen.describe()
    );
}

/// The console sees the connections a normal session holds (so the checks
/// above can see a leak): a client inside a transaction holds one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_connection_held_inside_a_transaction() {
    let s = Setup::start(proxy_config).await;
    let client = try_connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        s.proxy.port()
    ))
    .await
    .unwrap();
    client.batch_execute("begin; select 1").await.unwrap();
    let now = held(&s.console).await;
    assert!(
        now.iter()
            .any(|h| h.contains("primary") && h.contains("checked_out=1")),
        "{now:?}"
    );
    assert!(now.iter().any(|h| h.starts_with("client ")), "{now:?}");
    drop(client);
    settled(&s.console, RELEASE_TIMEOUT)
        .await
        .unwrap_or_else(|still| panic!("after a client left inside a transaction: {still:?}"));
}

// ---- The client's statements after errors ----
//
// Found by the differential exploration in tests/session_fuzz.rs
// (`differences_from_postgresql`): pgsplit must keep its record of the
// client's named statements as the server's would be, not as the messages
// arrived: a Close or Parse the server skipped after an error changes
// nothing, a Parse of a name in use gets 42P05, a simple Query drops the
// unnamed statement, and errors name statements by the client's names.

/// Statements exist for the client exactly when they would on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_exist_as_they_would_on_postgresql() {
    let s = Setup::start(proxy_config).await;
    let script = [
        // A Parse skipped after an error: s2 does not exist.
        [
            bind("", "nosuch", &[]),
            parse("s2", "select 2", &[]),
            sync(),
        ]
        .concat(),
        [describe(b'S', "s2"), sync()].concat(),
        // A Parse the server refused: s3 does not exist.
        [parse("s3", "selec 3", &[]), sync()].concat(),
        [describe(b'S', "s3"), sync()].concat(),
        [bind("", "s3", &[]), execute("", 0), sync()].concat(),
        // A simple Query drops the unnamed statement.
        [parse("", "select 1", &[]), sync()].concat(),
        query("select 2"),
        [bind("", "", &[]), execute("", 0), sync()].concat(),
        // A Close skipped after an error: s1 still exists.
        [parse("s1", "select 1", &[]), sync()].concat(),
        [bind("", "nosuch", &[]), close(b'S', "s1"), sync()].concat(),
        [bind("", "s1", &[]), execute("", 0), sync()].concat(),
        // A Parse of a name in use: 42P05, and s1 is still `select 1`.
        [parse("s1", "select 'other'", &[]), sync()].concat(),
        // Wrong parameter count: the error names s1, checked below.
        [bind("", "s1", &[Some("7")]), sync()].concat(),
    ];
    #[rustfmt::skip]
    let expected = [
        "E:26000", "Z:I",
        "E:26000", "Z:I",                 // Describe s2
        "E:42601", "Z:I",
        "E:26000", "Z:I",                 // Describe s3
        "E:26000", "Z:I",                 // Bind s3
        "1", "Z:I",
        "T", "D", "C:SELECT 1", "Z:I",
        "E:26000", "Z:I",                 // Bind of the unnamed statement
        "1", "Z:I",
        "E:26000", "Z:I",
        "2", "D", "C:SELECT 1", "Z:I",    // s1 runs
        "E:42P05", "Z:I",
        "E:08P01", "Z:I",
    ];
    s.same_as_direct("statements after errors", &script, &expected)
        .await;
    let (seen, _client) = converse(s.proxy.addr(), &script, 13).await;
    let last = seen.errors().last().map(|e| e.fields()[&'M'].clone());
    assert_eq!(
        last.as_deref(),
        Some("bind message supplies 1 parameters, but prepared statement \"s1\" requires 0"),
        "{}",
        seen.describe()
    );
}

/// The bound on a server that stops answering while a client message
/// waits on it looks at what the backend does: a statement still running
/// is not a stall. A long read on the replica with a write pipelined
/// behind it (the write must wait for the read's connection to be done)
/// both complete, past the 10 s at which pgsplit looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_statement_with_a_message_waiting_behind_it_is_not_a_stall() {
    let c = Cluster::start();
    c.psql(c.primary_port(), "create table behind(x int)");
    c.wait_replica_caught_up();
    let p = Proxy::start(proxy_config(&c));
    let client = connect(p.port()).await;
    let (slow, write) = tokio::join!(
        client.simple_query("select pg_sleep(11)"),
        client.execute("insert into behind values (1)", &[]),
    );
    slow.expect("the long read completes");
    assert_eq!(write.expect("the write waiting behind it completes"), 1);
    assert_eq!(
        one(&client, "/* pgsplit:primary */ select count(*) from behind")
            .await
            .as_deref(),
        Some("1")
    );
}
