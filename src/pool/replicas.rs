//! Which replica serves the next read.

use super::{ClusterPools, ServerPool};
use crate::config::ReplicaSelection;
use crate::health::lsn::Lsn;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The outcome of choosing a replica for a read.
pub(super) enum Pick<'a> {
    Replica(&'a Arc<ServerPool>),
    /// Replicas serve reads, but none has replayed what the read needs.
    Behind,
    /// No replica serves reads (down, lagging, banned, or none configured).
    Nothing,
}

impl ClusterPools {
    /// The replica for a read that needs position `required` (`None`: not
    /// known yet), among those that serve reads and are not banned: the one
    /// with the fewest connections in use (ties in turn), or simply the next
    /// in turn. No allocation: this runs for every read.
    pub(super) fn pick_replica(&self, required: Option<Lsn>) -> Pick<'_> {
        let usable = self.servers.iter().filter(|p| p.takes_reads());
        let count = usable.clone().count();
        if count == 0 {
            return Pick::Nothing;
        }
        // Turns go round the usable replicas only, so each gets its share
        // whichever server is the primary.
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let caught_up = usable
            .cycle()
            .skip(turn)
            .take(count)
            .filter(|p| p.has_replayed(required));
        let best = match self.selection {
            ReplicaSelection::RoundRobin => caught_up.into_iter().next(),
            // min_by_key keeps the first of equals: the rotation breaks ties.
            ReplicaSelection::LeastBusy => caught_up.min_by_key(|p| p.in_use()),
        };
        best.map_or(Pick::Behind, Pick::Replica)
    }

    /// Whether a read could go to a replica now.
    pub fn has_usable_replica(&self) -> bool {
        self.servers.iter().any(|p| p.takes_reads())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Pick, Pools};
    use super::*;
    use crate::config::{Config, PoolSettings};
    use crate::health::Topology;
    use std::time::Duration;

    fn cluster(selection: ReplicaSelection) -> Arc<ClusterPools> {
        let settings = PoolSettings {
            pool_size: 0,
            ..PoolSettings::default()
        };
        let config = Arc::new(Config {
            primary: Some("p:1".into()),
            replicas: vec!["r:1".into(), "r:2".into(), "r:3".into()],
            replica_selection: selection,
            replica_ban_time: 60.0,
            pool: crate::config::Pools {
                primary: settings.clone(),
                replica: settings,
            },
            ..Config::default()
        });
        Pools::new(
            config.clone(),
            Topology::new(&config),
            Default::default(),
            Default::default(),
            None,
            Default::default(),
        )
        .get("d", "u")
    }

    fn picks(c: &ClusterPools, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| match c.pick_replica(Some(0)) {
                Pick::Replica(r) => r.addr.to_string(),
                _ => String::new(),
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
        c.servers[1].set_in_use(3);
        c.servers[2].set_in_use(1);
        c.servers[3].set_in_use(2);
        assert_eq!(picks(&c, 3), ["r:2", "r:2", "r:2"]);
        let rr = cluster(ReplicaSelection::RoundRobin);
        rr.servers[1].set_in_use(3);
        assert_eq!(picks(&rr, 3), ["r:1", "r:2", "r:3"]);
    }

    #[tokio::test]
    async fn banned_replicas_are_skipped() {
        let c = cluster(ReplicaSelection::RoundRobin);
        c.servers[2].ban(Duration::from_secs(60));
        assert_eq!(picks(&c, 4), ["r:1", "r:3", "r:1", "r:3"]);
        for r in &c.servers[1..] {
            r.ban(Duration::from_secs(60));
        }
        assert!(matches!(c.pick_replica(Some(0)), Pick::Nothing));
        assert!(!c.has_usable_replica());
    }

    #[tokio::test]
    async fn replicas_behind_the_required_position_are_skipped() {
        let c = cluster(ReplicaSelection::LeastBusy);
        assert!(matches!(c.pick_replica(None), Pick::Behind));
        assert!(matches!(c.pick_replica(Some(u64::MAX)), Pick::Behind));
    }
}
