//! Getting a server connection for a request: the one held (inside a
//! transaction or a flushed batch, or a pinned client's primary), session
//! pooling's spare of the other role, or a new checkout from the pools,
//! with the client's settings in force and its cancel key pointed at it.

use super::connections::{plan, InUse, Plan};
use super::Session;
use crate::app::clients::ClientState;
use crate::pool::{is_login_refusal, Checkout, PoolError};
use crate::protocol::error::sqlstate;
use crate::protocol::PgError;
use crate::role::Role;
use crate::router::Destination;
use crate::server::ServerError;

pub(super) enum Acquired {
    Ready,
    Wait,
    Failed(PgError),
}

impl Session {
    /// Makes `self.held.server` a connection that may run a request for
    /// `want` (`None`: whatever is in use, else the primary).
    pub(super) async fn acquire(&mut self, want: Option<Destination>) -> Acquired {
        if self.pins.is_pinned() && self.holds_pinned_server() {
            return Acquired::Ready;
        }
        // A pinned client's first connection is the primary's: its
        // session state must be where its writes go.
        let want = match self.pins.get() {
            Some(_) => Some(Destination::Primary),
            // A standby refuses serializable transactions.
            None if self.primary_only() => want.map(|_| Destination::Primary),
            None => want,
        };
        let in_use = self.held.server.as_ref().map(|conn| InUse {
            role: conn.role,
            fixed: self.exchange.in_transaction() || self.batch.open,
            answering: self.exchange.answering(),
        });
        let spare = self.held.spare.as_ref().map(|s| s.role);
        let cluster = &self.cluster;
        match plan(in_use, want, spare, || cluster.has_usable_replica()) {
            Plan::Keep => return Acquired::Ready,
            Plan::Wait => return Acquired::Wait,
            Plan::Swap => {
                std::mem::swap(&mut self.held.server, &mut self.held.spare);
                self.point_cancel();
                return Acquired::Ready;
            }
            Plan::Fresh => {
                if self.held.server.is_some() {
                    self.held.spare = self.held.server.take();
                }
            }
        }
        self.client.set_state(ClientState::Waiting);
        if self.app.is_paused_for(&self.client.database) {
            // PAUSE: new transactions wait here for RESUME.
            self.held.parked = None;
            let wait = self.cancel.wait_begins();
            Box::pin(self.app.wait_resumed(&self.client)).await;
            let cancelled = self.cancel.wait_ends(wait);
            if self.client.is_killed() {
                self.client.set_state(ClientState::Idle);
                return Acquired::Failed(killed());
            }
            if cancelled {
                return self.cancelled_while_waiting(None);
            }
        }
        self.follow_reload();
        if let Some(conn) = self.take_parked(want) {
            if self.app.cancels.any_in_flight() {
                Box::pin(self.app.cancels.landed(&conn.addr, conn.backend_pid)).await;
            }
            self.held.server = Some(conn);
            self.point_cancel();
            return Acquired::Ready;
        }
        let wait = self.cancel.wait_begins();
        let checkout = self.checkout(want, wait).await;
        if let Ok(conn) = &checkout {
            if self.app.cancels.any_in_flight() {
                Box::pin(self.app.cancels.landed(&conn.addr, conn.backend_pid)).await;
            }
        }
        // Still waiting until here: a cancel that comes before the slot
        // points at the connection is remembered, not lost.
        if self.cancel.wait_ends(wait) {
            return self.cancelled_while_waiting(checkout.ok());
        }
        match checkout {
            Ok(conn) => {
                self.held.server = Some(conn);
                self.point_cancel();
                Acquired::Ready
            }
            Err(error) => {
                self.client.set_state(ClientState::Idle);
                Acquired::Failed(error)
            }
        }
    }

    /// The client cancelled its statement while it waited for a server
    /// connection: it is not sent, and the client gets what PostgreSQL
    /// answers a statement cancelled as it starts. The connection, if one
    /// came, goes back to its pool unused.
    fn cancelled_while_waiting(&mut self, conn: Option<Checkout>) -> Acquired {
        drop(conn);
        self.client.set_state(ClientState::Idle);
        tracing::info!(
            client = self.client.id,
            "statement cancelled while it waited for a server connection: not sent"
        );
        Acquired::Failed(cancelled())
    }

    /// A pinned client's session state lives on the primary connection it
    /// holds. A replica connection it holds (session pooling keeps the one
    /// its earlier reads used; a pin taken inside a read-only transaction
    /// on a replica) is kept only until its transaction ends: the pin's
    /// statements, and every later one, must not run where writes fail.
    fn holds_pinned_server(&self) -> bool {
        self.held.server.as_ref().is_some_and(|conn| {
            conn.role == Role::Primary || self.exchange.in_transaction() || self.batch.open
        })
    }

    /// After a reload, the next checkout comes from the new generation's
    /// pools. A connection still held (a pinned client's, or the spare one
    /// in session pooling) stays with its old pool until released.
    fn follow_reload(&mut self) {
        if self.app.generation() == self.current.generation {
            return;
        }
        self.current = self.app.current();
        self.held.parked = None;
        self.recall_tickets.clear();
        self.cluster = self
            .current
            .pools
            .get(&self.client.database, &self.client.user);
    }

    /// A new connection for `want`, with the client's settings in force. A
    /// replica whose connection fails while they are applied (it just went
    /// away) is banned and another server is tried.
    /// A cancel during the wait numbered `wait` (`CancelSlot::wait_begins`)
    /// ends the wait for the pool at once (dropping a pool checkout in
    /// flight is safe; applying the settings is not cut short).
    async fn checkout(
        &mut self,
        want: Option<Destination>,
        wait: u64,
    ) -> Result<Checkout, PgError> {
        let slot = self.cancel.clone();
        for _ in 0..=self.cluster.servers.len() {
            let pooled = async {
                match want {
                    Some(Destination::Replica) => {
                        let floor = self.min_lsn();
                        self.cluster
                            .checkout_read_after(&mut self.need, floor)
                            .await
                    }
                    _ => self.cluster.checkout_primary().await,
                }
            };
            let mut conn = tokio::select! {
                biased;
                pooled = pooled => pooled.map_err(|e| pool_error(&e))?,
                () = slot.cancelled_during(wait) => return Err(cancelled()),
            };
            if conn.settings == self.settings.fingerprint {
                return Ok(conn);
            }
            match Box::pin(self.settings.apply(&mut conn)).await {
                Ok(()) => return Ok(conn),
                Err(e) if is_login_refusal(&e) => return Err(e.to_client_error(false)),
                Err(e) if conn.role == Role::Replica => {
                    tracing::warn!(pool = %conn.pool().name, error = %e, "replica connection failed: banned, reads go elsewhere");
                    conn.pool().ban(self.current.config.replica_ban_time());
                }
                // The primary refused a setting: the client is told.
                Err(e @ ServerError::Refused { .. }) => return Err(e.to_client_error(false)),
                Err(e) => {
                    // A pooled primary connection that died: the primary
                    // may be gone (fencing, as for a lost connection).
                    // Nothing of the client's ran on it: the next turn
                    // takes another (a fresh one, waiting for a confirmed
                    // primary if this one was lost in a failover).
                    tracing::info!(pool = %conn.pool().name, error = %e,
                        "a pooled primary connection failed before the client's statement: trying another");
                    conn.broken = true;
                    if self
                        .cluster
                        .primary_connection_failed(conn.pool(), "a primary connection failed")
                    {
                        self.app.metrics.primary_recheck();
                    }
                }
            }
        }
        Err(PgError::error(
            sqlstate::CONNECTION_FAILURE,
            "pgsplit: no server connection could be opened",
        ))
    }

    /// The position the client's reads must see besides its own writes:
    /// consistency tokens (`pgsplit.min_lsn`, and the statement's hint).
    pub(super) fn min_lsn(&self) -> crate::health::lsn::Lsn {
        self.settings.min_lsn.max(self.statement_min_lsn)
    }

    fn point_cancel(&self) {
        match self.held.server.as_deref() {
            Some(c) => self.cancel.point(&c.addr, c.backend_pid, c.backend_secret),
            None => self.cancel.clear(),
        }
        if let Some(conn) = &self.held.server {
            conn.entry().link(self.client.id);
        }
    }
}

/// What a client killed from the admin console (KILL_CLIENT, KILL) is
/// told: PgBouncer's words, with PostgreSQL's SQLSTATE for a session an
/// administrator ended (pg_terminate_backend), which drivers treat as a
/// lost connection.
/// What PostgreSQL answers a statement cancelled as it starts.
fn cancelled() -> PgError {
    PgError::error(
        sqlstate::QUERY_CANCELED,
        "canceling statement due to user request",
    )
}

pub(super) fn killed() -> PgError {
    PgError::fatal(sqlstate::ADMIN_SHUTDOWN, "admin forced disconnect")
}

/// The error a client sees when no server connection could be had.
pub(in crate::client) fn pool_error(e: &PoolError) -> PgError {
    match e {
        PoolError::NoPrimary | PoolError::SplitBrain | PoolError::PrimaryUnavailable { .. } => {
            PgError::error(
                sqlstate::CANNOT_CONNECT_NOW,
                format!("pgsplit: {e}; writes and transactions cannot run until it is back"),
            )
        }
        PoolError::Timeout { .. } | PoolError::Limit { .. } => {
            PgError::error(sqlstate::TOO_MANY_CONNECTIONS, format!("pgsplit: {e}"))
        }
        PoolError::Server { source, .. } => match &**source {
            ServerError::Refused { code, message, .. } => PgError::error(code, message.clone()),
            ServerError::OutOfFiles(_) => {
                PgError::error(sqlstate::TOO_MANY_CONNECTIONS, format!("pgsplit: {e}"))
            }
            _ => PgError::error(sqlstate::CONNECTION_FAILURE, format!("pgsplit: {e}")),
        },
        _ => PgError::error(sqlstate::CONNECTION_FAILURE, format!("pgsplit: {e}")),
    }
}
