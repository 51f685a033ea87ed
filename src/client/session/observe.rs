//! What a session counts: statements by where they ran and why, statement
//! and transaction durations, server errors relayed. All of it goes to the
//! session's own metrics shard.

use super::Session;
use crate::app::clients::ClientState;
use crate::metrics::ErrorSide;
use crate::role::Role;
use crate::router::decision::Why;

impl Session {
    /// A statement (or batch) goes to a server of `role`: counted with
    /// the reason it runs there (`why`, the decision's, or the pool's when
    /// the read could not go where it was decided).
    pub(super) fn statement_sent(&mut self, why: Why, role: Role) {
        self.client.set_state(ClientState::Active);
        tracing::debug!(
            client = self.client.id,
            server = self.held.server.as_ref().map(|s| s.pool().name.as_str()),
            role = role.as_str(),
            reason = why.as_str(),
            "statement"
        );
        let side = role;
        self.io.metrics.statement(side, why);
        self.client.counted();
        self.durations.sent(side);
    }

    /// Fencing: an error or a lost connection on the primary says it may
    /// no longer be one; every server is checked again now, and writes
    /// wait for a confirmed primary (`Topology::recheck`).
    pub(super) fn suspect_primary(&self, why: &str) {
        let Some(conn) = self.held.server.as_ref() else {
            return;
        };
        if conn.role == crate::role::Role::Primary
            && self.cluster.primary_connection_failed(conn.pool(), why)
        {
            self.app.metrics.primary_recheck();
        }
    }

    /// Counts server errors relayed, and times statements and
    /// transactions as they end.
    pub(super) fn observe_exchange(&mut self) {
        if !self.exchange.errors.is_empty() {
            self.pins.error_seen();
        }
        for code in std::mem::take(&mut self.exchange.errors) {
            let code = std::str::from_utf8(&code).unwrap_or("?????");
            self.app.metrics.error(ErrorSide::Server, code);
            if says_primary_changed(code) {
                self.suspect_primary(code);
            }
        }
        if self.exchange.busy() {
            return;
        }
        let ended = !self.exchange.in_transaction() && !self.batch.open;
        let answered = self.durations.answered(ended);
        if let Some((side, seconds)) = answered.statement {
            self.io.metrics.statement_done(side, seconds);
            // The server's own histogram: a shared one, a few atomic adds.
            if let Some(server) = &self.held.server {
                server.pool().metrics().statement.observe(seconds);
            }
        }
        if let Some((side, seconds)) = answered.transaction {
            self.io.metrics.transaction_done(side, seconds);
        }
    }
}

/// Errors from the primary that say it may no longer be the primary: a
/// demoted primary refuses writes (25006 read-only transaction), a server
/// shutting down or in recovery ends sessions (57P01, 57P02, 57P03).
fn says_primary_changed(code: &str) -> bool {
    matches!(code, "25006" | "57P01" | "57P02" | "57P03")
}
