//! Every way a request fails, and the HTTP answer for each: FastAPI's
//! shapes, `{"detail": [...]}` for validation (422) and `{"detail": "..."}`
//! otherwise.

use crate::db::{DbError, ServedBy};
use crate::reply::add_served_by;
use crate::transfer::TransferError;
use crate::validate::Problems;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(Problems),
    /// `by` is the server that found nothing, when a query ran.
    #[error("User not found")]
    UserNotFound { by: Option<ServedBy> },
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<Problems> for ApiError {
    fn from(problems: Problems) -> Self {
        ApiError::Validation(problems)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(problems) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "detail": problems })),
            )
                .into_response(),
            ApiError::UserNotFound { by } => {
                let mut response = detail(StatusCode::NOT_FOUND, "User not found");
                if let Some(by) = by {
                    add_served_by(&mut response, &by);
                }
                response
            }
            ApiError::Transfer(e) => transfer_response(e),
            ApiError::Db(e) => db_response(e),
        }
    }
}

fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": message.into() }))).into_response()
}

fn transfer_response(e: TransferError) -> Response {
    let status = match e {
        TransferError::Db(db) => return db_response(db),
        TransferError::SameUser => StatusCode::BAD_REQUEST,
        TransferError::UnknownUser(_) => StatusCode::NOT_FOUND,
        TransferError::InsufficientFunds { .. } => StatusCode::CONFLICT,
    };
    detail(status, e.to_string())
}

fn db_response(e: DbError) -> Response {
    match e {
        DbError::EmailTaken => detail(StatusCode::BAD_REQUEST, "Email already registered"),
        e if e.unavailable() => {
            tracing::warn!("database unavailable: {e}");
            detail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Database unavailable: {e}"),
            )
        }
        e => {
            // The cause goes to the log, not to the client.
            tracing::error!("request failed: {e:?}");
            detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}
