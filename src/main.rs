//! The pgsplit binary: flags and config, logging, then the listener.

use clap::Parser;
use pgsplit::config::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pgsplit: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
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
        pgsplit::run(config, listener, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
