//! Server to client: stream the server's bytes to the client as they come,
//! looking only at frame headers. ReadyForQuery ends an exchange and gives
//! the transaction status; ParseComplete / CloseComplete answering a
//! message pgsplit added itself are cut out; an ErrorResponse means the
//! rest of the batch was skipped. Rows pass through without being copied
//! or held whole: a large DataRow is forwarded as its bytes arrive.

use super::io::{ClientError, ClientIo};
use crate::protocol::{status, tag, FrameHeader};
use crate::server::ServerConnection;
use bytes::Buf;
use std::collections::VecDeque;
use std::sync::Arc;

/// A response pgsplit waits for, in the order the server sends them.
#[derive(Debug)]
pub enum Expect {
    /// ParseComplete; `swallow` when pgsplit sent the Parse itself.
    Parse {
        swallow: bool,
        change: Option<Change>,
    },
    CloseComplete {
        swallow: bool,
        change: Option<Change>,
    },
    /// ReadyForQuery, for a Sync, Query or FunctionCall.
    Ready,
}

/// A server-side statement pgsplit counted as created or closed when it
/// sent the message, and whether it existed before: if the server skips the
/// message after an error, the old state is put back.
#[derive(Debug)]
pub struct Change {
    pub name: Arc<str>,
    pub was_present: bool,
}

/// The state of the conversation with the server currently held.
pub struct Exchange {
    pub expect: VecDeque<Expect>,
    /// Syncs (and Queries) sent whose ReadyForQuery has not come back.
    pub pending: usize,
    /// From the last ReadyForQuery.
    pub tx_status: u8,
    /// Bytes of a frame already passing through that have not arrived yet.
    passthrough: usize,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            expect: VecDeque::new(),
            pending: 0,
            tx_status: status::IDLE,
            passthrough: 0,
        }
    }
}

impl Exchange {
    pub fn sent(&mut self, expect: Expect) {
        if matches!(expect, Expect::Ready) {
            self.pending += 1;
        }
        self.expect.push_back(expect);
    }

    pub fn in_transaction(&self) -> bool {
        self.tx_status != status::IDLE
    }

    /// Forgets the server's exchange (it was lost or released).
    pub fn reset(&mut self) {
        self.expect.clear();
        self.pending = 0;
        self.passthrough = 0;
    }

    /// Forwards whatever whole or passing-through frames `conn.read_buf`
    /// holds to the client, in one write where nothing is cut out.
    pub async fn relay(
        &mut self,
        conn: &mut ServerConnection,
        io: &mut ClientIo,
    ) -> Result<(), RelayError> {
        let mut at = 0;
        loop {
            if self.passthrough > 0 {
                let n = self.passthrough.min(conn.read_buf.len() - at);
                at += n;
                self.passthrough -= n;
                if self.passthrough > 0 {
                    break;
                }
                continue;
            }
            let rest = &conn.read_buf[at..];
            let Some(h) = FrameHeader::peek(rest, usize::MAX).map_err(|_| RelayError::Server)?
            else {
                break;
            };
            match h.tag {
                tag::READY_FOR_QUERY => {
                    let Some(&s) = rest.get(FrameHeader::SIZE) else {
                        break;
                    };
                    self.ready(s);
                    at += h.frame_len();
                }
                tag::PARSE_COMPLETE | tag::CLOSE_COMPLETE => {
                    if self.completes(h.tag) {
                        io.write(&conn.read_buf[..at])
                            .await
                            .map_err(RelayError::Client)?;
                        conn.read_buf.advance(at + h.frame_len());
                        at = 0;
                        continue;
                    }
                    at += h.frame_len();
                }
                tag::ERROR_RESPONSE => {
                    self.batch_failed(conn);
                    self.passthrough = h.frame_len();
                }
                _ => self.passthrough = h.frame_len(),
            }
        }
        if at > 0 {
            io.write(&conn.read_buf[..at])
                .await
                .map_err(RelayError::Client)?;
            conn.read_buf.advance(at);
        }
        Ok(())
    }

    fn ready(&mut self, status: u8) {
        self.tx_status = status;
        self.pending = self.pending.saturating_sub(1);
        while let Some(e) = self.expect.pop_front() {
            if matches!(e, Expect::Ready) {
                break;
            }
        }
    }

    /// True when the completion answers a message pgsplit added.
    fn completes(&mut self, tag: u8) -> bool {
        match (tag, self.expect.front()) {
            (tag::PARSE_COMPLETE, Some(Expect::Parse { swallow, .. }))
            | (tag::CLOSE_COMPLETE, Some(Expect::CloseComplete { swallow, .. })) => {
                let swallow = *swallow;
                self.expect.pop_front();
                swallow
            }
            _ => false,
        }
    }

    /// After an error the server skips to Sync: the unanswered Parse and
    /// Close messages had no effect, so their changes are undone, newest
    /// first.
    fn batch_failed(&mut self, conn: &mut ServerConnection) {
        let unanswered = self
            .expect
            .iter()
            .take_while(|e| !matches!(e, Expect::Ready));
        let changes: Vec<&Change> = unanswered
            .filter_map(|e| match e {
                Expect::Parse { change, .. } | Expect::CloseComplete { change, .. } => {
                    change.as_ref()
                }
                Expect::Ready => None,
            })
            .collect();
        for change in changes.into_iter().rev() {
            if change.was_present {
                conn.prepared.insert(change.name.to_string());
            } else {
                conn.prepared.remove(&*change.name);
            }
        }
    }
}

#[derive(Debug)]
pub enum RelayError {
    Client(ClientError),
    /// The server sent something that is not a frame.
    Server,
}
