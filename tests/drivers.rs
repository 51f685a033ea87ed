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

/// Starts a cluster and pgsplit, then runs `program` with `args(proxy
/// port)` followed by the primary and replica ports, as every script takes.
fn check(program: &str, env: &[(&str, &std::ffi::OsStr)], args: impl FnOnce(u16) -> Vec<String>) {
    let cluster = Cluster::start();
    let proxy = Proxy::start(proxy_config(&cluster));
    let mut command = Command::new(program);
    command
        .envs(env.iter().copied())
        .args(args(proxy.port()))
        .arg(cluster.primary_port().to_string())
        .arg(cluster.replica_port().to_string());
    run(command);
}

fn script(name: &str) -> String {
    drivers_dir().join(name).display().to_string()
}

#[test]
fn asyncpg() {
    if !available(
        "asyncpg",
        Command::new("python3").args(["-c", "import asyncpg"]),
    ) {
        return;
    }
    check("python3", &[], |port| {
        vec![
            script("asyncpg_check.py"),
            format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
        ]
    });
}

#[test]
fn psycopg() {
    if !available(
        "psycopg",
        Command::new("python3").args(["-c", "import psycopg"]),
    ) {
        return;
    }
    check("python3", &[], |port| {
        vec![
            script("psycopg_check.py"),
            format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        ]
    });
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
    check("node", &[("NODE_PATH", modules.as_os_str())], |port| {
        vec![script("node_pg_check.js"), port.to_string()]
    });
}

#[test]
fn jdbc() {
    let jar = "/usr/share/java/postgresql.jar";
    if !available("PgJDBC", Command::new("test").args(["-f", jar]))
        || !available("java", Command::new("java").arg("-version"))
    {
        return;
    }
    check("java", &[], |port| {
        vec![
            "-cp".into(),
            jar.into(),
            script("JdbcCheck.java"),
            format!("jdbc:postgresql://127.0.0.1:{port}/postgres"),
        ]
    });
}
