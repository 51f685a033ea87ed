//! Why an admin command could not be done: PgBouncer's words where it has
//! some, each with the SQLSTATE PostgreSQL would give the same trouble.

use crate::protocol::error::sqlstate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error("no such database: {0}")]
    NoSuchDatabase(String),
    /// The console's own database takes no PAUSE, KILL, ...
    #[error("cannot {action} admin db: {database}")]
    AdminDatabase {
        action: &'static str,
        database: String,
    },
    #[error("client not found: {0} (SHOW CLIENTS lists the ids)")]
    ClientNotFound(u64),
    #[error("already suspended/paused")]
    AlreadyPaused,
    #[error("pooler is not paused/suspended")]
    NotPaused,
    #[error("database {0} is not paused")]
    DatabaseNotPaused(String),
    #[error("pooler is shutting down")]
    ShuttingDown,
    /// RELOAD read a configuration that is refused: the running one stays.
    #[error("{0}")]
    Reload(String),
}

impl ConsoleError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ConsoleError::NoSuchDatabase(_) => sqlstate::INVALID_CATALOG_NAME,
            ConsoleError::ClientNotFound(_) => sqlstate::UNDEFINED_OBJECT,
            ConsoleError::AdminDatabase { .. }
            | ConsoleError::AlreadyPaused
            | ConsoleError::NotPaused
            | ConsoleError::DatabaseNotPaused(_)
            | ConsoleError::ShuttingDown => sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            // config_file_error
            ConsoleError::Reload(_) => "F0000",
        }
    }
}
