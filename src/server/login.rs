//! Opening a server connection: TCP, StartupMessage, then the login's
//! exchange (`handshake`: authentication, ParameterStatus, BackendKeyData)
//! up to ReadyForQuery.

use super::credential::CredentialSlot;
use super::handshake::{Handshake, Step};
use super::{ServerConnection, ServerError};
use crate::protocol::FrameHeader;
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    }
}

pub(super) async fn connect(target: &LoginTarget) -> Result<ServerConnection, ServerError> {
    tokio::time::timeout(target.connect_timeout, connect_inner(target))
        .await
        .map_err(|_| ServerError::Timeout(target.connect_timeout))?
}

async fn connect_inner(target: &LoginTarget) -> Result<ServerConnection, ServerError> {
    let stream = TcpStream::connect(&*target.addr).await?;
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
    log_in(&mut conn, target).await?;
    Ok(conn)
}

/// Runs the login's exchange (`Handshake`) until ReadyForQuery.
async fn log_in(conn: &mut ServerConnection, target: &LoginTarget) -> Result<(), ServerError> {
    // TLS to servers (not yet) would pass its certificate hash here for
    // channel binding.
    let mut handshake = Handshake::new(&target.user, target.credential.get(), None);
    loop {
        let (tag, body) = next(conn).await?;
        match handshake.on_message(tag, &body)? {
            Step::Send(out) => conn.stream.write_all(&out).await?,
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
