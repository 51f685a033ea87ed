//! The extended protocol: Parse, Bind, Describe and Close are held in the
//! batch until Sync (or Flush), routed as a unit, with the client's named
//! statements looked up and their routes remembered.

use super::{primary, session_command, Flow, Session};
use crate::client::batch::{Planned, Use};
use crate::client::io::ClientError;
use crate::client::statements::Statement;
use crate::protocol::{backend, extended, status, tag};
use crate::router::{Destination, Reason, Route};
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
        } else if tag == tag::FLUSH {
            // Messages after a Flush may still need the primary, and the
            // batch cannot move once it has started on a server.
            Some(primary(Reason::Write))
        } else {
            Some(match self.batch.needs_primary.clone() {
                Some(reason) => primary(reason),
                None => Route {
                    destination: Destination::Replica,
                    reason: Reason::ReadOnly,
                },
            })
        };
        self.dispatch(tag, frame, route).await
    }

    pub(super) async fn add_parse(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let parse = extended::parse(&frame[5..])?;
        let text = std::str::from_utf8(parse.query).ok();
        if let Some(command) = text.and_then(session_command) {
            self.follow(&command);
        }
        let (name_len, unnamed) = (parse.name.len(), parse.name.is_empty());
        let route = if self.routing_needed() {
            Some(match text {
                Some(text) => self.route_text(text).await,
                None => primary(Reason::ParseFailure),
            })
        } else {
            self.pin_unrouted(text);
            None
        };
        let name = Bytes::copy_from_slice(parse.name);
        self.note(route.as_ref());
        let after_name = frame.slice(5 + name_len + 1..);
        let statement = self.statements.parsed(&name, after_name, route);
        if unnamed {
            self.batch.parsed_unnamed = true;
            self.batch.messages.push(Planned::ParseUnnamed(frame));
        } else {
            self.batch.messages.push(Planned::Parse(statement));
        }
        Ok(Flow::Continue)
    }

    pub(super) async fn add_bind(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let bind = extended::bind(&frame[5..])?;
        let portal_end = 5 + bind.portal.len();
        let rest_start = portal_end + 1 + bind.statement.len() + 1;
        let name = Bytes::copy_from_slice(bind.statement);
        match self.use_statement(&name).await {
            Some(statement) if !name.is_empty() => {
                let message = Use::Bind {
                    portal: frame.slice(5..portal_end),
                    rest: frame.slice(rest_start..),
                };
                self.batch
                    .messages
                    .push(Planned::Use { message, statement });
            }
            _ => self.batch.messages.push(Planned::Raw(frame)),
        }
        Ok(Flow::Continue)
    }

    pub(super) async fn add_describe(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let (kind, name) = extended::target(&frame[5..])?;
        let name = Bytes::copy_from_slice(name);
        if kind == b'S' {
            if let Some(statement) = self.use_statement(&name).await.filter(|_| !name.is_empty()) {
                let message = Use::Describe;
                self.batch
                    .messages
                    .push(Planned::Use { message, statement });
                return Ok(Flow::Continue);
            }
        }
        self.batch.messages.push(Planned::Raw(frame));
        Ok(Flow::Continue)
    }

    pub(super) fn add_close(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let (kind, name) = extended::target(&frame[5..])?;
        if kind == b'S' {
            let closed = self.statements.get(name).cloned();
            self.statements.closed(name);
            if let Some(statement) = closed.filter(|s| !s.server_name.is_empty()) {
                self.batch.messages.push(Planned::Close(statement));
                return Ok(Flow::Continue);
            }
        }
        self.batch.messages.push(Planned::Raw(frame));
        Ok(Flow::Continue)
    }

    /// The client's statement `name`, routed, with the unnamed one
    /// re-parsed when this batch has not parsed it.
    pub(super) async fn use_statement(&mut self, name: &[u8]) -> Option<Statement> {
        let mut statement = self.statements.get(name)?.clone();
        if statement.route.is_none() && self.routing_needed() {
            let route = self.route(statement.query()).await;
            self.statements.set_route(name, route.clone());
            statement.route = Some(route);
        }
        self.note(statement.route.as_ref());
        if name.is_empty() && !self.batch.parsed_unnamed {
            self.batch.parsed_unnamed = true;
            self.batch
                .messages
                .push(Planned::Reparse(statement.clone()));
        }
        Some(statement)
    }

    /// Remembers that the batch must go to the primary, and why.
    pub(super) fn note(&mut self, route: Option<&Route>) {
        if let Some(route) = route {
            self.pin_if_needed(route);
        }
        if let Some(route) = route.filter(|r| r.destination == Destination::Primary) {
            self.batch
                .needs_primary
                .get_or_insert_with(|| route.reason.clone());
        }
    }
}
