//! The pgsplit binary: flags and config, logging, then the listener.

use clap::Parser;
use pgsplit::config::{Cli, LogFormat};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pgsplit: {error}");
            return ExitCode::from(2);
        }
    };
    // The TLS files are read again when the listener starts; read here
    // first so a bad one exits with status 2 before anything listens.
    if let Err(error) = pgsplit::tls::Tls::load(&config) {
        eprintln!("pgsplit: invalid config: {error}");
        return ExitCode::from(2);
    }
    init_logging(config.log_format);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = config.runtime_threads(cores);
    tracing::info!(threads, cores, "runtime threads");
    let runtime = match runtime(threads) {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("pgsplit: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&config.listen).await {
            Ok(l) => l,
            Err(error) => {
                eprintln!("pgsplit: cannot listen on {}: {error}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let reloader: pgsplit::Reloader = Arc::new(move || cli.load());
        pgsplit::run_reloadable(config, listener, first_signal_then_watch(), Some(reloader)).await;
        ExitCode::SUCCESS
    })
}

/// One thread: a current-thread runtime (no work stealing, no wakeups
/// across threads); otherwise that many workers.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Completes at the first SIGTERM or SIGINT, starting a graceful shutdown;
/// a second one exits at once.
async fn first_signal_then_watch() {
    shutdown_signal().await;
    tracing::info!("signal received: shutting down gracefully (send it again to exit at once)");
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(1);
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
