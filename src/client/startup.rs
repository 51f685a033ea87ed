//! The start of a client connection: SSL and GSS encryption requests
//! (an SSLRequest is handed to `encryption` when TLS is on, else refused
//! with 'N'; GSS is always refused), cancel requests, and the
//! StartupMessage with its protocol version and parameters.

use super::io::ClientError;
use crate::protocol::backend;
use crate::protocol::error::sqlstate;
use crate::protocol::startup::{self, StartupPacket};
use crate::protocol::{PgError, ProtocolError};
use crate::socket::Stream;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;

/// What the client asked for.
pub enum Opening {
    Session(StartupParams),
    Cancel {
        pid: i32,
        secret: i32,
        forwarded: bool,
    },
    /// An SSLRequest, with nothing after it, that pgsplit will accept:
    /// the caller answers `S` and makes the TLS handshake.
    TlsRequest,
}

#[derive(Debug, Clone)]
pub struct StartupParams {
    pub user: String,
    pub database: String,
    /// Every parameter as sent (user and database included).
    pub params: Vec<(String, String)>,
}

impl StartupParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads packets until a StartupMessage or CancelRequest arrives, or an
/// SSLRequest when `offer_tls` (TLS configured, stream still plain).
pub async fn read_opening(
    stream: &mut Stream,
    buf: &mut BytesMut,
    offer_tls: bool,
) -> Result<Opening, ClientError> {
    loop {
        let packet = read_packet(stream, buf).await?;
        let packet = startup::parse(&packet)?;
        if matches!(
            packet,
            StartupPacket::SslRequest | StartupPacket::GssEncRequest
        ) {
            if !buf.is_empty() {
                // Bytes after an SSLRequest before our answer would be a
                // TLS handshake injected in the clear (CVE-2021-23214).
                return Err(ProtocolError::BadStartup("data after encryption request").into());
            }
            if stream.is_tls() {
                // As PgBouncer ("SSL req inside SSL") and PostgreSQL do.
                return Err(ProtocolError::BadStartup("encryption request inside TLS").into());
            }
        }
        match packet {
            StartupPacket::SslRequest if offer_tls => return Ok(Opening::TlsRequest),
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                crate::socket::write_all(stream, b"N").await?;
            }
            StartupPacket::Cancel {
                pid,
                secret,
                forwarded,
            } => {
                return Ok(Opening::Cancel {
                    pid,
                    secret,
                    forwarded,
                })
            }
            StartupPacket::Startup {
                minor,
                params,
                protocol_options,
            } => {
                if minor > 0 || !protocol_options.is_empty() {
                    let mut out = BytesMut::new();
                    backend::negotiate_protocol_version(protocol_options, &mut out);
                    crate::socket::write_all(stream, &out).await?;
                }
                return startup_params(params).map(Opening::Session);
            }
        }
    }
}

/// A Terminate message: what a driver that gives up before logging in may
/// send first (node-postgres's `end()` right after `connect()`).
const TERMINATE: &[u8] = b"X\0\0\0\x04";

async fn read_packet(stream: &mut Stream, buf: &mut BytesMut) -> Result<BytesMut, ClientError> {
    loop {
        // Read as a startup packet it is a bad length; PostgreSQL closes
        // without a word, and a client saying goodbye expects no answer.
        if buf.starts_with(TERMINATE) {
            return Err(ClientError::Gone);
        }
        if let Some(len) = startup::packet_len(buf)? {
            if buf.len() >= len {
                return Ok(buf.split_to(len));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ClientError::Gone);
        }
    }
}

fn startup_params(params: Vec<(String, String)>) -> Result<StartupParams, ClientError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let user = get("user").filter(|u| !u.is_empty()).ok_or_else(|| {
        ClientError::Refused(PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet",
        ))
    })?;
    if get("replication").is_some_and(|r| r != "false" && r != "0" && r != "off") {
        return Err(ClientError::Refused(PgError::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "pgsplit does not proxy replication connections",
        )));
    }
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(StartupParams {
        user,
        database,
        params,
    })
}
