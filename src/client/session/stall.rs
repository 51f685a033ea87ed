//! A bound on an exchange that stops making progress. While the session
//! holds a client message back until the server has answered what it was
//! sent (a deferred message, a paused batch), a server that answers
//! nothing for `STALL_CHECK` is asked, on a connection of its own, what its
//! backend is doing. Running a statement (`active`) is progress: a long
//! query is not a stall, and the wait goes on. Anything else means pgsplit
//! waits for answers the server will never send, and the session ends with
//! an error rather than hold its client and its server connection for good.
//! pgsplit tracks what the server answers message by message (`exchange`),
//! so this is a safety net, not the way out of a known case.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// How long the server may be silent while a client message waits on it
/// before pgsplit looks.
pub(super) const STALL_CHECK: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct StallWatch {
    timer: Option<Pin<Box<Sleep>>>,
}

impl StallWatch {
    /// Starts the clock if `waiting` (a client message waits on the
    /// server) and it is not running; stops it if not.
    pub fn waiting(&mut self, waiting: bool) {
        match (waiting, self.timer.is_some()) {
            (true, false) => self.timer = Some(Box::pin(tokio::time::sleep(STALL_CHECK))),
            (false, true) => self.timer = None,
            _ => {}
        }
    }

    /// The server sent something: the clock starts again.
    pub fn progress(&mut self) {
        self.timer = None;
    }

    /// Ready once the server has been silent for `STALL_CHECK`.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.timer {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}
