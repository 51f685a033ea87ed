//! Retiring the pools of a (database, user) no client has used for
//! `autodb_idle_timeout`: they are closed and forgotten, so that pgsplit
//! does not keep connections to every database a client ever named (nor
//! their rows in SHOW POOLS, /status and the metrics). As PgBouncer's
//! `autodb_idle_timeout`, this applies to pools created on demand; those
//! of the configured users x databases, opened at start-up, are kept.

use super::{ClusterPools, Pools};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What the sweep knows of one (database, user)'s pools.
#[derive(Debug, Clone, Copy)]
struct Facts {
    /// Something besides the pools map holds them: a session (connected
    /// clients hold their pools, idle or not), a connection checked out or
    /// parked, or a session still on the configuration before a reload.
    held: bool,
    /// Configured users x databases: opened at start-up, kept for good.
    configured: bool,
    /// Since when the sweep has seen them unused.
    unused_since: Option<Instant>,
}

/// What the sweep does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// In use, configured, or retirement is off: no clock runs.
    Keep,
    /// Unused since then, not for long enough yet.
    Unused(Instant),
    /// Unused for `autodb_idle_timeout`: closed and forgotten.
    Retire,
}

/// The sweep's decision; `timeout` is `autodb_idle_timeout` (`None`: off).
fn verdict(facts: Facts, now: Instant, timeout: Option<Duration>) -> Verdict {
    let Some(timeout) = timeout else {
        return Verdict::Keep;
    };
    if facts.held || facts.configured {
        return Verdict::Keep;
    }
    match facts.unused_since {
        Some(since) if now.saturating_duration_since(since) >= timeout => Verdict::Retire,
        Some(since) => Verdict::Unused(since),
        None => Verdict::Unused(now),
    }
}

/// How often the sweep looks: a pool goes at most this long after its
/// time is up.
fn sweep_every(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

/// Whether anything but the pools map holds `cluster` or one of its
/// server pools. Reference counts are exact here: sessions reach a pool
/// only through the map or a `ClusterPools` they hold, and checked-out
/// connections hold their server pool. (Weak references, upgraded for a
/// moment by a server pool's parked sweep, may make a pool look held
/// once: it goes at the next sweep.)
fn is_held(cluster: &Arc<ClusterPools>) -> bool {
    Arc::strong_count(cluster) > 1 || cluster.servers.iter().any(|p| Arc::strong_count(p) > 1)
}

impl Pools {
    /// Starts the sweep that retires unused pools, unless
    /// `autodb_idle_timeout` is 0. It ends with this generation's pools.
    pub fn spawn_retirement(self: &Arc<Self>) {
        let Some(timeout) = self.config.autodb_idle_timeout() else {
            return;
        };
        let pools = Arc::downgrade(self);
        tokio::spawn(sweep(pools, sweep_every(timeout)));
    }

    /// One sweep: the clock starts for pools seen unused, stops for those
    /// in use, and those unused for `autodb_idle_timeout` are retired.
    fn retire_unused(&self, now: Instant) {
        let timeout = self.config.autodb_idle_timeout();
        let mut due = Vec::new();
        for ((database, user), cluster) in self.clusters.read().iter() {
            let mut unused_since = cluster.unused_since.lock();
            let facts = Facts {
                held: is_held(cluster),
                configured: self.is_configured(database, user),
                unused_since: *unused_since,
            };
            match verdict(facts, now, timeout) {
                Verdict::Keep => *unused_since = None,
                Verdict::Unused(since) => *unused_since = Some(since),
                Verdict::Retire => due.push((database.clone(), user.clone())),
            }
        }
        if due.is_empty() {
            return;
        }
        // Held or not is checked again under the write lock, which every
        // new holder (`get`) takes the pools through.
        let retired: Vec<_> = {
            let mut clusters = self.clusters.write();
            due.into_iter()
                .filter_map(|key| {
                    let unheld = clusters.get(&key).is_some_and(|c| !is_held(c));
                    unheld.then(|| clusters.remove_entry(&key)).flatten()
                })
                .collect()
        };
        for ((database, user), cluster) in retired {
            self.retire(&database, &user, cluster, now);
        }
    }

    /// Forgets `cluster`'s metric series, keeps its bans in the servers'
    /// counts, and drops it, which closes its connections (all idle).
    fn retire(&self, database: &str, user: &str, cluster: Arc<ClusterPools>, now: Instant) {
        let mut closed = 0;
        for pool in &cluster.servers {
            closed += pool.state().idle_connections;
            *self
                .retired_bans
                .lock()
                .entry(pool.addr.clone())
                .or_default() += pool.bans.load(std::sync::atomic::Ordering::Relaxed);
            self.metrics.forget_pool(&[
                &pool.addr,
                pool.server.configured.as_str(),
                database,
                user,
            ]);
        }
        let unused_seconds = cluster.unused_since.lock().map_or(0.0, |since| {
            now.saturating_duration_since(since).as_secs_f64()
        });
        drop(cluster);
        tracing::info!(
            database,
            user,
            closed,
            unused_seconds,
            "retired the pools of a database and user no client used for autodb_idle_timeout"
        );
    }
}

async fn sweep(pools: Weak<Pools>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(pools) = pools.upgrade() else {
            return;
        };
        pools.retire_unused(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn facts(held: bool, configured: bool, unused_since: Option<Instant>) -> Facts {
        Facts {
            held,
            configured,
            unused_since,
        }
    }

    #[test]
    fn pools_unused_for_the_timeout_retire_and_others_stay() {
        let now = Instant::now() + 2 * HOUR;
        let long_ago = now - HOUR;
        let lately = now - Duration::from_secs(10);
        use Verdict::*;
        for (facts, timeout, expected) in [
            // The clock starts when the sweep first sees them unused.
            (facts(false, false, None), Some(HOUR), Unused(now)),
            (
                facts(false, false, Some(lately)),
                Some(HOUR),
                Unused(lately),
            ),
            (facts(false, false, Some(long_ago)), Some(HOUR), Retire),
            // A client came back: the clock stops.
            (facts(true, false, Some(long_ago)), Some(HOUR), Keep),
            // Opened at start-up: kept.
            (facts(false, true, Some(long_ago)), Some(HOUR), Keep),
            // autodb_idle_timeout = 0: never.
            (facts(false, false, Some(long_ago)), None, Keep),
        ] {
            assert_eq!(verdict(facts, now, timeout), expected, "{facts:?}");
        }
    }

    fn pools(users: &[&str], databases: &[&str]) -> Arc<Pools> {
        use crate::config::{Config, User};
        let config = Arc::new(Config {
            primary: Some("p:1".into()),
            replicas: vec!["r:1".into()],
            users: users
                .iter()
                .map(|u| User {
                    name: u.to_string(),
                    password: String::new(),
                })
                .collect(),
            databases: databases.iter().map(|d| d.to_string()).collect(),
            ..Config::default()
        });
        let topology = crate::health::Topology::new(&config);
        Arc::new(Pools::new(
            config,
            topology,
            Default::default(),
            Default::default(),
            None,
            Default::default(),
        ))
    }

    fn listed(pools: &Pools) -> Vec<String> {
        let mut keys: Vec<_> = pools
            .clusters
            .read()
            .keys()
            .map(|(d, u)| format!("{d}/{u}"))
            .collect();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn a_sweep_retires_only_pools_nobody_holds_for_long_enough() {
        let pools = pools(&["app"], &["main"]);
        let start = Instant::now();
        let held = pools.get("busy", "app");
        drop(pools.get("unused", "app"));
        drop(pools.get("main", "app"));
        let checked_out = pools.get("checked_out", "app");
        let connection = checked_out.servers[0].clone();
        drop(checked_out);
        pools.retire_unused(start);
        pools.retire_unused(start + HOUR / 2);
        assert_eq!(listed(&pools).len(), 4);
        pools.retire_unused(start + HOUR);
        assert_eq!(listed(&pools), ["busy/app", "checked_out/app", "main/app"]);
        drop((held, connection));
        pools.retire_unused(start + 2 * HOUR);
        assert_eq!(listed(&pools).len(), 3, "the clock starts when seen unused");
        pools.retire_unused(start + 3 * HOUR);
        assert_eq!(listed(&pools), ["main/app"], "configured pools stay");
    }

    #[tokio::test]
    async fn a_reload_hands_over_the_pools_and_their_clock() {
        let old = pools(&[], &[]);
        let start = Instant::now();
        let cluster = old.get("d", "u");
        drop(old.get("idle", "u"));
        old.retire_unused(start);
        let new = pools(&[], &[]);
        new.inherit(&old);
        assert!(listed(&old).is_empty());
        assert!(Arc::ptr_eq(
            &old.get("d", "u").servers[0],
            &new.get("d", "u").servers[0]
        ));
        assert!(listed(&old).is_empty(), "gets go to the successor");
        new.retire_unused(start + HOUR);
        assert_eq!(listed(&new), ["d/u"]);
        drop(cluster);
    }

    #[test]
    fn the_sweep_looks_a_few_times_per_timeout_within_bounds() {
        assert_eq!(sweep_every(HOUR), Duration::from_secs(5));
        assert_eq!(
            sweep_every(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            sweep_every(Duration::from_millis(1)),
            Duration::from_millis(10)
        );
    }
}
