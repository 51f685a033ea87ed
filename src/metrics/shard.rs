//! Per-session counters: the statement, transaction and byte counts every
//! statement updates. Each session writes only its own shard, so the
//! forwarding path never touches a cache line another core writes (shared
//! counters would bounce between cores on every statement); a scrape adds
//! up the live shards and what ended sessions left behind.

use super::family::{counter, family, labelled};
use crate::role::Role;
use crate::router::decision::Why;
use parking_lot::Mutex;
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Statement and transaction durations: 50 µs to 10 s.
pub(super) const DURATION_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5, 10.0,
];

const LABELS: usize = Why::ALL.len();

#[derive(Default)]
struct Hist {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

#[derive(Default)]
pub struct Shard {
    statements: [[AtomicU64; LABELS]; 2],
    transactions: [AtomicU64; 2],
    statement_seconds: [Hist; 2],
    transaction_seconds: [Hist; 2],
    received: AtomicU64,
    sent: AtomicU64,
    /// Routes a session's memo gave (`RouteMemo`): routing cache hits that
    /// never reached the shared cache's counters.
    memo_hits: AtomicU64,
    /// The database of the session, once it is known (SHOW STATS).
    database: std::sync::OnceLock<Arc<str>>,
}

/// One database's counts, as the admin console's SHOW STATS adds them up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DatabaseTraffic {
    pub database: String,
    /// Statements by where they ran: [primary, replica].
    pub statements: [u64; 2],
    pub statement_nanos: u64,
    pub transactions: u64,
    pub transaction_nanos: u64,
    pub received: u64,
    pub sent: u64,
    /// Server connections handed out (checkouts), and the time waited
    /// for them.
    pub checkouts: u64,
    pub wait_nanos: u64,
}

impl Shard {
    fn traffic(&self) -> DatabaseTraffic {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sides = [0, 1];
        DatabaseTraffic {
            statements: sides.map(|s| self.statements[s].iter().map(load).sum()),
            statement_nanos: sides
                .iter()
                .map(|&s| load(&self.statement_seconds[s].sum_nanos))
                .sum(),
            transactions: sides.iter().map(|&s| load(&self.transactions[s])).sum(),
            transaction_nanos: sides
                .iter()
                .map(|&s| load(&self.transaction_seconds[s].sum_nanos))
                .sum(),
            received: load(&self.received),
            sent: load(&self.sent),
            ..DatabaseTraffic::default()
        }
    }
}

/// Only the owning session writes a live shard, so a plain load and store
/// (no locked instruction) is enough; the scrape only reads.
#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Hist {
    #[inline]
    fn observe(&self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| seconds <= le) {
            bump(&self.buckets[i], 1);
        }
        bump(&self.count, 1);
        bump(&self.sum_nanos, (seconds * 1e9) as u64);
    }

    fn add_into(&self, total: &Hist) {
        for (mine, theirs) in self.buckets.iter().zip(&total.buckets) {
            theirs.fetch_add(mine.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        total
            .count
            .fetch_add(self.count.load(Ordering::Relaxed), Ordering::Relaxed);
        total
            .sum_nanos
            .fetch_add(self.sum_nanos.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Shard {
    /// Adds this shard's counts into `total` (which others may add to at
    /// the same time, hence fetch_add there).
    fn add_into(&self, total: &Shard) {
        for side in 0..2 {
            for (mine, theirs) in self.statements[side].iter().zip(&total.statements[side]) {
                theirs.fetch_add(mine.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            total.transactions[side].fetch_add(
                self.transactions[side].load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            self.statement_seconds[side].add_into(&total.statement_seconds[side]);
            self.transaction_seconds[side].add_into(&total.transaction_seconds[side]);
        }
        total
            .received
            .fetch_add(self.received.load(Ordering::Relaxed), Ordering::Relaxed);
        total
            .sent
            .fetch_add(self.sent.load(Ordering::Relaxed), Ordering::Relaxed);
        total
            .memo_hits
            .fetch_add(self.memo_hits.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// The live shards and the sum of the retired ones.
#[derive(Default)]
pub(super) struct Shards {
    live: Mutex<Vec<Arc<Shard>>>,
    retired: Shard,
    /// What ended sessions left, by database.
    retired_by_database: Mutex<std::collections::HashMap<Arc<str>, Shard>>,
}

impl Shards {
    /// Routing cache hits answered by sessions' memos, summed alone: a
    /// scrape asks for it apart from the other counters.
    pub(super) fn memo_hits(&self) -> u64 {
        // Under the lock, as `total`: a session that ends meanwhile is
        // counted once.
        let live = self.live.lock();
        let count = |shard: &Shard| shard.memo_hits.load(Ordering::Relaxed);
        live.iter().map(|s| count(s)).sum::<u64>() + count(&self.retired)
    }

    /// Each database's counts, live and retired sessions together.
    pub(super) fn by_database(&self) -> Vec<DatabaseTraffic> {
        let sums: std::collections::HashMap<Arc<str>, Shard> = Default::default();
        let mut sums = sums;
        let live = self.live.lock();
        for (database, shard) in self.retired_by_database.lock().iter() {
            shard.add_into(sums.entry(database.clone()).or_default());
        }
        for shard in live.iter() {
            if let Some(database) = shard.database.get() {
                shard.add_into(sums.entry(database.clone()).or_default());
            }
        }
        drop(live);
        let mut all: Vec<_> = sums
            .into_iter()
            .map(|(database, shard)| DatabaseTraffic {
                database: database.to_string(),
                ..shard.traffic()
            })
            .collect();
        all.sort_by(|a, b| a.database.cmp(&b.database));
        all
    }

    pub(super) fn total(&self) -> Shard {
        let total = Shard::default();
        self.retired.add_into(&total);
        for shard in self.live.lock().iter() {
            shard.add_into(&total);
        }
        total
    }
}

/// One session's counters; dropping it folds them into the retired sum.
pub struct SessionMetrics {
    shard: Arc<Shard>,
    shards: Arc<Shards>,
}

impl SessionMetrics {
    pub(super) fn new(shards: Arc<Shards>) -> SessionMetrics {
        let shard = Arc::new(Shard::default());
        shards.live.lock().push(shard.clone());
        SessionMetrics { shard, shards }
    }

    /// A statement (or batch) sent to a server.
    #[inline]
    pub fn statement(&self, side: Role, label: Why) {
        if let Some(counter) = self.shard.statements[side as usize].get(label as usize) {
            bump(counter, 1);
        }
    }

    #[inline]
    pub fn statement_done(&self, side: Role, seconds: f64) {
        self.shard.statement_seconds[side as usize].observe(seconds);
    }

    #[inline]
    pub fn transaction_done(&self, side: Role, seconds: f64) {
        bump(&self.shard.transactions[side as usize], 1);
        self.shard.transaction_seconds[side as usize].observe(seconds);
    }

    #[inline]
    pub fn received(&self, bytes: usize) {
        bump(&self.shard.received, bytes as u64);
    }

    #[inline]
    pub fn sent(&self, bytes: usize) {
        bump(&self.shard.sent, bytes as u64);
    }

    /// The session's database, once its client said (the first call
    /// counts): SHOW STATS adds its counts up under it.
    pub fn set_database(&self, database: &str) {
        let _ = self.shard.database.set(database.into());
    }

    /// A route the session's memo gave: a routing cache hit.
    #[inline]
    pub fn routing_memo_hit(&self) {
        bump(&self.shard.memo_hits, 1);
    }
}

impl Drop for SessionMetrics {
    fn drop(&mut self) {
        // Under the lock, so a scrape counts the shard exactly once.
        let mut live = self.shards.live.lock();
        self.shard.add_into(&self.shards.retired);
        if let Some(database) = self.shard.database.get() {
            let mut by_database = self.shards.retired_by_database.lock();
            self.shard
                .add_into(by_database.entry(database.clone()).or_default());
        }
        live.retain(|s| !Arc::ptr_eq(s, &self.shard));
    }
}

/// The families of the summed shards, for the text exposition.
pub(super) fn families(total: &Shard) -> Vec<MetricFamily> {
    let mut statements = family(
        "pgsplit_statements_total",
        "Statements (and extended-protocol batches) routed, by where they ran and why",
        MetricType::COUNTER,
        Vec::new(),
    );
    let mut transactions = family(
        "pgsplit_transactions_total",
        "Transactions served (a statement outside BEGIN..COMMIT counts as one)",
        MetricType::COUNTER,
        Vec::new(),
    );
    let mut statement_seconds = family(
        "pgsplit_statement_duration_seconds",
        "Time from sending a statement to the server until its ReadyForQuery",
        MetricType::HISTOGRAM,
        Vec::new(),
    );
    let mut transaction_seconds = family(
        "pgsplit_transaction_duration_seconds",
        "Time a transaction held its server connection",
        MetricType::HISTOGRAM,
        Vec::new(),
    );
    for side in Role::ALL {
        let s = side as usize;
        for label in Why::ALL {
            let n = total.statements[s][label as usize].load(Ordering::Relaxed);
            statements.mut_metric().push(counter(
                &[("destination", side.as_str()), ("reason", label.as_str())],
                n,
            ));
        }
        let dest = [("destination", side.as_str())];
        let n = total.transactions[s].load(Ordering::Relaxed);
        transactions.mut_metric().push(counter(&dest, n));
        statement_seconds
            .mut_metric()
            .push(histogram(&dest, &total.statement_seconds[s]));
        transaction_seconds
            .mut_metric()
            .push(histogram(&dest, &total.transaction_seconds[s]));
    }
    let mut received = family(
        "pgsplit_client_received_bytes_total",
        "Bytes received from clients",
        MetricType::COUNTER,
        Vec::new(),
    );
    received
        .mut_metric()
        .push(counter(&[], total.received.load(Ordering::Relaxed)));
    let mut sent = family(
        "pgsplit_client_sent_bytes_total",
        "Bytes sent to clients",
        MetricType::COUNTER,
        Vec::new(),
    );
    sent.mut_metric()
        .push(counter(&[], total.sent.load(Ordering::Relaxed)));
    vec![
        statements,
        transactions,
        statement_seconds,
        transaction_seconds,
        received,
        sent,
    ]
}

fn histogram(labels: &[(&str, &str)], hist: &Hist) -> Metric {
    let mut m = labelled(labels);
    let mut h = Histogram::default();
    let mut cumulative = 0;
    let buckets = DURATION_BUCKETS
        .iter()
        .zip(&hist.buckets)
        .map(|(&le, n)| {
            cumulative += n.load(Ordering::Relaxed);
            let mut b = Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    h.set_bucket(buckets);
    h.set_sample_count(hist.count.load(Ordering::Relaxed));
    h.set_sample_sum(hist.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
    m.set_histogram(h);
    m
}
