//! The HTTP endpoint for operators: GET /metrics (Prometheus text format),
//! /status (pools and servers as JSON) and /healthz.
//!
//! Handed what it shows through [`Observed`]; it knows nothing of sessions
//! or pools. Every request builds a fresh sample, so nothing here touches
//! the forwarding path.

use crate::metrics::Sample;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the endpoint shows.
pub trait Observed: Send + Sync + 'static {
    fn sample(&self) -> Sample;
    /// The metrics in the Prometheus text exposition format.
    fn metrics_text(&self) -> String;
}

type Source = Arc<dyn Observed>;

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics and status endpoint listening (GET /metrics, /status, /healthz)");
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .with_state(source);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(%error, "metrics endpoint stopped");
    }
}

async fn metrics(State(source): State<Source>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        source.metrics_text(),
    )
        .into_response()
}

async fn status(State(source): State<Source>) -> Json<Sample> {
    Json(source.sample())
}

/// What /healthz says.
#[derive(Debug, Serialize)]
pub struct Health {
    /// "ok" when pgsplit can serve writes or reads, else "unavailable".
    pub status: &'static str,
    /// A primary is up: writes can run.
    pub writes: bool,
    /// A replica (or, failing that, the primary) is up: reads can run.
    pub reads: bool,
    pub primary: Option<String>,
    /// Replicas that serve reads now.
    pub replicas_serving: usize,
    /// More than one server reports it is a primary: writes go to none.
    pub split_brain: bool,
}

impl Health {
    pub fn of(sample: &Sample) -> Health {
        let primary = sample
            .servers
            .iter()
            .find(|s| s.up && s.primary)
            .map(|s| s.server.clone());
        let replicas_serving = sample.servers.iter().filter(|s| s.serves_reads).count();
        let writes = primary.is_some() && !sample.split_brain;
        let reads = writes || replicas_serving > 0;
        Health {
            status: if reads { "ok" } else { "unavailable" },
            writes,
            reads,
            primary,
            replicas_serving,
            split_brain: sample.split_brain,
        }
    }
}

async fn healthz(State(source): State<Source>) -> (StatusCode, Json<Health>) {
    let health = Health::of(&source.sample());
    let code = if health.reads {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}
