//! Response bodies: whole buffers, or a blob streamed from its file.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How much of a blob one read takes when it is read rather than mapped:
/// large, so that a blob costs few round trips to the blocking pool.
const CHUNK: usize = 512 * 1024;

/// How much of a blob one mapping covers: 4 MiB windows cost a little less
/// CPU than 2 MiB ones, but every window in flight counts in the RSS.
const WINDOW: usize = 2 * 1024 * 1024;

/// Whether a failed mapping was logged: once per process is enough.
static MAP_FAILED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Streams a range of a blob's file, a window at a time, the next window
/// prepared on the blocking pool while hyper writes this one: at most three
/// windows per response are held (the one hyper is finishing, the next, and
/// the one being prepared), and no async worker waits on the disk.
///
/// A window is a read-only mapping of the file, its pages populated on the
/// blocking pool (where a blob not in the page cache is read from disk), that
/// hyper writes to the socket straight from the page cache: no copy into a
/// buffer of ours. It is unmapped when hyper drops it (sent, or the client
/// gone); while mapped, its pages count in the server's RSS. Where mapping
/// fails (a filesystem without mmap, out of address space or map count, a
/// kernel before 5.14 without `MADV_POPULATE_READ`, a read error), the
/// response goes on with `pread` into pooled 512 KiB buffers.
///
/// Only for committed blobs: they are never truncated (see [`map_window`]).
#[derive(Debug)]
pub struct FileBody {
    file: Arc<std::fs::File>,
    /// Where the next window starts.
    pos: u64,
    /// Bytes not yet handed to hyper.
    remaining: u64,
    /// Whether windows are mapped (until a mapping fails) or read.
    map: bool,
    /// The window in flight.
    next: Option<JoinHandle<io::Result<Window>>>,
}

/// A window of the blob, and whether it was mapped.
#[derive(Debug)]
struct Window {
    data: Bytes,
    mapped: bool,
}

impl FileBody {
    /// Streams `len` bytes of the committed blob `file` from `offset`.
    pub fn new(file: std::fs::File, offset: u64, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            pos: offset,
            remaining: len,
            map: true,
            next: None,
        }
    }

    /// Streams with `pread` only, never mapping.
    #[cfg(test)]
    fn read_only(file: std::fs::File, offset: u64, len: u64) -> Self {
        FileBody {
            map: false,
            ..FileBody::new(file, offset, len)
        }
    }

    /// Starts preparing the next window on the blocking pool.
    fn start_next(&self) -> JoinHandle<io::Result<Window>> {
        let (file, pos, map) = (self.file.clone(), self.pos, self.map);
        let window = if map { WINDOW } else { CHUNK };
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(window);
        tokio::task::spawn_blocking(move || {
            if map {
                match map_window(&file, pos, n) {
                    Ok(data) => return Ok(Window { data, mapped: true }),
                    Err(e) => {
                        if !MAP_FAILED_LOGGED.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                error = %e,
                                "mapping a blob failed: serving it with read() instead \
                                 (logged once; other blobs still try mapping)"
                            );
                        }
                    }
                }
            }
            let n = n.min(CHUNK);
            let data = read_chunk(&file, pos, n, Chunk::buffer(n))?;
            Ok(Window {
                data,
                mapped: false,
            })
        })
    }
}

/// Maps `n` bytes (more than 0) of `file` from `pos`, read-only, its pages
/// populated: read from disk if they are not in the page cache, here on the
/// blocking pool, so that hyper's writes find them in place. A page that
/// cannot be read (EIO) fails the mapping, and the window is then read with
/// `pread`, which reports the error.
fn map_window(file: &std::fs::File, pos: u64, n: usize) -> io::Result<Bytes> {
    // SAFETY: mapping a file is unsound only if the file changes or shrinks
    // while mapped. `file` is a committed blob of the content store, and the
    // range lies within the size it had when opened. Committed blobs never
    // change or shrink: berth-image's `Writer::commit` fills and fsyncs the
    // ingest file, makes it read-only (0444) and only then renames it into
    // `blobs/`; `Provider::open` opens blobs read-only, and no code opens one
    // for writing or truncates it. Removal (gc, or a second commit of the same
    // digest renaming over it) only unlinks the name: the mapping keeps the
    // inode and its pages until it is dropped. So the mapped bytes stay as
    // they were and within the file: no access faults with SIGBUS. (The one
    // way left is a disk read error on a page reclaimed after the populate
    // below and read again; over plain HTTP only the kernel reads the
    // mapping, in writev, where that is EFAULT and not a signal; rustls
    // reads it in user space.) Someone outside berth truncating a file under
    // `blobs/` would break this, as it breaks content addressing anyway.
    let map = unsafe { memmap2::MmapOptions::new().offset(pos).len(n).map(file)? };
    map.advise(memmap2::Advice::PopulateRead)?;
    Ok(Bytes::from_owner(map))
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
            None => this.start_next(),
        };
        let Poll::Ready(joined) = Pin::new(&mut next).poll(cx) else {
            this.next = Some(next);
            return Poll::Pending;
        };
        let window = joined.map_err(io::Error::other)??;
        this.map &= window.mapped;
        let n = window.data.len() as u64;
        this.pos += n;
        this.remaining -= n;
        if this.remaining > 0 {
            this.next = Some(this.start_next());
        }
        Poll::Ready(Some(Ok(Frame::data(window.data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A file of `len` patterned bytes in `dir`.
    fn blob(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let path = dir.join("blob");
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
    }

    /// Streams the body to its end: the bytes, the frames, whether it
    /// stayed mapped.
    fn stream(rt: &tokio::runtime::Runtime, mut body: FileBody) -> (Vec<u8>, usize, bool) {
        rt.block_on(async {
            let (mut out, mut frames) = (Vec::new(), 0);
            while let Some(frame) = body.frame().await {
                out.extend_from_slice(&frame.unwrap().into_data().unwrap());
                frames += 1;
            }
            assert!(http_body::Body::is_end_stream(&body));
            (out, frames, body.map)
        })
    }

    /// Whole and partial ranges over window boundaries, at offsets that are
    /// not page-aligned, mapped and read.
    #[test]
    fn ranges_across_windows_mapped_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = blob(dir.path(), 2 * WINDOW + 12_345);
        let rt = runtime();
        let open = || std::fs::File::open(&path).unwrap();
        let cases = [
            (0, data.len()),
            (WINDOW - 1, WINDOW + 3),
            (4097, 3),
            (data.len() - 1, 1),
        ];
        for (first, len) in cases {
            let want = &data[first..first + len];
            let (got, frames, mapped) =
                stream(&rt, FileBody::new(open(), first as u64, len as u64));
            assert!(got == want, "mapped {first}+{len} differs");
            assert!(mapped, "mapped {first}+{len} fell back to read");
            assert_eq!(frames, len.div_ceil(WINDOW), "mapped {first}+{len}");
            let (got, frames, _) =
                stream(&rt, FileBody::read_only(open(), first as u64, len as u64));
            assert!(got == want, "read {first}+{len} differs");
            assert_eq!(frames, len.div_ceil(CHUNK), "read {first}+{len}");
        }
        // Nothing to send: no window is mapped (a mapping of 0 bytes fails).
        let (got, frames, _) = stream(&rt, FileBody::new(open(), 0, 0));
        assert_eq!((got.len(), frames), (0, 0));
    }

    /// A file that cannot be mapped (procfs has no mmap) is read instead,
    /// and the rest of the response too.
    #[test]
    fn unmappable_file_falls_back_to_read() {
        let want = std::fs::read("/proc/self/cmdline").unwrap();
        let file = std::fs::File::open("/proc/self/cmdline").unwrap();
        let (got, frames, mapped) = stream(&runtime(), FileBody::new(file, 0, want.len() as u64));
        assert_eq!(got, want);
        assert_eq!(frames, 1);
        assert!(!mapped, "procfs file was mapped");
    }

    /// The file's mappings in this process.
    fn mappings_of(path: &std::path::Path) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let path = path.to_str().unwrap();
        maps.lines().filter(|l| l.contains(path)).count()
    }

    /// A body dropped half-way (the client went away) unmaps its windows,
    /// the one in flight on the blocking pool included; the file may be
    /// unlinked meanwhile (gc) without harm.
    #[test]
    fn dropped_body_unmaps_its_windows() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = blob(dir.path(), 3 * WINDOW);
        let rt = runtime();
        let mut body = FileBody::new(std::fs::File::open(&path).unwrap(), 0, data.len() as u64);
        let first = rt
            .block_on(body.frame())
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(first == data[..WINDOW], "first window differs");
        assert!(mappings_of(&path) >= 1, "first window not mapped");
        drop(first);
        drop(body);
        // Dropping the runtime waits for the blocking pool's jobs.
        drop(rt);
        assert_eq!(mappings_of(&path), 0, "a window is still mapped");
    }
}
