//! Real drivers other than tokio-postgres through pgsplit: asyncpg and
//! psycopg 3 (Python), node-postgres and PgJDBC. Each script in
//! tests/drivers/ exercises named prepared statements reused across
//! transactions, transactions, and (asyncpg) COPY, and checks where
//! statements ran. A driver that is not installed skips its test, unless
//! PGSPLIT_REQUIRE_DRIVERS=1 (set by scripts/test.sh after installing them),
//! where it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::cluster::Cluster;
use support::proxy::{proxy_config, Proxy};

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// Whether `probe` runs; if not, skip or (when required) fail.
fn available(name: &str, probe: &mut Command) -> bool {
    let ok = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("PGSPLIT_REQUIRE_DRIVERS").is_none(),
            "{name} is required (PGSPLIT_REQUIRE_DRIVERS) but not installed"
        );
        eprintln!("skipping: {name} is not installed");
    }
    ok
}

fn run(mut command: Command) {
    let out = command.output().expect("driver script starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "driver check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(" ok"),
        "driver check printed no ok:\n{stdout}\n{stderr}"
    );
}

fn setup() -> (Cluster, Proxy) {
    let cluster = Cluster::start();
    let proxy = Proxy::start(proxy_config(&cluster));
    (cluster, proxy)
}

#[test]
fn asyncpg() {
    if !available(
        "asyncpg",
        Command::new("python3").args(["-c", "import asyncpg"]),
    ) {
        return;
    }
    let (cluster, proxy) = setup();
    let mut command = Command::new("python3");
    command
        .arg(drivers_dir().join("asyncpg_check.py"))
        .arg(format!(
            "postgresql://postgres@127.0.0.1:{}/postgres",
            proxy.port()
        ))
        .arg(cluster.primary_port().to_string())
        .arg(cluster.replica_port().to_string());
    run(command);
}

#[test]
fn psycopg() {
    if !available(
        "psycopg",
        Command::new("python3").args(["-c", "import psycopg"]),
    ) {
        return;
    }
    let (cluster, proxy) = setup();
    let mut command = Command::new("python3");
    command
        .arg(drivers_dir().join("psycopg_check.py"))
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            proxy.port()
        ))
        .arg(cluster.primary_port().to_string())
        .arg(cluster.replica_port().to_string());
    run(command);
}

#[test]
fn node_postgres() {
    let modules = drivers_dir().join("node_modules");
    if !available(
        "node-postgres",
        Command::new("node")
            .env("NODE_PATH", &modules)
            .args(["-e", "require('pg')"]),
    ) {
        return;
    }
    let (cluster, proxy) = setup();
    let mut command = Command::new("node");
    command
        .env("NODE_PATH", &modules)
        .arg(drivers_dir().join("node_pg_check.js"))
        .arg(proxy.port().to_string())
        .arg(cluster.primary_port().to_string())
        .arg(cluster.replica_port().to_string());
    run(command);
}

#[test]
fn jdbc() {
    let jar = "/usr/share/java/postgresql.jar";
    if !available("PgJDBC", Command::new("test").args(["-f", jar]))
        || !available("java", Command::new("java").arg("-version"))
    {
        return;
    }
    let (cluster, proxy) = setup();
    let mut command = Command::new("java");
    command
        .args(["-cp", jar])
        .arg(drivers_dir().join("JdbcCheck.java"))
        .arg(format!(
            "jdbc:postgresql://127.0.0.1:{}/postgres",
            proxy.port()
        ))
        .arg(cluster.primary_port().to_string())
        .arg(cluster.replica_port().to_string());
    run(command);
}
