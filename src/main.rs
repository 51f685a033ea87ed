//! The pgsplit binary: flags and config, logging, then the listener.

use clap::Parser;
use pgsplit::config::Cli;
use std::process::ExitCode;
use std::sync::Arc;

/// jemalloc rather than glibc's malloc: memory idle sessions give back is
/// returned to the system, where glibc keeps it in holes between what
/// sessions still hold (see Cargo.toml and bench/idle_clients.sh).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    if cli.check_config.is_some() {
        println!("{}", Cli::summary(&config));
        return ExitCode::SUCCESS;
    }
    pgsplit::logging::init(config.log_format);
    open_file_limit(config.max_client_conn);
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
        let listener = match pgsplit::listener::bind::bind(&config.listen, config.reuse_port).await
        {
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

/// Raises the soft open file limit for `max_client_conn` clients and
/// their server connections (up to the hard limit), and warns when that
/// is not enough: at the limit, clients are refused (see `fd_limit`).
fn open_file_limit(max_client_conn: usize) {
    // A client, about one server connection per client, and some for the
    // listeners, the health checks and the logs.
    let wanted = (max_client_conn as u64)
        .saturating_mul(2)
        .saturating_add(256);
    match pgsplit::fd_limit::raise_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            open_file_limit = limit,
            max_client_conn,
            "the open file limit is below max_client_conn and its server connections: clients beyond it are refused with 53300 (raise the hard limit, ulimit -Hn or LimitNOFILE)"
        ),
        Ok(limit) => tracing::info!(open_file_limit = limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "cannot read or raise the open file limit"),
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
