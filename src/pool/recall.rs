//! Calling parked connections back to their pool: when a client starts
//! waiting for a connection, and at every sweep.
//!
//! Why not a `tokio::sync::Notify`: a parked client waits on it between
//! every two transactions, and each wait made a `Notified` future that
//! took the Notify's lock when first polled and again when dropped, about
//! 360 instructions per statement (callgrind), on the path that sets
//! throughput. Here a parked client registers its task's waker once per
//! parking, and the call itself is a generation number it compares.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

#[derive(Default)]
pub(super) struct Recall {
    /// Bumped by each call back.
    generation: AtomicU64,
    next_id: AtomicU64,
    /// The wakers of the clients holding parked connections, by id.
    wakers: Mutex<Vec<(u64, Waker)>>,
}

/// A parked connection's view of the calls: the generation when it was
/// parked, and its waker's id once registered.
#[derive(Debug)]
pub(super) struct Parked {
    generation: u64,
    waker: Option<u64>,
}

impl Recall {
    /// Calls every parked connection back.
    pub(super) fn call(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for (_, waker) in self.wakers.lock().iter() {
            waker.wake_by_ref();
        }
    }

    /// A connection being parked now.
    pub(super) fn parked(&self) -> Parked {
        Parked {
            generation: self.generation.load(Ordering::SeqCst),
            waker: None,
        }
    }

    /// Whether `parked` was called back; registers `waker` the first time,
    /// so that a later call wakes it. Registered before the generation is
    /// read again: a call either precedes that read or finds the waker.
    pub(super) fn called(&self, parked: &mut Parked, waker: &Waker) -> bool {
        if parked.waker.is_none() {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            self.wakers.lock().push((id, waker.clone()));
            parked.waker = Some(id);
        }
        self.generation.load(Ordering::SeqCst) != parked.generation
    }

    /// The parked connection is taken or gone.
    pub(super) fn forget(&self, parked: Parked) {
        if let Some(id) = parked.waker {
            let mut wakers = self.wakers.lock();
            if let Some(at) = wakers.iter().position(|(i, _)| *i == id) {
                wakers.swap_remove(at);
            }
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
    fn a_call_before_or_after_registering_is_seen_and_wakes_once_registered() {
        let recall = Recall::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());

        let mut early = recall.parked();
        recall.call();
        assert!(recall.called(&mut early, &waker), "a call before the first poll");

        let mut late = recall.parked();
        assert!(!recall.called(&mut late, &waker));
        let before = count.0.load(Ordering::SeqCst);
        recall.call();
        // Both registrations are still there: two wakes.
        assert_eq!(count.0.load(Ordering::SeqCst), before + 2);
        assert!(recall.called(&mut late, &waker));

        recall.forget(early);
        recall.forget(late);
        assert!(recall.wakers.lock().is_empty());
    }
}
