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
pub const SERVED_BY_NAME: HeaderName = HeaderName::from_static("x-served-by-name");

/// `body` as JSON with `status`, saying who served it.
pub fn served<T: Serialize>(status: StatusCode, body: &T, by: &ServedBy) -> Response {
    let mut response = (status, Json(body)).into_response();
    add_served_by(&mut response, by);
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
