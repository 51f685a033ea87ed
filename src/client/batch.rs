//! An extended-protocol batch: the messages a client sends up to Sync (or
//! Flush). They are held until then because where the batch runs depends
//! on all of them, and rewritten for the server connection that runs it:
//! statement names become server-side names, and a statement that server
//! connection has not seen yet is prepared on it first.
//!
//! A statement prepared again on another connection may no longer be the
//! one the client described: a column changed type in between. PostgreSQL
//! refuses to run a prepared statement whose result changed ("cached plan
//! must not change result type"), and drivers prepare again when they get
//! that error; pgsplit must not hand such a client rows of the new type
//! under its old codecs. So a statement whose shape the client knows is
//! described on the new connection before it runs: the batch pauses after
//! that Describe (and a Flush) and goes on only once the shape is the same
//! (`Written::Paused`; the session resumes it).

use super::exchange::{Alias, Describing, Exchange, Expect, Origin};
use super::statements::{Statement, Undo};
use crate::protocol::{body, extended, tag};
use crate::router::Reason;
use crate::server::ServerConnection;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// A batch message, with what it needs from the client's statements taken
/// when it arrived (a later Parse in the same batch may reuse the name).
/// `undo` puts the client's record of a statement back if the server
/// skips the message (an error earlier in the batch) or it is never sent.
pub enum Planned {
    /// Forwarded unchanged (Execute, portal Describe/Close, Flush, ...).
    Raw(Bytes),
    /// A Parse of the unnamed statement: forwarded unchanged. `key` tells
    /// whose and which it is.
    ParseUnnamed {
        frame: Bytes,
        key: u64,
        undo: Box<Undo>,
    },
    /// A named statement: sent under its server-side name.
    Parse {
        statement: Statement,
        undo: Box<Undo>,
    },
    /// Bind or statement Describe of a statement the client prepared.
    Use { message: Use, statement: Statement },
    /// Close of a statement the client prepared (the unnamed one: `None`,
    /// sent as the client's `frame`).
    Close {
        statement: Option<Statement>,
        frame: Bytes,
        undo: Box<Undo>,
    },
    /// The client's last unnamed statement, parsed again if the connection
    /// that runs this batch does not have it.
    Reparse(Statement),
    /// A message PostgreSQL would refuse with this error (a Parse of a name
    /// in use): the server is made to fail it, and the client gets this.
    Refuse(Bytes),
}

impl Planned {
    /// How to undo what the message did to the client's statements.
    fn undo(&self) -> Option<&Undo> {
        match self {
            Planned::ParseUnnamed { undo, .. }
            | Planned::Parse { undo, .. }
            | Planned::Close { undo, .. } => Some(undo),
            _ => None,
        }
    }
}

pub enum Use {
    Bind { portal: Bytes, rest: Bytes },
    Describe,
}

#[derive(Default)]
pub struct Batch {
    pub messages: Vec<Planned>,
    /// Bytes of the messages held, against the hold limit.
    pub bytes: usize,
    /// Why the batch must run on the primary, if it must.
    pub needs_primary: Option<Reason>,
    /// Every reason noted, with the number of messages held when it was:
    /// what needs the primary after a leading BEGIN pgsplit answers.
    pub noted: Vec<(usize, Reason)>,
    /// Whether it has parsed the unnamed statement (else a Bind of it
    /// re-parses the client's last one).
    pub parsed_unnamed: bool,
    /// Sent (flushed, or streamed) to a server without a Sync yet: it
    /// stays on that server.
    pub open: bool,
    /// It binds a named portal, or executes one a few rows at a time: the
    /// portal lives until its transaction ends, so in a transaction it
    /// needs the transaction's own server.
    pub keeps_portal: bool,
    /// It reads `pg_prepared_statements`: it runs with the client's own
    /// statements under the client's names, and no one else's
    /// (`show_own_statements`).
    pub lists_statements: bool,
}

/// How far [`Batch::write`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Every message from the one asked for on.
    All,
    /// It stopped to check a statement's shape; it goes on from this
    /// message once the check is answered.
    Paused(usize),
}

/// The name of a statement no connection has: pgsplit describes it to
/// make the server fail the rest of a batch whose statement changed shape,
/// then replaces that error with the one PostgreSQL gives for it.
const NO_SUCH_STATEMENT: &str = "pgsplit_cached_plan_must_not_change_result_type";

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn push(&mut self, message: Planned, len: usize) {
        self.bytes += len;
        self.messages.push(message);
    }

    /// Whether the batch only prepares, describes and closes statements:
    /// nothing in it binds or runs one.
    pub fn runs_nothing(&self) -> bool {
        self.messages.iter().all(|m| match m {
            Planned::Raw(frame) => {
                matches!(frame.first(), Some(&tag::DESCRIBE | &tag::CLOSE))
                    && frame.get(5) == Some(&b'S')
            }
            Planned::Use { message, .. } => matches!(message, Use::Describe),
            Planned::ParseUnnamed { .. }
            | Planned::Parse { .. }
            | Planned::Close { .. }
            | Planned::Reparse(_) => true,
            Planned::Refuse(_) => false,
        })
    }

    /// A Describe of a portal bound from one of the client's statements
    /// earlier in the batch: its answer tells that statement's columns,
    /// which the client may decode with from then on (PgJDBC describes
    /// the portal, not the statement).
    fn describe_portal(
        &self,
        at: usize,
        message: &Planned,
        exchange: &mut Exchange,
        out: &mut BytesMut,
    ) -> Option<Step> {
        let Planned::Raw(frame) = message else {
            return None;
        };
        let Ok((b'P', portal)) = extended::target(frame.get(5..)?) else {
            return None;
        };
        let statement = self.messages[..at].iter().rev().find_map(|m| match m {
            Planned::Use {
                message: Use::Bind { portal: bound, .. },
                statement,
            } if &bound[..] == portal => Some(statement.server_name.clone()),
            _ => None,
        })?;
        out.extend_from_slice(frame);
        exchange.sent(Expect::DescribePortal {
            statement: Some(statement),
        });
        Some(Step::Sent)
    }

    /// A transaction control statement run at the start of the batch, the
    /// way drivers send BEGIN before a statement (PgJDBC with autocommit
    /// off) or COMMIT alone: an optional Parse of it, its Bind of the
    /// unnamed portal, maybe a Describe of that portal, and an Execute.
    /// `text` gives the text of the statement a message uses (its Parse's,
    /// or the client's record). Whether that statement is transaction
    /// control is the caller's to say.
    pub fn control_prefix(
        &self,
        text: impl Fn(&Planned) -> Option<String>,
    ) -> Option<ControlPrefix> {
        let mut messages = self.messages.iter();
        let mut answers = Vec::new();
        let mut first = messages.next()?;
        let mut sql = None;
        if let Planned::ParseUnnamed { .. } | Planned::Parse { .. } = first {
            sql = text(first);
            answers.push(tag::PARSE_COMPLETE);
            first = messages.next()?;
        }
        let bound = match first {
            Planned::Raw(frame) if is_unnamed_bind(frame) => sql.or_else(|| text(first))?,
            Planned::Use {
                message: Use::Bind { portal, .. },
                ..
            } if portal.is_empty() => sql.or_else(|| text(first))?,
            _ => return None,
        };
        answers.push(tag::BIND_COMPLETE);
        let mut next = messages.next()?;
        if matches!(next, Planned::Raw(frame) if is_unnamed_portal_describe(frame)) {
            answers.push(tag::NO_DATA);
            next = messages.next()?;
        }
        match next {
            Planned::Raw(frame) if is_unnamed_execute(frame) => {}
            _ => return None,
        }
        answers.push(tag::COMMAND_COMPLETE);
        Some(ControlPrefix {
            len: answers.len(),
            text: bound,
            answers,
        })
    }

    /// Drops the first `n` messages (answered by pgsplit): what needs the
    /// primary is what was noted after them.
    pub fn drop_first(&mut self, n: usize) {
        self.messages.drain(..n.min(self.messages.len()));
        self.noted.retain(|(at, _)| *at >= n);
        for (at, _) in &mut self.noted {
            *at -= n;
        }
        self.needs_primary = self.noted.first().map(|(_, reason)| reason.clone());
    }

    /// Drops the messages held unsent, returning how to undo what they did
    /// to the client's statements, newest first.
    pub fn drop_unsent(&mut self) -> Vec<Undo> {
        let undo = self
            .messages
            .iter()
            .rev()
            .filter_map(|m| m.undo().cloned())
            .collect();
        self.clear();
        undo
    }

    /// Forgets the messages held (sent, or dropped).
    /// For an idle session: gives back the room its vectors grew to.
    pub fn shrink(&mut self) {
        if self.messages.is_empty() {
            self.messages = Vec::new();
        }
        if self.noted.is_empty() {
            self.noted = Vec::new();
        }
    }

    pub fn clear_messages(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }

    pub fn clear(&mut self) {
        self.clear_messages();
        self.needs_primary = None;
        self.noted.clear();
        self.parsed_unnamed = false;
        self.lists_statements = false;
        self.keeps_portal = false;
    }

    /// Appends the messages from `from` on, rewritten for `conn`, to
    /// `out`, recording the answers to expect. The messages stay (a read
    /// may be retried elsewhere, a paused batch goes on); the caller
    /// clears them.
    pub fn write(
        &self,
        from: usize,
        conn: &mut ServerConnection,
        exchange: &mut Exchange,
        out: &mut BytesMut,
    ) -> Written {
        if self.messages.len() <= from {
            return Written::All;
        }
        for (at, message) in self.messages.iter().enumerate().skip(from) {
            let step = match self.lists_statements {
                true => write_as_client(message, exchange, out),
                false => None,
            };
            let step = step
                .or_else(|| self.describe_portal(at, message, exchange, out))
                .unwrap_or_else(|| write_one(message, conn, exchange, out));
            if step == Step::Check {
                return Written::Paused(at);
            }
        }
        Written::All
    }
}

/// Makes the server fail what is left of a batch whose statement changed
/// shape: the client gets PostgreSQL's own error for it in place of the
/// server's, and the server discards the rest until Sync.
pub fn fail_changed_statement(exchange: &mut Exchange, out: &mut BytesMut) {
    let mut error = BytesMut::new();
    crate::protocol::error::cached_plan_changed(&mut error);
    fail_with(error.freeze(), exchange, out);
}

/// Makes the server fail here, as if with `error` (an ErrorResponse): it
/// discards what follows until Sync, and the client gets `error`.
fn fail_with(error: Bytes, exchange: &mut Exchange, out: &mut BytesMut) {
    extended::write_target(out, tag::DESCRIBE, b'S', NO_SUCH_STATEMENT);
    exchange.sent(Expect::Refused {
        substitute: Some(error),
    });
}

/// A statement run at the start of a batch on its own (Parse, Bind,
/// Describe, Execute): how many messages it spans, its text, and the
/// answers its messages get (the completion tags, in order; the Execute's
/// is a CommandComplete whose tag the caller chooses).
#[derive(Debug, PartialEq, Eq)]
pub struct ControlPrefix {
    pub len: usize,
    pub text: String,
    pub answers: Vec<u8>,
}

/// A Bind of the unnamed statement to the unnamed portal.
fn is_unnamed_bind(frame: &[u8]) -> bool {
    frame.first() == Some(&tag::BIND)
        && extended::bind(body(frame)).is_ok_and(|b| b.portal.is_empty() && b.statement.is_empty())
}

/// An Execute of the unnamed portal. Its row limit does not matter for
/// a statement that returns none (PgJDBC runs COMMIT with a limit of 1).
fn is_unnamed_execute(frame: &[u8]) -> bool {
    frame.first() == Some(&tag::EXECUTE)
        && extended::execute(body(frame)).is_ok_and(|(portal, _)| portal.is_empty())
}

/// A Describe of the unnamed portal.
fn is_unnamed_portal_describe(frame: &[u8]) -> bool {
    frame.first() == Some(&tag::DESCRIBE) && extended::target(body(frame)) == Ok((b'P', &b""[..]))
}

#[derive(PartialEq, Eq)]
enum Step {
    Sent,
    /// A check was sent in place of the message: wait for its answer.
    Check,
}

fn write_one(
    message: &Planned,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) -> Step {
    match message {
        Planned::Raw(frame) => {
            out.extend_from_slice(frame);
            exchange.sent_raw(frame);
        }
        Planned::ParseUnnamed { frame, key, undo } => {
            let before = conn.prepared.parsed_unnamed(Some(*key));
            out.extend_from_slice(frame);
            exchange.sent(Expect::Parse {
                origin: Origin::Client,
                before: Some(before),
                undo: Some(undo.clone()),
            });
        }
        Planned::Parse { statement, undo } => {
            close_on_server(statement, Origin::Added, conn, exchange, out);
            parse_on_server(statement, Origin::Client, Some(undo), conn, exchange, out);
        }
        Planned::Use { message, statement } => {
            return use_statement(message, statement, conn, exchange, out)
        }
        Planned::Close {
            statement,
            frame,
            undo,
        } => {
            let before = match statement {
                Some(statement) => {
                    extended::write_target(out, tag::CLOSE, b'S', statement.server_name.as_bytes());
                    conn.prepared.closed(&statement.server_name)
                }
                // The unnamed statement: the client's Close as it is.
                None => {
                    out.extend_from_slice(frame);
                    conn.prepared.parsed_unnamed(None)
                }
            };
            exchange.sent(Expect::Close {
                origin: Origin::Client,
                before: Some(before),
                undo: Some(undo.clone()),
            });
        }
        Planned::Reparse(statement) => return reparse(statement, conn, exchange, out),
        Planned::Refuse(error) => fail_with(error.clone(), exchange, out),
    }
    Step::Sent
}

/// Before a batch that reads `pg_prepared_statements`: the connection is
/// made to hold the client's named statements under the client's own
/// names and no other statement of pgsplit's, so that the client sees what
/// it would see direct (a shared connection holds other clients'
/// statements, their text included). The batch then uses those names
/// (`write_as_client`) and `hide_own_statements` closes them after it.
/// Failures here are pgsplit's own: a statement that no longer parses is
/// simply not listed.
pub fn show_own_statements<'a>(
    own: impl Iterator<Item = &'a Statement>,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    for name in conn.prepared.names() {
        close_named(&name, Origin::Own, conn, exchange, out);
    }
    for statement in own {
        extended::write_target(out, tag::CLOSE, b'S', &statement.name[..]);
        exchange.sent(own_expect(tag::CLOSE));
        extended::write_parse(out, &statement.name[..], &statement.after_name);
        exchange.sent(own_expect(tag::PARSE));
    }
    own_sync(exchange, out);
}

/// After that batch: the client's names go, so no other client sees them.
pub fn hide_own_statements<'a>(
    own: impl Iterator<Item = &'a Statement>,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    for statement in own {
        extended::write_target(out, tag::CLOSE, b'S', &statement.name[..]);
        exchange.sent(own_expect(tag::CLOSE));
    }
    own_sync(exchange, out);
}

fn own_expect(message: u8) -> Expect {
    match message {
        tag::PARSE => Expect::Parse {
            origin: Origin::Own,
            before: None,
            undo: None,
        },
        _ => Expect::Close {
            origin: Origin::Own,
            before: None,
            undo: None,
        },
    }
}

fn own_sync(exchange: &mut Exchange, out: &mut BytesMut) {
    out.extend_from_slice(SYNC);
    exchange.sent(Expect::Sync {
        origin: Origin::Own,
    });
}

const SYNC: &[u8] = b"S\0\0\0\x04";

/// A message of a batch that lists statements, under the client's own
/// statement names (`None`: one that names no statement of the client's).
fn write_as_client(message: &Planned, exchange: &mut Exchange, out: &mut BytesMut) -> Option<Step> {
    match message {
        Planned::Parse { statement, undo } => {
            extended::write_target(out, tag::CLOSE, b'S', &statement.name[..]);
            exchange.sent(own_expect(tag::CLOSE));
            extended::write_parse(out, &statement.name[..], &statement.after_name);
            exchange.sent(Expect::Parse {
                origin: Origin::Client,
                before: None,
                undo: Some(undo.clone()),
            });
        }
        Planned::Use {
            message: Use::Bind { portal, rest },
            statement,
        } if !statement.name.is_empty() => {
            extended::write_bind(out, portal, &statement.name[..], rest);
            exchange.sent(Expect::Bind { alias: None });
        }
        Planned::Use {
            message: Use::Describe,
            statement,
        } => {
            extended::write_target(out, tag::DESCRIBE, b'S', &statement.name[..]);
            let name: Arc<str> = Arc::from(String::from_utf8_lossy(&statement.name));
            exchange.sent(Expect::Describe(Describing::new(
                Origin::Client,
                name,
                None,
            )));
        }
        Planned::Close {
            statement: Some(statement),
            undo,
            ..
        } => {
            extended::write_target(out, tag::CLOSE, b'S', &statement.name[..]);
            exchange.sent(Expect::Close {
                origin: Origin::Client,
                before: None,
                undo: Some(undo.clone()),
            });
        }
        _ => return None,
    }
    Some(Step::Sent)
}

/// A Bind or Describe of a named statement, prepared on `conn` first if it
/// lacks it, or has it in another shape than the one the client knows.
fn use_statement(
    message: &Use,
    statement: &Statement,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) -> Step {
    let name = &statement.server_name;
    let here = conn.prepared.get(name);
    let stale = match message {
        Use::Bind { .. } => match (statement.shape, here.map(|e| e.shape)) {
            (Some(known), Some(Some(there))) => !there.fits(&known),
            (Some(_), Some(None)) => true,
            _ => false,
        },
        // A Describe tells the client the shape this connection has.
        Use::Describe => false,
    };
    // A statement being closed is not prepared again: the server says
    // whether the Close ran (an error earlier in its batch skips it).
    if (here.is_none() || stale) && !statement.closing {
        prepare_on_server(statement, Origin::Added, conn, exchange, out);
        if let (Use::Bind { .. }, Some(_)) = (message, statement.shape) {
            return check(statement, exchange, out);
        }
    }
    match message {
        Use::Bind { portal, rest } => {
            extended::write_bind(out, portal, name.as_bytes(), rest);
            exchange.sent(Expect::Bind {
                alias: Some(alias(statement)),
            });
        }
        Use::Describe => {
            extended::write_target(out, tag::DESCRIBE, b'S', name.as_bytes());
            let mut describing = Describing::new(Origin::Client, name.clone(), None);
            describing.alias = Some(alias(statement));
            exchange.sent(Expect::Describe(describing));
        }
    }
    Step::Sent
}

/// The client's unnamed statement, parsed on `conn` unless it has it.
fn reparse(
    statement: &Statement,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) -> Step {
    let here = conn.prepared.unnamed();
    let same = here.is_some_and(|u| {
        u.key == statement.key
            && match (statement.shape, u.shape) {
                (Some(known), Some(there)) => there.fits(&known),
                (Some(_), None) => false,
                (None, _) => true,
            }
    });
    if same {
        return Step::Sent;
    }
    let before = conn.prepared.parsed_unnamed(Some(statement.key));
    extended::write_parse(out, "", &statement.after_name);
    exchange.sent(Expect::Parse {
        origin: Origin::Added,
        before: Some(before),
        undo: None,
    });
    match statement.shape {
        Some(_) => check(statement, exchange, out),
        None => Step::Sent,
    }
}

/// Describes the statement just prepared again, to compare with what the
/// client knows, and flushes: the batch waits for the answer.
fn check(statement: &Statement, exchange: &mut Exchange, out: &mut BytesMut) -> Step {
    extended::write_target(out, tag::DESCRIBE, b'S', statement.server_name.as_bytes());
    exchange.sent(Expect::Describe(Describing::new(
        Origin::Added,
        statement.server_name.clone(),
        statement.shape,
    )));
    out.extend_from_slice(FLUSH);
    Step::Check
}

const FLUSH: &[u8] = b"H\0\0\0\x04";

/// A statement pgsplit prepares again on `conn` for the client.
fn prepare_on_server(
    statement: &Statement,
    origin: Origin,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    close_on_server(statement, Origin::Added, conn, exchange, out);
    parse_on_server(statement, origin, None, conn, exchange, out);
}

fn parse_on_server(
    statement: &Statement,
    origin: Origin,
    undo: Option<&Box<Undo>>,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    extended::write_parse(out, statement.server_name.as_bytes(), &statement.after_name);
    let before = conn.prepared.parsed(&statement.server_name);
    exchange.sent(Expect::Parse {
        origin,
        before: Some(before),
        undo: undo.cloned(),
    });
}

/// Same name means same text and types, and closing a statement that does
/// not exist is no error: so the Parse after this Close can never fail
/// with "already exists", whatever happened on this connection before.
fn close_on_server(
    statement: &Statement,
    origin: Origin,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    close_named(&statement.server_name, origin, conn, exchange, out);
}

/// A Close of the named statement `name` on `conn`.
pub fn close_named(
    name: &Arc<str>,
    origin: Origin,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    extended::write_target(out, tag::CLOSE, b'S', name.as_bytes());
    let before = conn.prepared.closed(name);
    exchange.sent(Expect::Close {
        origin,
        before: Some(before),
        undo: None,
    });
}

fn alias(statement: &Statement) -> Box<Alias> {
    Box::new(Alias {
        server: statement.server_name.clone(),
        client: statement.name.clone(),
    })
}
