//! What pools, servers and clients look like at one moment: the source of
//! the gauges, of GET /status and of the admin console's SHOW commands.

use super::gauge_vec;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts};
use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Sample {
    pub pools: Vec<PoolSample>,
    pub servers: Vec<ServerSample>,
    pub clients: ClientCounts,
    pub routing_cache_hits: u64,
    pub routing_cache_misses: u64,
    /// Reads that waited for a replica: [caught up, timed out].
    pub consistency_waits: [u64; 2],
    /// PAUSE is in force: no new server connections are handed out.
    pub paused: bool,
}

/// One pool (server, database, user). The first four fields after the
/// labels are the seed design's names.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PoolSample {
    pub server: String,
    /// The role the server was configured with.
    pub role: String,
    pub database: String,
    pub user: String,
    /// `pool_size`: connections kept open.
    pub size: u32,
    /// Open and idle.
    pub checked_in: u32,
    /// In use by a client.
    pub checked_out: u32,
    /// Open beyond `size` (at most `max_overflow`).
    pub overflow: u32,
    pub max_overflow: u32,
    /// Being opened now.
    pub opening: u32,
    /// Clients waiting for a connection.
    pub waiting: u32,
    /// The server is up and, for a replica, serves reads.
    pub healthy: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerSample {
    pub server: String,
    pub configured_role: String,
    /// What it is now: "primary", "replica" or "down".
    pub state: String,
    pub up: bool,
    /// Takes writes now.
    pub primary: bool,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    /// Past `max_replica_lag_*`: skipped for reads.
    pub lagging: bool,
    pub check_failures: u64,
    /// Times a pool of this server was banned.
    pub bans: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ClientCounts {
    /// Connected, between statements.
    pub idle: u64,
    /// A statement or transaction in progress on a server connection.
    pub active: u64,
    /// Waiting for a server connection.
    pub waiting: u64,
    pub pinned: u64,
}

/// The gauge families of one scrape.
pub(super) fn gauges(s: &Sample) -> Vec<MetricFamily> {
    let mut families = Vec::new();
    families.extend(pool_gauges(s));
    families.extend(server_gauges(s));
    let clients = gauge_vec(
        "pgsplit_client_connections",
        "Client connections by state",
        &["state"],
    );
    for (state, n) in [
        ("idle", s.clients.idle),
        ("active", s.clients.active),
        ("waiting", s.clients.waiting),
    ] {
        clients.with_label_values(&[state]).set(n as f64);
    }
    families.extend(clients.collect());
    families.extend(gauge(
        "pgsplit_pinned_clients",
        "Clients pinned to one server connection by session state",
        s.clients.pinned as f64,
    ));
    families.extend(gauge(
        "pgsplit_paused",
        "1 while PAUSE is in force",
        f64::from(u8::from(s.paused)),
    ));
    let waits = IntCounterVec::new(
        Opts::new(
            "pgsplit_consistency_waits_total",
            "Reads that waited for a replica to replay the client's writes, by outcome",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    for (outcome, n) in ["caught_up", "timed_out"].iter().zip(s.consistency_waits) {
        waits.with_label_values(&[outcome]).inc_by(n);
    }
    families.extend(waits.collect());
    families.extend(counter(
        "pgsplit_routing_cache_hits_total",
        "Statements whose route came from the routing cache",
        s.routing_cache_hits,
    ));
    families.extend(counter(
        "pgsplit_routing_cache_misses_total",
        "Statements parsed because the routing cache did not have them",
        s.routing_cache_misses,
    ));
    families
}

fn pool_gauges(s: &Sample) -> Vec<MetricFamily> {
    let labels = &super::POOL_LABELS;
    let connections = gauge_vec(
        "pgsplit_pool_connections",
        "Server connections by state: idle (checked in), active (checked out), opening",
        &[labels[0], labels[1], labels[2], labels[3], "state"],
    );
    let size = gauge_vec("pgsplit_pool_size", "Configured pool_size", labels);
    let overflow = gauge_vec(
        "pgsplit_pool_max_overflow",
        "Configured max_overflow",
        labels,
    );
    let waiting = gauge_vec(
        "pgsplit_pool_waiting_clients",
        "Clients waiting for a connection from the pool",
        labels,
    );
    for p in &s.pools {
        let l = [&*p.server, &*p.role, &*p.database, &*p.user];
        for (state, n) in [
            ("idle", p.checked_in),
            ("active", p.checked_out),
            ("opening", p.opening),
        ] {
            connections
                .with_label_values(&[l[0], l[1], l[2], l[3], state])
                .set(f64::from(n));
        }
        size.with_label_values(&l).set(f64::from(p.size));
        overflow
            .with_label_values(&l)
            .set(f64::from(p.max_overflow));
        waiting.with_label_values(&l).set(f64::from(p.waiting));
    }
    [connections, size, overflow, waiting]
        .iter()
        .flat_map(|g| g.collect())
        .collect()
}

fn server_gauges(s: &Sample) -> Vec<MetricFamily> {
    let up = gauge_vec(
        "pgsplit_server_up",
        "1 while the server answers health checks",
        &["server"],
    );
    let primary = gauge_vec(
        "pgsplit_server_primary",
        "1 for the server that takes writes now",
        &["server"],
    );
    let lag_bytes = gauge_vec(
        "pgsplit_replica_lag_bytes",
        "WAL bytes the replica has yet to replay",
        &["server"],
    );
    let lag_seconds = gauge_vec(
        "pgsplit_replica_lag_seconds",
        "Seconds since the last transaction the replica replayed, while behind",
        &["server"],
    );
    for server in &s.servers {
        let l = [&*server.server];
        up.with_label_values(&l).set(f64::from(u8::from(server.up)));
        primary
            .with_label_values(&l)
            .set(f64::from(u8::from(server.primary)));
        if !server.primary {
            lag_bytes.with_label_values(&l).set(server.lag_bytes as f64);
            lag_seconds.with_label_values(&l).set(server.lag_seconds);
        }
    }
    let failures = server_counter(
        "pgsplit_health_check_failures_total",
        "Health checks that failed or timed out",
    );
    let bans = server_counter(
        "pgsplit_replica_bans_total",
        "Times a server was banned for reads after refusing or losing a connection",
    );
    for server in &s.servers {
        let l = [&*server.server];
        failures.with_label_values(&l).inc_by(server.check_failures);
        bans.with_label_values(&l).inc_by(server.bans);
    }
    let mut families: Vec<MetricFamily> = [up, primary, lag_bytes, lag_seconds]
        .iter()
        .flat_map(|g| g.collect())
        .collect();
    families.extend(failures.collect());
    families.extend(bans.collect());
    families
}

fn server_counter(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["server"]).expect("valid metric")
}

fn gauge(name: &str, help: &str, value: f64) -> Vec<MetricFamily> {
    match prometheus::Gauge::new(name, help) {
        Ok(g) => {
            g.set(value);
            g.collect()
        }
        Err(_) => Vec::new(),
    }
}

fn counter(name: &str, help: &str, value: u64) -> Vec<MetricFamily> {
    match IntCounter::new(name, help) {
        Ok(c) => {
            c.inc_by(value);
            c.collect()
        }
        Err(_) => Vec::new(),
    }
}
