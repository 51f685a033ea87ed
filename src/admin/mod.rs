//! The admin console: the virtual database `pgsplit`, spoken to over the
//! PostgreSQL protocol (psql, any driver), with PgBouncer's commands and
//! tables (`show`), and a few of pgsplit's own (SHOW ROUTE, HEALTH,
//! METRICS). Commands become a typed table or a command tag; the client
//! layer encodes and sends them.
//!
//! Handed what it shows and acts on through [`Console`]; it knows nothing
//! of sessions or pools.

pub mod access;
mod command;
mod error;
mod show;
pub mod table;

pub use access::Access;
use command::{parse, Command};
pub use error::ConsoleError;
use std::net::SocketAddr;
use std::time::SystemTime;
use table::Table;

use crate::metrics::{PoolSample, Sample};
use crate::protocol::error::sqlstate;

/// The virtual database that is the admin console.
pub const DATABASE: &str = "pgsplit";

/// One connected client, as SHOW CLIENTS lists it.
pub struct ClientRow {
    pub id: u64,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub addr: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: Option<String>,
    pub state: &'static str,
    pub pinned: Option<String>,
    pub statements: u64,
    pub connected_at: SystemTime,
    /// The server connection it holds now (its id in SHOW SERVERS).
    pub server: Option<u64>,
}

/// One open server connection, as SHOW SERVERS lists it.
pub struct ServerRow {
    pub id: u64,
    pub user: String,
    pub database: String,
    /// "active", "idle" or "parked".
    pub state: &'static str,
    /// The server, HOST:PORT.
    pub server: String,
    pub role: &'static str,
    pub local: Option<SocketAddr>,
    pub connected_at: SystemTime,
    pub request_time: Option<SystemTime>,
    pub close_needed: bool,
    /// The client holding it (its id in SHOW CLIENTS).
    pub client: Option<u64>,
    pub backend_pid: i32,
    pub tls: Option<String>,
}

/// One server pool (database, user, server), as SHOW POOLS lists it.
pub struct PoolRow {
    pub sample: PoolSample,
    pub pool_mode: &'static str,
}

/// One database's traffic since pgsplit started, as SHOW STATS lists it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatsRow {
    pub database: String,
    /// Server connections handed to its clients (checkouts).
    pub server_assignments: u64,
    pub xacts: u64,
    pub queries: u64,
    /// Bytes from its clients, and to them.
    pub received: u64,
    pub sent: u64,
    pub xact_us: u64,
    pub query_us: u64,
    /// Time its clients waited for a server connection.
    pub wait_us: u64,
    /// Statements run on the primary and on replicas.
    pub primary_queries: u64,
    pub replica_queries: u64,
    /// Over how long: the averages are per second of it.
    pub seconds: f64,
}

/// One database, as SHOW DATABASES lists it.
pub struct DatabaseRow {
    pub name: String,
    /// The configured primary (HOST and PORT); replicas follow at the end.
    pub primary: Option<String>,
    pub replicas: Vec<String>,
    pub pool_size: u32,
    pub max_overflow: u32,
    pub server_lifetime: u64,
    pub pool_mode: &'static str,
    pub max_connections: u32,
    pub current_connections: u64,
    pub current_client_connections: u64,
    pub paused: bool,
    pub disabled: bool,
}

/// One user, as SHOW USERS lists it.
pub struct UserRow {
    pub name: String,
    pub pool_size: u32,
    pub pool_mode: &'static str,
    pub max_user_connections: u32,
    pub current_connections: u64,
    pub current_client_connections: u64,
}

/// One configuration key, as SHOW CONFIG lists it.
pub struct ConfigRow {
    pub key: String,
    /// The value in force (a reload that was refused, or a key that needs
    /// a restart, leaves the running one).
    pub value: String,
    pub default: String,
    pub changeable: bool,
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

/// What the console reads.
pub trait Show {
    fn sample(&self) -> Sample;
    fn pools(&self) -> Vec<PoolRow>;
    fn servers(&self) -> Vec<ServerRow>;
    fn clients(&self) -> Vec<ClientRow>;
    fn stats(&self) -> Vec<StatsRow>;
    fn databases(&self) -> Vec<DatabaseRow>;
    fn users(&self) -> Vec<UserRow>;
    /// (list, items) as SHOW LISTS gives them.
    fn lists(&self) -> Vec<(&'static str, u64)>;
    fn config(&self) -> Vec<ConfigRow>;
    /// (metric, labels, value) for every counter and histogram.
    fn metrics(&self) -> Vec<(String, String, String)>;
    /// Where `sql` would run for a client of `database` (`None`: the
    /// first configured one), in each transaction context.
    fn route(
        &self,
        database: Option<&str>,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Vec<RouteRow>, String>> + Send;
}

/// What the console acts on. Each returns what it did, in words, for a
/// notice and the log line; `database` `None` means every one.
pub trait Act {
    fn reload(&self) -> Result<String, ConsoleError>;
    /// Stops handing out server connections; returns once no client (of
    /// the database) is in a transaction, or after a while, saying which.
    fn pause(
        &self,
        database: Option<&str>,
    ) -> impl std::future::Future<Output = Result<String, ConsoleError>> + Send;
    fn resume(&self, database: Option<&str>) -> Result<String, ConsoleError>;
    /// Closes server connections once released (idle ones now).
    fn reconnect(&self, database: Option<&str>) -> Result<String, ConsoleError>;
    /// Waits until the connections RECONNECT or a reload asked to close
    /// are closed.
    fn wait_close(
        &self,
        database: Option<&str>,
    ) -> impl std::future::Future<Output = Result<String, ConsoleError>> + Send;
    /// Drops every client and server connection of a database.
    fn kill(&self, database: &str) -> Result<String, ConsoleError>;
    fn kill_client(&self, id: u64) -> Result<String, ConsoleError>;
    fn disable(&self, database: &str) -> Result<String, ConsoleError>;
    fn enable(&self, database: &str) -> Result<String, ConsoleError>;
    fn shutdown(&self) -> String;
    /// Counts a command run or refused (`pgsplit_admin_commands_total`).
    fn counted(&self, command: &'static str, result: &'static str);
}

/// Everything the console needs.
pub trait Console: Show + Act {}
impl<T: Show + Act> Console for T {}

/// Who runs the commands of a console session, for the access check and
/// the log lines.
pub struct Caller<'a> {
    pub access: Access,
    pub user: &'a str,
    pub peer: &'a SocketAddr,
}

/// The console's answer to one command.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Rows(Table),
    /// A command tag (CommandComplete) and an optional notice first.
    Done {
        tag: &'static str,
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

pub async fn answer(console: &impl Console, caller: &Caller<'_>, text: &str) -> Reply {
    let command = match parse(text) {
        Ok(c) => c,
        Err(message) => return Reply::Error(sqlstate::SYNTAX_ERROR, message),
    };
    let (user, peer, name) = (caller.user, caller.peer, command.name());
    if !caller.access.permits(&command) {
        tracing::warn!(user, %peer, command = ?command, "admin command refused: stats_users may run SHOW commands only");
        console.counted(name, "denied");
        return Reply::Denied;
    }
    if !command.is_show() {
        tracing::info!(user, %peer, command = ?command, "admin command");
    }
    let reply = run(console, command).await;
    match &reply {
        Reply::Error(code, message) => {
            tracing::info!(user, %peer, command = name, code, message, "admin command failed");
            console.counted(name, "error");
        }
        Reply::Done { notice, .. } => {
            let what = notice.as_deref().unwrap_or_default();
            tracing::info!(user, %peer, command = name, what, "admin command done");
            console.counted(name, "ok");
        }
        _ => console.counted(name, "ok"),
    }
    reply
}

async fn run(console: &impl Console, command: Command) -> Reply {
    let tag = command.name();
    let result = match command {
        Command::Show(what) => return Reply::Rows(show::table(console, what)),
        Command::ShowRoute { database, sql } => {
            return match console.route(database.as_deref(), &sql).await {
                Ok(routes) => Reply::Rows(show::route(routes)),
                Err(message) => Reply::Error(sqlstate::INVALID_CATALOG_NAME, message),
            }
        }
        Command::Empty => return Reply::Empty,
        Command::Reload => console.reload(),
        Command::Pause(db) => console.pause(db.as_deref()).await,
        Command::Resume(db) => console.resume(db.as_deref()),
        Command::Reconnect(db) => console.reconnect(db.as_deref()),
        Command::WaitClose(db) => console.wait_close(db.as_deref()).await,
        Command::Kill(db) => console.kill(&db),
        Command::KillClient(id) => console.kill_client(id),
        Command::Disable(db) => console.disable(&db),
        Command::Enable(db) => console.enable(&db),
        Command::Shutdown => Ok(console.shutdown()),
    };
    match result {
        Ok(what) => Reply::Done {
            tag,
            notice: Some(what),
        },
        Err(e) => Reply::Error(e.sqlstate(), e.to_string()),
    }
}

/// Every `result` label of `pgsplit_admin_commands_total`.
pub const RESULTS: [&str; 3] = ["ok", "error", "denied"];

/// Every `command` label of `pgsplit_admin_commands_total`.
pub const COMMANDS: [&str; 12] = Command::NAMES;
