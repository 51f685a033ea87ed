//! The connection pool to pgsplit, the schema, and what every query
//! returns besides its rows: which server ran it.

use bb8::{Pool, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

type Manager = PostgresConnectionManager<NoTls>;

/// The pool to pgsplit, and why its last connection failed: bb8 opens
/// connections in the background and tells only its error sink why one
/// failed, so a checkout that waits out its timeout would otherwise say
/// only "Timed out in bb8", not "Connection refused".
#[derive(Clone)]
pub struct PgPool {
    pool: Pool<Manager>,
    last_error: LastError,
}

impl PgPool {
    /// A pooled connection, or why none could be had.
    pub async fn get(&self) -> Result<PooledConnection<'_, Manager>, DbError> {
        self.pool.get().await.map_err(|e| self.explain(e))
    }

    /// A connection outside the pool.
    pub async fn dedicated_connection(&self) -> Result<tokio_postgres::Client, DbError> {
        Ok(self.pool.dedicated_connection().await?)
    }

    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }

    fn explain(&self, e: RunError<tokio_postgres::Error>) -> DbError {
        match (e, self.last_error.recent()) {
            (RunError::TimedOut, Some(last)) => DbError::Unreachable {
                waited_seconds: CHECKOUT_TIMEOUT.as_secs_f64(),
                last,
            },
            (e, _) => DbError::Pool(e),
        }
    }
}

/// The pool's error sink: the last connection error and when it came.
#[derive(Debug, Clone, Default)]
struct LastError(Arc<Mutex<Option<(Instant, String)>>>);

impl LastError {
    /// The last error, if it came within the last checkout's wait (an
    /// older one may no longer be why).
    fn recent(&self) -> Option<String> {
        let last = self.0.lock().ok()?.clone()?;
        (last.0.elapsed() <= CHECKOUT_TIMEOUT * 2).then_some(last.1)
    }
}

/// An error and its causes: tokio-postgres says "error connecting to
/// server" and keeps "Connection refused" as its source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl bb8::ErrorSink<tokio_postgres::Error> for LastError {
    fn sink(&self, error: tokio_postgres::Error) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some((Instant::now(), with_causes(&error)));
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}

/// How long a request waits for a pooled connection before it gets a 503.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start-up keeps trying to reach the database (pgsplit, or the
/// servers behind it, may still be starting).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a query failed, in the terms handlers answer with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The unique index on `users.email` refused a row.
    #[error("email already registered")]
    EmailTaken,
    /// No connection could be had (pgsplit down, pool exhausted).
    #[error("no database connection: {0}")]
    Pool(#[from] bb8::RunError<tokio_postgres::Error>),
    /// No connection within the checkout timeout, and why the last
    /// attempt to open one failed.
    #[error("no database connection within {waited_seconds} s: {last}")]
    Unreachable { waited_seconds: f64, last: String },
    #[error("database error: {0}")]
    Postgres(#[source] tokio_postgres::Error),
    /// The server answered in a shape our SQL cannot produce.
    #[error("unexpected database answer: {0}")]
    Unexpected(&'static str),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            DbError::EmailTaken
        } else {
            DbError::Postgres(e)
        }
    }
}

impl DbError {
    /// Whether the database (not the request) is at fault and may recover:
    /// pgsplit's 57P03 "primary unavailable", connection failures.
    pub fn unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Unreachable { .. } => true,
            DbError::Postgres(e) => {
                e.is_closed() || e.code() == Some(&SqlState::CANNOT_CONNECT_NOW)
            }
            DbError::EmailTaken | DbError::Unexpected(_) => false,
        }
    }
}

/// The server that ran a statement: `inet_server_port()` and its
/// `cluster_name` (empty unless the server sets one; in Docker both servers
/// listen on 5432, so only the name tells them apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    pub port: i32,
    pub name: String,
}

/// The columns every query appends to say who ran it. Both functions are
/// stable, so pgsplit still sends a read carrying them to a replica.
pub const SERVED_BY_COLUMNS: &str = "inet_server_port() AS served_port, \
     current_setting('cluster_name') AS served_name";

impl ServedBy {
    pub fn from_row(row: &Row) -> Result<ServedBy, tokio_postgres::Error> {
        Ok(ServedBy {
            // NULL only over a unix socket, which pgsplit does not offer.
            port: row.try_get::<_, Option<i32>>("served_port")?.unwrap_or(0),
            name: row
                .try_get::<_, Option<String>>("served_name")?
                .unwrap_or_default(),
        })
    }
}

/// Rows, or one value, and the server that produced them.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub by: ServedBy,
}

/// A pool of `size` connections kept open plus `max_overflow` more under
/// load (SQLAlchemy's terms, which /pool/status reports). Connects lazily.
pub fn pool(
    database_url: &str,
    size: u32,
    max_overflow: u32,
) -> Result<PgPool, tokio_postgres::Error> {
    let manager = PostgresConnectionManager::new_from_stringlike(database_url, NoTls)?;
    let last_error = LastError::default();
    let pool = Pool::builder()
        .max_size((size + max_overflow).max(1))
        .min_idle(Some(size))
        .connection_timeout(CHECKOUT_TIMEOUT)
        // Overflow connections close when idle, as SQLAlchemy's do.
        .idle_timeout(Some(Duration::from_secs(30)))
        .error_sink(Box::new(last_error.clone()))
        .build_unchecked(manager);
    Ok(PgPool { pool, last_error })
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    email         text NOT NULL UNIQUE,
    -- Whole cents: exact sums, no float rounding.
    balance_cents bigint NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
    created_at    timestamptz NOT NULL DEFAULT now()
)";

/// Creates the schema, retrying while the database is not reachable yet,
/// then waits until a read on a fresh connection sees the table.
///
/// The DDL runs on the primary; a read on another connection may go to a
/// replica that has not replayed it yet, so the app is ready only once such
/// a read finds the table (else the first GET after start-up could fail).
pub async fn prepare_schema(pool: &PgPool) -> Result<(), DbError> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match create_schema(pool).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!("database not ready, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
    loop {
        // A dedicated connection has written nothing, so pgsplit does not
        // hold its read back for read-your-writes: it goes to a replica.
        let conn = pool.dedicated_connection().await?;
        let row = conn
            .query_one("SELECT to_regclass('public.users') IS NOT NULL", &[])
            .await?;
        if row.try_get::<_, bool>(0)? || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_schema(pool: &PgPool) -> Result<(), DbError> {
    let conn = pool.get().await?;
    conn.batch_execute(SCHEMA).await?;
    Ok(())
}
