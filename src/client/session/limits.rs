//! The session's time limits besides `idle_transaction_timeout`
//! (`transaction`):
//!
//! - `query_timeout`: a statement (or pipelined batch) the server has not
//!   finished answering this long after it was sent is cancelled on its
//!   server, and the client gets `ERROR 57014 query_timeout` (PgBouncer's
//!   words) in place of the server's "canceling statement due to user
//!   request"; the session goes on (PgBouncer closes it). The cancel is
//!   sent from the session and awaited until the server closed the cancel
//!   connection (`Cancels::cancel_server`), so the signal has reached the
//!   backend before anything else is sent to it: it cannot hit the next
//!   statement.
//! - `client_idle_timeout`: a client that sent nothing for this long while
//!   nothing of its runs and it holds no server transaction (a transaction
//!   pgsplit began lazily holds none) is closed with `FATAL 57P05
//!   client_idle_timeout`.
//!
//! Both use an [`Alarm`](super::timing::Alarm): no timer per statement.

use super::Session;
use crate::client::io::ClientError;
use crate::metrics::Timeout;
use crate::protocol::error::sqlstate;
use crate::protocol::PgError;
use bytes::BytesMut;
use std::time::Instant;

impl Session {
    /// Arms the alarms of the limits that apply now; called before each
    /// wait. When neither limit is set, two loads.
    pub(super) fn arm_limits(&mut self) {
        let config = &self.current.config;
        if let Some(timeout) = config.query_timeout() {
            // Once cancelled, the statement is not watched again: its
            // answer is on its way.
            let watched = self.exchange.answering() && self.exchange.timeout_error.is_none();
            if let (true, Some(since)) = (watched, self.durations.since()) {
                self.query_alarm.arm(since + timeout);
            }
        }
        if let Some(timeout) = config.client_idle_timeout() {
            if self.client_idle() {
                self.idle_alarm.arm(self.last_heard + timeout);
            }
        }
    }

    /// The client sent something. For `client_idle_timeout`, the time is
    /// read only when it is set (a clock read per message otherwise saved).
    #[inline]
    pub(super) fn heard_from_client(&mut self) {
        self.idle_memory.heard();
        if self.current.config.client_idle_timeout > 0.0 {
            self.last_heard = Instant::now();
        }
    }

    /// Nothing of the client's runs or waits, and it holds no server
    /// transaction.
    fn client_idle(&self) -> bool {
        !self.busy_client()
    }

    /// Something of the client's runs or waits, or it holds a server
    /// transaction.
    pub(super) fn busy_client(&self) -> bool {
        self.exchange.busy()
            || self.holds_transaction()
            || self.deferred.is_some()
            || self.paused.is_some()
            || !self.batch.is_empty()
    }

    /// The query alarm rang: if the statement it watches still runs past
    /// `query_timeout`, it is cancelled on its server.
    pub(super) async fn query_alarm_rang(&mut self) {
        let Some(timeout) = self.current.config.query_timeout() else {
            return;
        };
        let running = self.durations.since().map(|since| since.elapsed());
        let (Some(conn), Some(running)) = (self.held.server.as_ref(), running) else {
            return;
        };
        if !self.exchange.answering() || running < timeout || self.exchange.timeout_error.is_some()
        {
            return;
        }
        let (pid, secret, addr) = (conn.backend_pid, conn.backend_secret, conn.addr.clone());
        tracing::warn!(client = self.client.id, pool = %conn.pool().name,
            seconds = running.as_secs_f64(), query_timeout = timeout.as_secs_f64(),
            "statement ran longer than query_timeout: cancelling it on its server");
        self.app.metrics.timed_out(Timeout::Query);
        let mut error = BytesMut::new();
        PgError::error(sqlstate::QUERY_CANCELED, "query_timeout").encode(&mut error);
        self.exchange.timeout_error = Some(error.freeze());
        let tls = self.app.current().tls.servers.clone();
        self.app
            .cancels
            .cancel_server(pid, secret, addr, tls.as_deref())
            .await;
    }

    /// The idle alarm rang: a client idle for `client_idle_timeout` is
    /// told (FATAL 57P05, PgBouncer's words) and its session ends.
    pub(super) async fn idle_alarm_rang(&mut self) -> Result<(), ClientError> {
        let Some(timeout) = self.current.config.client_idle_timeout() else {
            return Ok(());
        };
        if !self.client_idle() || self.last_heard.elapsed() < timeout {
            return Ok(());
        }
        tracing::info!(
            client = self.client.id,
            seconds = timeout.as_secs_f64(),
            "client idle for longer than client_idle_timeout: closing its connection"
        );
        self.app.metrics.timed_out(Timeout::ClientIdle);
        let error = PgError::fatal(sqlstate::IDLE_SESSION_TIMEOUT, "client_idle_timeout");
        self.io.send_error(&error).await;
        Err(ClientError::Refused(error))
    }
}
