//! Closing a database's idle connections before a statement that needs
//! no other session on it: `DROP DATABASE`, `ALTER DATABASE ... RENAME`
//! or `SET TABLESPACE`, `CREATE DATABASE ... TEMPLATE` (the router
//! recognises them, `router::command::exclusive_database`). PostgreSQL
//! refuses those with `55006 database "x" is being accessed by other
//! users` while pgsplit keeps pooled connections to it.

use super::{Pools, ServerPool};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long parked connections get to come back before the count is
/// taken. Their clients give them back within microseconds when woken;
/// PostgreSQL itself waits up to 5 s for the backends to exit.
const RECALL_WAIT: Duration = Duration::from_millis(200);

/// What closing a database's connections did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Idle connections, parked ones that came back included: closed now
    /// if none is in use, else with the last of those.
    pub idle: u32,
    /// Connections clients still hold (in a transaction, pinned, session
    /// pooling): they stay open, and close when they are given back.
    pub in_use: u32,
}

/// What RECONNECT did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconnected {
    /// Connections marked to close once released.
    pub marked: usize,
    /// Idle ones among them, closed now.
    pub closed: u32,
}

impl Pools {
    /// RECONNECT: every server connection of `database` (`None`: every
    /// database) closes once released: idle ones now, parked ones are
    /// called back, and those in use when their clients release them (at
    /// the end of the transaction, or of the session when pinned or in
    /// session pooling). Clients open new ones as they need them; unlike
    /// `close_idle_connections`, nothing waits.
    pub fn reconnect(&self, database: Option<&str>) -> Reconnected {
        let marked = self.registry.mark_close_needed(database);
        let pools: Vec<Arc<ServerPool>> = self
            .clusters
            .read()
            .iter()
            .filter(|((db, _), _)| database.is_none_or(|d| d == db))
            .flat_map(|(_, cluster)| cluster.servers.iter().cloned())
            .collect();
        let mut closed = 0;
        for pool in &pools {
            pool.call_back_parked();
            // At most the idle ones of now: those opened since are new.
            for _ in 0..pool.state().idle_connections {
                if !pool.close_one_idle() {
                    break;
                }
                closed += 1;
            }
        }
        Reconnected { marked, closed }
    }

    /// Closes the idle connections of every pool of `database` (every
    /// user, every server), after calling the parked ones back and
    /// waiting up to `RECALL_WAIT` for them. Connections in use stay
    /// (PostgreSQL's own 55006 is then the right answer, as it would be
    /// directly) and close when their clients give them back; a server
    /// pool's idle ones close with the last of those (they share the bb8
    /// pool that was swapped out), which changes nothing for a statement
    /// that fails anyway while one is in use. The pools stay, empty:
    /// clients of the database open connections again as they need them.
    /// Returns at once if pgsplit has no pool of it.
    pub async fn close_idle_connections(&self, database: &str) -> Closed {
        let pools: Vec<Arc<ServerPool>> = self
            .clusters
            .read()
            .iter()
            .filter(|((db, _), _)| db == database)
            .flat_map(|(_, cluster)| cluster.servers.iter().cloned())
            .collect();
        if pools.is_empty() {
            return Closed::default();
        }
        let swapped: Vec<_> = pools.iter().map(|p| p.swap_out_connections()).collect();
        let deadline = Instant::now() + RECALL_WAIT;
        while pools.iter().any(|p| p.parked() > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let closed = swapped.iter().fold(Closed::default(), |sum, s| Closed {
            idle: sum.idle + s.idle(),
            in_use: sum.in_use + s.in_use(),
        });
        // Closes the idle ones, saying Terminate to each.
        drop(swapped);
        if closed.in_use == 0 {
            tracing::info!(
                database,
                closed = closed.idle,
                "closed the idle server connections of a database a statement needs free"
            );
        } else {
            tracing::info!(
                database,
                idle = closed.idle,
                in_use = closed.in_use,
                "a statement needs a database free, but clients are using connections to it: they, and the idle ones, close when given back"
            );
        }
        closed
    }
}
