//! Server to client: stream the server's bytes to the client as they come.
//! What each frame means is the exchange's to judge (`exchange`); here the
//! bytes move. Rows pass through without being copied or held whole: a
//! large DataRow is forwarded as its bytes arrive.

use super::exchange::{Exchange, Garbage, Scan};
use super::io::{ClientError, ClientIo};
use crate::server::ServerConnection;
use bytes::{Buf, Bytes};

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
/// holds to the client. What the server sent in one arrival goes to the
/// client in one write, also when pgsplit cuts frames out of it or puts
/// its own in: the common case (nothing cut) writes the buffer's front as
/// it is; otherwise the stretches between cut-outs and the frames put in
/// are gathered and written together.
pub async fn relay(
    exchange: &mut Exchange,
    conn: &mut ServerConnection,
    io: &mut ClientIo,
) -> Result<(), RelayError> {
    let first = exchange.scan(&conn.read_buf, &mut conn.prepared)?;
    if first.cut == 0 {
        if first.forward > 0 {
            io.write(&conn.read_buf[..first.forward])
                .await
                .map_err(RelayError::Client)?;
            conn.read_buf.advance(first.forward);
        }
        return Ok(());
    }
    relay_spliced(exchange, conn, io, first).await
}

/// An arrival with frames cut out or replaced (`first`: its first scan).
#[inline(never)]
async fn relay_spliced(
    exchange: &mut Exchange,
    conn: &mut ServerConnection,
    io: &mut ClientIo,
    first: Scan,
) -> Result<(), RelayError> {
    // Stretches of the read buffer, and the frames put in after each.
    let mut stretches: Vec<(std::ops::Range<usize>, Option<Bytes>)> = Vec::new();
    let mut at = 0;
    let mut scan = first;
    loop {
        let Scan {
            forward,
            cut,
            inject,
        } = scan;
        stretches.push((at..at + forward, inject));
        at += forward + cut;
        if cut == 0 {
            break;
        }
        scan = exchange.scan(&conn.read_buf[at..], &mut conn.prepared)?;
    }
    let buf = &conn.read_buf;
    let mut parts: Vec<&[u8]> = Vec::with_capacity(stretches.len() * 2);
    for (range, inject) in &stretches {
        if !range.is_empty() {
            parts.push(&buf[range.clone()]);
        }
        if let Some(bytes) = inject {
            parts.push(bytes);
        }
    }
    if !parts.is_empty() {
        io.write_parts(&parts).await.map_err(RelayError::Client)?;
    }
    conn.read_buf.advance(at);
    Ok(())
}
