//! What pgsplit knows about its servers: which is up, which one takes
//! writes, how far each replica has replayed. A monitor task per server
//! keeps it current (`monitor`); the pools read it to choose a server, and
//! `consistency` turns it into read-your-writes.

mod consistency;
pub mod lsn;
mod monitor;

pub use consistency::Need;
pub use monitor::{spawn_monitors, Monitors};

use crate::config::{Config, Consistency};
use crate::role::Role;
use lsn::Lsn;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One configured server, as the monitor last saw it.
pub struct ServerState {
    pub index: usize,
    pub addr: Arc<str>,
    /// The role in the configuration; the live role is `is_writer`.
    pub configured: Role,
    up: AtomicBool,
    in_recovery: AtomicBool,
    writer: AtomicBool,
    /// Replayed position of a standby; insert position of a primary.
    position: AtomicU64,
    lag_bytes: AtomicU64,
    lag_micros: AtomicU64,
    /// Past `max_replica_lag_*`: no reads until it catches up.
    lagging: AtomicBool,
    /// Wakes the monitor for an extra position check, when a read waits.
    poll: Notify,
    /// Wakes the monitor for a check judged at once (`Topology::recheck`).
    urgent: Notify,
    /// Health checks that failed or timed out, for the metrics.
    pub check_failures: AtomicU64,
}

impl ServerState {
    fn new(index: usize, addr: &str, configured: Role) -> ServerState {
        ServerState {
            index,
            addr: Arc::from(addr),
            configured,
            // Until the first checks say otherwise, the configuration is right.
            up: AtomicBool::new(true),
            in_recovery: AtomicBool::new(configured == Role::Replica),
            writer: AtomicBool::new(configured == Role::Primary),
            position: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            lag_micros: AtomicU64::new(0),
            lagging: AtomicBool::new(false),
            poll: Notify::new(),
            urgent: Notify::new(),
            check_failures: AtomicU64::new(0),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn is_writer(&self) -> bool {
        self.writer.load(Ordering::Relaxed)
    }

    pub fn role(&self) -> Role {
        if self.is_writer() {
            Role::Primary
        } else {
            Role::Replica
        }
    }

    pub fn position(&self) -> Lsn {
        self.position.load(Ordering::Acquire)
    }

    pub fn lag_bytes(&self) -> u64 {
        self.lag_bytes.load(Ordering::Relaxed)
    }

    pub fn lag_seconds(&self) -> f64 {
        self.lag_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// A healthy standby within the lag limits: it may serve reads.
    /// Whether its last successful check found it in recovery.
    pub fn in_recovery(&self) -> bool {
        self.in_recovery.load(Ordering::Relaxed)
    }

    pub fn serves_reads(&self) -> bool {
        self.is_up()
            && self.in_recovery.load(Ordering::Relaxed)
            && !self.is_writer()
            && !self.lagging.load(Ordering::Relaxed)
    }

    /// Asks the monitor for a position check now.
    pub fn request_poll(&self) {
        self.poll.notify_one();
    }

    /// The server as the metrics and /status show it.
    pub fn sample(&self) -> crate::metrics::ServerSample {
        crate::metrics::ServerSample {
            server: self.addr.to_string(),
            configured_role: self.configured.as_str().to_string(),
            state: self.describe().to_string(),
            up: self.is_up(),
            primary: self.is_writer(),
            lag_bytes: self.lag_bytes(),
            lag_seconds: self.lag_seconds(),
            lagging: self.is_lagging(),
            serves_reads: self.serves_reads(),
            check_failures: self.check_failures.load(Ordering::Relaxed),
            bans: 0,
        }
    }

    /// Up and in recovery but past the lag limits.
    pub fn is_lagging(&self) -> bool {
        self.is_up() && self.lagging.load(Ordering::Relaxed)
    }

    pub fn describe(&self) -> &'static str {
        match (
            self.is_up(),
            self.is_writer(),
            self.in_recovery.load(Ordering::Relaxed),
        ) {
            (false, _, _) => "down",
            (true, true, _) => "primary",
            (true, false, false) => "primary (not used: another server takes writes)",
            (true, false, true) if self.lagging.load(Ordering::Relaxed) => "replica (lagging)",
            (true, false, true) => "replica",
        }
    }
}

/// All configured servers, index 0 the configured primary, then the
/// replicas in configuration order (the pools use the same indexes).
pub struct Topology {
    pub servers: Vec<Arc<ServerState>>,
    /// Index of the server that takes writes; `NO_WRITER` when none.
    writer: AtomicUsize,
    pub consistency: Consistency,
    pub max_wait_for_replica: Duration,
    max_lag_bytes: u64,
    max_lag_seconds: f64,
    /// Writes seen committing through pgsplit so far.
    tickets: AtomicU64,
    /// The writer's position, sampled after `sample_covered` tickets.
    sample_covered: AtomicU64,
    sample_lsn: AtomicU64,
    /// Fires whenever a check or poll finished: waiting reads look again.
    changed: Notify,
    /// Elections run one at a time, so their log lines tell a true story.
    electing: Mutex<()>,
    /// Milliseconds since `epoch` until which reads do not wait for
    /// replicas to catch up (see `waits_futile`).
    skip_waits_until_ms: AtomicU64,
    epoch: Instant,
    /// Reads that waited for a replica to catch up: [caught up, ran out].
    pub consistency_waits: [AtomicU64; 2],
    /// Extra checks of the writer taken because reads or commit reports
    /// waited for its position (the primary's load of `cluster` mode).
    pub position_samples: AtomicU64,
    /// Servers still to answer an urgent re-check (`recheck`); writes
    /// wait until they have (`confirmed_writer`).
    rechecking: AtomicUsize,
    /// Milliseconds since `epoch` of the last re-check round.
    last_recheck_ms: AtomicU64,
    /// More than one server reports it is a primary: writes go to none.
    split_brain: AtomicBool,
}

const NO_WRITER: usize = usize::MAX;

/// The least time between two re-check rounds (`Topology::recheck`), so
/// that writes waiting through an outage do not keep the servers busy.
const RECHECK_GAP: Duration = Duration::from_millis(100);

/// Why a waiting write asks for a re-check.
const WAITING_WRITE: &str = "a write waits for a primary";

impl Topology {
    /// The topology of `config`, with no earlier state to keep.
    #[cfg(test)]
    pub fn new(config: &Config) -> Arc<Topology> {
        Topology::succeed(config, None)
    }

    /// The topology of a reloaded `config`. A server at the same place
    /// with the same address and role keeps its state (up, role, position),
    /// and so does the writer; write tickets keep counting, so a read that
    /// must see a write made before the reload still waits for it.
    pub fn succeed(config: &Config, previous: Option<&Topology>) -> Arc<Topology> {
        let primary = config.primary.as_deref().unwrap_or_default();
        let servers: Vec<Arc<ServerState>> = std::iter::once((primary, Role::Primary))
            .chain(config.replicas.iter().map(|r| (r.as_str(), Role::Replica)))
            .enumerate()
            .map(|(i, (addr, role))| {
                previous
                    .and_then(|p| p.servers.get(i))
                    .filter(|s| &*s.addr == addr && s.configured == role)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ServerState::new(i, addr, role)))
            })
            .collect();
        let writer = previous
            .and_then(|p| p.writer())
            .filter(|w| servers.get(w.index).is_some_and(|s| Arc::ptr_eq(s, w)))
            .map_or(0, |w| w.index);
        let tickets = previous.map_or(0, |p| p.tickets.load(Ordering::Acquire));
        Arc::new(Topology {
            servers,
            writer: AtomicUsize::new(writer),
            consistency: config.consistency,
            max_wait_for_replica: config.max_wait_for_replica(),
            max_lag_bytes: config.max_replica_lag_bytes,
            max_lag_seconds: config.max_replica_lag_seconds,
            tickets: AtomicU64::new(tickets),
            sample_covered: AtomicU64::new(0),
            sample_lsn: AtomicU64::new(0),
            changed: Notify::new(),
            electing: Mutex::new(()),
            skip_waits_until_ms: AtomicU64::new(0),
            consistency_waits: Default::default(),
            position_samples: AtomicU64::new(0),
            epoch: Instant::now(),
            rechecking: AtomicUsize::new(0),
            last_recheck_ms: AtomicU64::new(0),
            split_brain: AtomicBool::new(false),
        })
    }

    /// The server that takes writes now, if any.
    pub fn writer(&self) -> Option<&Arc<ServerState>> {
        self.servers.get(self.writer.load(Ordering::Acquire))
    }

    /// The writer, unless a re-check of the servers is under way (a write
    /// failed in a way that says the primary may have changed).
    pub fn confirmed_writer(&self) -> Option<&Arc<ServerState>> {
        match self.rechecking.load(Ordering::Acquire) {
            0 if !self.is_split_brain() => self.writer(),
            _ => None,
        }
    }

    /// More than one server reports it is a primary.
    pub fn is_split_brain(&self) -> bool {
        self.split_brain.load(Ordering::Acquire)
    }

    /// Fencing: something says the writer may no longer be the primary (a
    /// write failed with 25006 or 57P0x, or its connection was lost).
    /// Every monitor checks its server now and applies what it sees at
    /// once, instead of at its next interval and after `threshold` checks;
    /// writes wait for the outcome. Rounds are at least `RECHECK_GAP`
    /// apart. Whether this call started a round.
    pub fn recheck(&self, why: &str) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_recheck_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < RECHECK_GAP.as_millis() as u64 && last != 0 {
            return false;
        }
        if self
            .rechecking
            .compare_exchange(0, self.servers.len(), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.last_recheck_ms.store(now.max(1), Ordering::Relaxed);
        // A write waiting through an outage asks every RECHECK_GAP: only
        // what set it off is worth a warning.
        match why {
            WAITING_WRITE => tracing::debug!(reason = why, "re-checking every server"),
            _ => tracing::warn!(
                reason = why,
                "re-checking every server now: writes wait for a confirmed primary"
            ),
        }
        for server in &self.servers {
            server.urgent.notify_one();
        }
        true
    }

    /// A monitor's urgent check is judged; the last one ends the round.
    fn rechecked(&self) {
        let left = self
            .rechecking
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if left == Ok(1) {
            self.changed.notify_waiters();
        }
    }

    /// Waits up to `wait` for a confirmed writer, asking for re-checks
    /// meanwhile (a promotion is seen by the next one): `None` if there is
    /// still none then.
    pub async fn wait_for_writer(&self, wait: Duration) -> Option<&Arc<ServerState>> {
        let deadline = Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(writer) = self.confirmed_writer() {
                return Some(writer);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.recheck(WAITING_WRITE);
            let _ = tokio::time::timeout((deadline - now).min(RECHECK_GAP), changed).await;
        }
    }

    /// Chooses the writer after a server changed state: the current one
    /// while it is up and not in recovery, else the first such server in
    /// configuration order (a promoted replica), else none. pgsplit never
    /// promotes a server; it follows what the servers report.
    fn elect(&self) {
        let _one_at_a_time = self.electing.lock();
        let is_primary = |s: &ServerState| s.is_up() && !s.in_recovery.load(Ordering::Relaxed);
        let current = self.writer.load(Ordering::Acquire);
        let keep = self.servers.get(current).is_some_and(|s| is_primary(s));
        let next = if keep {
            current
        } else {
            self.servers
                .iter()
                .position(|s| is_primary(s))
                .unwrap_or(NO_WRITER)
        };
        let primaries = self.servers.iter().filter(|s| is_primary(s)).count();
        let split = primaries > 1;
        if self.split_brain.swap(split, Ordering::AcqRel) != split {
            match split {
                true => tracing::error!(primaries,
                    "split brain: more than one server reports it is a primary (not in recovery); writes go to none of them until one is demoted or stopped"),
                false => tracing::warn!("split brain over: one server reports it is a primary"),
            }
        }
        // The writer stays recorded (reads may use it), but no write goes
        // to it while another server reports it is a primary too
        // (`confirmed_writer`).
        if next == current {
            return;
        }
        for (i, server) in self.servers.iter().enumerate() {
            server.writer.store(i == next, Ordering::Release);
        }
        self.writer.store(next, Ordering::Release);
        match self.servers.get(next) {
            Some(server) => tracing::warn!(server = %server.addr,
                "writes now go to {} (it reports it is not in recovery)", server.addr),
            None => tracing::error!(
                "no primary available: writes and transactions fail with SQLSTATE 57P03 until one is back or a replica is promoted"),
        }
        self.changed.notify_waiters();
    }

    /// Records a standby's replay position and checks it against the lag
    /// limits.
    fn replica_position(&self, server: &ServerState, replayed: Lsn, lag_seconds: f64) {
        server.position.store(replayed, Ordering::Release);
        let lag_bytes = self
            .writer()
            .map_or(0, |w| w.position().saturating_sub(replayed));
        server.lag_bytes.store(lag_bytes, Ordering::Relaxed);
        server
            .lag_micros
            .store((lag_seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        let lagging = (self.max_lag_bytes > 0 && lag_bytes > self.max_lag_bytes)
            || (self.max_lag_seconds > 0.0 && lag_seconds > self.max_lag_seconds);
        if server.lagging.swap(lagging, Ordering::Relaxed) != lagging {
            if lagging {
                tracing::warn!(server = %server.addr, lag_bytes, lag_seconds,
                    "replica is lagging past max_replica_lag: no reads until it catches up");
            } else {
                tracing::info!(server = %server.addr, lag_bytes, lag_seconds,
                    "replica caught up: it serves reads again");
            }
        }
    }

    /// Records a primary's insert position, sampled after `covered`
    /// tickets were issued.
    fn primary_position(&self, server: &ServerState, position: Lsn, covered: u64) {
        server.position.fetch_max(position, Ordering::AcqRel);
        if server.is_writer() {
            self.sample_lsn.fetch_max(position, Ordering::AcqRel);
            self.sample_covered.fetch_max(covered, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(replicas: usize) -> Arc<Topology> {
        let config = Config {
            primary: Some("p:1".into()),
            replicas: (0..replicas).map(|i| format!("r:{i}")).collect(),
            ..Config::default()
        };
        Topology::new(&config)
    }

    fn set(t: &Topology, i: usize, up: bool, in_recovery: bool) {
        t.servers[i].up.store(up, Ordering::Relaxed);
        t.servers[i]
            .in_recovery
            .store(in_recovery, Ordering::Relaxed);
        t.elect();
    }

    #[test]
    fn promoted_replica_takes_writes_once_the_primary_is_gone() {
        let t = topology(2);
        assert_eq!(t.writer().map(|s| s.index), Some(0));
        set(&t, 0, false, false);
        assert!(t.writer().is_none());
        set(&t, 2, true, false);
        assert_eq!(t.writer().map(|s| s.index), Some(2));
        assert!(!t.servers[2].serves_reads());
        // The old primary coming back as a primary: two primaries, a split
        // brain, and writes go to neither until one is gone.
        set(&t, 0, true, false);
        assert!(t.confirmed_writer().is_none());
        assert!(t.is_split_brain());
        set(&t, 0, false, false);
        assert_eq!(t.confirmed_writer().map(|s| s.index), Some(2));
        assert!(!t.is_split_brain());
    }

    #[tokio::test]
    async fn writes_wait_for_a_recheck_round_and_a_confirmed_writer() {
        let t = topology(1);
        assert!(t.recheck("test"));
        assert!(!t.recheck("test: one round at a time"));
        assert!(t.confirmed_writer().is_none(), "a re-check is under way");
        let waiting = {
            let t = t.clone();
            tokio::spawn(async move {
                t.wait_for_writer(Duration::from_secs(5))
                    .await
                    .map(|w| w.index)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The monitors' urgent checks: the replica was promoted, the old
        // primary is down.
        set(&t, 0, false, false);
        set(&t, 1, true, false);
        t.rechecked();
        t.rechecked();
        assert_eq!(waiting.await.unwrap(), Some(1));
        assert!(t.wait_for_writer(Duration::ZERO).await.is_some());
    }

    #[test]
    fn replica_past_the_lag_limit_serves_no_reads() {
        let config = Config {
            primary: Some("p:1".into()),
            replicas: vec!["r:1".into()],
            max_replica_lag_bytes: 1000,
            ..Config::default()
        };
        let t = Topology::new(&config);
        t.primary_position(&t.servers[0], 5000, 0);
        t.replica_position(&t.servers[1], 4500, 0.0);
        assert!(t.servers[1].serves_reads());
        t.replica_position(&t.servers[1], 3000, 0.0);
        assert!(!t.servers[1].serves_reads());
        assert_eq!(t.servers[1].lag_bytes(), 2000);
    }
}
