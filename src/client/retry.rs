//! A read that fails on a replica before anything of its result reached
//! the client is run once more elsewhere, so a replica going away or a
//! recovery conflict does not show. Until its ReadyForQuery (or up to
//! `HOLD_LIMIT` bytes) the server's reply stays in the server connection's
//! buffer, unforwarded; this module judges that buffer.

use super::batch::{Batch, Planned};
use crate::protocol::error::response_field;
use crate::protocol::{tag, FrameHeader};
use bytes::Bytes;

/// SQLSTATEs after which the same read may succeed elsewhere: recovery
/// conflicts (40001, 40P01) and a server shutting down, crashing or not
/// accepting connections (57P01, 57P02, 57P03).
const RETRYABLE: [&[u8]; 5] = [b"40001", b"40P01", b"57P01", b"57P02", b"57P03"];

/// The read in flight, kept until its reply is released.
#[derive(Default)]
pub struct Retry {
    pub armed: bool,
    /// The message that ended it (Query or Sync).
    pub tag: u8,
    pub frame: Bytes,
    /// The extended-protocol messages before the Sync, as planned.
    pub messages: Vec<Planned>,
    pub parsed_unnamed: bool,
    /// Set while the retry itself is dispatched: it is not kept again.
    pub spent: bool,
}

impl Retry {
    /// Keeps a read just sent: its ending message and the batch's messages
    /// (moved, not copied; the batch gets this one's old, empty vector).
    pub fn keep(&mut self, tag: u8, frame: Bytes, batch: &mut Batch) {
        self.armed = true;
        self.tag = tag;
        self.frame = frame;
        self.parsed_unnamed = batch.parsed_unnamed;
        std::mem::swap(&mut self.messages, &mut batch.messages);
    }

    pub fn disarm(&mut self) {
        self.armed = false;
        self.messages.clear();
        self.frame = Bytes::new();
    }
}

/// What the reply so far means for the read in flight.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing the client must see yet: keep it all, read more.
    Wait,
    /// It failed in a way another server may not: run it elsewhere.
    Retry(String),
    /// The reply is whole, failed for good, or too big to hold: forward
    /// it as usual.
    Release,
}

/// How much of a read's reply is held back until its ReadyForQuery. A
/// replica that dies after sending a small result but before
/// ReadyForQuery (an immediate shutdown flushes the rows with its
/// WARNING) would otherwise leave the client a result and a lost
/// connection; held, the read runs again elsewhere and the client sees
/// one whole answer. A bigger reply streams as soon as it passes this.
pub const HOLD_LIMIT: usize = 64 * 1024;

/// Judges the frames at the front of `buf`.
pub fn judge(buf: &[u8]) -> Verdict {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let Ok(Some(h)) = FrameHeader::peek(rest, usize::MAX) else {
            // Incomplete header (or garbage, which relaying will report).
            return if rest.len() < FrameHeader::SIZE {
                Verdict::Wait
            } else {
                Verdict::Release
            };
        };
        let end = FrameHeader::SIZE + h.body_len;
        if at + end > HOLD_LIMIT {
            return Verdict::Release;
        }
        if rest.len() < end {
            return Verdict::Wait;
        }
        match h.tag {
            tag::ERROR_RESPONSE | tag::NOTICE_RESPONSE => {
                let body = &rest[FrameHeader::SIZE..end];
                match response_field(body, b'C').filter(|c| RETRYABLE.contains(c)) {
                    Some(c) => return Verdict::Retry(String::from_utf8_lossy(c).into_owned()),
                    None if h.tag == tag::ERROR_RESPONSE => return Verdict::Release,
                    None => {}
                }
            }
            tag::READY_FOR_QUERY | tag::COPY_OUT_RESPONSE | tag::COPY_BOTH_RESPONSE => {
                return Verdict::Release
            }
            _ => {}
        }
        at += end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn error(code: &str) -> Vec<u8> {
        frame(
            tag::ERROR_RESPONSE,
            format!("SERROR\0C{code}\0Mcanceling statement\0\0").as_bytes(),
        )
    }

    #[test]
    fn conflict_before_the_first_row_is_retried() {
        let mut buf = frame(tag::ROW_DESCRIPTION, b"\0\0");
        assert_eq!(judge(&buf), Verdict::Wait);
        buf.extend(error("40001"));
        assert_eq!(judge(&buf), Verdict::Retry("40001".into()));
    }

    #[test]
    fn shutdown_notice_is_retried() {
        let buf = frame(
            tag::NOTICE_RESPONSE,
            b"SWARNING\0C57P01\0Mterminating connection due to immediate shutdown command\0\0",
        );
        assert_eq!(judge(&buf), Verdict::Retry("57P01".into()));
    }

    #[test]
    fn whole_replies_and_other_errors_are_released() {
        let mut buf = frame(tag::ROW_DESCRIPTION, b"\0\0");
        buf.extend(frame(tag::DATA_ROW, b"\0\0"));
        buf.extend(frame(tag::COMMAND_COMPLETE, b"SELECT 1\0"));
        assert_eq!(judge(&buf), Verdict::Wait);
        buf.extend(frame(tag::READY_FOR_QUERY, b"I"));
        assert_eq!(judge(&buf), Verdict::Release);
        assert_eq!(judge(&error("42P01")), Verdict::Release);
    }

    #[test]
    fn rows_then_shutdown_before_ready_are_retried() {
        // What an immediate shutdown flushes: the rows, then its WARNING.
        let mut buf = frame(tag::ROW_DESCRIPTION, b"\0\0");
        buf.extend(frame(tag::DATA_ROW, b"\0\0"));
        buf.extend(frame(tag::COMMAND_COMPLETE, b"SELECT 1\0"));
        buf.extend(frame(
            tag::NOTICE_RESPONSE,
            b"SWARNING\0C57P01\0Mterminating connection due to immediate shutdown command\0\0",
        ));
        assert_eq!(judge(&buf), Verdict::Retry("57P01".into()));
    }

    #[test]
    fn replies_past_the_hold_limit_stream() {
        let row = frame(tag::DATA_ROW, &[0u8; 1000]);
        let mut buf = frame(tag::ROW_DESCRIPTION, b"\0\0");
        while buf.len() + row.len() <= HOLD_LIMIT {
            buf.extend(&row);
        }
        assert_eq!(judge(&buf), Verdict::Wait);
        buf.extend(&row);
        assert_eq!(judge(&buf), Verdict::Release);
        // One frame bigger than the limit streams at once.
        let big = frame(tag::DATA_ROW, &vec![0u8; HOLD_LIMIT]);
        assert_eq!(judge(&big[..100]), Verdict::Release);
    }

    #[test]
    fn partial_frames_wait() {
        let buf = error("40001");
        assert_eq!(judge(&buf[..3]), Verdict::Wait);
        assert_eq!(judge(&buf[..10]), Verdict::Wait);
        assert_eq!(judge(&[]), Verdict::Wait);
    }
}
