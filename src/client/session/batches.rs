//! The extended protocol: Parse, Bind, Describe and Close are held in the
//! batch until Sync (or Flush), routed as a unit, with the client's named
//! statements looked up and their routes remembered.

use super::{primary, Flow, Session, PROBE, SYNC_FRAME};
use crate::client::batch::{Planned, Use};
use crate::client::io::ClientError;
use crate::client::statements::Statement;
use crate::protocol::{backend, extended, status, tag};
use crate::router::{Command, Destination, Reason, Route};
use bytes::Bytes;

impl Session {
    pub(super) async fn end_batch(&mut self, tag: u8, frame: Bytes) -> Result<Flow, ClientError> {
        if self.server.is_none() && self.batch.is_empty() {
            if tag == tag::SYNC {
                // Nothing to run: answer as the server would, no round trip.
                self.out.clear();
                backend::ready_for_query(status::IDLE, &mut self.out);
                self.io.write(&self.out).await?;
            }
            return Ok(Flow::Continue);
        }
        let route = if !self.routing_needed() {
            None
        } else if tag == tag::FLUSH && self.batch.runs_nothing() {
            return Box::pin(self.probe()).await;
        } else if tag == tag::FLUSH {
            // Messages after a Flush may still need the primary, and the
            // batch cannot move once it has started on a server.
            Some(primary(Reason::Write))
        } else {
            Some(match self.batch.needs_primary.clone() {
                Some(reason) => primary(reason),
                None => Route::new(Destination::Replica, Reason::ReadOnly),
            })
        };
        self.dispatch(tag, frame, route).await
    }

    /// A flushed batch that only prepares, describes and closes statements
    /// (asyncpg's prepare: Parse, Describe, Flush) changes nothing a later
    /// batch depends on: pgsplit prepares statements wherever they run. It
    /// is answered from the server its statements would run on, ended with
    /// pgsplit's own Sync, and the client's Bind, Execute and Sync that
    /// follow are routed on their own, to a replica when they read.
    async fn probe(&mut self) -> Result<Flow, ClientError> {
        let route = match self.batch.needs_primary.clone() {
            Some(reason) => primary(reason),
            None => Route::new(Destination::Replica, Reason::ReadOnly),
        };
        self.dispatch(PROBE, Bytes::from_static(SYNC_FRAME), Some(route))
            .await
    }

    pub(super) async fn add_parse(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let Ok(parse) = extended::parse(&frame[5..]) else {
            // The server refuses it with an error, as it would direct.
            self.note(Some(&primary(Reason::ParseFailure)), false);
            return self.add_raw(frame);
        };
        let (name_len, unnamed) = (parse.name.len(), parse.name.is_empty());
        if self.statements.get_closing(parse.name).is_some() && self.exchange.answering() {
            // Whether the name is free depends on whether the server ran
            // the Close before it: wait for its answer.
            self.deferred = Some((tag::PARSE, frame));
            return Ok(Flow::Wait);
        }
        if !unnamed && self.statements.get(parse.name).is_some() {
            // As PostgreSQL: a name in use is an error, not a replacement.
            let len = frame.len();
            let error = duplicate_statement(parse.name);
            self.batch.push(Planned::Refuse(error), len);
            return Ok(Flow::Continue);
        }
        let text = std::str::from_utf8(parse.query).ok();
        let (route, routed) = match self.known_route(text) {
            Some(known) => known,
            None => Box::pin(self.statement_route(text)).await,
        };
        if let Some(Command::Session(command)) = route.command.as_deref() {
            self.follow(command);
        }
        self.note(Some(&route), false);
        let name = Bytes::copy_from_slice(parse.name);
        let after_name = frame.slice(5 + name_len + 1..);
        let (statement, undo) = self.statements.parsed(&name, after_name, route, routed);
        let (len, undo) = (frame.len(), Box::new(undo));
        if unnamed {
            self.batch.parsed_unnamed = true;
            let key = statement.key;
            self.batch
                .push(Planned::ParseUnnamed { frame, key, undo }, len);
        } else {
            self.batch.push(Planned::Parse { statement, undo }, len);
        }
        Ok(Flow::Continue)
    }

    /// A message forwarded as the client sent it.
    pub(super) fn add_raw(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let len = frame.len();
        self.batch.push(Planned::Raw(frame), len);
        Ok(Flow::Continue)
    }

    pub(super) async fn add_bind(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let Ok(bind) = extended::bind(&frame[5..]) else {
            return self.add_raw(frame);
        };
        let portal_end = 5 + bind.portal.len();
        let rest_start = portal_end + 1 + bind.statement.len() + 1;
        let name = Bytes::copy_from_slice(bind.statement);
        let len = frame.len();
        let statement = self.use_statement(&name, true).await;
        if let Some(database) = statement.as_ref().and_then(|s| s.database.as_deref()) {
            Box::pin(self.app.close_idle_connections(database)).await;
        }
        match statement {
            Some(statement) if !name.is_empty() => {
                let message = Use::Bind {
                    portal: frame.slice(5..portal_end),
                    rest: frame.slice(rest_start..),
                };
                self.batch.push(Planned::Use { message, statement }, len);
            }
            _ => self.batch.push(Planned::Raw(frame), len),
        }
        Ok(Flow::Continue)
    }

    /// A malformed Describe (a subtype neither S nor P, no name) is
    /// forwarded: PostgreSQL answers it with an error and goes on.
    pub(super) async fn add_describe(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let Ok((b'S', name)) = extended::target(&frame[5..]) else {
            return self.add_raw(frame);
        };
        let name = Bytes::copy_from_slice(name);
        let described = self.use_statement(&name, false).await;
        if let Some(statement) = described.filter(|_| !name.is_empty()) {
            let len = frame.len();
            let message = Use::Describe;
            self.batch.push(Planned::Use { message, statement }, len);
            return Ok(Flow::Continue);
        }
        self.add_raw(frame)
    }

    pub(super) fn add_close(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let Ok((b'S', name)) = extended::target(&frame[5..]) else {
            return self.add_raw(frame);
        };
        let Some(statement) = self.statements.get(name).cloned() else {
            // Not the client's (a pinned client's SQL PREPARE): as it is.
            return self.add_raw(frame);
        };
        let undo = Box::new(self.statements.closed(name));
        let statement = (!name.is_empty()).then_some(statement);
        let len = frame.len();
        let close = Planned::Close {
            statement,
            frame,
            undo,
        };
        self.batch.push(close, len);
        Ok(Flow::Continue)
    }

    /// The client's statement `name`, routed, with the unnamed one
    /// re-parsed when this batch has not parsed it.
    /// `runs`: a Bind, which will run it (a Describe does not).
    pub(super) async fn use_statement(&mut self, name: &[u8], runs: bool) -> Option<Statement> {
        let mut statement = match self.statements.get(name) {
            Some(statement) => statement.clone(),
            None => self.statements.get_closing(name)?.clone(),
        };
        if statement.route.is_none() && self.routing_needed() {
            let route = self.route(statement.query()).await;
            self.statements.set_route(name, route.clone());
            statement.route = Some(route);
        }
        self.note(statement.route.as_ref(), runs);
        if runs && statement.lists {
            self.batch.lists_statements = true;
        }
        if name.is_empty() && !self.batch.parsed_unnamed {
            self.batch.parsed_unnamed = true;
            self.batch.push(Planned::Reparse(statement.clone()), 0);
        }
        Some(statement)
    }

    /// Remembers that the batch must go to the primary, and why; a
    /// statement that `runs` and sets a session setting has it tracked.
    pub(super) fn note(&mut self, route: Option<&Route>, runs: bool) {
        if let Some(route) = route {
            match &route.reason {
                Reason::Setting(name) if runs => self.track(name),
                // A Parse sets nothing: its Bind will say.
                Reason::Setting(_) => {}
                _ => self.pin_if_needed(route),
            }
        }
        if let Some(route) = route.filter(|r| r.destination == Destination::Primary) {
            self.batch
                .needs_primary
                .get_or_insert_with(|| route.reason.clone());
        }
    }
}

/// PostgreSQL's error for a Parse of a statement name in use.
fn duplicate_statement(name: &[u8]) -> Bytes {
    let mut out = bytes::BytesMut::new();
    crate::protocol::PgError::error(
        "42P05",
        format!(
            "prepared statement \"{}\" already exists",
            String::from_utf8_lossy(name)
        ),
    )
    .encode(&mut out);
    out.freeze()
}
