//! The client's socket and its read buffer: hands out whole frames, checked
//! against the size limit before anything is allocated for them.

use crate::metrics::SessionMetrics;
use crate::protocol::{FrameHeader, PgError, ProtocolError};
use bytes::{Bytes, BytesMut};
use crate::socket::Stream;
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

    /// The next whole frame already buffered, without reading.
    pub fn take_frame(&mut self) -> Result<Option<(u8, Bytes)>, ProtocolError> {
        let Some(h) = FrameHeader::peek(&self.buf, self.max_message)? else {
            return Ok(None);
        };
        if self.buf.len() < h.frame_len() {
            self.buf.reserve(h.frame_len() - self.buf.len());
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
            let mut sink = [0u8; 4096];
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
