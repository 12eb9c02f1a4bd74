//! Hijacked connections (attach, exec start): the 101 answer, then a pump
//! between the client and the shim stream.

use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use berth_engine::containers::shim::read_frame;
use berth_shim::proto::Frame;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::error::ApiError;
use crate::version::ApiVersion;

/// A client connection after the upgrade (or a pipe to a response body).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The hijacked client.
pub(crate) type Client = Box<dyn Io>;

/// Docker's 8-byte stream header.
pub(crate) fn frame_header(kind: u8, len: usize) -> [u8; 8] {
    berth_shim::proto::header(kind, len)
}

/// The content type of a stdio stream.
pub(crate) fn content_type(tty: bool, v: ApiVersion) -> &'static str {
    if tty || v < ApiVersion(1, 42) {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// `detachKeys` (`ctrl-p,ctrl-q` by default; `""` keeps the default).
pub(crate) fn detach_keys(spec: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let spec = match spec {
        None | Some("") => "ctrl-p,ctrl-q",
        Some(s) => s,
    };
    let mut out = Vec::new();
    for k in spec.split(',') {
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [x] if x.is_ascii_alphabetic() => x.to_ascii_lowercase() - b'a' + 1,
                b"@" => 0,
                b"[" => 27,
                b"\\" => 28,
                b"]" => 29,
                b"^" => 30,
                b"_" => 31,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid detach keys ({spec}) provided"
                    )));
                }
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(ApiError::bad_request(format!(
                "Invalid detach keys ({spec}) provided"
            )));
        }
    }
    Ok(out)
}

/// Answers 101 and runs `f` on the upgraded connection. A client that did
/// not ask for an upgrade gets the output as a plain streamed body.
pub(crate) fn hijack<F, Fut>(
    mut req: Request,
    tty: bool,
    v: ApiVersion,
    f: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let ct = HeaderValue::from_static(content_type(tty, v));
    if wants_upgrade {
        let fd = req
            .extensions()
            .get::<axum::extract::ConnectInfo<ClientSocket>>()
            .map(|c| c.0.0);
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => {
                    // A client that reads the 101 answer through a buffered
                    // reader and then switches to the raw socket (docker-py
                    // does) would lose output that came in the same read.
                    if let Some(fd) = fd {
                        until_read(fd).await;
                    }
                    f(Box::new(hyper_util::rt::TokioIo::new(up))).await
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        h.insert(header::CONTENT_TYPE, ct);
        return Ok(r);
    }
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(f(Box::new(theirs)));
    let body = futures_util::stream::unfold(ours, |mut rd| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), rd))
            }
        }
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(header::CONTENT_TYPE, ct);
    Ok(r)
}

/// The socket of a client connection (berthd's UNIX-socket listeners), for
/// [`hijack`] to see when the client has read the 101 answer. Serve the app
/// with `into_make_service_with_connect_info::<ClientSocket>()`.
#[derive(Debug, Clone, Copy)]
pub struct ClientSocket(RawFd);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, UnixListener>>
    for ClientSocket
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, UnixListener>) -> Self {
        ClientSocket(stream.io().as_raw_fd())
    }
}

/// Waits until the client on `fd` has read everything sent to it, or 50 ms.
/// `fd` must be the open socket of the connection being served.
async fn until_read(fd: RawFd) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) on a socket writes one int, the bytes
        // its peer has not read yet. `fd` is the connection's socket, open
        // while the upgraded connection that owns it is alive (the caller
        // holds it).
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        if r != 0 || queued <= 0 || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Copies the shim's frames to the client (Docker frames, or raw with a
/// TTY) and the client's bytes to the shim, until the process's output
/// ends or the client detaches. `on_exit` gets the exit code when the
/// stream carries one.
pub(crate) async fn pump(
    client: Client,
    conn: UnixStream,
    tty: bool,
    stdin: bool,
    detach: Vec<u8>,
    on_exit: impl FnOnce(i32) + Send,
) {
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = conn.into_split();
    let out = async move {
        let mut code = None;
        loop {
            let (kind, bytes) = match read_frame(&mut sr).await {
                Ok(Some(Frame::Stdout(b))) => (1u8, b),
                Ok(Some(Frame::Stderr(b))) => (2u8, b),
                Ok(Some(Frame::Exit(s))) => {
                    code = Some(s.code);
                    break;
                }
                Ok(None) | Err(_) => break,
            };
            let res = if tty {
                cw.write_all(&bytes).await
            } else {
                let mut f = frame_header(kind, bytes.len()).to_vec();
                f.extend_from_slice(&bytes);
                cw.write_all(&f).await
            };
            if res.is_err() || cw.flush().await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
        code
    };
    let inp = async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut matched = 0usize;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    // The client's stdin ended: half-close towards the shim.
                    let _ = sw.shutdown().await;
                    // Keep waiting for the output to end.
                    std::future::pending::<()>().await;
                    return;
                }
                Ok(n) => n,
            };
            if !stdin {
                continue;
            }
            let chunk = &buf[..n];
            let mut forward = Vec::with_capacity(n);
            for &b in chunk {
                if !detach.is_empty() && b == detach[matched] {
                    matched += 1;
                    if matched == detach.len() {
                        let _ = sw.write_all(&forward).await;
                        return;
                    }
                    continue;
                }
                if matched > 0 {
                    forward.extend_from_slice(&detach[..matched]);
                    matched = 0;
                }
                forward.push(b);
            }
            if sw.write_all(&forward).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let out: Pin<Box<dyn Future<Output = Option<i32>> + Send>> = Box::pin(out);
    tokio::select! {
        code = out => {
            if let Some(c) = code {
                on_exit(c);
            }
        }
        () = inp => {}
    }
}
