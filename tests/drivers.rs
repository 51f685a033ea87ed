//! Real drivers other than tokio-postgres through pgsplit: asyncpg and
//! psycopg 3 (Python), node-postgres and PgJDBC. Each script in
//! tests/drivers/ exercises named prepared statements reused across
//! transactions, transactions, and (asyncpg) COPY, and checks where
//! statements ran; JdbcReprepare.java checks that a server-prepared
//! statement never changes its result type under PgJDBC (tests/asyncpg.rs
//! has asyncpg's further checks). A driver that is not installed skips its
//! test, unless PGSPLIT_REQUIRE_DRIVERS=1 (set by scripts/test.sh after
//! installing them), where it fails (tests/support/drivers.rs).

mod support;

use std::process::Command;
use support::drivers::{available, check, check_with, drivers_dir, python_has, script};
use support::proxy::proxy_config;

#[test]
fn asyncpg() {
    if !python_has("asyncpg") {
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
    if !python_has("psycopg") {
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

/// A server-prepared statement never changes its result type under PgJDBC
/// (see JdbcReprepare.java). assumeMinServerVersion keeps PgJDBC from
/// sending its startup SETs in an extended-protocol batch, which would pin
/// it to one primary connection.
#[test]
fn jdbc_reprepare() {
    let jar = "/usr/share/java/postgresql.jar";
    if !available("PgJDBC", Command::new("test").args(["-f", jar]))
        || !available("java", Command::new("java").arg("-version"))
    {
        return;
    }
    check_with(
        |cluster| {
            let mut config = proxy_config(cluster);
            for pool in [&mut config.pool.primary, &mut config.pool.replica] {
                pool.pool_size = 2;
                pool.max_overflow = 14;
            }
            config
        },
        "java",
        &[],
        |port| {
            vec![
                "-cp".into(),
                jar.into(),
                script("JdbcReprepare.java"),
                format!("jdbc:postgresql://127.0.0.1:{port}/postgres?assumeMinServerVersion=15"),
            ]
        },
    );
}
