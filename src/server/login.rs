//! Opening a server connection: TCP (and TLS, `encryption`),
//! StartupMessage, then the login's exchange (`handshake`: authentication,
//! with channel binding over TLS, ParameterStatus, BackendKeyData) up to
//! ReadyForQuery.

use super::credential::CredentialSlot;
use super::handshake::{Channel, Handshake, Step};
use super::{ServerConnection, ServerError};
use crate::protocol::FrameHeader;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Login messages are small; a server claiming more is broken.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

/// Who to log in as, where.
#[derive(Debug, Clone)]
pub struct LoginTarget {
    pub addr: Arc<str>,
    pub user: String,
    pub database: String,
    /// The user's credential, looked at when connecting (a client's login
    /// may bring it after the pool was made).
    pub credential: Arc<CredentialSlot>,
    pub connect_timeout: Duration,
    /// TLS to this server (`server_tls_sslmode` other than disable).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

/// Targets are alike when they log in alike: the same slot, whatever it
/// holds now (`Keyring` keeps one per user for good).
impl PartialEq for LoginTarget {
    fn eq(&self, other: &LoginTarget) -> bool {
        self.addr == other.addr
            && self.user == other.user
            && self.database == other.database
            && Arc::ptr_eq(&self.credential, &other.credential)
            && self.connect_timeout == other.connect_timeout
            && self.tls == other.tls
    }
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
    log_in(&mut conn, target).await?;
    Ok(conn)
}

/// Runs the login's exchange (`Handshake`) until ReadyForQuery.
async fn log_in(conn: &mut ServerConnection, target: &LoginTarget) -> Result<(), ServerError> {
    let end_point = conn
        .stream
        .tls()
        .and_then(|tls| tls.peer_certificates())
        .and_then(|certs| certs.first())
        .and_then(|cert| crate::tls::tls_server_end_point(cert));
    let channel = Channel {
        tls: conn.stream.is_tls(),
        end_point,
    };
    let mut handshake = Handshake::new(&target.user, target.credential.get(), channel);
    loop {
        let (tag, body) = next(conn).await?;
        match handshake.on_message(tag, &body)? {
            Step::Send(out) => crate::socket::write_all(&mut conn.stream, &out).await?,
            Step::Read => {}
            Step::Parameter(name, value) => conn.params.push((name, value)),
            Step::CancelKey { pid, secret } => {
                conn.backend_pid = pid;
                conn.backend_secret = secret;
            }
            Step::Ready => return Ok(()),
        }
    }
}

/// The next whole message: its type and body.
async fn next(conn: &mut ServerConnection) -> Result<(u8, BytesMut), ServerError> {
    loop {
        if let Some(h) = FrameHeader::peek(&conn.read_buf, MAX_LOGIN_MESSAGE)? {
            if conn.read_buf.len() >= h.frame_len() {
                let body = conn
                    .read_buf
                    .split_to(h.frame_len())
                    .split_off(FrameHeader::SIZE);
                return Ok((h.tag, body));
            }
        }
        if conn.stream.read_buf(&mut conn.read_buf).await? == 0 {
            return Err(ServerError::Closed);
        }
    }
}
