//! What an idle session gives back. A session that has run statements
//! holds its read buffer (4 KiB and up), the messages it last wrote, the
//! routes of its recent statements and the room its queues grew to, and
//! its prepared statements' text as slices of the buffers they arrived in
//! (each keeping all of its buffer). Kept while the client is busy, they
//! save an allocation per statement; a client that has sent nothing for
//! `IDLE_AFTER` (to `2 x IDLE_AFTER`) gives them back, and waits for its
//! next message with no read buffer at all (see `wait`), so that many idle
//! clients cost a few KiB each (measured in bench/idle_clients.sh).

use super::timing::Alarm;
use super::Session;
use crate::client::retry::Retry;
use crate::router::RouteMemo;
use bytes::BytesMut;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long a client sends nothing before its session gives memory back.
const IDLE_AFTER: Duration = Duration::from_secs(5);

/// When to give memory back: an alarm every `IDLE_AFTER` while the
/// client is heard from (a flag per message, no clock read), and none
/// once it is given back, until the client speaks again.
#[derive(Default)]
pub(super) struct IdleMemory {
    alarm: Alarm,
    /// The client sent something since the alarm was armed.
    heard: bool,
    /// Given back, and not heard from since.
    given_back: bool,
}

impl IdleMemory {
    /// The client sent something.
    #[inline]
    pub fn heard(&mut self) {
        self.heard = true;
        self.given_back = false;
    }

    /// Before each wait: the alarm runs while there is memory to give.
    #[inline]
    pub fn arm(&mut self) {
        if !self.given_back && !self.alarm.is_armed() {
            // tokio's clock: std's, unless a test paused it.
            self.alarm
                .arm(tokio::time::Instant::now().into_std() + IDLE_AFTER);
        }
    }

    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.alarm.poll(cx)
    }

    /// Whether the memory is given back (and the client silent since).
    pub fn given_back(&self) -> bool {
        self.given_back
    }

    /// The alarm rang: whether the client was silent since it was armed.
    pub fn silent(&mut self) -> bool {
        !std::mem::take(&mut self.heard)
    }

    /// The memory is given back: no alarm (its timer too) until the
    /// client speaks.
    pub fn gave_back(&mut self) {
        self.given_back = true;
        self.alarm = Alarm::default();
    }
}

impl Session {
    /// The idle-memory alarm rang: a session silent since, with nothing
    /// of its running or half-read, gives its memory back.
    pub(super) fn idle_memory_alarm(&mut self) {
        let silent = self.idle_memory.silent();
        if !silent || !self.io.buf.is_empty() || self.retry.armed || self.busy_client() {
            return;
        }
        self.io.buf = BytesMut::new();
        self.out = BytesMut::new();
        self.retry = Retry::default();
        self.memo = RouteMemo::default();
        self.batch.shrink();
        self.exchange.shrink();
        self.statements.compact();
        self.idle_memory.gave_back();
        tracing::trace!(client = self.client.id, "idle: session memory given back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_is_given_back_after_a_silent_period_and_the_alarm_stops() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut memory = IdleMemory::default();
        memory.arm();
        assert!(memory.poll(&mut cx).is_pending());
        memory.heard();
        tokio::time::advance(IDLE_AFTER).await;
        assert!(memory.poll(&mut cx).is_ready());
        // Heard from in that period: not yet.
        assert!(!memory.silent());
        memory.arm();
        assert!(memory.poll(&mut cx).is_pending());
        tokio::time::advance(IDLE_AFTER).await;
        assert!(memory.poll(&mut cx).is_ready());
        assert!(memory.silent());
        memory.gave_back();
        // Given back: no alarm until the client speaks.
        memory.arm();
        assert!(memory.poll(&mut cx).is_pending());
        tokio::time::advance(IDLE_AFTER * 3).await;
        assert!(memory.poll(&mut cx).is_pending());
        memory.heard();
        memory.arm();
        tokio::time::advance(IDLE_AFTER).await;
        assert!(memory.poll(&mut cx).is_ready());
    }
}
