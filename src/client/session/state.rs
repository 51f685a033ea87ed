//! The session state a client leaves on servers: pins (state that cannot
//! move between connections keeps the client on one) and tracked settings
//! (a plain SET becomes one of the client's settings, set wherever it runs).

use super::Session;

use crate::router::{Pin, Reason, Route, SessionCommand};
use std::sync::atomic::Ordering;

impl Session {
    /// Pins the client to its primary connection if `route` says the
    /// statement creates session state.
    pub(super) fn pin_if_needed(&mut self, route: &Route) {
        match route.reason {
            Reason::Pins(pin) => self.pin(pin),
            // A SET is tracked only alone in a simple query outside a
            // transaction; anywhere else it pins.
            Reason::Setting(_) => self.pin(Pin::SessionSetting),
            _ => {}
        }
    }

    /// A statement of the batch sets `name` for the session: once it has
    /// run, its value becomes one of the client's settings. A second
    /// setting in the same batch pins the client instead (one is tracked
    /// at a time).
    pub(super) fn track(&mut self, name: &str) {
        match &self.tracking {
            Some(tracked) if tracked != name => self.pin(Pin::SessionSetting),
            _ => self.tracking = Some(name.to_string()),
        }
    }

    /// The SET being tracked is done: its value, as the server now has it,
    /// joins the client's settings (a failed SET leaves the old value), and
    /// the connection is known to carry them. Inside a transaction that a
    /// rollback could undo, the client is pinned instead.
    pub(super) async fn record_setting(&mut self) {
        let Some(name) = self.tracking.take() else {
            return;
        };
        if self.exchange.in_transaction() {
            self.pin(Pin::SessionSetting);
            return;
        }
        let Some(conn) = self.held.server.as_deref_mut() else {
            return;
        };
        let sql = format!(
            "SELECT current_setting('{}', true)",
            name.replace('\'', "''")
        );
        match conn.simple_query(&sql).await {
            Ok(rows) => {
                if let Some(Some(value)) = rows.first().and_then(|row| row.first()) {
                    self.settings.set(&name, value);
                    tracing::debug!(setting = %name, %value, "client setting tracked");
                }
                conn.settings = self.settings.fingerprint;
            }
            // The connection is marked broken; the client finds out at its
            // next statement.
            Err(error) => {
                tracing::warn!(%error, setting = %name, "could not read back a client's setting")
            }
        }
    }

    /// From now on the client keeps the connection that runs this
    /// statement, and everything runs there: its session state (a LISTEN,
    /// a temporary table, a setting) lives in that server session.
    pub(super) fn pin(&mut self, pin: Pin) {
        if !self.pins.pin(pin) {
            return;
        }
        self.app.metrics.pinned(pin.label());
        *self.client.pinned.lock() = Some(pin.describe().to_string());
        let pinned_clients = self.app.pinned_clients.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            reason = pin.describe(),
            pinned_clients,
            "client pinned to one primary connection for the rest of its session"
        );
    }
}

impl Session {
    /// Keeps pgsplit's record of the client in step with a DEALLOCATE,
    /// RESET or DISCARD ALL it sends.
    pub(super) fn follow(&mut self, command: &SessionCommand) {
        // The server drops its statements too: pgsplit's Close before
        // every Parse keeps its own record of them harmless.
        if command.drops_statements() {
            self.statements.clear();
        }
        if let Some(reset) = command.resets_settings() {
            self.settings.reset(reset);
            self.settings_reset = true;
        }
        // If it succeeds the client may move again.
        if matches!(command, SessionCommand::DiscardAll) {
            self.pins.discard_sent();
        }
    }

    /// The DISCARD ALL that was to unpin the client is done: unless it
    /// failed (inside a transaction block, say), the client is free.
    pub(super) fn unpin_if_discarded(&mut self) {
        let Some(pin) = self.pins.discard_done() else {
            return;
        };
        *self.client.pinned.lock() = None;
        let pinned_clients = self.app.pinned_clients.fetch_sub(1, Ordering::Relaxed) - 1;
        tracing::info!(
            was = pin.describe(),
            pinned_clients,
            "client unpinned: DISCARD ALL undid its session state"
        );
    }
}

/// A connection whose settings pgsplit does not know.
pub(super) const UNKNOWN_SETTINGS: u64 = u64::MAX;
