//! The sockets pgsplit forwards on, plain TCP or TLS, and the writes of the
//! forwarding path.
//!
//! An enum rather than a trait object or generics: the plain branch is the
//! TcpStream code pgsplit had before TLS (`try_write`, vectored writes,
//! tokio's readiness), behind one predictable branch, and sessions and
//! pools keep one concrete type.

use std::io::{ErrorKind, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A connection to a client or a server.
pub enum Stream {
    Plain(TcpStream),
    /// Boxed: a rustls connection is over a kilobyte, which plain streams
    /// (and every session's state) should not carry.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// This end's address (`None` if the socket cannot tell).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Plain(tcp) => tcp.local_addr().ok(),
            Stream::Tls(tls) => tls.get_ref().0.local_addr().ok(),
        }
    }

    /// "TLSv1_3/TLS13_AES_256_GCM_SHA384" (version and cipher suite), as
    /// the admin console's SHOW CLIENTS and SHOW SERVERS give it; `None`
    /// for plain TCP.
    pub fn tls_description(&self) -> Option<String> {
        let tls = self.tls()?;
        let version = tls.protocol_version().map(|v| format!("{v:?}"));
        let suite = tls
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()));
        Some(
            [version, suite]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// The TLS session's state (peer certificates, ALPN, version); `None`
    /// for plain TCP.
    pub fn tls(&self) -> Option<&rustls::CommonState> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(tls.get_ref().1),
        }
    }

    /// Whether an idle connection is still usable: nothing has arrived on
    /// it (a server that shut down sent a FATAL and closed it). Never
    /// waits. Plain TCP usually costs no system call: tokio already knows
    /// whether the socket became readable. A TLS one is polled once with
    /// a waker that does nothing; what rustls reads that is not data (a
    /// session ticket) leaves it usable.
    pub fn is_idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 64];
        match self {
            // try_read reads only when the reactor saw the socket become
            // readable; otherwise it answers WouldBlock at once.
            Stream::Plain(tcp) => {
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
            }
            Stream::Tls(tls) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(&mut **tls)
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }

    /// Ready when the client may have sent something: for plain TCP, the
    /// socket's readiness (no read, no buffer: what a session that gave
    /// its buffers back waits on); a TLS stream is always "maybe", since
    /// rustls may hold data already read off the socket.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self {
            Stream::Plain(tcp) => tcp.poll_read_ready(cx),
            Stream::Tls(_) => Poll::Ready(Ok(())),
        }
    }

    /// Offers `bytes` to the socket without waiting (a goodbye on a
    /// connection being dropped); whatever does not fit is lost.
    pub fn send_without_waiting(&mut self, bytes: &[u8]) {
        match self {
            Stream::Plain(tcp) => {
                let _ = tcp.try_write(bytes);
            }
            Stream::Tls(tls) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut tls = Pin::new(&mut **tls);
                if let Poll::Ready(Ok(_)) = tls.as_mut().poll_write(&mut cx, bytes) {
                    let _ = tls.poll_flush(&mut cx);
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}

/// Writes all of `bytes`. A plain socket almost always has room for a
/// whole reply or statement, so it is offered them straight away
/// (`try_write`: no future, no waker, no task budget); only what it
/// leaves waits for the socket to become writable. Measured: proxy user
/// time is what sets throughput when the proxy is a single thread
/// (bench/README.md). TLS encrypts into rustls's buffer and flushes.
pub async fn write_all(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    match stream {
        Stream::Plain(tcp) => tcp_write_all(tcp, bytes).await,
        Stream::Tls(tls) => {
            tls.write_all(bytes).await?;
            tls.flush().await
        }
    }
}

pub async fn tcp_write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let written = match stream.try_write(bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    match bytes.get(written..) {
        Some(rest) if !rest.is_empty() => stream.write_all(rest).await,
        _ => Ok(()),
    }
}

/// Writes all of `parts`, in order, offered to the socket in one call
/// (`try_write_vectored`): a client reads them as one arrival, as it
/// would PostgreSQL's one write. Some drivers look at their state when a
/// statement's error arrives, before the ReadyForQuery behind it has
/// been read: sent apart, it can be missed. What the socket leaves waits
/// for it to become writable, part by part. Over TLS the parts go into
/// one record where they fit (rustls's vectored write), then are flushed.
pub async fn write_all_vectored(stream: &mut Stream, parts: &[&[u8]]) -> std::io::Result<()> {
    let slices: Vec<IoSlice> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut written = match stream {
        Stream::Plain(tcp) => match tcp.try_write_vectored(&slices) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        },
        Stream::Tls(tls) => tls.write_vectored(&slices).await?,
    };
    for part in parts {
        let skip = written.min(part.len());
        written -= skip;
        if let Some(rest) = part.get(skip..).filter(|rest| !rest.is_empty()) {
            match stream {
                Stream::Plain(tcp) => tcp.write_all(rest).await?,
                Stream::Tls(tls) => tls.write_all(rest).await?,
            }
        }
    }
    match stream {
        Stream::Plain(_) => Ok(()),
        Stream::Tls(tls) => tls.flush().await,
    }
}
