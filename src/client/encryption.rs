//! Whether a client's connection becomes TLS, and whether it may stay
//! plain: PostgreSQL's SSLRequest (answered `S`, then the handshake),
//! PostgreSQL 17's direct TLS (`sslnegotiation=direct`: the first bytes
//! are a TLS ClientHello, and ALPN `postgresql` is required), and
//! `client_tls_sslmode`'s verdict on a client that stayed plain.

use super::io::ClientError;
use super::startup::{read_opening, Opening};
use crate::config::ClientTlsMode;
use crate::metrics::Metrics;
use crate::protocol::error::sqlstate;
use crate::protocol::PgError;
use crate::socket::Stream;
use crate::tls::{ClientTls, Outcome, ALPN_POSTGRESQL};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// A connection whose opening has been read.
pub struct Opened {
    pub stream: Stream,
    pub buf: BytesMut,
    pub opening: Result<Opening, ClientError>,
    /// The `tls-server-end-point` of its TLS session, if it has one.
    pub server_end_point: Option<Arc<[u8]>>,
}

/// The first byte of a TLS handshake record. A startup packet starts with
/// the high byte of its length, 0 for any packet pgsplit accepts.
const TLS_HANDSHAKE: u8 = 0x16;

/// Who is opening, for the log lines and metrics of what TLS decides.
pub struct Peer<'a> {
    pub addr: &'a SocketAddr,
    pub metrics: &'a Metrics,
}

impl Peer<'_> {
    fn count(&self, outcome: Outcome) {
        self.metrics.tls_negotiated("client", outcome.label());
    }
}

/// Reads the opening of a new connection, making the TLS handshake on the
/// way when the client asks for it and `tls` is configured. `None` when
/// the connection ended in a failed handshake (nothing more can be said
/// to such a client).
pub async fn open(
    tcp: TcpStream,
    tls: Option<&ClientTls>,
    mode: ClientTlsMode,
    peer: Peer<'_>,
) -> Option<Opened> {
    // Enough for any usual startup packet; grown for a larger one. A
    // session keeps it until it first reads a statement.
    let mut buf = BytesMut::with_capacity(super::STARTUP_BUFFER);
    let mut stream = match tls {
        Some(tls) if starts_with_tls(&tcp).await => direct(tls, tcp, &peer).await?,
        _ => Stream::Plain(tcp),
    };
    let opening = loop {
        let offer = tls.is_some() && !stream.is_tls();
        match read_opening(&mut stream, &mut buf, offer).await {
            Ok(Opening::TlsRequest) => stream = upgrade(stream, tls?, &peer).await?,
            other => break other,
        }
    };
    let opening = match opening {
        Ok(opening) if admit(mode, stream.is_tls(), &opening) == Admission::RefusePlain => {
            tracing::info!(peer = %peer.addr, "plain client refused: client_tls_sslmode requires TLS");
            peer.count(Outcome::PlainRefused);
            // PgBouncer's words; PostgreSQL's class for a connection its
            // pg_hba.conf refuses for want of encryption.
            Err(ClientError::Refused(PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "SSL required",
            )))
        }
        other => other,
    };
    let server_end_point = match stream.is_tls() {
        true => tls.and_then(ClientTls::server_end_point),
        false => None,
    };
    Some(Opened {
        stream,
        buf,
        opening,
        server_end_point,
    })
}

/// What `client_tls_sslmode` says of a connection that has opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// A session in plain TCP where TLS is required.
    RefusePlain,
}

/// Cancel requests pass in plain TCP under every mode: libpq before 17
/// sends them unencrypted whatever its connection used, and one carries
/// nothing but the key it cancels with.
pub fn admit(mode: ClientTlsMode, encrypted: bool, opening: &Opening) -> Admission {
    match opening {
        Opening::Session(_) if mode.requires_tls() && !encrypted => Admission::RefusePlain,
        _ => Admission::Admit,
    }
}

/// Whether the client's first byte opens a TLS handshake (looked at, not
/// read). A client that closes or fails here is found by the read after.
async fn starts_with_tls(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1)) && first[0] == TLS_HANDSHAKE
}

/// Direct TLS: the handshake straight away, then the ALPN check.
async fn direct(tls: &ClientTls, tcp: TcpStream, peer: &Peer<'_>) -> Option<Stream> {
    let mut stream = handshake(tls, tcp, peer).await?;
    if stream.tls().and_then(|s| s.alpn_protocol()) == Some(ALPN_POSTGRESQL) {
        return Some(stream);
    }
    tracing::warn!(peer = %peer.addr, "direct TLS connection without ALPN \"postgresql\": closed");
    peer.count(Outcome::NoAlpn);
    // PostgreSQL 17 closes such a connection without a word; over the
    // TLS session just made, pgsplit says why first.
    let error = PgError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        "received direct SSL connection request without ALPN protocol negotiation extension",
    );
    let mut out = BytesMut::new();
    error.encode(&mut out);
    let _ = crate::socket::write_all(&mut stream, &out).await;
    None
}

/// After an SSLRequest: `S`, then the handshake.
async fn upgrade(stream: Stream, tls: &ClientTls, peer: &Peer<'_>) -> Option<Stream> {
    match stream {
        Stream::Plain(mut tcp) => {
            crate::socket::tcp_write_all(&mut tcp, b"S").await.ok()?;
            handshake(tls, tcp, peer).await
        }
        // Not reached: `read_opening` refuses an SSLRequest inside TLS.
        encrypted => Some(encrypted),
    }
}

async fn handshake(tls: &ClientTls, tcp: TcpStream, peer: &Peer<'_>) -> Option<Stream> {
    match tls.accept(tcp).await {
        Ok(stream) => {
            peer.count(Outcome::Encrypted);
            if let Some(session) = stream.tls() {
                tracing::debug!(peer = %peer.addr, version = session.protocol_version().and_then(|v| v.as_str()).unwrap_or("unknown"),
                    cipher = session.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("unknown"),
                    "client TLS session");
            }
            Some(stream)
        }
        Err(error) => {
            tracing::warn!(peer = %peer.addr, %error, "TLS handshake with a client failed");
            peer.count(Outcome::HandshakeFailed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::startup::StartupParams;

    fn session() -> Opening {
        Opening::Session(StartupParams {
            user: "u".into(),
            database: "d".into(),
            params: vec![],
        })
    }

    #[test]
    fn plain_sessions_are_refused_from_require_up() {
        use ClientTlsMode::*;
        for (mode, plain) in [
            (Disable, Admission::Admit),
            (Allow, Admission::Admit),
            (Prefer, Admission::Admit),
            (Require, Admission::RefusePlain),
            (VerifyCa, Admission::RefusePlain),
            (VerifyFull, Admission::RefusePlain),
        ] {
            assert_eq!(admit(mode, false, &session()), plain, "{mode:?}");
            assert_eq!(admit(mode, true, &session()), Admission::Admit, "{mode:?}");
        }
    }

    #[test]
    fn plain_cancel_requests_pass_under_every_mode() {
        let cancel = Opening::Cancel {
            pid: 1,
            secret: 2,
            forwarded: false,
        };
        assert_eq!(
            admit(ClientTlsMode::VerifyFull, false, &cancel),
            Admission::Admit
        );
    }
}
