//! Request dispatch, and the read-side routes: base, catalog, tags,
//! manifests, referrers, and the token endpoint.

use std::str::FromStr;
use std::sync::Arc;

use berth_image::content::Digest;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, LINK, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use oci_spec::image::{ImageIndexBuilder, MediaType};

use super::body::{Body, empty_response, error_response, full, json_response};
use super::route::{self, Route};
use super::{Registry, blobs, blocking};
use crate::auth::{Grant, Need};
use crate::error::ApiError;
use crate::name::{RepoName, check_tag};
use crate::storage::{ManifestRef, StorageError};

/// The `Docker-Distribution-API-Version` header.
pub const API_VERSION: &str = "docker-distribution-api-version";
/// The `Docker-Content-Digest` header.
pub const CONTENT_DIGEST: &str = "docker-content-digest";

/// The query string's pairs.
pub fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of a query parameter.
pub fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Sets a header from a string the registry made (always valid).
pub fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Answers one request.
pub async fn handle(
    reg: Arc<Registry>,
    req: Request<Incoming>,
    scheme: &'static str,
) -> Response<Body> {
    let mut resp = match dispatch(&reg, req, scheme).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    resp.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    resp
}

fn need_for(route: &Route, method: &Method) -> Need {
    let repo = |name: &RepoName, action: &'static str| Need::Action {
        kind: "repository",
        name: name.to_string(),
        action,
    };
    let write = if *method == Method::DELETE {
        "delete"
    } else {
        "push"
    };
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::Base | Route::Token => Need::SignedIn,
        Route::Catalog => Need::Action {
            kind: "registry",
            name: "catalog".to_owned(),
            action: "*",
        },
        Route::Tags(n) | Route::Referrers(n, _) => repo(n, "pull"),
        Route::Manifest(n, _) | Route::Blob(n, _) => repo(n, if read { "pull" } else { write }),
        Route::Uploads(n) | Route::Upload(n, _) => repo(n, "push"),
    }
}

async fn dispatch(
    reg: &Arc<Registry>,
    req: Request<Incoming>,
    scheme: &'static str,
) -> Result<Response<Body>, ApiError> {
    let route = route::parse(req.uri().path())?;
    let method = req.method().clone();
    if route == Route::Token {
        return token(reg, req).await;
    }
    let read = matches!(method, Method::GET | Method::HEAD);
    if reg.read_only && !read {
        return Err(ApiError::unsupported("the registry is read-only"));
    }
    let grant = match &reg.auth {
        None => Grant::Open,
        Some(auth) => auth.authenticate(req.headers(), &need_for(&route, &method), scheme)?,
    };
    let head = method == Method::HEAD;
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            let mut r = json_response(StatusCode::OK, &serde_json::json!({}));
            if head {
                *r.body_mut() = full(Bytes::new());
            }
            Ok(r)
        }
        (Route::Catalog, Method::GET) => catalog(reg, &req),
        (Route::Tags(name), Method::GET) => tags(reg, &req, &name),
        (Route::Manifest(name, r), Method::GET | Method::HEAD) => {
            get_manifest(reg, &name, &r, head)
        }
        (Route::Manifest(name, r), Method::PUT) => put_manifest(reg, req, &name, &r).await,
        (Route::Manifest(name, r), Method::DELETE) => {
            let reference = manifest_ref(&r)?;
            blocking(|| reg.storage.delete_manifest(&name, &reference))?;
            Ok(empty_response(StatusCode::ACCEPTED))
        }
        (Route::Referrers(name, d), Method::GET) => referrers(reg, &req, &name, &d),
        (Route::Blob(name, d), Method::GET | Method::HEAD) => {
            blobs::get_blob(reg, &req, &name, &d, head)
        }
        (Route::Blob(name, d), Method::DELETE) => blobs::delete_blob(reg, &name, &d),
        (Route::Uploads(name), Method::POST) => blobs::post_upload(reg, req, &name, &grant).await,
        (Route::Upload(name, id), Method::PATCH) => blobs::patch_upload(reg, req, &name, &id).await,
        (Route::Upload(name, id), Method::PUT) => blobs::put_upload(reg, req, &name, &id).await,
        (Route::Upload(name, id), Method::GET) => blobs::upload_status(reg, &name, &id),
        (Route::Upload(name, id), Method::DELETE) => {
            blocking(|| reg.storage.cancel_upload(&name, &id))?;
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        (route, method) => Err(ApiError::unsupported(format!(
            "{method} is not supported on {route:?}"
        ))),
    }
}

/// Parses a digest from a URL or query, as DIGEST_INVALID if malformed.
pub fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::from_str(s).map_err(|e| ApiError::digest_invalid(e.to_string()))
}

fn manifest_ref(r: &str) -> Result<ManifestRef, ApiError> {
    if r.contains(':') {
        return Ok(ManifestRef::Digest(parse_digest(r)?));
    }
    check_tag(r).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            oci_spec::distribution::ErrorCode::ManifestInvalid,
            e.to_string(),
        )
    })?;
    Ok(ManifestRef::Tag(r.to_owned()))
}

/// One page of a sorted list: the entries after `last`, at most `n`, and
/// whether more follow.
fn page(
    all: Vec<String>,
    q: &[(String, String)],
) -> Result<(Vec<String>, Option<usize>, bool), ApiError> {
    let n = match param(q, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                oci_spec::distribution::ErrorCode::Unsupported,
                format!("n={v:?} is not a number"),
            )
        })?),
        None => None,
    };
    let mut items: Vec<String> = match param(q, "last") {
        Some(last) => all.into_iter().filter(|t| t.as_str() > last).collect(),
        None => all,
    };
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    Ok((items, n, more && n != Some(0)))
}

fn link(path: &str, n: Option<usize>, last: Option<&String>) -> Option<String> {
    let last = last?;
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(n) = n {
        q.append_pair("n", &n.to_string());
    }
    q.append_pair("last", last);
    Some(format!("<{path}?{}>; rel=\"next\"", q.finish()))
}

fn catalog(reg: &Registry, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let q = query(req);
    let all = blocking(|| reg.storage.repositories())?;
    let (repos, n, more) = page(all, &q)?;
    let mut r = json_response(
        StatusCode::OK,
        &serde_json::json!({ "repositories": repos }),
    );
    if more && let Some(l) = link("/v2/_catalog", n, repos.last()) {
        set_header(r.headers_mut(), LINK.as_str(), &l);
    }
    Ok(r)
}

fn tags(
    reg: &Registry,
    req: &Request<Incoming>,
    name: &RepoName,
) -> Result<Response<Body>, ApiError> {
    let q = query(req);
    let all = blocking(|| reg.storage.tags(name))?;
    let (tags, n, more) = page(all, &q)?;
    let mut r = json_response(
        StatusCode::OK,
        &serde_json::json!({ "name": name.as_str(), "tags": tags }),
    );
    if more && let Some(l) = link(&format!("/v2/{name}/tags/list"), n, tags.last()) {
        set_header(r.headers_mut(), LINK.as_str(), &l);
    }
    Ok(r)
}

fn get_manifest(
    reg: &Registry,
    name: &RepoName,
    r: &str,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let reference = manifest_ref(r)?;
    let (digest, media_type, bytes) = blocking(|| reg.storage.get_manifest(name, &reference))?;
    let len = bytes.len();
    let mut resp = Response::new(if head {
        full(Bytes::new())
    } else {
        full(bytes)
    });
    let h = resp.headers_mut();
    set_header(h, "content-type", &media_type);
    set_header(h, "content-length", &len.to_string());
    set_header(h, CONTENT_DIGEST, &digest.to_string());
    set_header(h, "etag", &format!("\"{digest}\""));
    Ok(resp)
}

async fn put_manifest(
    reg: &Arc<Registry>,
    req: Request<Incoming>,
    name: &RepoName,
    r: &str,
) -> Result<Response<Body>, ApiError> {
    let reference = manifest_ref(r)?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = reg.max_manifest_bytes;
    let bytes = Limited::new(
        req.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .collect()
    .await
    .map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            ApiError::from(StorageError::TooLarge { limit })
        } else {
            ApiError::upload_invalid(format!("reading manifest body: {e}"))
        }
    })?
    .to_bytes();
    let put = blocking(|| {
        reg.storage
            .put_manifest(name, &reference, content_type.as_deref(), &bytes)
    })?;
    let mut resp = empty_response(StatusCode::CREATED);
    let h = resp.headers_mut();
    set_header(
        h,
        LOCATION.as_str(),
        &format!("/v2/{name}/manifests/{}", put.digest),
    );
    set_header(h, CONTENT_DIGEST, &put.digest.to_string());
    if let Some(subject) = &put.subject {
        set_header(h, "oci-subject", &subject.to_string());
    }
    Ok(resp)
}

fn referrers(
    reg: &Registry,
    req: &Request<Incoming>,
    name: &RepoName,
    d: &str,
) -> Result<Response<Body>, ApiError> {
    let subject = parse_digest(d)?;
    let q = query(req);
    let artifact_type = param(&q, "artifactType");
    let descs = blocking(|| reg.storage.referrers(name, &subject, artifact_type))?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descs)
        .build()
        .map_err(|e| ApiError::internal(format!("referrers index: {e}")))?;
    let mut r = json_response(StatusCode::OK, &index);
    set_header(
        r.headers_mut(),
        "content-type",
        berth_image::media::OCI_INDEX,
    );
    if artifact_type.is_some() {
        set_header(r.headers_mut(), "oci-filters-applied", "artifactType");
    }
    Ok(r)
}

async fn token(reg: &Arc<Registry>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Some(auth) = reg.auth.as_ref().filter(|a| a.uses_tokens()) else {
        return Err(ApiError::not_found("/token"));
    };
    let mut scopes: Vec<String> = query(&req)
        .into_iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v)
        .collect();
    let headers = req.headers().clone();
    let mut form_credentials = None;
    match *req.method() {
        Method::GET => {}
        Method::POST => {
            let body = Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|e| ApiError::upload_invalid(format!("reading token form: {e}")))?
                .to_bytes();
            let form: Vec<(String, String)> = form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if param(&form, "grant_type") != Some("password") {
                return Err(ApiError::unsupported(
                    "only the password grant is supported",
                ));
            }
            form_credentials = Some((
                param(&form, "username").unwrap_or("").to_owned(),
                param(&form, "password").unwrap_or("").to_owned(),
            ));
            scopes.extend(
                form.iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone()),
            );
        }
        _ => {
            return Err(ApiError::unsupported(
                "the token endpoint takes GET or POST",
            ));
        }
    }
    let t = tokio::task::block_in_place(|| auth.issue_token(&headers, form_credentials, &scopes))?;
    Ok(json_response(StatusCode::OK, &t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn pages() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            page(all.clone(), &q(&[])).unwrap(),
            (all.clone(), None, false)
        );
        let (items, n, more) = page(all.clone(), &q(&[("n", "2")])).unwrap();
        assert_eq!(
            (items, n, more),
            (vec!["a".into(), "b".into()], Some(2), true)
        );
        let (items, _, more) = page(all.clone(), &q(&[("n", "2"), ("last", "b")])).unwrap();
        assert_eq!((items, more), (vec!["c".into(), "d".into()], false));
        let (items, _, more) = page(all.clone(), &q(&[("n", "0")])).unwrap();
        assert!(items.is_empty() && !more);
        assert!(page(all, &q(&[("n", "x")])).is_err());
        assert_eq!(
            link("/v2/_catalog", Some(2), Some(&"b".to_string())).unwrap(),
            "</v2/_catalog?n=2&last=b>; rel=\"next\""
        );
    }
}
