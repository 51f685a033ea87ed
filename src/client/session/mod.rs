//! A logged-in client: read its messages, route them, forward them to a
//! pooled server connection and stream the replies back. The loop waits on
//! the client and, while one is held, the server; everything else is
//! handed to the batch, relay and routing code.
//!
//! Here: the loop, simple queries, routing and dispatching to a server
//! connection. `acquire`: getting that connection (the one held, a
//! pinned client's, session pooling's spare, or a new checkout with the
//! client's settings in force). `batches`: the extended protocol's messages up to
//! Sync. `state`: what a client leaves in server sessions (pins, tracked
//! settings). `recovery`: a failed read run again, a lost server, the
//! goodbye at shutdown and the clean-up when the client leaves. `observe`:
//! the session's metrics (statements by route, durations, server errors).
//! `parking`: transaction pooling's connection kept between transactions.

mod acquire;
mod batches;
mod commit_lsn;
mod connections;
mod idle_memory;
mod lazy;
mod limits;
mod observe;
mod parking;
mod pin_state;
mod recovery;
mod state;
mod timing;
mod transaction;

use super::batch::{self, Batch, Planned, Written};
use super::exchange::{Checked, Exchange, Expect, Origin};
use super::io::{ClientError, ClientIo};
use super::relay::{relay, RelayError};
use super::retry::{self, Retry, Verdict};
use super::settings::Settings;
use super::statements::Statements;
use crate::app::clients::{ClientInfo, ClientState};
use crate::app::{App, Current, Stop};
use crate::cancel::CancelSlot;
use crate::catalog::DatabaseFunctions;
use crate::config::{Consistency, PoolMode};
use crate::health::Need;
use crate::metrics::ErrorSide;
use crate::pool::{ClusterPools, RecallTicket};
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, body, extended, status, tag, PgError, ProtocolError};
use crate::role::Role;
use crate::router::decision::{Decision, Place, Why};
use crate::router::{
    Classification, Command, Destination, Reason, Route, RouteMemo, SessionCommand,
};
use crate::server::ServerError;
pub(in crate::client) use acquire::pool_error;
use acquire::Acquired;
use bytes::{Bytes, BytesMut};
use state::UNKNOWN_SETTINGS;

use std::sync::Arc;
use std::task::Poll;

pub struct Session {
    app: Arc<App>,
    /// The configuration generation this session uses; it moves to a
    /// reloaded one at its next checkout.
    current: Arc<Current>,
    io: ClientIo,
    cluster: Arc<ClusterPools>,
    functions: Arc<DatabaseFunctions>,
    cancel: Arc<CancelSlot>,
    mode: PoolMode,
    /// The connections the client holds (in use, spare, parked).
    held: connections::Held,
    exchange: Exchange,
    /// The routes of this client's recent statement shapes.
    memo: RouteMemo,
    statements: Statements,
    batch: Batch,
    /// A message that must wait until the server in use has answered
    /// everything before it (it needs another server).
    deferred: Option<(u8, Bytes)>,
    /// A batch stopped to check a statement prepared again (`batch`): it
    /// goes on once the server has described it.
    paused: Option<Paused>,
    /// The client's transaction while it has reached no server.
    lazy: Option<lazy::Lazy>,
    /// The bound on a server that stops answering while a client message
    /// waits on it.
    stall: timing::Deadline,
    /// The bound on a client idle inside a transaction that holds a server
    /// connection (`idle_transaction_timeout`).
    idle: timing::Deadline,
    /// `query_timeout` and `client_idle_timeout` (`limits`).
    query_alarm: timing::Alarm,
    idle_alarm: timing::Alarm,
    /// When the client last sent something (kept only with
    /// `client_idle_timeout`).
    last_heard: std::time::Instant,
    /// When an idle session gives its buffers back (`idle_memory`).
    idle_memory: idle_memory::IdleMemory,
    /// After a failed Flush, the rest of the batch is dropped until Sync.
    skip_until_sync: bool,
    /// Session state that ties the client to its server connection.
    pins: pin_state::PinState,
    /// The client's startup settings, in force on every connection it uses.
    settings: Settings,
    /// The client sent RESET or DISCARD: the connection that runs it no
    /// longer has the settings it is marked with.
    settings_reset: bool,
    /// A plain SET of this setting is running: once it is done, its value
    /// joins the client's settings.
    tracking: Option<String>,
    /// What this client's reads must see (read-your-writes).
    need: Need,
    /// A `/* pgsplit:min_lsn=... */` hint's position, for the statement
    /// being routed only.
    statement_min_lsn: crate::health::lsn::Lsn,
    /// Something sent to the primary may write: when the server is next
    /// idle, the client's reads must see it.
    wrote: bool,
    /// The read in flight on a replica, until its reply is released.
    retry: Retry,
    out: BytesMut,
    /// This client in the registry (state, pin, statement count).
    client: Arc<ClientInfo>,
    /// How long the statements and the transaction in progress took.
    durations: timing::Durations,
    /// pgsplit's shutdown state when this session last looked: the client
    /// is told to leave between transactions.
    stop: Stop,
    /// The waker this session's registry entry wakes at a shutdown.
    stop_waker: Option<std::task::Waker>,
    /// Its places on the recall lists of the pools it parked connections
    /// of: taken once, not at every parking.
    recall_tickets: Vec<RecallTicket>,
}

/// Where a paused batch stands: the message it goes on from and the one
/// that ends it (Sync, Flush, Query, ... or a pseudo-tag below).
struct Paused {
    next: usize,
    tag: u8,
    frame: Bytes,
}

/// What ends a batch on the wire: its ending frame alone, `out` (the
/// batch's messages and that frame), or the frame kept for a retry.
enum Outgoing {
    Frame(Bytes),
    Out,
    Kept,
}

/// Pseudo-tags for batch ends pgsplit makes itself: the messages held so
/// far are sent on without an end (their server is known), or sent with
/// pgsplit's own Sync (a flushed prefix that runs nothing, answered from
/// any server).
const STREAM: u8 = 0;
const PROBE: u8 = 1;

/// A Sync message.
const SYNC_FRAME: &[u8] = b"S\0\0\0\x04";

/// How much of a client's input is read ahead while its next message
/// waits: enough to see a Sync or the client leaving, not a flood.
const READ_AHEAD: usize = 64 * 1024;

/// How `serve` ended.
enum Served {
    /// The client left, or was told to.
    Done,
    /// The client is idle and its memory given back.
    Idle,
}

/// What the loop does after a message.
enum Flow {
    Continue,
    Wait,
    Terminate,
}

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    /// The parked connection must go back to its pool: another client
    /// waits for one.
    Reclaim,
    /// The shutdown state changed.
    Stop,
    /// The server has answered nothing for a while, and a client message
    /// waits on it.
    Stalled,
    /// The client has been idle inside a transaction for longer than
    /// `idle_transaction_timeout`.
    IdleInTransaction,
    /// `query_timeout`'s alarm rang (the statement may have ended since).
    QueryAlarm,
    /// `client_idle_timeout`'s alarm rang (the client may have spoken since).
    IdleAlarm,
    /// The idle-memory alarm rang (`idle_memory`).
    IdleMemory,
}

// Rare paths (errors, lost servers, catalog lookups) are boxed where they
// are awaited: their futures are large, and unboxed they would make every
// statement's future larger and costlier to set up.
impl Session {
    /// `current` is the generation the client logged in with, whose pools
    /// `cluster` comes from; `client` says which database it uses.
    pub fn new(
        app: Arc<App>,
        current: Arc<Current>,
        io: ClientIo,
        cluster: Arc<ClusterPools>,
        cancel: Arc<CancelSlot>,
        settings: Settings,
        client: Arc<ClientInfo>,
    ) -> Session {
        let stop = app.stop_now();
        Session {
            functions: app.catalog.database(&client.database),
            mode: current.config.pool_mode,
            current,
            app,
            io,
            cluster,
            cancel,
            held: Default::default(),
            exchange: Exchange::default(),
            memo: RouteMemo::default(),
            statements: Statements::new(client.id),
            batch: Batch::default(),
            deferred: None,
            paused: None,
            lazy: None,
            stall: timing::Deadline::default(),
            idle: timing::Deadline::default(),
            query_alarm: timing::Alarm::default(),
            idle_alarm: timing::Alarm::default(),
            last_heard: std::time::Instant::now(),
            idle_memory: Default::default(),
            skip_until_sync: false,
            pins: Default::default(),
            settings,
            settings_reset: false,
            tracking: None,
            need: Need::Any,
            statement_min_lsn: 0,
            wrote: false,
            retry: Retry::default(),
            // Grown as used: an idle client holds none (`idle_memory`).
            out: BytesMut::new(),
            client,
            durations: timing::Durations::default(),
            stop,
            stop_waker: None,
            recall_tickets: Vec::new(),
        }
    }

    /// Serves the client until it leaves, then returns its server
    /// connections clean or closes them.
    ///
    /// The loop that handles statements is a large future (statement
    /// handling, checkouts and relaying all nest in it); it lives in a box
    /// of its own, dropped while the client is idle (`idle_memory`): an
    /// idle session waits in a future of a hundred bytes, and the box is
    /// made again when the client speaks (once per idle spell, not per
    /// statement).
    pub async fn run(&mut self) -> Result<(), ClientError> {
        let mut event = None;
        let result = loop {
            match Box::pin(self.serve(event.take())).await {
                Ok(Served::Idle) => event = Some(self.wait().await),
                Ok(Served::Done) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(ClientError::Protocol(e)) = &result {
            tracing::warn!(error = %e, "client protocol violation");
            let code = PgError::from(e).code;
            self.app.metrics.error(ErrorSide::Client, &code);
            self.io.send_error(&PgError::from(e)).await;
        }
        Box::pin(self.finish()).await;
        result
    }

    /// Handles `event` (one the idle wait in `run` got), then serves the
    /// client until it leaves (`Done`) or has gone idle and given its
    /// memory back (`Idle`).
    async fn serve(&mut self, mut event: Option<Event>) -> Result<Served, ClientError> {
        loop {
            if let Some(event) = event.take() {
                if let Some(served) = self.on_event(event).await? {
                    return Ok(served);
                }
            }
            if let Flow::Terminate = self.handle_buffered().await? {
                return Ok(Served::Done);
            }
            self.stop = self.app.stop_now();
            if self.client.is_killed() {
                return Box::pin(self.tell_killed()).await.map(|()| Served::Done);
            }
            if self.must_leave() {
                return Box::pin(self.tell_shutdown()).await.map(|()| Served::Done);
            }
            let held_back = self.deferred.is_some() || self.paused.is_some();
            let stalls = held_back && self.exchange.answering();
            self.stall.hold(stalls, timing::STALL_CHECK);
            if let Some(timeout) = self.current.config.idle_transaction_timeout() {
                self.idle.hold(self.idle_in_transaction(), timeout);
            }
            self.arm_limits();
            self.idle_memory.arm();
            if self.idle_memory.given_back() {
                return Ok(Served::Idle);
            }
            event = Some(self.wait().await);
        }
    }

    /// What the session does on `event`; `Some` when the session ends.
    async fn on_event(&mut self, event: Event) -> Result<Option<Served>, ClientError> {
        match event {
            Event::Stop => {}
            Event::Stalled => Box::pin(self.stalled()).await?,
            Event::IdleInTransaction => {
                return Box::pin(self.idle_timeout())
                    .await
                    .map(|()| Some(Served::Done))
            }
            Event::QueryAlarm => Box::pin(self.query_alarm_rang()).await,
            Event::IdleAlarm => Box::pin(self.idle_alarm_rang()).await?,
            Event::IdleMemory => self.idle_memory_alarm(),
            Event::Client(Ok(0)) if self.io.buf.is_empty() => return Ok(Some(Served::Done)),
            Event::Client(Ok(0)) => return Err(ClientError::Gone),
            Event::Client(Ok(n)) => {
                self.idle.reset();
                self.heard_from_client();
                self.io.metrics.received(n)
            }
            Event::Client(Err(e)) => return Err(e.into()),
            Event::Reclaim => self.give_back_parked(),
            Event::Server(Ok(n)) if n > 0 => {
                self.stall.reset();
                self.relay().await?
            }
            Event::Server(_) => Box::pin(self.server_lost()).await?,
        }
        Ok(None)
    }

    /// Waits for the server held (first: its replies are never held up
    /// behind client input), the client, a call back of the parked
    /// connection, or a change of the shutdown state. Polled by hand, not
    /// with `select!` over read futures: it runs twice per statement, and
    /// this way each pending source costs one readiness check and waker.
    /// The parked connection's socket is not waited on: a server that
    /// closes it while idle is found when the client next uses it
    /// (`take_parked`), as a pooled one is at checkout.
    async fn wait(&mut self) -> Event {
        let Session {
            io,
            held: connections::Held { server, parked, .. },
            app,
            client,
            stop,
            deferred,
            paused,
            stop_waker,
            recall_tickets,
            stall,
            idle,
            query_alarm,
            idle_alarm,
            idle_memory,
            ..
        } = self;
        // While a message waits, the client is still read (up to a bound):
        // its Sync may be what the server waits for, and its leaving must
        // end the session.
        let waits = deferred.is_some() || paused.is_some();
        let read_client = !waits || server.is_none() || io.buf.len() < READ_AHEAD;
        let stop = *stop;
        std::future::poll_fn(|cx| {
            if let Some(conn) = server.as_deref_mut() {
                if let Poll::Ready(r) = poll_read(&mut conn.stream, &mut conn.read_buf, cx) {
                    return Poll::Ready(Event::Server(r));
                }
            }
            // A session that gave its read buffer back (`idle_memory`)
            // waits for the client without one, and takes one when the
            // client has something to say.
            let trimmed = io.buf.capacity() == 0;
            if read_client && (!trimmed || io.stream.poll_read_ready(cx).is_ready()) {
                if let Poll::Ready(r) = poll_read(&mut io.stream, &mut io.buf, cx) {
                    return Poll::Ready(Event::Client(r));
                }
            }
            if let (None, Some(parked)) = (server.as_ref(), parked.as_mut()) {
                if parked.recalled(recall_tickets, cx.waker()) {
                    return Poll::Ready(Event::Reclaim);
                }
            }
            if stall.poll(cx).is_ready() {
                return Poll::Ready(Event::Stalled);
            }
            if idle.poll(cx).is_ready() {
                return Poll::Ready(Event::IdleInTransaction);
            }
            if query_alarm.poll(cx).is_ready() {
                return Poll::Ready(Event::QueryAlarm);
            }
            if idle_alarm.poll(cx).is_ready() {
                return Poll::Ready(Event::IdleAlarm);
            }
            if idle_memory.poll(cx).is_ready() {
                return Poll::Ready(Event::IdleMemory);
            }
            client.stop_waker.register(cx.waker(), stop_waker);
            match app.stop_now() == stop && !client.is_killed() {
                true => Poll::Pending,
                false => Poll::Ready(Event::Stop),
            }
        })
        .await
    }

    /// Handles every whole message buffered, unless one has to wait.
    async fn handle_buffered(&mut self) -> Result<Flow, ClientError> {
        loop {
            if self.paused.is_some() || (self.deferred.is_some() && self.exchange.answering()) {
                return Ok(Flow::Wait);
            }
            let (tag, frame) = match self.deferred.take() {
                Some(deferred) => deferred,
                None => match self.io.take_frame()? {
                    Some(frame) => frame,
                    None if self.batch.is_empty() => return Ok(Flow::Continue),
                    // Rare: boxed, so that its future does not weigh on
                    // every statement's.
                    None => return Box::pin(self.stream_held()).await,
                },
            };
            match self.handle(tag, frame).await? {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
    }

    async fn handle(&mut self, tag: u8, frame: Bytes) -> Result<Flow, ClientError> {
        if self.skip_until_sync && tag != tag::TERMINATE {
            return self.skip(tag).await;
        }
        // After an error in the batch the server discards everything until
        // a Sync, as PostgreSQL direct would: so does pgsplit.
        if self.exchange.skipping && self.held.server.is_some() && tag != tag::TERMINATE {
            return match tag {
                tag::SYNC => self.end_batch(tag, frame).await,
                _ => Ok(Flow::Continue),
            };
        }
        match tag {
            tag::QUERY => match self.plan_query(&frame)? {
                Some(route) => self.dispatch(tag::QUERY, frame, route).await,
                // Rare, and its future is large: boxed.
                None => Box::pin(self.query(frame)).await,
            },
            tag::FUNCTION_CALL => {
                let decision = self.decide(&primary(Reason::Write));
                match decision.place {
                    Place::Answer(answer) => self.answer(answer, "", tag, frame).await,
                    _ => self.dispatch(tag, frame, decision).await,
                }
            }
            tag::PARSE => self.add_parse(frame).await,
            tag::BIND => self.add_bind(frame).await,
            tag::DESCRIBE => self.add_describe(frame).await,
            tag::CLOSE => self.add_close(frame),
            tag::EXECUTE => {
                // A named portal run in parts is resumed by later
                // Executes. The unnamed one with a row limit is a
                // driver's fetch of one row (asyncpg's fetchrow): its rest
                // is not asked for, and it runs as any read.
                if let Ok((portal, rows)) = extended::execute(body(&frame)) {
                    self.batch.keeps_portal |= rows > 0 && !portal.is_empty();
                }
                let len = frame.len();
                self.batch.push(Planned::Raw(frame), len);
                Ok(Flow::Continue)
            }
            tag::SYNC | tag::FLUSH => self.end_batch(tag, frame).await,
            tag::COPY_DATA | tag::COPY_DONE | tag::COPY_FAIL => self.copy(frame).await,
            tag::TERMINATE => Ok(Flow::Terminate),
            // A batch sent on ahead, deferred while another server finished.
            STREAM => Box::pin(self.stream_held()).await,
            other => Err(ProtocolError::Unexpected(other).into()),
        }
    }

    /// A simple query whose route is known and that needs nothing awaited
    /// before it is sent: where it goes (`Some`), prepared without making
    /// a future; `None` (nothing done yet) sends it to `query`.
    fn plan_query(&mut self, frame: &Bytes) -> Result<Option<Decision>, ClientError> {
        let text = extended::query_text(body(&frame))?;
        let text = std::str::from_utf8(text).ok();
        let Some((route, _)) = self.known_route(text) else {
            return Ok(None);
        };
        match route.command.as_deref() {
            Some(Command::Database(_)) => return Ok(None),
            Some(Command::Session(SessionCommand::Deallocate(name)))
                if self.statements.get(name.as_bytes()).is_some() =>
            {
                return Ok(None)
            }
            _ => {}
        }
        if self.needs_defaults(&route) {
            return Ok(None);
        }
        let decision = self.decide_query(&route);
        if let Place::Answer(_) = decision.place {
            return Ok(None);
        }
        if let Some(Command::Session(command)) = route.command.as_deref() {
            self.follow(command);
        }
        self.statements.forget_unnamed();
        self.query_effects(&route, &decision);
        Ok(Some(decision))
    }

    /// Where a simple query goes: held messages before it (a batch it
    /// ends) that need the primary take it there.
    fn decide_query(&self, route: &Route) -> Decision {
        match &self.batch.needs_primary {
            Some(reason) if !self.batch.is_empty() => self.decide(&primary(reason.clone())),
            _ => self.decide(route),
        }
    }

    /// What a simple query does besides running: the listing of prepared
    /// statements, a tracked setting (when it runs on its own, outside a
    /// transaction) or a pin.
    fn query_effects(&mut self, route: &Route, decision: &Decision) {
        if route.lists_statements {
            self.batch.lists_statements = true;
        }
        let own = matches!(decision.place, Place::Replica | Place::Primary);
        match &route.reason {
            Reason::Setting(name) if own => self.tracking = Some(name.clone()),
            _ => self.pin_if_needed(route),
        }
    }

    async fn query(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        let text = extended::query_text(body(&frame))?;
        let text = std::str::from_utf8(text).ok();
        let (route, _) = match self.known_route(text) {
            Some(known) => known,
            None => Box::pin(self.statement_route(text)).await,
        };
        if self.needs_defaults(&route) {
            Box::pin(self.cluster.learn_defaults()).await;
        }
        let decision = self.decide_query(&route);
        if let Place::Answer(answer) = decision.place {
            return self
                .answer(answer, text.unwrap_or_default(), tag::QUERY, frame.clone())
                .await;
        }
        // A simple query replaces the unnamed statement.
        self.statements.forget_unnamed();
        match route.command.as_deref() {
            Some(Command::Session(command)) => {
                self.follow(command);
                if let SessionCommand::Deallocate(name) = command {
                    if self.statements.get(name.as_bytes()).is_some() {
                        return Box::pin(self.deallocate(name.clone(), frame)).await;
                    }
                }
            }
            Some(Command::Database(database)) => {
                Box::pin(self.app.close_idle_connections(database)).await;
            }
            None => {}
        }
        self.query_effects(&route, &decision);
        self.dispatch(tag::QUERY, frame, decision).await
    }

    /// The route of statement text from this client's memo or the shared
    /// cache, when no catalog question stands in the way (`None`: ask
    /// `statement_route`). Not async, so that the common case makes no
    /// future.
    fn known_route(&mut self, text: Option<&str>) -> Option<(Route, bool)> {
        self.statement_min_lsn = text.and_then(crate::router::min_lsn_hint).unwrap_or(0);
        let routed = self.routing_needed();
        match self.classify(text?) {
            Classification::Routed(route) => Some((route, routed)),
            Classification::NeedsCatalog(_) => None,
        }
    }

    /// The route of statement text, and whether it is routed: inside a
    /// transaction or a flushed batch the server is fixed, and the route
    /// only tells what the statement does besides (pins, commands). There
    /// the catalog is not asked: the functions that pin are built in, and
    /// the primary connection may be the only one.
    async fn statement_route(&mut self, text: Option<&str>) -> (Route, bool) {
        let Some(text) = text else {
            return (primary(Reason::ParseFailure), self.routing_needed());
        };
        if self.routing_needed() {
            return (self.route_text(text).await, true);
        }
        let route = match self.classify(text) {
            Classification::Routed(route) => route,
            Classification::NeedsCatalog(_) => {
                crate::router::primary_route(text, Reason::ParseFailure)
            }
        };
        (route, false)
    }

    /// DEALLOCATE of a statement the client prepared with Parse: it exists
    /// under another name on the servers, and maybe for other clients, so
    /// pgsplit forgets it for this client and answers as the server would.
    async fn deallocate(&mut self, name: String, frame: Bytes) -> Result<Flow, ClientError> {
        if self.exchange.busy() {
            self.deferred = Some((tag::QUERY, frame));
            return Ok(Flow::Wait);
        }
        self.statements.closed(name.as_bytes());
        let status = if self.held.server.is_some() {
            self.exchange.tx_status
        } else {
            status::IDLE
        };
        self.out.clear();
        backend::command_complete("DEALLOCATE", &mut self.out);
        backend::ready_for_query(status, &mut self.out);
        self.io.write(&self.out).await?;
        Ok(Flow::Continue)
    }

    /// Sends the held batch and `frame` (a Query, FunctionCall, Sync or
    /// Flush, or a pseudo-tag) to a server chosen by `route` (`None`: the
    /// one in use).
    async fn dispatch(
        &mut self,
        tag: u8,
        frame: Bytes,
        decision: Decision,
    ) -> Result<Flow, ClientError> {
        match self.acquire(Session::wanted(decision.place)).await {
            Acquired::Ready => {}
            Acquired::Wait => {
                self.deferred = Some((tag, frame));
                return Ok(Flow::Wait);
            }
            Acquired::Failed(error) => return Box::pin(self.refuse(tag, error)).await,
        }
        if let Some(lazy) = &mut self.lazy {
            // On PostgreSQL the transaction's snapshot would now be taken.
            lazy.state.ran = true;
        }
        if let Some(held) = self.held.server.as_ref() {
            let (role, detour) = (held.role, held.detour);
            if role == Role::Primary && !reads(&decision) {
                self.wrote = true;
            }
            if tag != STREAM {
                // The pool's reason when the read went elsewhere.
                let why = match (decision.place, role) {
                    (Place::Replica, Role::Primary) | (Place::Primary, Role::Replica) => {
                        decision.why.after(detour)
                    }
                    _ => decision.why,
                };
                self.statement_sent(why, role);
            }
        }
        let Some(checkout) = self.held.server.as_mut() else {
            return Err(ClientError::Refused(PgError::fatal(
                sqlstate::INTERNAL_ERROR,
                "no server connection",
            )));
        };
        // Only between transactions: a SET inside the client's transaction
        // would be undone with it.
        if checkout.settings != self.settings.fingerprint
            && !self.exchange.busy()
            && !self.exchange.in_transaction()
        {
            let applied = match self.pins.get() {
                // RESET on a pinned connection: the client's own SETs stay.
                Some(_) => Box::pin(self.settings.reapply(checkout)).await,
                None => Box::pin(self.settings.apply(checkout)).await,
            };
            if let Err(e) = applied {
                tracing::warn!(pool = %checkout.pool().name, error = %e, "could not apply the client's settings");
                self.held.server = None;
                return Box::pin(self.refuse(tag, e.to_client_error(false))).await;
            }
        }
        if std::mem::take(&mut self.settings_reset) {
            // Whoever runs on it next gets their settings applied afresh.
            checkout.settings = UNKNOWN_SETTINGS;
        }
        // A read alone on a replica can be run again elsewhere if it fails
        // before its reply is released; once pipelined, it cannot.
        let keep = !self.retry.spent
            && checkout.role == Role::Replica
            && !self.exchange.busy()
            && matches!(tag, tag::QUERY | tag::SYNC)
            && decision.place == Place::Replica;
        self.retry.disarm();
        self.out.clear();
        // A read inside a lazy transaction: its ReadyForQuery says `T`.
        self.exchange.lazy = self.lazy.is_some();
        if decision.place == Place::OpenOnPrimary {
            self.open_on_primary();
        }
        let Some(checkout) = self.held.server.as_mut() else {
            return Ok(Flow::Continue);
        };
        let conn = &mut **checkout;
        if self.batch.lists_statements {
            if matches!(tag, tag::SYNC | tag::QUERY) && !self.batch.open {
                let own = self.statements.named().map(|(_, s)| s);
                batch::show_own_statements(own, conn, &mut self.exchange, &mut self.out);
            } else {
                // A batch sent in parts is not rewritten half way.
                self.batch.lists_statements = false;
            }
        }
        if let Written::Paused(next) = self.batch.write(0, conn, &mut self.exchange, &mut self.out)
        {
            self.paused = Some(Paused { next, tag, frame });
            return self.send_out().await;
        }
        let outgoing = self.seal(tag, frame, keep);
        let Some(conn) = self.held.server.as_deref_mut() else {
            return Ok(Flow::Continue);
        };
        let bytes: &[u8] = match &outgoing {
            Outgoing::Frame(frame) => &frame[..],
            Outgoing::Out => &self.out,
            Outgoing::Kept => &self.retry.frame,
        };
        if send(conn, bytes).await.is_err() {
            Box::pin(self.server_lost()).await?;
        }
        Ok(Flow::Continue)
    }

    /// Ends the batch written to `out` with `frame`: records the answer
    /// it waits for and says what to send (sync, so that the hot path has
    /// one future, `dispatch`'s).
    fn seal(&mut self, tag: u8, frame: Bytes, keep: bool) -> Outgoing {
        match tag {
            tag::FLUSH | STREAM => self.batch.open = true,
            tag::SYNC => {
                self.exchange.sent(Expect::Sync {
                    origin: Origin::Client,
                });
                self.batch.open = false;
            }
            PROBE => self.exchange.sent(Expect::Sync {
                origin: Origin::Own,
            }),
            _ => {
                if let (tag::QUERY, Some(conn)) = (tag, self.held.server.as_deref_mut()) {
                    conn.prepared.forget_unnamed();
                }
                self.exchange.sent(Expect::Ready)
            }
        }
        // Kept by moving it: sent from the retry's copy, it costs no
        // reference count (two locked instructions). The batch's messages
        // go with it.
        let frame = match keep {
            true => {
                self.retry.keep(tag, frame, &mut self.batch);
                None
            }
            false => Some(frame),
        };
        self.batch.clear_messages();
        if !matches!(tag, tag::FLUSH | STREAM) {
            // The next batch is routed on its own.
            self.batch.needs_primary = None;
            self.batch.parsed_unnamed = false;
        }
        let lists = std::mem::take(&mut self.batch.lists_statements);
        if self.out.is_empty() && !lists {
            return frame.map_or(Outgoing::Kept, Outgoing::Frame);
        }
        self.out
            .extend_from_slice(frame.as_ref().unwrap_or(&self.retry.frame));
        if lists {
            let own = self.statements.named().map(|(_, s)| s);
            batch::hide_own_statements(own, &mut self.exchange, &mut self.out);
        }
        Outgoing::Out
    }

    /// Ends the batch and sends it (the rare paths: a resumed batch).
    async fn end(&mut self, tag: u8, frame: Bytes) -> Result<Flow, ClientError> {
        match self.seal(tag, frame, false) {
            Outgoing::Frame(frame) => {
                self.out.extend_from_slice(&frame);
                self.send_out().await
            }
            Outgoing::Out | Outgoing::Kept => self.send_out().await,
        }
    }

    /// Sends what `out` holds to the server in use.
    async fn send_out(&mut self) -> Result<Flow, ClientError> {
        let Some(conn) = self.held.server.as_deref_mut() else {
            return Ok(Flow::Continue);
        };
        if send(conn, &self.out).await.is_err() {
            Box::pin(self.server_lost()).await?;
        }
        Ok(Flow::Continue)
    }

    /// The check a paused batch waited for is answered: the batch goes
    /// on, or (the statement changed, or could not be prepared) the server
    /// is made to discard the rest until Sync, as it would have direct.
    async fn resume(&mut self, checked: Checked) -> Result<(), ClientError> {
        let (Some(paused), Some(checkout)) = (self.paused.take(), self.held.server.as_mut()) else {
            return Ok(());
        };
        let conn = &mut **checkout;
        self.out.clear();
        if checked == Checked::Same {
            let written = self
                .batch
                .write(paused.next, conn, &mut self.exchange, &mut self.out);
            if let Written::Paused(next) = written {
                self.paused = Some(Paused { next, ..paused });
                return self.send_out().await.map(|_| ());
            }
            return self.end(paused.tag, paused.frame).await.map(|_| ());
        }
        if checked == Checked::Changed {
            tracing::info!("a prepared statement's result changed shape: the client is told so (0A000) and prepares it again");
            batch::fail_changed_statement(&mut self.exchange, &mut self.out);
        }
        self.batch.clear_messages();
        match paused.tag {
            // The server skips a Query until Sync: it is never answered.
            tag::QUERY | tag::FUNCTION_CALL => {
                self.batch.needs_primary = None;
                self.batch.parsed_unnamed = false;
                self.send_out().await.map(|_| ())
            }
            tag => self.end(tag, paused.frame).await.map(|_| ()),
        }
    }

    /// No more whole messages are buffered. A batch whose server is known
    /// (it needs the primary, its connection is fixed, or it has grown
    /// past `batch_hold_limit`) is sent on now rather than at its Sync: the
    /// proxy holds no more of it than one read, and the client learns of
    /// an early error while it still sends, as it would direct.
    async fn stream_held(&mut self) -> Result<Flow, ClientError> {
        if self.batch.is_empty()
            || self.paused.is_some()
            || self.deferred.is_some()
            || self.skip_until_sync
        {
            return Ok(Flow::Continue);
        }
        // A batch that starts with transaction control, its statements not
        // here yet (a pipelined BEGIN the driver flushed on its own, as
        // psycopg 3 may): where it runs, and whether pgsplit answers the
        // BEGIN itself, depends on them, so it waits for them.
        if self.routing_needed()
            && self.batch.bytes <= self.current.config.batch_hold_limit
            && self.control_in_batch().is_some()
        {
            return Ok(Flow::Continue);
        }
        let route = if self.held.server.is_some() && !self.routing_needed() {
            primary(Reason::Write)
        } else if let Some(reason) = self.batch.needs_primary.clone() {
            primary(batch_reason(reason))
        } else if self.batch.bytes > self.current.config.batch_hold_limit {
            tracing::debug!(
                bytes = self.batch.bytes,
                "batch past batch_hold_limit: sent to the primary as it comes"
            );
            primary(Reason::Write)
        } else {
            return Ok(Flow::Continue);
        };
        let decision = self.decide(&route);
        if let Place::Answer(_) = decision.place {
            // A failed transaction's batch: answered at its Sync.
            return Ok(Flow::Continue);
        }
        self.dispatch(STREAM, Bytes::new(), decision).await
    }

    /// No server could be had: the client gets the error and, where it
    /// waits for one, ReadyForQuery.
    async fn refuse(&mut self, tag: u8, error: PgError) -> Result<Flow, ClientError> {
        tracing::warn!(code = %error.code, error = %error.message, "statement refused");
        self.app.metrics.error(ErrorSide::Pgsplit, &error.code);
        // Never run: the statements it would have prepared or closed are
        // as they were.
        self.drop_unsent();
        self.out.clear();
        error.encode(&mut self.out);
        // A statement of a transaction that failed fails the transaction.
        if let Some(lazy) = &mut self.lazy {
            lazy.state.failed = true;
        }
        if matches!(tag, tag::FLUSH | STREAM | PROBE) {
            self.skip_until_sync = true;
        } else {
            backend::ready_for_query(self.client_status(), &mut self.out);
        }
        self.io.write(&self.out).await?;
        Ok(Flow::Continue)
    }

    async fn skip(&mut self, tag: u8) -> Result<Flow, ClientError> {
        if tag == tag::SYNC {
            self.skip_until_sync = false;
            self.out.clear();
            backend::ready_for_query(self.client_status(), &mut self.out);
            self.io.write(&self.out).await?;
        }
        Ok(Flow::Continue)
    }

    async fn copy(&mut self, frame: Bytes) -> Result<Flow, ClientError> {
        // Outside COPY the server ignores these, and so does pgsplit when
        // it holds no server.
        if let Some(conn) = self.held.server.as_deref_mut() {
            if send(conn, &frame).await.is_err() {
                Box::pin(self.server_lost()).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// Inside a transaction or a flushed batch the server is fixed, and
    /// while it waits for a Sync.
    fn routing_needed(&self) -> bool {
        self.held.server.is_none()
            || !(self.exchange.in_transaction() || self.batch.open || self.exchange.skipping)
    }

    /// Classifies statement text, asking the primary's catalog about
    /// functions the router does not know.
    async fn route(&mut self, sql: &[u8]) -> Route {
        match std::str::from_utf8(sql) {
            Ok(text) => self.route_text(text).await,
            Err(_) => primary(Reason::ParseFailure),
        }
    }

    async fn route_text(&mut self, text: &str) -> Route {
        for _ in 0..2 {
            match self.classify(text) {
                Classification::Routed(route) => return route,
                Classification::NeedsCatalog(names) => {
                    if let Err(error) = Box::pin(self.look_up(&names)).await {
                        tracing::warn!(%error, "function lookup failed: statement goes to the primary");
                        let reason = Reason::WriteFunction(names.join(", "));
                        return crate::router::primary_route(text, reason);
                    }
                }
            }
        }
        crate::router::primary_route(text, Reason::ParseFailure)
    }

    /// Classifies statement text: from this client's memo when it sent the
    /// shape lately, else by the router, which remembers it in the memo.
    fn classify(&mut self, text: &str) -> Classification {
        let router = &self.current.router;
        if let Some(route) = self.memo.find(router, text) {
            self.io.metrics.routing_memo_hit();
            return Classification::Routed(route);
        }
        router.classify_remembering(text, &*self.functions, &mut self.memo)
    }

    async fn look_up(&self, names: &[String]) -> Result<(), String> {
        let mut conn = self
            .cluster
            .checkout_primary()
            .await
            .map_err(|e| e.to_string())?;
        self.functions
            .look_up(names, &mut conn)
            .await
            .map_err(|e| e.to_string())
    }

    async fn relay(&mut self) -> Result<(), ClientError> {
        self.exchange.hold_commit_ready = self.wrote && self.reports_commit_lsn();
        let Some(conn) = self.held.server.as_deref_mut() else {
            return Ok(());
        };
        if self.retry.armed {
            match retry::judge(&conn.read_buf) {
                Verdict::Wait => return Ok(()),
                Verdict::Retry(code) => return Box::pin(self.retry_elsewhere(Some(code))).await,
                Verdict::Release => self.retry.disarm(),
            }
        }
        match relay(&mut self.exchange, conn, &mut self.io).await {
            Ok(()) => {}
            Err(RelayError::Client(e)) => return Err(e),
            Err(RelayError::Server) => return Box::pin(self.server_lost()).await,
        }
        if self.exchange.lazy_failed {
            self.lazy_read_done();
        }
        for (name, shape) in self.exchange.described.drain(..) {
            self.statements.described(&name, shape);
        }
        if let Some(checked) = self.exchange.checked.take() {
            Box::pin(self.resume(checked)).await?;
        }
        if std::mem::take(&mut self.exchange.own_sync_failed) {
            // A flushed prefix answered on its own failed: as the server
            // would, pgsplit discards the client's messages until Sync,
            // and the transaction it was in fails.
            self.skip_until_sync = true;
            if let Some(lazy) = &mut self.lazy {
                lazy.state.failed = true;
            }
        }
        for undo in self.exchange.undone.drain(..) {
            self.statements.undo(undo);
        }
        if self.exchange.skipping {
            // What the client sent after the failed message, the server
            // would discard.
            self.drop_unsent();
        }
        self.observe_exchange();
        if self.exchange.fatal {
            let ended = self.server_ended();
            // Read what the client already sent before closing, so the
            // FATAL is not lost to a reset.
            self.io.linger().await;
            return Err(ended);
        }
        if self.wrote && self.exchange.tx_status == status::IDLE {
            self.writes_committed();
        }
        // Read back between batches: a query inside an open one would end
        // its implicit transaction.
        if self.tracking.is_some()
            && !self.exchange.busy()
            && !self.batch.open
            && self.paused.is_none()
        {
            Box::pin(self.record_setting()).await;
        }
        let idle = !self.exchange.busy()
            && !self.exchange.in_transaction()
            && !self.batch.open
            && self.paused.is_none();
        if !self.exchange.busy() {
            self.statements.settle();
            // A cancel for query_timeout that came after its statement
            // ended: the server ignored it.
            self.exchange.timeout_error = None;
        }
        if idle {
            self.client.set_state(ClientState::Idle);
            self.unpin_if_discarded();
        }
        if idle && self.mode == PoolMode::Transaction && !self.pins.is_pinned() {
            self.release();
        }
        if std::mem::take(&mut self.exchange.held_ready) {
            Box::pin(self.report_commit_lsn()).await?;
        }
        Ok(())
    }

    /// What the primary ran is committed (or rolled back, or failed: it
    /// cannot tell, and waiting for nothing costs little): the client's
    /// next reads must see it.
    fn writes_committed(&mut self) {
        if self.cluster.topology.consistency != Consistency::Eventual {
            self.need = self.cluster.topology.committed();
        }
        if self.exchange.pending == 0 {
            self.wrote = false;
        }
    }

    /// Transaction pooling: the connection goes back as soon as it is idle,
    /// or is parked with the client until another client needs it.
    fn release(&mut self) {
        if let Some(mut conn) = self.held.server.take() {
            if !conn.read_buf.is_empty() {
                conn.broken = true;
            } else if self.may_park(&conn) {
                conn.park();
                self.held.parked = Some(conn);
            }
        }
        self.exchange.reset();
        self.cancel.clear();
        self.durations.forget();
    }
}

/// A read into `buf`'s spare room, as `AsyncReadExt::read_buf` does,
/// polled in place rather than awaited. Through tokio's `AsyncRead`, not
/// `try_read_buf`: a read that leaves room in the buffer tells the
/// reactor the socket is drained, so the next wait registers at once
/// instead of first making a `recv` that fails with EAGAIN (measured: two
/// such system calls per statement, one on each socket, before).
fn poll_read(
    stream: &mut crate::socket::Stream,
    buf: &mut BytesMut,
    cx: &mut std::task::Context<'_>,
) -> Poll<std::io::Result<usize>> {
    use std::future::Future;
    use tokio::io::AsyncReadExt;
    // Room for a whole typical reply, so one read drains the socket.
    super::io::make_room(buf);
    std::pin::pin!(stream.read_buf(buf)).poll(cx)
}

async fn send(conn: &mut crate::server::ServerConnection, bytes: &[u8]) -> Result<(), ServerError> {
    crate::socket::write_all(&mut conn.stream, bytes)
        .await
        .map_err(ServerError::from)
}

fn primary(reason: Reason) -> Route {
    Route::new(Destination::Primary, reason)
}

/// A batch's reason to need the primary, for the decision about the whole
/// batch: transaction control in a batch with other messages is judged
/// with them, as a statement that needs the primary (a lone BEGIN or
/// COMMIT in a batch is answered as one; see `batches`).
fn batch_reason(reason: Reason) -> Reason {
    match reason {
        Reason::Transaction(_) => Reason::Transaction(crate::router::Control::Other),
        other => other,
    }
}

/// Whether a statement runs as a read (it may still run on the primary,
/// which cannot make it write).
fn reads(decision: &Decision) -> bool {
    decision.place == Place::Replica || matches!(decision.why, Why::ReadOnly | Why::Setting)
}
