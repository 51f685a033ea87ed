//! Server connection pools: one bb8 pool per server, database and user,
//! grouped per (database, user) as one primary and its replicas.

mod closing;
mod limits;
mod manager;
mod recall;
pub mod registry;
mod replicas;
mod retire;
mod server_pool;
mod waiters;

pub use closing::{Closed, Reconnected};
pub use recall::RecallTicket;
pub use server_pool::{Checkout, ServerPool};

use crate::health::lsn::{self, Lsn};
use crate::health::{Need, Topology};
use replicas::Pick;
use std::time::Instant;

use crate::config::{Config, Consistency, ReplicaSelection};
use crate::metrics::Metrics;
use crate::protocol::error::sqlstate;
use crate::role::Role;
use crate::router::decision::Detour;
use crate::server::{Keyring, LoginTarget, ServerConnection, ServerError};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a write waits before it tries a writer that refused a
/// connection again, when a re-check ran a moment ago.
const RETRY_GAP: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("timed out after {} s waiting for a connection from pool \"{pool}\"", waited.as_secs_f64())]
    Timeout { pool: String, waited: Duration },
    /// The wait was for a connection that `max_db_connections` or
    /// `max_user_connections` kept from being opened.
    #[error("timed out after {} s waiting for a connection from pool \"{pool}\": {limit} ({max}) reached for {what}", waited.as_secs_f64())]
    Limit {
        pool: String,
        waited: Duration,
        limit: &'static str,
        max: u32,
        what: String,
    },
    #[error("cannot connect to {pool}: {source}")]
    Server {
        pool: String,
        source: Arc<ServerError>,
    },
    #[error("the primary is unavailable: cannot connect to {pool}: {source}")]
    PrimaryUnavailable {
        pool: String,
        source: Arc<ServerError>,
    },
    #[error("no primary is available (the primary is down and no replica has been promoted)")]
    NoPrimary,
    #[error("more than one server reports it is a primary (split brain): writes go to none of them until one is demoted or stopped")]
    SplitBrain,
    #[error("pool is closed")]
    Closed,
}

/// The servers serving one database as one user: a pool per server,
/// indexed as `Topology::servers`.
pub struct ClusterPools {
    pub servers: Vec<Arc<ServerPool>>,
    pub topology: Arc<Topology>,
    selection: ReplicaSelection,
    ban_time: Duration,
    /// How long a replica's login may take (`first_login_settled`).
    connect_timeout: Duration,
    /// How long a write waits for a confirmed primary (`failover_wait`).
    failover_wait: Duration,
    /// Turn counter for round robin and least-busy ties.
    next: AtomicUsize,
    /// Since when no client has held these pools, as the retirement
    /// sweep last saw it (`None`: in use, or not looked at yet).
    unused_since: Mutex<Option<Instant>>,
    /// The transaction defaults the primary gives this database and role,
    /// once asked (`learn_defaults`).
    defaults: std::sync::OnceLock<Defaults>,
}

/// A database's and role's transaction defaults, as their sessions start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub isolation: Option<crate::router::Isolation>,
    pub read_only: bool,
}

impl ClusterPools {
    /// The default isolation of a transaction of this database and role
    /// (`None`: not asked yet).
    pub fn default_isolation(&self) -> Option<crate::router::Isolation> {
        self.defaults.get().and_then(|d| d.isolation)
    }

    /// Whether its transactions are read only by default.
    pub fn default_read_only(&self) -> bool {
        self.defaults.get().is_some_and(|d| d.read_only)
    }

    /// Whether `learn_defaults` has run.
    pub fn knows_defaults(&self) -> bool {
        self.defaults.get().is_some()
    }

    /// Asks the primary for the transaction defaults of this database and
    /// role (set in postgresql.conf, or by ALTER DATABASE / ROLE ... SET):
    /// the values a session starts with, whatever a client SET on the
    /// connection asked. A failure leaves them unknown (transactions then
    /// run on the primary from their BEGIN).
    pub async fn learn_defaults(&self) {
        if self.knows_defaults() {
            return;
        }
        if let Ok(mut conn) = self.checkout_primary().await {
            self.learn_defaults_on(&mut conn).await;
        }
    }

    /// `learn_defaults` on a primary connection at hand (a login's).
    pub async fn learn_defaults_on(&self, conn: &mut ServerConnection) {
        if self.knows_defaults() {
            return;
        }
        let sql = "SELECT (SELECT reset_val FROM pg_settings WHERE name = 'default_transaction_isolation'), \
                   (SELECT reset_val FROM pg_settings WHERE name = 'default_transaction_read_only')";
        match conn.simple_query(sql).await {
            Ok(rows) => {
                let row = rows.first();
                let value = |i: usize| row.and_then(|r| r.get(i).cloned().flatten());
                let defaults = Defaults {
                    isolation: value(0).and_then(|v| crate::router::Isolation::from_setting(&v)),
                    read_only: value(1).is_some_and(|v| v == "on"),
                };
                tracing::debug!(
                    isolation = defaults.isolation.map_or("default", |i| i.as_str()),
                    read_only = defaults.read_only,
                    "transaction defaults of the database and role"
                );
                let _ = self.defaults.set(defaults);
            }
            Err(error) => tracing::warn!(%error, "could not read the transaction defaults"),
        }
    }

    /// A connection to a replica that has what `need` asks for; if none has
    /// it yet, one that catches up within `max_wait_for_replica`; otherwise
    /// the primary. Replicas that refuse connections are banned for a while.
    /// A checkout on the primary says why in `detour`.
    pub async fn checkout_read(&self, need: &mut Need) -> Result<Checkout, PoolError> {
        self.checkout_read_after(need, 0).await
    }

    /// A read that must also see WAL position `floor` (a consistency
    /// token: `pgsplit.min_lsn`), whatever the consistency mode.
    pub async fn checkout_read_after(
        &self,
        need: &mut Need,
        floor: Lsn,
    ) -> Result<Checkout, PoolError> {
        // Cluster consistency: what the read must see is set when it
        // arrives, not by the client's own writes.
        let mut arrived;
        let need = match self.topology.consistency {
            Consistency::Cluster => {
                arrived = self.topology.read_arrived();
                &mut arrived
            }
            _ => need,
        };
        let mut deadline = None;
        let mut waited_for_login = false;
        // Each turn returns, bans a replica, or waits for news until the
        // deadline, so this ends.
        let detour = loop {
            let required = self.topology.required(need).map(|lsn| lsn.max(floor));
            match self.pick_replica(required) {
                Pick::Replica(pool) => match pool.checkout().await {
                    Ok(conn) => {
                        if deadline.is_some() {
                            self.topology.consistency_waits[0].fetch_add(1, Ordering::Relaxed);
                        }
                        return Ok(conn);
                    }
                    Err(PoolError::Server { source, .. }) if source.is_pgsplits_own() => {
                        // No fault of the replica's: not banned; the read
                        // goes to the primary, which may have a connection
                        // open already.
                        tracing::debug!(pool = %pool.name, error = %source,
                            "could not open a replica connection: the read goes to the primary");
                        break Detour::NoReplica;
                    }
                    Err(PoolError::Server { source, .. }) => self.replica_failed(pool, &source),
                    Err(e) => return Err(e),
                },
                Pick::Behind if self.topology.waits_futile() => break Detour::ConsistencyWait,
                Pick::Behind => {
                    let deadline = *deadline
                        .get_or_insert_with(|| Instant::now() + self.topology.max_wait_for_replica);
                    if Instant::now() >= deadline
                        || !self.topology.wait_for_progress(required, deadline).await
                    {
                        tracing::debug!(required = %required.map_or_else(|| "none".to_string(), lsn::format),
                            "no replica has the client's writes within max_wait_for_replica: read goes to the primary");
                        self.topology.wait_ran_out();
                        self.topology.consistency_waits[1].fetch_add(1, Ordering::Relaxed);
                        break Detour::ConsistencyWait;
                    }
                }
                Pick::Nothing if !waited_for_login => {
                    // A replica pool's first login is in flight: a burst
                    // of reads on a cold pool waits for it (once, and no
                    // longer than a login may take) rather than all go to
                    // the primary.
                    waited_for_login = true;
                    let Some(pool) = self.servers.iter().find(|p| p.first_login_in_flight()) else {
                        break self.no_replica_reason();
                    };
                    pool.first_login_settled(Instant::now() + self.connect_timeout)
                        .await;
                }
                Pick::Nothing => break self.no_replica_reason(),
            }
        };
        let mut conn = self.read_from_primary().await?;
        conn.detour = Some(detour);
        Ok(conn)
    }

    /// A replica pool could not open a connection: it gets no reads for a
    /// while, and the read goes to another replica or the primary. Never
    /// the client's error: where the replica refuses the login, the
    /// primary's answer is the one a client connected to it directly
    /// would get (it refuses too, or it serves the read).
    fn replica_failed(&self, pool: &ServerPool, error: &ServerError) {
        let failure = replica_failure(error);
        if failure == ReplicaFailure::Unavailable {
            tracing::warn!(pool = %pool.name, %error, ban_seconds = self.ban_time.as_secs_f64(),
                "replica refused a connection: banned, reads go elsewhere");
            pool.ban(self.ban_time);
            return;
        }
        // Refusals of logins already in flight change nothing: logged once.
        let Some(back_off) = pool.back_off(self.ban_time) else {
            return;
        };
        let back_off_seconds = back_off.as_secs_f64();
        if failure == ReplicaFailure::NotReplayedYet {
            tracing::info!(pool = %pool.name, %error, back_off_seconds,
                "replica does not have the database (it may not have replayed its creation yet): reads of this pool go elsewhere meanwhile");
        } else {
            tracing::warn!(pool = %pool.name, %error, back_off_seconds,
                "replica refused the login (check its pg_hba.conf, roles and passwords): reads of this pool go elsewhere meanwhile");
        }
    }

    /// Why no replica could take a read: lag, or none up at all.
    fn no_replica_reason(&self) -> Detour {
        let lagging = self.servers.iter().any(|p| p.server.is_lagging());
        if lagging {
            Detour::Lag
        } else {
            Detour::NoReplica
        }
    }

    /// The primary for a read; if it is down, a replica that may not have
    /// the latest writes (availability over freshness: nothing fresher
    /// exists until the primary is back or a replica is promoted).
    async fn read_from_primary(&self) -> Result<Checkout, PoolError> {
        match self.checkout_primary_for_read().await {
            Err(e @ (PoolError::NoPrimary | PoolError::PrimaryUnavailable { .. })) => {
                let pool = match self.pick_replica(Some(0)) {
                    Pick::Replica(pool) => pool,
                    // None takes reads by the usual rules (one just failed a
                    // check, is banned or lags): with the primary gone, any
                    // standby that lets pgsplit in is better than an error.
                    _ => match self.any_standby() {
                        Some(pool) => pool,
                        None => return Err(e),
                    },
                };
                tracing::warn!(pool = %pool.name, error = %e,
                    "primary unavailable: read goes to a replica that may not have the latest writes");
                let mut conn = pool.checkout().await.map_err(|_| e)?;
                conn.detour = Some(Detour::PrimaryDown);
                Ok(conn)
            }
            other => other,
        }
    }

    /// A server other than the writer that last reported it is in
    /// recovery, whatever else its state says.
    fn any_standby(&self) -> Option<&Arc<ServerPool>> {
        self.servers
            .iter()
            .find(|p| !p.server.is_writer() && p.server.in_recovery())
    }

    /// A connection to the writer for something that does not write (a
    /// read, a login's greeting): while a re-check is under way or two
    /// servers claim to be primary, the one that last took writes has the
    /// data as well as any, and nothing waits for the outcome.
    pub async fn checkout_primary_for_read(&self) -> Result<Checkout, PoolError> {
        let writer = self.topology.writer().ok_or(PoolError::NoPrimary)?;
        match self.servers[writer.index].checkout().await {
            Err(PoolError::Server { pool, source })
                if !is_login_refusal(&source) && !source.is_pgsplits_own() =>
            {
                Err(PoolError::PrimaryUnavailable { pool, source })
            }
            other => other,
        }
    }

    /// A connection to the server that takes writes now.
    /// While no server is confirmed as the primary (none is up, a
    /// re-check is under way, or a split brain), a write waits up to
    /// `failover_wait` for one, and is never sent to a server that reports
    /// it is in recovery.
    pub async fn checkout_primary(&self) -> Result<Checkout, PoolError> {
        self.checkout_writer(self.failover_wait).await
    }

    /// The primary, waiting at most `wait` for one to be confirmed. A
    /// writer that refuses connections is re-checked (it may be gone for
    /// good) rather than failing every write until its monitor agrees.
    async fn checkout_writer(&self, wait: Duration) -> Result<Checkout, PoolError> {
        let deadline = Instant::now() + wait;
        loop {
            let writer = match self.topology.confirmed_writer() {
                Some(writer) => writer,
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.topology.wait_for_writer(left).await {
                        Some(writer) => writer,
                        None if self.topology.is_split_brain() => {
                            return Err(PoolError::SplitBrain)
                        }
                        None => return Err(PoolError::NoPrimary),
                    }
                }
            };
            match self.servers[writer.index].checkout().await {
                // pgsplit's own want of file descriptors says nothing of
                // the primary: no re-check, the client is told (53300).
                Err(PoolError::Server { pool, source })
                    if !is_login_refusal(&source) && !source.is_pgsplits_own() =>
                {
                    if Instant::now() >= deadline {
                        return Err(PoolError::PrimaryUnavailable { pool, source });
                    }
                    if !self.topology.recheck("cannot connect to the primary") {
                        tokio::time::sleep(RETRY_GAP.min(deadline - Instant::now())).await;
                    }
                }
                other => return other,
            }
        }
    }

    /// Whether a connection kept from `pool` may run the client's next
    /// request on a server of `role`, as a checkout would choose it now:
    /// the writer; or a replica that serves reads, is not banned and has
    /// replayed what `need` asks for.
    pub fn fits(&self, pool: &ServerPool, role: Role, need: &mut Need, floor: Lsn) -> bool {
        match role {
            Role::Primary => self
                .topology
                .confirmed_writer()
                .is_some_and(|w| Arc::ptr_eq(w, &pool.server)),
            // Cluster consistency: a read's need is known only from a
            // position sample taken after it arrived; a checkout waits for it.
            Role::Replica if self.topology.consistency == Consistency::Cluster => false,
            Role::Replica => {
                pool.takes_reads()
                    && pool.has_replayed(self.topology.required(need).map(|lsn| lsn.max(floor)))
            }
        }
    }

    /// A connection of `pool` to the primary failed (lost, or the server
    /// said it is shutting down or read-only): the primary may be gone, so
    /// every server is checked again now (fencing: `Topology::recheck`),
    /// and the pool's other idle connections, most likely dead too, are
    /// closed rather than handed to the next clients one by one, each a
    /// failed statement. True if this started a re-check round.
    pub fn primary_connection_failed(&self, pool: &ServerPool, why: &str) -> bool {
        if !self.topology.recheck(why) {
            return false;
        }
        tracing::info!(pool = %pool.name, why,
            "a primary connection failed: re-checking every server, and closing this pool's idle connections");
        drop(pool.swap_out_connections());
        true
    }

    /// The writer's pool, whose login parameters clients are greeted with.
    pub fn writer_pool(&self) -> Option<&Arc<ServerPool>> {
        self.topology
            .writer()
            .map(|w| &self.servers[w.index])
            .or(self.servers.first())
    }

    /// All pools, the configured primary first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ServerPool>> {
        self.servers.iter()
    }
}

/// A server that answers with an ErrorResponse is up: the problem is the
/// login (unknown database, password), which another server would refuse
/// too. Except when it says it cannot take connections now (class 57:
/// starting up, shutting down; class 53: out of connections): then another
/// server may.
pub fn is_login_refusal(e: &ServerError) -> bool {
    match e {
        ServerError::Refused { code, .. } => !(code.starts_with("57") || code.starts_with("53")),
        _ => false,
    }
}

/// Why a replica gave no connection, as a read's checkout treats it
/// (pgsplit's own want of file descriptors is none of these: see
/// `checkout_read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicaFailure {
    /// Down, unreachable, starting or shutting down, out of connections:
    /// banned for `replica_ban_time`, as the whole server is.
    Unavailable,
    /// `3D000`: the database is not there, typically created a moment ago
    /// and not replayed yet. This pool backs off, from 100 ms doubling
    /// up to `replica_ban_time`, until a login succeeds.
    NotReplayedYet,
    /// Any other login refusal (pg_hba, unknown role, password,
    /// `CONNECT` privilege): the primary may accept what the replica
    /// refuses (a role not replayed yet, a pg_hba.conf that differs), so
    /// the same back-off, with a warning.
    LoginRefused,
}

/// How a read's checkout treats a replica's connection failure.
pub(crate) fn replica_failure(error: &ServerError) -> ReplicaFailure {
    match error {
        ServerError::Refused { code, .. } if is_login_refusal(error) => match code.as_str() {
            sqlstate::INVALID_CATALOG_NAME => ReplicaFailure::NotReplayedYet,
            _ => ReplicaFailure::LoginRefused,
        },
        _ => ReplicaFailure::Unavailable,
    }
}

/// Every pool pgsplit has, created on demand per (database, user).
pub struct Pools {
    config: Arc<Config>,
    topology: Arc<Topology>,
    metrics: Arc<Metrics>,
    /// Each user's credential for server logins (the process's one).
    keyring: Arc<Keyring>,
    /// TLS to the servers, as this generation loaded it.
    server_tls: Option<Arc<crate::tls::ServerTls>>,
    clusters: RwLock<HashMap<(String, String), Arc<ClusterPools>>>,
    /// `max_db_connections` and `max_user_connections`; kept across a
    /// reload that does not change them, with the connections they count.
    limits: RwLock<Arc<limits::ConnectionLimits>>,
    /// Bans of pools retired since start-up, by server address, so that
    /// a server's ban count does not drop when a pool goes.
    retired_bans: Mutex<HashMap<Arc<str>, u64>>,
    /// The pools that took these over at a reload (`inherit`).
    successor: std::sync::OnceLock<std::sync::Weak<Pools>>,
    /// Every server connection open, of this generation and the others.
    pub registry: Arc<registry::Registry>,
}

impl Pools {
    pub fn new(
        config: Arc<Config>,
        topology: Arc<Topology>,
        metrics: Arc<Metrics>,
        keyring: Arc<Keyring>,
        server_tls: Option<Arc<crate::tls::ServerTls>>,
        registry: Arc<registry::Registry>,
    ) -> Pools {
        let limits =
            limits::ConnectionLimits::new(config.max_db_connections, config.max_user_connections);
        Pools {
            config,
            topology,
            metrics,
            keyring,
            server_tls,
            clusters: RwLock::new(HashMap::new()),
            limits: RwLock::new(Arc::new(limits)),
            retired_bans: Mutex::new(HashMap::new()),
            successor: std::sync::OnceLock::new(),
            registry,
        }
    }

    /// The pools of `database` as `user`, creating them on first use.
    /// After a reload (a client that logged in across it), the pools of
    /// the configuration that replaced this one: these are empty then.
    pub fn get(&self, database: &str, user: &str) -> Arc<ClusterPools> {
        let successor = || self.successor.get().and_then(std::sync::Weak::upgrade);
        if let Some(next) = successor() {
            return next.get(database, user);
        }
        let key = (database.to_string(), user.to_string());
        if let Some(c) = self.clusters.read().get(&key) {
            return c.clone();
        }
        let mut clusters = self.clusters.write();
        // A reload may have taken the map over meanwhile (`inherit` names
        // the successor before it takes this lock).
        if let Some(next) = successor() {
            drop(clusters);
            return next.get(database, user);
        }
        clusters
            .entry(key)
            .or_insert_with(|| Arc::new(self.build(database, user)))
            .clone()
    }

    /// Opens `pool_size` connections, on the primary and the replicas,
    /// for every configured user and database, so the first clients find
    /// them ready. Once per server pool: after a reload, only the new ones.
    /// Users whose servers cannot be logged in to yet (a SCRAM verifier in
    /// `[[users]]`, before a client of theirs proved its keys) are warmed
    /// up by their first client's login instead.
    pub fn warm_up(&self) {
        let ready = self
            .config
            .users
            .iter()
            .filter(|u| self.keyring.can_log_in(&u.name));
        for user in ready {
            for database in &self.config.databases {
                self.get(database, &user.name)
                    .all()
                    .for_each(ServerPool::warm);
            }
        }
    }

    /// Whether the pools of (`database`, `user`) are opened at start-up
    /// (and so kept for good).
    fn is_configured(&self, database: &str, user: &str) -> bool {
        self.config.user(user).is_some() && self.config.databases.iter().any(|d| d == database)
    }

    /// The pools of some client of `database`, if any client used it.
    pub fn of_database(&self, database: &str) -> Option<Arc<ClusterPools>> {
        let clusters = self.clusters.read();
        let found = clusters.iter().find(|((db, _), _)| db == database);
        found.map(|(_, cluster)| cluster.clone())
    }

    pub fn snapshot(&self) -> Vec<Arc<ClusterPools>> {
        self.clusters.read().values().cloned().collect()
    }

    /// Bans of retired pools of the server at `addr`.
    pub fn retired_bans(&self, addr: &str) -> u64 {
        self.retired_bans.lock().get(addr).copied().unwrap_or(0)
    }

    /// After a reload: the (database, user) pairs `previous` served get
    /// pools here too, and a server pool whose server, login and settings
    /// did not change is taken over with its open connections. `previous`
    /// is left empty: only sessions still on it hold its pools, so a pool
    /// no session uses can be retired (and closed) here; and it hands out
    /// these from now on.
    pub fn inherit(self: &Arc<Self>, previous: &Pools) {
        // Locked first: a `get` forwarded here waits for what is inherited.
        let mut clusters = self.clusters.write();
        let _ = previous.successor.set(Arc::downgrade(self));
        let old = std::mem::take(&mut *previous.clusters.write());
        // Pools are kept only under the same limits, which then count
        // their open connections on.
        let (max_db, max_user) = (
            self.config.max_db_connections,
            self.config.max_user_connections,
        );
        let keep = previous.limits.read().are(max_db, max_user);
        if keep {
            *self.limits.write() = previous.limits.read().clone();
        }
        for ((database, user), cluster) in old {
            let reuse = keep.then_some(&*cluster);
            let next = self.build_reusing(&database, &user, reuse);
            *next.unused_since.lock() = *cluster.unused_since.lock();
            clusters.insert((database, user), Arc::new(next));
        }
        self.retired_bans
            .lock()
            .extend(previous.retired_bans.lock().drain());
    }

    fn build(&self, database: &str, user: &str) -> ClusterPools {
        self.build_reusing(database, user, None)
    }

    fn build_reusing(
        &self,
        database: &str,
        user: &str,
        previous: Option<&ClusterPools>,
    ) -> ClusterPools {
        let config = &self.config;
        if previous.is_none() {
            tracing::info!(database, user, "creating pools");
        }
        let limits = self.limits.read().clone();
        let servers = self
            .topology
            .servers
            .iter()
            .map(|server| {
                let settings = match server.configured {
                    Role::Primary => &config.pool.primary,
                    Role::Replica => &config.pool.replica,
                };
                let target = LoginTarget {
                    addr: server.addr.clone(),
                    user: user.to_string(),
                    database: database.to_string(),
                    credential: self.keyring.slot(user),
                    connect_timeout: settings.connect_timeout(),
                    tls: self.server_tls.clone(),
                };
                let same = previous
                    .and_then(|p| p.servers.get(server.index))
                    .filter(|p| p.is_like(server, &target, settings));
                if let Some(pool) = same {
                    return pool.clone();
                }
                if let Some(old) = previous.and_then(|p| p.servers.get(server.index)) {
                    // Its connections close as their clients release
                    // them (WAIT_CLOSE waits for that), as PgBouncer's
                    // reload does with a changed connection string.
                    self.registry.mark_pool(&old.addr, database, user);
                }
                let handles = self.metrics.pool_handles(&[
                    &server.addr,
                    server.configured.as_str(),
                    database,
                    user,
                ]);
                let limits = limits.of(&server.addr, database, user);
                let registry = self.registry.clone();
                ServerPool::new(server.clone(), target, settings, handles, limits, registry)
            })
            .collect();
        ClusterPools {
            servers,
            topology: self.topology.clone(),
            selection: config.replica_selection,
            ban_time: config.replica_ban_time(),
            connect_timeout: config.pool.replica.connect_timeout(),
            failover_wait: config.failover_wait(),
            next: AtomicUsize::new(0),
            unused_since: Mutex::new(None),
            defaults: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client reads: seconds in words, not Rust's Debug of a
    /// Duration ("1.5s") or of an Option.
    #[test]
    fn timeouts_read_in_seconds() {
        let e = PoolError::Timeout {
            pool: "primary h:1 db=d user=u".into(),
            waited: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "timed out after 1.5 s waiting for a connection from pool \"primary h:1 db=d user=u\""
        );
    }

    fn refused(code: &str) -> ServerError {
        ServerError::Refused {
            severity: "FATAL".into(),
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn a_replica_refusing_a_login_backs_off_and_one_unavailable_is_banned() {
        use ReplicaFailure::*;
        for (error, expected) in [
            (refused("3D000"), NotReplayedYet),
            (refused("28000"), LoginRefused),
            (refused("28P01"), LoginRefused),
            (refused("42501"), LoginRefused),
            (refused("57P03"), Unavailable),
            (refused("53300"), Unavailable),
            (ServerError::Closed, Unavailable),
            (ServerError::Timeout(Duration::from_secs(1)), Unavailable),
            (ServerError::NoPassword("u".into()), Unavailable),
        ] {
            assert_eq!(replica_failure(&error), expected, "{error:?}");
        }
    }

    #[test]
    fn a_server_shutting_down_is_unavailable_not_refusing() {
        assert!(is_login_refusal(&refused("28P01")));
        assert!(is_login_refusal(&refused("3D000")));
        assert!(!is_login_refusal(&refused("57P03")));
        assert!(!is_login_refusal(&refused("53300")));
        assert!(!is_login_refusal(&ServerError::Closed));
    }
}
