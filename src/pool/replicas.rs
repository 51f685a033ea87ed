//! Which replica serves the next read.

use super::{ClusterPools, ServerPool};
use crate::config::ReplicaSelection;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl ClusterPools {
    /// Usable replicas in the order to try them: banned ones left out; by
    /// fewest connections in use (ties in turn), or in turn.
    pub(super) fn replica_order(&self) -> Vec<&Arc<ServerPool>> {
        let n = self.replicas.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<&Arc<ServerPool>> = (0..n)
            .map(|i| &self.replicas[(start + i) % n])
            .filter(|r| !r.is_banned())
            .collect();
        if self.selection == ReplicaSelection::LeastBusy {
            // Stable sort keeps the rotation among equally busy replicas.
            order.sort_by_key(|r| r.in_use());
        }
        order
    }

    /// Whether a read could go to a replica now.
    pub fn has_usable_replica(&self) -> bool {
        self.replicas.iter().any(|r| !r.is_banned())
    }
}
