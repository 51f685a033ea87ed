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

use crate::app::{admission, App, Current};
use crate::health::Need;
use crate::metrics::{Refusal, Timeout};
use crate::pool::{ClusterPools, PoolError};
use crate::protocol::error::sqlstate;
use crate::protocol::{backend, status, PgError, ProtocolError};
use bytes::BytesMut;
use io::ClientIo;
use session::Session;
use settings::Settings;
use startup::{Opening, StartupParams};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

/// The largest message a client may send before it is authenticated: its
/// password or SASL message, capped as PostgreSQL caps them
/// (PG_MAX_AUTH_TOKEN_LENGTH, 65,535 bytes of body; the length field
/// counts itself). `max_message_size` applies once it is logged in.
pub const LOGIN_MAX_MESSAGE: usize = 65_535 + 4;

/// What the startup packet is read into: enough for any usual one
/// (PostgreSQL caps them at 10,000 bytes); grown if one is larger.
const STARTUP_BUFFER: usize = 1024;

/// Serves one accepted connection to its end. Never panics on what the
/// client sends; errors end this client only.
///
/// Every log line of the connection, from its opening to its end, is in
/// its span and so carries the id SHOW CLIENTS shows (`client_id`) and the
/// client's address (`peer`). The span is entered at each poll of the
/// connection's future: a few uncontended atomic operations, no
/// allocation.
pub async fn handle(app: Arc<App>, stream: TcpStream, peer: SocketAddr) {
    use tracing::Instrument;
    let id = app.clients.next_id();
    let span = tracing::info_span!("client", client_id = id, %peer);
    connection(app, stream, peer, id).instrument(span).await
}

async fn connection(app: Arc<App>, stream: TcpStream, peer: SocketAddr, id: u64) {
    let open = app.admission.enter();
    // What this generation says, taken out of it: a client that is slow
    // to open must not keep an old generation (its health checks) alive.
    let (tls, mode, max_client_conn) = {
        let current = app.current();
        let config = &current.config;
        let tls = current.tls.clients.clone();
        (tls, config.client_tls_sslmode, config.max_client_conn)
    };
    let login = Login::start(&app);
    let opener = encryption::Peer {
        addr: &peer,
        metrics: &app.metrics,
    };
    // A client that has not even opened (its startup packet, its TLS
    // handshake) when its time is up is closed without a word, as
    // PostgreSQL does: it is not reading yet.
    // Boxed, as the login is: a TLS handshake's future is large, and it
    // runs once.
    let opening = Box::pin(encryption::open(stream, tls.as_deref(), mode, opener));
    let Ok(Some(opened)) = login.in_time(&app, async { Ok(opening.await) }).await else {
        return;
    };
    let mut io = ClientIo::new(
        opened.stream,
        opened.buf,
        LOGIN_MAX_MESSAGE,
        app.metrics.session(),
    );
    io.server_end_point = opened.server_end_point;
    match opened.opening {
        Ok(Opening::Cancel {
            pid,
            secret,
            forwarded,
        }) => crate::fleet::cancel(&app, pid, secret, forwarded).await,
        Ok(Opening::Session(params)) => {
            let to_console = params.database == crate::admin::DATABASE;
            if !admission::admits(open.count(), max_client_conn, to_console) {
                tracing::warn!(
                    open = open.count(),
                    max_client_conn,
                    "client refused: max_client_conn reached"
                );
                app.metrics.refused(Refusal::MaxClientConn);
                let e = ClientError::Refused(PgError::fatal(
                    sqlstate::TOO_MANY_CONNECTIONS,
                    "no more connections allowed (max_client_conn)",
                ));
                count_refusal(&app, &e);
                report(&mut io, &e).await;
                return;
            }
            serve(app, io, params, peer, login, id).await
        }
        // Handled by `encryption::open`.
        Ok(Opening::TlsRequest) => {}
        Err(e) => {
            count_refusal(&app, &e);
            report(&mut io, &e).await
        }
    }
}

/// The client's time to log in: `client_login_timeout` from its
/// connection to the end of its login, startup packet, authentication and
/// greeting all counted, so neither a silent client, nor one that sends
/// half a packet, nor one that never answers the password challenge holds
/// its connection (and its memory) for longer.
struct Login {
    deadline: Option<tokio::time::Instant>,
    timeout: Option<std::time::Duration>,
}

impl Login {
    fn start(app: &App) -> Login {
        let timeout = app.config().client_login_timeout();
        Login {
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            timeout,
        }
    }

    /// Runs a step of the login, or refuses the client once its time is up
    /// (FATAL 08P01 `client_login_timeout`, PgBouncer's words).
    async fn in_time<T>(
        &self,
        app: &App,
        step: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let Some(deadline) = self.deadline else {
            return step.await;
        };
        match tokio::time::timeout_at(deadline, step).await {
            Ok(result) => result,
            Err(_) => {
                let seconds = self.timeout.map_or(0.0, |t| t.as_secs_f64());
                tracing::warn!(
                    seconds,
                    "client did not log in within client_login_timeout: closing its connection"
                );
                app.metrics.timed_out(Timeout::ClientLogin);
                Err(ClientError::Refused(PgError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "client_login_timeout",
                )))
            }
        }
    }
}

async fn serve(
    app: Arc<App>,
    mut io: ClientIo,
    params: StartupParams,
    peer: SocketAddr,
    login: Login,
    id: u64,
) {
    // The login's and the console's futures are boxed: a session's future
    // is as large as its largest part for as long as it lives, and these
    // run once, or rarely.
    if params.database == crate::admin::DATABASE {
        let logged_in = login
            .in_time(&app, Box::pin(admin::log_in(&app, &mut io, &params, &peer)))
            .await;
        let served = match logged_in {
            Ok(access) => {
                let caller = crate::admin::Caller {
                    access,
                    user: &params.user,
                    peer: &peer,
                };
                Box::pin(admin::serve(&app, &mut io, &caller)).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            count_refusal(&app, &e);
            report(&mut io, &e).await;
        }
        return;
    }
    let started = Instant::now();
    io.metrics.set_database(&params.database);
    tracing::info!(user = %params.user, database = %params.database, "client connected");
    app.metrics.client_connections_accepted.inc();
    let registration = app.cancels.register();
    let logged_in = login
        .in_time(
            &app,
            Box::pin(log_in(&app, &mut io, &params, registration.key)),
        )
        .await;
    let result = match logged_in {
        Ok((current, cluster, settings)) => {
            let client = app.clients.register(crate::app::clients::Connected {
                id,
                peer,
                local: io.stream.local_addr(),
                tls: io.stream.tls_description(),
                user: &params.user,
                database: &params.database,
                application_name: params.get("application_name").unwrap_or_default(),
            });
            // Owned here and run by reference: a session moved into its
            // own future would be stored there twice.
            let mut session = Session::new(
                app.clone(),
                current,
                io,
                cluster,
                registration.slot.clone(),
                settings,
                client.info.clone(),
            );
            session.run().await
        }
        Err(e) => {
            count_refusal(&app, &e);
            report(&mut io, &e).await;
            Err(e)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) | Err(ClientError::Gone) => tracing::info!(seconds, "client disconnected"),
        Err(error) => tracing::info!(seconds, %error, "client disconnected"),
    }
}

/// A failed login: the client's fault (protocol, password, unknown
/// database or role) or pgsplit's (no server could check it).
fn count_refusal(app: &App, e: &ClientError) {
    use crate::metrics::ErrorSide;
    match e {
        ClientError::Protocol(
            p @ (ProtocolError::TooLarge { .. } | ProtocolError::StartupLength { .. }),
        ) => {
            app.metrics.refused(Refusal::MessageTooLarge);
            app.metrics.error(ErrorSide::Client, &PgError::from(p).code)
        }
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
async fn report(io: &mut ClientIo, e: &ClientError) {
    match e {
        ClientError::Protocol(p) => {
            tracing::warn!(error = %p, "client protocol violation");
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
    io.set_max_message(config.max_message_size);
    if !config.databases.is_empty() && !config.databases.contains(&params.database) {
        return Err(ClientError::Refused(PgError::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{}\" does not exist", params.database),
        )));
    }
    if app.databases.is_disabled(&params.database) {
        // PgBouncer's words; PostgreSQL's SQLSTATE for a database that
        // does not allow connections (datallowconn = false).
        return Err(ClientError::Refused(PgError::fatal(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "database \"{}\" is disabled (DISABLE in pgsplit's admin console; ENABLE lets clients in again)",
                params.database
            ),
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

/// A login's failed checkout, as the FATAL its client gets.
fn login_pool_error(e: PoolError) -> ClientError {
    let mut error = session::pool_error(&e);
    error.severity = crate::protocol::error::Severity::Fatal;
    ClientError::Refused(error)
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
        Err(
            PoolError::NoPrimary | PoolError::SplitBrain | PoolError::PrimaryUnavailable { .. },
        ) => cluster.checkout_read(&mut Need::Any).await,
        other => other,
    };
    let mut conn = checkout.map_err(login_pool_error)?;
    // The database's and role's transaction defaults decide where reads
    // may run (a standby refuses serializable ones): asked once per pool,
    // on the login's own connection.
    if conn.role == crate::role::Role::Primary {
        cluster.learn_defaults_on(&mut conn).await;
    }
    let mut params = cached.unwrap_or_else(|| conn.params.clone());
    let names: Vec<String> = params.iter().map(|(name, _)| name.clone()).collect();
    let applied = match settings.apply_reporting(&mut conn, &names).await {
        // A pooled primary connection that died (a failover under way):
        // a replica serves the login, as when the primary is known down.
        Err(e)
            if conn.role == crate::role::Role::Primary
                && !matches!(e, crate::server::ServerError::Refused { .. }) =>
        {
            tracing::info!(pool = %conn.pool().name, error = %e,
                "a pooled primary connection failed during a login: a replica serves it");
            conn.broken = true;
            cluster.primary_connection_failed(conn.pool(), "a primary connection failed");
            let mut conn = cluster
                .checkout_read(&mut Need::Any)
                .await
                .map_err(login_pool_error)?;
            settings.apply_reporting(&mut conn, &names).await
        }
        applied => applied,
    };
    let (values, said) = applied.map_err(|e| ClientError::Refused(e.to_client_error(true)))?;
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

#[cfg(test)]
mod tests {
    /// Every connection's task holds its future's full size for as long as
    /// it lives, idle or not: what runs rarely (login, the admin console,
    /// a session's statement loop while idle) is boxed so that it is not
    /// part of it, and no large buffer lives on an async fn's stack. About
    /// 3.6 KiB in a debug build; 9 KiB before.
    #[tokio::test]
    async fn a_connections_future_stays_small() {
        let config = crate::config::Config {
            primary: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let tls = crate::tls::Tls::load(&config).unwrap();
        let app = crate::app::App::new(config, tls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let peer = stream.local_addr().unwrap();
        let future = super::handle(app, stream, peer);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 4096, "a connection's future is {size} bytes");
    }
}
