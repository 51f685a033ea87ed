//! asyncpg through pgsplit, beyond tests/drivers.rs's round trip: the
//! scripts in tests/drivers/asyncpg_*.py, each against a fresh cluster and
//! pgsplit in transaction pooling. Skipped when asyncpg is not installed,
//! unless PGSPLIT_REQUIRE_DRIVERS=1 (scripts/test.sh), where they fail.
//!
//! - reprepare (also in session pooling): a cached statement never changes
//!   its result type under the client (0A000, which asyncpg answers by
//!   preparing again);
//! - cancel: `command_timeout` cancels never hit the next statement;
//! - replica_reads: reads reach the replica also on their first run
//!   (Parse/Describe/Flush), with statement_cache_size=0, and after type
//!   introspection, whose set_config('jit', ...) must not pin the client;
//! - executemany_early_stop: an executemany failing on its first rows stops
//!   early, as it does directly (asyncpg's own
//!   test_executemany_server_failure_during_writes).

mod support;

use pgsplit::config::PoolMode;
use support::drivers::{asyncpg_dsn, check_then, check_with, python_has, script};
use support::proxy::proxy_config;

/// Runs tests/drivers/`name` with pgsplit's DSN, the primary's and the
/// replica's ports, then `extra` arguments.
fn asyncpg_script(name: &str, extra: &[&str]) {
    if !python_has("asyncpg") {
        return;
    }
    let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    check_then(
        "python3",
        |port| vec![script(name), asyncpg_dsn(port)],
        extra,
    );
}

#[test]
fn reprepare() {
    asyncpg_script("asyncpg_reprepare.py", &[]);
}

/// In session pooling too: a client's statement, prepared on its primary
/// connection (its first run), runs on its replica connection after the
/// ALTER (asyncpg's own test_prepare_cache_invalidation_silent fails so).
#[test]
fn reprepare_session_pooling() {
    if !python_has("asyncpg") {
        return;
    }
    check_with(
        |cluster| {
            let mut config = proxy_config(cluster);
            config.pool_mode = PoolMode::Session;
            for pool in [&mut config.pool.primary, &mut config.pool.replica] {
                pool.max_overflow = 18;
            }
            config
        },
        "python3",
        &[],
        |port| vec![script("asyncpg_reprepare.py"), asyncpg_dsn(port)],
    );
}

/// 60 timeouts (12 s): before the fix about one in ten statements after a
/// cancel was hit, so a run that passes by luck is rare.
#[test]
fn cancel() {
    asyncpg_script("asyncpg_cancel.py", &["60"]);
}

#[test]
fn replica_reads() {
    asyncpg_script("asyncpg_replica_reads.py", &[]);
}

#[test]
fn executemany_early_stop() {
    asyncpg_script("asyncpg_executemany_early_stop.py", &[]);
}
