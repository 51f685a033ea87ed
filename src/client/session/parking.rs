//! Transaction pooling's parked connection: when a transaction ends, no
//! other client waits for a connection of that pool and it has fewer than
//! `pool_size` parked or in use, the client keeps it,
//! idle, and runs its next transaction on it if that goes to the same
//! server: no pool checkout and return for every statement. The moment a
//! client waits for a connection of that pool, parked ones go back to it
//! (`ServerPool::reclaimed`), as do those of a pool swept for its limits
//! (`idle_timeout`, `pool_recycle`) every `PARK_SWEEP`. Its socket is not
//! watched while parked: a server that closed it meanwhile is found when
//! the client next uses it, and the client's statement goes to another
//! connection.
//!
//! A parked connection is clean (ReadyForQuery 'I', nothing pending, the
//! client's settings), so handing it back is what releasing it at the end
//! of the transaction would have done. Pinned clients and session pooling
//! keep their connections anyway and never park.

use super::Session;
use crate::app::Stop;
use crate::pool::Checkout;
use crate::role::Role;
use crate::router::Destination;

impl Session {
    /// Whether the connection of the transaction that just ended may stay
    /// with the client.
    pub(super) fn may_park(&self, conn: &Checkout) -> bool {
        conn.pool().may_park()
            && self.stop == Stop::Running
            && !self.app.is_paused_for(&self.client.database)
            && self.app.generation() == self.current.generation
    }

    /// The parked connection, if the request for `want` may run on it: a
    /// checkout would pick its server now. If not, it goes back to its pool.
    pub(super) fn take_parked(&mut self, want: Option<Destination>) -> Option<Checkout> {
        let mut conn = self.held.parked.take()?;
        let role = want.unwrap_or(Role::Primary);
        if !conn.is_alive() {
            tracing::info!(pool = %conn.pool().name, "server closed a parked connection: replacing it");
            conn.broken = true;
            return None;
        }
        let floor = self.min_lsn();
        let fits = conn.role == role
            && conn.settings == self.settings.fingerprint
            && self.cluster.fits(conn.pool(), role, &mut self.need, floor);
        if !fits {
            return None;
        }
        conn.unpark(&self.recall_tickets);
        conn.detour = None;
        Some(conn)
    }

    /// Another client waits for the parked connection.
    pub(super) fn give_back_parked(&mut self) {
        if let Some(conn) = self.held.parked.take() {
            tracing::debug!(pool = %conn.pool().name, "parked connection goes back to its pool");
        }
    }
}
