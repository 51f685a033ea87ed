//! The accept loop at the open file limit. An accept that fails with
//! EMFILE or ENFILE leaves the client in the listen queue, where it would
//! wait for good; and since Linux takes the descriptor before it looks at
//! the queue, the failure repeats on every call, a client waiting or not,
//! and the loop would spin on it. Instead the reserve descriptor is closed
//! and, if a client is waiting, it is accepted, told `FATAL 53300 sorry,
//! too many clients already` (PostgreSQL's words) and its connection
//! closed; the reserve is taken again at once (no await in between, so no
//! other task takes the descriptor meanwhile), and the loop pauses a
//! moment. One log line a second at most says how many were refused.

use crate::app::App;
use crate::fd_limit::{Reserve, Throttle};
use crate::metrics::Refusal;
use crate::protocol::error::sqlstate;
use crate::protocol::PgError;
use bytes::BytesMut;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the refused client's own bytes (its startup packet) are read
/// after the error is sent, so that closing does not reset the connection
/// and lose the error before the client reads it.
const DRAIN: Duration = Duration::from_millis(100);
/// The pause after each refusal: a flood of connections costs a bounded
/// share of a core.
const PAUSE: Duration = Duration::from_millis(10);
/// The pause when no reserve could be taken again: the loop waits for a
/// descriptor to be freed rather than spin.
const NO_RESERVE: Duration = Duration::from_millis(50);

pub struct AtFdLimit {
    reserve: Reserve,
    log: Throttle,
    refused: u64,
}

impl AtFdLimit {
    pub fn new() -> AtFdLimit {
        AtFdLimit {
            reserve: Reserve::open(),
            log: Throttle::new(Duration::from_secs(1)),
            refused: 0,
        }
    }

    /// `error` (EMFILE or ENFILE) came from an accept: refuses the client
    /// waiting, if one is.
    pub async fn refuse_one(&mut self, app: &App, listener: &TcpListener, error: &std::io::Error) {
        if !self.reserve.release() {
            self.reserve.restore();
            if let Some(skipped) = self.log.allow(Instant::now()) {
                tracing::error!(%error, log_lines_skipped = skipped,
                    "out of file descriptors, and none in reserve to refuse clients with: they wait until some close");
            }
            tokio::time::sleep(NO_RESERVE).await;
            return;
        }
        let waiting = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
        let Poll::Ready(Ok((stream, peer))) = waiting else {
            // Nobody was waiting: the descriptor goes back to the reserve.
            self.reserve.restore();
            return;
        };
        app.metrics.refused(Refusal::FdLimit);
        self.refused += 1;
        refuse(stream).await;
        self.reserve.restore();
        if let Some(skipped) = self.log.allow(Instant::now()) {
            tracing::error!(%error, %peer, refused_clients = self.refused, log_lines_skipped = skipped,
                max_client_conn = app.config().max_client_conn,
                "out of file descriptors: new clients are refused with FATAL 53300 until some close; raise pgsplit's open file limit (ulimit -n, LimitNOFILE) or lower max_client_conn");
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Tells the client and closes its connection.
async fn refuse(mut stream: TcpStream) {
    let mut out = BytesMut::new();
    PgError::fatal(
        sqlstate::TOO_MANY_CONNECTIONS,
        "sorry, too many clients already",
    )
    .encode(&mut out);
    let goodbye = async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(DRAIN, goodbye).await;
}
