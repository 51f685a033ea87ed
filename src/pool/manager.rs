//! bb8's view of a server: how to open, check and judge a connection.

use super::limits::{Permits, PoolLimits};
use super::registry::{Opened, Registered, Registry};
use super::ServerPool;
use crate::metrics::PoolHandles;
use crate::protocol::tag;
use crate::role::Role;
use crate::server::{LoginTarget, ServerConnection, ServerError};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

#[derive(Clone)]
pub struct ServerManager {
    pub target: LoginTarget,
    /// The ParameterStatus values of the first login, which pgsplit sends
    /// to its clients as a server would.
    pub params: Arc<OnceLock<Vec<(String, String)>>>,
    /// What the pool learns from opening connections.
    pub opens: Arc<Opens>,
    /// The connection limits its connections count against.
    pub limits: PoolLimits,
    /// Its pool, which a connection waiting at a limit does not close
    /// idle connections of.
    pub pool: Weak<ServerPool>,
    /// Counts each login by what it logged in with, and its TLS
    /// negotiation (`pgsplit_tls_negotiations_total`, the server side).
    pub metrics: PoolHandles,
    /// Where each connection opened is listed (SHOW SERVERS, RECONNECT).
    pub registry: Arc<Registry>,
    /// The role its server was configured with, for that list.
    pub role: Role,
}

/// What a pool and its manager share about opening connections.
#[derive(Debug, Default)]
pub struct Opens {
    /// Connections being opened now, for the pool's metrics.
    pub now: AtomicUsize,
    /// A login succeeded since the pool began, or since it was last
    /// refused or had its connections closed for a database command.
    /// Until then a replica pool opens one connection at a time for
    /// reads (see `ServerPool::takes_reads`).
    pub proven: AtomicBool,
    /// Logins refused in a row: a replica's back-off doubles with each.
    pub refusals: AtomicU32,
    /// Woken when a login ends, either way: reads that came while a
    /// replica pool's first login was in flight wait for it.
    pub settled: tokio::sync::Notify,
}

impl bb8::ManageConnection for ServerManager {
    type Connection = PooledServer;
    type Error = ServerError;

    async fn connect(&self) -> Result<PooledServer, ServerError> {
        let _opening = InFlight::start(&self.opens);
        let permits = self
            .limits
            .acquire(self.pool.as_ptr() as usize)
            .await
            .ok_or(ServerError::Closed)?;
        let credential = self.target.credential.get();
        let result = ServerConnection::connect(&self.target).await;
        if let Some(outcome) =
            crate::server::encryption::outcome(self.target.tls.as_deref(), &result)
        {
            let labels = ["server", outcome.label()];
            self.metrics.tls.with_label_values(&labels).inc();
        }
        let kind = credential.as_deref().map_or("none", |c| c.label());
        self.metrics.login(kind, result.is_ok());
        let conn = result?;
        let _ = self.params.set(conn.params.clone());
        // Loads first: every checkout of a new connection passes here, and
        // a store would make the line bounce between threads.
        if !self.opens.proven.load(Ordering::Relaxed) {
            self.opens.proven.store(true, Ordering::Relaxed);
        }
        if self.opens.refusals.load(Ordering::Relaxed) != 0 {
            self.opens.refusals.store(0, Ordering::Relaxed);
        }
        let registered = self.registry.register(Opened {
            addr: self.target.addr.clone(),
            role: self.role,
            database: self.target.database.clone(),
            user: self.target.user.clone(),
            local: conn.stream.local_addr(),
            backend_pid: conn.backend_pid,
            tls: conn.stream.tls_description(),
        });
        Ok(PooledServer(Box::new(conn), permits, registered))
    }

    /// Only called with `pool_pre_ping`: an empty query is the cheapest
    /// round trip a server answers.
    async fn is_valid(&self, conn: &mut PooledServer) -> Result<(), ServerError> {
        conn.simple_query("")
            .await
            .map(|_| ())
            .map_err(|e| ServerError::Stale(e.to_string()))
    }

    fn has_broken(&self, conn: &mut PooledServer) -> bool {
        !conn.is_clean()
    }
}

/// A server connection as a pool holds it. Boxed: bb8 moves connections
/// in and out of its idle list on every checkout, and a pointer is
/// cheaper to move than the whole struct.
///
/// When a clean one is closed (idle too long, recycled, its pool retired
/// or emptied for `DROP DATABASE`), pgsplit says goodbye with Terminate,
/// as a client's orderly close does, so its backend exits at once rather
/// than on reading the end of the stream. One that is not clean (cut off
/// mid-reply) is only closed: a Terminate there could be read as part of
/// something else.
pub struct PooledServer(
    Box<ServerConnection>,
    // Dropped after the connection: its limits' permits (`limits`) are
    // given back once it is closed.
    #[allow(dead_code)] Permits,
    // Leaves the registry once the connection is closed.
    pub(super) Registered,
);

impl PooledServer {
    /// Closes it when it goes back to its pool, saying Terminate first
    /// (it is idle and clean).
    pub fn retire(&mut self) {
        self.0.stream.send_without_waiting(&TERMINATE);
        self.0.broken = true;
    }
}

impl Deref for PooledServer {
    type Target = ServerConnection;
    fn deref(&self) -> &ServerConnection {
        &self.0
    }
}

impl DerefMut for PooledServer {
    fn deref_mut(&mut self) -> &mut ServerConnection {
        &mut self.0
    }
}

/// Terminate: tag 'X' and a length of 4.
const TERMINATE: [u8; 5] = [tag::TERMINATE, 0, 0, 0, 4];

impl Drop for PooledServer {
    fn drop(&mut self) {
        if self.0.is_clean() {
            // Five bytes fit in any idle socket's send buffer; a socket
            // that is already gone fails here, and is closed all the same.
            self.0.stream.send_without_waiting(&TERMINATE);
        }
    }
}

/// Counts a connection being opened until it is open, failed, or its
/// future dropped (bb8 gives up on it at its timeout).
struct InFlight<'a>(&'a Opens);

impl<'a> InFlight<'a> {
    fn start(opens: &'a Opens) -> Self {
        opens.now.fetch_add(1, Ordering::Relaxed);
        InFlight(opens)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
        self.0.settled.notify_waiters();
    }
}
