//! bb8's view of a server: how to open, check and judge a connection.

use crate::server::{LoginTarget, ServerConnection, ServerError};
use std::sync::{Arc, OnceLock};

pub struct ServerManager {
    pub target: LoginTarget,
    /// The ParameterStatus values of the first login, which pgsplit sends
    /// to its clients as a server would.
    pub params: Arc<OnceLock<Vec<(String, String)>>>,
}

impl bb8::ManageConnection for ServerManager {
    /// Boxed: bb8 moves connections in and out of its idle list on every
    /// checkout, and a pointer is cheaper to move than the whole struct.
    type Connection = Box<ServerConnection>;
    type Error = ServerError;

    async fn connect(&self) -> Result<Box<ServerConnection>, ServerError> {
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
