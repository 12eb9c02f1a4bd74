//! HTTP/1.1 to a Docker Engine API daemon over a unix socket (or plain
//! TCP): version negotiation like the docker CLI, JSON calls, streaming
//! bodies both ways, and connection hijacking for attach and exec.

use std::pin::Pin;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// The newest API version this client speaks (docker CLI 28.5's).
pub const MAX_API_VERSION: &str = "1.51";
/// What a daemon that sends no `Api-Version` header speaks.
const FALLBACK_API_VERSION: &str = "1.24";
/// Where berthd listens by default.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// A request body: empty, bytes, or a stream.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// An error the daemon answered with (`{"message": …}`).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for ApiError {}

/// Where the daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(String),
    Tcp(String),
}

impl Host {
    /// `unix:///path`, `tcp://host:port`, or a bare socket path.
    pub fn parse(s: &str) -> Result<Host> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                anyhow::bail!("invalid host {s:?}: no socket path");
            }
            return Ok(Host::Unix(p.to_owned()));
        }
        if let Some(a) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
        {
            let a = a.trim_end_matches('/');
            let a = if a.contains(':') {
                a.to_owned()
            } else {
                format!("{a}:2375")
            };
            return Ok(Host::Tcp(a));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(s.to_owned()));
        }
        anyhow::bail!(
            "invalid host {s:?}: use unix:///path/to/socket or tcp://host:port (ssh:// and fd:// are not supported)"
        )
    }

    /// `-H`, else `BERTH_HOST`, else `DOCKER_HOST`, else the berthd socket.
    pub fn resolve(flag: Option<&str>) -> Result<Host> {
        let from_env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let s = flag
            .map(str::to_owned)
            .or_else(|| from_env("BERTH_HOST"))
            .or_else(|| from_env("DOCKER_HOST"))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        Host::parse(&s)
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{p}"),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A hijacked connection (attach, exec start): raw bytes both ways.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// A client bound to one daemon and one API version.
#[derive(Debug, Clone)]
pub struct Client {
    host: Host,
    version: String,
    debug: bool,
}

impl Client {
    /// Pings the daemon and settles the API version: `BERTH_API_VERSION`
    /// or `DOCKER_API_VERSION` if set, else min(ours, the daemon's).
    pub async fn connect(host: Host, debug: bool) -> Result<Client> {
        let mut c = Client {
            host,
            version: String::new(),
            debug,
        };
        let pinned = std::env::var("BERTH_API_VERSION")
            .or_else(|_| std::env::var("DOCKER_API_VERSION"))
            .ok()
            .filter(|v| !v.is_empty());
        if let Some(v) = pinned {
            c.version = v.trim_start_matches('v').to_owned();
            return Ok(c);
        }
        let mut resp = c.raw(Method::HEAD, "/_ping", empty(), &[]).await?;
        if !resp.status().is_success() && resp.status() != StatusCode::INTERNAL_SERVER_ERROR {
            resp = c.raw(Method::GET, "/_ping", empty(), &[]).await?;
        }
        let server = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(FALLBACK_API_VERSION)
            .to_owned();
        c.version = if version_lt(&server, MAX_API_VERSION) {
            server
        } else {
            MAX_API_VERSION.to_owned()
        };
        Ok(c)
    }

    /// The negotiated API version.
    pub fn version(&self) -> &str {
        &self.version
    }

    async fn dial(&self) -> Result<Box<dyn Io>> {
        let hint = || {
            format!(
                "Cannot connect to the berth daemon at {}. Is berthd running?",
                self.host
            )
        };
        Ok(match &self.host {
            Host::Unix(p) => Box::new(
                tokio::net::UnixStream::connect(p)
                    .await
                    .with_context(hint)?,
            ),
            Host::Tcp(a) => Box::new(tokio::net::TcpStream::connect(a).await.with_context(hint)?),
        })
    }

    /// One request on a fresh connection; `path` is unversioned.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        let io = self.dial().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .context("HTTP handshake with the daemon")?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, "docker")
            .header(
                header::USER_AGENT,
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body).context("building the request")?;
        if self.debug {
            eprintln!("DEBU[berth] {method} {path}");
        }
        sender
            .send_request(req)
            .await
            .with_context(|| format!("{method} {path}: the daemon closed the connection"))
    }

    fn versioned(&self, path: &str) -> String {
        format!("/v{}{}", self.version, path)
    }

    /// A request to `/v{version}{path}`; a 4xx/5xx becomes an [`ApiError`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        let resp = self
            .raw(method, &self.versioned(path), body, headers)
            .await?;
        check(resp).await
    }

    pub async fn get(&self, path: &str) -> Result<Response<Incoming>> {
        self.send(Method::GET, path, empty(), &[]).await
    }

    /// GET and parse the JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let resp = self.get(path).await?;
        read_json(resp).await
    }

    /// POST with an optional JSON body; returns the response.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Response<Incoming>> {
        match body {
            Some(v) => {
                self.send(
                    Method::POST,
                    path,
                    full(serde_json::to_vec(v)?),
                    &[("content-type", "application/json")],
                )
                .await
            }
            None => self.send(Method::POST, path, empty(), &[]).await,
        }
    }

    /// POST, JSON back (an empty body is `null`).
    pub async fn post_json(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let resp = self.post(path, body).await?;
        read_json(resp).await
    }

    pub async fn delete(&self, path: &str) -> Result<Response<Incoming>> {
        self.send(Method::DELETE, path, empty(), &[]).await
    }

    /// POST with `Connection: Upgrade, Upgrade: tcp`; the daemon must
    /// answer 101, then the connection is raw bytes both ways.
    pub async fn hijack(&self, path: &str, body: Option<&Value>) -> Result<Upgraded> {
        let (b, ct) = match body {
            Some(v) => (full(serde_json::to_vec(v)?), "application/json"),
            None => (empty(), "text/plain"),
        };
        let resp = self
            .raw(
                Method::POST,
                &self.versioned(path),
                b,
                &[
                    ("connection", "Upgrade"),
                    ("upgrade", "tcp"),
                    ("content-type", ct),
                ],
            )
            .await?;
        let resp = check(resp).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            anyhow::bail!(
                "the daemon answered {} to {path} instead of 101 Switching Protocols",
                resp.status()
            );
        }
        let up = hyper::upgrade::on(resp)
            .await
            .context("upgrading the connection")?;
        Ok(TokioIo::new(up))
    }
}

/// Turns a 4xx/5xx answer into an [`ApiError`].
pub async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(resp);
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            let t = String::from_utf8_lossy(&bytes).trim().to_owned();
            if t.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                t
            }
        });
    Err(ApiError { status, message }.into())
}

/// The whole body as bytes.
pub async fn read_bytes(resp: Response<Incoming>) -> Result<Bytes> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .context("reading the daemon's answer")?
        .to_bytes())
}

/// The whole body as JSON (`null` if empty).
pub async fn read_json(resp: Response<Incoming>) -> Result<Value> {
    let b = read_bytes(resp).await?;
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&b).context("the daemon's answer is not JSON")
}

/// Reads a streaming body chunk by chunk.
#[derive(Debug)]
pub struct BodyReader {
    body: Incoming,
}

impl BodyReader {
    pub fn new(resp: Response<Incoming>) -> Self {
        BodyReader {
            body: resp.into_body(),
        }
    }

    /// The next data chunk, or None at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("reading the stream")),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }
}

/// Splits a chunked stream into lines (JSON messages, events).
#[derive(Debug)]
pub struct LineReader {
    r: BodyReader,
    buf: Vec<u8>,
    done: bool,
}

impl LineReader {
    pub fn new(resp: Response<Incoming>) -> Self {
        LineReader {
            r: BodyReader::new(resp),
            buf: Vec::new(),
            done: false,
        }
    }

    pub async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let s = String::from_utf8_lossy(&line[..i]).trim().to_owned();
                if s.is_empty() {
                    continue;
                }
                return Ok(Some(s));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let s = String::from_utf8_lossy(&std::mem::take(&mut self.buf))
                    .trim()
                    .to_owned();
                return Ok((!s.is_empty()).then_some(s));
            }
            match self.r.chunk().await? {
                Some(c) => self.buf.extend_from_slice(&c),
                None => self.done = true,
            }
        }
    }
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body streamed from a reader (a file, stdin), sent chunked.
pub fn reader_body<R: AsyncRead + Send + 'static>(r: R) -> Body {
    let r: Pin<Box<R>> = Box::pin(r);
    let stream = futures_util::stream::unfold(Some(r), |state| async move {
        let mut r = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), Some(r)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream.boxed()))
}

/// a < b for dotted API versions ("1.9" < "1.41").
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

/// Whether an error is the daemon's 404.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == StatusCode::NOT_FOUND)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            Host::parse("unix:///run/berth/berth.sock").unwrap(),
            Host::Unix("/run/berth/berth.sock".into())
        );
        assert_eq!(
            Host::parse("tcp://127.0.0.1:2375").unwrap(),
            Host::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            Host::parse("tcp://localhost").unwrap(),
            Host::Tcp("localhost:2375".into())
        );
        assert_eq!(Host::parse("/tmp/s").unwrap(), Host::Unix("/tmp/s".into()));
        assert!(Host::parse("ssh://x").is_err());
        assert!(Host::parse("unix://").is_err());
        assert_eq!(Host::parse("unix:///a").unwrap().to_string(), "unix:///a");
        assert_eq!(
            Host::resolve(Some("unix:///flag")).unwrap(),
            Host::Unix("/flag".into())
        );
    }

    #[test]
    fn versions() {
        assert!(version_lt("1.41", "1.51"));
        assert!(version_lt("1.9", "1.41"));
        assert!(!version_lt("1.51", "1.51"));
        assert!(!version_lt("1.52", "1.51"));
    }
}
