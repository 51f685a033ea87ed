//! Since when the clients waiting for a pool's connection have waited:
//! the longest wait in progress (`pgsplit_pool_max_wait_seconds`). The
//! pool's count of waiters stays an atomic of its own (its handshake with
//! parked connections reads it). Touched only by clients that found
//! the pool exhausted (the slow path), never by a checkout that gets a
//! connection at once.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct Waiters {
    /// Each waiter's start, by arrival: the first entry is the oldest
    /// (waiters leave out of order when they give up or are cancelled).
    since: Mutex<BTreeMap<u64, Instant>>,
    next: AtomicU64,
}

impl Waiters {
    /// A client starts waiting; it stops when the guard is dropped
    /// (served, timed out or cancelled).
    pub fn wait(&self, now: Instant) -> Waiting<'_> {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        self.since.lock().insert(ticket, now);
        Waiting {
            waiters: self,
            ticket,
        }
    }

    /// How long the longest waiting client has waited at `now` (zero when
    /// none waits).
    pub fn longest(&self, now: Instant) -> Duration {
        let oldest = self.since.lock().values().next().copied();
        oldest.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

pub(super) struct Waiting<'a> {
    waiters: &'a Waiters,
    ticket: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiters.since.lock().remove(&self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_wait_is_the_oldest_waiter_still_waiting() {
        let waiters = Waiters::default();
        let t0 = Instant::now();
        assert_eq!(waiters.longest(t0), Duration::ZERO);
        let first = waiters.wait(t0);
        let second = waiters.wait(t0 + Duration::from_secs(2));
        let at = t0 + Duration::from_secs(5);
        assert_eq!(waiters.since.lock().len(), 2);
        assert_eq!(waiters.longest(at), Duration::from_secs(5));
        // The oldest gives up: the next one is now the longest.
        drop(first);
        assert_eq!(waiters.longest(at), Duration::from_secs(3));
        drop(second);
        assert!(waiters.since.lock().is_empty());
        assert_eq!(waiters.longest(at), Duration::ZERO);
    }
}
