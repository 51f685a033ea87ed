//! GET /pool/status: the app's own pool, and pgsplit's view from its
//! `/status` endpoint.

use crate::db::PgPool;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Uri;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;

/// pgsplit answers /status from memory; longer means it is not there.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// A /status body larger than this is not pgsplit's.
const MAX_STATUS_BYTES: usize = 1 << 20;

/// The app's pool in SQLAlchemy's terms (the seed reported these).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AppPool {
    /// Connections kept open (`POOL_SIZE`).
    pub size: u32,
    /// Open and idle.
    pub checked_in: u32,
    /// Open and in use by a request.
    pub checked_out: u32,
    /// Open beyond `size` (up to `MAX_OVERFLOW`).
    pub overflow: u32,
}

pub fn app_pool(pool: &PgPool, size: u32) -> AppPool {
    let state = pool.state();
    AppPool {
        size,
        checked_in: state.idle_connections,
        checked_out: state.connections.saturating_sub(state.idle_connections),
        overflow: state.connections.saturating_sub(size),
    }
}

/// Why pgsplit's status could not be had; shown in the `pgsplit` field.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("PGSPLIT_STATUS_URL is not set")]
    NotConfigured,
    #[error("PGSPLIT_STATUS_URL {0:?} is not an http://host:port/path URL")]
    BadUrl(String),
    #[error("cannot reach {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("{url}: {source}")]
    Http { url: String, source: hyper::Error },
    #[error("{url} did not answer within {STATUS_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: hyper::StatusCode,
    },
    #[error("{url} answered something that is not JSON: {source}")]
    NotJson {
        url: String,
        source: serde_json::Error,
    },
    #[error("{url} answered more than {MAX_STATUS_BYTES} bytes")]
    TooLarge { url: String },
}

/// pgsplit's /status JSON, or `{"error": "..."}` saying why not.
pub async fn pgsplit_status(url: Option<&str>) -> Value {
    let result = match url {
        None => Err(StatusError::NotConfigured),
        Some(url) => match tokio::time::timeout(STATUS_TIMEOUT, fetch_json(url)).await {
            Ok(result) => result,
            Err(_) => Err(StatusError::Timeout {
                url: url.to_string(),
            }),
        },
    };
    result.unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

/// One HTTP/1.1 GET with hyper's connection-level client: axum already
/// brings hyper, while reqwest would add a TLS stack and a connection pool
/// this one request a click does not need.
async fn fetch_json(url: &str) -> Result<Value, StatusError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| StatusError::BadUrl(url.to_string()))?;
    let (Some("http"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(StatusError::BadUrl(url.to_string()));
    };
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|source| StatusError::Connect {
            url: url.to_string(),
            source,
        })?;
    let http = |source| StatusError::Http {
        url: url.to_string(),
        source,
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(http)?;
    // The connection task ends when the response is read and `sender` drops.
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|_| StatusError::BadUrl(url.to_string()))?;
    let response = sender.send_request(request).await.map_err(http)?;
    if !response.status().is_success() {
        return Err(StatusError::Status {
            url: url.to_string(),
            status: response.status(),
        });
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_STATUS_BYTES)
        .collect()
        .await
        .map_err(|_| StatusError::TooLarge {
            url: url.to_string(),
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|source| StatusError::NotJson {
        url: url.to_string(),
        source,
    })
}
