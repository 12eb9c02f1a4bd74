//! berth-api: the Docker Engine API over berth-engine. Every route answers
//! with and without a `/v1.xx` prefix; errors are `{"message": …}` with
//! Docker's statuses.

/// Bridges between async bodies and the engine's blocking I/O.
pub mod body;
/// API errors and the engine-kind → status mapping.
pub mod error;
/// The `filters` parameter.
pub mod filters;
/// Docker Engine API models.
pub mod models;
/// Query-string decoding.
pub mod query;
/// Route handlers, one module per resource.
pub mod routes;
/// API versions and the prefix/headers middleware.
pub mod version;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use berth_engine::Engine;
use berth_engine::system::HostInfo;

pub use error::ApiError;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Host facts read at start-up.
    pub host: Arc<HostInfo>,
    /// Whether the daemon logs at debug level (`/info`'s `Debug`).
    pub debug: bool,
}

/// The router, without the version-prefix middleware (see [`app`]).
pub fn router(state: AppState) -> Router {
    use routes::{images, system};
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping_head))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/create", post(images::create))
        .route("/images/prune", post(images::prune))
        .route("/images/search", get(images::search))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::delete),
        )
        .route("/build", post(system::build))
        .fallback(system::not_found)
        .with_state(state)
}

/// The whole service: the version middleware runs before routing, so that
/// `/v1.50/images/json` and `/images/json` reach the same handler.
pub fn app(
    state: AppState,
) -> impl tower::Service<
    Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    use tower::Layer;
    axum::middleware::from_fn(version::versioned).layer(router(state))
}
