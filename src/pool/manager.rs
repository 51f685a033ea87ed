//! bb8's view of a server: how to open, check and judge a connection.

use crate::server::{LoginTarget, ServerConnection, ServerError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub struct ServerManager {
    pub target: LoginTarget,
    /// The ParameterStatus values of the first login, which pgsplit sends
    /// to its clients as a server would.
    pub params: Arc<OnceLock<Vec<(String, String)>>>,
    /// Connections being opened now, for the pool's metrics.
    pub opening: Arc<AtomicUsize>,
}

impl bb8::ManageConnection for ServerManager {
    /// Boxed: bb8 moves connections in and out of its idle list on every
    /// checkout, and a pointer is cheaper to move than the whole struct.
    type Connection = Box<ServerConnection>;
    type Error = ServerError;

    async fn connect(&self) -> Result<Box<ServerConnection>, ServerError> {
        let _opening = Opening::start(&self.opening);
        let conn = ServerConnection::connect(&self.target).await?;
        let _ = self.params.set(conn.params.clone());
        Ok(Box::new(conn))
    }

    /// Only called with `pool_pre_ping`: an empty query is the cheapest
    /// round trip a server answers.
    async fn is_valid(&self, conn: &mut Box<ServerConnection>) -> Result<(), ServerError> {
        conn.simple_query("")
            .await
            .map(|_| ())
            .map_err(|e| ServerError::Stale(e.to_string()))
    }

    fn has_broken(&self, conn: &mut Box<ServerConnection>) -> bool {
        !conn.is_clean()
    }
}

/// Counts a connection being opened until it is open, failed, or its
/// future dropped (bb8 gives up on it at its timeout).
struct Opening<'a>(&'a AtomicUsize);

impl<'a> Opening<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Opening(count)
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
