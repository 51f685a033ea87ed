//! `max_db_connections` and `max_user_connections`: server connections to
//! one server per database (all its users' pools) and per user (all its
//! databases' pools), on top of each pool's own size. Counted per server,
//! since each PostgreSQL has its own `max_connections` and per-database
//! and per-role `CONNECTION LIMIT`s that these keep pgsplit within.
//!
//! Every connection a pool opens holds a permit of each limit that applies
//! until it closes. Opening one at a limit waits (the client waits as for
//! a pool, and gets 53300 naming the limit at `pool_timeout`), and
//! meanwhile closes an idle connection of another pool under the same
//! limit, calling parked ones back first, every `EVICT_RETRY`: otherwise
//! the connections of pools nobody uses now would hold the limit until
//! `idle_timeout` closed them. Pgsplit's own short connections (health
//! checks, cancel requests, a stalled backend's question) are not counted.

use super::ServerPool;
use crate::metrics::Refusal;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often a connection waiting at a limit looks for an idle one of
/// another pool to close.
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Database,
    User,
}

impl Kind {
    /// The config key.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Database => "max_db_connections",
            Kind::User => "max_user_connections",
        }
    }

    pub fn refusal(self) -> Refusal {
        match self {
            Kind::Database => Refusal::MaxDbConnections,
            Kind::User => Refusal::MaxUserConnections,
        }
    }
}

/// One limit: the connections to one server for one database, or for
/// one user.
pub struct Limit {
    pub kind: Kind,
    pub max: u32,
    /// "database \"app\" on 127.0.0.1:5432", for messages.
    pub what: String,
    permits: Arc<Semaphore>,
    /// The pools it covers, whose idle connections may be closed to make
    /// room.
    pools: Mutex<Vec<Weak<ServerPool>>>,
}

impl Limit {
    fn new(kind: Kind, max: u32, what: String) -> Limit {
        Limit {
            kind,
            max,
            what,
            permits: Arc::new(Semaphore::new(max as usize)),
            pools: Mutex::new(Vec::new()),
        }
    }

    /// Connections that may still be opened under it.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Closes one idle connection of a pool under this limit other than
    /// `asking` (the address of the pool that waits; calling back those parked with idle clients, which come
    /// back to their pools for the next try); whether one was closed.
    fn evict_idle(&self, asking: usize) -> bool {
        let pools: Vec<Arc<ServerPool>> = {
            let mut pools = self.pools.lock();
            pools.retain(|p| p.strong_count() > 0);
            pools.iter().filter_map(Weak::upgrade).collect()
        };
        let others = pools.iter().filter(|p| Arc::as_ptr(p) as usize != asking);
        for pool in others {
            if pool.close_one_idle() {
                tracing::info!(pool = %pool.name, limit = self.kind.key(), max = self.max, what = %self.what,
                    "closed an idle server connection to make room under the limit");
                return true;
            }
            pool.call_back_parked();
        }
        false
    }
}

/// The limits that apply to one pool; its connections hold their permits.
#[derive(Default, Clone)]
pub struct PoolLimits {
    limits: Vec<Arc<Limit>>,
    /// The limit a connection of this pool waits at now (0: none, else
    /// 1 + its index), for the error a client gets when it gives up.
    blocked: Arc<AtomicU8>,
}

/// Permits a server connection holds until it closes (they are given
/// back when dropped).
#[derive(Default)]
pub struct Permits {
    _held: Vec<OwnedSemaphorePermit>,
}

impl PoolLimits {
    /// Makes `pool` one of those whose idle connections make room.
    pub fn cover(&self, pool: &Arc<ServerPool>) {
        for limit in &self.limits {
            limit.pools.lock().push(Arc::downgrade(pool));
        }
    }

    /// A permit of every limit, waiting at a full one (and closing idle
    /// connections of other pools under it meanwhile). `None` only if a
    /// limit is gone (pgsplit shutting down).
    pub async fn acquire(&self, asking: usize) -> Option<Permits> {
        let mut permits = Vec::with_capacity(self.limits.len());
        for (i, limit) in self.limits.iter().enumerate() {
            let permit = match limit.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    self.blocked.store(i as u8 + 1, Ordering::Relaxed);
                    let waited = wait_for(limit, asking).await;
                    self.blocked.store(0, Ordering::Relaxed);
                    waited?
                }
            };
            permits.push(permit);
        }
        Some(Permits { _held: permits })
    }

    /// The limit a connection of this pool waits at now, if any.
    pub fn blocked(&self) -> Option<&Limit> {
        match self.blocked.load(Ordering::Relaxed) {
            0 => None,
            n => self.limits.get(n as usize - 1).map(|l| &**l),
        }
    }

    /// How many connections may be opened now without waiting.
    pub fn room(&self) -> usize {
        self.limits
            .iter()
            .map(|l| l.available())
            .min()
            .unwrap_or(usize::MAX)
    }
}

async fn wait_for(limit: &Limit, asking: usize) -> Option<OwnedSemaphorePermit> {
    tracing::debug!(limit = limit.kind.key(), max = limit.max, what = %limit.what,
        "a server connection waits: the limit is reached");
    if limit.evict_idle(asking) {
        if let Ok(permit) = limit.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
    }
    let acquire = limit.permits.clone().acquire_owned();
    tokio::pin!(acquire);
    loop {
        tokio::select! {
            permit = &mut acquire => return permit.ok(),
            () = tokio::time::sleep(EVICT_RETRY) => {
                limit.evict_idle(asking);
            }
        }
    }
}

/// Every limit, created as pools need them.
pub struct ConnectionLimits {
    max_db: u32,
    max_user: u32,
    by_database: Mutex<HashMap<(Arc<str>, String), Arc<Limit>>>,
    by_user: Mutex<HashMap<(Arc<str>, String), Arc<Limit>>>,
}

impl ConnectionLimits {
    /// 0: no limit of that kind.
    pub fn new(max_db: u32, max_user: u32) -> ConnectionLimits {
        ConnectionLimits {
            max_db,
            max_user,
            by_database: Mutex::default(),
            by_user: Mutex::default(),
        }
    }

    /// Whether these are the limits a configuration asks for (a reload
    /// then keeps them, and the counts of the connections open).
    pub fn are(&self, max_db: u32, max_user: u32) -> bool {
        (self.max_db, self.max_user) == (max_db, max_user)
    }

    /// The limits of the pool of `server`, `database` and `user`.
    pub fn of(&self, server: &Arc<str>, database: &str, user: &str) -> PoolLimits {
        let mut limits = Vec::new();
        let get = |map: &Mutex<HashMap<(Arc<str>, String), Arc<Limit>>>,
                   kind,
                   max,
                   name: &str,
                   what: String| {
            map.lock()
                .entry((server.clone(), name.to_string()))
                .or_insert_with(|| Arc::new(Limit::new(kind, max, what)))
                .clone()
        };
        if self.max_db > 0 {
            let what = format!("database \"{database}\" on {server}");
            limits.push(get(
                &self.by_database,
                Kind::Database,
                self.max_db,
                database,
                what,
            ));
        }
        if self.max_user > 0 {
            let what = format!("user \"{user}\" on {server}");
            limits.push(get(&self.by_user, Kind::User, self.max_user, user, what));
        }
        PoolLimits {
            limits,
            blocked: Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pools_of_one_database_on_one_server_share_its_limit() {
        let limits = ConnectionLimits::new(2, 0);
        let (a, b): (Arc<str>, Arc<str>) = ("p:1".into(), "r:1".into());
        let alice = limits.of(&a, "app", "alice");
        let bob = limits.of(&a, "app", "bob");
        let other_server = limits.of(&b, "app", "alice");
        let other_db = limits.of(&a, "other", "alice");
        let none = 0;
        let first = alice.acquire(none).await.unwrap();
        let _second = bob.acquire(none).await.unwrap();
        assert_eq!((alice.room(), bob.room()), (0, 0));
        assert_eq!((other_server.room(), other_db.room()), (2, 2));
        // Full: a third waits, and is reported as waiting at the limit.
        let third = tokio::spawn({
            let alice = alice.clone();
            async move { alice.acquire(0).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            alice.blocked().map(|l| (l.kind, l.max)),
            Some((Kind::Database, 2))
        );
        assert_eq!(alice.blocked().unwrap().what, "database \"app\" on p:1");
        drop(first);
        third.await.unwrap().unwrap();
        assert!(alice.blocked().is_none());
    }

    #[tokio::test]
    async fn a_user_limit_spans_databases_and_both_apply() {
        let limits = ConnectionLimits::new(3, 1);
        let server: Arc<str> = "p:1".into();
        let app = limits.of(&server, "app", "alice");
        let other = limits.of(&server, "other", "alice");
        let held = app.acquire(0).await.unwrap();
        assert_eq!(other.room(), 0, "alice's one connection is used");
        drop(held);
        assert_eq!(other.room(), 1);
        assert_eq!(
            ConnectionLimits::new(0, 0)
                .of(&server, "app", "alice")
                .room(),
            usize::MAX
        );
        assert!(limits.are(3, 1) && !limits.are(3, 0));
    }
}
