//! One function per endpoint: validate, run one query module's function,
//! answer. No SQL here.

use crate::db::PgPool;
use crate::error::ApiError;
use crate::reply::{served, served_write, CONSISTENCY_TOKEN};
use crate::users::{ReadFrom, Token};
use crate::{status, transfer, users, validate};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What every handler is handed.
pub struct AppState {
    pub pool: PgPool,
    /// Connections the pool keeps open (its `size` in /pool/status).
    pub pool_size: u32,
    pub pgsplit_status_url: Option<String>,
}

pub type App = State<Arc<AppState>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// A query string that does not even decode is a validation error too.
fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query.map(|Query(q)| q).map_err(|e| {
        ApiError::Validation(vec![validate::FieldError {
            loc: vec![Value::from("query")],
            msg: e.body_text(),
            kind: "query_parsing",
        }])
    })
}

pub async fn create_user(State(app): App, body: Bytes) -> Result<Response, ApiError> {
    let user = validate::new_user(&validate::json_body(&body)?)?;
    let created = users::create(&app.pool, &user).await?;
    let token = users::commit_token(&app.pool).await;
    Ok(served_write(
        StatusCode::CREATED,
        &created.value,
        &created.by,
        token.as_deref(),
    ))
}

pub async fn create_users(State(app): App, body: Bytes) -> Result<Response, ApiError> {
    let batch = validate::new_users(&validate::json_body(&body)?)?;
    if batch.is_empty() {
        // Nothing to insert, so no server to name.
        return Ok((StatusCode::CREATED, Json(json!([]))).into_response());
    }
    let created = users::create_many(&app.pool, &batch).await?;
    let token = users::commit_token(&app.pool).await;
    Ok(served_write(
        StatusCode::CREATED,
        &created.value,
        &created.by,
        token.as_deref(),
    ))
}

pub async fn list_users(State(app): App, query: Params) -> Result<Response, ApiError> {
    let page = validate::page(&params(query)?)?;
    let found = users::list(&app.pool, page).await?;
    Ok(served(StatusCode::OK, &found.value, &found.by))
}

pub async fn get_user(
    State(app): App,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = validate::user_id(&raw_id)?;
    // A client that sends back the token of its write (the X-Pgsplit-Lsn
    // header of a POST or PATCH answer) reads only from a server that has
    // it, whichever pgsplit instance and connection serve this request. A
    // malformed token is ignored.
    let token = headers
        .get(CONSISTENCY_TOKEN)
        .and_then(|v| v.to_str().ok())
        .and_then(Token::parse);
    let from = token.map_or(ReadFrom::Any, ReadFrom::AtLeast);
    let mut found = users::get(&app.pool, id, from).await?;
    if found.value.is_none() {
        // The app's pool spreads one person's requests over several pgsplit
        // connections, and pgsplit's default (session) consistency holds per
        // connection: a replica may not have a user created a moment ago on
        // another one. Before saying 404, ask the primary.
        found = users::get(&app.pool, id, ReadFrom::Primary).await?;
    }
    match found.value {
        Some(user) => Ok(served(StatusCode::OK, &user, &found.by)),
        None => Err(ApiError::UserNotFound { by: Some(found.by) }),
    }
}

pub async fn update_user(
    State(app): App,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = validate::user_id(&raw_id)?;
    let changes = validate::user_changes(&validate::json_body(&body)?)?;
    let updated = users::update(&app.pool, id, &changes).await?;
    match updated.value {
        Some(user) => {
            let token = users::commit_token(&app.pool).await;
            Ok(served_write(
                StatusCode::OK,
                &user,
                &updated.by,
                token.as_deref(),
            ))
        }
        None => Err(ApiError::UserNotFound {
            by: Some(updated.by),
        }),
    }
}

pub async fn delete_user(
    State(app): App,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = validate::user_id(&raw_id)?;
    let deleted = users::delete(&app.pool, id).await?;
    if !deleted.value {
        return Err(ApiError::UserNotFound {
            by: Some(deleted.by),
        });
    }
    Ok(served(
        StatusCode::OK,
        &json!({ "message": "User deleted", "id": id }),
        &deleted.by,
    ))
}

pub async fn transfer(State(app): App, query: Params) -> Result<Response, ApiError> {
    let request = validate::transfer(&params(query)?)?;
    let done = transfer::transfer(&app.pool, request).await?;
    Ok(served(StatusCode::OK, &done.value, &done.by))
}

pub async fn pool_status(State(app): App) -> Json<Value> {
    Json(json!({
        "app_pool": status::app_pool(&app.pool, app.pool_size),
        "pgsplit": status::pgsplit_status(app.pgsplit_status_url.as_deref()).await,
    }))
}

/// Liveness for Docker's health check: the process serves HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
