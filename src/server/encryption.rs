//! How pgsplit asks a server for TLS, as libpq does: an SSLRequest before
//! the StartupMessage, and the handshake after the server's `S`. What
//! the server's `N` means depends on `server_tls_sslmode`: plain under
//! `prefer`, no connection from `require` up.

use super::ServerError;
use crate::socket::Stream;
use crate::tls::{Outcome, ServerTls};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to `addr` and, when `tls` is configured, negotiates it.
pub async fn open(addr: &str, tls: Option<&ServerTls>) -> Result<Stream, ServerError> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(ServerError::connecting)?;
    // Statements are small request/response exchanges: Nagle would add
    // delay to every one of them.
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut out);
    tcp.write_all(&out).await?;
    // One byte and no more: whatever follows an `S` is the server's TLS,
    // for rustls to read (bytes a man in the middle slipped in before the
    // handshake must not be taken as the server's: CVE-2021-23222).
    let answer = tcp.read_u8().await?;
    match answer {
        b'S' => tls
            .connect(tcp, addr)
            .await
            .map_err(ServerError::TlsHandshake),
        b'N' if tls.mode.requires_tls() => Err(ServerError::TlsRefused),
        b'N' => Ok(Stream::Plain(tcp)),
        // An ErrorResponse: a server too old for SSLRequest, or one that
        // could not start a backend; either way no session here.
        other => Err(ServerError::Protocol(format!(
            "the server answered the SSLRequest with {:?}, not S or N",
            other as char
        ))),
    }
}

/// What became of TLS on a connection attempt, for the metrics; `None`
/// when TLS to servers is off or the attempt failed for another reason.
pub fn outcome(
    tls: Option<&ServerTls>,
    result: &Result<super::ServerConnection, ServerError>,
) -> Option<Outcome> {
    tls?;
    match result {
        Ok(conn) if conn.stream.is_tls() => Some(Outcome::Encrypted),
        Ok(_) => Some(Outcome::PlainFallback),
        Err(ServerError::TlsRefused) => Some(Outcome::TlsRefused),
        Err(ServerError::TlsHandshake(_)) => Some(Outcome::HandshakeFailed),
        Err(_) => None,
    }
}
