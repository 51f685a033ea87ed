//! Scripts of one client's session, sent on a raw socket to PostgreSQL
//! directly and then through pgsplit, and the differences between the two
//! runs (tests/transactions.rs).
//!
//! A [`Script`] is a list of steps: simple queries, extended-protocol
//! batches, another client's statement on the primary, an observation of
//! the primary, a pause. [`Ends::compare`] runs it on new connections,
//! first straight to the primary, then through pgsplit, and reports every
//! step pgsplit answered otherwise than PostgreSQL ([`shape`]: message
//! types, command tags, SQLSTATEs, severities and texts of errors and
//! notices, ReadyForQuery statuses; row contents aside, since the servers
//! differ), every step that ran on the wrong server (a step made with
//! [`Script::on`] selects `inet_server_port()` first), and every answer
//! PostgreSQL itself gave otherwise than the script says it does
//! ([`Script::expect`], which documents PostgreSQL's behaviour). Every wait
//! is bounded: a step with no ReadyForQuery within [`ANSWER_TIMEOUT`] ends
//! the run with what came.
//!
//! ```ignore
//! let script = Script::new("a read in a transaction")
//!     .q("begin")
//!     .on(Side::Replica, "select inet_server_port()")
//!     .q("commit")
//!     .expect(&["C:COMMIT", "Z:I"]);
//! let run = Ends { cluster: &cluster, proxy: proxy.addr() }.same_as_direct(&script).await;
//! ```

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::cluster::Cluster;
use super::panics;
use super::proxy::psql_args;
use super::wire::frame::{self, bind, describe, execute, parse, query, sync};
use super::wire::{Message, RawClient, Reader, Transcript};

/// How long a step may wait for answers PostgreSQL gives at once.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// After the answers a step expects, how long to listen for unexpected more.
const QUIET: Duration = Duration::from_millis(100);

/// Which server must run a step.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Side {
    Primary,
    Replica,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Primary => "the primary",
            Side::Replica => "the replica",
        }
    }
}

/// What a script runs against: the primary of `cluster` directly, and
/// pgsplit at `proxy` in front of it.
pub struct Ends<'a> {
    pub cluster: &'a Cluster,
    pub proxy: SocketAddr,
}

impl Ends<'_> {
    fn primary(&self) -> SocketAddr {
        self.cluster.primary_addr().parse().unwrap()
    }

    fn port_of(&self, side: Side) -> u16 {
        match side {
            Side::Primary => self.cluster.primary_port(),
            Side::Replica => self.cluster.replica_port(),
        }
    }

    fn side_of(&self, port: u16) -> String {
        if port == self.cluster.primary_port() {
            format!("the primary (port {port})")
        } else if port == self.cluster.replica_port() {
            format!("the replica (port {port})")
        } else {
            format!("port {port}, neither server")
        }
    }

    /// Runs `script` on the primary directly, then through pgsplit, and
    /// returns pgsplit's answers and every way they fall short: a step
    /// answered unlike PostgreSQL, a step run on the wrong server, a step
    /// that got no answer in time, and PostgreSQL itself not answering what
    /// the script says it does (a wrong test).
    pub async fn compare(&self, script: &Script) -> (Run, Vec<String>) {
        let mut failures = Vec::new();
        let direct = self.run(self.primary(), script).await;
        // The direct run's writes must be on the replica before the same
        // script reads there.
        wait_replica_caught_up(self.cluster);
        for (i, step) in script.steps.iter().enumerate() {
            if let (Some(expected), Some(seen)) = (&step.expect, direct.answers[i].as_ref()) {
                if seen.summary() != *expected {
                    failures.push(format!(
                        "step {i} `{}`: PostgreSQL itself answered {} (the test expects {expected:?})",
                        step.what,
                        seen.describe()
                    ));
                }
            }
        }
        if let Some(broken) = &direct.broken {
            failures.push(format!("directly on the primary: {broken}"));
        }
        let proxied = self.run(self.proxy, script).await;
        for (i, step) in script.steps.iter().enumerate() {
            let (Some(d), Some(p)) = (&direct.answers[i], &proxied.answers[i]) else {
                continue;
            };
            let same = shape(d) == shape(p);
            if !same {
                failures.push(format!(
                    "step {i} `{}`:\n     pgsplit answered    {}\n     PostgreSQL answered {}",
                    step.what,
                    p.describe(),
                    d.describe()
                ));
            }
            // Where a step ran is asked only of an answer like PostgreSQL's.
            if let (Some(side), true) = (step.on, same) {
                match first_value(p).and_then(|v| v.parse::<u16>().ok()) {
                    Some(port) if port == self.port_of(side) => {}
                    Some(port) => failures.push(format!(
                        "step {i} `{}` ran on {}; it belongs on {}",
                        step.what,
                        self.side_of(port),
                        side.name()
                    )),
                    None => failures.push(format!(
                        "step {i} `{}` returned no port to tell where it ran: {}",
                        step.what,
                        p.describe()
                    )),
                }
            }
        }
        for (i, step) in script.steps.iter().enumerate() {
            if matches!(step.action, Action::Observe(_))
                && direct.observed.get(&i) != proxied.observed.get(&i)
            {
                failures.push(format!(
                    "step {i} `{}`: through pgsplit {:?}, directly {:?}",
                    step.what,
                    proxied.observed.get(&i),
                    direct.observed.get(&i)
                ));
            }
        }
        if let Some(broken) = &proxied.broken {
            failures.push(format!("through pgsplit: {broken}"));
        }
        let panics = panics::recorded();
        if !panics.is_empty() {
            failures.push(format!("pgsplit panicked: {panics:#?}"));
        }
        (proxied, failures)
    }

    /// [`Setup::compare`], panicking with every failure; pgsplit's answers.
    pub async fn same_as_direct(&self, script: &Script) -> Run {
        let (run, failures) = self.compare(script).await;
        assert!(
            failures.is_empty(),
            "{}:\n - {}",
            script.what,
            failures.join("\n - ")
        );
        run
    }

    /// Runs `script` against `addr` on a new connection and logs out.
    async fn run(&self, addr: SocketAddr, script: &Script) -> Run {
        let mut run = Run::default();
        let mut client = match login(addr, &script.login).await {
            Ok(c) => c,
            Err(e) => {
                run.answers = vec![None; script.steps.len()];
                run.broken = Some(format!("login: {e}"));
                return run;
            }
        };
        for (i, step) in script.steps.iter().enumerate() {
            if run.broken.is_some() {
                run.answers.push(None);
                continue;
            }
            match &step.action {
                Action::Send { bytes, ready } => {
                    client.send(bytes).await;
                    let mut seen = client.read_until_ready(*ready, ANSWER_TIMEOUT).await;
                    if !seen.closed && !seen.timed_out {
                        let more = client.read_until_ready(usize::MAX, QUIET).await;
                        seen.messages.extend(more.messages);
                        seen.closed = more.closed;
                    }
                    if seen.closed || seen.timed_out {
                        run.broken = Some(format!(
                            "step {i} `{}`: {}",
                            step.what,
                            if seen.closed {
                                "the connection closed".to_string()
                            } else {
                                format!("no ReadyForQuery within {ANSWER_TIMEOUT:?}")
                            }
                        ));
                    }
                    if let Some(name) = step.name {
                        run.names.insert(name, i);
                    }
                    run.answers.push(Some(seen));
                }
                Action::Elsewhere(sql) => {
                    if let Err(e) = on_primary(self.cluster, &script.login.database, sql) {
                        run.broken = Some(format!("step {i}: another client's `{sql}`: {e}"));
                    }
                    wait_replica_caught_up(self.cluster);
                    run.answers.push(None);
                }
                Action::Observe(sql) => {
                    match on_primary(self.cluster, &script.login.database, sql) {
                        Ok(v) => {
                            run.observed.insert(i, v);
                        }
                        Err(e) => run.broken = Some(format!("step {i}: `{sql}`: {e}")),
                    }
                    run.answers.push(None);
                }
                Action::Pause(d) => {
                    tokio::time::sleep(*d).await;
                    run.answers.push(None);
                }
            }
        }
        // Log out and wait for the close, so that a direct backend is gone
        // before the same script runs through pgsplit (Observe steps count
        // backends).
        let _ = client.try_send(&frame::terminate()).await;
        let _ = client
            .read_until_ready(usize::MAX, Duration::from_secs(2))
            .await;
        run
    }
}

/// Runs `sql` on the primary directly as `postgres` in `database`
/// (statements bounded by a 5 s statement_timeout); trimmed output, or
/// psql's error.
pub fn on_primary(cluster: &Cluster, database: &str, sql: &str) -> Result<String, String> {
    let port = cluster.primary_port();
    tokio::task::block_in_place(|| {
        psql_args(
            port,
            &["-U", "postgres", "-d", database, "-c", sql],
            &[("PGOPTIONS", "-c statement_timeout=5000")],
        )
    })
}

/// [`Cluster::wait_replica_caught_up`] from async code (a multi-thread
/// runtime).
pub fn wait_replica_caught_up(cluster: &Cluster) {
    tokio::task::block_in_place(|| cluster.wait_replica_caught_up());
}

/// Who a script logs in as.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub database: String,
    /// The StartupMessage's `options` (`-c name=value ...`).
    pub options: Option<String>,
}

enum Action {
    /// Frames the client sends; their answer ends with `ready`
    /// ReadyForQuery messages.
    Send { bytes: Vec<u8>, ready: usize },
    /// Another client's statement, run on the primary directly (and
    /// committed); then the replica is waited for until it replayed it.
    Elsewhere(String),
    /// A query on the primary directly whose output must be the same when
    /// the script runs through pgsplit as when it runs directly.
    Observe(String),
    /// The client stays idle.
    Pause(Duration),
}

struct Step {
    what: String,
    action: Action,
    /// Where the step must run through pgsplit: its first row's first
    /// column is `inet_server_port()`.
    on: Option<Side>,
    /// What PostgreSQL answers ([`Message::summary`] of each message), when
    /// the test states it: checked against the primary, to document it.
    expect: Option<Vec<String>>,
    name: Option<&'static str>,
}

/// A client's session as a list of steps; see the module docs.
pub struct Script {
    pub what: String,
    pub login: Login,
    steps: Vec<Step>,
}

impl Script {
    pub fn new(what: impl Into<String>) -> Script {
        Script {
            what: what.into(),
            login: Login {
                user: "postgres".into(),
                database: "postgres".into(),
                options: None,
            },
            steps: Vec::new(),
        }
    }

    pub fn titled(mut self, what: &str) -> Script {
        self.what = what.into();
        self
    }

    pub fn user(mut self, user: &str) -> Script {
        self.login.user = user.into();
        self
    }

    pub fn database(mut self, database: &str) -> Script {
        self.login.database = database.into();
        self
    }

    pub fn options(mut self, options: &str) -> Script {
        self.login.options = Some(options.into());
        self
    }

    fn push(mut self, what: String, action: Action, on: Option<Side>) -> Script {
        self.steps.push(Step {
            what,
            action,
            on,
            expect: None,
            name: None,
        });
        self
    }

    /// A simple Query.
    pub fn q(self, sql: &str) -> Script {
        let bytes = query(sql);
        self.push(sql.into(), Action::Send { bytes, ready: 1 }, None)
    }

    /// A simple Query that must run on `side` (it selects
    /// `inet_server_port()` first).
    pub fn on(self, side: Side, sql: &str) -> Script {
        let bytes = query(sql);
        self.push(sql.into(), Action::Send { bytes, ready: 1 }, Some(side))
    }

    /// One extended-protocol batch, as PgJDBC and asyncpg send them: Parse,
    /// Bind, Describe portal and Execute of each statement (unnamed), Sync.
    pub fn ext(self, statements: &[&str]) -> Script {
        self.batch(statements, None)
    }

    /// [`Script::ext`] whose first row must come from `side`.
    pub fn ext_on(self, side: Side, statements: &[&str]) -> Script {
        self.batch(statements, Some(side))
    }

    fn batch(self, statements: &[&str], on: Option<Side>) -> Script {
        let mut bytes = Vec::new();
        for sql in statements {
            bytes.extend(parse("", sql, &[]));
            bytes.extend(bind("", "", &[]));
            bytes.extend(describe(b'P', ""));
            bytes.extend(execute("", 0));
        }
        bytes.extend(sync());
        let what = format!("[{}] Sync", statements.join("; "));
        self.push(what, Action::Send { bytes, ready: 1 }, on)
    }

    /// Another client commits `sql` on the primary; the replica replays it.
    pub fn elsewhere(self, sql: &str) -> Script {
        let what = format!("(another client) {sql}");
        self.push(what, Action::Elsewhere(sql.into()), None)
    }

    /// A query on the primary whose answer must not depend on pgsplit.
    pub fn observe(self, sql: &str) -> Script {
        let what = format!("(observed on the primary) {sql}");
        self.push(what, Action::Observe(sql.into()), None)
    }

    pub fn pause(self, ms: u64) -> Script {
        let d = Duration::from_millis(ms);
        self.push(format!("(idle {ms} ms)"), Action::Pause(d), None)
    }

    /// What PostgreSQL answers to the last step ([`Message::summary`]).
    pub fn expect(mut self, answer: &[&str]) -> Script {
        let last = self.steps.last_mut().expect("a step to expect of");
        last.expect = Some(answer.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Names the last step, for [`Run::value`].
    pub fn name(mut self, name: &'static str) -> Script {
        self.steps.last_mut().expect("a step to name").name = Some(name);
        self
    }
}

/// What one run of a script got.
#[derive(Default)]
pub struct Run {
    /// Per step: what the client read (None for steps that send nothing,
    /// and after the run broke off).
    answers: Vec<Option<Transcript>>,
    names: HashMap<&'static str, usize>,
    observed: HashMap<usize, String>,
    /// Why the run stopped early.
    pub broken: Option<String>,
}

impl Run {
    /// Column `column` of the first row of the step named `name`.
    pub fn value(&self, name: &str, column: usize) -> Option<String> {
        let t = self.answers[*self.names.get(name)?].as_ref()?;
        t.messages
            .iter()
            .find(|m| m.tag == b'D')
            .and_then(|m| data_row(m).into_iter().nth(column).flatten())
    }
}

/// Logs in to `addr` as `login` says; returns once ReadyForQuery came.
pub async fn login(addr: SocketAddr, login: &Login) -> Result<RawClient, String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (read, mut writer) = stream.into_split();
        let mut params = vec![
            ("user", login.user.as_str()),
            ("database", login.database.as_str()),
        ];
        if let Some(options) = &login.options {
            params.push(("options", options.as_str()));
        }
        writer
            .write_all(&frame::startup(&params))
            .await
            .map_err(|e| format!("send startup: {e}"))?;
        let mut reader = Reader::new(read);
        loop {
            match reader.next().await {
                Ok(Some(m)) if m.tag == b'Z' => return Ok(RawClient { reader, writer }),
                Ok(Some(m)) if m.tag == b'E' => return Err(format!("refused: {m:?}")),
                Ok(Some(_)) => {}
                Ok(None) => return Err("closed during login".into()),
                Err(e) => return Err(format!("read during login: {e}")),
            }
        }
    };
    tokio::time::timeout(ANSWER_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no ReadyForQuery within {ANSWER_TIMEOUT:?}")))
}

/// What must be the same through pgsplit as directly: each message's
/// summary, with the severity and text of errors and notices.
pub fn shape(t: &Transcript) -> Vec<String> {
    t.messages
        .iter()
        .map(|m| match m.tag {
            b'E' | b'N' => {
                let f = m.fields();
                let get = |c| f.get(&c).cloned().unwrap_or_default();
                format!("{} {} {:?}", m.summary(), get('S'), get('M'))
            }
            _ => m.summary(),
        })
        .collect()
}

/// The columns of a DataRow, as text (`None`: NULL).
fn data_row(m: &Message) -> Vec<Option<String>> {
    let b = &m.body;
    let count = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut at = 2;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        at += 4;
        if len < 0 {
            values.push(None);
        } else {
            let end = at + len as usize;
            values.push(Some(String::from_utf8_lossy(&b[at..end]).into_owned()));
            at = end;
        }
    }
    values
}

/// The first column of the first DataRow.
fn first_value(t: &Transcript) -> Option<String> {
    t.messages
        .iter()
        .find(|m| m.tag == b'D')
        .and_then(|m| data_row(m).into_iter().next().flatten())
}
