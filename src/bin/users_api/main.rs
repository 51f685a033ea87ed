//! users-api: the demo application for pgsplit (README "The demo (users
//! API)"). A small users-and-balances HTTP service that has one database
//! URL, pgsplit's, and says in every answer which server ran its query.
//!
//! Flow: `config` (environment) -> `db` (pool, schema) -> `routes` ->
//! `handlers` -> `validate` and the query modules `users` / `transfer` ->
//! `reply` or `error` (HTTP answers). `status` serves /pool/status.

mod config;
mod db;
mod error;
mod handlers;
mod money;
mod reply;
mod routes;
mod status;
mod transfer;
mod users;
mod validate;

use handlers::AppState;
use std::process::ExitCode;
use std::sync::Arc;

/// Why the app stopped before or while serving.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("DATABASE_URL is invalid: {0}")]
    DatabaseUrl(tokio_postgres::Error),
    #[error("cannot create the schema: {0}")]
    Schema(db::DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes in a log file are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("users-api: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), StartError> {
    let settings = config::Settings::from_env()?;
    let pool = db::pool(
        &settings.database_url,
        settings.pool_size,
        settings.max_overflow,
    )
    .map_err(StartError::DatabaseUrl)?;
    db::prepare_schema(&pool)
        .await
        .map_err(StartError::Schema)?;
    let state = Arc::new(AppState {
        pool,
        pool_size: settings.pool_size,
        pgsplit_status_url: settings.pgsplit_status_url,
    });
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.bind,
            source,
        })?;
    // Logged after binding, so "listening" means requests will be served.
    let addr = listener.local_addr().unwrap_or(settings.bind);
    tracing::info!("users-api listening on http://{addr}");
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(StartError::Serve)
}

/// Ctrl-C or SIGTERM (what `kill`, Docker and the demo's stop send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("users-api shutting down");
}
