//! What pools, servers and clients look like at one moment: the source of
//! the gauges, of GET /status and of the admin console's SHOW commands.

use super::family::{counter, family, gauge};
use prometheus::proto::{Metric, MetricFamily, MetricType};
use serde::Serialize;
use MetricType::{COUNTER, GAUGE};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Sample {
    pub pools: Vec<PoolSample>,
    pub servers: Vec<ServerSample>,
    pub clients: ClientCounts,
    pub routing_cache_hits: u64,
    pub routing_cache_misses: u64,
    /// Reads that waited for a replica: [caught up, timed out].
    pub consistency_waits: [u64; 2],
    /// Extra checks of the writer that reads waited for (its position).
    pub position_samples: u64,
    /// PAUSE is in force: no new server connections are handed out.
    pub paused: bool,
    /// More than one server reports it is a primary: writes go to none.
    pub split_brain: bool,
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
    /// `pool_size`: connections opened when the pool starts.
    pub size: u32,
    /// Open and idle.
    pub checked_in: u32,
    /// In use by a client.
    pub checked_out: u32,
    /// Kept by the idle client that used it last, which runs its next
    /// transaction on it unless another client needs it first.
    pub parked: u32,
    /// Open beyond `size` (at most `max_overflow`).
    pub overflow: u32,
    pub max_overflow: u32,
    /// Being opened now.
    pub opening: u32,
    /// Clients waiting for a connection.
    pub waiting: u32,
    /// How long the longest of them has waited so far (0 when none waits).
    pub max_wait_seconds: f64,
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
    /// A healthy standby within the lag limits: reads may go to it.
    pub serves_reads: bool,
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

/// The families computed from a sample: gauges, and the counters kept
/// outside the registry (by servers, pools and the router).
pub(super) fn gauges(s: &Sample) -> Vec<MetricFamily> {
    let mut families = pool_gauges(s);
    families.extend(server_families(s));
    let clients = [
        ("idle", s.clients.idle),
        ("active", s.clients.active),
        ("waiting", s.clients.waiting),
    ]
    .iter()
    .map(|(state, n)| gauge(&[("state", state)], *n as f64))
    .collect();
    let waits = ["caught_up", "timed_out"]
        .iter()
        .zip(s.consistency_waits)
        .map(|(outcome, n)| counter(&[("outcome", outcome)], n))
        .collect();
    families.extend([
        family(
            "pgsplit_client_connections",
            "Client connections by state",
            GAUGE,
            clients,
        ),
        family(
            "pgsplit_pinned_clients",
            "Clients pinned to one server connection by session state",
            GAUGE,
            vec![gauge(&[], s.clients.pinned as f64)],
        ),
        family(
            "pgsplit_paused",
            "1 while PAUSE is in force",
            GAUGE,
            vec![gauge(&[], f64::from(u8::from(s.paused)))],
        ),
        family(
            "pgsplit_consistency_waits_total",
            "Reads that waited for a replica to replay the client's writes, by outcome",
            COUNTER,
            waits,
        ),
        family(
            "pgsplit_position_samples_total",
            "Queries pgsplit ran on the primary for its WAL position because reads (consistency session, global or cluster) or commit_lsn reports waited for one",
            COUNTER,
            vec![counter(&[], s.position_samples)],
        ),
        family(
            "pgsplit_routing_cache_hits_total",
            "Statements whose route came from the routing cache",
            COUNTER,
            vec![counter(&[], s.routing_cache_hits)],
        ),
        family(
            "pgsplit_routing_cache_misses_total",
            "Statements parsed because the routing cache did not have them",
            COUNTER,
            vec![counter(&[], s.routing_cache_misses)],
        ),
    ]);
    families
}

fn pool_gauges(s: &Sample) -> Vec<MetricFamily> {
    let (mut connections, mut size, mut overflow, mut waiting, mut max_wait) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &s.pools {
        let [a, b, c, d] = super::POOL_LABELS;
        let l = [
            (a, &*p.server),
            (b, &*p.role),
            (c, &*p.database),
            (d, &*p.user),
        ];
        for (state, n) in [
            ("idle", p.checked_in),
            ("active", p.checked_out),
            ("parked", p.parked),
            ("opening", p.opening),
        ] {
            let [l0, l1, l2, l3] = l;
            connections.push(gauge(&[l0, l1, l2, l3, ("state", state)], f64::from(n)));
        }
        size.push(gauge(&l, f64::from(p.size)));
        overflow.push(gauge(&l, f64::from(p.max_overflow)));
        waiting.push(gauge(&l, f64::from(p.waiting)));
        max_wait.push(gauge(&l, p.max_wait_seconds));
    }
    vec![
        family(
            "pgsplit_pool_connections",
            "Server connections by state: idle (checked in), active (checked out), opening",
            GAUGE,
            connections,
        ),
        family("pgsplit_pool_size", "Configured pool_size", GAUGE, size),
        family(
            "pgsplit_pool_max_overflow",
            "Configured max_overflow",
            GAUGE,
            overflow,
        ),
        family(
            "pgsplit_pool_waiting_clients",
            "Clients waiting for a connection from the pool",
            GAUGE,
            waiting,
        ),
        family(
            "pgsplit_pool_max_wait_seconds",
            "How long the client waiting longest for a connection from the pool has waited so far (0 when none waits)",
            GAUGE,
            max_wait,
        ),
    ]
}

fn server_families(s: &Sample) -> Vec<MetricFamily> {
    let per_server = |value: &dyn Fn(&ServerSample) -> Option<Metric>| {
        s.servers.iter().filter_map(value).collect::<Vec<_>>()
    };
    fn l(server: &ServerSample) -> [(&'static str, &str); 1] {
        [("server", server.server.as_str())]
    }
    let flag = |b: bool| f64::from(u8::from(b));
    vec![
        family(
            "pgsplit_server_up",
            "1 while the server answers health checks",
            GAUGE,
            per_server(&|v| Some(gauge(&l(v), flag(v.up)))),
        ),
        family(
            "pgsplit_server_primary",
            "1 for the server that takes writes now",
            GAUGE,
            per_server(&|v| Some(gauge(&l(v), flag(v.primary)))),
        ),
        family(
            "pgsplit_replica_lag_bytes",
            "WAL bytes the replica has yet to replay",
            GAUGE,
            per_server(&|v| (!v.primary).then(|| gauge(&l(v), v.lag_bytes as f64))),
        ),
        family(
            "pgsplit_replica_lag_seconds",
            "Seconds since the last transaction the replica replayed, while behind",
            GAUGE,
            per_server(&|v| (!v.primary).then(|| gauge(&l(v), v.lag_seconds))),
        ),
        family(
            "pgsplit_health_check_failures_total",
            "Health checks that failed or timed out",
            COUNTER,
            per_server(&|v| Some(counter(&l(v), v.check_failures))),
        ),
        family(
            "pgsplit_replica_bans_total",
            "Times a server was banned for reads after refusing or losing a connection",
            COUNTER,
            per_server(&|v| Some(counter(&l(v), v.bans))),
        ),
    ]
}
