//! What the admin console's commands do to the application: PgBouncer's
//! PAUSE, RESUME, RECONNECT, WAIT_CLOSE, KILL, KILL_CLIENT, DISABLE,
//! ENABLE, RELOAD and SHUTDOWN.

use crate::admin::{Act, ConsoleError, DATABASE};
use crate::app::clients::ClientState;
use crate::app::{App, Stop};
use std::time::{Duration, Instant};

/// How long PAUSE waits for transactions in flight before it answers.
const PAUSE_WAIT: Duration = Duration::from_secs(10);

/// How often PAUSE and WAIT_CLOSE look again.
const POLL: Duration = Duration::from_millis(20);

impl Act for App {
    fn reload(&self) -> Result<String, ConsoleError> {
        self.reload_from_source().map_err(ConsoleError::Reload)
    }

    async fn pause(&self, database: Option<&str>) -> Result<String, ConsoleError> {
        match database {
            None if self.is_paused() => return Err(ConsoleError::AlreadyPaused),
            None => self.set_paused(true),
            Some(db) => {
                self.check_database(db, "pause")?;
                self.databases.pause(db);
            }
        }
        let deadline = Instant::now() + PAUSE_WAIT;
        loop {
            let active = self.active_clients(database);
            if active == 0 {
                return Ok("paused: no transaction in flight".into());
            }
            if Instant::now() >= deadline {
                return Ok(format!(
                    "paused; {active} clients still in a transaction after {PAUSE_WAIT:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn resume(&self, database: Option<&str>) -> Result<String, ConsoleError> {
        if self.stop_now() != Stop::Running {
            return Err(ConsoleError::ShuttingDown);
        }
        match database {
            None if !self.is_paused() && self.databases.paused().is_empty() => {
                Err(ConsoleError::NotPaused)
            }
            None => {
                // Every database paused on its own too, as PgBouncer does.
                self.databases.resume_all();
                self.set_paused(false);
                Ok("transactions go on".into())
            }
            Some(db) => {
                self.check_database(db, "resume")?;
                match self.resume_database(db) {
                    true => Ok(format!("transactions of {db} go on")),
                    false => Err(ConsoleError::DatabaseNotPaused(db.to_string())),
                }
            }
        }
    }

    fn reconnect(&self, database: Option<&str>) -> Result<String, ConsoleError> {
        if let Some(db) = database {
            self.check_database(db, "reconnect")?;
        }
        let done = self.current().pools.reconnect(database);
        Ok(format!(
            "{} server connections close once released ({} idle ones closed now)",
            done.marked, done.closed
        ))
    }

    async fn wait_close(&self, database: Option<&str>) -> Result<String, ConsoleError> {
        if let Some(db) = database {
            self.check_database(db, "wait in")?;
        }
        // As PgBouncer's: no time limit (a client pinned to a connection
        // keeps it until it leaves; KILL ends that).
        while self.registry.closing(database) > 0 {
            tokio::time::sleep(POLL).await;
        }
        Ok("every server connection asked to close is closed".into())
    }

    fn kill(&self, database: &str) -> Result<String, ConsoleError> {
        self.check_database(database, "kill")?;
        let clients: Vec<_> = self
            .clients
            .list()
            .into_iter()
            .filter(|c| c.database == database)
            .collect();
        for client in &clients {
            self.kill_one(client);
        }
        // Their connections close as the killed sessions let go of them.
        let done = self.current().pools.reconnect(Some(database));
        Ok(format!(
            "{} clients disconnected, {} server connections closing",
            clients.len(),
            done.marked
        ))
    }

    fn kill_client(&self, id: u64) -> Result<String, ConsoleError> {
        let client = self
            .clients
            .get(id)
            .ok_or(ConsoleError::ClientNotFound(id))?;
        self.kill_one(&client);
        Ok(format!("client {id} disconnected"))
    }

    fn disable(&self, database: &str) -> Result<String, ConsoleError> {
        self.check_database(database, "disable")?;
        self.databases.disable(database);
        Ok(format!("new clients of {database} are refused"))
    }

    fn enable(&self, database: &str) -> Result<String, ConsoleError> {
        self.check_database(database, "enable")?;
        self.databases.enable(database);
        Ok(format!("new clients of {database} are let in"))
    }

    fn shutdown(&self) -> String {
        self.request_stop(Stop::Draining);
        "shutting down gracefully".into()
    }

    fn counted(&self, command: &'static str, result: &'static str) {
        self.metrics.admin_command(command, result);
    }
}

impl App {
    /// Whether `database` may be named in a command: one pgsplit serves
    /// (any, when `databases` is empty, as a client may use any), and not
    /// the console's own.
    fn check_database(&self, database: &str, action: &'static str) -> Result<(), ConsoleError> {
        if database == DATABASE {
            return Err(ConsoleError::AdminDatabase {
                action,
                database: database.to_string(),
            });
        }
        let config = self.config();
        if !config.databases.is_empty() && !config.databases.iter().any(|d| d == database) {
            return Err(ConsoleError::NoSuchDatabase(database.to_string()));
        }
        Ok(())
    }

    /// Clients (of `database`, or all) in a transaction now.
    fn active_clients(&self, database: Option<&str>) -> usize {
        let clients = self.clients.list();
        clients
            .iter()
            .filter(|c| database.is_none_or(|d| c.database == d))
            .filter(|c| c.state() == ClientState::Active)
            .count()
    }

    fn kill_one(&self, client: &crate::app::clients::ClientInfo) {
        tracing::info!(client = client.id, peer = %client.peer, user = %client.user,
            database = %client.database, "killing the client (admin console)");
        self.kill_session(client);
    }
}
