//! When things end: a read that failed on a replica is run again
//! elsewhere, a lost server connection is reported, and a departing
//! client's connections go back to their pools clean or are closed.

use super::Session;
use crate::app::Stop;
use crate::client::io::ClientError;
use crate::config::PoolMode;
use crate::metrics::ErrorSide;
use crate::pool::Checkout;
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, status, tag, PgError};
use crate::router::decision::{Decision, Place, Why};
use crate::router::{Destination, Pin};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long pgsplit waits for ROLLBACK on a transaction a client left open.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Session {
    /// pgsplit is shutting down and this client is between transactions
    /// (or `shutdown_timeout` has passed).
    pub(super) fn must_leave(&self) -> bool {
        match self.stop {
            Stop::Running => false,
            Stop::Draining => {
                !self.exchange.busy()
                    && self.paused.is_none()
                    && self.lazy.is_none()
                    && !self.exchange.in_transaction()
                    && !self.batch.open
                    && self.batch.is_empty()
                    && self.deferred.is_none()
            }
            Stop::Now => true,
        }
    }

    /// Tells the client, as PostgreSQL does on a fast shutdown, and ends
    /// the session (its server connections are cleaned up by `run`).
    pub(super) async fn tell_shutdown(&mut self) -> Result<(), ClientError> {
        tracing::info!("telling the client pgsplit is shutting down");
        self.app
            .metrics
            .error(ErrorSide::Pgsplit, sqlstate::ADMIN_SHUTDOWN);
        self.io
            .send_error(&PgError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because pgsplit is shutting down",
            ))
            .await;
        self.io.linger().await;
        Ok(())
    }

    /// The admin console killed this client (KILL_CLIENT, KILL): it is
    /// told, and the session ends, its server connections cleaned up by
    /// `run` (a transaction in progress is rolled back or its connection
    /// closed).
    pub(super) async fn tell_killed(&mut self) -> Result<(), ClientError> {
        tracing::info!(
            client = self.client.id,
            "admin console killed the client: disconnecting it"
        );
        self.app
            .metrics
            .error(ErrorSide::Pgsplit, sqlstate::ADMIN_SHUTDOWN);
        self.io.send_error(&super::acquire::killed()).await;
        self.io.linger().await;
        Ok(())
    }

    /// The read kept in `retry` failed on its replica (`code`: the
    /// server's SQLSTATE; `None`: the connection broke): run it once more,
    /// on another replica or the primary.
    pub(super) async fn retry_elsewhere(
        &mut self,
        code: Option<String>,
    ) -> Result<(), ClientError> {
        let mut retry = std::mem::take(&mut self.retry);
        let conflict = matches!(code.as_deref(), Some("40001" | "40P01"));
        if let Some(mut conn) = self.held.server.take() {
            conn.broken = true;
            let pool = conn.pool().clone();
            drop(conn);
            // A recovery conflict is about this statement on this replica;
            // a shutdown or a broken connection is about the server.
            if !conflict {
                pool.ban(self.current.config.replica_ban_time());
            }
            tracing::warn!(pool = %pool.name, reason = code.as_deref().unwrap_or("connection lost"),
                "read failed on a replica before its reply reached the client: running it once more elsewhere");
        }
        self.cancel.clear();
        self.exchange.reset();
        self.paused = None;
        std::mem::swap(&mut self.batch.messages, &mut retry.messages);
        self.batch.parsed_unnamed = retry.parsed_unnamed;
        // A conflict could strike again on the same replica.
        let destination = match conflict {
            true => Destination::Primary,
            false => Destination::Replica,
        };
        let decision = Decision {
            place: match destination {
                Destination::Primary => Place::Primary,
                Destination::Replica => Place::Replica,
            },
            why: Why::ReadOnly,
        };
        self.retry.spent = true;
        let flow = self.dispatch(retry.tag, retry.frame, decision).await;
        self.retry.spent = false;
        flow.map(|_| ())
    }

    /// The server has answered nothing for `STALL_CHECK` while a client
    /// message waits on it (`stall`): if its backend is running a
    /// statement, the wait goes on; if not, the answers pgsplit waits for
    /// will never come, and the session ends with an error.
    pub(super) async fn stalled(&mut self) -> Result<(), ClientError> {
        let Some(conn) = self.held.server.as_ref() else {
            return Ok(());
        };
        let (pool, pid) = (conn.pool().clone(), conn.backend_pid);
        let state = match pool.backend_state(pid).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(pool = %pool.name, %error, "could not ask the server what a silent backend does; waiting on");
                return Ok(());
            }
        };
        if matches!(state.as_deref(), Some("active" | "fastpath function call")) {
            tracing::debug!(pool = %pool.name, pid, "the server is still running a statement");
            return Ok(());
        }
        tracing::warn!(pool = %pool.name, pid, state = state.as_deref().unwrap_or("gone"),
            "the server stopped answering while pgsplit waited for it: ending the session");
        self.app
            .metrics
            .error(ErrorSide::Pgsplit, sqlstate::PROTOCOL_VIOLATION);
        if let Some(mut conn) = self.held.server.take() {
            conn.broken = true;
        }
        self.exchange.reset();
        self.paused = None;
        self.deferred = None;
        let error = PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "pgsplit: the server stopped answering this session's statements; the session is closed (anything not yet answered did not commit)",
        );
        self.io.send_error(&error).await;
        Err(ClientError::Refused(error))
    }

    /// The server sent a FATAL error, relayed to the client as it came,
    /// and is closing: as direct, the client's session ends too (going on
    /// would answer the statement twice, or leave the client waiting for a
    /// close that never comes).
    pub(super) fn server_ended(&mut self) -> ClientError {
        if let Some(mut conn) = self.held.server.take() {
            conn.broken = true;
            tracing::info!(pool = %conn.pool().name, "the server ended the session with a FATAL error: closing the client as PostgreSQL would");
        }
        self.cancel.clear();
        self.exchange.reset();
        ClientError::ServerEnded
    }

    /// The server connection broke. Outside a transaction the client gets
    /// an error for what was running and goes on; inside one, whose work
    /// is gone, the session ends so the client cannot mistake a later
    /// COMMIT for success.
    pub(super) async fn server_lost(&mut self) -> Result<(), ClientError> {
        if self.retry.armed {
            return Box::pin(self.retry_elsewhere(None)).await;
        }
        self.suspect_primary("lost a connection to the primary");
        let Some(mut conn) = self.held.server.take() else {
            return Ok(());
        };
        conn.broken = true;
        let pool = conn.pool().name.clone();
        drop(conn);
        self.cancel.clear();
        let in_transaction = self.exchange.in_transaction();
        // Every Query or Sync sent, and the end of a paused batch, waits
        // for an answer that will not come.
        let unsent_end = self
            .paused
            .take()
            .is_some_and(|p| matches!(p.tag, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL));
        let pending = self.exchange.pending + usize::from(unsent_end);
        self.exchange.reset();
        self.durations.forget();
        if self.wrote {
            self.writes_committed();
        }
        self.exchange.tx_status = status::IDLE;
        self.drop_unsent();
        self.batch.open = false;
        tracing::warn!(%pool, in_transaction, pinned = self.pins.get().map(Pin::describe), "lost the server connection");
        if let Some(pin) = self.pins.get() {
            let error = PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!(
                    "pgsplit: lost the connection to {pool}, and with it this session's state ({})",
                    pin.describe()
                ),
            );
            self.io.send_error(&error).await;
            return Err(ClientError::Refused(error));
        }
        if in_transaction {
            let error = PgError::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!("pgsplit: lost the connection to {pool} during a transaction; the transaction did not commit"),
            );
            self.io.send_error(&error).await;
            return Err(ClientError::Refused(error));
        }
        self.out.clear();
        for _ in 0..pending {
            PgError::error(
                sqlstate::CONNECTION_FAILURE,
                format!("pgsplit: lost the connection to {pool} while running the statement; it may or may not have completed"),
            )
            .encode(&mut self.out);
            backend::ready_for_query(status::IDLE, &mut self.out);
        }
        self.io.write(&self.out).await
    }

    /// Returns the client's server connections to their pools clean, or
    /// closes them.
    pub(super) async fn finish(&mut self) {
        self.cancel.clear();
        if self.pins.is_pinned() {
            self.app.pinned_clients.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(conn) = self.held.server.take() {
            let busy = self.owes_answers();
            let in_tx = self.exchange.in_transaction();
            self.clean_up(conn, busy, in_tx).await;
        }
        if let Some(conn) = self.held.spare.take() {
            self.clean_up(conn, false, false).await;
        }
        self.held.parked = None;
    }

    pub(super) async fn clean_up(&self, mut conn: Checkout, busy: bool, in_transaction: bool) {
        if busy {
            // Cut off mid-reply, or mid-batch: stop the server's work and
            // close it.
            tracing::info!(pool = %conn.pool().name, "client left while a statement ran: cancelling it and closing the server connection");
            let target = (conn.backend_pid, conn.backend_secret, conn.addr.clone());
            conn.broken = true;
            drop(conn);
            let tls = self.app.current().tls.servers.clone();
            self.app
                .cancels
                .cancel_server(target.0, target.1, target.2, tls.as_deref())
                .await;
            return;
        }
        if in_transaction {
            let rolled_back =
                tokio::time::timeout(ROLLBACK_TIMEOUT, conn.simple_query("ROLLBACK")).await;
            let ok = matches!(rolled_back, Ok(Ok(_)));
            tracing::info!(pool = %conn.pool().name, rolled_back = ok, "client left inside a transaction");
            if !ok {
                conn.broken = true;
                return;
            }
        }
        if self.mode == PoolMode::Session || self.pins.is_pinned() {
            // The next client must not inherit this one's session state.
            let reset =
                tokio::time::timeout(ROLLBACK_TIMEOUT, conn.simple_query("DISCARD ALL")).await;
            conn.prepared.clear();
            conn.settings = 0;
            if !matches!(reset, Ok(Ok(_))) {
                conn.broken = true;
            }
        }
    }
}
