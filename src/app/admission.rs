//! How many client connections are open, from accept to close, logged in
//! or not, for `max_client_conn`; and whether one more may log in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Default)]
pub struct Admission {
    open: Arc<AtomicUsize>,
}

/// One open client connection; counted until dropped.
pub struct Open {
    open: Arc<AtomicUsize>,
}

impl Admission {
    /// A connection was accepted.
    pub fn enter(&self) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open {
            open: self.open.clone(),
        }
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Open {
    /// Open connections now, this one included.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a client that finished its startup packet may go on to log in:
/// `open` connections (its own included) within `max_client_conn`. The
/// admin console is let in over the limit, as PgBouncer does, so that an
/// operator can still look at a full pgsplit (its own login rules still
/// apply, and `client_login_timeout` bounds what an attacker can hold).
pub fn admits(open: usize, max_client_conn: usize, to_console: bool) -> bool {
    to_console || open <= max_client_conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_until_dropped() {
        let admission = Admission::default();
        let a = admission.enter();
        let b = admission.enter();
        assert_eq!((a.count(), admission.count()), (2, 2));
        drop(a);
        assert_eq!(b.count(), 1);
        drop(b);
        assert_eq!(admission.count(), 0);
    }

    #[test]
    fn the_limit_counts_the_newcomer_and_spares_the_console() {
        assert!(admits(1, 1, false));
        assert!(!admits(2, 1, false));
        assert!(admits(2, 1, true));
        assert!(admits(10_000, 10_000, false));
        assert!(!admits(10_001, 10_000, false));
    }
}
