//! API versions: the `/v1.xx` prefix every route may carry, and the
//! headers every answer carries.

use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The newest API version served (docker CLI 28.5's default).
pub const MAX_API: ApiVersion = ApiVersion(1, 51);
/// The oldest API version served.
pub const MIN_API: ApiVersion = ApiVersion(1, 24);
/// The engine version berthd reports.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An API version `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl ApiVersion {
    fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

/// Splits `/v1.45/images/json` into (1.45, `/images/json`).
pub fn split_prefix(path: &str) -> Option<(ApiVersion, &str)> {
    let rest = path.strip_prefix("/v")?;
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((ApiVersion::parse(ver)?, tail))
}

/// Middleware that runs before routing: strips the version prefix (the
/// version goes into the request's extensions; above the maximum counts as
/// the maximum, below the minimum is refused as moby does) and adds
/// Docker's headers to every answer.
pub async fn versioned(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    tracing::debug!(method = %req.method(), uri = %req.uri(), "request");
    let drained = guard_body(&mut req);
    let resp = route(req, next, &path).await;
    // A refusal sent before the body was read must not reach a client that
    // is still sending: it would see a broken pipe instead of the message.
    if let Some(done) = drained
        && resp.status().as_u16() >= 400
    {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), done).await;
    }
    resp
}

/// The most of an unread request body drained before an error answer.
const DRAIN_LIMIT: usize = 64 << 20;

/// Feeds the request body to the handler through a task that, once the
/// handler drops it, reads the rest (up to [`DRAIN_LIMIT`]) and then
/// reports. `None` for requests without a body.
fn guard_body(req: &mut Request) -> Option<tokio::sync::oneshot::Receiver<()>> {
    use futures_util::StreamExt;
    let h = req.headers();
    let has_body = h.contains_key(axum::http::header::TRANSFER_ENCODING)
        || h.get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "0");
    if !has_body || h.contains_key(axum::http::header::UPGRADE) {
        return None;
    }
    let body = std::mem::take(req.body_mut());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, axum::Error>>(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut s = body.into_data_stream();
        let mut forwarding = true;
        let mut drained = 0usize;
        while let Some(chunk) = s.next().await {
            if forwarding {
                if let Err(e) = tx.send(chunk).await {
                    forwarding = false;
                    if let Ok(b) = e.0 {
                        drained += b.len();
                    }
                }
            } else if let Ok(b) = chunk {
                drained += b.len();
            }
            if drained > DRAIN_LIMIT {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    *req.body_mut() = axum::body::Body::from_stream(stream);
    Some(done_rx)
}

async fn route(mut req: Request, next: Next, path: &str) -> Response {
    let mut version = MAX_API;
    if let Some((v, tail)) = split_prefix(path) {
        if v < MIN_API {
            let e = ApiError::bad_request(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API}, please upgrade your client to a newer version"
            ));
            return with_headers(e.into_response());
        }
        version = v.min(MAX_API);
        let pq = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        match pq.parse() {
            Ok(p) => parts.path_and_query = Some(p),
            Err(_) => return with_headers(ApiError::bad_request("invalid path").into_response()),
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req.extensions_mut().insert(version);
    with_headers(next.run(req).await)
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(max_api_str()));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    if let Ok(v) = HeaderValue::from_str(&format!("Docker/{ENGINE_VERSION} (linux)")) {
        h.insert("Server", v);
    }
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    resp
}

/// MAX_API as a static string (for headers).
pub fn max_api_str() -> &'static str {
    "1.51"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            split_prefix("/v1.45/images/json"),
            Some((ApiVersion(1, 45), "/images/json"))
        );
        assert_eq!(split_prefix("/v1.51"), Some((ApiVersion(1, 51), "/")));
        assert_eq!(split_prefix("/images/json"), None);
        assert_eq!(split_prefix("/version"), None);
        assert_eq!(max_api_str(), MAX_API.to_string());
    }
}
