//! Frame-level fuzzing of the client session: no client, whatever valid-
//! looking frames it sends and however it leaves, can wedge its session or
//! keep a server connection after it has gone.
//!
//! Several raw clients at once log in and send random batches of Query,
//! Parse, Bind, Describe, Execute, Close, Flush, Sync, CopyData, CopyDone,
//! CopyFail and FunctionCall (known and unknown statement and portal
//! names, reads, writes, transaction control, DEALLOCATE, bad SQL, COPY in
//! both directions, now and then a malformed Describe or Close subtype),
//! written whole or in pieces. A reader task per client takes whatever
//! comes back, so a client never blocks pgsplit by not reading. Each
//! session ends at a random point: Terminate, a plain close, a close in
//! the middle of a frame, or a last Sync first.
//!
//! Nothing is asserted while the clients run; the counts are printed,
//! among them how often pgsplit had not closed the connection a few
//! seconds after a Terminate (PostgreSQL closes at once, even while it
//! skips to Sync after an error). That is not asserted: a correct pgsplit
//! may still be working through statements queued before the Terminate,
//! each waiting up to pool_timeout for a connection while other clients
//! hold the small pools in their transactions. Afterwards:
//! - every session has ended: SHOW CLIENTS lists none of the fuzz user's;
//! - no server connection is checked out or parked (SHOW POOLS);
//! - no backend of the fuzz user is left 'active' or 'idle in transaction'
//!   on the primary or the replica (pg_stat_activity);
//! - pgsplit still serves a normal client, reads and writes;
//! - no thread of pgsplit panicked (a panic ends one client task only, so
//!   the proxy would go on serving and nothing else would show it).
//!
//! The frames are deterministic from a seed, printed at the start:
//! `PGSPLIT_FUZZ_SEED=<seed>` replays it (timing still varies), and
//! `PGSPLIT_FUZZ_SECONDS` sets how long the clients run (default 20; the
//! issue's acceptance run is 60):
//!
//! ```text
//! PGSPLIT_FUZZ_SEED=42 PGSPLIT_FUZZ_SECONDS=60 cargo test --test session_fuzz -- --nocapture
//! ```
//!
//! Two ignored tests use the same frames to compare with PostgreSQL:
//! `random_frames_straight_to_postgresql` runs the clients against the
//! primary (the report shows what PostgreSQL itself answers), and
//! `differences_from_postgresql` sends one client's batches to both in
//! lock step and prints every answer that differs.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgsplit::config::{Config, PoolSettings, Pools};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use support::admin::{console, settled_for};
use support::cluster::Cluster;
use support::panics;
use support::proxy::{code_of, message_of, proxy_config, try_connect, Proxy};
use support::wire::{frame, Message, RawClient, Reader};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// Concurrent clients.
const CLIENTS: u64 = 8;
/// The role the clients log in as: their pools and backends are told apart
/// from the checker's by it.
const USER: &str = "fuzz";
/// How long pgsplit may take, once every client has gone, to end their
/// sessions and let go of their server connections.
const SETTLE: Duration = Duration::from_secs(15);
/// A write pgsplit has not taken in this long means it stopped reading.
const WRITE_STALL: Duration = Duration::from_secs(3);
/// How long after a client's Terminate the client waits for pgsplit to
/// close the connection before it closes it itself (and counts it).
const TERMINATE_GRACE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_from_many_clients_leave_nothing_behind() {
    panics::record();
    let (seed, seconds) = seed_and_seconds();
    let cluster = fuzz_cluster();
    let proxy = Proxy::start(fuzz_config(&cluster));
    let console = console(proxy.port()).await;
    let report = fuzz(proxy.addr(), seed, seconds).await;

    // All clients have gone. What is left?
    let mut failures = Vec::new();
    if let Err(still) = settled_for(&console, Some(USER), SETTLE).await {
        failures.push(format!(
            "{SETTLE:?} after the last client left pgsplit still holds:\n     {}",
            still.join("\n     ")
        ));
    }
    for (server, port) in [
        ("primary", cluster.primary_port()),
        ("replica", cluster.replica_port()),
    ] {
        if let Err(busy) = backends_settle(&cluster, port).await {
            failures.push(format!(
                "{SETTLE:?} after the last client left, backends of {USER} on the {server} are still busy:\n     {}",
                busy.join("\n     ")
            ));
        }
    }
    if let Err(e) = serves_a_normal_client(proxy.port()).await {
        failures.push(format!(
            "after the fuzzing pgsplit does not serve a normal client: {e}"
        ));
    }
    let panics = panics::recorded();
    if !panics.is_empty() {
        failures.push(format!(
            "pgsplit panicked:\n     {}",
            panics.join("\n     ")
        ));
    }
    assert!(
        failures.is_empty(),
        "session fuzz, seed {seed} (PGSPLIT_FUZZ_SEED={seed} PGSPLIT_FUZZ_SECONDS={seconds} to replay):\n - {}\n{report}",
        failures.join("\n - ")
    );
}

/// The same clients straight to the primary, for comparison: what
/// PostgreSQL itself answers to these frames (the report's counts), and
/// that its backends settle. Run by hand:
/// `cargo test --test session_fuzz -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a baseline to compare the report with, not a check of pgsplit"]
async fn random_frames_straight_to_postgresql() {
    let (seed, seconds) = seed_and_seconds();
    let cluster = fuzz_cluster();
    let primary = cluster.primary_addr().parse().unwrap();
    let report = fuzz(primary, seed, seconds).await;
    if let Err(busy) = backends_settle(&cluster, cluster.primary_port()).await {
        panic!(
            "PostgreSQL's own backends of {USER} are still busy:\n     {}\n{report}",
            busy.join("\n     ")
        );
    }
}

/// The seed (PGSPLIT_FUZZ_SEED, else a random one) and how long the clients
/// run (PGSPLIT_FUZZ_SECONDS, else 20), printed.
fn seed_and_seconds() -> (u64, u64) {
    let seed: u64 = match std::env::var("PGSPLIT_FUZZ_SEED") {
        Ok(s) => s.trim().parse().expect("PGSPLIT_FUZZ_SEED must be a u64"),
        Err(_) => rand::random(),
    };
    let seconds: u64 = std::env::var("PGSPLIT_FUZZ_SECONDS")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .expect("PGSPLIT_FUZZ_SECONDS must be a number")
        })
        .unwrap_or(20);
    eprintln!(
        "session fuzz: seed {seed}, {CLIENTS} clients for {seconds} s \
         (replay: PGSPLIT_FUZZ_SEED={seed} PGSPLIT_FUZZ_SECONDS={seconds})"
    );
    (seed, seconds)
}

/// A cluster with the fuzz user and its two tables.
fn fuzz_cluster() -> Cluster {
    let cluster = Cluster::start();
    cluster.psql(
        cluster.primary_port(),
        &format!(
            "create role {USER} login; \
             create table fuzz_t(id int primary key, n int not null default 0); \
             insert into fuzz_t select generate_series(1, 10); \
             create table fuzz_log(v text); \
             alter table fuzz_t owner to {USER}; alter table fuzz_log owner to {USER}"
        ),
    );
    cluster.wait_replica_caught_up();
    cluster
}

/// Runs `CLIENTS` fuzzing clients against `addr` for `seconds`, each
/// seeded from `seed`; returns the report of what they sent and saw.
async fn fuzz(addr: SocketAddr, seed: u64, seconds: u64) -> String {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let rng = StdRng::seed_from_u64(seed ^ (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let stats = stats.clone();
            tokio::spawn(async move {
                let mut client = Fuzzer { rng, stats };
                while Instant::now() < deadline {
                    client.session(addr).await;
                }
            })
        })
        .collect();
    for w in workers {
        // Every step of a session has a timeout: a worker that does not
        // end is a bug in this test.
        timeout(Duration::from_secs(seconds + 60), w)
            .await
            .expect("a fuzz client did not finish")
            .expect("a fuzz client panicked");
    }
    let report = stats.lock().unwrap().report();
    eprintln!("{report}");
    report
}

/// Small pools, so that connections kept by departed clients starve the
/// others quickly, and a short pool_timeout so that starved clients get
/// their 53300 quickly and go on.
fn fuzz_config(cluster: &Cluster) -> Config {
    let pool = PoolSettings {
        pool_size: 2,
        max_overflow: 3,
        pool_timeout: 2.0,
        ..PoolSettings::default()
    };
    Config {
        pool: Pools {
            primary: pool.clone(),
            replica: pool,
        },
        shutdown_timeout: 1.0,
        ..proxy_config(cluster)
    }
}

/// Waits until no backend of the fuzz user on the server at `port` is
/// running something or sitting in a transaction; else lists them.
async fn backends_settle(cluster: &Cluster, port: u16) -> Result<(), Vec<String>> {
    let busy = format!(
        "select pid || ' ' || state || ' for ' || round(extract(epoch from now() - state_change)) \
         || ' s: ' || left(query, 60) from pg_stat_activity \
         where usename = '{USER}' and state <> 'idle' and pid <> pg_backend_pid()"
    );
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = cluster.psql(port, &busy);
        if now.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(now.lines().map(str::to_string).collect());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A driver's client logs in as the fuzz user, reads and writes.
async fn serves_a_normal_client(port: u16) -> Result<(), String> {
    let work = async {
        let client = try_connect(&format!(
            "host=127.0.0.1 port={port} user={USER} dbname=postgres"
        ))
        .await
        .map_err(|e| {
            format!(
                "login: {} {}",
                code_of(&e).unwrap_or_default(),
                message_of(&e)
            )
        })?;
        for sql in [
            "select count(*) from fuzz_t",
            "update fuzz_t set n = n + 1 where id = 10",
        ] {
            client.simple_query(sql).await.map_err(|e| {
                format!(
                    "{sql}: {} {}",
                    code_of(&e).unwrap_or_default(),
                    message_of(&e)
                )
            })?;
        }
        Ok(())
    };
    timeout(Duration::from_secs(15), work)
        .await
        .unwrap_or_else(|_| Err("no answer within 15 s".into()))
}

/// What the clients sent and saw, for the report.
#[derive(Default)]
struct Stats {
    sessions: u64,
    login_failures: BTreeMap<String, u64>,
    /// Frontend messages by type.
    sent: BTreeMap<char, u64>,
    /// Backend messages by type.
    received: BTreeMap<char, u64>,
    /// ErrorResponses by severity and SQLSTATE, with one message each.
    errors: BTreeMap<String, (u64, String)>,
    /// How sessions ended, as the client chose.
    endings: BTreeMap<&'static str, u64>,
    /// pgsplit closed the connection while the client was still using it.
    closed_by_pgsplit: u64,
    /// pgsplit took none of a write's bytes for `WRITE_STALL`.
    stalled_writes: u64,
    /// After Sync, the client waited a second for a ReadyForQuery that did
    /// not come (a slow statement or a pool wait can explain some).
    unanswered_syncs: u64,
    /// After Terminate, pgsplit had not closed the connection within
    /// `TERMINATE_GRACE`. PostgreSQL closes at once, even while it skips
    /// to Sync after an error (Terminate ends the skipping).
    open_after_terminate: u64,
}

impl Stats {
    fn report(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, (n, m))| format!("{k} x{n} (e.g. {m:?})"))
            .collect();
        format!(
            "session fuzz report: {} sessions; endings {:?}\n  \
             sent {:?}\n  received {:?}\n  errors:\n    {}\n  \
             login failures {:?}\n  closed by pgsplit mid-session {}, stalled writes {}, \
             unanswered Syncs {}, open {TERMINATE_GRACE:?} after Terminate {}",
            self.sessions,
            self.endings,
            self.sent,
            self.received,
            errors.join("\n    "),
            self.login_failures,
            self.closed_by_pgsplit,
            self.stalled_writes,
            self.unanswered_syncs,
            self.open_after_terminate,
        )
    }

    fn saw(&mut self, m: &Message) {
        *self.received.entry(m.tag as char).or_default() += 1;
        if m.tag == b'E' {
            let f = m.fields();
            let severity = f.get(&'V').or(f.get(&'S')).cloned().unwrap_or_default();
            let key = format!(
                "{severity} {}",
                f.get(&'C').map(String::as_str).unwrap_or("?")
            );
            let entry = self
                .errors
                .entry(key)
                .or_insert_with(|| (0, f.get(&'M').cloned().unwrap_or_default()));
            entry.0 += 1;
        }
    }
}

/// One client of the fuzz: its random source and where it reports.
struct Fuzzer {
    rng: StdRng,
    stats: Arc<Mutex<Stats>>,
}

/// How a session ends.
#[derive(Clone, Copy)]
enum Ending {
    Terminate,
    Close,
    /// Closes after writing part of a frame.
    MidFrame,
    /// Sync, a second's wait for its ReadyForQuery, Terminate.
    SyncThenTerminate,
}

/// A session's reading side: a task that counts what arrives.
struct Listener {
    task: tokio::task::JoinHandle<()>,
    /// ReadyForQuery messages so far.
    ready: watch::Receiver<u64>,
    /// Set when pgsplit closed the connection.
    closed: watch::Receiver<bool>,
}

fn listen(read: Reader<OwnedReadHalf>, stats: Arc<Mutex<Stats>>) -> Listener {
    let (ready_tx, ready) = watch::channel(0u64);
    let (closed_tx, closed) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut read = read;
        loop {
            match read.next().await {
                Ok(Some(m)) => {
                    stats.lock().unwrap().saw(&m);
                    if m.tag == b'Z' {
                        ready_tx.send_modify(|n| *n += 1);
                    }
                }
                Ok(None) | Err(_) => {
                    let _ = closed_tx.send(true);
                    return;
                }
            }
        }
    });
    Listener {
        task,
        ready,
        closed,
    }
}

impl Listener {
    /// Waits up to `within` for a ReadyForQuery after the `seen`th.
    async fn ready_after(&mut self, seen: u64, within: Duration) -> bool {
        timeout(within, self.ready.wait_for(|&n| n > seen))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

impl Fuzzer {
    /// Logs in, sends random batches, leaves.
    async fn session(&mut self, addr: SocketAddr) {
        let client = match RawClient::try_login(addr, USER, "postgres").await {
            Ok(c) => c,
            Err(e) => {
                *self
                    .stats
                    .lock()
                    .unwrap()
                    .login_failures
                    .entry(e)
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        self.stats.lock().unwrap().sessions += 1;
        let RawClient { reader, mut writer } = client;
        let mut listener = listen(reader, self.stats.clone());
        let batches = self.rng.gen_range(1..=12);
        let ending = *[
            Ending::Terminate,
            Ending::Terminate,
            Ending::Close,
            Ending::Close,
            Ending::MidFrame,
            Ending::SyncThenTerminate,
        ]
        .choose(&mut self.rng)
        .unwrap();
        let mut ended_early = false;
        for _ in 0..batches {
            let batch = self.batch();
            if !self.write(&mut writer, &batch).await {
                ended_early = true;
                break;
            }
            if listener.is_closed() {
                self.stats.lock().unwrap().closed_by_pgsplit += 1;
                ended_early = true;
                break;
            }
            self.pause(&mut listener).await;
        }
        if !ended_early {
            self.leave(ending, &mut writer, &mut listener).await;
        }
        // Closes the socket, whatever pgsplit is doing.
        listener.task.abort();
        let _ = listener.task.await;
        drop(writer);
    }

    /// Writes `bytes` whole or in a few pieces; false when pgsplit does
    /// not take them (closed, or stopped reading).
    async fn write(&mut self, writer: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> bool {
        let pieces = if bytes.len() > 1 && self.rng.gen_bool(0.2) {
            let cut = self.rng.gen_range(1..bytes.len());
            vec![&bytes[..cut], &bytes[cut..]]
        } else {
            vec![bytes]
        };
        for piece in pieces {
            match timeout(WRITE_STALL, writer.write_all(piece)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => {
                    self.stats.lock().unwrap().stalled_writes += 1;
                    return false;
                }
            }
            if self.rng.gen_bool(0.3) {
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(1..20))).await;
            }
        }
        true
    }

    /// Between batches: sometimes wait for an answer, sometimes not.
    async fn pause(&mut self, listener: &mut Listener) {
        match self.rng.gen_range(0..10) {
            0..=3 => {
                let seen = *listener.ready.borrow();
                listener.ready_after(seen, Duration::from_millis(500)).await;
            }
            4..=7 => {
                tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..20))).await;
            }
            _ => {}
        }
    }

    async fn leave(
        &mut self,
        ending: Ending,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        listener: &mut Listener,
    ) {
        let name = match ending {
            Ending::Terminate => {
                self.after_terminate(writer, listener).await;
                "terminate"
            }
            Ending::Close => "close",
            Ending::MidFrame => {
                let f = self.message();
                let cut = self.rng.gen_range(1..f.len());
                let _ = timeout(WRITE_STALL, writer.write_all(&f[..cut])).await;
                "mid-frame"
            }
            Ending::SyncThenTerminate => {
                let seen = *listener.ready.borrow();
                let _ = timeout(WRITE_STALL, writer.write_all(&frame::sync())).await;
                if !listener.ready_after(seen, Duration::from_secs(1)).await {
                    self.stats.lock().unwrap().unanswered_syncs += 1;
                }
                self.after_terminate(writer, listener).await;
                "sync, terminate"
            }
        };
        *self.stats.lock().unwrap().endings.entry(name).or_default() += 1;
    }

    /// Terminate, then a wait for pgsplit to close the connection.
    async fn after_terminate(
        &mut self,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        listener: &mut Listener,
    ) {
        let _ = timeout(WRITE_STALL, writer.write_all(&frame::terminate())).await;
        let closed = timeout(TERMINATE_GRACE, listener.closed.wait_for(|&c| c)).await;
        if !closed.is_ok_and(|r| r.is_ok()) {
            self.stats.lock().unwrap().open_after_terminate += 1;
        }
    }

    /// One to six random messages, often ending in Sync.
    fn batch(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..self.rng.gen_range(1..=6) {
            out.extend(self.message());
        }
        if self.rng.gen_bool(0.5) {
            out.extend(frame::sync());
            self.count('S');
        }
        out
    }

    fn count(&self, tag: char) {
        *self.stats.lock().unwrap().sent.entry(tag).or_default() += 1;
    }

    /// One random, valid-looking frontend message.
    fn message(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        let f = match r.gen_range(0..100) {
            0..=19 => frame::query(pick(r, QUERIES)),
            20..=31 => {
                let (sql, types) = pick(r, PARSE_TEXTS);
                frame::parse(pick(r, STATEMENTS), sql, types)
            }
            32..=46 => {
                let params = pick(r, PARAMS);
                frame::bind(pick(r, PORTALS), pick(r, STATEMENTS), params)
            }
            47..=54 => {
                let (kind, name) = target(r);
                frame::describe(kind, name)
            }
            55..=69 => frame::execute(pick(r, PORTALS), pick(r, &[0, 0, 1])),
            70..=75 => {
                let (kind, name) = target(r);
                frame::close(kind, name)
            }
            76..=79 => frame::flush(),
            80..=89 => frame::sync(),
            90..=93 => frame::copy_data(b"fuzz\n"),
            94..=95 => frame::copy_done(),
            96 => frame::copy_fail("fuzz gave up"),
            // int4pl(1, 2), now(), and a function that does not exist.
            _ => match r.gen_range(0..3) {
                0 => frame::function_call(177, &["1", "2"]),
                1 => frame::function_call(1299, &[]),
                _ => frame::function_call(4_000_000_000, &[]),
            },
        };
        self.count(f[0] as char);
        f
    }
}

fn pick<T: Copy>(rng: &mut StdRng, from: &[T]) -> T {
    *from.choose(rng).unwrap()
}

/// A Describe or Close target: statement or portal, now and then a subtype
/// that is neither (PostgreSQL answers ERROR 08P01 and goes on).
fn target(rng: &mut StdRng) -> (u8, &'static str) {
    match rng.gen_range(0..20) {
        0 => (b'X', ""),
        1..=10 => (b'S', pick(rng, STATEMENTS)),
        _ => (b'P', pick(rng, PORTALS)),
    }
}

/// Statement names: the unnamed one, two the client may have prepared,
/// and one it never does.
const STATEMENTS: &[&str] = &["", "s1", "s2", "nosuch"];
const PORTALS: &[&str] = &["", "p1", "nosuch"];
/// Bind parameters: none, one, a NULL (wrong counts give errors too).
const PARAMS: &[&[Option<&str>]] = &[&[], &[Some("7")], &[None]];

const QUERIES: &[&str] = &[
    // reads
    "select 1",
    "select n from fuzz_t where id = 1",
    "select count(*) from fuzz_t",
    "select pg_sleep(0.05)",
    "select * from fuzz_t where id = 2 for update",
    // writes
    "update fuzz_t set n = n + 1 where id = 1",
    "insert into fuzz_log values ('q')",
    // transaction control
    "begin",
    "begin",
    "begin read only",
    "commit",
    "rollback",
    // statements pgsplit answers or tracks itself
    "deallocate s1",
    "deallocate nosuch",
    "deallocate all",
    "set application_name = 'fuzz'",
    "reset all",
    // bad ones
    "selec 1",
    "select * from no_such_table",
    "select 1/0",
    // the rest
    "",
    "select 1; select 2",
    "copy fuzz_log from stdin",
    "copy fuzz_t to stdout",
    "select pg_sleep(0.5)",
];

/// Parse texts, with parameter type OIDs (23: int4).
const PARSE_TEXTS: &[(&str, &[u32])] = &[
    ("select 1", &[]),
    ("select $1::int", &[]),
    ("select $1", &[23]),
    ("select n from fuzz_t where id = $1", &[23]),
    ("update fuzz_t set n = n + 1 where id = 3", &[]),
    ("insert into fuzz_log values ('p')", &[]),
    ("begin", &[]),
    ("commit", &[]),
    ("selec 1", &[]),
    ("select * from no_such_table", &[]),
    ("copy fuzz_log from stdin", &[]),
    ("copy fuzz_t to stdout", &[]),
];

/// Not a check of the session's end, an exploration: one client's random
/// batches sent both straight to the primary and through pgsplit, in lock
/// step, each batch followed by Sync and a marker query; the answers
/// (message types, SQLSTATEs, command tags, transaction status) are
/// compared and every difference is printed. The two sides use databases
/// of their own, so that their writes and locks never meet. Run by hand:
/// `cargo test --test session_fuzz differences -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "an exploration that prints where pgsplit answers otherwise than PostgreSQL"]
async fn differences_from_postgresql() {
    let (seed, seconds) = seed_and_seconds();
    let cluster = Cluster::start();
    cluster.psql(cluster.primary_port(), &format!("create role {USER} login"));
    for db in ["fuzz_direct", "fuzz_proxy"] {
        cluster.psql(
            cluster.primary_port(),
            &format!("create database {db} owner {USER}"),
        );
        support::proxy::psql_args(
            cluster.primary_port(),
            &[
                "-U",
                USER,
                "-d",
                db,
                "-c",
                "create table fuzz_t(id int primary key, n int not null default 0); \
                 insert into fuzz_t select generate_series(1, 10); \
                 create table fuzz_log(v text)",
            ],
            &[],
        )
        .unwrap();
    }
    cluster.wait_replica_caught_up();
    let proxy = Proxy::start(fuzz_config(&cluster));
    let primary: SocketAddr = cluster.primary_addr().parse().unwrap();

    let mut fuzzer = Fuzzer {
        rng: StdRng::seed_from_u64(seed),
        stats: Arc::new(Mutex::new(Stats::default())),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut rounds, mut differences) = (0, Vec::new());
    while Instant::now() < deadline && differences.len() < 30 {
        let mut direct = RawClient::login(primary, USER, "fuzz_direct").await;
        let mut proxied = RawClient::login(proxy.addr(), USER, "fuzz_proxy").await;
        let mut history = Vec::new();
        for _ in 0..fuzzer.rng.gen_range(1..=10) {
            rounds += 1;
            let mut bytes = fuzzer.batch();
            bytes.extend(frame::sync());
            bytes.extend(frame::query("select 'mark'"));
            history.push(describe_frames(&bytes));
            let a = exchange(&mut direct, &bytes).await;
            let b = exchange(&mut proxied, &bytes).await;
            if a.summary() != b.summary() || a.closed != b.closed {
                differences.push(format!(
                    "after {}\n    sent      {}\n    direct    {}\n    pgsplit   {}",
                    history[..history.len() - 1].join("\n              "),
                    history.last().unwrap(),
                    a.describe(),
                    b.describe()
                ));
                break;
            }
            if a.closed {
                break;
            }
        }
    }
    eprintln!(
        "seed {seed}: {rounds} batches, {} differences:\n{}",
        differences.len(),
        differences.join("\n\n")
    );
}

/// Sends `bytes` and reads until the marker's row and ReadyForQuery, a
/// close, 300 ms of quiet, or 5 s.
async fn exchange(c: &mut RawClient, bytes: &[u8]) -> support::wire::Transcript {
    let mut t = support::wire::Transcript::default();
    if timeout(WRITE_STALL, c.writer.write_all(bytes))
        .await
        .is_err()
    {
        t.timed_out = true;
        return t;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut marked = false;
    loop {
        let quiet = Instant::now() + Duration::from_millis(300);
        match tokio::time::timeout_at(quiet.min(deadline), c.reader.next()).await {
            Err(_) => {
                t.timed_out = Instant::now() >= deadline;
                return t;
            }
            Ok(Ok(Some(m))) => {
                let done = marked && m.tag == b'Z';
                marked = m.tag == b'D' && m.body.windows(4).any(|w| w == b"mark");
                t.messages.push(m);
                if done {
                    return t;
                }
            }
            Ok(_) => {
                t.closed = true;
                return t;
            }
        }
    }
}

/// Frontend frames in words: `P(s1|select 1|…) B(…) S`.
fn describe_frames(mut bytes: &[u8]) -> String {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let body = &bytes[5..(1 + len).min(bytes.len())];
        let text: String = body
            .iter()
            .map(|&b| match b {
                0 => '|',
                32..=126 => b as char,
                _ => '.',
            })
            .collect();
        out.push(format!(
            "{}({})",
            bytes[0] as char,
            text.trim_end_matches('|')
        ));
        bytes = &bytes[(1 + len).min(bytes.len())..];
    }
    out.join(" ")
}
