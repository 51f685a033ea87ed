//! Prometheus metrics: the counters and histograms the forwarding path
//! updates, and the gauges read from a [`Sample`] at scrape time.
//!
//! Knows nothing of sessions or pools: callers update counters through
//! handles resolved once (no label lookup, no lock per statement), and the
//! scrape is handed a [`Sample`] of what pools, servers and clients look
//! like now. Gauges are computed from it when scraped, so keeping them
//! costs the hot path nothing.

mod family;
mod labels;
mod sample;
mod shard;

pub use labels::{ErrorSide, Refusal, Timeout};
pub use sample::{ClientCounts, PoolSample, Sample, ServerSample};
pub use shard::{DatabaseTraffic, SessionMetrics};

use shard::Shards;
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Instant;

/// Pool labels, in this order everywhere: server address, configured role,
/// database, user.
pub const POOL_LABELS: [&str; 4] = ["server", "role", "database", "user"];

/// The `mechanism` label of `pgsplit_client_auth_total`.
pub const AUTH_MECHANISMS: [&str; 3] = ["md5", "scram-sha-256", "scram-sha-256-plus"];
/// Its `result` label: logged in; a wrong password; a user neither
/// configured nor found by auth_query; a user whose secret cannot check
/// this method (an md5 hash for SCRAM); a malformed exchange; auth_query
/// failed. All but `ok` are refused with the same `28P01` (but the last
/// two, with what went wrong).
pub const AUTH_RESULTS: [&str; 6] = [
    "ok",
    "wrong_password",
    "unknown_user",
    "unusable_secret",
    "protocol_violation",
    "lookup_failed",
];
/// The `result` label of `pgsplit_auth_query_total`.
pub const AUTH_QUERY_RESULTS: [&str; 4] = ["cached", "found", "not_found", "failed"];

/// The `credential` label of `pgsplit_server_logins_total`: nothing (the
/// server trusts the user), a password, an md5 hash, or a client's SCRAM
/// keys (pass-through).
pub const LOGIN_CREDENTIALS: [&str; 4] = ["none", "password", "md5_hash", "scram_keys"];

/// Labels of the per-server statement histogram: the server's address and
/// configured role (as the pool labels' first two).
pub const SERVER_LABELS: [&str; 2] = ["server", "role"];

/// The SQLSTATE classes whose `pgsplit_errors_total` series exist from the
/// start, for every side: those pgsplit itself answers with (08 connection,
/// 0A feature, 25 transaction state, 28 authorization, 3B savepoint, 3D
/// database, 42 syntax or access, 53 resources, 57 operator intervention,
/// XX internal) and the servers' most common (22 data, 23 integrity, 40
/// rollback). Others appear at their first error.
pub const ERROR_CLASSES: [&str; 13] = [
    "08", "0A", "22", "23", "25", "28", "3B", "3D", "40", "42", "53", "57", "XX",
];

/// Statement durations on one server: 100 µs (a cached read over
/// loopback) to 10 s; slower ones land in +Inf. Fewer buckets than the
/// session histogram: one series per server and role, shared by all
/// sessions.
const STATEMENT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 2.5, 10.0,
];

/// Waits for a pool connection: most are immediate (0), the rest up to
/// `pool_timeout`.
const WAIT_BUCKETS: [f64; 12] = [
    0.0, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

/// What became of a CancelRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Local,
    Forwarded,
    FromPeer,
    /// A peer's forward of a key that is not this instance's (with
    /// `peers_dns` every instance gets each forward; one of them has it).
    PeerMiss,
    Unknown,
}

impl CancelOutcome {
    const ALL: [CancelOutcome; 5] = [
        CancelOutcome::Local,
        CancelOutcome::Forwarded,
        CancelOutcome::FromPeer,
        CancelOutcome::PeerMiss,
        CancelOutcome::Unknown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CancelOutcome::Local => "local",
            CancelOutcome::Forwarded => "forwarded",
            CancelOutcome::FromPeer => "from_peer",
            CancelOutcome::PeerMiss => "peer_miss",
            CancelOutcome::Unknown => "unknown",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// The per-statement counters, one shard per session.
    shards: Arc<Shards>,
    errors: IntCounterVec,
    /// Client connections accepted (logins started), over the life of the
    /// process.
    pub client_connections_accepted: IntCounter,
    /// Sessions ended by `idle_transaction_timeout`.
    pub idle_transaction_timeouts: IntCounter,
    pins: IntCounterVec,
    refusals: IntCounterVec,
    timeouts: IntCounterVec,
    cancels: IntCounterVec,
    primary_rechecks: IntCounter,
    commit_lsn_reports: IntCounterVec,
    reloads: IntCounterVec,
    client_auth: IntCounterVec,
    auth_query: IntCounterVec,
    server_logins: IntCounterVec,
    /// TLS negotiations with clients and servers, by outcome.
    tls: IntCounterVec,
    checkout_wait: HistogramVec,
    checkout_timeouts: IntCounterVec,
    admin_commands: IntCounterVec,
    /// Statement durations per server (address and configured role).
    server_statements: HistogramVec,
    uptime: IntGauge,
    started: Instant,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            shards: Arc::default(),
            errors: counter_vec(
                &registry,
                "pgsplit_errors_total",
                "Errors by who caused them (client, server, pgsplit) and SQLSTATE class",
                &["side", "class"],
            ),
            // Not pgsplit_client_connections_total: Prometheus and
            // OpenMetrics read that as the counter of the gauge family
            // pgsplit_client_connections (see `tests::no_family_clashes`).
            client_connections_accepted: counter(
                &registry,
                "pgsplit_client_connections_accepted_total",
                "Client connections accepted",
            ),
            idle_transaction_timeouts: counter(
                &registry,
                "pgsplit_idle_transaction_timeouts_total",
                "Client sessions ended because they stayed idle inside a transaction longer than idle_transaction_timeout",
            ),
            pins: counter_vec(
                &registry,
                "pgsplit_pins_total",
                "Clients pinned to one server connection, by what pinned them",
                &["reason"],
            ),
            refusals: counter_vec(
                &registry,
                "pgsplit_refusals_total",
                "Clients and requests pgsplit refused because of a limit, by which (max_client_conn, fd_limit, max_db_connections, max_user_connections, message_too_large, admin_login, admin_command)",
                &["reason"],
            ),
            timeouts: counter_vec(
                &registry,
                "pgsplit_timeouts_total",
                "Waits pgsplit ended because a timeout ran out, by its config key",
                &["timeout"],
            ),
            primary_rechecks: counter(
                &registry,
                "pgsplit_primary_rechecks_total",
                "Times a write's error (25006, 57P01-57P03) or lost connection on the primary made pgsplit re-check every server at once (writes wait for a confirmed primary meanwhile)",
            ),
            commit_lsn_reports: {
                let c = counter_vec(
                    &registry,
                    "pgsplit_commit_lsn_reports_total",
                    "Writes whose client was told their pgsplit.commit_lsn (report_commit_lsn): reported, or no_sample when the primary's position could not be had in time",
                    &["outcome"],
                );
                for outcome in ["reported", "no_sample"] {
                    c.with_label_values(&[outcome]);
                }
                c
            },
            cancels: counter_vec(
                &registry,
                "pgsplit_cancel_requests_total",
                "CancelRequests by outcome: local (a statement of this instance's), forwarded (to a peer instance), from_peer (a peer's forward, for this instance), peer_miss (a peer's forward of a key not this instance's), unknown (a client's key no instance here knows: nothing cancelled)",
                &["outcome"],
            ),
            reloads: counter_vec(
                &registry,
                "pgsplit_reloads_total",
                "Configuration reloads, by result",
                &["result"],
            ),
            client_auth: counter_vec(
                &registry,
                "pgsplit_client_auth_total",
                "Client password checks (md5, SCRAM), by mechanism and result",
                &["mechanism", "result"],
            ),
            auth_query: counter_vec(
                &registry,
                "pgsplit_auth_query_total",
                "auth_query lookups of users not in [[users]], by result",
                &["result"],
            ),
            server_logins: counter_vec(
                &registry,
                "pgsplit_server_logins_total",
                "Server connections opened, by what pgsplit logged in with and result",
                &["credential", "result"],
            ),
            tls: counter_vec(
                &registry,
                "pgsplit_tls_negotiations_total",
                "TLS negotiations with clients and servers (side), by outcome: encrypted, handshake_failed, no_alpn (direct TLS without ALPN postgresql), plain_refused (a plain client under client_tls_sslmode require), tls_refused (a server without TLS under server_tls_sslmode require), plain_fallback (prefer, to a server without TLS)",
                &["side", "outcome"],
            ),
            checkout_wait: histogram_vec(
                &registry,
                "pgsplit_pool_checkout_wait_seconds",
                "Time clients waited for a server connection from the pool",
                &POOL_LABELS,
                &WAIT_BUCKETS,
            ),
            checkout_timeouts: counter_vec(
                &registry,
                "pgsplit_pool_checkout_timeouts_total",
                "Clients that gave up waiting for a pool connection after pool_timeout",
                &POOL_LABELS,
            ),
            admin_commands: counter_vec(
                &registry,
                "pgsplit_admin_commands_total",
                "Admin console commands, by command (SHOW, PAUSE, KILL, ...) and result (ok, error, denied)",
                &["command", "result"],
            ),
            server_statements: histogram_vec(
                &registry,
                "pgsplit_server_statement_duration_seconds",
                "Time from sending a statement to a server until its ReadyForQuery, by server",
                &SERVER_LABELS,
                &STATEMENT_BUCKETS,
            ),
            uptime: gauge(
                &registry,
                "pgsplit_uptime_seconds",
                "Seconds since pgsplit started",
            ),
            started: Instant::now(),
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new("pgsplit_build_info", "pgsplit's version; always 1"),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        register(&metrics.registry, build);
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, process_max_fds, process_start_time_seconds...
        // (Linux; read from /proc at scrape time).
        #[cfg(target_os = "linux")]
        register(
            &metrics.registry,
            prometheus::process_collector::ProcessCollector::for_self(),
        );
        // Series that exist from the start read 0 rather than "no data".
        for side in ErrorSide::ALL {
            for class in ERROR_CLASSES {
                metrics.errors.with_label_values(&[side.as_str(), class]);
            }
        }
        for result in ["ok", "failed"] {
            metrics.reloads.with_label_values(&[result]);
        }
        for refusal in Refusal::ALL {
            metrics.refusals.with_label_values(&[refusal.as_str()]);
        }
        for timeout in Timeout::ALL {
            metrics.timeouts.with_label_values(&[timeout.as_str()]);
        }
        for mechanism in AUTH_MECHANISMS {
            for result in AUTH_RESULTS {
                metrics.client_auth.with_label_values(&[mechanism, result]);
            }
        }
        for result in AUTH_QUERY_RESULTS {
            metrics.auth_query.with_label_values(&[result]);
        }
        for credential in LOGIN_CREDENTIALS {
            for result in ["ok", "failed"] {
                metrics
                    .server_logins
                    .with_label_values(&[credential, result]);
            }
        }
        for outcome in CancelOutcome::ALL {
            metrics.cancels.with_label_values(&[outcome.as_str()]);
        }
        metrics
    }

    /// Makes the `pgsplit_admin_commands_total` series exist (at 0).
    pub fn declare_admin_commands(&self, commands: &[&str], results: &[&str]) {
        for command in commands {
            for result in results {
                self.admin_commands.with_label_values(&[command, result]);
            }
        }
    }

    pub fn admin_command(&self, command: &str, result: &str) {
        self.admin_commands
            .with_label_values(&[command, result])
            .inc();
    }

    /// Each database's traffic since start: the sessions' counts, and the
    /// checkouts and waits of its pools (those retired by a reload or
    /// for disuse leave theirs out).
    pub fn by_database(&self) -> Vec<DatabaseTraffic> {
        let mut all = self.shards.by_database();
        for family in self.checkout_wait.collect() {
            for m in family.get_metric() {
                let Some(database) = m.get_label().iter().find(|l| l.name() == "database") else {
                    continue;
                };
                let h = m.get_histogram();
                let at = match all.iter().position(|t| t.database == database.value()) {
                    Some(at) => at,
                    None => {
                        all.push(DatabaseTraffic {
                            database: database.value().to_string(),
                            ..Default::default()
                        });
                        all.len() - 1
                    }
                };
                all[at].checkouts += h.get_sample_count();
                all[at].wait_nanos += (h.get_sample_sum() * 1e9) as u64;
            }
        }
        all.sort_by(|a, b| a.database.cmp(&b.database));
        all
    }

    /// Seconds since pgsplit started.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The counters of a new session.
    pub fn session(&self) -> SessionMetrics {
        SessionMetrics::new(self.shards.clone())
    }

    /// Routing cache hits that sessions' memos answered (the router counts
    /// the rest).
    pub fn routing_memo_hits(&self) -> u64 {
        self.shards.memo_hits()
    }

    /// Every family: the registry's and the summed session shards'.
    fn families(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(shard::families(&self.shards.total()));
        families
    }

    /// An error, by SQLSTATE (its first two characters are the class).
    pub fn error(&self, side: ErrorSide, sqlstate: &str) {
        let class = sqlstate.get(..2).unwrap_or("??");
        self.errors.with_label_values(&[side.as_str(), class]).inc();
    }

    /// Makes the `pgsplit_pins_total` series of these reasons exist (at 0)
    /// before any client is pinned.
    pub fn declare_pin_reasons(&self, reasons: &[&str]) {
        for reason in reasons {
            self.pins.with_label_values(&[reason]);
        }
    }

    pub fn pinned(&self, reason: &str) {
        self.pins.with_label_values(&[reason]).inc();
    }

    /// A client or request refused because of a limit.
    pub fn refused(&self, refusal: Refusal) {
        self.refusals.with_label_values(&[refusal.as_str()]).inc();
    }

    /// A wait ended by a timeout.
    pub fn timed_out(&self, timeout: Timeout) {
        self.timeouts.with_label_values(&[timeout.as_str()]).inc();
    }

    /// A client's password check ended: `mechanism` one of
    /// [`AUTH_MECHANISMS`], `result` one of [`AUTH_RESULTS`].
    pub fn client_auth(&self, mechanism: &str, result: &str) {
        self.client_auth
            .with_label_values(&[mechanism, result])
            .inc();
    }

    /// An auth_query lookup: one of [`AUTH_QUERY_RESULTS`].
    pub fn auth_query(&self, result: &str) {
        self.auth_query.with_label_values(&[result]).inc();
    }

    pub fn primary_recheck(&self) {
        self.primary_rechecks.inc();
    }

    /// A `pgsplit.commit_lsn` report: whether the position was had in time.
    pub fn commit_lsn_report(&self, reported: bool) {
        let outcome = if reported { "reported" } else { "no_sample" };
        self.commit_lsn_reports.with_label_values(&[outcome]).inc();
    }

    pub fn cancel_request(&self, outcome: CancelOutcome) {
        self.cancels.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Makes the `pgsplit_tls_negotiations_total` series of these (side,
    /// outcome) pairs exist (at 0) before any negotiation.
    pub fn declare_tls_outcomes(&self, pairs: &[(&str, &str)]) {
        for (side, outcome) in pairs {
            self.tls.with_label_values(&[side, outcome]);
        }
    }

    pub fn tls_negotiated(&self, side: &str, outcome: &str) {
        self.tls.with_label_values(&[side, outcome]).inc();
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// The checkout-wait histogram and timeout counter of one pool,
    /// resolved once when the pool is made.
    pub fn pool_handles(&self, labels: &[&str; 4]) -> PoolHandles {
        PoolHandles {
            statement: self
                .server_statements
                .with_label_values(&[labels[0], labels[1]]),
            wait: self.checkout_wait.with_label_values(labels),
            timeouts: self.checkout_timeouts.with_label_values(labels),
            limited: [Refusal::MaxDbConnections, Refusal::MaxUserConnections]
                .map(|r| self.refusals.with_label_values(&[r.as_str()])),
            logins: self.server_logins.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Drops the series of a pool that is gone (retired), so they do
    /// not linger in every scrape. A pool made later with the same labels
    /// starts them again from zero, as Prometheus reads a counter reset.
    pub fn forget_pool(&self, labels: &[&str; 4]) {
        let _ = self.checkout_wait.remove_label_values(labels);
        let _ = self.checkout_timeouts.remove_label_values(labels);
    }

    /// (metric, labels, value) of every counter, and count and sum of
    /// every histogram, for the admin console's SHOW STATS.
    pub fn stats(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for family in self.families() {
            let kind = family.get_field_type();
            for m in family.get_metric() {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect::<Vec<_>>()
                    .join(",");
                if kind == prometheus::proto::MetricType::COUNTER {
                    let v = m.get_counter().value();
                    out.push((family.name().to_string(), labels, v.to_string()));
                } else if kind == prometheus::proto::MetricType::HISTOGRAM {
                    let h = m.get_histogram();
                    let name = family.name();
                    out.push((
                        format!("{name}_count"),
                        labels.clone(),
                        h.get_sample_count().to_string(),
                    ));
                    out.push((
                        format!("{name}_sum"),
                        labels,
                        format!("{:.6}", h.get_sample_sum()),
                    ));
                }
            }
        }
        out
    }

    /// The text exposition of everything: the registry's counters plus
    /// gauges computed from `sample`.
    pub fn render(&self, sample: &Sample) -> String {
        self.uptime.set(self.started.elapsed().as_secs() as i64);
        let mut families = self.families();
        families.extend(sample::gauges(sample));
        // The encoder refuses a family without samples (a vector no label
        // set was used of yet, pool gauges before any pool exists).
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(%error, "could not encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One pool's handles, kept by the pool.
#[derive(Clone)]
pub struct PoolHandles {
    /// `pgsplit_server_statement_duration_seconds` of the pool's server
    /// (shared by every pool of that server and role).
    pub statement: Histogram,
    pub wait: Histogram,
    pub timeouts: IntCounter,
    /// Clients that gave up at `max_db_connections` and at
    /// `max_user_connections` (`pgsplit_refusals_total`).
    pub limited: [IntCounter; 2],
    /// `pgsplit_tls_negotiations_total`, counted as connections open.
    pub tls: IntCounterVec,
    /// `pgsplit_server_logins_total`, labelled at each login (rare).
    pub logins: IntCounterVec,
}

impl PoolHandles {
    /// A server login ended; `credential` one of [`LOGIN_CREDENTIALS`].
    pub fn login(&self, credential: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.logins.with_label_values(&[credential, result]).inc();
    }
}

// The names and help texts are constants: registering them cannot fail
// except by a programming error, which the unit tests below would catch.
fn register(registry: &Registry, collector: impl Collector + 'static) {
    if let Err(error) = registry.register(Box::new(collector)) {
        tracing::error!(%error, "metric not registered");
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    register(registry, c.clone());
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    register(registry, g.clone());
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, c.clone());
    c
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let h = HistogramVec::new(opts, labels).expect("valid metric");
    register(registry, h.clone());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;
    use crate::router::decision::Why;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        let session = m.session();
        session.statement(Role::Replica, Why::ReadOnly);
        session.statement_done(Role::Replica, 0.0003);
        drop(session);
        // A live session's counts and an ended one's both show.
        let live = m.session();
        live.statement(Role::Replica, Why::ReadOnly);
        m.error(ErrorSide::Server, "23505");
        let text = m.render(&Sample::default());
        assert!(text
            .contains("pgsplit_statements_total{destination=\"replica\",reason=\"read_only\"} 2"));
        assert!(text.contains(
            "pgsplit_statement_duration_seconds_bucket{destination=\"replica\",le=\"0.0005\"} 1"
        ));
        assert!(
            text.contains("pgsplit_statement_duration_seconds_count{destination=\"replica\"} 1")
        );
        assert!(text.contains("pgsplit_errors_total{class=\"23\",side=\"server\"} 1"));
        assert!(text.contains("pgsplit_build_info{version="));
        assert!(text.contains("pgsplit_pinned_clients 0"));
    }

    #[test]
    fn refusals_and_timeouts_exist_at_zero_from_the_start() {
        let m = Metrics::new();
        let text = m.render(&Sample::default());
        for refusal in Refusal::ALL {
            let series = format!(
                "pgsplit_refusals_total{{reason=\"{}\"}} 0",
                refusal.as_str()
            );
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
        for timeout in Timeout::ALL {
            let series = format!(
                "pgsplit_timeouts_total{{timeout=\"{}\"}} 0",
                timeout.as_str()
            );
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
        m.refused(Refusal::MaxClientConn);
        m.timed_out(Timeout::Query);
        let text = m.render(&Sample::default());
        assert!(text.contains("pgsplit_refusals_total{reason=\"max_client_conn\"} 1"));
        assert!(text.contains("pgsplit_timeouts_total{timeout=\"query_timeout\"} 1"));
    }

    #[test]
    fn authentication_series_exist_from_the_start() {
        let m = Metrics::new();
        let text = m.render(&Sample::default());
        for mechanism in AUTH_MECHANISMS {
            for result in AUTH_RESULTS {
                let series = format!(
                    "pgsplit_client_auth_total{{mechanism=\"{mechanism}\",result=\"{result}\"}} 0"
                );
                assert!(text.contains(&series), "{series}");
            }
        }
        for result in AUTH_QUERY_RESULTS {
            assert!(text.contains(&format!(
                "pgsplit_auth_query_total{{result=\"{result}\"}} 0"
            )));
        }
        for credential in LOGIN_CREDENTIALS {
            let series = format!(
                "pgsplit_server_logins_total{{credential=\"{credential}\",result=\"failed\"}} 0"
            );
            assert!(text.contains(&series), "{series}");
        }
        m.client_auth("md5", "unknown_user");
        let text = m.render(&Sample::default());
        assert!(
            text.contains("pgsplit_client_auth_total{mechanism=\"md5\",result=\"unknown_user\"} 1")
        );
    }

    /// Every family of a scrape, with a pool, a server and a session so
    /// that none is left out for want of samples.
    fn every_family(m: &Metrics) -> Vec<prometheus::proto::MetricFamily> {
        let _session = m.session();
        m.pool_handles(&["h:1", "primary", "db", "u"]);
        let sample = Sample {
            pools: vec![PoolSample::default()],
            servers: vec![ServerSample::default()],
            ..Sample::default()
        };
        let mut families = m.families();
        families.extend(sample::gauges(&sample));
        families
    }

    /// No family's name is another's plus a suffix Prometheus and
    /// OpenMetrics give a meaning (a counter's `_total`, a histogram's
    /// `_count`, `_sum`, `_bucket`, `_created`): a scraper would merge or
    /// reject them. Counters end in `_total`, nothing else does; durations
    /// and sizes are in base units (`_seconds`, `_bytes`).
    #[test]
    fn no_family_clashes_and_names_follow_the_conventions() {
        use prometheus::proto::MetricType;
        let m = Metrics::new();
        let families = every_family(&m);
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for f in &families {
            let name = f.name();
            for suffix in ["_total", "_count", "_sum", "_bucket", "_created", "_info"] {
                let clash = format!("{name}{suffix}");
                assert!(!names.contains(&clash.as_str()), "{name} and {clash} clash");
            }
            let counter = f.get_field_type() == MetricType::COUNTER;
            assert_eq!(
                counter,
                name.ends_with("_total"),
                "{name}: counters end in _total, only they"
            );
            for unit in ["_ms", "_milliseconds", "_us", "_kb", "_mb", "_kib", "_mib"] {
                assert!(!name.contains(unit), "{name}: not a base unit");
            }
        }
        // One family per name.
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
    }

    /// Families a dashboard shows exist from the start (at 0), before any
    /// client, error or pool: "0" rather than "no data".
    #[test]
    fn labelled_counters_exist_at_zero_from_the_start() {
        let m = Metrics::new();
        let text = m.render(&Sample::default());
        for series in [
            "pgsplit_errors_total{class=\"08\",side=\"client\"} 0",
            "pgsplit_errors_total{class=\"53\",side=\"pgsplit\"} 0",
            "pgsplit_errors_total{class=\"23\",side=\"server\"} 0",
            "pgsplit_client_connections_accepted_total 0",
            "pgsplit_cancel_requests_total{outcome=\"unknown\"} 0",
            "pgsplit_reloads_total{result=\"failed\"} 0",
            "pgsplit_statements_total{destination=\"replica\",reason=\"read_only\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        #[cfg(target_os = "linux")]
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing"
            );
        }
    }

    #[test]
    fn statements_are_timed_per_server() {
        let m = Metrics::new();
        let handles = m.pool_handles(&["h:1", "replica", "db", "u"]);
        handles.statement.observe(0.0003);
        // Another pool of the same server adds to the same series.
        m.pool_handles(&["h:1", "replica", "db2", "u"])
            .statement
            .observe(0.02);
        let text = m.render(&Sample::default());
        assert!(text.contains(
            "pgsplit_server_statement_duration_seconds_bucket{role=\"replica\",server=\"h:1\",le=\"0.0005\"} 1"
        ), "{text}");
        assert!(text.contains(
            "pgsplit_server_statement_duration_seconds_count{role=\"replica\",server=\"h:1\"} 2"
        ), "{text}");
    }

    #[test]
    fn a_forgotten_pool_leaves_no_series() {
        let m = Metrics::new();
        let labels = ["h:1", "replica", "gone", "u"];
        let handles = m.pool_handles(&labels);
        handles.wait.observe(0.0);
        handles.timeouts.inc();
        let kept = m.pool_handles(&["h:1", "replica", "kept", "u"]);
        kept.wait.observe(0.0);
        assert!(m.render(&Sample::default()).contains("database=\"gone\""));
        m.forget_pool(&labels);
        let text = m.render(&Sample::default());
        assert!(!text.contains("database=\"gone\""), "{text}");
        assert!(text.contains("database=\"kept\""), "{text}");
    }
}
