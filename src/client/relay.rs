//! Server to client: stream the server's bytes to the client as they come,
//! looking only at frame headers. ReadyForQuery ends an exchange and gives
//! the transaction status; ParseComplete / CloseComplete answering a
//! message pgsplit added itself are cut out; an ErrorResponse means the
//! rest of the batch was skipped. Rows pass through without being copied
//! or held whole: a large DataRow is forwarded as its bytes arrive.

use super::io::{ClientError, ClientIo};
use crate::protocol::error::response_field;
use crate::protocol::{status, tag, FrameHeader};
use crate::server::ServerConnection;
use bytes::Buf;
use std::collections::{HashSet, VecDeque};
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
    /// ReadyForQuery, for a Query or FunctionCall.
    Ready,
    /// ReadyForQuery, for a Sync.
    Sync,
}

impl Expect {
    fn is_ready(&self) -> bool {
        matches!(self, Expect::Ready | Expect::Sync)
    }
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
    /// SQLSTATE classes of the ErrorResponses relayed, for the metrics.
    pub errors: Vec<[u8; 2]>,
    /// A FATAL (or PANIC) ErrorResponse was relayed: the server ends the
    /// session after it.
    pub fatal: bool,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            expect: VecDeque::new(),
            pending: 0,
            tx_status: status::IDLE,
            passthrough: 0,
            errors: Vec::new(),
            fatal: false,
        }
    }
}

impl Exchange {
    pub fn sent(&mut self, expect: Expect) {
        if expect.is_ready() {
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
    /// holds to the client, one write per stretch between cut-outs.
    pub async fn relay(
        &mut self,
        conn: &mut ServerConnection,
        io: &mut ClientIo,
    ) -> Result<(), RelayError> {
        loop {
            let Scan { forward, cut } = self.scan(&conn.read_buf, &mut conn.prepared)?;
            if forward > 0 {
                io.write(&conn.read_buf[..forward])
                    .await
                    .map_err(RelayError::Client)?;
            }
            conn.read_buf.advance(forward + cut);
            if cut == 0 {
                return Ok(());
            }
        }
    }

    /// Looks at the bytes at the front of `buf` (sans I/O): how many go to
    /// the client as they are, and how many after those are cut out. Frames
    /// not wholly there yet are forwarded as far as they go, except the
    /// tiny ones whose content matters.
    pub fn scan(&mut self, buf: &[u8], prepared: &mut HashSet<String>) -> Result<Scan, RelayError> {
        let mut at = 0;
        loop {
            if self.passthrough > 0 {
                let n = self.passthrough.min(buf.len() - at);
                at += n;
                self.passthrough -= n;
                if self.passthrough > 0 {
                    return Ok(Scan {
                        forward: at,
                        cut: 0,
                    });
                }
                continue;
            }
            let rest = &buf[at..];
            let Some(h) = FrameHeader::peek(rest, usize::MAX).map_err(|_| RelayError::Server)?
            else {
                return Ok(Scan {
                    forward: at,
                    cut: 0,
                });
            };
            match h.tag {
                tag::READY_FOR_QUERY => {
                    let Some(&s) = rest.get(FrameHeader::SIZE) else {
                        return Ok(Scan {
                            forward: at,
                            cut: 0,
                        });
                    };
                    self.ready(s);
                    at += h.frame_len();
                }
                tag::PARSE_COMPLETE | tag::CLOSE_COMPLETE => {
                    if self.completes(h.tag) {
                        return Ok(Scan {
                            forward: at,
                            cut: h.frame_len(),
                        });
                    }
                    at += h.frame_len();
                }
                tag::ERROR_RESPONSE => {
                    // Whole before it goes: its severity and code matter.
                    let Some(frame) = rest.get(..h.frame_len()) else {
                        return Ok(Scan {
                            forward: at,
                            cut: 0,
                        });
                    };
                    self.batch_failed(prepared);
                    self.errors.push(error_class(frame));
                    self.fatal |= is_fatal(frame);
                    at += h.frame_len();
                }
                tag::COPY_IN_RESPONSE => {
                    self.copy_in_started();
                    self.passthrough = h.frame_len();
                }
                _ => self.passthrough = h.frame_len(),
            }
        }
    }

    fn ready(&mut self, status: u8) {
        self.tx_status = status;
        self.pending = self.pending.saturating_sub(1);
        while let Some(e) = self.expect.pop_front() {
            if e.is_ready() {
                break;
            }
        }
    }

    /// The server ignores a Sync that reaches it in copy-in mode: the
    /// batch's Sync, sent before the client knew the statement was a COPY
    /// FROM STDIN, gets no ReadyForQuery of its own; the one the client
    /// sends after CopyDone or CopyFail does. (Clients wait for
    /// CopyInResponse before sending data, so that Sync is the last one
    /// sent.) A simple Query's ReadyForQuery still comes.
    fn copy_in_started(&mut self) {
        if matches!(
            self.expect.iter().find(|e| e.is_ready()),
            Some(Expect::Sync)
        ) {
            self.ready(status::IN_TRANSACTION);
            // Still inside the COPY: whatever the real status, this
            // connection is busy until the coming ReadyForQuery.
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
    fn batch_failed(&mut self, prepared: &mut HashSet<String>) {
        let unanswered = self.expect.iter().take_while(|e| !e.is_ready());
        let changes: Vec<&Change> = unanswered
            .filter_map(|e| match e {
                Expect::Parse { change, .. } | Expect::CloseComplete { change, .. } => {
                    change.as_ref()
                }
                Expect::Ready | Expect::Sync => None,
            })
            .collect();
        for change in changes.into_iter().rev() {
            if change.was_present {
                prepared.insert(change.name.to_string());
            } else {
                prepared.remove(&*change.name);
            }
        }
    }
}

/// The outcome of `Exchange::scan`.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    pub forward: usize,
    pub cut: usize,
}

#[derive(Debug)]
pub enum RelayError {
    Client(ClientError),
    /// The server sent something that is not a frame.
    Server,
}

/// The SQLSTATE class of an ErrorResponse frame ("??" when the frame is
/// not all there or has no code field).
fn error_class(frame: &[u8]) -> [u8; 2] {
    match field(frame, b'C') {
        Some([a, b, ..]) => [*a, *b],
        _ => *b"??",
    }
}

/// Whether an ErrorResponse ends the server session: its non-localized
/// severity (V, PostgreSQL 9.6 and later), else the localized one (S).
fn is_fatal(frame: &[u8]) -> bool {
    matches!(
        field(frame, b'V').or_else(|| field(frame, b'S')),
        Some(b"FATAL" | b"PANIC")
    )
}

/// One field of a whole ErrorResponse frame.
fn field(frame: &[u8], kind: u8) -> Option<&[u8]> {
    response_field(frame.get(FrameHeader::SIZE..)?, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
    const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";
    const BIND_COMPLETE: &[u8] = b"2\0\0\0\x04";
    const READY_IDLE: &[u8] = b"Z\0\0\0\x05I";
    const READY_IN_TX: &[u8] = b"Z\0\0\0\x05T";
    const DATA_ROW_ONE_COLUMN: &[u8] = b"D\0\0\0\x0b\0\x01\0\0\0\x011";

    fn bytes(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn change(name: &str, was_present: bool) -> Option<Change> {
        Some(Change {
            name: Arc::from(name),
            was_present,
        })
    }

    #[test]
    fn forwards_everything_and_reads_status() {
        let mut x = Exchange::default();
        x.sent(Expect::Ready);
        let buf = bytes(&[DATA_ROW_ONE_COLUMN, READY_IN_TX]);
        let scan = x.scan(&buf, &mut HashSet::new()).unwrap();
        assert_eq!(
            scan,
            Scan {
                forward: buf.len(),
                cut: 0
            }
        );
        assert_eq!(x.pending, 0);
        assert!(x.in_transaction());
    }

    #[test]
    fn cuts_out_completions_of_added_messages() {
        let mut x = Exchange::default();
        x.sent(Expect::CloseComplete {
            swallow: true,
            change: None,
        });
        x.sent(Expect::Parse {
            swallow: true,
            change: None,
        });
        x.sent(Expect::Parse {
            swallow: false,
            change: None,
        });
        x.sent(Expect::Ready);
        let buf = bytes(&[
            CLOSE_COMPLETE,
            PARSE_COMPLETE,
            PARSE_COMPLETE,
            BIND_COMPLETE,
            READY_IDLE,
        ]);
        let mut prepared = HashSet::new();
        assert_eq!(
            x.scan(&buf, &mut prepared).unwrap(),
            Scan { forward: 0, cut: 5 }
        );
        assert_eq!(
            x.scan(&buf[5..], &mut prepared).unwrap(),
            Scan { forward: 0, cut: 5 }
        );
        let rest = &buf[10..];
        assert_eq!(
            x.scan(rest, &mut prepared).unwrap(),
            Scan {
                forward: rest.len(),
                cut: 0
            }
        );
        assert_eq!(x.pending, 0);
        assert!(x.expect.is_empty());
    }

    #[test]
    fn large_rows_pass_through_in_pieces() {
        let mut x = Exchange::default();
        x.sent(Expect::Ready);
        let mut row = b"D\0\x01\0\x04".to_vec();
        row.resize(5 + 65536, b'x');
        let mut prepared = HashSet::new();
        assert_eq!(
            x.scan(&row[..1000], &mut prepared).unwrap(),
            Scan {
                forward: 1000,
                cut: 0
            }
        );
        assert_eq!(
            x.scan(&row[1000..], &mut prepared).unwrap(),
            Scan {
                forward: row.len() - 1000,
                cut: 0
            }
        );
        assert_eq!(
            x.scan(READY_IDLE, &mut prepared).unwrap(),
            Scan { forward: 6, cut: 0 }
        );
        assert_eq!(x.pending, 0);
    }

    #[test]
    fn waits_for_the_status_byte() {
        let mut x = Exchange::default();
        x.sent(Expect::Ready);
        assert_eq!(
            x.scan(&READY_IDLE[..5], &mut HashSet::new()).unwrap(),
            Scan { forward: 0, cut: 0 }
        );
        assert_eq!(x.pending, 1);
    }

    #[test]
    fn an_error_undoes_skipped_statement_changes() {
        let mut x = Exchange::default();
        let mut prepared: HashSet<String> = ["old".to_string()].into();
        // Close old (was there), Parse new (was not): both skipped after the error.
        x.sent(Expect::CloseComplete {
            swallow: true,
            change: change("old", true),
        });
        x.sent(Expect::Parse {
            swallow: false,
            change: change("new", false),
        });
        x.sent(Expect::Ready);
        prepared.remove("old");
        prepared.insert("new".to_string());
        let error = b"E\0\0\0\x0cC42601\0\0";
        let buf = bytes(&[error, READY_IDLE]);
        assert_eq!(
            x.scan(&buf, &mut prepared).unwrap(),
            Scan {
                forward: buf.len(),
                cut: 0
            }
        );
        assert_eq!(prepared, ["old".to_string()].into());
        assert_eq!(x.pending, 0);
        assert!(x.expect.is_empty());
    }

    #[test]
    fn garbage_from_the_server_is_an_error() {
        let mut x = Exchange::default();
        assert!(x.scan(b"D\0\0\0\x01", &mut HashSet::new()).is_err());
    }
}
