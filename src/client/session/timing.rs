//! The session's clocks: how long its statements and transactions took
//! (for the metrics), and the two deadlines that end a wait that should
//! not last.
//!
//! - The stall bound. While the session holds a client message back until
//!   the server has answered what it was sent (a deferred message, a
//!   paused batch), a server that answers nothing for `STALL_CHECK` is
//!   asked, on a connection of its own, what its backend is doing (see
//!   `recovery::stalled`). Running a statement (`active`) is progress: a
//!   long query is not a stall, and the wait goes on. Anything else means
//!   pgsplit waits for answers the server will never send, and the session
//!   ends with an error rather than hold its client and its server
//!   connection for good. pgsplit tracks what the server answers message
//!   by message (`exchange`), so this is a safety net, not the way out of
//!   a known case.
//! - `idle_transaction_timeout`. A client idle inside a transaction that
//!   holds a server connection (one opened on the primary, not a lazy one,
//!   which holds nothing) keeps that connection from every other client.
//!
//! `query_timeout` and `client_idle_timeout` would need a deadline started
//! afresh for every statement; they use an [`Alarm`] instead, set at most
//! once per period however many statements run (see `limits`).

use crate::role::Role;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// How long the server may be silent while a client message waits on it
/// before pgsplit looks.
pub(super) const STALL_CHECK: Duration = Duration::from_secs(10);

/// A timer that runs while a condition holds, and is off otherwise.
#[derive(Default)]
pub(super) struct Deadline {
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// Starts the clock (`after`) if `on` and it is not running; stops it
    /// if not `on`. A clock already running goes on: the condition has
    /// held since it started.
    pub fn hold(&mut self, on: bool, after: Duration) {
        match (on, self.timer.is_some()) {
            (true, false) => self.timer = Some(Box::pin(tokio::time::sleep(after))),
            (false, true) => self.timer = None,
            _ => {}
        }
    }

    /// Something happened: the clock starts again when next held.
    pub fn reset(&mut self) {
        self.timer = None;
    }

    /// Ready once the clock has run out; it is then off.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(timer) = &mut self.timer else {
            return Poll::Pending;
        };
        let ready = timer.as_mut().poll(cx);
        if ready.is_ready() {
            self.timer = None;
        }
        ready
    }
}

/// A timer for watching something that moves on with every statement (a
/// statement's start, a client's last message) without a timer per
/// statement. It is armed for an instant and rings once at it; the caller
/// then looks whether what it watches for has happened, and if not arms it
/// again for the instant it now has. Arming an armed alarm does nothing,
/// so it may ring early, never late, and a busy session re-arms it about
/// once per period. One `Sleep` per session, reset in place; once its
/// waker is registered, each wait looks at it with one load
/// (`Sleep::is_elapsed`) rather than polling it.
#[derive(Default)]
pub(super) struct Alarm {
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The timer has this task's waker since it was last armed.
    registered: bool,
}

impl Alarm {
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Rings at `at` (or earlier, if it is armed already).
    pub fn arm(&mut self, at: Instant) {
        if self.armed {
            return;
        }
        let at = tokio::time::Instant::from_std(at);
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = true;
        self.registered = false;
    }

    /// Ready once, when the armed instant has come; it is then disarmed.
    /// The task's waker is registered at the first poll after arming (a
    /// task keeps its waker).
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (true, Some(timer)) = (self.armed, self.timer.as_mut()) else {
            return Poll::Pending;
        };
        let rang = match self.registered {
            true => timer.is_elapsed(),
            false => {
                self.registered = true;
                timer.as_mut().poll(cx).is_ready()
            }
        };
        if !rang {
            return Poll::Pending;
        }
        self.armed = false;
        Poll::Ready(())
    }
}

/// When the work still pending began, for the durations the metrics
/// keep.
#[derive(Debug, Default)]
pub(super) struct Durations {
    /// When the oldest exchange still pending was sent, and where.
    sent_at: Option<(Instant, Role)>,
    /// When the server transaction in progress began, and where.
    transaction_since: Option<(Instant, Role)>,
}

impl Durations {
    /// A statement (or batch) was sent to `side`: the first one starts
    /// the statement's clock and the transaction's.
    pub fn sent(&mut self, side: Role) {
        if self.sent_at.is_none() || self.transaction_since.is_none() {
            let now = Instant::now();
            self.sent_at.get_or_insert((now, side));
            self.transaction_since.get_or_insert((now, side));
        }
    }

    /// The server answered everything sent: how long the statements took
    /// and, when `transaction_ended`, the transaction.
    pub fn answered(&mut self, transaction_ended: bool) -> Answered {
        let Some((since, side)) = self.sent_at.take() else {
            return Answered::default();
        };
        let now = Instant::now();
        let transaction = match transaction_ended {
            true => self
                .transaction_since
                .take()
                .map(|(since, side)| (side, (now - since).as_secs_f64())),
            false => None,
        };
        Answered {
            statement: Some((side, (now - since).as_secs_f64())),
            transaction,
        }
    }

    /// When the oldest statement still unanswered was sent.
    pub fn since(&self) -> Option<Instant> {
        self.sent_at.map(|(at, _)| at)
    }

    /// The server connection is gone or given back: nothing is pending.
    pub fn forget(&mut self) {
        *self = Durations::default();
    }
}

/// Durations in seconds, by where they ran.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Answered {
    pub statement: Option<(Role, f64)>,
    pub transaction: Option<(Role, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_runs_out_only_while_held_throughout() {
        let mut deadline = Deadline::default();
        let after = Duration::from_secs(5);
        deadline.hold(true, after);
        tokio::time::advance(Duration::from_secs(3)).await;
        // Held again: the clock goes on from where it was.
        deadline.hold(true, after);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(poll(&mut deadline).is_pending());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(poll(&mut deadline).is_ready());
        // Run out, it is off until held again.
        assert!(poll(&mut deadline).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_let_go_or_reset_starts_again() {
        let mut deadline = Deadline::default();
        let after = Duration::from_secs(5);
        deadline.hold(true, after);
        tokio::time::advance(Duration::from_secs(4)).await;
        deadline.hold(false, after);
        deadline.hold(true, after);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(poll(&mut deadline).is_pending());
        deadline.reset();
        deadline.hold(true, after);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(poll(&mut deadline).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(poll(&mut deadline).is_ready());
    }

    #[test]
    fn statements_are_timed_from_the_first_sent_and_transactions_to_their_end() {
        let mut durations = Durations::default();
        assert_eq!(durations.answered(true), Answered::default());
        durations.sent(Role::Replica);
        durations.sent(Role::Primary);
        let first = durations.answered(false);
        assert!(matches!(first.statement, Some((Role::Replica, _))));
        assert_eq!(first.transaction, None);
        durations.sent(Role::Primary);
        let second = durations.answered(true);
        assert!(matches!(second.statement, Some((Role::Primary, _))));
        // The transaction began with the first statement, on the replica.
        assert!(matches!(second.transaction, Some((Role::Replica, _))));
        durations.sent(Role::Primary);
        durations.forget();
        assert_eq!(durations.answered(true), Answered::default());
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_rings_once_at_its_instant_and_armed_again_rings_early_never_late() {
        let mut alarm = Alarm::default();
        assert!(ring(&mut alarm).is_pending(), "not armed");
        // The paused clock's now, which std's is not.
        let start = tokio::time::Instant::now().into_std();
        alarm.arm(start + Duration::from_secs(5));
        // Armed already: the later instant is not taken.
        alarm.arm(start + Duration::from_secs(8));
        assert!(ring(&mut alarm).is_pending());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(ring(&mut alarm).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(ring(&mut alarm).is_ready());
        assert!(ring(&mut alarm).is_pending(), "rings once");
        // Armed again (the caller found it early): the same timer, reset.
        alarm.arm(start + Duration::from_secs(8));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(ring(&mut alarm).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(ring(&mut alarm).is_ready());
    }

    #[test]
    fn the_oldest_unanswered_statement_is_the_start() {
        let mut durations = Durations::default();
        assert_eq!(durations.since(), None);
        durations.sent(Role::Primary);
        let first = durations.since().unwrap();
        durations.sent(Role::Primary);
        assert_eq!(durations.since(), Some(first));
        durations.answered(false);
        assert_eq!(durations.since(), None);
    }

    fn ring(alarm: &mut Alarm) -> Poll<()> {
        let waker = futures::task::noop_waker();
        alarm.poll(&mut Context::from_waker(&waker))
    }

    fn poll(deadline: &mut Deadline) -> Poll<()> {
        let waker = futures::task::noop_waker();
        deadline.poll(&mut Context::from_waker(&waker))
    }
}
