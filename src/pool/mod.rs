//! Server connection pools: one bb8 pool per server, database and user,
//! grouped per (database, user) as one primary and its replicas.

mod manager;
mod replicas;
mod server_pool;

pub use server_pool::{Checkout, Role, ServerPool};

use crate::config::{Config, ReplicaSelection};
use crate::server::{LoginTarget, ServerError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("timed out after {waited:?} waiting for a connection from pool \"{pool}\"")]
    Timeout { pool: String, waited: Duration },
    #[error("cannot connect to {pool}: {source}")]
    Server {
        pool: String,
        source: Arc<ServerError>,
    },
    #[error("pool is closed")]
    Closed,
}

/// The primary and replicas serving one database as one user.
pub struct ClusterPools {
    pub primary: Arc<ServerPool>,
    pub replicas: Vec<Arc<ServerPool>>,
    selection: ReplicaSelection,
    ban_time: Duration,
    /// Turn counter for round robin and least-busy ties.
    next: AtomicUsize,
}

impl ClusterPools {
    /// A replica connection if a replica can give one; otherwise the
    /// primary's. Replicas that refuse connections are banned for a while.
    pub async fn checkout_read(&self) -> Result<Checkout, PoolError> {
        for _ in 0..self.replicas.len() {
            let Some(replica) = self.pick_replica() else {
                break;
            };
            match replica.checkout().await {
                Ok(conn) => return Ok(conn),
                Err(PoolError::Server { source, .. }) if !is_login_refusal(&source) => {
                    tracing::warn!(pool = %replica.name, error = %source,
                        ban_seconds = self.ban_time.as_secs_f64(), "replica refused a connection: banned, reads go elsewhere");
                    replica.ban(self.ban_time);
                }
                Err(e) => return Err(e),
            }
        }
        self.primary.checkout().await
    }

    pub async fn checkout_primary(&self) -> Result<Checkout, PoolError> {
        self.primary.checkout().await
    }

    /// All pools, primary first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ServerPool>> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }
}

/// A server that answers with an ErrorResponse is up: the problem is the
/// login (unknown database, password), which another server would refuse too.
fn is_login_refusal(e: &ServerError) -> bool {
    matches!(e, ServerError::Refused { .. })
}

/// Every pool pgsplit has, created on demand per (database, user).
pub struct Pools {
    config: Arc<Config>,
    clusters: RwLock<HashMap<(String, String), Arc<ClusterPools>>>,
}

impl Pools {
    pub fn new(config: Arc<Config>) -> Pools {
        Pools {
            config,
            clusters: RwLock::new(HashMap::new()),
        }
    }

    /// The pools of `database` as `user`, creating them on first use.
    pub fn get(&self, database: &str, user: &str) -> Arc<ClusterPools> {
        let key = (database.to_string(), user.to_string());
        if let Some(c) = self.clusters.read().get(&key) {
            return c.clone();
        }
        self.clusters
            .write()
            .entry(key)
            .or_insert_with(|| Arc::new(self.build(database, user)))
            .clone()
    }

    /// Opens `pool_size` connections for every configured user and
    /// database, so the first clients find them ready.
    pub fn warm_up(&self) {
        for user in &self.config.users {
            for database in &self.config.databases {
                self.get(database, &user.name);
            }
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<ClusterPools>> {
        self.clusters.read().values().cloned().collect()
    }

    fn build(&self, database: &str, user: &str) -> ClusterPools {
        let config = &self.config;
        let target = |addr: &str, role: Role| LoginTarget {
            addr: Arc::from(addr),
            user: user.to_string(),
            database: database.to_string(),
            password: config.user(user).map(|u| u.password.clone()),
            connect_timeout: match role {
                Role::Primary => config.pool.primary.connect_timeout(),
                Role::Replica => config.pool.replica.connect_timeout(),
            },
        };
        let primary_addr = config.primary.as_deref().unwrap_or_default();
        tracing::info!(database, user, "creating pools");
        ClusterPools {
            primary: ServerPool::new(
                Role::Primary,
                target(primary_addr, Role::Primary),
                &config.pool.primary,
            ),
            replicas: config
                .replicas
                .iter()
                .map(|addr| {
                    ServerPool::new(
                        Role::Replica,
                        target(addr, Role::Replica),
                        &config.pool.replica,
                    )
                })
                .collect(),
            selection: config.replica_selection,
            ban_time: config.replica_ban_time(),
            next: AtomicUsize::new(0),
        }
    }
}
