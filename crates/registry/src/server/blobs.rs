//! Blobs and blob uploads.

use std::io::Write;
use std::sync::Arc;

use berth_image::content::{Digest, Writer};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderValue, LOCATION, RANGE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use oci_spec::distribution::ErrorCode;

use super::api::{CONTENT_DIGEST, param, parse_digest, query, set_header};
use super::body::{Body, FileBody, empty_response, full};
use super::{Registry, blocking};
use crate::auth::Grant;
use crate::error::ApiError;
use crate::name::RepoName;
use crate::storage::StorageError;

/// A `Range: bytes=…` request against a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: send everything.
    Whole,
    /// Inclusive first and last byte.
    Part(u64, u64),
    /// Nothing of the blob matches.
    Unsatisfiable,
}

/// Parses a single-range `Range` header. Malformed or multi-range headers
/// are ignored, as RFC 9110 allows.
pub fn parse_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(first), Ok(last)) if first <= last => {
            if first >= size {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part(first, last.min(size - 1))
            }
        }
        (Ok(first), Err(_)) if b.is_empty() => {
            if first >= size {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part(first, size - 1)
            }
        }
        (Err(_), Ok(suffix)) if a.is_empty() => {
            if suffix == 0 || size == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part(size - suffix.min(size), size - 1)
            }
        }
        _ => ByteRange::Whole,
    }
}

pub(super) fn get_blob(
    reg: &Registry,
    req: &Request<Incoming>,
    name: &RepoName,
    d: &str,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let digest = parse_digest(d)?;
    let (file, size) = blocking(|| reg.storage.open_blob(name, &digest))?;
    let range = parse_range(req.headers().get(RANGE).and_then(|v| v.to_str().ok()), size);
    let (status, first, len) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, size),
        ByteRange::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        ByteRange::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUnknown,
                format!("range outside blob {digest} of {size} bytes"),
            )
            .with_header(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            ));
        }
    };
    let body = if head {
        full(Bytes::new())
    } else {
        FileBody::new(file, first, len).boxed()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    set_header(h, "content-length", &len.to_string());
    set_header(h, "content-type", "application/octet-stream");
    set_header(h, CONTENT_DIGEST, &digest.to_string());
    set_header(h, "accept-ranges", "bytes");
    set_header(h, "etag", &format!("\"{digest}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        set_header(
            h,
            CONTENT_RANGE.as_str(),
            &format!("bytes {first}-{}/{size}", first + len - 1),
        );
    }
    Ok(resp)
}

pub(super) fn delete_blob(
    reg: &Registry,
    name: &RepoName,
    d: &str,
) -> Result<Response<Body>, ApiError> {
    let digest = parse_digest(d)?;
    blocking(|| reg.storage.delete_blob(name, &digest))?;
    Ok(empty_response(StatusCode::ACCEPTED))
}

/// A slot for a request sending blob bytes: waits for one up to the
/// limit's wait, then 429 TOOMANYREQUESTS. The answer closes the connection
/// (the request body is left unread) and asks the client to come back.
struct UploadSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl<'a> UploadSlot<'a> {
    async fn take(reg: &'a Registry) -> Result<Self, ApiError> {
        let limit = &reg.uploads;
        let permit = match limit.slots.try_acquire() {
            Ok(p) => Some(p),
            Err(_) if limit.wait.is_zero() => None,
            Err(_) => tokio::time::timeout(limit.wait, limit.slots.acquire())
                .await
                .ok()
                .and_then(Result::ok),
        };
        match permit {
            Some(p) => Ok(UploadSlot { _permit: p }),
            None => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                format!("more than {} uploads at once", limit.max),
            )
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
            .with_header(http::header::CONNECTION, HeaderValue::from_static("close"))),
        }
    }
}

/// Why appending a request body stopped.
enum AppendError {
    /// The client's body failed (disconnect, bad chunking).
    Client(String),
    /// Writing to the ingest failed.
    Storage(std::io::Error),
}

/// Appends the request body to the upload's writer.
async fn append(body: Incoming, w: &mut Writer) -> Result<(), AppendError> {
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| AppendError::Client(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            tokio::task::block_in_place(|| w.write_all(&data)).map_err(AppendError::Storage)?;
        }
    }
    Ok(())
}

fn append_error(id: &str, e: AppendError) -> ApiError {
    match e {
        AppendError::Client(m) => {
            ApiError::upload_invalid(format!("upload {id}: request body: {m}"))
        }
        AppendError::Storage(e) => ApiError::internal(format!("upload {id}: write: {e}")),
    }
}

fn upload_location(name: &RepoName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn session_response(status: StatusCode, name: &RepoName, id: &str, offset: u64) -> Response<Body> {
    let mut resp = empty_response(status);
    let h = resp.headers_mut();
    set_header(h, LOCATION.as_str(), &upload_location(name, id));
    set_header(
        h,
        RANGE.as_str(),
        &format!("0-{}", offset.saturating_sub(1)),
    );
    set_header(h, "docker-upload-uuid", id);
    resp
}

fn created_blob(name: &RepoName, digest: &Digest) -> Response<Body> {
    let mut resp = empty_response(StatusCode::CREATED);
    let h = resp.headers_mut();
    set_header(h, LOCATION.as_str(), &format!("/v2/{name}/blobs/{digest}"));
    set_header(h, CONTENT_DIGEST, &digest.to_string());
    resp
}

pub(super) async fn post_upload(
    reg: &Arc<Registry>,
    req: Request<Incoming>,
    name: &RepoName,
    grant: &Grant,
) -> Result<Response<Body>, ApiError> {
    let q = query(&req);
    if let Some(mount) = param(&q, "mount") {
        let digest = parse_digest(mount)?;
        let from = param(&q, "from").and_then(|f| RepoName::new(f).ok());
        if let Some(from) = from
            && grant.allows(reg.auth.as_ref(), "repository", from.as_str(), "pull")
            && blocking(|| reg.storage.mount_blob(name, &from, &digest))?
        {
            return Ok(created_blob(name, &digest));
        }
        // Not mountable: fall back to a fresh upload session.
    }
    if let Some(d) = param(&q, "digest") {
        let digest = parse_digest(d)?;
        let _slot = UploadSlot::take(reg).await?;
        let id = blocking(|| reg.storage.start_upload(name))?;
        let mut w = blocking(|| reg.storage.upload_writer(name, &id))?;
        if let Err(e) = append(req.into_body(), &mut w).await {
            drop(w);
            let _ = blocking(|| reg.storage.cancel_upload(name, &id));
            return Err(append_error(&id, e));
        }
        blocking(|| reg.storage.finish_upload(name, &id, w, &digest))?;
        return Ok(created_blob(name, &digest));
    }
    let id = blocking(|| reg.storage.start_upload(name))?;
    Ok(session_response(StatusCode::ACCEPTED, name, &id, 0))
}

/// Parses `Content-Range: <start>-<end>` (an optional `bytes ` or `bytes=`
/// prefix tolerated).
fn content_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = req.headers().get(CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            "malformed Content-Range",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b) = (
        a.trim().parse::<u64>().map_err(|_| bad())?,
        b.trim().parse::<u64>().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// Takes the upload's writer and checks a chunk's `Content-Range` against it.
fn writer_for_chunk(
    reg: &Registry,
    req: &Request<Incoming>,
    name: &RepoName,
    id: &str,
) -> Result<Writer, ApiError> {
    let range = content_range(req)?;
    let w = blocking(|| reg.storage.upload_writer(name, id))?;
    if let Some((start, end)) = range {
        let offset = w.offset();
        let length = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let length_ok = length.is_none_or(|l| l == end - start + 1);
        if start != offset || !length_ok {
            reg.storage.park_writer(id, w);
            return Err(StorageError::RangeMismatch {
                upload: id.to_owned(),
                offset,
                start,
            }
            .into());
        }
    }
    Ok(w)
}

pub(super) async fn patch_upload(
    reg: &Arc<Registry>,
    req: Request<Incoming>,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let _slot = UploadSlot::take(reg).await?;
    let mut w = writer_for_chunk(reg, &req, name, id)?;
    let result = append(req.into_body(), &mut w).await;
    let offset = w.offset();
    // What arrived stays in the ingest, so the client can resume.
    reg.storage.park_writer(id, w);
    result.map_err(|e| append_error(id, e))?;
    Ok(session_response(StatusCode::ACCEPTED, name, id, offset))
}

pub(super) async fn put_upload(
    reg: &Arc<Registry>,
    req: Request<Incoming>,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let q = query(&req);
    let digest = parse_digest(param(&q, "digest").unwrap_or(""))?;
    let _slot = UploadSlot::take(reg).await?;
    let mut w = writer_for_chunk(reg, &req, name, id)?;
    if let Err(e) = append(req.into_body(), &mut w).await {
        reg.storage.park_writer(id, w);
        return Err(append_error(id, e));
    }
    blocking(|| reg.storage.finish_upload(name, id, w, &digest))?;
    Ok(created_blob(name, &digest))
}

pub(super) fn upload_status(
    reg: &Registry,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let status = blocking(|| reg.storage.upload_status(name, id))?;
    Ok(session_response(
        StatusCode::NO_CONTENT,
        name,
        id,
        status.offset,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Part(0, 3));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part(0, 9));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Part(8, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Whole);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Whole);
    }
}
