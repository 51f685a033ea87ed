//! Which replica serves the next read.

use super::{ClusterPools, ServerPool};
use crate::config::ReplicaSelection;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl ClusterPools {
    /// The replica for the next read, skipping banned ones: the one with
    /// the fewest connections in use (ties in turn), or simply the next in
    /// turn. No allocation: this runs for every read.
    pub(super) fn pick_replica(&self) -> Option<&Arc<ServerPool>> {
        let n = self.replicas.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let usable = (0..n)
            .map(|i| &self.replicas[(start + i) % n])
            .filter(|r| !r.is_banned());
        match self.selection {
            // min_by_key keeps the first of equals: the rotation breaks ties.
            ReplicaSelection::LeastBusy => usable.min_by_key(|r| r.in_use()),
            ReplicaSelection::RoundRobin => usable.into_iter().next(),
        }
    }

    /// Whether a read could go to a replica now.
    pub fn has_usable_replica(&self) -> bool {
        self.replicas.iter().any(|r| !r.is_banned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolSettings;
    use crate::pool::Role;
    use crate::server::LoginTarget;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn cluster(selection: ReplicaSelection) -> ClusterPools {
        let settings = PoolSettings {
            pool_size: 0,
            ..PoolSettings::default()
        };
        let pool = |addr: &str, role| {
            let target = LoginTarget {
                addr: Arc::from(addr),
                user: "u".into(),
                database: "d".into(),
                password: None,
                connect_timeout: Duration::from_secs(1),
            };
            ServerPool::new(role, target, &settings)
        };
        ClusterPools {
            primary: pool("p:1", Role::Primary),
            replicas: vec![
                pool("r:1", Role::Replica),
                pool("r:2", Role::Replica),
                pool("r:3", Role::Replica),
            ],
            selection,
            ban_time: Duration::from_secs(60),
            next: AtomicUsize::new(0),
        }
    }

    fn picks(c: &ClusterPools, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                c.pick_replica()
                    .map(|r| r.addr.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[tokio::test]
    async fn idle_replicas_take_turns() {
        let c = cluster(ReplicaSelection::LeastBusy);
        assert_eq!(picks(&c, 4), ["r:1", "r:2", "r:3", "r:1"]);
    }

    #[tokio::test]
    async fn least_busy_wins() {
        let c = cluster(ReplicaSelection::LeastBusy);
        c.replicas[0].set_in_use(3);
        c.replicas[1].set_in_use(1);
        c.replicas[2].set_in_use(2);
        assert_eq!(picks(&c, 3), ["r:2", "r:2", "r:2"]);
        let rr = cluster(ReplicaSelection::RoundRobin);
        rr.replicas[0].set_in_use(3);
        assert_eq!(picks(&rr, 3), ["r:1", "r:2", "r:3"]);
    }

    #[tokio::test]
    async fn banned_replicas_are_skipped() {
        let c = cluster(ReplicaSelection::RoundRobin);
        c.replicas[1].ban(Duration::from_secs(60));
        assert_eq!(picks(&c, 4), ["r:1", "r:3", "r:3", "r:1"]);
        for r in &c.replicas {
            r.ban(Duration::from_secs(60));
        }
        assert!(c.pick_replica().is_none());
        assert!(!c.has_usable_replica());
    }
}
