//! What a session counts: statements by where they ran and why, statement
//! and transaction durations, server errors relayed. All of it goes to the
//! session's own metrics shard.

use super::Session;
use crate::app::clients::ClientState;
use crate::metrics::{ErrorSide, RouteLabel};
use crate::role::Role;
use crate::router::{Reason, Route};
use std::time::Instant;

impl Session {
    /// A statement (or batch) goes to a server of `role`; `detour` says why
    /// a read landed on the primary, if it did.
    pub(super) fn statement_sent(
        &mut self,
        route: Option<&Route>,
        role: Role,
        detour: Option<RouteLabel>,
    ) {
        self.client.set_state(ClientState::Active);
        let side = role;
        let label = route_label(route, role, detour, self.pinned.is_some());
        self.io.metrics.statement(side, label);
        self.client.counted();
        if self.sent_at.is_none() || self.transaction_since.is_none() {
            let now = Instant::now();
            self.sent_at.get_or_insert((now, side));
            self.transaction_since.get_or_insert((now, side));
        }
    }

    /// Counts server errors relayed, and times statements and
    /// transactions as they end.
    pub(super) fn observe_exchange(&mut self) {
        if !self.exchange.errors.is_empty() && self.unpin_on_success.is_some() {
            self.unpin_on_success = Some(false);
        }
        for class in self.exchange.errors.drain(..) {
            let class = std::str::from_utf8(&class).unwrap_or("??");
            self.app.metrics.error(ErrorSide::Server, class);
        }
        if self.exchange.busy() {
            return;
        }
        if let Some((since, side)) = self.sent_at.take() {
            let now = Instant::now();
            self.io
                .metrics
                .statement_done(side, (now - since).as_secs_f64());
            if !self.exchange.in_transaction() && !self.batch.open {
                if let Some((since, side)) = self.transaction_since.take() {
                    self.io
                        .metrics
                        .transaction_done(side, (now - since).as_secs_f64());
                }
            }
        }
    }
}

/// The `reason` label of a statement that runs on `checkout`: why the
/// router sent it, or why it landed elsewhere than routed.
fn route_label(
    route: Option<&Route>,
    role: Role,
    detour: Option<RouteLabel>,
    pinned: bool,
) -> RouteLabel {
    let Some(route) = route else {
        return if pinned {
            RouteLabel::Pinned
        } else {
            RouteLabel::InTransaction
        };
    };
    let landed_elsewhere = route.destination != role;
    match detour {
        Some(detour) if landed_elsewhere => detour,
        _ if pinned => RouteLabel::Pinned,
        _ => reason_label(&route.reason),
    }
}

fn reason_label(reason: &Reason) -> RouteLabel {
    match reason {
        Reason::ReadOnly => RouteLabel::ReadOnly,
        Reason::Write => RouteLabel::Write,
        Reason::Transaction => RouteLabel::Transaction,
        Reason::ReadOnlyTransaction => RouteLabel::ReadOnlyTransaction,
        Reason::Hint => RouteLabel::Hint,
        Reason::Locking => RouteLabel::Locking,
        Reason::SelectInto => RouteLabel::SelectInto,
        Reason::DataModifyingCte => RouteLabel::DataModifyingCte,
        Reason::WriteFunction(_) => RouteLabel::Function,
        Reason::ExplainAnalyze => RouteLabel::ExplainAnalyze,
        Reason::ParseFailure => RouteLabel::ParseFailure,
        Reason::Introspection => RouteLabel::Introspection,
        Reason::Empty => RouteLabel::Empty,
        Reason::Pins(_) => RouteLabel::Pinned,
        Reason::Setting(_) => RouteLabel::Setting,
    }
}
