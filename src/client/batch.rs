//! An extended-protocol batch: the messages a client sends up to Sync (or
//! Flush). They are held until then because where the batch runs depends
//! on all of them, and rewritten for the server connection that runs it:
//! statement names become server-side names, and a statement that server
//! connection has not seen yet is prepared on it first.

use super::relay::{Change, Exchange, Expect};
use super::statements::Statement;
use crate::protocol::{extended, tag};
use crate::router::Reason;
use crate::server::ServerConnection;
use bytes::{Bytes, BytesMut};

/// A batch message, with what it needs from the client's statements taken
/// when it arrived (a later Parse in the same batch may reuse the name).
pub enum Planned {
    /// Forwarded unchanged (Execute, portal Describe/Close, Flush, ...).
    Raw(Bytes),
    /// The unnamed statement: forwarded unchanged.
    ParseUnnamed(Bytes),
    /// A named statement: sent under its server-side name.
    Parse(Statement),
    /// Bind or statement Describe of a statement the client prepared.
    Use { message: Use, statement: Statement },
    /// Close of a named statement.
    Close(Statement),
    /// The client's last unnamed statement, parsed again because this
    /// batch binds it and may run on another server connection.
    Reparse(Statement),
}

pub enum Use {
    Bind { portal: Bytes, rest: Bytes },
    Describe,
}

#[derive(Default)]
pub struct Batch {
    pub messages: Vec<Planned>,
    /// Why the batch must run on the primary, if it must.
    pub needs_primary: Option<Reason>,
    /// Whether it has parsed the unnamed statement (else a Bind of it
    /// re-parses the client's last one).
    pub parsed_unnamed: bool,
    /// Flushed to a server without a Sync yet: it stays on that server.
    pub open: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn clear(&mut self) {
        self.messages.clear();
        self.needs_primary = None;
        self.parsed_unnamed = false;
    }

    /// Appends the batch, rewritten for `conn`, to `out`, recording the
    /// responses to expect. The messages stay (a read may be retried
    /// elsewhere); the caller clears them.
    pub fn write(&self, conn: &mut ServerConnection, exchange: &mut Exchange, out: &mut BytesMut) {
        for message in &self.messages {
            write_one(message, conn, exchange, out);
        }
    }
}

fn write_one(
    message: &Planned,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    match message {
        Planned::Raw(frame) => out.extend_from_slice(frame),
        Planned::ParseUnnamed(frame) => {
            out.extend_from_slice(frame);
            exchange.sent(Expect::Parse {
                swallow: false,
                change: None,
            });
        }
        Planned::Parse(statement) => prepare_on_server(statement, false, conn, exchange, out),
        Planned::Use { message, statement } => {
            if !statement.server_name.is_empty() && !conn.prepared.contains(&*statement.server_name)
            {
                prepare_on_server(statement, true, conn, exchange, out);
            }
            match message {
                Use::Bind { portal, rest } => {
                    extended::write_bind(out, portal, &statement.server_name, rest)
                }
                Use::Describe => {
                    extended::write_target(out, tag::DESCRIBE, b'S', &statement.server_name)
                }
            }
        }
        Planned::Close(statement) => close_on_server(statement, false, conn, exchange, out),
        Planned::Reparse(statement) => prepare_on_server(statement, true, conn, exchange, out),
    }
}

fn prepare_on_server(
    statement: &Statement,
    swallow: bool,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    if !statement.server_name.is_empty() {
        // Same name means same text and types, and closing a statement that
        // does not exist is no error: so the Parse can never fail with
        // "already exists", whatever happened on this connection before.
        close_on_server(statement, true, conn, exchange, out);
    }
    extended::write_parse(out, &statement.server_name, &statement.after_name);
    let change = (!statement.server_name.is_empty()).then(|| Change {
        name: statement.server_name.clone(),
        was_present: !conn.prepared.insert(statement.server_name.to_string()),
    });
    exchange.sent(Expect::Parse { swallow, change });
}

fn close_on_server(
    statement: &Statement,
    swallow: bool,
    conn: &mut ServerConnection,
    exchange: &mut Exchange,
    out: &mut BytesMut,
) {
    extended::write_target(out, tag::CLOSE, b'S', &statement.server_name);
    let change = Change {
        name: statement.server_name.clone(),
        was_present: conn.prepared.remove(&*statement.server_name),
    };
    exchange.sent(Expect::CloseComplete {
        swallow,
        change: Some(change),
    });
}
