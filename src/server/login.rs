//! Opening a server connection: TCP, StartupMessage, authentication
//! (trust, cleartext, md5, SCRAM-SHA-256 via postgres-protocol) and the
//! ParameterStatus / BackendKeyData that follow, up to ReadyForQuery.

use super::{ServerConnection, ServerError};
use crate::protocol::{tag, FrameHeader};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend, frontend};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
}

pub(super) async fn connect(target: &LoginTarget) -> Result<ServerConnection, ServerError> {
    tokio::time::timeout(target.connect_timeout, connect_inner(target))
        .await
        .map_err(|_| ServerError::Timeout(target.connect_timeout))?
}

async fn connect_inner(target: &LoginTarget) -> Result<ServerConnection, ServerError> {
    let stream = TcpStream::connect(&*target.addr)
        .await
        .map_err(ServerError::connecting)?;
    // Statements are small request/response exchanges: Nagle would add
    // delay to every one of them.
    stream.set_nodelay(true)?;
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
    conn.stream.write_all(&out).await?;
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
    conn.stream.write_all(out).await.map_err(ServerError::from)
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
                let mut scram = false;
                while let Some(m) = mechanisms.next()? {
                    scram |= m == SCRAM_SHA_256;
                }
                if !scram {
                    return Err(ServerError::UnsupportedAuth("SASL without SCRAM-SHA-256"));
                }
                return scram_exchange(conn, password(target)?).await;
            }
            _ => return Err(ServerError::UnsupportedAuth("Kerberos, GSS or SSPI")),
        }
        send(conn, &out).await?;
    }
}

async fn scram_exchange(conn: &mut ServerConnection, password: &str) -> Result<(), ServerError> {
    // No TLS to servers yet, so no channel binding.
    let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut out)?;
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
