//! Accepts client connections and gives each its own task.

use crate::app::App;
use crate::config::Config;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Runs a proxy with `config` on `listener` until `shutdown` completes.
/// The listener comes from outside, so tests bind port 0 in-process.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let app = App::new(config);
    let _monitors = crate::health::spawn_monitors(app.topology.clone(), &app.config);
    app.pools.warm_up();
    serve(app, listener, shutdown).await
}

pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "pgsplit listening");
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(crate::client::handle(app.clone(), stream, peer));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}
