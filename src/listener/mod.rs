//! Accepts client connections and gives each its own task; serves the
//! metrics endpoint; reloads on SIGHUP; shuts down gracefully. At the open
//! file limit, refuses clients in words (`at_fd_limit`).

mod at_fd_limit;
pub mod bind;
mod socket_options;

use crate::app::{App, Reloader, Stop};
use crate::config::Config;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Runs a proxy with `config` on `listener` until `shutdown` completes (or
/// the admin console's SHUTDOWN), then shuts down gracefully. The listener
/// comes from outside, so tests bind port 0 in-process.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    run_reloadable(config, listener, shutdown, None).await
}

/// [`run`], with RELOAD and SIGHUP re-reading the configuration through
/// `reloader`.
pub async fn run_reloadable(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    reloader: Option<Reloader>,
) {
    // Checked by the binary before it listens; a library caller whose
    // files are bad gets no proxy rather than one without its TLS.
    let tls = match crate::tls::Tls::load(&config) {
        Ok(tls) => tls,
        Err(error) => {
            tracing::error!(%error, "cannot start: the TLS files could not be used");
            return;
        }
    };
    let app = App::new(config, tls);
    if let Some(reloader) = reloader {
        app.set_reloader(reloader);
        tokio::spawn(reload_on_sighup(Arc::downgrade(&app)));
    }
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = app.config().metrics_listen.clone() {
        match TcpListener::bind(&addr).await {
            Ok(l) => {
                let source: Arc<dyn crate::http::Observed> = app.clone();
                tokio::spawn(crate::http::serve(l, source, async {
                    let _ = http_stopped.await;
                }));
            }
            Err(error) => tracing::error!(%addr, %error, "cannot listen for metrics"),
        }
    }
    let (peers_stop, peers_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = app.config().peer_listen.clone() {
        // Peers' forwarded cancels keep coming while this process drains
        // (its clients' statements still run): it closes after the drain.
        match TcpListener::bind(&addr).await {
            Ok(l) => {
                tokio::spawn(accept(
                    app.clone(),
                    l,
                    async {
                        let _ = peers_stopped.await;
                    },
                    false,
                ));
            }
            Err(error) => tracing::error!(%addr, %error, "cannot listen on peer_listen"),
        }
    }
    serve(app.clone(), listener, shutdown).await;
    drain(&app).await;
    let _ = peers_stop.send(());
    let _ = http_stop.send(());
}

pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    accept(app, listener, shutdown, true).await
}

/// Accepts clients until `shutdown`, and, if `until_stop`, until a
/// shutdown of the application begins.
async fn accept(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    until_stop: bool,
) {
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "pgsplit listening");
    }
    let mut fd_limit = at_fd_limit::AtFdLimit::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            () = app.stopped(), if until_stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = socket_options::configure(&stream, &app.config().client_socket()) {
                        tracing::debug!(%peer, %error, "could not set a client socket's options");
                    }
                    tokio::spawn(crate::client::handle(app.clone(), stream, peer));
                }
                Err(error) if crate::fd_limit::is_exhaustion(&error) => {
                    fd_limit.refuse_one(&app, &listener, &error).await;
                }
                Err(error) => {
                    // Out of memory and the like: wait, don't spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Graceful shutdown, the listener already closed: clients are told to
/// leave as soon as they are between transactions; after
/// `shutdown_timeout` those still in one are cut off.
async fn drain(app: &App) {
    let timeout = app.config().shutdown_timeout();
    app.request_stop(Stop::Draining);
    tracing::info!(
        clients = app.clients.count(),
        timeout_seconds = timeout.as_secs_f64(),
        "shutting down: no new clients; clients leave as their transactions end"
    );
    if !clients_gone(app, timeout).await {
        tracing::warn!(
            clients = app.clients.count(),
            "shutdown_timeout passed: ending the transactions still running"
        );
        app.request_stop(Stop::Now);
        clients_gone(app, Duration::from_secs(5)).await;
    }
    tracing::info!("pgsplit stopped");
}

async fn clients_gone(app: &App, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while app.clients.count() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

async fn reload_on_sighup(app: std::sync::Weak<App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload only through the admin console");
        return;
    };
    while hangups.recv().await.is_some() {
        let Some(app) = app.upgrade() else { return };
        tracing::info!("SIGHUP: reloading the configuration");
        let _ = app.reload_from_source();
    }
}
