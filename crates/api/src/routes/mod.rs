//! Handlers, one module per resource.

/// `/containers/…` and `/commit`.
pub mod containers;
/// `/events`.
pub mod events;
/// `/exec/…`.
pub mod exec;
/// `/images/…`.
pub mod images;
/// `/networks/…`.
pub mod networks;
/// Pull and push progress streams.
mod progress;
/// `/containers/{id}/stats`.
pub mod stats;
/// Hijacked stdio streams.
mod stream;
pub use stream::ClientSocket;
/// `/_ping`, `/version`, `/info`, and what is not there yet.
pub mod system;
/// `/volumes/…`.
pub mod volumes;

use crate::error::ApiError;

/// Runs blocking engine work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}
