//! pgbench through pgsplit: initialization, TPC-B in every query mode,
//! select-only, and session pooling; no failed or aborted transactions, and
//! the balances add up on the primary afterwards.

mod support;

use pgsplit::config::{Config, PoolMode};
use support::cluster::Cluster;
use support::proxy::{proxy_config, Proxy};

/// Runs pgbench against 127.0.0.1:`port` with `args`; returns its output.
/// Panics unless it exits 0.
fn pgbench(port: u16, args: &[&str]) -> String {
    let (ok, text) = support::proxy::pgbench(port, args);
    assert!(ok, "pgbench {args:?} failed:\n{text}");
    text
}

/// A benchmark run that must finish cleanly.
fn run_clean(port: u16, args: &[&str]) {
    let text = pgbench(port, args);
    assert!(
        text.contains("number of failed transactions: 0"),
        "pgbench {args:?}:\n{text}"
    );
    assert!(!text.contains("aborted"), "pgbench {args:?}:\n{text}");
}

fn assert_balances_add_up(c: &Cluster) {
    let accounts = c.psql(
        c.primary_port(),
        "select sum(abalance) from pgbench_accounts",
    );
    let history = c.psql(
        c.primary_port(),
        "select coalesce(sum(delta), 0) from pgbench_history",
    );
    assert_eq!(accounts, history, "accounts vs history on the primary");
    let txns = c.psql(c.primary_port(), "select count(*) from pgbench_history");
    assert!(txns.parse::<u64>().unwrap() > 0, "no transactions recorded");
}

fn init(c: &Cluster, p: &Proxy) {
    let out = pgbench(p.port(), &["-i", "-s", "2", "-q"]);
    assert!(out.contains("done"), "{out}");
    assert_eq!(
        c.psql(c.primary_port(), "select count(*) from pgbench_accounts"),
        "200000"
    );
    c.wait_replica_caught_up();
}

#[test]
fn tpcb_in_every_query_mode_through_transaction_pooling() {
    let c = Cluster::start();
    let p = Proxy::start(proxy_config(&c));
    init(&c, &p);
    // Without -n each run would vacuum and truncate pgbench_history, and
    // the balances would no longer add up over several runs; the first run
    // (history still empty) keeps the vacuum, through pgsplit.
    run_clean(p.port(), &["-M", "simple", "-c", "8", "-j", "2", "-T", "5"]);
    for mode in ["extended", "prepared"] {
        run_clean(
            p.port(),
            &["-n", "-M", mode, "-c", "8", "-j", "2", "-T", "5"],
        );
    }
    run_clean(
        p.port(),
        &[
            "-n", "-S", "-M", "prepared", "-c", "8", "-j", "2", "-T", "5",
        ],
    );
    assert_balances_add_up(&c);
}

#[test]
fn tpcb_prepared_through_session_pooling() {
    let c = Cluster::start();
    let p = Proxy::start(Config {
        pool_mode: PoolMode::Session,
        ..proxy_config(&c)
    });
    init(&c, &p);
    run_clean(
        p.port(),
        &["-M", "prepared", "-c", "8", "-j", "2", "-T", "5"],
    );
    assert_balances_add_up(&c);
}
