//! The HTTP server: accept loop, TLS, request logging, graceful shutdown.
//!
//! Routing is by hand over hyper (see [`route`]): repository names hold
//! slashes, so a router framework would only hand over a wildcard anyway.
//! Storage calls block, and run in `block_in_place` on the multi-threaded
//! runtime the server requires.

mod api;
mod blobs;
mod body;
mod route;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use blobs::{ByteRange, parse_range};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::storage::{Storage, StorageError};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Registry {
    /// The storage.
    pub storage: Storage,
    /// Auth, if configured.
    pub auth: Option<Auth>,
    /// Refuse writes with 405 UNSUPPORTED.
    pub read_only: bool,
    /// Largest manifest accepted.
    pub max_manifest_bytes: u64,
    /// Requests sending blob bytes at once, and how long one more waits for
    /// a slot before it gets 429 TOOMANYREQUESTS.
    uploads: UploadLimit,
}

/// A semaphore over requests that send blob bytes.
#[derive(Debug)]
pub(crate) struct UploadLimit {
    pub(crate) slots: tokio::sync::Semaphore,
    pub(crate) max: usize,
    pub(crate) wait: Duration,
}

impl Registry {
    /// A registry over `storage`.
    pub fn new(storage: Storage, auth: Option<Auth>, read_only: bool) -> Self {
        Registry {
            storage,
            auth,
            read_only,
            max_manifest_bytes: 4 * 1024 * 1024,
            uploads: UploadLimit {
                slots: tokio::sync::Semaphore::new(64),
                max: 64,
                wait: Duration::from_secs(30),
            },
        }
    }

    /// At most `max` requests send blob bytes at once; one more waits up to
    /// `wait` for a slot, then gets 429 TOOMANYREQUESTS (with Retry-After).
    pub fn set_upload_limit(&mut self, max: usize, wait: Duration) {
        let max = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.uploads = UploadLimit {
            slots: tokio::sync::Semaphore::new(max),
            max,
            wait,
        };
    }
}

/// Runs a storage call off the async workers' backs.
pub(crate) fn blocking<T>(f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, ApiError> {
    tokio::task::block_in_place(f).map_err(ApiError::from)
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Accepting connections failed.
    #[error("accept on {addr}")]
    Accept {
        /// The listen address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Serves `registry` on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to `grace` for requests in flight.
pub async fn serve(
    registry: Arc<Registry>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let graceful = GracefulShutdown::new();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(source) => return Err(ServeError::Accept { addr, source }),
            },
            () = &mut shutdown => break,
        };
        let registry = registry.clone();
        let service = service_fn(move |req| {
            let registry = registry.clone();
            async move { Ok::<_, Infallible>(logged(registry, req, remote, scheme).await) }
        });
        match &tls {
            None => {
                let conn = http1_builder().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%remote, error = %e, "connection");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::info!(%remote, error = %e, "TLS handshake");
                            return;
                        }
                    };
                    let conn = http1_builder().serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%remote, error = %e, "connection");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {grace:?}; stopping anyway");
    }
    Ok(())
}

/// HTTP/1.1 with a bound on how long a client may take to send its headers.
fn http1_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    b
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        // Out of file descriptors: wait for some to close and retry.
        || e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error())
}

/// Answers a request and logs one line for it.
async fn logged(
    registry: Arc<Registry>,
    req: hyper::Request<hyper::body::Incoming>,
    remote: SocketAddr,
    scheme: &'static str,
) -> hyper::Response<body::Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut resp = api::handle(registry, req, scheme).await;
    // An error may leave the request body unread, and hyper then closes the
    // connection after the answer without saying so: a client would put it
    // back in its pool and lose its next request on it. Say so.
    if has_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    tracing::info!(
        target: "berth_registry::access",
        "{remote} \"{method} {uri}\" {} {:.1}ms",
        resp.status().as_u16(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    resp
}
