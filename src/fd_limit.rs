//! pgsplit's own open file limit: telling its exhaustion (EMFILE, ENFILE)
//! from a server's fault, a reserve descriptor kept to refuse clients in
//! words when it is reached, a log line at most once a second, and raising
//! the soft limit at start-up.
//!
//! Out of descriptors, an accept fails and a server connection cannot be
//! opened; neither says anything about the clients or the servers. Without
//! care the clients hang in the listen queue, the accept loop spins, and a
//! replica whose connect failed is banned for pgsplit's own shortage.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

/// Whether `error` is the process (EMFILE) or the system (ENFILE) out of
/// file descriptors.
pub fn is_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Whether `error`, or any error that caused it, is [`is_exhaustion`]:
/// for errors from libraries that wrap the `io::Error` (tokio-postgres,
/// bb8).
pub fn caused_by_exhaustion(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>().is_some_and(is_exhaustion) {
            return true;
        }
        next = e.source();
    }
    false
}

/// A descriptor held in reserve: at the limit, closing it lets one more
/// connection be accepted, told why it is refused, and closed; then it is
/// taken again. (The trick of libevent's and nginx's accept loops.)
pub struct Reserve(Option<File>);

impl Reserve {
    pub fn open() -> Reserve {
        Reserve(File::open("/dev/null").ok())
    }

    /// Gives the descriptor back to the process; whether there was one.
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Takes a descriptor again (once one is free).
    pub fn restore(&mut self) {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
    }
}

/// At most one log line per `every`, saying how many were left out.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    skipped: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            skipped: 0,
        }
    }

    /// Whether to log now (`Some`: how many were skipped since the last
    /// line) or stay quiet (`None`).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.skipped += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.skipped))
            }
        }
    }
}

/// Raises the soft open file limit towards the hard one when it is under
/// `wanted` (a client and its share of server connections per client
/// allowed, and some to spare): the common default of 1,024 would stop
/// pgsplit long before `max_client_conn`. Returns the soft limit in force.
pub fn raise_limit(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct
    // passed, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= wanted as libc::rlim_t {
        return Ok(limit.rlim_cur as u64);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max.min(wanted as libc::rlim_t),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(raised.rlim_cur as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_recognised_through_wrapping_errors() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let enfile = io::Error::from_raw_os_error(libc::ENFILE);
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(is_exhaustion(&emfile) && is_exhaustion(&enfile));
        assert!(!is_exhaustion(&refused));

        #[derive(Debug, thiserror::Error)]
        #[error("cannot connect")]
        struct Wrapper(#[source] io::Error);
        assert!(caused_by_exhaustion(&Wrapper(emfile)));
        assert!(!caused_by_exhaustion(&Wrapper(refused)));
        assert!(!caused_by_exhaustion(&io::Error::other("timed out")));
    }

    #[test]
    fn the_log_is_throttled_to_one_line_a_second() {
        let mut throttle = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_millis(1000)), Some(2));
        assert_eq!(throttle.allow(t0 + Duration::from_millis(1500)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(5)), Some(1));
    }

    #[test]
    fn the_reserve_is_given_back_and_taken_again() {
        let mut reserve = Reserve::open();
        assert!(reserve.release());
        assert!(!reserve.release());
        reserve.restore();
        assert!(reserve.release());
    }
}
