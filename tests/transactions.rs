//! Reads inside transactions go to replicas: the spec of that issue, against
//! a real PostgreSQL 15 primary and streaming replica (it fails on the code
//! that sends everything between BEGIN and COMMIT to the primary).
//!
//! Most tests are scripts of simple queries and extended-protocol batches
//! sent on a raw socket ([`Script`], tests/support/script.rs), run twice on
//! new connections: straight to the primary, then through pgsplit. For
//! every step pgsplit must answer what PostgreSQL answered (message types,
//! command tags, SQLSTATEs and messages of errors and warnings,
//! ReadyForQuery statuses; row contents aside, since the servers differ),
//! and the steps that select `inet_server_port()` first must have run where
//! the issue says (the replica for reads before anything needed the
//! primary, the primary for everything after). Some tests then check values
//! (now() stays, a snapshot is kept, a write is seen). Every wait is
//! bounded: a step that gets no ReadyForQuery within [`ANSWER_TIMEOUT`]
//! fails its test with what came.
//!
//! The rest use tokio-postgres (its transaction API), psql (its
//! AUTOCOMMIT off mode follows the transaction status pgsplit reports), many
//! clients at once (idle read transactions hold no server connection), and
//! the two settings of the issue, `transaction_reads` and
//! `idle_transaction_timeout`, which are given to pgsplit as TOML (see
//! [`with_settings`]) so that this file builds before they exist.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use pgsplit::config::{Config, PoolSettings, Pools, ReadOnlyTransactions};
use support::admin::{console, rows};
use support::cluster::{pg_bin, Cluster};
use support::drivers::output_within;
use support::panics;
use support::proxy::{code_of, message_of, proxy_config, try_connect, Proxy};
use support::script::{login, shape, Ends, Run, Script, Side, ANSWER_TIMEOUT};
use support::wire::frame::query;
use support::wire::{RawClient, Transcript};
use tokio_postgres::{Client, SimpleQueryMessage};

/// The tables every test reads and writes, created on the primary before
/// pgsplit starts (and replayed by the replica).
const SCHEMA: &str = "
create table lazy(id int primary key, n int not null);
insert into lazy select g, g * 10 from generate_series(1, 10) g;
create table lazy_log(id serial primary key, note text);
create sequence lazy_seq;
create function lazy_touch() returns int volatile language sql
  as $$ insert into lazy_log(note) values ('touch') returning id $$;
";

/// The read most scripts use: the server that ran it, and a row.
const READ: &str = "select inet_server_port(), n from lazy where id = 3";

// ---------------------------------------------------------------------------
// Set-up

/// A cluster with [`SCHEMA`] and pgsplit in front of it.
struct Setup {
    cluster: Cluster,
    proxy: Proxy,
}

impl Setup {
    /// pgsplit with [`base_config`].
    fn start() -> Setup {
        Self::start_with(|_, config| config)
    }

    /// pgsplit with [`base_config`] changed by `adjust`.
    fn start_with(adjust: impl FnOnce(&Cluster, Config) -> Config) -> Setup {
        panics::record();
        let cluster = Cluster::start();
        cluster.psql(cluster.primary_port(), SCHEMA);
        cluster.wait_replica_caught_up();
        let config = adjust(&cluster, base_config(&cluster));
        let proxy = Proxy::start(config);
        Setup { cluster, proxy }
    }

    fn primary(&self) -> SocketAddr {
        self.cluster.primary_addr().parse().unwrap()
    }

    /// See [`support::script::on_primary`].
    fn on_primary(&self, database: &str, sql: &str) -> Result<String, String> {
        support::script::on_primary(&self.cluster, database, sql)
    }

    fn wait_replica_caught_up(&self) {
        support::script::wait_replica_caught_up(&self.cluster);
    }

    /// A tokio-postgres client of pgsplit as `postgres`.
    async fn client(&self) -> Client {
        within(
            "login through pgsplit",
            try_connect(&format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10",
                self.proxy.port()
            )),
        )
        .await
        .unwrap_or_else(|e| panic!("login through pgsplit: {}", describe_error(&e)))
    }

    /// `script` straight to the primary and through pgsplit: pgsplit's
    /// answers and how they fall short (see [`Ends::compare`]).
    async fn compare(&self, script: &Script) -> (Run, Vec<String>) {
        self.ends().compare(script).await
    }

    /// [`Setup::compare`], panicking with every shortfall.
    async fn same_as_direct(&self, script: &Script) -> Run {
        self.ends().same_as_direct(script).await
    }

    fn ends(&self) -> Ends<'_> {
        Ends {
            cluster: &self.cluster,
            proxy: self.proxy.addr(),
        }
    }
}

/// pgsplit at its default settings in front of `cluster`, but for a
/// pool_timeout of 5 s (a starved pool fails a test quickly instead of in
/// 30 s) and a short shutdown_timeout (a stuck session does not hold up the
/// end of a failing test).
fn base_config(cluster: &Cluster) -> Config {
    let pool = PoolSettings {
        pool_timeout: 5.0,
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

/// `config` with the top-level settings in `toml` (for example
/// `transaction_reads = "primary"`). Built through pgsplit's own TOML
/// parser, so that a setting pgsplit does not have yet fails the test that
/// needs it, with pgsplit's message, rather than this file's build.
fn with_settings(config: Config, toml: &str) -> Config {
    let mut table = match toml::Value::try_from(&config).expect("a Config serializes") {
        toml::Value::Table(t) => t,
        other => panic!("a Config serialized to {other:?}"),
    };
    let extra: toml::Table = toml.parse().expect("the test's TOML parses");
    table.extend(extra);
    let text = toml::to_string(&table).expect("the merged settings serialize");
    Config::from_toml(&text)
        .unwrap_or_else(|e| panic!("pgsplit does not take `{toml}`, a setting of the issue: {e}"))
}

/// Small pools of `size` connections and no overflow for both roles, and a
/// short wait for one.
fn small_pools(mut config: Config, size: u32, wait: f64) -> Config {
    for pool in [&mut config.pool.primary, &mut config.pool.replica] {
        pool.pool_size = size;
        pool.max_overflow = 0;
        pool.pool_timeout = wait;
    }
    config
}

/// Awaits `f` for at most [`ANSWER_TIMEOUT`]; panics naming `what` after.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWER_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_TIMEOUT:?}"))
}

fn describe_error(e: &tokio_postgres::Error) -> String {
    format!("{} {}", code_of(e).unwrap_or_default(), message_of(e))
}

/// Rows of a simple query as text, bounded in time.
async fn simple(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let answer = within(sql, client.simple_query(sql)).await;
    let msgs = answer.map_err(|e| describe_error(&e))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

// ---------------------------------------------------------------------------
// 1. Transactions start lazily; their reads go to the replica.

/// Every way to begin a transaction at READ COMMITTED leaves its reads on
/// the replica while nothing needed the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_begin_run_on_the_replica() {
    let s = Setup::start();
    let mut failures = Vec::new();
    for begin in [
        "begin",
        "BEGIN WORK",
        "begin transaction",
        "start transaction",
        "begin isolation level read committed",
        "begin read write",
        "begin read only",
        "start transaction isolation level read committed, read write, not deferrable",
    ] {
        let script = Script::new(format!("{begin}; two reads; commit"))
            .q(begin)
            .on(Side::Replica, READ)
            .on(
                Side::Replica,
                "select inet_server_port(), count(*) from lazy",
            )
            .q("commit")
            .expect(&["C:COMMIT", "Z:I"]);
        let (_, f) = s.compare(&script).await;
        failures.extend(f.into_iter().map(|f| format!("{begin}: {f}")));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// BEGIN inside an extended-protocol batch (PgJDBC with autocommit off
/// sends BEGIN and its first statement in one batch; asyncpg sends BEGIN
/// then prepares its statements) is as lazy as a simple one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_protocol_begin_is_lazy_too() {
    let s = Setup::start();
    let script = Script::new("BEGIN and a read in one batch, another read, COMMIT")
        .ext_on(Side::Replica, &["BEGIN", READ])
        .expect(&[
            "1",
            "2",
            "n",
            "C:BEGIN",
            "1",
            "2",
            "T",
            "D",
            "C:SELECT 1",
            "Z:T",
        ])
        .ext_on(
            Side::Replica,
            &["select inet_server_port(), count(*) from lazy"],
        )
        .ext(&["COMMIT"])
        .expect(&["1", "2", "n", "C:COMMIT", "Z:I"]);
    s.same_as_direct(&script).await;

    let script = Script::new("asyncpg's shape: BEGIN as a simple query, then batches")
        .q("BEGIN;")
        .ext_on(Side::Replica, &[READ])
        .ext_on(Side::Replica, &[READ])
        .q("COMMIT;");
    s.same_as_direct(&script).await;
}

/// PgJDBC's savepoint-free write after its reads: the write and the reads
/// after it run on the primary, in one transaction that sees the write;
/// once committed, the client's next transaction sees it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_write_sees_it_on_the_primary() {
    let s = Setup::start();
    let script = Script::new("read, write, read, commit, read again")
        .q("begin")
        .on(
            Side::Replica,
            "select inet_server_port(), n from lazy where id = 1",
        )
        .name("before")
        .q("update lazy set n = n + 1 where id = 1")
        .expect(&["C:UPDATE 1", "Z:T"])
        .on(
            Side::Primary,
            "select inet_server_port(), n from lazy where id = 1",
        )
        .name("in")
        .on(
            Side::Primary,
            "select inet_server_port(), count(*) from lazy",
        )
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"])
        .q("begin")
        .q("select inet_server_port(), n from lazy where id = 1 /* next transaction */")
        .name("next")
        .q("commit");
    let run = s.same_as_direct(&script).await;
    let before: i64 = run.value("before", 1).unwrap().parse().unwrap();
    assert_eq!(
        run.value("in", 1),
        Some((before + 1).to_string()),
        "the transaction's read after its write does not see the write"
    );
    assert_eq!(
        run.value("next", 1),
        Some((before + 1).to_string()),
        "the client's next transaction does not see its committed write"
    );
}

/// The first statement that needs the primary opens the transaction there
/// (BEGIN, then it), and what follows runs on that connection: the
/// statement is seen on the primary in a transaction still open, as it is
/// directly, and the next read runs on the primary. Each script ends in a
/// ROLLBACK, so that it can run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_need_the_primary_open_the_transaction_there() {
    let s = Setup::start();
    let statements = [
        "update lazy set n = n where id = 1",
        "insert into lazy_log(note) values ('lazy')",
        "delete from lazy_log where id < 0",
        "create table lazy_ddl(x int)",
        "set local statement_timeout = '5s'",
        "savepoint lazy_sp",
        "declare lazy_c cursor for select id from lazy",
        "lock table lazy in access share mode",
        "select n from lazy where id = 1 for update",
        "select n from lazy where id = 1 for share",
        "select nextval('lazy_seq')",
        "select lazy_touch()",
        "select pg_advisory_xact_lock(42)",
        "select now()",
        "select current_timestamp",
        "select transaction_timestamp()",
        "select localtime",
        "select localtimestamp",
        "select txid_current()",
        "select txid_current_if_assigned()",
        "select txid_current_snapshot()",
        "select pg_current_xact_id()",
        "select pg_current_xact_id_if_assigned()",
        "select pg_export_snapshot()",
        "prepare lazy_p as select 1",
    ];
    let mut failures = Vec::new();
    for statement in statements {
        let observe = format!(
            "select count(*) from pg_stat_activity where state = 'idle in transaction' \
             and position('{}' in query) > 0",
            statement.replace('\'', "''")
        );
        let script = Script::new(statement)
            .q("begin")
            .on(Side::Replica, READ)
            .q(statement)
            .observe(&observe)
            .on(Side::Primary, READ)
            .q("rollback")
            .expect(&["C:ROLLBACK", "Z:I"]);
        let (_, f) = s.compare(&script).await;
        failures.extend(f.into_iter().map(|f| format!("{statement}: {f}")));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// The BEGIN that opens the transaction on the primary carries the
/// client's options: a READ ONLY transaction refuses a write (25006), and
/// READ WRITE overrides a session's default_transaction_read_only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_options_of_begin_reach_the_primary() {
    let s = Setup::start();
    let script = Script::new("begin read only; read; write")
        .q("begin read only")
        .on(Side::Replica, READ)
        .q("insert into lazy_log(note) values ('read only')")
        .expect(&["E:25006", "Z:E"])
        .q("rollback")
        .expect(&["C:ROLLBACK", "Z:I"]);
    s.same_as_direct(&script).await;

    let script = Script::new("default_transaction_read_only on; begin read write; read; write")
        .q("set default_transaction_read_only = on")
        .q("begin read write")
        .on(Side::Replica, READ)
        .q("insert into lazy_log(note) values ('read write')")
        .expect(&["C:INSERT 0 1", "Z:T"])
        .on(
            Side::Primary,
            "select inet_server_port(), current_setting('transaction_read_only')",
        )
        .q("rollback");
    s.same_as_direct(&script).await;
}

// ---------------------------------------------------------------------------
// 2. What reads transaction state stays with the transaction.

/// now() is the transaction's start, one value throughout it, as on
/// PostgreSQL: CURRENT_TIMESTAMP after a pause, and transaction_timestamp()
/// after another, read the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_is_one_value_throughout_a_transaction() {
    let s = Setup::start();
    for first_read in [true, false] {
        let mut script = Script::new(format!(
            "now() {} a read",
            if first_read { "after" } else { "without" }
        ))
        .q("begin");
        if first_read {
            script = script.on(Side::Replica, READ);
        }
        let script = script
            .on(Side::Primary, "select inet_server_port(), now()::text")
            .name("now")
            .pause(300)
            .on(
                Side::Primary,
                "select inet_server_port(), current_timestamp::text",
            )
            .name("current_timestamp")
            .pause(300)
            .on(Side::Primary, READ)
            .on(
                Side::Primary,
                "select inet_server_port(), transaction_timestamp()::text",
            )
            .name("transaction_timestamp")
            .q("commit")
            .expect(&["C:COMMIT", "Z:I"]);
        let run = s.same_as_direct(&script).await;
        let now = run.value("now", 1);
        assert!(now.is_some(), "{}: now() returned nothing", script.what);
        for later in ["current_timestamp", "transaction_timestamp"] {
            assert_eq!(
                run.value(later, 1),
                now,
                "{}: {later} later in the transaction differs from now() \
                 (PostgreSQL gives one value per transaction)",
                script.what
            );
        }
    }
}

/// SET LOCAL holds for the rest of its transaction, and is gone after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_local_holds_until_the_transaction_ends() {
    let s = Setup::start();
    let script = Script::new("read; set local; show; read; commit; show")
        .q("begin")
        .on(Side::Replica, READ)
        .q("set local statement_timeout = '4321ms'")
        .expect(&["C:SET", "Z:T"])
        .q("show statement_timeout")
        .name("shown")
        .on(
            Side::Primary,
            "select inet_server_port(), current_setting('statement_timeout')",
        )
        .name("read")
        .q("commit")
        .q("show statement_timeout")
        .name("after");
    let run = s.same_as_direct(&script).await;
    assert_eq!(run.value("shown", 0).as_deref(), Some("4321ms"));
    assert_eq!(run.value("read", 1).as_deref(), Some("4321ms"));
    assert_eq!(
        run.value("after", 0).as_deref(),
        Some("0"),
        "SET LOCAL outlived its transaction"
    );

    let script = Script::new("set local first; show; rollback; show")
        .q("begin")
        .q("set local work_mem = '3MB'")
        .on(
            Side::Primary,
            "select inet_server_port(), current_setting('work_mem')",
        )
        .name("in")
        .q("rollback")
        .q("show work_mem")
        .name("after");
    let run = s.same_as_direct(&script).await;
    assert_eq!(run.value("in", 1).as_deref(), Some("3MB"));
    assert_eq!(
        run.value("after", 0).as_deref(),
        Some("4MB"),
        "SET LOCAL outlived its transaction"
    );
}

/// SAVEPOINT, ROLLBACK TO (also out of an error), RELEASE; the rolled-back
/// write is gone, the others commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_and_rollback_to_work() {
    let s = Setup::start();
    let script = Script::new("savepoints")
        .q("begin")
        .on(Side::Replica, READ)
        .q("savepoint a")
        .expect(&["C:SAVEPOINT", "Z:T"])
        .q("insert into lazy values (100, 1)")
        .on(
            Side::Primary,
            "select inet_server_port(), count(*) from lazy where id = 100",
        )
        .name("inserted")
        .q("rollback to savepoint a")
        .expect(&["C:ROLLBACK", "Z:T"])
        .on(
            Side::Primary,
            "select inet_server_port(), count(*) from lazy where id = 100",
        )
        .name("rolled back")
        .q("savepoint b")
        .q("select 1/0")
        .expect(&["E:22012", "Z:E"])
        .q("select 1")
        .expect(&["E:25P02", "Z:E"])
        .q("rollback to b")
        .expect(&["C:ROLLBACK", "Z:T"])
        .q("insert into lazy values (101, 1)")
        .q("release savepoint a")
        .expect(&["C:RELEASE", "Z:T"])
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"])
        .q("delete from lazy where id in (100, 101)");
    let (run, mut failures) = s.compare(&script).await;
    if run.value("inserted", 1).as_deref() != Some("1") {
        failures.push(format!(
            "the insert after SAVEPOINT not seen: {:?}",
            run.value("inserted", 1)
        ));
    }
    if run.value("rolled back", 1).as_deref() != Some("0") {
        failures.push(format!(
            "the insert rolled back to the savepoint still seen: {:?}",
            run.value("rolled back", 1)
        ));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// DECLARE, FETCH, MOVE, CLOSE after reads, and a cursor as the first
/// statement of a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_work() {
    let s = Setup::start();
    let script = Script::new("a cursor after a read")
        .q("begin")
        .on(Side::Replica, READ)
        .q("declare c scroll cursor for select id from lazy where id <= 10 order by id")
        .expect(&["C:DECLARE CURSOR", "Z:T"])
        .q("fetch 2 from c")
        .expect(&["T", "D", "D", "C:FETCH 2", "Z:T"])
        .name("first")
        .on(Side::Primary, READ)
        .q("move 3 in c")
        .expect(&["C:MOVE 3", "Z:T"])
        .q("fetch next from c")
        .name("sixth")
        .q("fetch all from c")
        .expect(&["T", "D", "D", "D", "D", "C:FETCH 4", "Z:T"])
        .q("close c")
        .expect(&["C:CLOSE CURSOR", "Z:T"])
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"]);
    let run = s.same_as_direct(&script).await;
    assert_eq!(run.value("first", 0).as_deref(), Some("1"));
    assert_eq!(run.value("sixth", 0).as_deref(), Some("6"));

    let script = Script::new("a cursor first")
        .q("begin")
        .q("declare c cursor for select id from lazy order by id")
        .q("fetch 3 from c")
        .expect(&["T", "D", "D", "D", "C:FETCH 3", "Z:T"])
        .q("commit");
    s.same_as_direct(&script).await;
}

// ---------------------------------------------------------------------------
// 3. Isolation is kept.

/// A read, another client's committed change (replayed by the replica),
/// the same read again, commit, and the read once more. `begin` is the
/// script's own steps before the first read.
fn snapshot_script(what: &str, begin: &[&str], side: Side) -> Script {
    let mut script = Script::new(what);
    for sql in begin {
        script = script.q(sql);
    }
    let read = "select inet_server_port(), n from lazy where id = 2";
    script
        .on(side, read)
        .name("before")
        .elsewhere("update lazy set n = n + 1 where id = 2")
        .on(side, read)
        .name("after")
        .on(
            side,
            "select inet_server_port(), current_setting('transaction_isolation')",
        )
        .name("isolation")
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"])
        .q("select inet_server_port(), n from lazy where id = 2 /* committed */")
        .name("committed")
}

/// The snapshot checks of a [`snapshot_script`] run, as failures.
fn snapshot_kept(run: &Run, isolation: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let before = run.value("before", 1);
    if run.value("after", 1) != before {
        failures.push(format!(
            "the snapshot moved: read {before:?}, then {:?} after another client's commit",
            run.value("after", 1)
        ));
    }
    if run.value("isolation", 1).as_deref() != Some(isolation) {
        failures.push(format!(
            "transaction_isolation read {:?}, not {isolation}",
            run.value("isolation", 1)
        ));
    }
    let bumped = before
        .and_then(|b| b.parse::<i64>().ok())
        .map(|b| (b + 1).to_string());
    if run.value("committed", 1) != bumped {
        failures.push(format!(
            "after COMMIT the read gave {:?}, not the other client's {bumped:?}",
            run.value("committed", 1)
        ));
    }
    failures
}

/// REPEATABLE READ and SERIALIZABLE keep one snapshot on the primary,
/// whichever way they were asked for: in BEGIN, by SET TRANSACTION, by the
/// session's default_transaction_isolation, by the startup options, and by
/// the server's default for the role and for the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_and_serializable_keep_their_snapshot() {
    let s = Setup::start();
    s.cluster.psql(
        s.cluster.primary_port(),
        "create role lazy_rr login; grant all on lazy to lazy_rr;
         alter role lazy_rr set default_transaction_isolation = 'repeatable read'",
    );
    s.cluster
        .psql(s.cluster.primary_port(), "create database lazy_rr_db");
    s.on_primary(
        "lazy_rr_db",
        "create table lazy(id int primary key, n int not null);
         insert into lazy select g, g * 10 from generate_series(1, 10) g;
         alter database lazy_rr_db set default_transaction_isolation = 'serializable'",
    )
    .expect("set up lazy_rr_db");
    s.wait_replica_caught_up();

    let (rr, ser) = ("repeatable read", "serializable");
    let on_primary = |begin: &[&str]| snapshot_script(&begin.join("; "), begin, Side::Primary);
    #[rustfmt::skip]
    let cases = [
        (on_primary(&["begin isolation level repeatable read"]), rr),
        (on_primary(&["begin isolation level serializable"]), ser),
        (on_primary(&["start transaction isolation level repeatable read, read write"]), rr),
        (on_primary(&["begin", "set transaction isolation level repeatable read"]), rr),
        (on_primary(&["set default_transaction_isolation = 'repeatable read'", "begin"]), rr),
        (on_primary(&["begin"]).titled("startup options -c default_transaction_isolation=serializable")
            .options("-c default_transaction_isolation=serializable"), ser),
        (on_primary(&["begin"]).titled("ALTER ROLE ... SET default_transaction_isolation")
            .user("lazy_rr"), rr),
        (on_primary(&["begin"]).titled("ALTER DATABASE ... SET default_transaction_isolation")
            .database("lazy_rr_db"), ser),
    ];
    let mut failures = Vec::new();
    for (script, isolation) in &cases {
        let (run, mut f) = s.compare(script).await;
        if run.broken.is_none() {
            f.extend(snapshot_kept(&run, isolation));
        }
        failures.extend(f.into_iter().map(|f| format!("{}: {f}", script.what)));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// A role or a database whose default_transaction_isolation is
/// SERIALIZABLE: a hot standby refuses serializable transactions (0A000
/// `cannot use serializable mode in a hot standby`), so the reads of such a
/// client, in a transaction or not, must run where PostgreSQL answers them
/// (the primary), never on the replica with that error. pgsplit must know
/// the server's defaults for the database and role, not only the client's
/// own settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serializable_default_of_the_role_or_database_is_kept() {
    let s = Setup::start();
    s.cluster.psql(
        s.cluster.primary_port(),
        "create role lazy_ser login; grant all on lazy to lazy_ser;
         alter role lazy_ser set default_transaction_isolation = 'serializable'",
    );
    s.cluster
        .psql(s.cluster.primary_port(), "create database lazy_ser_db");
    s.on_primary(
        "lazy_ser_db",
        "create table lazy(id int primary key, n int not null);
         insert into lazy select g, g * 10 from generate_series(1, 10) g;
         alter database lazy_ser_db set default_transaction_isolation = 'serializable'",
    )
    .expect("set up lazy_ser_db");
    s.wait_replica_caught_up();
    let mut failures = Vec::new();
    for (what, user, database) in [
        ("ALTER ROLE", "lazy_ser", "postgres"),
        ("ALTER DATABASE", "postgres", "lazy_ser_db"),
    ] {
        let script = Script::new(format!(
            "{what} ... SET default_transaction_isolation = serializable"
        ))
        .user(user)
        .database(database)
        .on(Side::Primary, READ)
        .expect(&["T", "D", "C:SELECT 1", "Z:I"])
        .q("begin")
        .on(Side::Primary, READ)
        .on(
            Side::Primary,
            "select inet_server_port(), current_setting('transaction_isolation')",
        )
        .name("isolation")
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"]);
        let (run, f) = s.compare(&script).await;
        failures.extend(f.into_iter().map(|f| format!("{what}: {f}")));
        if run.broken.is_none() && run.value("isolation", 1).as_deref() != Some("serializable") {
            failures.push(format!(
                "{what}: transaction_isolation read {:?}",
                run.value("isolation", 1)
            ));
        }
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// With read_only_transactions = "replica", a READ ONLY transaction at
/// REPEATABLE READ runs whole on one replica connection and keeps its
/// snapshot there (also when the isolation is the session's default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_repeatable_read_transaction_runs_whole_on_one_replica() {
    let s = Setup::start_with(|_, config| Config {
        read_only_transactions: ReadOnlyTransactions::Replica,
        ..config
    });
    let mut failures = Vec::new();
    for script in [
        snapshot_script(
            "begin isolation level repeatable read read only",
            &["begin isolation level repeatable read read only"],
            Side::Replica,
        ),
        snapshot_script(
            "session default, begin read only",
            &[
                "set default_transaction_isolation = 'repeatable read'",
                "begin read only",
            ],
            Side::Replica,
        ),
    ] {
        let (run, mut f) = s.compare(&script).await;
        if run.broken.is_none() {
            f.extend(snapshot_kept(&run, "repeatable read"));
        }
        failures.extend(f.into_iter().map(|f| format!("{}: {f}", script.what)));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

// ---------------------------------------------------------------------------
// 4. pgsplit answers for a transaction that has not reached a server as
//    PostgreSQL would.

/// An error before any write aborts the transaction: every statement then
/// gets 25P02 and ReadyForQuery E, and COMMIT reports ROLLBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_before_any_write_aborts_the_transaction() {
    let s = Setup::start();
    for end in ["commit", "rollback", "end", "abort"] {
        let script = Script::new(format!("read; error; read; {end}"))
            .q("begin")
            .expect(&["C:BEGIN", "Z:T"])
            .on(Side::Replica, READ)
            .expect(&["T", "D", "C:SELECT 1", "Z:T"])
            .q("select 1/0")
            .expect(&["E:22012", "Z:E"])
            .q("select 1")
            .expect(&["E:25P02", "Z:E"])
            .q("show work_mem")
            .expect(&["E:25P02", "Z:E"])
            .ext(&["select 2"])
            .expect(&["E:25P02", "Z:E"])
            .q(end)
            .expect(&["C:ROLLBACK", "Z:I"])
            .q("select 1")
            .expect(&["T", "D", "C:SELECT 1", "Z:I"]);
        s.same_as_direct(&script).await;
    }
    // An error from the primary (the statement that opened the transaction
    // there) is followed the same way.
    let script = Script::new("read; failing write; read; commit")
        .q("begin")
        .on(Side::Replica, READ)
        .q("insert into lazy values (1, 1)")
        .expect(&["E:23505", "Z:E"])
        .q("select 1")
        .expect(&["E:25P02", "Z:E"])
        .q("commit")
        .expect(&["C:ROLLBACK", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// In an aborted transaction only its end is taken: BEGIN, SAVEPOINT and
/// RELEASE get 25P02, ROLLBACK TO a savepoint that does not exist gets
/// 3B001 (not 25P02), END reports ROLLBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_takes_only_its_end() {
    let s = Setup::start();
    let script = Script::new("aborted: begin, savepoint, rollback to, release, end")
        .q("begin")
        .on(Side::Replica, READ)
        .q("select 1/0")
        .q("begin")
        .expect(&["E:25P02", "Z:E"])
        .q("savepoint x")
        .expect(&["E:25P02", "Z:E"])
        .q("rollback to nosuch")
        .expect(&["E:3B001", "Z:E"])
        .q("release x")
        .expect(&["E:25P02", "Z:E"])
        .q("end")
        .expect(&["C:ROLLBACK", "Z:I"]);
    s.same_as_direct(&script).await;

    let script = Script::new("a savepoint taken before the error ends the aborted state")
        .q("begin")
        .on(Side::Replica, READ)
        .q("savepoint s")
        .q("select 1/0")
        .q("select 1")
        .expect(&["E:25P02", "Z:E"])
        .q("rollback to s")
        .expect(&["C:ROLLBACK", "Z:T"])
        .on(Side::Primary, READ)
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"]);
    s.same_as_direct(&script).await;

    let script = Script::new("rollback to a savepoint never taken")
        .q("begin")
        .on(Side::Replica, READ)
        .q("rollback to savepoint nosuch")
        .expect(&["E:3B001", "Z:E"])
        .q("commit")
        .expect(&["C:ROLLBACK", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// COMMIT AND CHAIN of a failed transaction reports ROLLBACK and leaves a
/// new transaction open (T); ROLLBACK AND CHAIN too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn and_chain_starts_the_next_transaction() {
    let s = Setup::start();
    let script = Script::new("and chain")
        .q("begin")
        .on(Side::Replica, READ)
        .q("select 1/0")
        .q("commit and chain")
        .expect(&["C:ROLLBACK", "Z:T"])
        .q(READ)
        .q("rollback and chain")
        .expect(&["C:ROLLBACK", "Z:T"])
        .q("commit and chain")
        .expect(&["C:COMMIT", "Z:T"])
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// BEGIN inside a transaction gets WARNING 25001 and BEGIN; the transaction
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_inside_a_transaction_warns_25001() {
    let s = Setup::start();
    let script = Script::new("begin; read; begin; read; commit")
        .q("begin")
        .on(Side::Replica, READ)
        .q("begin")
        .expect(&["N:25001", "C:BEGIN", "Z:T"])
        .on(Side::Replica, READ)
        .q("start transaction")
        .expect(&["N:25001", "C:START TRANSACTION", "Z:T"])
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// COMMIT, ROLLBACK, END and ABORT outside a transaction (also right after
/// one ended) get WARNING 25P01; SAVEPOINT outside gets ERROR 25P01 and SET
/// TRANSACTION and SET LOCAL a warning, and the status stays I.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_outside_a_transaction_warns_25p01() {
    let s = Setup::start();
    let script = Script::new("a transaction, then its end again")
        .q("begin")
        .on(Side::Replica, READ)
        .q("commit")
        .expect(&["C:COMMIT", "Z:I"])
        .q("commit")
        .expect(&["N:25P01", "C:COMMIT", "Z:I"])
        .q("rollback")
        .expect(&["N:25P01", "C:ROLLBACK", "Z:I"])
        .q("end")
        .expect(&["N:25P01", "C:COMMIT", "Z:I"])
        .q("abort")
        .expect(&["N:25P01", "C:ROLLBACK", "Z:I"])
        .q("savepoint x")
        .expect(&["E:25P01", "Z:I"])
        .q("rollback to x")
        .expect(&["E:25P01", "Z:I"])
        .q("set transaction isolation level serializable")
        .expect(&["N:25P01", "C:SET", "Z:I"])
        .q("set local work_mem = '1MB'")
        .expect(&["N:25P01", "C:SET", "Z:I"])
        .q("show work_mem")
        .expect(&["T", "D", "C:SHOW", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// START TRANSACTION, END and ABORT have their own tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_transaction_end_and_abort_tags() {
    let s = Setup::start();
    let script = Script::new("start transaction; end; begin; abort")
        .q("start transaction")
        .expect(&["C:START TRANSACTION", "Z:T"])
        .on(Side::Replica, READ)
        .q("end")
        .expect(&["C:COMMIT", "Z:I"])
        .q("begin")
        .on(Side::Replica, READ)
        .q("abort")
        .expect(&["C:ROLLBACK", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// SET TRANSACTION ISOLATION LEVEL and SET TRANSACTION READ WRITE after a
/// query of the transaction are refused (25001), as PostgreSQL refuses
/// them: a lazy transaction must not take them as its first statement on
/// the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_modes_after_a_query_are_refused() {
    let s = Setup::start();
    let script = Script::new("begin; read; set transaction isolation level")
        .q("begin")
        .on(Side::Replica, READ)
        .q("set transaction isolation level repeatable read")
        .expect(&["E:25001", "Z:E"])
        .q("rollback");
    s.same_as_direct(&script).await;
    let script = Script::new("begin read only; read; set transaction read write")
        .q("begin read only")
        .on(Side::Replica, READ)
        .q("set transaction read write")
        .expect(&["E:25001", "Z:E"])
        .q("rollback");
    s.same_as_direct(&script).await;
}

/// Several statements in one simple Query: BEGIN with a read, a read with
/// an error, a read and BEGIN and a read, COMMIT twice. A BEGIN with more
/// statements in its Query is not split: the transaction opens on the
/// primary (README, "Transactions"), and answers as there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_queries() {
    let s = Setup::start();
    let script = Script::new("multi-statement queries")
        .on(
            Side::Primary,
            "begin; select inet_server_port(), n from lazy where id = 3",
        )
        .expect(&["C:BEGIN", "T", "D", "C:SELECT 1", "Z:T"])
        .on(Side::Primary, "select inet_server_port(); select 1/0")
        .expect(&["T", "D", "C:SELECT 1", "E:22012", "Z:E"])
        .q("select 1")
        .expect(&["E:25P02", "Z:E"])
        .q("commit")
        .expect(&["C:ROLLBACK", "Z:I"])
        .q("select 1; begin; select inet_server_port()")
        .expect(&[
            "T",
            "D",
            "C:SELECT 1",
            "C:BEGIN",
            "T",
            "D",
            "C:SELECT 1",
            "Z:T",
        ])
        .q("commit; commit")
        .expect(&["C:COMMIT", "N:25P01", "C:COMMIT", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// An error inside an extended-protocol batch of a lazy transaction: the
/// batch is skipped to its Sync, the status is E, later batches get 25P02
/// (at Parse), COMMIT reports ROLLBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_an_extended_batch_aborts_the_transaction() {
    let s = Setup::start();
    let script = Script::new("BEGIN and a read; a failing batch; a batch; COMMIT")
        .ext_on(Side::Replica, &["BEGIN", READ])
        .ext(&["select 1/0", READ])
        .expect(&["1", "E:22012", "Z:E"])
        .ext(&["select 1"])
        .expect(&["E:25P02", "Z:E"])
        .ext(&["COMMIT"])
        .expect(&["1", "2", "n", "C:ROLLBACK", "Z:I"]);
    s.same_as_direct(&script).await;

    let script = Script::new("BEGIN and an error in one batch")
        .ext(&["BEGIN", "select 1/0"])
        .expect(&["1", "2", "n", "C:BEGIN", "1", "E:22012", "Z:E"])
        .q("select 1")
        .expect(&["E:25P02", "Z:E"])
        .q("rollback")
        .expect(&["C:ROLLBACK", "Z:I"]);
    s.same_as_direct(&script).await;
}

/// psql reads the transaction status from each ReadyForQuery: with
/// AUTOCOMMIT off it sends BEGIN before a statement only when the status is
/// idle, and its SQLSTATE variables follow each error. Its whole output
/// (queries echoed, results, warnings, errors) is the same through pgsplit
/// as directly, but for which server ran each read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_the_same_transaction_states() {
    let s = Setup::start();
    let script = "\
\\set AUTOCOMMIT off
select case inet_server_port() when :primary then 'primary' when :replica then 'replica' end as first_read;
\\echo status after a read: :SQLSTATE
select n from lazy where id = 4;
select 1/0;
\\echo after the error: :SQLSTATE
select 1;
\\echo after the next: :SQLSTATE
commit;
\\echo after commit: :SQLSTATE
select case inet_server_port() when :primary then 'primary' when :replica then 'replica' end as second_read;
update lazy set n = n where id = 4;
select case inet_server_port() when :primary then 'primary' when :replica then 'replica' end as after_write;
commit;
begin;
begin;
commit;
commit;
\\echo after the second commit: :SQLSTATE
";
    let psql = |port: u16| {
        psql_script(
            port,
            script,
            &[
                ("primary", s.cluster.primary_port()),
                ("replica", s.cluster.replica_port()),
            ],
        )
    };
    let direct = psql(s.cluster.primary_port());
    let proxied = psql(s.proxy.port());
    let mut failures = Vec::new();
    if proxied.replace("replica", "primary") != direct.replace("replica", "primary") {
        failures.push(format!(
            "psql's output differs (beyond which server ran a read):\n--- through pgsplit\n{proxied}\n--- directly\n{direct}"
        ));
    }
    for (label, side) in [
        ("first_read", "replica"),
        ("second_read", "replica"),
        ("after_write", "primary"),
    ] {
        let line = proxied
            .lines()
            .skip_while(|l| !l.contains(&format!("as {label};")))
            .nth(1)
            .unwrap_or("");
        if line != side {
            failures.push(format!("psql's {label} ran on {line:?}, not the {side}"));
        }
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// Runs `script` with psql (echoing each query; stdout and stderr in one
/// stream) against 127.0.0.1:`port` with `vars`, for at most 30 s.
fn psql_script(port: u16, script: &str, vars: &[(&str, u16)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("script.sql");
    std::fs::write(&file, script).expect("write the psql script");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(pg_bin("psql"))
        .args([
            "-X",
            "-a",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=0",
            "-h",
            "127.0.0.1",
        ])
        .args(["-U", "postgres", "-d", "postgres", "-p", &port.to_string()]);
    for (name, value) in vars {
        cmd.arg("-v").arg(format!("{name}={value}"));
    }
    cmd.arg("-f").arg(&file);
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
        "PGPASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGCONNECT_TIMEOUT", "10");
    let done = output_within(&mut cmd, Duration::from_secs(30));
    assert!(
        done.status.is_some(),
        "psql on port {port}: {}",
        done.describe()
    );
    // Its messages name the script file, which differs per run.
    done.stdout
        .replace(&file.display().to_string(), "script.sql")
        .trim()
        .to_string()
}

/// tokio-postgres's transaction API (simple BEGIN, then statements it
/// prepares: Parse, Describe, Sync, then Bind, Execute, Sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_transactions() {
    let s = Setup::start();
    let mut client = s.client().await;
    let replica = i32::from(s.cluster.replica_port());
    let primary = i32::from(s.cluster.primary_port());
    let read = "select inet_server_port(), n from lazy where id = $1";

    let tx = within("begin", client.transaction()).await.expect("begin");
    let row = within(read, tx.query_one(read, &[&5i32]))
        .await
        .expect(read);
    let (port, n): (i32, i32) = (row.get(0), row.get(1));
    let mut failures = Vec::new();
    if port != replica {
        failures.push(format!(
            "a prepared read after BEGIN ran on port {port}, not the replica ({replica})"
        ));
    }
    let updated = within(
        "update",
        tx.execute("update lazy set n = n + 1 where id = $1", &[&5i32]),
    )
    .await
    .expect("update");
    assert_eq!(updated, 1);
    let row = within(read, tx.query_one(read, &[&5i32]))
        .await
        .expect(read);
    let (port, n2): (i32, i32) = (row.get(0), row.get(1));
    if (port, n2) != (primary, n + 1) {
        failures.push(format!(
            "the read after the write gave n={n2} on port {port}; expected n={} on the primary ({primary})",
            n + 1
        ));
    }
    within("commit", tx.commit()).await.expect("commit");

    // An error aborts the transaction; the next statement gets 25P02.
    let tx = within("begin", client.transaction()).await.expect("begin");
    let row = within(read, tx.query_one(read, &[&5i32]))
        .await
        .expect(read);
    if row.get::<_, i32>(0) != replica {
        failures.push("the read of the second transaction did not run on the replica".into());
    }
    let err = within("1/0", tx.query("select 1/0", &[]))
        .await
        .expect_err("1/0 fails");
    assert_eq!(
        code_of(&err).as_deref(),
        Some("22012"),
        "{}",
        describe_error(&err)
    );
    let err = within("select after the error", tx.query("select 1", &[]))
        .await
        .expect_err("a statement after an error fails");
    if code_of(&err).as_deref() != Some("25P02") {
        failures.push(format!(
            "after an error: {} (PostgreSQL: 25P02)",
            describe_error(&err)
        ));
    }
    within("rollback", tx.rollback()).await.expect("rollback");
    let after = simple(&client, "select 1").await;
    if after != Ok(vec![vec![Some("1".into())]]) {
        failures.push(format!("after ROLLBACK: {after:?}"));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

// ---------------------------------------------------------------------------
// 1 again, and 6: what clients in transactions hold.

/// 40 clients that began a transaction and read once, then idle in it,
/// hold no server connection: with pools of 2 and no overflow, a writer
/// gets a primary connection at once. pgsplit checks a client's startup
/// settings on the primary at login, so the 40 log in first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_idle_in_read_transactions_leave_the_pool_to_a_writer() {
    let s = Setup::start_with(|_, config| small_pools(config, 2, 2.0));
    let mut readers = Vec::new();
    for _ in 0..40 {
        readers.push(s.client().await);
    }
    let replica = s.cluster.replica_port().to_string();
    let outcomes = futures::future::join_all(readers.iter().map(|c| async {
        simple(c, "begin").await?;
        let rows = simple(c, "select inet_server_port()").await?;
        Ok::<_, String>(rows[0][0].clone().unwrap_or_default())
    }))
    .await;
    let mut failures = Vec::new();
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    if !failed.is_empty() {
        failures.push(format!(
            "{} of 40 clients could not begin and read (pools of 2, pool_timeout 2 s): first {:?}",
            failed.len(),
            failed[0]
        ));
    }
    let elsewhere = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(port) if *port != replica))
        .count();
    if elsewhere > 0 {
        failures.push(format!(
            "{elsewhere} of the 40 reads did not run on the replica"
        ));
    }

    // A read's connection goes back a moment after its answer: look for
    // up to a second.
    let console = console(s.proxy.port()).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    let checked_out = loop {
        let out: Vec<String> = rows(&console, "SHOW POOLS")
            .await
            .into_iter()
            .filter(|pool| pool.iter().any(|(c, v)| c == "checked_out" && v != "0"))
            .map(|pool| {
                let get = |k: &str| pool.iter().find(|(c, _)| c == k).map(|(_, v)| v.clone());
                format!(
                    "{} pool: checked_out={}",
                    get("role").unwrap_or_default(),
                    get("checked_out").unwrap_or_default()
                )
            })
            .collect();
        if out.is_empty() || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !checked_out.is_empty() {
        failures.push(format!(
            "while the 40 clients idle in read transactions pgsplit holds server connections: {checked_out:?}"
        ));
    }

    let started = Instant::now();
    let write = tokio::time::timeout(Duration::from_secs(10), async {
        let writer = try_connect(&format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10",
            s.proxy.port()
        ))
        .await
        .map_err(|e| format!("login: {}", describe_error(&e)))?;
        simple(&writer, "insert into lazy_log(note) values ('writer')").await?;
        simple(
            &writer,
            "begin; insert into lazy_log(note) values ('writer'); commit",
        )
        .await
    })
    .await;
    let took = started.elapsed();
    match write {
        Ok(Ok(_)) if took < Duration::from_millis(1500) => {}
        Ok(Ok(_)) => failures.push(format!("the writer got its connection only after {took:?}")),
        Ok(Err(e)) => failures.push(format!("the writer failed after {took:?}: {e}")),
        Err(_) => failures.push("the writer got no answer in 10 s".into()),
    }
    for (i, c) in readers.iter().enumerate() {
        if outcomes[i].is_ok() {
            if let Err(e) = simple(c, "commit").await {
                failures.push(format!("client {i}'s COMMIT failed: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// idle_transaction_timeout = 1: a client idle for longer inside a
/// transaction that wrote gets FATAL 25P03 worded as PostgreSQL's
/// idle_in_transaction_session_timeout words it, and the connection is
/// closed; its write is rolled back and no server connection stays in a
/// transaction. A statement that runs longer than that is not idleness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transaction_timeout_ends_a_transaction_left_idle() {
    let s = Setup::start_with(|_, config| with_settings(config, "idle_transaction_timeout = 1.0"));

    // What PostgreSQL says, with its own timeout of 1 s.
    let mut direct = login(s.primary(), &Script::new("").login)
        .await
        .expect("login");
    direct
        .send(&query("set idle_in_transaction_session_timeout = '1s'"))
        .await;
    direct.read_until_ready(1, ANSWER_TIMEOUT).await;
    let direct_seen = idle_writer(&mut direct, "idle direct").await;

    let mut client = login(s.proxy.addr(), &Script::new("").login)
        .await
        .expect("login");
    let seen = idle_writer(&mut client, "idle through pgsplit").await;
    let mut failures = Vec::new();
    if shape(&seen) != shape(&direct_seen) || !seen.closed {
        failures.push(format!(
            "idle in a transaction for 3 s:\n     pgsplit answered    {}\n     PostgreSQL answered {}",
            seen.describe(),
            direct_seen.describe()
        ));
    }
    let count = |note: &str| {
        s.on_primary(
            "postgres",
            &format!("select count(*) from lazy_log where note = '{note}'"),
        )
        .unwrap_or_else(|e| e)
    };
    if count("idle through pgsplit") != "0" {
        failures.push("the idle client's write was committed".into());
    }
    let in_transaction = "select count(*) from pg_stat_activity \
        where backend_type = 'client backend' and state like 'idle in transaction%'";
    let clean = support::proxy::eventually(Duration::from_secs(3), || {
        s.on_primary("postgres", in_transaction).as_deref() == Ok("0")
    });
    if !clean {
        failures.push(format!(
            "3 s later the primary still has backends idle in a transaction: {:?}",
            s.on_primary("postgres", in_transaction)
        ));
    }

    // Busy, not idle: a statement of 1.5 s inside the transaction.
    let mut busy = login(s.proxy.addr(), &Script::new("").login)
        .await
        .expect("login");
    let mut seen = Transcript::default();
    for sql in [
        "begin",
        "insert into lazy_log(note) values ('busy')",
        "select pg_sleep(1.5)",
        "commit",
    ] {
        busy.send(&query(sql)).await;
        let t = busy.read_until_ready(1, ANSWER_TIMEOUT).await;
        seen.messages.extend(t.messages);
        seen.closed |= t.closed;
    }
    if seen.closed || !seen.errors().is_empty() || count("busy") != "1" {
        failures.push(format!(
            "a transaction busy with a 1.5 s statement was ended: {}",
            seen.describe()
        ));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

/// BEGIN, a write noted `note`, then 3 s of silence: what the client read.
async fn idle_writer(client: &mut RawClient, note: &str) -> Transcript {
    let mut seen = Transcript::default();
    for sql in [
        "begin".to_string(),
        format!("insert into lazy_log(note) values ('{note}')"),
    ] {
        client.send(&query(&sql)).await;
        seen.messages
            .extend(client.read_until_ready(1, ANSWER_TIMEOUT).await.messages);
    }
    let rest = client.read_until_ready(1, Duration::from_secs(3)).await;
    seen.messages.extend(rest.messages);
    seen.closed = rest.closed;
    seen
}

// ---------------------------------------------------------------------------
// 5. transaction_reads = "primary" is today's behaviour.

/// With transaction_reads = "primary", everything from BEGIN to COMMIT runs
/// on the primary, and a client idle in a transaction holds its primary
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_reads_primary_keeps_every_transaction_on_the_primary() {
    let s = Setup::start_with(|_, config| with_settings(config, "transaction_reads = \"primary\""));
    let script = Script::new("begin; reads; commit")
        .q("begin")
        .on(Side::Primary, READ)
        .on(
            Side::Primary,
            "select inet_server_port(), count(*) from lazy",
        )
        .q("commit");
    s.same_as_direct(&script).await;

    let client = s.client().await;
    simple(&client, "begin").await.expect("begin");
    simple(&client, READ).await.expect("read");
    let console = console(s.proxy.port()).await;
    let primary_out: u64 = rows(&console, "SHOW POOLS")
        .await
        .iter()
        .filter(|pool| pool.iter().any(|(c, v)| c == "role" && v == "primary"))
        .filter_map(|pool| {
            pool.iter()
                .find(|(c, _)| c == "checked_out")
                .and_then(|(_, v)| v.parse::<u64>().ok())
        })
        .sum();
    assert_eq!(
        primary_out, 1,
        "a client idle in a transaction with transaction_reads = \"primary\" holds one primary connection"
    );
    simple(&client, "commit").await.expect("commit");
}

/// The DataRows' first column as text.
fn first_column(t: &Transcript) -> Vec<String> {
    t.messages
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let len = i32::from_be_bytes(m.body[2..6].try_into().unwrap()) as usize;
            String::from_utf8_lossy(&m.body[6..6 + len]).into_owned()
        })
        .collect()
}

/// A pipelined BEGIN that reaches pgsplit on its own, its statements a
/// moment later (psycopg 3's pipeline mode flushes BEGIN first, and under
/// load the rest comes in another read): pgsplit waits for them instead of
/// sending the BEGIN to the primary, so the transaction's reads still run
/// on the replica, and its later transactions are lazy too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_begin_that_arrives_alone_still_reads_on_the_replica() {
    use support::wire::frame::{bind, describe, execute, parse, sync};
    let s = Setup::start();
    let mut c = RawClient::login(s.proxy.addr(), "postgres", "postgres").await;
    let statement = |sql: &str| {
        [
            parse("", sql, &[]),
            bind("", "", &[]),
            describe(b'P', ""),
            execute("", 0),
        ]
        .concat()
    };
    for round in 0..2 {
        c.send(&statement("BEGIN")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.send(&[statement("select inet_server_port()::text"), sync()].concat())
            .await;
        let t = c.read_until_ready(1, Duration::from_secs(10)).await;
        assert_eq!(
            first_column(&t),
            vec![s.cluster.replica_port().to_string()],
            "round {round}: the read of a pipelined transaction did not run on the replica: {}",
            t.describe()
        );
        assert_eq!(
            t.summary().last().map(String::as_str),
            Some("Z:T"),
            "{}",
            t.describe()
        );
        c.send(&query("COMMIT")).await;
        let t = c.read_until_ready(1, Duration::from_secs(10)).await;
        assert_eq!(
            t.summary().last().map(String::as_str),
            Some("Z:I"),
            "{}",
            t.describe()
        );
    }
}
