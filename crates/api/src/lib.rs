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
pub use routes::ClientSocket;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Host facts read at start-up.
    pub host: Arc<HostInfo>,
    /// Whether the daemon logs at debug level (`/info`'s `Debug`).
    pub debug: bool,
    /// `/info`'s `RegistryConfig` (insecure registries, mirrors), set by
    /// the daemon and replaced when it reloads its configuration.
    pub registry: Arc<std::sync::RwLock<models::system::RegistryConfig>>,
}

/// The router, without the version-prefix middleware (see [`app`]).
pub fn router(state: AppState) -> Router {
    use axum::routing::delete;
    use routes::{containers as c, events, exec, images, networks as n, system};
    Router::new()
        .route("/containers/create", post(c::create))
        .route("/containers/json", get(c::list))
        .route("/containers/prune", post(c::prune))
        .route("/containers/{id}", delete(c::remove))
        .route("/containers/{id}/{alias}", delete(c::remove_link))
        .route("/containers/{id}/json", get(c::inspect))
        .route("/containers/{id}/start", post(c::start))
        .route("/containers/{id}/stop", post(c::stop))
        .route("/containers/{id}/restart", post(c::restart))
        .route("/containers/{id}/kill", post(c::kill))
        .route("/containers/{id}/pause", post(c::pause))
        .route("/containers/{id}/unpause", post(c::unpause))
        .route("/containers/{id}/rename", post(c::rename))
        .route("/containers/{id}/update", post(c::update))
        .route("/containers/{id}/wait", post(c::wait))
        .route("/containers/{id}/attach", post(c::attach))
        .route("/containers/{id}/attach/ws", get(c::attach_ws))
        .route("/containers/{id}/resize", post(c::resize))
        .route("/containers/{id}/logs", get(c::logs))
        .route("/containers/{id}/top", get(c::top))
        .route("/containers/{id}/stats", get(routes::stats::stats))
        .route("/containers/{id}/changes", get(c::changes))
        .route("/containers/{id}/export", get(c::export))
        .route(
            "/containers/{id}/archive",
            get(c::archive_get)
                .head(c::archive_head)
                .put(c::archive_put),
        )
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/events", get(events::events))
        .route("/commit", post(c::commit))
        .route("/_ping", get(system::ping).head(system::ping_head))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/system/df", get(system::df))
        .route("/auth", post(system::auth))
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
        .route("/networks", get(n::list))
        .route("/networks/create", post(n::create))
        .route("/networks/prune", post(n::prune))
        .route("/networks/{id}", get(n::inspect).delete(n::remove))
        .route("/networks/{id}/connect", post(n::connect))
        .route("/networks/{id}/disconnect", post(n::disconnect))
        .route("/volumes", get(routes::volumes::list))
        .route("/volumes/create", post(routes::volumes::create))
        .route("/volumes/prune", post(routes::volumes::prune))
        .route(
            "/volumes/{name}",
            get(routes::volumes::inspect).delete(routes::volumes::remove),
        )
        .route("/swarm/leave", post(system::swarm_leave))
        .route("/swarm", get(system::no_swarm))
        .route("/swarm/{op}", post(system::no_swarm))
        .route("/nodes", get(system::no_swarm))
        .route("/services", get(system::no_swarm))
        .route("/services/create", post(system::no_swarm))
        .route("/tasks", get(system::no_swarm))
        .route("/secrets", get(system::no_swarm))
        .route("/secrets/create", post(system::no_swarm))
        .route("/configs", get(system::no_swarm))
        .route("/configs/create", post(system::no_swarm))
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
