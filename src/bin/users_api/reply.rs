//! Building responses: JSON bodies, and the headers that say which
//! PostgreSQL server answered.

use crate::db::ServedBy;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// `inet_server_port()` of the server that ran the request's statement.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
/// Its `cluster_name`, when it has one (both are 5432 in Docker).
/// The consistency token: the WAL position that covers a write's commit.
/// A POST/PATCH answer carries it; a GET that sends it back reads only
/// from a server that has the write (pgsplit's `pgsplit:min_lsn` hint).
pub const CONSISTENCY_TOKEN: HeaderName = HeaderName::from_static("x-pgsplit-lsn");
pub const SERVED_BY_NAME: HeaderName = HeaderName::from_static("x-served-by-name");

/// `body` as JSON with `status`, saying who served it.
pub fn served<T: Serialize>(status: StatusCode, body: &T, by: &ServedBy) -> Response {
    let mut response = (status, Json(body)).into_response();
    add_served_by(&mut response, by);
    response
}

/// `served`, with the write's consistency token (if it could be read).
pub fn served_write<T: Serialize>(
    status: StatusCode,
    body: &T,
    by: &ServedBy,
    token: Option<&str>,
) -> Response {
    let mut response = served(status, body, by);
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(t).ok()) {
        response.headers_mut().insert(CONSISTENCY_TOKEN, value);
    }
    response
}

pub fn add_served_by(response: &mut Response, by: &ServedBy) {
    let headers = response.headers_mut();
    headers.insert(SERVED_BY, HeaderValue::from(by.port));
    // A cluster_name with bytes a header cannot carry is left out, not fatal.
    if let Ok(name) = HeaderValue::from_str(&by.name) {
        if !by.name.is_empty() {
            headers.insert(SERVED_BY_NAME, name);
        }
    }
}
