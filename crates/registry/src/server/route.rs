//! Request paths to API routes.
//!
//! Repository names contain slashes, so routes are matched from the end of
//! the path: the last segment is a reference, digest or upload id, and the
//! one or two before it say which resource.

use crate::error::ApiError;
use crate::name::RepoName;

/// An API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/token`
    Token,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, String),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, String),
}

fn repo(name: &str) -> Result<RepoName, ApiError> {
    RepoName::new(name).map_err(|e| {
        ApiError::name_invalid(e.to_string()).with_detail(serde_json::json!({ "name": name }))
    })
}

fn decode(segment: &str) -> String {
    segment.replace("%3A", ":").replace("%3a", ":")
}

/// Matches a path (without the query).
pub fn parse(path: &str) -> Result<Route, ApiError> {
    if path == "/token" {
        return Ok(Route::Token);
    }
    let Some(rest) = path
        .strip_prefix("/v2/")
        .or(if path == "/v2" { Some("") } else { None })
    else {
        return Err(ApiError::not_found(path));
    };
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(repo(name)?));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::Uploads(repo(name)?));
    }
    let Some((prefix, last)) = rest.rsplit_once('/') else {
        return Err(ApiError::not_found(path));
    };
    let last = decode(last);
    if let Some(name) = prefix.strip_suffix("/blobs/uploads") {
        return Ok(Route::Upload(repo(name)?, last));
    }
    if let Some(name) = prefix.strip_suffix("/manifests") {
        return Ok(Route::Manifest(repo(name)?, last));
    }
    if let Some(name) = prefix.strip_suffix("/blobs") {
        return Ok(Route::Blob(repo(name)?, last));
    }
    if let Some(name) = prefix.strip_suffix("/referrers") {
        return Ok(Route::Referrers(repo(name)?, last));
    }
    Err(ApiError::not_found(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: &str) -> RepoName {
        RepoName::new(n).unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(parse("/token").unwrap(), Route::Token);
        assert_eq!(parse("/v2/a/b/tags/list").unwrap(), Route::Tags(r("a/b")));
        assert_eq!(
            parse("/v2/a/manifests/b/manifests/latest").unwrap(),
            Route::Manifest(r("a/manifests/b"), "latest".into())
        );
        assert_eq!(
            parse("/v2/a/blobs/sha256%3Aab").unwrap(),
            Route::Blob(r("a"), "sha256:ab".into())
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/").unwrap(),
            Route::Uploads(r("a"))
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads").unwrap(),
            Route::Uploads(r("a"))
        );
        assert_eq!(
            parse("/v2/x/y/blobs/uploads/abc").unwrap(),
            Route::Upload(r("x/y"), "abc".into())
        );
        assert_eq!(
            parse("/v2/a/referrers/sha256:1").unwrap(),
            Route::Referrers(r("a"), "sha256:1".into())
        );
        assert_eq!(parse("/v2/A/tags/list").unwrap_err().status, 400);
        assert_eq!(parse("/v2/a/nothing/x").unwrap_err().status, 404);
        assert_eq!(parse("/other").unwrap_err().status, 404);
    }
}
