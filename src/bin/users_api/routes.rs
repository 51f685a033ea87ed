//! The URL map. The seed served its async engine under `/async/...`; here
//! one set of handlers (all async) serves both prefixes, so the seed's
//! curl examples work unchanged.

use crate::handlers::{self, AppState};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(api())
        .nest("/async", api())
        .route("/healthz", get(handlers::healthz))
        .with_state(state)
}

fn api() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/users",
            post(handlers::create_user).get(handlers::list_users),
        )
        .route("/users/batch", post(handlers::create_users))
        .route(
            "/users/{user_id}",
            get(handlers::get_user)
                .put(handlers::update_user)
                .delete(handlers::delete_user),
        )
        .route("/transfer", post(handlers::transfer))
        .route("/pool/status", get(handlers::pool_status))
}
