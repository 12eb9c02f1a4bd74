//! Manifests and indexes as the client reads them: only the fields it
//! needs, for OCI and Docker schema 2 alike, and the GET that fetches and
//! verifies one.

use berth_image::content::{Algorithm, Digest};
use berth_image::media::{self, Kind};
use berth_image::store::Platform;
use http::Method;
use serde::Deserialize;

use super::ClientError;
use super::session::{Req, Session, read_body};

/// The largest manifest or index accepted.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// What a manifest GET accepts. Schema 1 is listed so that such an image
/// is recognised and refused with a clear error rather than a 404.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, \
    application/vnd.docker.distribution.manifest.v1+json;q=0.1";

/// An index entry's platform.
#[derive(Debug, Clone, Deserialize)]
pub struct PlatformSpec {
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// `v7`.
    #[serde(default)]
    pub variant: Option<String>,
}

/// A descriptor.
#[derive(Debug, Clone, Deserialize)]
pub struct Desc {
    /// Its media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// In an index: the platform.
    #[serde(default)]
    pub platform: Option<PlatformSpec>,
    /// Foreign layers' URLs.
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

/// The parts of a manifest or an index the client uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Doc {
    /// 2 (1 is refused).
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    /// The media type the document names itself with.
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// An index's manifests.
    #[serde(default)]
    pub manifests: Vec<Desc>,
    /// A manifest's config.
    #[serde(default)]
    pub config: Option<Desc>,
    /// A manifest's layers.
    #[serde(default)]
    pub layers: Vec<Desc>,
}

/// A fetched and verified manifest or index.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes as served.
    pub bytes: Vec<u8>,
    /// Their digest.
    pub digest: Digest,
    /// The media type (header, else the document's own field).
    pub media_type: String,
    /// Parsed.
    pub doc: Doc,
}

/// GETs `reference` (a tag or digest) of `repo`, verifies it against the
/// digest asked for (or the `Docker-Content-Digest` the registry sent for
/// a tag), refuses schema 1 and anything that is no manifest or index.
pub fn fetch(
    session: &Session,
    repo: &str,
    reference: &str,
    display: &str,
    scope: &[String],
) -> Result<Fetched, ClientError> {
    let what = format!("GET manifest {repo}:{reference}");
    let req = Req::new(
        Method::GET,
        session.url(&format!("/v2/{repo}/manifests/{reference}")),
        what.clone(),
    )
    .header("Accept", ACCEPT);
    let mut resp = session.send(&req, scope, repo)?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Err(ClientError::ManifestUnknown {
            reference: display.to_owned(),
        });
    }
    let bytes = read_body(&mut resp, MAX_MANIFEST, &session.registry, &what)?;
    if status != 200 {
        return Err(ClientError::Status {
            registry: session.registry.clone(),
            what,
            status,
            message: super::error::error_message(&bytes),
        });
    }
    let header_digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|v| !v.is_empty() && v != "application/json" && v != "text/plain");
    let expected = match reference.parse::<Digest>() {
        Ok(d) => Some(d),
        Err(_) => header_digest.and_then(|h| h.parse::<Digest>().ok()),
    };
    let alg = expected
        .as_ref()
        .map_or(Algorithm::Sha256, Digest::algorithm);
    let actual = Digest::of(alg, &bytes);
    if let Some(exp) = &expected
        && *exp != actual
    {
        return Err(ClientError::DigestMismatch {
            registry: session.registry.clone(),
            repository: repo.to_owned(),
            what: "manifest",
            expected: exp.to_string(),
            actual: actual.to_string(),
        });
    }
    // Stored blobs are keyed by sha256.
    let digest = if alg == Algorithm::Sha256 {
        actual
    } else {
        Digest::of(Algorithm::Sha256, &bytes)
    };
    let invalid = |reason: String| ClientError::Invalid {
        reference: display.to_owned(),
        what: "manifest",
        digest: digest.to_string(),
        reason,
    };
    let doc: Doc = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let media_type = content_type
        .or_else(|| doc.media_type.clone())
        .unwrap_or_else(|| {
            // Neither header nor field: tell an index from a manifest by shape.
            if doc.config.is_some() {
                media::OCI_MANIFEST.to_owned()
            } else {
                media::OCI_INDEX.to_owned()
            }
        });
    if doc.schema_version == 1 || media::kind(&media_type) == Kind::Schema1 {
        return Err(ClientError::Schema1 {
            reference: display.to_owned(),
            media_type,
        });
    }
    match media::kind(&media_type) {
        Kind::Index | Kind::Manifest => {}
        _ => return Err(invalid(format!("unsupported media type {media_type:?}"))),
    }
    if doc.schema_version != 2 {
        return Err(invalid(format!(
            "schemaVersion {} is not 2",
            doc.schema_version
        )));
    }
    if media::kind(&media_type) == Kind::Manifest && doc.config.is_none() {
        return Err(invalid("a manifest without a config".into()));
    }
    for d in doc
        .manifests
        .iter()
        .chain(doc.config.iter())
        .chain(&doc.layers)
    {
        d.digest
            .parse::<Digest>()
            .map_err(|e| invalid(format!("descriptor {:?}: {e}", d.digest)))?;
    }
    Ok(Fetched {
        bytes,
        digest,
        media_type,
        doc,
    })
}

/// The index entry to pull for `platform`, as Docker picks it
/// ([`Platform::rank`]): the same os/architecture, the exact variant first,
/// then older compatible variants; the first of equals wins.
pub fn select<'a>(index: &'a Doc, platform: &Platform) -> Option<&'a Desc> {
    let mut best: Option<(u32, &Desc)> = None;
    for m in &index.manifests {
        if media::kind(&m.media_type) != Kind::Manifest {
            continue;
        }
        let Some(p) = &m.platform else { continue };
        let Some(rank) = platform.rank(&p.os, &p.architecture, p.variant.as_deref()) else {
            continue;
        };
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, m));
        }
    }
    best.map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_platform() {
        let doc: Doc = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": media::OCI_MANIFEST, "digest": "sha256:1", "size": 1,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
                {"mediaType": media::OCI_MANIFEST, "digest": "sha256:2", "size": 1,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": media::OCI_MANIFEST, "digest": "sha256:3", "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": media::OCI_MANIFEST, "digest": "sha256:4", "size": 1,
                 "platform": {"os": "unknown", "architecture": "unknown"}},
            ]
        }))
        .unwrap();
        let pick = |p: &str| select(&doc, &Platform::parse(p).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("sha256:2"));
        assert_eq!(pick("linux/arm/v6").as_deref(), Some("sha256:1"));
        // A v8 arm (32-bit) host runs v7 code: the nearest older variant.
        assert_eq!(pick("linux/arm/v8").as_deref(), Some("sha256:2"));
        assert_eq!(pick("linux/amd64").as_deref(), Some("sha256:3"));
        assert_eq!(pick("linux/arm64"), None);
    }
}
