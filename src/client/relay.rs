//! Server to client: stream the server's bytes to the client as they come.
//! What each frame means is the exchange's to judge (`exchange`); here the
//! bytes move. Rows pass through without being copied or held whole: a
//! large DataRow is forwarded as its bytes arrive.

use super::exchange::{Exchange, Garbage, Scan};
use super::io::{ClientError, ClientIo};
use crate::server::ServerConnection;
use bytes::Buf;

#[derive(Debug)]
pub enum RelayError {
    Client(ClientError),
    /// The server sent something that is not a frame.
    Server,
}

impl From<Garbage> for RelayError {
    fn from(_: Garbage) -> Self {
        RelayError::Server
    }
}

/// Forwards whatever whole or passing-through frames `conn.read_buf`
/// holds to the client, one write per stretch between cut-outs.
pub async fn relay(
    exchange: &mut Exchange,
    conn: &mut ServerConnection,
    io: &mut ClientIo,
) -> Result<(), RelayError> {
    loop {
        let Scan {
            forward,
            cut,
            inject,
        } = exchange.scan(&conn.read_buf, &mut conn.prepared)?;
        if forward > 0 {
            io.write(&conn.read_buf[..forward])
                .await
                .map_err(RelayError::Client)?;
        }
        conn.read_buf.advance(forward + cut);
        if let Some(bytes) = inject {
            io.write(&bytes).await.map_err(RelayError::Client)?;
        }
        if cut == 0 {
            return Ok(());
        }
    }
}
