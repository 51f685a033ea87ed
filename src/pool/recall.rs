//! Calling parked connections back to their pool: when a client starts
//! waiting for a connection, and at every sweep.
//!
//! Why not a `tokio::sync::Notify`: a parked client waits on it between
//! every two transactions, and each wait made a `Notified` future that
//! took the Notify's lock when first polled and again when dropped, about
//! 360 instructions per statement (callgrind), on the path that sets
//! throughput. Nor a waker registered at each parking and removed at each
//! unparking: two locks and a waker clone per transaction. Here a session
//! puts its task's waker on a pool's list once (a [`RecallTicket`], kept
//! until the session ends) and flags it while a connection is parked; a
//! call is a generation number the parked connection compares, and it
//! wakes the flagged sessions.
//!
//! A pool keeps its `Recall` in an `Arc`; tickets hold it weakly, so this
//! module knows nothing of the pool.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;

#[derive(Default)]
pub(super) struct Recall {
    /// Bumped by each call back.
    generation: AtomicU64,
    next_id: AtomicU64,
    /// The sessions holding tickets, by ticket id.
    entries: Mutex<Vec<(u64, Arc<Entry>)>>,
}

/// A session on the list.
struct Entry {
    waker: Waker,
    /// It may have a connection of this pool parked. Set (SeqCst) before
    /// the session looks at the generation, read (SeqCst) by a call after
    /// it bumped it: one of the two sees the other.
    parked: AtomicBool,
}

/// A parked connection's view of the calls: the generation when it was
/// parked.
#[derive(Debug)]
pub(super) struct Parked {
    generation: u64,
}

impl Recall {
    /// Calls every parked connection back.
    pub(super) fn call(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for (_, entry) in self.entries.lock().iter() {
            if entry.parked.load(Ordering::SeqCst) {
                entry.waker.wake_by_ref();
            }
        }
    }

    /// A connection being parked now.
    pub(super) fn parked(&self) -> Parked {
        Parked {
            generation: self.generation.load(Ordering::SeqCst),
        }
    }

    /// Whether `parked` was called back. Its session's ticket is flagged
    /// before this read: a call either precedes it or wakes the session.
    pub(super) fn called(&self, parked: &Parked) -> bool {
        self.generation.load(Ordering::SeqCst) != parked.generation
    }

    fn register(&self, entry: Arc<Entry>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.entries.lock().push((id, entry));
        id
    }

    fn deregister(&self, id: u64) {
        let mut entries = self.entries.lock();
        if let Some(at) = entries.iter().position(|(i, _)| *i == id) {
            entries.swap_remove(at);
        }
    }
}

/// A session's place on one pool's recall list: while it is flagged, a
/// call wakes the session's task. Dropping it leaves the list.
pub struct RecallTicket {
    /// Weak: a ticket must not keep the list of a pool a reload replaced
    /// alive (the pool holds the only strong reference).
    recall: Weak<Recall>,
    entry: Arc<Entry>,
    id: u64,
}

impl RecallTicket {
    /// Flags the session's ticket for `recall`, a pool's list (taking one
    /// if it has none that wakes `waker`): a connection of that pool is
    /// parked with it. A lookup in a short list and, once per parking, one
    /// store.
    pub(super) fn flag(tickets: &mut Vec<RecallTicket>, recall: &Arc<Recall>, waker: &Waker) {
        let at = match tickets.iter().position(|t| t.is_for(recall)) {
            Some(at) if tickets[at].entry.waker.will_wake(waker) => at,
            _ => {
                tickets.retain(|t| t.recall.strong_count() > 0 && !t.is_for(recall));
                let entry = Arc::new(Entry {
                    waker: waker.clone(),
                    parked: AtomicBool::new(false),
                });
                let id = recall.register(entry.clone());
                tickets.push(RecallTicket {
                    recall: Arc::downgrade(recall),
                    entry,
                    id,
                });
                tickets.len() - 1
            }
        };
        let parked = &tickets[at].entry.parked;
        if !parked.load(Ordering::Relaxed) {
            parked.store(true, Ordering::SeqCst);
        }
    }

    /// The connection of `recall`'s pool the session had parked is in use
    /// again.
    pub(super) fn unflag(tickets: &[RecallTicket], recall: &Arc<Recall>) {
        for ticket in tickets.iter().filter(|t| t.is_for(recall)) {
            ticket.entry.parked.store(false, Ordering::Relaxed);
        }
    }

    fn is_for(&self, recall: &Arc<Recall>) -> bool {
        self.recall.as_ptr() == Arc::as_ptr(recall)
    }
}

impl Drop for RecallTicket {
    fn drop(&mut self) {
        if let Some(recall) = self.recall.upgrade() {
            recall.deregister(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_call_before_or_after_flagging_is_seen_and_wakes_the_flagged() {
        let recall = Recall::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let entry = Arc::new(Entry {
            waker: Waker::from(count.clone()),
            parked: AtomicBool::new(false),
        });
        let id = recall.register(entry.clone());

        let early = recall.parked();
        recall.call();
        assert!(recall.called(&early), "a call before the first look");
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "nothing flagged: no wake"
        );

        let late = recall.parked();
        entry.parked.store(true, Ordering::SeqCst);
        assert!(!recall.called(&late));
        recall.call();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(recall.called(&late));

        recall.deregister(id);
        assert!(recall.entries.lock().is_empty());
        recall.call();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_ticket_is_taken_once_flagged_while_parked_and_left_when_dropped() {
        let recall = Arc::new(Recall::default());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut tickets = Vec::new();
        RecallTicket::flag(&mut tickets, &recall, &waker);
        RecallTicket::flag(&mut tickets, &recall, &waker);
        assert_eq!(tickets.len(), 1, "the same waker keeps its ticket");
        assert_eq!(recall.entries.lock().len(), 1);
        recall.call();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);

        RecallTicket::unflag(&tickets, &recall);
        recall.call();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "unflagged: no wake");

        drop(tickets);
        assert!(recall.entries.lock().is_empty());

        // A ticket does not keep a replaced pool's list alive.
        let mut tickets = Vec::new();
        RecallTicket::flag(&mut tickets, &recall, &waker);
        let list = Arc::downgrade(&recall);
        drop(recall);
        assert!(list.upgrade().is_none());
        drop(tickets);
    }
}
