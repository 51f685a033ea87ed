//! A raw connection to a PostgreSQL server, logged in and ready for query.
//! The forwarding path reads and writes its socket directly; the few
//! queries pgsplit runs itself go through `simple_query`.

pub mod credential;
pub mod encryption;
mod error;
pub mod handshake;
mod login;
pub mod prepared;
mod scram;

pub use credential::{Credential, CredentialSlot, Keyring};
pub use error::ServerError;
pub use login::LoginTarget;

use crate::protocol::frame::put_frame;
use crate::protocol::{tag, FrameHeader};
use crate::socket::Stream;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;

/// Server messages pgsplit reads itself (login, its own queries) are small.
const MAX_SERVER_MESSAGE: usize = 1 << 30;

pub struct ServerConnection {
    /// The socket; the session reads and writes it directly when forwarding.
    pub stream: Stream,
    /// Bytes read from the server and not yet forwarded or consumed.
    pub read_buf: BytesMut,
    /// ParameterStatus values the server sent at login.
    pub params: Vec<(String, String)>,
    /// The server's BackendKeyData, for forwarding cancel requests.
    pub backend_pid: i32,
    pub backend_secret: i32,
    /// Where it is, for cancel requests and logs.
    pub addr: std::sync::Arc<str>,
    /// The statements pgsplit prepared on this connection for clients
    /// (see `client::statements`), and what their Describes said.
    pub prepared: prepared::Prepared,
    /// Set when the connection must not be reused (cut off mid-reply, left
    /// in a transaction, I/O error); bb8 then drops it.
    pub broken: bool,
    /// Fingerprint of the client settings in force on this connection
    /// (`client::settings`); 0: those of its login.
    pub settings: u64,
}

impl ServerConnection {
    /// Connects, logs in and waits for the first ReadyForQuery.
    pub async fn connect(target: &LoginTarget) -> Result<ServerConnection, ServerError> {
        login::connect(target).await
    }

    /// Sends a simple query and returns its rows as text (NULL as `None`).
    /// For pgsplit's own small queries, never for client traffic.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        self.query_noting(sql, &mut Said::default()).await
    }

    /// Runs commands that change settings (`SET`, `RESET ALL`) and returns
    /// what the server said besides: the ParameterStatus values it reported
    /// and its notices (whole NoticeResponse frames).
    pub async fn set(&mut self, sql: &str) -> Result<Said, ServerError> {
        let mut said = Said::default();
        self.query_noting(sql, &mut said).await?;
        Ok(said)
    }

    /// A simple query; what the server says besides rows goes to `said`.
    /// On an error the connection is marked broken: part of it may have run.
    pub async fn query_noting(
        &mut self,
        sql: &str,
        said: &mut Said,
    ) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        // A simple query replaces the unnamed statement.
        self.prepared.forget_unnamed();
        let mut out = BytesMut::new();
        put_frame(&mut out, tag::QUERY, |b| {
            b.extend_from_slice(sql.as_bytes());
            b.extend_from_slice(&[0]);
        });
        let result = self.run_simple_query(&out, said).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Runs `sql` with text parameters `$1`, `$2`, ... (the extended
    /// protocol, unnamed statement), and returns its rows as text. For
    /// pgsplit's own queries that carry a client's text (auth_query's user
    /// name), which must never be spliced into SQL.
    pub async fn query_params(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        self.prepared.forget_unnamed();
        let mut out = BytesMut::new();
        encode_extended_query(sql, params, &mut out);
        let result = self.run_simple_query(&out, &mut Said::default()).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn run_simple_query(
        &mut self,
        query: &[u8],
        said: &mut Said,
    ) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        crate::socket::write_all(&mut self.stream, query).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (tag, body) = self.read_message().await?;
            match tag {
                tag::DATA_ROW => rows.push(decode_data_row(&body)?),
                tag::PARAMETER_STATUS => said.reported.push(parameter_status(&body)?),
                tag::NOTICE_RESPONSE => put_frame(&mut said.notices, tag, |b| {
                    b.extend_from_slice(&body);
                }),
                tag::ERROR_RESPONSE => error = Some(ServerError::from_error_body(&body)),
                tag::READY_FOR_QUERY => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    }
                }
                _ => {}
            }
        }
    }

    /// Reads one whole message (tag, body) into memory.
    pub(crate) async fn read_message(&mut self) -> Result<(u8, BytesMut), ServerError> {
        loop {
            if let Some(h) = FrameHeader::peek(&self.read_buf, MAX_SERVER_MESSAGE)? {
                if self.read_buf.len() >= h.frame_len() {
                    let mut frame = self.read_buf.split_to(h.frame_len());
                    let body = frame.split_off(FrameHeader::SIZE);
                    return Ok((h.tag, body));
                }
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(ServerError::Closed);
            }
        }
    }

    /// True when nothing unexpected is waiting to be read.
    pub fn is_clean(&self) -> bool {
        !self.broken && self.read_buf.is_empty()
    }

    /// Whether an idle connection is still usable: a server that shut
    /// down or was restarted sent a FATAL and closed it while it sat in the
    /// pool (see `Stream::is_idle_and_open`).
    pub fn is_alive(&mut self) -> bool {
        self.stream.is_idle_and_open()
    }
}

/// Parse, Bind (text parameters, text results), Execute and Sync of the
/// unnamed statement. Text with a NUL cannot be sent (PostgreSQL would
/// refuse it as a string anyway): it is cut there.
fn encode_extended_query(sql: &str, params: &[&str], out: &mut BytesMut) {
    use bytes::BufMut;
    let cstr = |b: &mut BytesMut, text: &str| {
        b.extend_from_slice(text.split('\0').next().unwrap_or_default().as_bytes());
        b.put_u8(0);
    };
    put_frame(out, tag::PARSE, |b| {
        cstr(b, "");
        cstr(b, sql);
        b.put_i16(0);
    });
    put_frame(out, tag::BIND, |b| {
        cstr(b, "");
        cstr(b, "");
        b.put_i16(0);
        b.put_i16(params.len() as i16);
        for param in params {
            b.put_i32(param.len() as i32);
            b.extend_from_slice(param.as_bytes());
        }
        b.put_i16(0);
    });
    put_frame(out, tag::EXECUTE, |b| {
        cstr(b, "");
        b.put_i32(0);
    });
    put_frame(out, tag::SYNC, |_| {});
}

fn decode_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ServerError> {
    let bad = || ServerError::Protocol("malformed DataRow".into());
    let count = u16::from_be_bytes([
        *body.first().ok_or_else(bad)?,
        *body.get(1).ok_or_else(bad)?,
    ]);
    let mut at = 2;
    let mut row = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len_bytes = body.get(at..at + 4).ok_or_else(bad)?;
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let value = body.get(at..at + len as usize).ok_or_else(bad)?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        at += len as usize;
    }
    Ok(row)
}

/// What a server said while running pgsplit's own commands, besides rows.
#[derive(Debug, Default)]
pub struct Said {
    /// ParameterStatus values, in order.
    pub reported: Vec<(String, String)>,
    /// NoticeResponse frames, whole, ready to forward.
    pub notices: BytesMut,
}

/// A ParameterStatus body: name and value.
fn parameter_status(body: &[u8]) -> Result<(String, String), ServerError> {
    let (name, rest) = crate::protocol::frame::cstr(body)?;
    let (value, _) = crate::protocol::frame::cstr(rest)?;
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_row_decodes_values_and_nulls() {
        let body = b"\0\x02\0\0\0\x03abc\xff\xff\xff\xff";
        assert_eq!(
            decode_data_row(body).unwrap(),
            vec![Some("abc".to_string()), None]
        );
        assert!(decode_data_row(b"\0\x01\0\0\0\x09ab").is_err());
    }
}
