//! The extended protocol: Parse, Bind, Describe and Close are held in the
//! batch until Sync (or Flush), routed as a unit, with the client's named
//! statements looked up and their routes remembered.

use super::{primary, Flow, Session, PROBE, SYNC_FRAME};
use crate::client::batch::{ControlPrefix, Planned, Use};
use crate::client::io::ClientError;
use crate::client::statements::Statement;
use crate::protocol::{backend, body, extended, status, tag};
use crate::router::decision::{Answer, Decision, Place};
use crate::router::{Classification, Command, Control, Destination, Reason, Route};
use bytes::Bytes;

impl Session {
    pub(super) async fn end_batch(&mut self, tag: u8, frame: Bytes) -> Result<Flow, ClientError> {
        if self.held.server.is_none() && self.batch.is_empty() {
            if tag == tag::SYNC {
                // Nothing to run: answer as the server would, no round trip.
                self.out.clear();
                backend::ready_for_query(self.client_status(), &mut self.out);
                self.io.write(&self.out).await?;
            }
            return Ok(Flow::Continue);
        }
        if let Some((prefix, control)) = self.control_in_batch() {
            let route = Route::new(Destination::Primary, Reason::Transaction(control));
            if self.needs_defaults(&route) {
                Box::pin(self.cluster.learn_defaults()).await;
            }
            if let Place::Answer(answer) = self.decide(&route).place {
                let whole = prefix.len == self.batch.messages.len();
                if whole || matches!(answer, Answer::Begin { .. }) {
                    return Box::pin(self.answer_prefix(prefix, answer, tag, frame)).await;
                }
            }
        }
        let route = if tag == tag::FLUSH && self.routing_needed() && self.batch.runs_nothing() {
            return Box::pin(self.probe()).await;
        } else if tag == tag::FLUSH {
            // Messages after a Flush may still need the primary, and the
            // batch cannot move once it has started on a server.
            primary(Reason::Write)
        } else {
            match self.batch.needs_primary.clone() {
                Some(reason) => primary(super::batch_reason(reason)),
                // A portal that outlives the batch lives in the transaction.
                None if self.batch.keeps_portal && self.lazy.is_some() => primary(Reason::Portal),
                None => Route::new(Destination::Replica, Reason::ReadOnly),
            }
        };
        let decision = self.decide(&route);
        if let Place::Answer(answer) = decision.place {
            return Box::pin(self.answer_batch(answer, tag, frame)).await;
        }
        self.dispatch(tag, frame, decision).await
    }

    /// A flushed batch that only prepares, describes and closes statements
    /// (asyncpg's prepare: Parse, Describe, Flush) changes nothing a later
    /// batch depends on: pgsplit prepares statements wherever they run. It
    /// is answered from the server its statements would run on, ended with
    /// pgsplit's own Sync, and the client's Bind, Execute and Sync that
    /// follow are routed on their own, to a replica when they read.
    async fn probe(&mut self) -> Result<Flow, ClientError> {
        let route = match self.batch.needs_primary.clone() {
            Some(reason) => primary(super::batch_reason(reason)),
            None => Route::new(Destination::Replica, Reason::ReadOnly),
        };
        // Answered, then ended: it opens no transaction.
        let decision = match self.decide(&route) {
            Decision {
                place: Place::OpenOnPrimary | Place::Held,
                why,
            } => Decision {
                place: Place::Primary,
                why,
            },
            Decision {
                place: Place::Answer(answer),
                ..
            } => return self.answer_batch(answer, tag::FLUSH, Bytes::new()).await,
            other => other,
        };
        self.dispatch(PROBE, Bytes::from_static(SYNC_FRAME), decision)
            .await
    }

    /// A transaction control statement at the start of the batch, and what
    /// it is (`Batch::control_prefix`).
    pub(super) fn control_in_batch(&mut self) -> Option<(ControlPrefix, Control)> {
        let statements = &self.statements;
        let utf8 = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_string);
        let prefix = self.batch.control_prefix(|message| match message {
            Planned::ParseUnnamed { frame, .. } => utf8(extended::parse(body(&frame)).ok()?.query),
            Planned::Parse { statement, .. } | Planned::Use { statement, .. } => {
                utf8(statement.query())
            }
            Planned::Raw(_) => utf8(statements.get(b"")?.query()),
            _ => None,
        })?;
        match self.classify(&prefix.text) {
            Classification::Routed(Route {
                reason: Reason::Transaction(control),
                ..
            }) => Some((prefix, control)),
            _ => None,
        }
    }

    /// A batch that starts with transaction control pgsplit answers: the
    /// answers of its messages, in order; then, if the batch is only that,
    /// its ReadyForQuery (at a Sync), else the rest goes on as the
    /// transaction's (only a BEGIN is answered ahead of more).
    async fn answer_prefix(
        &mut self,
        prefix: ControlPrefix,
        answer: Answer,
        tag: u8,
        frame: Bytes,
    ) -> Result<Flow, ClientError> {
        if self.owes_answers() {
            self.deferred = Some((tag, frame));
            return Ok(Flow::Wait);
        }
        let whole = prefix.len == self.batch.messages.len();
        self.out.clear();
        let refused = matches!(answer, Answer::Aborted | Answer::NoSavepoint);
        if !refused {
            for kind in &prefix.answers[..prefix.answers.len() - 1] {
                backend::empty(*kind, &mut self.out);
            }
        }
        let status = self.answer_into(answer, &prefix.text);
        if refused {
            // As after any error in a batch: the rest is skipped to Sync.
            self.drop_unsent();
            match tag {
                tag::SYNC => backend::ready_for_query(status, &mut self.out),
                _ => self.skip_until_sync = true,
            }
        } else if whole {
            self.batch.clear();
            if tag == tag::SYNC {
                backend::ready_for_query(status, &mut self.out);
            }
        } else {
            self.batch.drop_first(prefix.len);
        }
        self.io.write(&self.out).await?;
        if whole || refused {
            return Ok(Flow::Continue);
        }
        // The rest of the batch, inside the transaction just begun.
        self.end_batch(tag, frame).await
    }

    /// The batch's messages not sent yet are dropped, and what they did to
    /// the client's statements undone.
    pub(super) fn drop_unsent(&mut self) {
        for undo in self.batch.drop_unsent() {
            self.statements.undo(undo);
        }
    }

    /// The server still owes the client answers (or a paused batch waits
    /// for them): pgsplit's own answers must come after them.
    pub(super) fn owes_answers(&self) -> bool {
        self.exchange.busy() || self.paused.is_some()
    }

    /// The transaction status the client was last told.
    pub(super) fn client_status(&self) -> u8 {
        match (&self.lazy, self.held.server.is_some()) {
            (Some(lazy), _) if lazy.state.failed => status::FAILED,
            (Some(_), _) => status::IN_TRANSACTION,
            (None, true) => self.exchange.tx_status,
            (None, false) => status::IDLE,
        }
    }

    /// A batch pgsplit answers for a transaction that reached no server:
    /// a failed one gets 25P02 for the batch (and its ReadyForQuery, `E`,
    /// at the Sync; after a Flush, the rest is skipped until then).
    async fn answer_batch(
        &mut self,
        answer: Answer,
        tag: u8,
        frame: Bytes,
    ) -> Result<Flow, ClientError> {
        if self.owes_answers() {
            self.deferred = Some((tag, frame));
            return Ok(Flow::Wait);
        }
        self.drop_unsent();
        self.out.clear();
        let status = self.answer_into(answer, "");
        match tag {
            tag::SYNC => backend::ready_for_query(status, &mut self.out),
            _ => self.skip_until_sync = true,
        }
        self.io.write(&self.out).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn add_parse(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let Ok(parse) = extended::parse(body(&frame)) else {
            // The server refuses it with an error, as it would direct.
            self.note(Some(&primary(Reason::ParseFailure)), false);
            return self.add_raw(frame);
        };
        let unnamed = parse.name.is_empty();
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
        let after_name = frame.slice_ref(parse.after_name);
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
        let Ok(bind) = extended::bind(body(&frame)) else {
            return self.add_raw(frame);
        };
        self.batch.keeps_portal |= !bind.portal.is_empty();
        let (portal, rest) = (frame.slice_ref(bind.portal), frame.slice_ref(bind.rest));
        let name = Bytes::copy_from_slice(bind.statement);
        let len = frame.len();
        let statement = self.use_statement(&name, true).await;
        if let Some(database) = statement.as_ref().and_then(|s| s.database.as_deref()) {
            Box::pin(self.app.close_idle_connections(database)).await;
        }
        match statement {
            Some(statement) if !name.is_empty() => {
                let message = Use::Bind { portal, rest };
                self.batch.push(Planned::Use { message, statement }, len);
            }
            _ => self.batch.push(Planned::Raw(frame), len),
        }
        Ok(Flow::Continue)
    }

    /// A malformed Describe (a subtype neither S nor P, no name) is
    /// forwarded: PostgreSQL answers it with an error and goes on.
    pub(super) async fn add_describe(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let Ok((b'S', name)) = extended::target(body(&frame)) else {
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
        let Ok((b'S', name)) = extended::target(body(&frame)) else {
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
            let held = self.batch.messages.len();
            self.batch.noted.push((held, route.reason.clone()));
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
