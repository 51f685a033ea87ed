//! One client connection: opening (TLS or not, cancel, startup),
//! authentication, the greeting a server would send, then the session.

mod admin;
mod auth;
mod batch;
mod encryption;
mod exchange;
mod io;
mod relay;
mod retry;
pub mod scram;
mod session;
mod settings;
mod startup;
mod statements;

use io::ClientError;

use crate::app::{App, Current};
use crate::health::Need;
use crate::pool::{ClusterPools, PoolError};
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, status, PgError};
use bytes::BytesMut;
use io::ClientIo;
use session::Session;
use settings::Settings;
use startup::{Opening, StartupParams};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

/// Serves one accepted connection to its end. Never panics on what the
/// client sends; errors end this client only.
pub async fn handle(app: Arc<App>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    // What this generation says, taken out of it: a client that is slow
    // to open must not keep an old generation (its health checks) alive.
    let (tls, mode, max_message_size) = {
        let current = app.current();
        let config = &current.config;
        let tls = current.tls.clients.clone();
        (tls, config.client_tls_sslmode, config.max_message_size)
    };
    let opener = encryption::Peer {
        addr: &peer,
        metrics: &app.metrics,
    };
    let Some(opened) = encryption::open(stream, tls.as_deref(), mode, opener).await else {
        return;
    };
    let mut io = ClientIo::new(
        opened.stream,
        opened.buf,
        max_message_size,
        app.metrics.session(),
    );
    io.server_end_point = opened.server_end_point;
    match opened.opening {
        Ok(Opening::Cancel {
            pid,
            secret,
            forwarded,
        }) => crate::fleet::cancel(&app, pid, secret, forwarded).await,
        Ok(Opening::Session(params)) => serve(app, io, params, peer).await,
        // Handled by `encryption::open`.
        Ok(Opening::TlsRequest) => {}
        Err(e) => report(&mut io, &e, &peer).await,
    }
}

async fn serve(app: Arc<App>, mut io: ClientIo, params: StartupParams, peer: SocketAddr) {
    if params.database == crate::admin::DATABASE {
        if let Err(e) = admin::serve(&app, &mut io, &params).await {
            count_refusal(&app, &e);
            report(&mut io, &e, &peer).await;
        }
        return;
    }
    let started = Instant::now();
    tracing::info!(%peer, user = %params.user, database = %params.database, "client connected");
    app.metrics.client_connections_total.inc();
    let registration = app.cancels.register();
    let result = match log_in(&app, &mut io, &params, registration.key).await {
        Ok((current, cluster, settings)) => {
            let client = app.clients.register(
                peer,
                &params.user,
                &params.database,
                params.get("application_name").unwrap_or_default(),
            );
            Session::new(
                app.clone(),
                current,
                io,
                cluster,
                registration.slot.clone(),
                settings,
                client.info.clone(),
            )
            .run()
            .await
        }
        Err(e) => {
            count_refusal(&app, &e);
            report(&mut io, &e, &peer).await;
            Err(e)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) | Err(ClientError::Gone) => tracing::info!(%peer, seconds, "client disconnected"),
        Err(error) => tracing::info!(%peer, seconds, %error, "client disconnected"),
    }
}

/// A failed login: the client's fault (protocol, password, unknown
/// database or role) or pgsplit's (no server could check it).
fn count_refusal(app: &App, e: &ClientError) {
    use crate::metrics::ErrorSide;
    match e {
        ClientError::Protocol(p) => app.metrics.error(ErrorSide::Client, &PgError::from(p).code),
        ClientError::Refused(error) => {
            let side = match error.code.get(..2) {
                Some("28" | "3D" | "08") => ErrorSide::Client,
                _ => ErrorSide::Pgsplit,
            };
            app.metrics.error(side, &error.code);
        }
        ClientError::Io(_) | ClientError::Gone | ClientError::ServerEnded => {}
    }
}

/// Tells the client why it is being dropped, when it can be told.
async fn report(io: &mut ClientIo, e: &ClientError, peer: &SocketAddr) {
    match e {
        ClientError::Protocol(p) => {
            tracing::warn!(%peer, error = %p, "client protocol violation");
            io.send_error(&PgError::from(p)).await;
        }
        ClientError::Refused(error) => io.send_error(error).await,
        ClientError::Io(_) | ClientError::Gone | ClientError::ServerEnded => {}
    }
}

/// Authenticates, checks the database can be served, and greets the client
/// as PostgreSQL would.
async fn log_in(
    app: &App,
    io: &mut ClientIo,
    params: &StartupParams,
    key: (i32, i32),
) -> Result<(Arc<Current>, Arc<ClusterPools>, Settings), ClientError> {
    let settings = Settings::from_startup(params).map_err(ClientError::Refused)?;
    let current = app.current();
    let config = &current.config;
    // SCRAM-SHA-256-PLUS binds to this (TLS connections only).
    let channel_binding = io.server_end_point.clone();
    auth::authenticate(app, &current, io, &params.user, channel_binding.as_deref()).await?;
    if !config.databases.is_empty() && !config.databases.contains(&params.database) {
        return Err(ClientError::Refused(PgError::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{}\" does not exist", params.database),
        )));
    }
    let cluster = current.pools.get(&params.database, &params.user);
    let (server_params, notices) = server_params(&cluster, &settings).await?;
    let mut out = BytesMut::new();
    backend::authentication_ok(&mut out);
    // What the server had to say about the settings (a truncated name, ...)
    // a direct login shows here too.
    out.extend_from_slice(&notices);
    for (name, value) in &server_params {
        backend::parameter_status(name, value, &mut out);
    }
    backend::backend_key_data(key.0, key.1, &mut out);
    backend::ready_for_query(status::IDLE, &mut out);
    io.write(&out).await?;
    Ok((current, cluster, settings))
}

/// The ParameterStatus values a server would send this client: the
/// primary's login values, with those the client's settings change as the
/// primary has them after applying them (which also checks them: a bad
/// value gets the server's error, as a direct login would). Opening a
/// connection the first time also proves the database and role exist (else
/// the server's FATAL reaches the client as it would directly).
async fn server_params(
    cluster: &ClusterPools,
    settings: &Settings,
) -> Result<(Vec<(String, String)>, BytesMut), ClientError> {
    let cached = cluster.writer_pool().and_then(|p| p.params()).cloned();
    if let (Some(params), 0) = (&cached, settings.fingerprint) {
        return Ok((params.clone(), BytesMut::new()));
    }
    // With the primary down, a replica checks and reports them: reads go on.
    // A login does not wait out a failover: a replica serves it.
    let checkout = match cluster.checkout_primary_for_read().await {
        Err(PoolError::NoPrimary | PoolError::SplitBrain | PoolError::PrimaryUnavailable { .. }) => {
            cluster.checkout_read(&mut Need::Any).await
        }
        other => other,
    };
    let mut conn = checkout.map_err(|e| {
        let mut error = session::pool_error(&e);
        error.severity = crate::protocol::error::Severity::Fatal;
        ClientError::Refused(error)
    })?;
    // The database's and role's transaction defaults decide where reads
    // may run (a standby refuses serializable ones): asked once per pool,
    // on the login's own connection.
    if conn.role == crate::role::Role::Primary {
        cluster.learn_defaults_on(&mut conn).await;
    }
    let mut params = cached.unwrap_or_else(|| conn.params.clone());
    let names: Vec<String> = params.iter().map(|(name, _)| name.clone()).collect();
    let (values, said) = settings
        .apply_reporting(&mut conn, &names)
        .await
        .map_err(|e| ClientError::Refused(e.to_client_error(true)))?;
    // What the server reported while applying them (a parameter the login
    // did not report), then what it has now, read back.
    for (name, value) in said.reported.into_iter().chain(values) {
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some(param) => param.1 = value,
            None => params.push((name, value)),
        }
    }
    Ok((params, said.notices))
}
