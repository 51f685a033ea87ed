//! Opening a server connection: TCP (and TLS, `encryption`),
//! StartupMessage, authentication (trust, cleartext, md5, SCRAM-SHA-256
//! via postgres-protocol, with channel binding over TLS) and the
//! ParameterStatus / BackendKeyData that follow, up to ReadyForQuery.

use super::{ServerConnection, ServerError};
use crate::protocol::{tag, FrameHeader};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::{backend, frontend};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Login messages are small; a server claiming more is broken.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

/// Who to log in as, where.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginTarget {
    pub addr: Arc<str>,
    pub user: String,
    pub database: String,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// TLS to this server (`server_tls_sslmode` other than disable).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

pub(super) async fn connect(target: &LoginTarget) -> Result<ServerConnection, ServerError> {
    tokio::time::timeout(target.connect_timeout, connect_inner(target))
        .await
        .map_err(|_| ServerError::Timeout(target.connect_timeout))?
}

async fn connect_inner(target: &LoginTarget) -> Result<ServerConnection, ServerError> {
    let stream = super::encryption::open(&target.addr, target.tls.as_deref()).await?;
    let mut conn = ServerConnection {
        stream,
        read_buf: BytesMut::with_capacity(64 * 1024),
        params: Vec::new(),
        backend_pid: 0,
        backend_secret: 0,
        addr: target.addr.clone(),
        prepared: Default::default(),
        broken: false,
        settings: 0,
    };
    let mut out = BytesMut::new();
    let params = [
        ("user", target.user.as_str()),
        ("database", target.database.as_str()),
    ];
    frontend::startup_message(params.iter().copied(), &mut out)?;
    crate::socket::write_all(&mut conn.stream, &out).await?;
    authenticate(&mut conn, target).await?;
    read_until_ready(&mut conn).await?;
    Ok(conn)
}

/// The next message; an ErrorResponse becomes `ServerError::Refused`, so
/// the login steps below only handle what they expect.
async fn next(conn: &mut ServerConnection) -> Result<backend::Message, ServerError> {
    loop {
        if let Some(h) = FrameHeader::peek(&conn.read_buf, MAX_LOGIN_MESSAGE)? {
            if h.tag == tag::ERROR_RESPONSE && conn.read_buf.len() >= h.frame_len() {
                let frame = conn.read_buf.split_to(h.frame_len());
                return Err(ServerError::from_error_body(&frame[FrameHeader::SIZE..]));
            }
        }
        if let Some(message) = backend::Message::parse(&mut conn.read_buf)? {
            return Ok(message);
        }
        if conn.stream.read_buf(&mut conn.read_buf).await? == 0 {
            return Err(ServerError::Closed);
        }
    }
}

async fn send(conn: &mut ServerConnection, out: &BytesMut) -> Result<(), ServerError> {
    crate::socket::write_all(&mut conn.stream, out)
        .await
        .map_err(ServerError::from)
}

fn password(target: &LoginTarget) -> Result<&str, ServerError> {
    target
        .password
        .as_deref()
        .ok_or_else(|| ServerError::NoPassword(target.user.clone()))
}

async fn authenticate(
    conn: &mut ServerConnection,
    target: &LoginTarget,
) -> Result<(), ServerError> {
    loop {
        let mut out = BytesMut::new();
        match next(conn).await? {
            backend::Message::AuthenticationOk => return Ok(()),
            backend::Message::AuthenticationCleartextPassword => {
                frontend::password_message(password(target)?.as_bytes(), &mut out)?;
            }
            backend::Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(
                    target.user.as_bytes(),
                    password(target)?.as_bytes(),
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut out)?;
            }
            backend::Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let (mut scram, mut plus) = (false, false);
                while let Some(m) = mechanisms.next()? {
                    scram |= m == SCRAM_SHA_256;
                    plus |= m == SCRAM_SHA_256_PLUS;
                }
                let end_point = conn
                    .stream
                    .tls()
                    .and_then(|tls| tls.peer_certificates())
                    .and_then(|certs| certs.first())
                    .and_then(|cert| crate::tls::tls_server_end_point(cert));
                let binding = binding(conn.stream.is_tls(), plus, end_point);
                if !scram && binding.mechanism() != SCRAM_SHA_256_PLUS {
                    return Err(ServerError::UnsupportedAuth("SASL without SCRAM-SHA-256"));
                }
                return scram_exchange(conn, password(target)?, binding).await;
            }
            _ => return Err(ServerError::UnsupportedAuth("Kerberos, GSS or SSPI")),
        }
        send(conn, &out).await?;
    }
}

/// The channel binding pgsplit offers a server, as libpq chooses it.
#[derive(Debug, PartialEq, Eq)]
enum Binding {
    /// SCRAM-SHA-256-PLUS bound to the server's certificate.
    EndPoint(Vec<u8>),
    /// TLS, but the server offered no PLUS: "y", so a server that does
    /// support it can tell that a man in the middle removed it.
    Unrequested,
    /// Plain TCP, or a PLUS pgsplit cannot compute (a certificate whose
    /// signature has no tls-server-end-point hash): "n".
    Unsupported,
}

impl Binding {
    fn mechanism(&self) -> &'static str {
        match self {
            Binding::EndPoint(_) => SCRAM_SHA_256_PLUS,
            _ => SCRAM_SHA_256,
        }
    }

    fn for_scram(self) -> ChannelBinding {
        match self {
            Binding::EndPoint(hash) => ChannelBinding::tls_server_end_point(hash),
            Binding::Unrequested => ChannelBinding::unrequested(),
            Binding::Unsupported => ChannelBinding::unsupported(),
        }
    }
}

fn binding(tls: bool, plus_offered: bool, end_point: Option<Vec<u8>>) -> Binding {
    match (tls, plus_offered, end_point) {
        (true, true, Some(hash)) => Binding::EndPoint(hash),
        (true, false, _) => Binding::Unrequested,
        _ => Binding::Unsupported,
    }
}

async fn scram_exchange(
    conn: &mut ServerConnection,
    password: &str,
    binding: Binding,
) -> Result<(), ServerError> {
    let mechanism = binding.mechanism();
    let mut scram = ScramSha256::new(password.as_bytes(), binding.for_scram());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response(mechanism, scram.message(), &mut out)?;
    send(conn, &out).await?;
    match next(conn).await? {
        backend::Message::AuthenticationSaslContinue(body) => scram.update(body.data())?,
        _ => {
            return Err(ServerError::Protocol(
                "unexpected message during SCRAM".into(),
            ))
        }
    }
    out.clear();
    frontend::sasl_response(scram.message(), &mut out)?;
    send(conn, &out).await?;
    match next(conn).await? {
        backend::Message::AuthenticationSaslFinal(body) => scram.finish(body.data())?,
        _ => {
            return Err(ServerError::Protocol(
                "unexpected message during SCRAM".into(),
            ))
        }
    }
    match next(conn).await? {
        backend::Message::AuthenticationOk => Ok(()),
        _ => Err(ServerError::Protocol(
            "expected AuthenticationOk after SCRAM".into(),
        )),
    }
}

async fn read_until_ready(conn: &mut ServerConnection) -> Result<(), ServerError> {
    loop {
        match next(conn).await? {
            backend::Message::ParameterStatus(body) => {
                conn.params
                    .push((body.name()?.to_string(), body.value()?.to_string()));
            }
            backend::Message::BackendKeyData(body) => {
                conn.backend_pid = body.process_id();
                conn.backend_secret = body.secret_key();
            }
            backend::Message::ReadyForQuery(_) => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_is_chosen_as_libpq_chooses_it() {
        let hash = vec![7u8; 32];
        assert_eq!(
            binding(true, true, Some(hash.clone())),
            Binding::EndPoint(hash.clone())
        );
        assert_eq!(binding(true, false, Some(hash.clone())), Binding::Unrequested);
        // Saying "y" to a server that offered PLUS would read as a downgrade.
        assert_eq!(binding(true, true, None), Binding::Unsupported);
        assert_eq!(binding(false, true, Some(hash)), Binding::Unsupported);
        assert_eq!(binding(false, false, None), Binding::Unsupported);
        assert_eq!(Binding::EndPoint(vec![]).mechanism(), SCRAM_SHA_256_PLUS);
        assert_eq!(Binding::Unrequested.mechanism(), SCRAM_SHA_256);
    }
}
