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
    type Connection = ServerConnection;
    type Error = ServerError;

    async fn connect(&self) -> Result<ServerConnection, ServerError> {
        let conn = ServerConnection::connect(&self.target).await?;
        let _ = self.params.set(conn.params.clone());
        Ok(conn)
    }

    /// Only called with `pool_pre_ping`: an empty query is the cheapest
    /// round trip a server answers.
    async fn is_valid(&self, conn: &mut ServerConnection) -> Result<(), ServerError> {
        conn.simple_query("")
            .await
            .map(|_| ())
            .map_err(|e| ServerError::Stale(e.to_string()))
    }

    fn has_broken(&self, conn: &mut ServerConnection) -> bool {
        !conn.is_clean()
    }
}
