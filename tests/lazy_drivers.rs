//! Real drivers in transactions through pgsplit at its default settings:
//! the driver part of the issue "Reads inside transactions go to replicas"
//! (it fails on the code that sends everything between BEGIN and COMMIT to
//! the primary).
//!
//! Each script in tests/drivers/lazy_* opens transactions the way its
//! driver does (psycopg2 with autocommit off, psycopg 3 not in autocommit,
//! asyncpg's conn.transaction(), node-postgres's query('BEGIN'), PgJDBC
//! with setAutoCommit(false)) and checks that reads inside them run on the
//! replica, that after a write reads run on the primary and see it, and
//! that an error aborts the transaction as on PostgreSQL. Each script runs
//! twice: straight to the primary ("direct": every read is expected there),
//! then through pgsplit ("proxy"); the driver's own view of the transaction
//! status, which the script prints on its `statuses:` line, must be the same
//! both times.
//!
//! A driver that is not installed skips its test, unless
//! PGSPLIT_REQUIRE_DRIVERS=1 (scripts/test.sh, after scripts/drivers.sh
//! installed them), where it fails. Every script is killed after
//! [`SCRIPT_LIMIT`].
//!
//! orm_app checks the same at the scale of an application: SQLAlchemy with
//! a psycopg2 engine and an asyncpg engine, 20 concurrent requests in
//! transactions (see tests/drivers/orm_app.py; bench/orm.sh measures it).

mod support;

use std::process::Command;
use std::time::Duration;

use pgsplit::config::Config;
use support::cluster::Cluster;
use support::drivers::{available, drivers_dir, output_within, python_has, script, Finished};
use support::proxy::Proxy;

/// How long a driver script may run (PgJDBC compiles its script first).
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// pgsplit at its default settings (pools of 5 + 10, transaction pooling,
/// session consistency) in front of `cluster`; only the shutdown is short,
/// so that a stuck session does not hold up the end of a failing test, and
/// a read after the client's own write waits longer for the replica to
/// replay it: the scripts check that reads land on the replica, and on a
/// loaded machine replay can take longer than the default 50 ms wait.
fn default_config(cluster: &Cluster) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        primary: Some(cluster.primary_addr()),
        replicas: vec![cluster.replica_addr()],
        shutdown_timeout: 1.0,
        max_wait_for_replica: 2.0,
        ..Config::default()
    }
}

/// A cluster with drv_lazy (rows 1..10) and pgsplit in front of it.
fn start() -> (Cluster, Proxy) {
    let cluster = Cluster::start();
    cluster.psql(
        cluster.primary_port(),
        "create table drv_lazy(id int primary key, n int not null);
         insert into drv_lazy select g, g * 10 from generate_series(1, 10) g",
    );
    cluster.wait_replica_caught_up();
    let proxy = Proxy::start(default_config(&cluster));
    (cluster, proxy)
}

/// Runs `program` with `args(port)`, the primary's and the replica's ports
/// and the mode, straight to the primary and then through pgsplit; panics
/// unless the run through pgsplit passes and both print the same statuses.
fn direct_then_proxied(
    program: &str,
    env: &[(&str, &std::ffi::OsStr)],
    args: impl Fn(u16) -> Vec<String>,
) {
    let (cluster, proxy) = start();
    let run = |port: u16, mode: &str| -> Finished {
        let mut command = Command::new(program);
        command
            .envs(env.iter().copied())
            .args(args(port))
            .arg(cluster.primary_port().to_string())
            .arg(cluster.replica_port().to_string())
            .arg(mode);
        output_within(&mut command, SCRIPT_LIMIT)
    };
    let direct = run(cluster.primary_port(), "direct");
    assert!(
        direct.success(),
        "the script fails straight against the primary (a wrong test): {}",
        direct.describe()
    );
    // The direct run wrote; the proxied run's reads on the replica must see it.
    cluster.wait_replica_caught_up();
    let proxied = run(proxy.port(), "proxy");
    let statuses = |f: &Finished| {
        f.stdout
            .lines()
            .find(|l| l.starts_with("statuses:"))
            .map(str::to_string)
    };
    let mut failures = Vec::new();
    if !proxied.success() || !proxied.stdout.contains(" ok") {
        failures.push(format!("through pgsplit: {}", proxied.describe()));
    }
    if statuses(&proxied) != statuses(&direct) {
        failures.push(format!(
            "the driver's transaction statuses differ:\n   through pgsplit {:?}\n   directly        {:?}",
            statuses(&proxied),
            statuses(&direct)
        ));
    }
    assert!(failures.is_empty(), "\n - {}", failures.join("\n - "));
}

#[test]
fn psycopg2_autocommit_off() {
    if !python_has("psycopg2") {
        return;
    }
    direct_then_proxied("python3", &[], |port| {
        vec![
            script("lazy_psycopg2.py"),
            format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"),
        ]
    });
}

#[test]
fn psycopg3_transactions() {
    if !python_has("psycopg") {
        return;
    }
    direct_then_proxied("python3", &[], |port| {
        vec![
            script("lazy_psycopg.py"),
            format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"),
        ]
    });
}

#[test]
fn asyncpg_transactions() {
    if !python_has("asyncpg") {
        return;
    }
    direct_then_proxied("python3", &[], |port| {
        vec![
            script("lazy_asyncpg.py"),
            format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
        ]
    });
}

#[test]
fn node_postgres_transactions() {
    let modules = drivers_dir().join("node_modules");
    if !available(
        "node-postgres",
        Command::new("node")
            .env("NODE_PATH", &modules)
            .args(["-e", "require('pg')"]),
    ) {
        return;
    }
    direct_then_proxied("node", &[("NODE_PATH", modules.as_os_str())], |port| {
        vec![script("lazy_node_pg.js"), port.to_string()]
    });
}

#[test]
fn jdbc_autocommit_off() {
    let jar = "/usr/share/java/postgresql.jar";
    if !available("PgJDBC", Command::new("test").args(["-f", jar]))
        || !available("java", Command::new("java").arg("-version"))
    {
        return;
    }
    direct_then_proxied("java", &[], |port| {
        vec![
            "-cp".into(),
            jar.into(),
            script("LazyJdbc.java"),
            format!(
                "jdbc:postgresql://127.0.0.1:{port}/postgres?connectTimeout=10&socketTimeout=30"
            ),
        ]
    });
}

/// What orm_app.py prints on its last line.
#[derive(Debug)]
struct AppReport {
    requests: u64,
    statements: u64,
    selects: u64,
    replica_selects: u64,
    errors: u64,
    first_errors: Vec<String>,
}

/// The ORM app (tests/drivers/orm_app.py: SQLAlchemy, a psycopg2 engine
/// and an asyncpg engine with SQLAlchemy's default pools, 20 concurrent
/// requests, each a transaction of reads and sometimes a write with the
/// app thinking in between) through pgsplit at its default settings: no
/// request fails, and at least half of its SELECTs run on the replica.
/// Latency is measured by bench/orm.sh, not asserted here.
#[test]
fn orm_app_reads_mostly_on_the_replica() {
    if !python_has("sqlalchemy.ext.asyncio") || !python_has("psycopg2") || !python_has("asyncpg") {
        return;
    }
    let cluster = Cluster::start();
    let app = |port: u16, extra: &[&str]| -> Finished {
        let mut command = Command::new("python3");
        command
            .arg(script("orm_app.py"))
            .arg(format!("postgresql://postgres@127.0.0.1:{port}/postgres"))
            .args(["--replica-port", &cluster.replica_port().to_string()])
            .args(extra);
        output_within(&mut command, SCRIPT_LIMIT)
    };
    let setup = app(cluster.primary_port(), &["--setup"]);
    assert!(setup.success(), "orm_app.py --setup: {}", setup.describe());
    cluster.wait_replica_caught_up();
    // The app at pgsplit's defaults (its pool settings too), but for the
    // replica wait: on a loaded 2-core CI machine replay now and then
    // takes longer than the default 50 ms, and one wait that runs out
    // sends the next second's reads after writes to the primary. What is
    // measured here is routing, not how fast the replica replays.
    let proxy = Proxy::start(Config {
        max_wait_for_replica: 0.5,
        ..default_config(&cluster)
    });
    let run = app(proxy.port(), &["--iterations", "15"]);
    let report = parse_report(&run);
    eprintln!("{}", run.stdout);
    let mut failures = Vec::new();
    if report.errors > 0 {
        failures.push(format!(
            "{} of {} requests failed; first: {:#?}",
            report.errors, report.requests, report.first_errors
        ));
    }
    if report.replica_selects * 2 < report.selects {
        failures.push(format!(
            "{} of {} SELECTs ran on the replica; the issue wants at least half",
            report.replica_selects, report.selects
        ));
    }
    assert!(
        report.statements > 0 && failures.is_empty(),
        "orm_app through pgsplit ({report:?}):\n - {}",
        failures.join("\n - ")
    );
}

fn parse_report(run: &Finished) -> AppReport {
    let line = run
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("orm_app.py printed no report: {}", run.describe()));
    let json: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("orm_app.py's report {line:?}: {e}"));
    let number = |key: &str| {
        json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in orm_app.py's report {line}"))
    };
    AppReport {
        requests: number("requests"),
        statements: number("statements"),
        selects: number("selects"),
        replica_selects: number("replica_selects"),
        errors: number("errors"),
        first_errors: json["first_errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default(),
    }
}
