//! The client's transaction as pgsplit keeps it while it has reached no
//! server (`router::decision::Transaction::Lazy`): what BEGIN said, and
//! whether a statement of it failed; and pgsplit's answers for it, worded
//! as PostgreSQL words them. Once a statement needs the primary, the
//! transaction is opened there with the client's BEGIN (`open_on_primary`)
//! and the server's state is the transaction's again.

use super::lazy;
use super::{Flow, Session};
use crate::client::exchange::Expect;
use crate::client::io::ClientError;
use crate::protocol::error::sqlstate;
use crate::protocol::frame::put_frame;
use crate::protocol::{backend, tag, PgError};
use crate::router::decision::{Answer, Decision, Facts, Place, Transaction};
use crate::router::Route;
use bytes::Bytes;

impl Session {
    /// What the session knows, for the routing decision.
    pub(super) fn facts(&self) -> Facts {
        let config = &self.current.config;
        let transaction = match (&self.lazy, self.holds_transaction()) {
            (Some(lazy), _) => Transaction::Lazy(lazy.state),
            (None, true) => Transaction::Open,
            (None, false) => Transaction::None,
        };
        Facts {
            transaction,
            fixed: self.held.server.is_some() && (self.batch.open || self.exchange.skipping),
            pinned: self.pins.is_pinned(),
            primary_only: self.primary_only(),
            transaction_reads: config.transaction_reads,
            read_only_transactions: config.read_only_transactions,
            default_isolation: self
                .settings
                .default_isolation()
                .or_else(|| self.cluster.default_isolation()),
            default_read_only: self
                .settings
                .default_read_only()
                .unwrap_or_else(|| self.cluster.default_read_only()),
        }
    }

    /// Whether the client's transactions are serializable by default, by
    /// its own settings or the database's and role's: a standby refuses
    /// them, so its reads go to the primary.
    pub(super) fn primary_only(&self) -> bool {
        use crate::router::Isolation;
        let isolation = self.settings.default_isolation();
        self.settings.primary_only
            || isolation.or_else(|| self.cluster.default_isolation())
                == Some(Isolation::Serializable)
    }

    /// Whether deciding about `route` needs the database's and role's
    /// transaction defaults, not known yet: a BEGIN that does not say its
    /// isolation, from a client whose settings do not either.
    pub(super) fn needs_defaults(&self, route: &Route) -> bool {
        matches!(
            route.reason,
            crate::router::Reason::Transaction(crate::router::Control::Begin(
                crate::router::BeginOptions {
                    isolation: None,
                    ..
                }
            ))
        ) && self.settings.default_isolation().is_none()
            && !self.cluster.knows_defaults()
            && self.lazy.is_none()
    }

    /// Whether the client sits idle inside a transaction that holds a
    /// server connection: everything sent is answered, nothing waits.
    pub(super) fn idle_in_transaction(&self) -> bool {
        self.holds_transaction()
            && !self.exchange.busy()
            && self.deferred.is_none()
            && self.paused.is_none()
            && self.batch.is_empty()
    }

    /// `idle_transaction_timeout` ran out: as PostgreSQL's
    /// `idle_in_transaction_session_timeout`, the session ends with FATAL
    /// 25P03; `finish` rolls the transaction back and returns the
    /// connection clean.
    pub(super) async fn idle_timeout(&mut self) -> Result<(), ClientError> {
        let seconds = self.current.config.idle_transaction_timeout;
        tracing::warn!(
            client = self.client.id,
            seconds,
            "client idle in a transaction for longer than idle_transaction_timeout: ending its session and rolling the transaction back"
        );
        self.app.metrics.idle_transaction_timeouts.inc();
        self.app
            .metrics
            .timed_out(crate::metrics::Timeout::IdleTransaction);
        let error = PgError::fatal(
            sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
            "terminating connection due to idle-in-transaction timeout",
        );
        self.io.send_error(&error).await;
        Err(ClientError::Refused(error))
    }

    /// Whether the server held is inside a transaction.
    pub(super) fn holds_transaction(&self) -> bool {
        self.held.server.is_some() && self.exchange.in_transaction()
    }

    /// Where `route`'s statement runs. It is logged once it has run
    /// there (`statement_sent`, or `answer` for pgsplit's own answers):
    /// the pool may still send a read elsewhere.
    pub(super) fn decide(&self, route: &Route) -> Decision {
        crate::router::decision::decide(route, &self.facts())
    }

    /// A statement pgsplit answers for a transaction that reached no
    /// server (`text`: the statement, a simple query), after whatever the
    /// server still owes the client.
    pub(super) async fn answer(
        &mut self,
        answer: Answer,
        text: &str,
        message: u8,
        frame: Bytes,
    ) -> Result<Flow, ClientError> {
        if self.owes_answers() {
            self.deferred = Some((message, frame));
            return Ok(Flow::Wait);
        }
        tracing::debug!(
            client = self.client.id,
            server = "pgsplit",
            reason = crate::router::decision::Why::Answered.as_str(),
            ?answer,
            "statement"
        );
        self.out.clear();
        let status = self.answer_into(answer, text);
        backend::ready_for_query(status, &mut self.out);
        self.io.write(&self.out).await?;
        Ok(Flow::Continue)
    }

    /// Writes the answer's messages (before its ReadyForQuery) into `out`
    /// and moves the transaction on; returns the status it leaves.
    pub(super) fn answer_into(&mut self, answer: Answer, text: &str) -> u8 {
        if let Answer::Begin { .. } = answer {
            tracing::debug!(
                client = self.client.id,
                "transaction begun by pgsplit: no server yet"
            );
        }
        lazy::answer(&mut self.lazy, answer, text, &mut self.out)
    }

    /// The first statement of the lazy transaction that needs the primary
    /// is about to be written to `out`: the client's BEGIN goes first, its
    /// answers cut out (the client had them from pgsplit).
    pub(super) fn open_on_primary(&mut self) {
        let Some(lazy) = self.lazy.take() else {
            return;
        };
        tracing::debug!(client = self.client.id, begin = %lazy.begin, "transaction opened on the primary");
        put_frame(&mut self.out, tag::QUERY, |b| {
            b.extend_from_slice(lazy.begin.as_bytes());
            b.extend_from_slice(&[0]);
        });
        self.exchange.sent(Expect::Hidden);
        // From here the server's statuses are the transaction's own.
        self.exchange.lazy = false;
    }

    /// The client's reads in a lazy transaction run as autocommit reads;
    /// their ReadyForQuery tells the client it is in a transaction, and a
    /// failure fails the transaction.
    pub(super) fn lazy_read_done(&mut self) {
        if let (Some(lazy), true) = (&mut self.lazy, self.exchange.lazy_failed) {
            lazy.state.failed = true;
            tracing::debug!(
                client = self.client.id,
                "a read failed: the transaction is aborted"
            );
        }
        self.exchange.lazy_failed = false;
    }

    /// Where a decision puts a statement, for `acquire`.
    pub(super) fn wanted(place: Place) -> Option<crate::router::Destination> {
        use crate::router::Destination;
        match place {
            Place::Replica => Some(Destination::Replica),
            Place::Primary | Place::OpenOnPrimary => Some(Destination::Primary),
            Place::Held | Place::Answer(_) => None,
        }
    }
}
