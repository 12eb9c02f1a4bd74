//! Response bodies: whole buffers, or a blob streamed from its file.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use rustix::buffer::spare_capacity;
use tokio::task::JoinHandle;

use crate::error::ApiError;

/// The body type of every response.
pub type Body = BoxBody<Bytes, io::Error>;

/// A body of these bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A response with no body and `Content-Length: 0`.
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let data = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(full(data));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The error's response: status, headers and the spec's JSON body.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = Response::new(full(e.body()));
    *r.status_mut() = e.status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &e.headers {
        h.insert(name.clone(), value.clone());
    }
    r
}

/// How much of a blob one read takes: large, so that a blob costs few
/// round trips to the blocking pool.
const CHUNK: usize = 512 * 1024;

/// Streams a range of a file, a chunk at a time. Each chunk is read on the
/// blocking pool straight into the buffer that goes out, and the next one is
/// read while hyper writes this one: at most two chunks per response are in
/// memory, and no thread waits on a slow client.
#[derive(Debug)]
pub struct FileBody {
    file: Arc<std::fs::File>,
    /// Where the next read starts.
    pos: u64,
    /// Bytes not yet read.
    unread: u64,
    /// Bytes not yet handed to hyper.
    remaining: u64,
    /// The read in flight.
    next: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    /// Streams `len` bytes of `file` from `offset`.
    pub fn new(file: std::fs::File, offset: u64, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            pos: offset,
            unread: len,
            remaining: len,
            next: None,
        }
    }

    /// Starts reading the next chunk on the blocking pool.
    fn read_next(&mut self) -> JoinHandle<io::Result<Bytes>> {
        let n = usize::try_from(self.unread)
            .unwrap_or(usize::MAX)
            .min(CHUNK);
        let (file, pos) = (self.file.clone(), self.pos);
        self.pos += n as u64;
        self.unread -= n as u64;
        let buf = Chunk::buffer(n);
        tokio::task::spawn_blocking(move || read_chunk(&file, pos, n, buf))
    }
}

/// Fills `buf` with `n` bytes from `pos`, or fails if the file ends first.
fn read_chunk(file: &std::fs::File, pos: u64, n: usize, mut buf: Vec<u8>) -> io::Result<Bytes> {
    while buf.len() < n {
        let at = pos + buf.len() as u64;
        let read = rustix::io::pread(file, spare_capacity(&mut buf), at)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than its size",
            ));
        }
    }
    buf.truncate(n);
    Ok(Bytes::from_owner(Chunk(buf)))
}

/// Whole-chunk buffers that went out and came back, kept for the next reads:
/// allocating a chunk per read would leave chunks behind in every malloc
/// arena of the threads that take turns as runtime workers.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// At most this many buffers wait in [`SPARE`].
const SPARE_MAX: usize = 8;

/// A chunk read from a blob; its buffer goes back to [`SPARE`] when hyper
/// is done with it.
struct Chunk(Vec<u8>);

impl Chunk {
    /// An empty buffer with room for `n` bytes, at most a chunk: a spare
    /// one for a whole chunk (pread fills all the room there is).
    fn buffer(n: usize) -> Vec<u8> {
        let spare = if n == CHUNK {
            SPARE.lock().ok().and_then(|mut s| s.pop())
        } else {
            None
        };
        spare.unwrap_or_else(|| Vec::with_capacity(n))
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() != CHUNK {
            return;
        }
        if let Ok(mut spare) = SPARE.lock()
            && spare.len() < SPARE_MAX
        {
            buf.clear();
            spare.push(buf);
        }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let mut next = match this.next.take() {
            Some(next) => next,
            None => this.read_next(),
        };
        let Poll::Ready(joined) = Pin::new(&mut next).poll(cx) else {
            this.next = Some(next);
            return Poll::Pending;
        };
        let chunk = joined.map_err(io::Error::other)??;
        this.remaining -= chunk.len() as u64;
        if this.unread > 0 {
            this.next = Some(this.read_next());
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
