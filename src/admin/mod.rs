//! The admin console: the virtual database `pgsplit`, spoken to over the
//! PostgreSQL protocol (psql, any driver). Commands become tables of text
//! or a command tag; the client layer encodes and sends them.
//!
//! Handed what it shows through [`Console`]; it knows nothing of sessions
//! or pools.

pub mod access;
mod command;

pub use access::Access;
use command::{parse, Command, HELP};

use crate::metrics::Sample;
use crate::protocol::error::sqlstate;

/// The virtual database that is the admin console.
pub const DATABASE: &str = "pgsplit";

/// One connected client, as SHOW CLIENTS lists it.
pub struct ClientRow {
    pub id: u64,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub addr: String,
    pub state: &'static str,
    pub pinned: Option<String>,
    pub statements: u64,
    pub connected_seconds: u64,
}

/// Where a statement would run in one context, as SHOW ROUTE lists it.
pub struct RouteRow {
    /// Outside a transaction, or in one (that has only read, or open).
    pub context: &'static str,
    pub destination: &'static str,
    /// The `reason` label of `pgsplit_statements_total`.
    pub reason: &'static str,
    pub description: String,
}

/// What the console reads and acts on.
pub trait Console {
    fn sample(&self) -> Sample;
    fn clients(&self) -> Vec<ClientRow>;
    /// Every configuration key and its value (passwords masked).
    fn config(&self) -> Vec<(String, String)>;
    /// (metric, labels, value) for every counter and histogram.
    fn stats(&self) -> Vec<(String, String, String)>;
    /// Where `sql` would run for a client of `database` (`None`: the
    /// first configured one), in each transaction context.
    fn route(
        &self,
        database: Option<&str>,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Vec<RouteRow>, String>> + Send;
    fn reload(&self) -> Result<String, String>;
    /// Stops handing out server connections; returns once no client is
    /// in a transaction (or after a while), saying which.
    fn pause(&self) -> impl std::future::Future<Output = String> + Send;
    fn resume(&self);
    fn shutdown(&self);
}

/// The console's answer to one command.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Rows {
        columns: Vec<&'static str>,
        rows: Vec<Vec<Option<String>>>,
    },
    /// A command tag (CommandComplete) and an optional notice first.
    Done {
        tag: String,
        notice: Option<String>,
    },
    Empty,
    /// An error (SQLSTATE, message).
    Error(&'static str, String),
    /// The user may not run this command (a stats user's RELOAD, say):
    /// ERROR 42501 with PgBouncer's words.
    Denied,
}

/// The message of a refused command, as PgBouncer words it.
pub const DENIED: &str = "admin access needed";

pub async fn answer(console: &impl Console, access: Access, text: &str) -> Reply {
    let command = match parse(text) {
        Ok(c) => c,
        Err(message) => return Reply::Error(sqlstate::SYNTAX_ERROR, message),
    };
    if !access.permits(&command) {
        tracing::warn!(command = ?command, "admin command refused: stats_users may run SHOW commands only");
        return Reply::Denied;
    }
    tracing::info!(command = ?command, "admin command");
    match command {
        Command::ShowPools => pools(&console.sample()),
        Command::ShowServers => servers(&console.sample()),
        Command::ShowClients => clients(console.clients()),
        Command::ShowStats => rows(
            vec!["metric", "labels", "value"],
            console.stats().into_iter().map(|(m, l, v)| vec![m, l, v]),
        ),
        Command::ShowConfig => rows(
            vec!["key", "value"],
            console.config().into_iter().map(|(k, v)| vec![k, v]),
        ),
        Command::ShowVersion => rows(
            vec!["version"],
            [vec![format!("pgsplit {}", env!("CARGO_PKG_VERSION"))]],
        ),
        Command::ShowHelp => rows(vec!["commands"], [vec![HELP.to_string()]]),
        Command::ShowRoute { database, sql } => match console.route(database.as_deref(), &sql).await {
            Ok(routes) => rows(
                vec!["context", "destination", "reason", "description"],
                routes.into_iter().map(|r| {
                    vec![
                        r.context.to_string(),
                        r.destination.to_string(),
                        r.reason.to_string(),
                        r.description,
                    ]
                }),
            ),
            Err(message) => Reply::Error(sqlstate::INVALID_CATALOG_NAME, message),
        },
        Command::Reload => match console.reload() {
            Ok(what) => done("RELOAD", Some(what)),
            Err(why) => Reply::Error("F0000", why),
        },
        Command::Pause => {
            let what = console.pause().await;
            done("PAUSE", Some(what))
        }
        Command::Resume => {
            console.resume();
            done("RESUME", None)
        }
        Command::Shutdown => {
            console.shutdown();
            done("SHUTDOWN", Some("shutting down gracefully".into()))
        }
        Command::Empty => Reply::Empty,
    }
}

fn done(tag: &str, notice: Option<String>) -> Reply {
    Reply::Done {
        tag: tag.to_string(),
        notice,
    }
}

fn rows<R: IntoIterator<Item = Vec<String>>>(columns: Vec<&'static str>, rows: R) -> Reply {
    Reply::Rows {
        columns,
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(Some).collect())
            .collect(),
    }
}

fn pools(sample: &Sample) -> Reply {
    let columns = vec![
        "database",
        "user",
        "server",
        "role",
        "size",
        "checked_in",
        "checked_out",
        "parked",
        "overflow",
        "max_overflow",
        "opening",
        "waiting",
        "healthy",
    ];
    rows(
        columns,
        sample.pools.iter().map(|p| {
            vec![
                p.database.clone(),
                p.user.clone(),
                p.server.clone(),
                p.role.clone(),
                p.size.to_string(),
                p.checked_in.to_string(),
                p.checked_out.to_string(),
                p.parked.to_string(),
                p.overflow.to_string(),
                p.max_overflow.to_string(),
                p.opening.to_string(),
                p.waiting.to_string(),
                p.healthy.to_string(),
            ]
        }),
    )
}

fn servers(sample: &Sample) -> Reply {
    let columns = vec![
        "server",
        "configured_role",
        "state",
        "up",
        "takes_writes",
        "lag_bytes",
        "lag_seconds",
        "health_check_failures",
        "bans",
    ];
    rows(
        columns,
        sample.servers.iter().map(|s| {
            vec![
                s.server.clone(),
                s.configured_role.clone(),
                s.state.clone(),
                s.up.to_string(),
                s.primary.to_string(),
                s.lag_bytes.to_string(),
                format!("{:.3}", s.lag_seconds),
                s.check_failures.to_string(),
                s.bans.to_string(),
            ]
        }),
    )
}

fn clients(list: Vec<ClientRow>) -> Reply {
    let columns = vec![
        "id",
        "user",
        "database",
        "application_name",
        "addr",
        "state",
        "pinned",
        "statements",
        "connected_seconds",
    ];
    let rows = list
        .into_iter()
        .map(|c| {
            vec![
                Some(c.id.to_string()),
                Some(c.user),
                Some(c.database),
                Some(c.application_name),
                Some(c.addr),
                Some(c.state.to_string()),
                c.pinned,
                Some(c.statements.to_string()),
                Some(c.connected_seconds.to_string()),
            ]
        })
        .collect();
    Reply::Rows { columns, rows }
}
