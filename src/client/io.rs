//! The client's socket and its read buffer: hands out whole frames, checked
//! against the size limit before anything is allocated for them. A frame's
//! declared length is never reserved up front: the buffer grows as its
//! bytes arrive (doubling, so a large message costs few copies), and a peer
//! that announces 256 MiB and sends five bytes holds five bytes.

use crate::metrics::SessionMetrics;
use crate::protocol::{FrameHeader, PgError, ProtocolError};
use crate::socket::Stream;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct ClientIo {
    pub stream: Stream,
    pub buf: BytesMut,
    max_message: usize,
    /// This connection's statement, transaction and byte counters.
    pub metrics: SessionMetrics,
    /// RFC 5929 `tls-server-end-point` data of this connection's TLS
    /// session (pgsplit's certificate), for SCRAM-SHA-256-PLUS; `None`
    /// for plain TCP, or a certificate whose signature has no binding.
    pub server_end_point: Option<Arc<[u8]>>,
}

impl ClientIo {
    pub fn new(
        stream: Stream,
        buf: BytesMut,
        max_message: usize,
        metrics: SessionMetrics,
    ) -> ClientIo {
        ClientIo {
            stream,
            buf,
            max_message,
            metrics,
            server_end_point: None,
        }
    }

    /// The largest message the client may send from now on (before
    /// authentication it is small; see `client::LOGIN_MAX_MESSAGE`).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    /// The next whole frame already buffered, without reading.
    pub fn take_frame(&mut self) -> Result<Option<(u8, Bytes)>, ProtocolError> {
        let Some(h) = FrameHeader::peek(&self.buf, self.max_message)? else {
            return Ok(None);
        };
        if self.buf.len() < h.frame_len() {
            return Ok(None);
        }
        Ok(Some((h.tag, self.buf.split_to(h.frame_len()).freeze())))
    }

    /// Reads the next whole frame, waiting for the client; `Ok(None)` when
    /// the client closed the connection cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<(u8, Bytes)>, ClientError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            make_room(&mut self.buf);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ClientError::Gone)
                };
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.metrics.sent(bytes.len());
        crate::socket::write_all(&mut self.stream, bytes)
            .await
            .map_err(|_| ClientError::Gone)
    }

    /// Writes `parts` as one write (see `socket::write_all_vectored`).
    pub async fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), ClientError> {
        self.metrics.sent(parts.iter().map(|p| p.len()).sum());
        crate::socket::write_all_vectored(&mut self.stream, parts)
            .await
            .map_err(|_| ClientError::Gone)
    }

    /// Closes our side and reads whatever the client still sends until it
    /// closes too (at most a second): closing a socket with unread input
    /// resets the connection, and the client could lose the goodbye it was
    /// just sent.
    pub async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let drain = async {
            // On the heap: an array here would make every session's future
            // 4 KiB larger for as long as it lives.
            let mut sink = vec![0u8; 4096];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }

    /// Sends an error; write failures are ignored since the client is
    /// being told goodbye anyway.
    pub async fn send_error(&mut self, error: &PgError) {
        let mut out = BytesMut::new();
        error.encode(&mut out);
        let _ = crate::socket::write_all(&mut self.stream, &out).await;
    }
}

/// The least spare room a read of the client offers.
const MIN_READ_ROOM: usize = 4096;

/// Makes room for the next read: at least `MIN_READ_ROOM`, and as much
/// again as is buffered, so that a message arriving in many reads grows
/// the buffer by doubling. (`BytesMut::reserve` on a buffer whose earlier
/// frames are still referenced allocates only what is asked: asking for a
/// fixed amount each time would copy a large message over and over.)
#[inline]
pub fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_READ_ROOM {
        buf.reserve(MIN_READ_ROOM.max(buf.len()));
    }
}

/// Errors on the client side of a session.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("client connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("client went away")]
    Gone,
    /// The server sent the client a FATAL error (relayed as it came) and
    /// closed: the session ends as it would direct.
    #[error("the server ended the session with a FATAL error")]
    ServerEnded,
    /// Already reported to the client with an ErrorResponse.
    #[error("{}", .0.message)]
    Refused(PgError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpStream;

    async fn pair(max_message: usize) -> (ClientIo, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let metrics = crate::metrics::Metrics::new().session();
        let stream = crate::socket::Stream::Plain(stream);
        (
            ClientIo::new(stream, BytesMut::new(), max_message, metrics),
            peer,
        )
    }

    /// A header that claims 200 MB and ten bytes of body hold about ten
    /// bytes, not 200 MB; the whole message, once sent, is read whole.
    #[tokio::test]
    async fn a_declared_length_is_not_reserved_before_its_bytes_arrive() {
        let (mut io, mut peer) = pair(256 << 20).await;
        let len: u32 = 200_000_000;
        peer.write_all(&[b'Q']).await.unwrap();
        peer.write_all(&len.to_be_bytes()).await.unwrap();
        peer.write_all(&[b'x'; 10]).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(200), io.read_frame()).await;
        assert!(waited.is_err(), "a frame came out of 15 bytes");
        assert!(
            io.buf.capacity() < 64 * 1024,
            "{} bytes reserved",
            io.buf.capacity()
        );

        let (mut io, mut peer) = pair(256 << 20).await;
        let body = vec![b'y'; 3 << 20];
        let mut frame = vec![b'd'];
        frame.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        frame.extend_from_slice(&body);
        let writer = tokio::spawn(async move { peer.write_all(&frame).await.map(|_| peer) });
        let (tag, got) = io.read_frame().await.unwrap().unwrap();
        assert_eq!((tag, got.len()), (b'd', body.len() + 5));
        drop(writer.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_from_its_header() {
        let (mut io, mut peer) = pair(65_539).await;
        peer.write_all(&[b'p', 0, 0x10, 0, 0]).await.unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(5), io.read_frame())
            .await
            .expect("waited for the body of a message over the limit");
        assert!(matches!(
            refused,
            Err(ClientError::Protocol(ProtocolError::TooLarge {
                len: 0x100000,
                ..
            }))
        ));
    }
}
