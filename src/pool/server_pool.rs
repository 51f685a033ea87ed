//! The pool of one server, database and user: bb8 behind a fair queue,
//! plus the counters replica selection and bans read.

use super::manager::ServerManager;
use super::recall::{Parked, Recall, RecallTicket};
use super::PoolError;
use crate::config::PoolSettings;
use crate::health::lsn::Lsn;
use crate::health::{Role, ServerState};
use crate::metrics::{PoolHandles, PoolSample, RouteLabel};
use crate::server::{LoginTarget, ServerConnection, ServerError};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

pub struct ServerPool {
    /// "primary 127.0.0.1:5432 db=app user=app": how errors and logs name it.
    pub name: String,
    /// The server's live state (up, role, replay position).
    pub server: Arc<ServerState>,
    pub addr: Arc<str>,
    pub database: String,
    pub user: String,
    target: LoginTarget,
    pool: bb8::Pool<ServerManager>,
    /// bb8 does not serve waiters first come, first served (bb8 issue 243);
    /// tokio's semaphore does, so a client waits here for a permit and only
    /// then asks bb8, which then always has a connection or room for one.
    gate: Arc<Semaphore>,
    settings: PoolSettings,
    params: Arc<OnceLock<Vec<(String, String)>>>,
    /// The last connection failure. bb8 opens connections in background
    /// tasks and only tells its error sink, so clients waiting in
    /// `checkout` watch this to fail at once with the server's own error
    /// (unknown database, connection refused) instead of timing out.
    failures: Arc<watch::Sender<Option<Arc<ServerError>>>>,
    /// Failures sent so far: a plain load tells a checkout whether one came
    /// before it subscribed, without subscribing on every checkout.
    failure_count: Arc<AtomicU64>,
    /// Connections checked out now, for least-busy selection.
    in_use: AtomicUsize,
    /// Milliseconds since `epoch` until which this server gets no new
    /// clients (it refused a connection); 0 when not banned.
    banned_until_ms: AtomicU64,
    epoch: Instant,
    /// Clients waiting for a permit now.
    waiting: AtomicUsize,
    /// Connections parked with the idle client that used them last.
    parked: AtomicUsize,
    /// Tells those clients to give their parked connections back: a
    /// client is waiting for one, or the sweep runs.
    pub(super) recall: Recall,
    /// Connections being opened now (shared with the manager).
    opening: Arc<AtomicUsize>,
    /// Times this pool's server was banned.
    pub bans: AtomicU64,
    metrics: PoolHandles,
}

impl ServerPool {
    pub fn new(
        server: Arc<ServerState>,
        target: LoginTarget,
        settings: &PoolSettings,
        metrics: PoolHandles,
    ) -> Arc<ServerPool> {
        let params = Arc::new(OnceLock::new());
        let name = format!(
            "{} {} db={} user={}",
            server.configured.as_str(),
            target.addr,
            target.database,
            target.user
        );
        let addr = target.addr.clone();
        let (database, user) = (target.database.clone(), target.user.clone());
        let failures = Arc::new(watch::Sender::new(None));
        let failure_count = Arc::new(AtomicU64::new(0));
        let opening = Arc::new(AtomicUsize::new(0));
        let manager = ServerManager {
            target: target.clone(),
            params: params.clone(),
            opening: opening.clone(),
        };
        let pool = bb8::Pool::builder()
            .max_size(settings.max_size())
            .min_idle(Some(settings.pool_size))
            .max_lifetime(settings.pool_recycle())
            .idle_timeout(settings.idle_timeout())
            .connection_timeout(settings.pool_timeout())
            .test_on_check_out(settings.pool_pre_ping)
            // Most recently used first, as PgBouncer does: a few hot server
            // backends keep their caches warm, and the idle rest can be
            // reaped by idle_timeout.
            .queue_strategy(bb8::QueueStrategy::Lifo)
            // Surface login errors (unknown database, bad password) to the
            // client instead of retrying until the timeout.
            .retry_connection(false)
            .error_sink(Box::new(FailureSink {
                pool: name.clone(),
                failures: failures.clone(),
                count: failure_count.clone(),
            }))
            .build_unchecked(manager);
        let pool = Arc::new(ServerPool {
            name,
            server,
            addr,
            database,
            user,
            target,
            pool,
            gate: Arc::new(Semaphore::new(settings.max_size() as usize)),
            settings: settings.clone(),
            params,
            failures,
            failure_count,
            in_use: AtomicUsize::new(0),
            banned_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            waiting: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            recall: Recall::default(),
            opening,
            bans: AtomicU64::new(0),
            metrics,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_parked(Arc::downgrade(&pool)));
        }
        pool
    }

    /// A connection, waiting at most `pool_timeout` for a turn (bb8 bounds
    /// its own part by the same time).
    pub async fn checkout(self: &Arc<Self>) -> Result<Checkout, PoolError> {
        // Fast path, taken whenever the pool is not exhausted: no timer.
        let permit = match self.gate.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.wait.observe(0.0);
                permit
            }
            Err(_) => Box::pin(self.wait_for_turn()).await?,
        };
        self.checkout_inner(permit).await
    }

    async fn wait_for_turn(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        let timeout = self.settings.pool_timeout();
        let started = Instant::now();
        // Counted before parked connections are called back: a client that
        // parks one after this sees the count (`wants_back`), one that parked
        // before is counted in `parked` and woken. (Both sides write, then
        // read the other's count, SeqCst: one of them sees the other.)
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) > 0 {
            self.recall.call();
        }
        let waited = tokio::time::timeout(timeout, self.gate.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.metrics.wait.observe(started.elapsed().as_secs_f64());
        match waited {
            Ok(permit) => permit.map_err(|_| PoolError::Closed),
            Err(_) => {
                self.metrics.timeouts.inc();
                tracing::warn!(pool = %self.name, waited_seconds = timeout.as_secs_f64(),
                    "a client gave up waiting for a connection (pool_timeout)");
                Err(PoolError::Timeout {
                    pool: self.name.clone(),
                    waited: timeout,
                })
            }
        }
    }

    async fn checkout_inner(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Checkout, PoolError> {
        // Each dead connection found is dropped, so this ends.
        for _ in 0..=self.settings.max_size() {
            let mut conn = self.next_connection().await?;
            if conn.is_alive() {
                self.in_use.fetch_add(1, Ordering::Relaxed);
                return Ok(Checkout {
                    role: self.server.role(),
                    detour: None,
                    conn,
                    _permit: permit,
                    pool: self.clone(),
                    parked: None,
                });
            }
            tracing::info!(pool = %self.name, "server closed an idle connection: replacing it");
            conn.broken = true;
        }
        Err(self.failure(Some(Arc::new(ServerError::Closed))))
    }

    /// bb8's next connection; fails at once when opening one fails.
    async fn next_connection(
        &self,
    ) -> Result<bb8::PooledConnection<'static, ServerManager>, PoolError> {
        let failed_before = self.failure_count.load(Ordering::Acquire);
        let get = self.pool.get_owned();
        tokio::pin!(get);
        // Usually an idle connection is there: take it without touching the
        // failure watch, whose receiver count all threads would contend on.
        if let std::task::Poll::Ready(got) = futures::poll!(&mut get) {
            return got.map_err(|e| self.run_error(e));
        }
        // bb8 is opening a connection for us in another task. A refused
        // connection fails within microseconds, maybe before we subscribe:
        // the count tells, else the client would wait out pool_timeout.
        let mut failures = self.failures.subscribe();
        if self.failure_count.load(Ordering::Acquire) != failed_before {
            return Err(self.failure(failures.borrow().clone()));
        }
        tokio::select! {
            biased;
            got = &mut get => got.map_err(|e| self.run_error(e)),
            Ok(()) = failures.changed() => Err(self.failure(failures.borrow().clone())),
        }
    }

    fn run_error(&self, e: bb8::RunError<ServerError>) -> PoolError {
        match e {
            bb8::RunError::User(source) => self.failure(Some(Arc::new(source))),
            bb8::RunError::TimedOut => PoolError::Timeout {
                pool: self.name.clone(),
                waited: self.settings.pool_timeout(),
            },
        }
    }

    fn failure(&self, source: Option<Arc<ServerError>>) -> PoolError {
        PoolError::Server {
            pool: self.name.clone(),
            source: source.unwrap_or_else(|| Arc::new(ServerError::Closed)),
        }
    }

    /// What backend `pid` of this pool's server is doing (pg_stat_activity's
    /// `state`; `None`: no such backend), asked on a connection of its own
    /// so that an exhausted pool does not keep the question waiting.
    pub async fn backend_state(&self, pid: i32) -> Result<Option<String>, ServerError> {
        let mut conn = ServerConnection::connect(&self.target).await?;
        let rows = conn
            .simple_query(&format!(
                "SELECT state FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// Whether this pool serves `server` with the same login and settings
    /// (a reload may then keep it).
    pub fn is_like(
        &self,
        server: &Arc<ServerState>,
        target: &LoginTarget,
        settings: &PoolSettings,
    ) -> bool {
        Arc::ptr_eq(&self.server, server) && self.target == *target && self.settings == *settings
    }

    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Whether a client waits for a connection: parked ones must come back.
    pub fn wants_back(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Whether a connection checked out now may be parked: no client waits,
    /// and parked and used ones stay within `pool_size`, so that parking
    /// does not make clients open overflow connections while others idle.
    pub fn may_park(&self) -> bool {
        let held = self.in_use() + self.parked.load(Ordering::Relaxed);
        !self.wants_back() && held <= self.settings.pool_size as usize
    }

    #[cfg(test)]
    pub(super) fn set_in_use(&self, n: usize) {
        self.in_use.store(n, Ordering::Relaxed);
    }

    pub fn params(&self) -> Option<&Vec<(String, String)>> {
        self.params.get()
    }

    /// Whether its server may get reads now: it serves them (up, in
    /// recovery, not lagging) and is not banned.
    pub fn takes_reads(&self) -> bool {
        self.server.serves_reads() && !self.is_banned()
    }

    /// Whether its server has replayed `required` (`None`: not known yet).
    pub fn has_replayed(&self, required: Option<Lsn>) -> bool {
        required.is_some_and(|lsn| self.server.has_replayed(lsn))
    }

    pub fn is_banned(&self) -> bool {
        let until = self.banned_until_ms.load(Ordering::Relaxed);
        until != 0 && (self.epoch.elapsed().as_millis() as u64) < until
    }

    /// Keeps new clients away for `for_how_long`.
    pub fn ban(&self, for_how_long: Duration) {
        self.bans.fetch_add(1, Ordering::Relaxed);
        let until = self.epoch.elapsed() + for_how_long;
        self.banned_until_ms
            .store(until.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }

    /// The pool as the metrics, /status and SHOW POOLS show it.
    pub fn sample(&self) -> PoolSample {
        let state = self.pool.state();
        let checked_out = self.in_use() as u32;
        let size = self.settings.pool_size;
        PoolSample {
            server: self.addr.to_string(),
            role: self.server.configured.as_str().to_string(),
            database: self.database.clone(),
            user: self.user.clone(),
            size,
            checked_in: state.idle_connections,
            checked_out,
            parked: self.parked.load(Ordering::Relaxed) as u32,
            overflow: state.connections.saturating_sub(size),
            max_overflow: self.settings.max_overflow,
            opening: self.opening.load(Ordering::Relaxed) as u32,
            waiting: self.waiting.load(Ordering::Relaxed) as u32,
            healthy: self.server.is_up()
                && (self.server.is_writer() || self.server.serves_reads())
                && !self.is_banned(),
        }
    }
}

/// How often parked connections go back to their pool, so that its limits
/// (`idle_timeout`, `pool_recycle`, overflow closing) reach them too; an
/// active client parks its connection again at its next transaction.
const PARK_SWEEP: Duration = Duration::from_secs(1);

/// Sends parked connections back every `PARK_SWEEP`, until the pool is gone.
async fn sweep_parked(pool: Weak<ServerPool>) {
    let mut tick = tokio::time::interval(PARK_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if pool.parked.load(Ordering::Relaxed) > 0 {
            pool.recall.call();
        }
    }
}

/// A checked-out server connection; dropping it returns it to the pool
/// (or closes it if it is marked broken or not clean).
pub struct Checkout {
    /// The server's role when it was checked out.
    pub role: Role,
    /// A read that landed on the primary (or, the primary being down, a
    /// write's fallback to a replica): why.
    pub detour: Option<RouteLabel>,
    conn: bb8::PooledConnection<'static, ServerManager>,
    _permit: OwnedSemaphorePermit,
    pool: Arc<ServerPool>,
    /// Kept by an idle client (counted as parked, not in use).
    parked: Option<Parked>,
}

impl Checkout {
    pub fn pool(&self) -> &Arc<ServerPool> {
        &self.pool
    }

    /// Its client is idle but keeps it, until another client needs it.
    pub fn park(&mut self) {
        if self.parked.is_none() {
            self.pool.in_use.fetch_sub(1, Ordering::Relaxed);
            // SeqCst: see `wait_for_turn`.
            self.pool.parked.fetch_add(1, Ordering::SeqCst);
            self.parked = Some(self.pool.recall.parked());
        }
    }

    /// Whether the pool wants this parked connection back: a client waits
    /// for one (also one that began waiting before it was parked), or the
    /// sweep called. A later call wakes `waker`, through the session's
    /// `tickets`.
    pub fn recalled(&self, tickets: &mut Vec<RecallTicket>, waker: &std::task::Waker) -> bool {
        let Some(parked) = self.parked.as_ref() else {
            return false;
        };
        RecallTicket::flag(tickets, &self.pool, waker);
        self.pool.recall.called(parked) || self.pool.wants_back()
    }

    /// In use again by the client that parked it.
    pub fn unpark(&mut self, tickets: &[RecallTicket]) {
        if self.parked.take().is_some() {
            RecallTicket::unflag(tickets, &self.pool);
            self.pool.parked.fetch_sub(1, Ordering::Relaxed);
            self.pool.in_use.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let count = match self.parked {
            Some(_) => &self.pool.parked,
            None => &self.pool.in_use,
        };
        count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Deref for Checkout {
    type Target = ServerConnection;
    fn deref(&self) -> &ServerConnection {
        &self.conn
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut ServerConnection {
        &mut self.conn
    }
}

/// bb8 reports background connection failures (keeping `pool_size` open,
/// opening one for a waiting client) here: a log line, and a signal to the
/// clients waiting in `checkout`.
#[derive(Debug, Clone)]
struct FailureSink {
    pool: String,
    failures: Arc<watch::Sender<Option<Arc<ServerError>>>>,
    count: Arc<AtomicU64>,
}

impl bb8::ErrorSink<ServerError> for FailureSink {
    fn sink(&self, error: ServerError) {
        if let ServerError::Stale(_) = error {
            // A pre-ping failure: bb8 drops it and tries another connection.
            tracing::info!(pool = %self.pool, %error, "dropping a server connection");
            return;
        }
        tracing::warn!(pool = %self.pool, %error, "could not open a server connection");
        // Counted first: a checkout that sees the count unchanged after
        // subscribing is sure to see the send.
        self.count.fetch_add(1, Ordering::Release);
        self.failures.send_replace(Some(Arc::new(error)));
    }
    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<ServerError>> {
        Box::new(self.clone())
    }
}
