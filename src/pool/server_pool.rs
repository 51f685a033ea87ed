//! The pool of one server, database and user: bb8 behind a fair queue,
//! plus the counters replica selection and bans read.

use super::limits::PoolLimits;
use super::manager::{Opens, ServerManager};
use super::recall::{Parked, Recall, RecallTicket};
use super::registry::{Registry, ServerEntry, Use};
use super::waiters::Waiters;
use super::PoolError;
use crate::config::PoolSettings;
use crate::health::lsn::Lsn;
use crate::health::ServerState;
use crate::metrics::{PoolHandles, PoolSample};
use crate::role::Role;
use crate::router::decision::Detour;
use crate::server::{LoginTarget, ServerConnection, ServerError};
use arc_swap::ArcSwap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// The connections. Swapped for an empty pool to close every idle one
    /// at once (`swap_out_connections`): bb8 has no call for that, and
    /// taking them out one by one races with clients, whose checkouts
    /// would then open new ones.
    pool: ArcSwap<bb8::Pool<ServerManager>>,
    /// What a new bb8 pool is built from.
    manager: ServerManager,
    sink: FailureSink,
    /// bb8 does not serve waiters first come, first served (bb8 issue 243);
    /// tokio's semaphore does, so a client waits here for a permit and only
    /// then asks bb8, which then always has a connection or room for one.
    gate: Arc<Semaphore>,
    settings: PoolSettings,
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
    /// Since when they wait.
    waiters: Waiters,
    /// Connections parked with the idle client that used them last.
    parked: AtomicUsize,
    /// Tells those clients to give their parked connections back: a
    /// client is waiting for one, or the sweep runs.
    /// In an `Arc` that only the pool holds: sessions' tickets hold it
    /// weakly (`RecallTicket`).
    recall: Arc<Recall>,
    /// Connections being opened, refusals in a row, whether a login
    /// succeeded (shared with the manager).
    opens: Arc<Opens>,
    /// `pool_size` connections were opened once (`warm`), or must not be
    /// (closed for a database command).
    warmed: AtomicBool,
    /// Times this pool's server was banned.
    pub bans: AtomicU64,
    metrics: PoolHandles,
    /// `max_db_connections` and `max_user_connections` of its server,
    /// database and user (shared with its manager).
    limits: PoolLimits,
}

impl ServerPool {
    pub fn new(
        server: Arc<ServerState>,
        target: LoginTarget,
        settings: &PoolSettings,
        metrics: PoolHandles,
        limits: PoolLimits,
        registry: Arc<Registry>,
    ) -> Arc<ServerPool> {
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
        let opens = Arc::new(Opens::default());
        let sink = FailureSink {
            pool: name.clone(),
            failures: failures.clone(),
            count: failure_count.clone(),
        };
        let pool = Arc::new_cyclic(|me| {
            let manager = ServerManager {
                target: target.clone(),
                params: Arc::new(OnceLock::new()),
                opens: opens.clone(),
                metrics: metrics.clone(),
                limits: limits.clone(),
                pool: me.clone(),
                registry,
                role: server.configured,
            };
            ServerPool {
                name,
                server,
                addr,
                database,
                user,
                target,
                pool: ArcSwap::from_pointee(build(settings, &manager, &sink)),
                manager,
                sink,
                gate: Arc::new(Semaphore::new(settings.max_size() as usize)),
                settings: settings.clone(),
                failures,
                failure_count,
                in_use: AtomicUsize::new(0),
                banned_until_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                waiting: AtomicUsize::new(0),
                waiters: Waiters::default(),
                parked: AtomicUsize::new(0),
                recall: Arc::default(),
                opens,
                warmed: AtomicBool::new(false),
                bans: AtomicU64::new(0),
                metrics,
                limits,
            }
        });
        pool.limits.cover(&pool);
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
        let _waiting = self.waiters.wait(started);
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
                if !self.warmed.load(Ordering::Relaxed) && self.server.configured == Role::Primary {
                    // The database exists: the rest of `pool_size` now.
                    self.warm();
                }
                conn.2.entry.checked_out();
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
        // A guard, not a clone: no write to a count all threads share.
        let pool = self.pool.load();
        let get = pool.get_owned();
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
            bb8::RunError::TimedOut => match self.limits.blocked() {
                Some(limit) => {
                    self.metrics.limited[limit.kind as usize].inc();
                    tracing::warn!(pool = %self.name, limit = limit.kind.key(), max = limit.max,
                        what = %limit.what, waited_seconds = self.settings.pool_timeout,
                        "a client gave up waiting for a server connection: the limit is reached");
                    PoolError::Limit {
                        pool: self.name.clone(),
                        waited: self.settings.pool_timeout(),
                        limit: limit.kind.key(),
                        max: limit.max,
                        what: limit.what.clone(),
                    }
                }
                None => PoolError::Timeout {
                    pool: self.name.clone(),
                    waited: self.settings.pool_timeout(),
                },
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
        self.manager.params.get()
    }

    /// Whether its server may get reads now: it serves them (up, in
    /// recovery, not lagging), is not banned or backing off, and is not
    /// trying its first login (see `is_trying_login`).
    pub fn takes_reads(&self) -> bool {
        self.server.serves_reads() && !self.is_banned() && !self.is_trying_login()
    }

    /// A login that may be refused is in flight: the pool has not opened
    /// a connection yet (or was refused, or closed for a database
    /// command since). Reads that come meanwhile go elsewhere, rather than
    /// each sending a login of its own that a replica which has not
    /// replayed `CREATE DATABASE` yet refuses. Once one login succeeded,
    /// one load.
    fn is_trying_login(&self) -> bool {
        !self.opens.proven.load(Ordering::Relaxed) && self.opens.now.load(Ordering::Relaxed) > 0
    }

    /// Whether its server takes reads but for its first login, in flight.
    pub fn first_login_in_flight(&self) -> bool {
        self.server.serves_reads() && !self.is_banned() && self.is_trying_login()
    }

    /// Waits, until `deadline` at most, for the login in flight to end.
    pub async fn first_login_settled(&self, deadline: Instant) {
        let settled = self.opens.settled.notified();
        tokio::pin!(settled);
        // Registered before looking, so that an end in between is seen.
        settled.as_mut().enable();
        if self.is_trying_login() {
            let _ = tokio::time::timeout_at(deadline.into(), settled).await;
        }
    }

    /// Whether its server has replayed `required` (`None`: not known yet).
    pub fn has_replayed(&self, required: Option<Lsn>) -> bool {
        required.is_some_and(|lsn| self.server.has_replayed(lsn))
    }

    pub fn is_banned(&self) -> bool {
        let until = self.banned_until_ms.load(Ordering::Relaxed);
        until != 0 && (self.epoch.elapsed().as_millis() as u64) < until
    }

    /// After a refused login: keeps new clients away for a back-off that
    /// starts at `BACK_OFF_FIRST` and doubles with each refusal in a row,
    /// up to `longest`; a successful login starts it afresh. Refusals
    /// while backing off (logins that were already in flight) do not
    /// lengthen it. Returns the back-off begun, if one was.
    pub fn back_off(&self, longest: Duration) -> Option<Duration> {
        self.opens.proven.store(false, Ordering::Relaxed);
        if self.is_banned() {
            return None;
        }
        let refusals = self.opens.refusals.fetch_add(1, Ordering::Relaxed);
        let back_off = back_off(refusals, longest);
        self.ban(back_off);
        Some(back_off)
    }

    /// Keeps new clients away for `for_how_long`.
    pub fn ban(&self, for_how_long: Duration) {
        self.bans.fetch_add(1, Ordering::Relaxed);
        let until = self.epoch.elapsed() + for_how_long;
        self.banned_until_ms
            .store(until.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Connections parked with idle clients now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// Closes one idle connection, if the pool has one, to make room under
    /// a connection limit it shares (`limits`); whether it did. Takes one
    /// only if bb8 hands it over at once: with none idle, asking would
    /// have bb8 open one.
    pub(super) fn close_one_idle(&self) -> bool {
        use futures::FutureExt;
        let pool = self.pool.load_full();
        if pool.state().idle_connections == 0 {
            return false;
        }
        let closed = match pool.get().now_or_never() {
            Some(Ok(mut conn)) => {
                conn.retire();
                true
            }
            _ => false,
        };
        closed
    }

    /// Asks the idle clients holding parked connections to give them back.
    pub(super) fn call_back_parked(&self) {
        if self.parked() > 0 {
            self.recall.call();
        }
    }

    /// Opens connections up to `pool_size`, in the background, once in
    /// the pool's life: the first alone, the rest together once it
    /// succeeded, so a refused login (unknown database) is tried once.
    /// Connections closed later are not replaced: clients open them again
    /// as they need them.
    pub fn warm(self: &Arc<Self>) {
        if self.warmed.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The pool of now: after `swap_out_connections` these go to the
        // old one and close with it.
        let pool = self.pool.load_full();
        // Not past max_db_connections or max_user_connections: warming
        // up never waits for room.
        let want = self
            .settings
            .pool_size
            .saturating_sub(pool.state().connections)
            .min(self.limits.room().try_into().unwrap_or(u32::MAX));
        let name = self.name.clone();
        runtime.spawn(async move {
            if want == 0 || !open_into(&pool, &name).await {
                return;
            }
            futures::future::join_all((1..want).map(|_| open_into(&pool, &name))).await;
        });
    }

    /// Closes every idle connection: the pool starts afresh with none,
    /// and the old one, returned, closes those that were idle when it is
    /// dropped. Connections checked out (parked ones too, which are called
    /// back now) go back to the old pool and close when the last of them
    /// is back. No connection is opened in their place: clients open
    /// them as they need them, and a replica's first login is tried alone
    /// again (the database may be gone or renamed).
    pub(super) fn swap_out_connections(&self) -> SwappedOut {
        self.warmed.store(true, Ordering::Relaxed);
        self.opens.proven.store(false, Ordering::Relaxed);
        let fresh = build(&self.settings, &self.manager, &self.sink);
        let old = self.pool.swap(Arc::new(fresh));
        if self.parked() > 0 {
            self.recall.call();
        }
        SwappedOut(old)
    }

    pub fn state(&self) -> bb8::State {
        self.pool.load().state()
    }

    /// The pool as the metrics, /status and SHOW POOLS show it.
    /// The pool's metric handles, resolved when it was made.
    pub fn metrics(&self) -> &PoolHandles {
        &self.metrics
    }

    pub fn sample(&self) -> PoolSample {
        let state = self.state();
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
            opening: self.opens.now.load(Ordering::Relaxed) as u32,
            waiting: self.waiting.load(Ordering::Relaxed) as u32,
            max_wait_seconds: self.waiters.longest(Instant::now()).as_secs_f64(),
            healthy: self.server.is_up()
                && (self.server.is_writer() || self.server.serves_reads())
                && !self.is_banned(),
        }
    }
}

/// The bb8 pool of a server pool. No `min_idle`: bb8 would open
/// connections the moment a pool is made and replace every one that
/// closes, including those closed on purpose (`swap_out_connections`), and
/// every checkout of a replica that refuses the login (it has not replayed
/// `CREATE DATABASE` yet) would send it `pool_size` logins. Pools warm up
/// once instead (`warm`).
fn build(
    settings: &PoolSettings,
    manager: &ServerManager,
    sink: &FailureSink,
) -> bb8::Pool<ServerManager> {
    bb8::Pool::builder()
        .max_size(settings.max_size())
        .min_idle(None)
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
        .error_sink(Box::new(sink.clone()))
        .build_unchecked(manager.clone())
}

/// Opens one connection into `pool` (warming it up); whether it could.
async fn open_into(pool: &bb8::Pool<ServerManager>, name: &str) -> bool {
    match pool.dedicated_connection().await {
        // At capacity (clients opened the rest meanwhile): dropped.
        Ok(conn) => {
            let _ = pool.add(conn);
            true
        }
        Err(error) => {
            tracing::warn!(pool = %name, %error, "could not open a server connection (warming up)");
            false
        }
    }
}

/// The first back-off of a replica pool whose login was refused.
const BACK_OFF_FIRST: Duration = Duration::from_millis(100);

/// The back-off after `refusals` earlier refusals in a row: 100 ms,
/// doubled for each, at most `longest` (and never under the first).
fn back_off(refusals: u32, longest: Duration) -> Duration {
    let factor = 1u32.checked_shl(refusals.min(31)).unwrap_or(u32::MAX);
    BACK_OFF_FIRST
        .saturating_mul(factor)
        .min(longest.max(BACK_OFF_FIRST))
}

/// A server pool's connections after `swap_out_connections`: dropping it
/// closes the idle ones (the rest as they come back).
pub(super) struct SwappedOut(Arc<bb8::Pool<ServerManager>>);

impl SwappedOut {
    /// Idle now: closed when this is dropped.
    pub(super) fn idle(&self) -> u32 {
        self.0.state().idle_connections
    }

    /// Still checked out by clients: closed as they come back.
    pub(super) fn in_use(&self) -> u32 {
        let state = self.0.state();
        state.connections.saturating_sub(state.idle_connections)
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
    pub detour: Option<Detour>,
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
            self.entry().set_state(Use::Parked);
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
        RecallTicket::flag(tickets, &self.pool.recall, waker);
        self.pool.recall.called(parked) || self.pool.wants_back()
    }

    /// In use again by the client that parked it.
    pub fn unpark(&mut self, tickets: &[RecallTicket]) {
        if self.parked.take().is_some() {
            RecallTicket::unflag(tickets, &self.pool.recall);
            self.pool.parked.fetch_sub(1, Ordering::Relaxed);
            self.pool.in_use.fetch_add(1, Ordering::Relaxed);
            self.entry().set_state(Use::Active);
        }
    }

    /// Its entry in the list of open connections (SHOW SERVERS).
    pub fn entry(&self) -> &ServerEntry {
        &self.conn.2.entry
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let count = match self.parked {
            Some(_) => &self.pool.parked,
            None => &self.pool.in_use,
        };
        count.fetch_sub(1, Ordering::Relaxed);
        self.entry().set_state(Use::Idle);
        // RECONNECT (or a reload) asked for it to close once released:
        // the client that held it is done with it now.
        if self.entry().close_needed() {
            if self.conn.is_clean() {
                self.conn.retire();
            } else {
                self.conn.broken = true;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::super::Pools;
    use super::*;
    use crate::config::Config;
    use crate::health::Topology;

    #[test]
    fn back_off_doubles_from_100_ms_up_to_the_longest() {
        let five = Duration::from_secs(5);
        let got: Vec<u128> = (0..8).map(|n| back_off(n, five).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(back_off(u32::MAX, five), five);
        assert_eq!(back_off(0, Duration::ZERO), BACK_OFF_FIRST);
    }

    fn replica() -> Arc<ServerPool> {
        let config = Arc::new(Config {
            primary: Some("p:1".into()),
            replicas: vec!["r:1".into()],
            ..Config::default()
        });
        let topology = Topology::new(&config);
        let pools = Pools::new(
            config.clone(),
            topology,
            Default::default(),
            Default::default(),
            None,
            Default::default(),
        );
        pools.get("d", "u").servers[1].clone()
    }

    #[tokio::test]
    async fn a_refused_replica_backs_off_longer_each_round_until_a_login_succeeds() {
        let pool = replica();
        let longest = Duration::from_secs(5);
        assert_eq!(pool.back_off(longest), Some(BACK_OFF_FIRST));
        assert!(pool.is_banned());
        // Logins that were in flight when the first was refused: no longer.
        assert_eq!(pool.back_off(longest), None);
        pool.banned_until_ms.store(0, Ordering::Relaxed); // time passed
        assert_eq!(pool.back_off(longest), Some(2 * BACK_OFF_FIRST));
        pool.banned_until_ms.store(0, Ordering::Relaxed);
        // A login succeeded (the manager resets the count).
        pool.opens.refusals.store(0, Ordering::Relaxed);
        assert_eq!(pool.back_off(longest), Some(BACK_OFF_FIRST));
        assert_eq!(pool.bans.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn until_a_login_succeeds_reads_do_not_pile_logins_on_a_replica() {
        let pool = replica();
        pool.opens.now.store(1, Ordering::Relaxed);
        assert!(pool.is_trying_login(), "the first login is in flight");
        pool.opens.proven.store(true, Ordering::Relaxed);
        assert!(!pool.is_trying_login(), "proven: any number may open");
        // Refused, or closed for DROP DATABASE: one at a time again.
        pool.back_off(Duration::from_secs(5));
        assert!(pool.is_trying_login());
        pool.opens.proven.store(true, Ordering::Relaxed);
        drop(pool.swap_out_connections());
        assert!(pool.is_trying_login());
        pool.opens.now.store(0, Ordering::Relaxed);
        assert!(
            !pool.is_trying_login(),
            "nothing in flight: the next read tries"
        );
    }
}
