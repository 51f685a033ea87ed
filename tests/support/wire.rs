//! The PostgreSQL wire protocol byte by byte, for tests that must send what
//! no driver would (an error in the middle of a pipeline, a bad Describe
//! subtype, a batch cut off mid-frame) and see exactly what comes back.
//!
//! `frame` builds frontend messages; [`Reader`] reads backend messages from
//! any socket half; [`RawClient`] logs in over trust and reads with a
//! deadline, so a proxy that stops answering fails a test instead of
//! hanging it. A [`Transcript`] is what a client saw, in a form that can be
//! compared between pgsplit and PostgreSQL direct.
//!
//! ```ignore
//! let mut c = RawClient::login(addr, "postgres", "postgres").await;
//! c.send(&[frame::query("select 1"), frame::sync()].concat()).await;
//! let seen = c.read_until_ready(1, Duration::from_secs(5)).await;
//! assert_eq!(seen.summary(), ["T", "D", "C:SELECT 1", "Z:I"]);
//! ```

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Frontend messages, each a whole frame (type byte, length, body).
pub mod frame {
    /// A typed frontend message.
    pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&((4 + body.len()) as u32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// A StartupMessage for protocol 3.0 with `params` (name, value).
    pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (name, value) in params {
            cstr(&mut body, name);
            cstr(&mut body, value);
        }
        body.push(0);
        let mut p = ((4 + body.len()) as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&body);
        p
    }

    pub fn query(sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, sql);
        message(b'Q', &b)
    }

    /// Parse of `sql` as statement `name`, with parameter type OIDs `types`.
    pub fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, name);
        cstr(&mut b, sql);
        b.extend_from_slice(&(types.len() as u16).to_be_bytes());
        for t in types {
            b.extend_from_slice(&t.to_be_bytes());
        }
        message(b'P', &b)
    }

    /// Bind of `statement` to `portal`, text-format `params` (`None`: NULL),
    /// text-format results.
    pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        cstr(&mut b, statement);
        b.extend_from_slice(&0u16.to_be_bytes()); // parameter formats: all text
        b.extend_from_slice(&(params.len() as u16).to_be_bytes());
        for p in params {
            match p {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b.extend_from_slice(&0u16.to_be_bytes()); // result formats: all text
        message(b'B', &b)
    }

    /// Describe; `kind` is `b'S'` (statement) or `b'P'` (portal), or
    /// anything else for a malformed one.
    pub fn describe(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        cstr(&mut b, name);
        message(b'D', &b)
    }

    /// Close; `kind` as for [`describe`].
    pub fn close(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        cstr(&mut b, name);
        message(b'C', &b)
    }

    pub fn execute(portal: &str, max_rows: u32) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        b.extend_from_slice(&max_rows.to_be_bytes());
        message(b'E', &b)
    }

    pub fn sync() -> Vec<u8> {
        message(b'S', b"")
    }

    pub fn flush() -> Vec<u8> {
        message(b'H', b"")
    }

    pub fn terminate() -> Vec<u8> {
        message(b'X', b"")
    }

    pub fn copy_data(data: &[u8]) -> Vec<u8> {
        message(b'd', data)
    }

    pub fn copy_done() -> Vec<u8> {
        message(b'c', b"")
    }

    pub fn copy_fail(why: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, why);
        message(b'f', &b)
    }

    /// FunctionCall of the function with `oid`, text-format `args`,
    /// text-format result.
    pub fn function_call(oid: u32, args: &[&str]) -> Vec<u8> {
        let mut b = oid.to_be_bytes().to_vec();
        b.extend_from_slice(&1u16.to_be_bytes()); // one format code for all args
        b.extend_from_slice(&0u16.to_be_bytes()); // text
        b.extend_from_slice(&(args.len() as u16).to_be_bytes());
        for a in args {
            b.extend_from_slice(&(a.len() as i32).to_be_bytes());
            b.extend_from_slice(a.as_bytes());
        }
        b.extend_from_slice(&0u16.to_be_bytes()); // result: text
        message(b'F', &b)
    }

    fn cstr(b: &mut Vec<u8>, s: &str) {
        b.extend_from_slice(s.as_bytes());
        b.push(0);
    }
}

/// A backend message: type byte and body.
#[derive(Clone)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Message {
    /// The fields of an ErrorResponse or NoticeResponse, by field type byte.
    pub fn fields(&self) -> HashMap<char, String> {
        self.body
            .split(|&b| b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| (f[0] as char, String::from_utf8_lossy(&f[1..]).into_owned()))
            .collect()
    }

    /// The SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn code(&self) -> Option<String> {
        matches!(self.tag, b'E' | b'N')
            .then(|| self.fields().remove(&'C'))
            .flatten()
    }

    /// One word for comparing transcripts: the type, and what tells two
    /// messages of that type apart where it matters (SQLSTATE, command tag,
    /// transaction status, parameter name). Row contents are left out: a
    /// replica may be a moment behind, and the shape is what is compared.
    pub fn summary(&self) -> String {
        let t = self.tag as char;
        let text = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        match self.tag {
            b'E' | b'N' => format!("{t}:{}", self.code().unwrap_or_default()),
            b'C' | b'S' => format!("{t}:{}", text(&self.body)),
            b'Z' => format!("Z:{}", self.body.first().map(|&s| s as char).unwrap_or('?')),
            _ => t.to_string(),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tag {
            b'E' | b'N' => {
                let fields = self.fields();
                write!(
                    f,
                    "{} {} {:?}",
                    self.tag as char,
                    fields.get(&'C').map(String::as_str).unwrap_or("?"),
                    fields.get(&'M').map(String::as_str).unwrap_or("")
                )
            }
            _ => f.write_str(&self.summary()),
        }
    }
}

/// What a client read, and how the reading ended.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    pub messages: Vec<Message>,
    /// The server (or pgsplit) closed the connection.
    pub closed: bool,
    /// The deadline passed before the reading was done.
    pub timed_out: bool,
}

impl Transcript {
    pub fn summary(&self) -> Vec<String> {
        self.messages.iter().map(Message::summary).collect()
    }

    pub fn ready_count(&self) -> usize {
        self.messages.iter().filter(|m| m.tag == b'Z').count()
    }

    pub fn errors(&self) -> Vec<&Message> {
        self.messages.iter().filter(|m| m.tag == b'E').collect()
    }

    /// The summary, then how it ended: for assertion messages.
    pub fn describe(&self) -> String {
        let end = match (self.closed, self.timed_out) {
            (true, _) => " [connection closed]",
            (_, true) => " [no more within the deadline]",
            _ => "",
        };
        format!("{:?}{end}", self.messages)
    }
}

/// Reads whole backend messages from a socket (or half of one).
pub struct Reader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: BytesMut::with_capacity(8192),
        }
    }

    /// The next message; `Ok(None)` when the peer closed the connection
    /// (a reset counts as closed).
    pub async fn next(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = len as usize;
                if len < 4 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("backend message length {len}"),
                    ));
                }
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Ok(Some(Message { tag, body }));
                }
            }
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// A logged-in client speaking raw frames.
pub struct RawClient {
    pub reader: Reader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

/// How long a login may take before the test gives up on it.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

impl RawClient {
    /// Connects to `addr` and logs in over trust as `user` to `database`;
    /// returns once the first ReadyForQuery arrived. Panics on an error, a
    /// close or a timeout.
    pub async fn login(addr: SocketAddr, user: &str, database: &str) -> RawClient {
        Self::try_login(addr, user, database)
            .await
            .unwrap_or_else(|e| panic!("login to {addr} as {user}: {e}"))
    }

    pub async fn try_login(
        addr: SocketAddr,
        user: &str,
        database: &str,
    ) -> Result<RawClient, String> {
        let login = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (read, mut writer) = stream.into_split();
            let startup = frame::startup(&[("user", user), ("database", database)]);
            writer
                .write_all(&startup)
                .await
                .map_err(|e| format!("send startup: {e}"))?;
            let mut reader = Reader::new(read);
            loop {
                match reader.next().await {
                    Ok(Some(m)) if m.tag == b'Z' => return Ok(RawClient { reader, writer }),
                    Ok(Some(m)) if m.tag == b'E' => return Err(format!("refused: {m:?}")),
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("closed during login".into()),
                    Err(e) => return Err(format!("read during login: {e}")),
                }
            }
        };
        tokio::time::timeout(LOGIN_TIMEOUT, login)
            .await
            .unwrap_or_else(|_| Err(format!("no ReadyForQuery within {LOGIN_TIMEOUT:?}")))
    }

    /// Writes `bytes`; panics if the peer does not take them within 5 s
    /// (it stopped reading) or the write fails.
    pub async fn send(&mut self, bytes: &[u8]) {
        match tokio::time::timeout(Duration::from_secs(5), self.writer.write_all(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => panic!("the peer took no bytes for 5 s: it stopped reading"),
        }
    }

    /// Writes `bytes`, reporting rather than panicking on a failure.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Reads until `ready` ReadyForQuery messages have arrived, the
    /// connection closes, or `timeout` passes: whichever comes first.
    pub async fn read_until_ready(&mut self, ready: usize, timeout: Duration) -> Transcript {
        let deadline = Instant::now() + timeout;
        let mut t = Transcript::default();
        while t.ready_count() < ready {
            match tokio::time::timeout_at(deadline, self.reader.next()).await {
                Err(_) => {
                    t.timed_out = true;
                    break;
                }
                Ok(Ok(Some(m))) => t.messages.push(m),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    t.closed = true;
                    break;
                }
            }
        }
        t
    }

    /// Reads until an ErrorResponse (included) or the deadline; for
    /// waiting until a batch has surely reached the server.
    pub async fn read_until_error(&mut self, timeout: Duration) -> Transcript {
        let deadline = Instant::now() + timeout;
        let mut t = Transcript::default();
        loop {
            match tokio::time::timeout_at(deadline, self.reader.next()).await {
                Err(_) => {
                    t.timed_out = true;
                    return t;
                }
                Ok(Ok(Some(m))) => {
                    let error = m.tag == b'E';
                    t.messages.push(m);
                    if error {
                        return t;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    t.closed = true;
                    return t;
                }
            }
        }
    }
}
