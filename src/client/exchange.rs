//! The conversation with the server a session holds: what the server will
//! answer, message by message, so that pgsplit knows when it is done, which
//! answers are pgsplit's own to cut out, and what an error means.
//!
//! One [`Expect`] per message sent, in order. The answers come in that
//! order, and each kind of message has its own: ParseComplete, BindComplete,
//! a statement's ParameterDescription and RowDescription (or NoData), an
//! Execute's CommandComplete, ReadyForQuery for Sync and Query. Tracking
//! them one by one is what tells an error's meaning: after an error in an
//! extended-protocol message the server discards everything until Sync,
//! simple queries included, so their ReadyForQuery never comes; after an
//! error in a simple query or at a Sync it goes on.
//!
//! Sans I/O: [`Exchange::scan`] reads the bytes at the front of the server
//! connection's buffer and says how many go to the client, how many are cut
//! out, and what (if anything) replaces them; `relay` does the I/O.

use super::statements::Undo;
use crate::protocol::error::response_field;
use crate::protocol::{status, tag, FrameHeader};
use crate::server::prepared::{Before, Prepared, Shape};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

/// Who a message pgsplit sends is for, which says what becomes of its
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client's own message: its answers go to the client.
    Client,
    /// Added for the client (a statement prepared again on this
    /// connection): its completion is cut out, but an error is the
    /// client's, as the client's own message would have failed with it.
    Added,
    /// pgsplit's alone: everything it causes is cut out, errors included.
    Own,
}

/// The answer pgsplit waits for, for one message sent.
#[derive(Debug)]
pub enum Expect {
    /// ParseComplete. `before`: what the Parse changed in [`Prepared`];
    /// `undo`: what it changed in the client's statements.
    Parse {
        origin: Origin,
        before: Option<Before>,
        undo: Option<Box<Undo>>,
    },
    /// BindComplete. `alias`: the statement's server-side and client
    /// names, for the server's errors about it.
    Bind { alias: Option<Box<Alias>> },
    /// A statement's ParameterDescription, then RowDescription or NoData.
    Describe(Describing),
    /// A portal's RowDescription or NoData; `statement`: the server-side
    /// name of the client's statement it was bound from in this batch,
    /// whose columns it tells.
    DescribePortal { statement: Option<Arc<str>> },
    /// CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// CloseComplete.
    Close {
        origin: Origin,
        before: Option<Before>,
        undo: Option<Box<Undo>>,
    },
    /// Only an error: a malformed message the server refuses, or one
    /// pgsplit sends to fail the rest of a batch, whose error is replaced
    /// by `substitute`.
    Refused { substitute: Option<Bytes> },
    /// ReadyForQuery, for a Query or FunctionCall.
    Ready,
    /// pgsplit's own simple query (the BEGIN of a transaction pgsplit
    /// began lazily): all it answers is cut out, errors aside.
    Hidden,
    /// ReadyForQuery, for a Sync.
    Sync { origin: Origin },
}

impl Expect {
    fn is_ready(&self) -> bool {
        matches!(self, Expect::Ready | Expect::Sync { .. } | Expect::Hidden)
    }

    fn origin(&self) -> Origin {
        match self {
            Expect::Parse { origin, .. }
            | Expect::Close { origin, .. }
            | Expect::Sync { origin } => *origin,
            Expect::Describe(d) => d.origin,
            _ => Origin::Client,
        }
    }
}

/// A client's statement under its name on the server: the server's
/// errors about it are given the client's name back.
#[derive(Debug, Clone)]
pub struct Alias {
    pub server: Arc<str>,
    pub client: Bytes,
}

/// A Describe of a statement in flight.
#[derive(Debug)]
pub struct Describing {
    pub origin: Origin,
    /// The statement's name on the server ("" for the unnamed one).
    pub name: Arc<str>,
    /// Its client's name, when that is another.
    pub alias: Option<Box<Alias>>,
    /// The shape the client was told before: this Describe checks that a
    /// statement prepared again still has it.
    pub check: Option<Shape>,
    /// The ParameterDescription's body, once it has come.
    parameters: Option<Vec<u8>>,
}

impl Describing {
    pub fn new(origin: Origin, name: Arc<str>, check: Option<Shape>) -> Describing {
        Describing {
            origin,
            name,
            alias: None,
            check,
            parameters: None,
        }
    }
}

/// What a check of a statement prepared again found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Its shape is the one the client knows: the batch goes on.
    Same,
    /// The shape changed: the client gets PostgreSQL's "cached plan must
    /// not change result type" and no rows.
    Changed,
    /// Preparing it failed; the client has the server's error.
    Failed,
}

/// The state of the conversation with the server currently held.
pub struct Exchange {
    expect: VecDeque<Expect>,
    /// Syncs and Queries sent whose ReadyForQuery is still to come.
    pub pending: usize,
    /// From the last ReadyForQuery.
    pub tx_status: u8,
    /// The server discards every message until a Sync: an
    /// extended-protocol message failed and no Sync was sent after it.
    pub skipping: bool,
    /// Bytes of a frame already passing through that have not arrived yet.
    passthrough: usize,
    /// SQLSTATEs of the ErrorResponses relayed (the metrics count their
    /// classes; some say the primary may have changed, see `observe`).
    pub errors: Vec<[u8; 5]>,
    /// A FATAL (or PANIC) ErrorResponse was relayed: the server ends the
    /// session after it.
    pub fatal: bool,
    /// What the client's own Describes of statements reported since the
    /// session last looked: the statement's server-side name and shape.
    pub described: Vec<(Arc<str>, Shape)>,
    /// The answer to a check, once it came.
    pub checked: Option<Checked>,
    /// The client's statements as they were before Parse and Close
    /// messages the server skipped, newest first: the session puts them
    /// back.
    pub undone: Vec<Undo>,
    /// pgsplit's own Sync ended a batch in which the client was sent an
    /// error: the client still has to send its Sync.
    pub own_sync_failed: bool,
    /// An error went to the client since the last ReadyForQuery.
    error_relayed: bool,
    /// The client is inside a transaction pgsplit began lazily: its reads
    /// run as autocommit reads, whose ReadyForQuery must say `T` (or `E`
    /// once one failed) as the transaction's would.
    pub lazy: bool,
    /// A read of that transaction failed.
    pub lazy_failed: bool,
    /// pgsplit cancelled the running statement (`query_timeout`): the
    /// server's `57014 canceling statement due to user request` is
    /// replaced by this ErrorResponse, which says why.
    pub timeout_error: Option<Bytes>,
    /// A write is committing and the client wants its `pgsplit.commit_lsn`:
    /// the ReadyForQuery that ends the client's last request and finds no
    /// transaction open is held back (`held_ready`), for the session to
    /// send after the ParameterStatus.
    pub hold_commit_ready: bool,
    /// That ReadyForQuery was cut out of what went to the client.
    pub held_ready: bool,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            expect: VecDeque::new(),
            pending: 0,
            tx_status: status::IDLE,
            skipping: false,
            passthrough: 0,
            errors: Vec::new(),
            fatal: false,
            described: Vec::new(),
            checked: None,
            undone: Vec::new(),
            own_sync_failed: false,
            hold_commit_ready: false,
            held_ready: false,
            error_relayed: false,
            lazy: false,
            lazy_failed: false,
            timeout_error: None,
        }
    }
}

/// What [`Exchange::scan`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// Bytes that go to the client as they are.
    pub forward: usize,
    /// Bytes after those that are cut out.
    pub cut: usize,
    /// What the client gets in place of the cut bytes.
    pub inject: Option<Bytes>,
}

/// The server sent something that is not a frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Garbage;

enum Action {
    Forward,
    /// The frame must be whole before it can be judged.
    NeedWhole,
    Cut,
    Replace(Bytes),
}

impl Exchange {
    pub fn sent(&mut self, expect: Expect) {
        if expect.is_ready() {
            self.pending += 1;
        }
        if matches!(expect, Expect::Sync { .. }) {
            // The server skips up to this Sync, then listens again.
            self.skipping = false;
        }
        self.expect.push_back(expect);
    }

    /// The expected answer for an extended-protocol message forwarded as
    /// the client sent it (`None` for Flush, which has none).
    pub fn sent_raw(&mut self, frame: &[u8]) {
        let kind = frame.get(FrameHeader::SIZE).copied();
        let expect = match (frame.first().copied(), kind) {
            (Some(tag::BIND), _) => Expect::Bind { alias: None },
            (Some(tag::EXECUTE), _) => Expect::Execute,
            (Some(tag::DESCRIBE), Some(b'P')) => Expect::DescribePortal { statement: None },
            (Some(tag::DESCRIBE), Some(b'S')) => {
                // The unnamed statement, or one pgsplit does not know (a
                // pinned client's SQL PREPARE): described as it is.
                let name = crate::protocol::extended::target(&frame[FrameHeader::SIZE..])
                    .map(|(_, name)| String::from_utf8_lossy(name).into_owned())
                    .unwrap_or_default();
                Expect::Describe(Describing::new(Origin::Client, Arc::from(name), None))
            }
            (Some(tag::CLOSE), Some(b'S' | b'P')) => Expect::Close {
                origin: Origin::Client,
                before: None,
                undo: None,
            },
            (Some(tag::PARSE), _) => Expect::Parse {
                origin: Origin::Client,
                before: None,
                undo: None,
            },
            (Some(tag::FLUSH), _) => return,
            // A Describe or Close of neither a statement nor a portal: the
            // server answers with an error and goes on.
            _ => Expect::Refused { substitute: None },
        };
        self.sent(expect);
    }

    pub fn in_transaction(&self) -> bool {
        self.tx_status != status::IDLE
    }

    /// Whether the server still owes answers, or waits for a Sync.
    pub fn busy(&self) -> bool {
        !self.expect.is_empty() || self.skipping
    }

    /// Whether the server still owes answers.
    pub fn answering(&self) -> bool {
        !self.expect.is_empty()
    }

    /// For an idle session (nothing expected): gives back the room its
    /// queues grew to.
    pub fn shrink(&mut self) {
        if self.expect.is_empty() {
            self.expect = VecDeque::new();
        }
        if self.errors.is_empty() {
            self.errors = Vec::new();
        }
        if self.described.is_empty() {
            self.described = Vec::new();
        }
        if self.undone.is_empty() {
            self.undone = Vec::new();
        }
    }

    /// Forgets the server's exchange (it was lost or released).
    pub fn reset(&mut self) {
        self.expect.clear();
        self.pending = 0;
        self.passthrough = 0;
        self.skipping = false;
        self.checked = None;
        self.described.clear();
        self.own_sync_failed = false;
        self.error_relayed = false;
        self.timeout_error = None;
    }

    /// Looks at the bytes at the front of `buf`: how many go to the client
    /// as they are, how many after those are cut out and what replaces
    /// them. Frames not wholly there yet are forwarded as far as they go,
    /// except those whose content matters. `prepared` is the connection's
    /// record of its statements, kept in step with what the server did.
    pub fn scan(&mut self, buf: &[u8], prepared: &mut Prepared) -> Result<Scan, Garbage> {
        let mut at = 0;
        let stop = |forward, cut, inject| {
            Ok(Scan {
                forward,
                cut,
                inject,
            })
        };
        loop {
            if self.passthrough > 0 {
                let n = self.passthrough.min(buf.len() - at);
                at += n;
                self.passthrough -= n;
                if self.passthrough > 0 {
                    return stop(at, 0, None);
                }
                continue;
            }
            let rest = &buf[at..];
            let Some(h) = FrameHeader::peek(rest, usize::MAX).map_err(|_| Garbage)? else {
                return stop(at, 0, None);
            };
            let len = h.frame_len();
            if h.tag == tag::DATA_ROW {
                // Rows, most of what passes, need no judging.
                match rest.len() >= len {
                    true => at += len,
                    false => self.passthrough = len,
                }
                continue;
            }
            let frame = rest.get(..len);
            if h.tag == tag::ERROR_RESPONSE && rest.len() == len && self.ready_follows(frame) {
                return stop(at, 0, None);
            }
            match self.on_frame(h.tag, frame, prepared) {
                Action::Forward if frame.is_some() => at += len,
                Action::Forward => self.passthrough = len,
                Action::NeedWhole => return stop(at, 0, None),
                Action::Cut => return stop(at, len, None),
                Action::Replace(bytes) => return stop(at, len, Some(bytes)),
            }
        }
    }

    /// Judges one frame (`frame`: the whole of it, if it is all there).
    /// Never changes anything when it answers `NeedWhole`. Small and
    /// inlined, with the rare cases out of line: it runs for every frame
    /// a statement's answer has.
    #[inline]
    fn on_frame(&mut self, tag: u8, frame: Option<&[u8]>, prepared: &mut Prepared) -> Action {
        if let Some(Expect::Hidden) = self.expect.front() {
            return self.hidden(tag, frame);
        }
        match tag {
            tag::READY_FOR_QUERY => match frame {
                Some(f) => self.ready(f.get(FrameHeader::SIZE).copied(), prepared),
                None => Action::NeedWhole,
            },
            tag::PARSE_COMPLETE | tag::BIND_COMPLETE | tag::CLOSE_COMPLETE => match frame {
                Some(_) => self.completed(tag),
                None => Action::NeedWhole,
            },
            tag::PARAMETER_DESCRIPTION | tag::ROW_DESCRIPTION | tag::NO_DATA => {
                match self.expect.front() {
                    Some(Expect::Describe(_) | Expect::DescribePortal { .. }) => {
                        self.description(tag, frame, prepared)
                    }
                    // A simple query's or an Execute's: nothing to learn.
                    _ => Action::Forward,
                }
            }
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED => {
                if matches!(self.expect.front(), Some(Expect::Execute)) {
                    self.expect.pop_front();
                }
                Action::Forward
            }
            tag::ERROR_RESPONSE => match frame {
                Some(f) => self.failed(f, prepared),
                None => Action::NeedWhole,
            },
            tag::COPY_IN_RESPONSE => {
                self.copy_in_started();
                Action::Forward
            }
            _ => Action::Forward,
        }
    }

    /// Whether an error that ends what the server sent so far is held
    /// until more comes. PostgreSQL flushes an error on its own, then the
    /// ReadyForQuery after it; sent straight on, the two reach the client
    /// apart, further apart than direct, and a driver that reads its
    /// transaction status when the error arrives (node-postgres) sees the
    /// status before it. When a Query or Sync was sent, the ReadyForQuery
    /// follows at once, without the server waiting for the client: the
    /// error waits for it, and both go in one write. Not a FATAL one (the
    /// server closes after it) nor one in a batch not yet ended by a Sync
    /// (the server skips what follows, Queries too, until the client sends
    /// one).
    #[inline(never)]
    fn ready_follows(&self, frame: Option<&[u8]>) -> bool {
        let Some(frame) = frame else {
            return false;
        };
        let answered_at_once = match self.expect.front() {
            Some(front) if front.is_ready() => true,
            _ => self.expect.iter().any(|e| matches!(e, Expect::Sync { .. })),
        };
        answered_at_once && !is_fatal(frame)
    }

    /// ReadyForQuery: the Query or Sync at the front of the queue is done.
    #[inline]
    fn ready(&mut self, status: Option<u8>, prepared: &mut Prepared) -> Action {
        self.tx_status = status.unwrap_or(status::IDLE);
        self.skipping = false;
        self.pending = self.pending.saturating_sub(1);
        // The common case: the front is what this ReadyForQuery answers.
        if let Some(
            Expect::Ready
            | Expect::Sync {
                origin: Origin::Client,
            },
        ) = self.expect.front()
        {
            self.expect.pop_front();
            let failed = std::mem::take(&mut self.error_relayed);
            if self.lazy {
                return self.lazy_ready(failed);
            }
            if self.hold_commit_ready {
                return self.commit_ready();
            }
            return Action::Forward;
        }
        self.ready_after_more(prepared)
    }

    /// The ReadyForQuery after a write: held back if it ends the client's
    /// last request outside a transaction (the write committed).
    #[inline(never)]
    fn commit_ready(&mut self) -> Action {
        if self.pending == 0 && self.tx_status == status::IDLE {
            self.held_ready = true;
            return Action::Cut;
        }
        Action::Forward
    }

    /// A read of a lazily begun transaction is done: the client is told
    /// the transaction's status, not the autocommit read's.
    #[inline(never)]
    fn lazy_ready(&mut self, failed: bool) -> Action {
        self.lazy_failed |= failed;
        Action::Replace(Bytes::from_static(match self.lazy_failed {
            true => b"Z\0\0\0\x05E",
            false => b"Z\0\0\0\x05T",
        }))
    }

    /// A frame answering pgsplit's own simple query: cut out, but for an
    /// error (the client must learn why its transaction did not open).
    #[inline(never)]
    fn hidden(&mut self, tag: u8, frame: Option<&[u8]>) -> Action {
        match (tag, frame) {
            (_, None) => Action::NeedWhole,
            (tag::READY_FOR_QUERY, Some(f)) => {
                self.tx_status = f.get(FrameHeader::SIZE).copied().unwrap_or(status::IDLE);
                self.pending = self.pending.saturating_sub(1);
                self.expect.pop_front();
                Action::Cut
            }
            (tag::ERROR_RESPONSE, Some(f)) => {
                self.fatal |= is_fatal(f);
                self.relayed(f)
            }
            _ => Action::Cut,
        }
    }

    /// ReadyForQuery with other answers still expected before it, or for
    /// pgsplit's own Sync.
    #[inline(never)]
    fn ready_after_more(&mut self, prepared: &mut Prepared) -> Action {
        let error_relayed = std::mem::take(&mut self.error_relayed);
        let mut skipped = Vec::new();
        let action = loop {
            let Some(e) = self.expect.pop_front() else {
                break Action::Forward;
            };
            match e {
                Expect::Sync { origin } if origin == Origin::Own => {
                    self.own_sync_failed = error_relayed;
                    break Action::Cut;
                }
                Expect::Ready | Expect::Sync { .. } | Expect::Hidden if self.lazy => {
                    break self.lazy_ready(error_relayed)
                }
                Expect::Ready | Expect::Sync { .. } | Expect::Hidden if self.hold_commit_ready => {
                    break self.commit_ready()
                }
                Expect::Ready | Expect::Sync { .. } | Expect::Hidden => break Action::Forward,
                // Not answered before the end of its batch: the server
                // skipped it (an error pgsplit did not tie to it).
                other => skipped.push(other),
            }
        };
        self.undo(skipped, prepared);
        action
    }

    fn completed(&mut self, tag: u8) -> Action {
        let origin = match (tag, self.expect.front()) {
            (tag::PARSE_COMPLETE, Some(Expect::Parse { origin, .. }))
            | (tag::CLOSE_COMPLETE, Some(Expect::Close { origin, .. })) => *origin,
            (tag::BIND_COMPLETE, Some(Expect::Bind { .. })) => Origin::Client,
            _ => return Action::Forward,
        };
        self.expect.pop_front();
        match origin {
            Origin::Client => Action::Forward,
            Origin::Added | Origin::Own => Action::Cut,
        }
    }

    #[inline(never)]
    fn description(&mut self, tag: u8, frame: Option<&[u8]>, prepared: &mut Prepared) -> Action {
        let describing = match self.expect.front_mut() {
            Some(Expect::Describe(d)) => d,
            Some(Expect::DescribePortal { statement }) if tag != tag::PARAMETER_DESCRIPTION => {
                let Some(name) = statement.clone() else {
                    self.expect.pop_front();
                    return Action::Forward;
                };
                let Some(frame) = frame else {
                    return Action::NeedWhole;
                };
                self.expect.pop_front();
                let rows = (tag == tag::ROW_DESCRIPTION).then(|| &frame[FrameHeader::SIZE..]);
                if let Some(shape) = Shape::of(None, rows) {
                    prepared.described(&name, shape);
                    self.described.push((name, shape));
                }
                return Action::Forward;
            }
            _ => return Action::Forward,
        };
        let Some(frame) = frame else {
            return Action::NeedWhole;
        };
        let body = &frame[FrameHeader::SIZE..];
        let cut = match describing.origin {
            Origin::Client => Action::Forward,
            Origin::Added | Origin::Own => Action::Cut,
        };
        if tag == tag::PARAMETER_DESCRIPTION {
            describing.parameters = Some(body.to_vec());
            return cut;
        }
        let rows = (tag == tag::ROW_DESCRIPTION).then_some(body);
        let parameters = Some(describing.parameters.as_deref().unwrap_or(b"\0\0"));
        let shape = Shape::of(parameters, rows);
        let Some(Expect::Describe(d)) = self.expect.pop_front() else {
            return cut;
        };
        if let Some(shape) = shape {
            prepared.described(&d.name, shape);
            if d.origin == Origin::Client {
                self.described.push((d.name.clone(), shape));
            }
        }
        if let Some(known) = d.check {
            // A description pgsplit cannot read counts as changed: in
            // doubt the client prepares again.
            self.checked = Some(match shape.is_some_and(|s| s.fits(&known)) {
                true => Checked::Same,
                false => Checked::Changed,
            });
        }
        cut
    }

    /// An ErrorResponse: whose it is says what the server does next.
    #[inline(never)]
    fn failed(&mut self, frame: &[u8], prepared: &mut Prepared) -> Action {
        let fatal = is_fatal(frame);
        self.fatal |= fatal;
        let Some(front) = self.expect.front() else {
            return self.relayed(frame);
        };
        // A simple query's error, or one at Sync (a commit that failed):
        // the ReadyForQuery still comes.
        if front.is_ready() {
            return self.relayed(frame);
        }
        let origin = front.origin();
        let substitute = match front {
            Expect::Refused { substitute } => substitute.clone(),
            Expect::Bind { alias: Some(alias) }
            | Expect::Describe(Describing {
                alias: Some(alias), ..
            }) => alias.rename(frame),
            _ => None,
        };
        self.skip_to_sync(prepared);
        match substitute {
            Some(bytes) => {
                self.errors.push(error_code(&bytes));
                self.error_relayed = true;
                Action::Replace(bytes)
            }
            None if origin == Origin::Own && !fatal => Action::Cut,
            None => self.relayed(frame),
        }
    }

    fn relayed(&mut self, frame: &[u8]) -> Action {
        self.errors.push(error_code(frame));
        self.error_relayed = true;
        if self.timeout_error.is_some() && field(frame, b'C') == Some(b"57014") {
            if let Some(error) = self.timeout_error.take() {
                return Action::Replace(error);
            }
        }
        Action::Forward
    }

    /// The message at the front failed: the server discards everything
    /// up to the next Sync, Queries included, whose ReadyForQuery then
    /// never comes. With no Sync sent yet, it waits for one.
    fn skip_to_sync(&mut self, prepared: &mut Prepared) {
        let mut skipped = Vec::new();
        while let Some(front) = self.expect.front() {
            if matches!(front, Expect::Sync { .. }) {
                break;
            }
            skipped.extend(self.expect.pop_front());
        }
        self.skipping = self.expect.is_empty();
        self.undo(skipped, prepared);
    }

    /// Messages the server skipped: the statements they would have
    /// created or closed are put back as they were (newest first), Queries
    /// no longer wait for their ReadyForQuery, and a check failed.
    fn undo(&mut self, skipped: Vec<Expect>, prepared: &mut Prepared) {
        for expect in skipped.into_iter().rev() {
            match expect {
                Expect::Parse { before, undo, .. } | Expect::Close { before, undo, .. } => {
                    if let Some(before) = before {
                        prepared.undo(&before);
                    }
                    self.undone.extend(undo.map(|u| *u));
                }
                Expect::Ready => self.pending = self.pending.saturating_sub(1),
                Expect::Describe(Describing { check: Some(_), .. }) => {
                    self.checked = Some(Checked::Failed)
                }
                _ => {}
            }
        }
    }

    /// The server ignores a Sync that reaches it in copy-in mode: an
    /// Execute's batch Sync, sent before the client knew the statement was
    /// a COPY FROM STDIN, gets no ReadyForQuery of its own; the one the
    /// client sends after CopyDone or CopyFail does. (Clients wait for
    /// CopyInResponse before sending data, so the Syncs queued now were
    /// all sent before it.) A simple Query's ReadyForQuery still comes.
    #[inline(never)]
    fn copy_in_started(&mut self) {
        if !matches!(self.expect.front(), Some(Expect::Execute)) {
            return;
        }
        if let Some(at) = self
            .expect
            .iter()
            .position(|e| matches!(e, Expect::Sync { .. }))
        {
            self.expect.remove(at);
            self.pending = self.pending.saturating_sub(1);
        }
    }
}

impl Alias {
    /// The error frame with the server-side name, quoted as PostgreSQL
    /// quotes it in messages, given the client's name (`None` when it does
    /// not appear).
    fn rename(&self, frame: &[u8]) -> Option<Bytes> {
        let quoted = format!("\"{}\"", self.server);
        let at = memchr::memmem::find(frame, quoted.as_bytes())?;
        let mut out = Vec::with_capacity(frame.len() + self.client.len());
        out.extend_from_slice(&frame[..at + 1]);
        out.extend_from_slice(&self.client);
        out.extend_from_slice(&frame[at + quoted.len() - 1..]);
        let len = (out.len() - 1) as u32;
        out[1..5].copy_from_slice(&len.to_be_bytes());
        Some(Bytes::from(out))
    }
}

/// The SQLSTATE class of an ErrorResponse frame ("??" when the frame is
/// not all there or has no code field).
fn error_code(frame: &[u8]) -> [u8; 5] {
    match field(frame, b'C') {
        Some([a, b, c, d, e, ..]) => [*a, *b, *c, *d, *e],
        _ => *b"?????",
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
mod tests;
