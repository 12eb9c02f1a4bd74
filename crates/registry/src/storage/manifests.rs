//! Manifests: validation, put, get, delete, and the referrers index.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::str::FromStr;

use berth_image::content::{Algorithm, Digest, Ingester, Provider};
use berth_image::media::{self, Kind};
use oci_spec::image::{Descriptor, DescriptorBuilder, ImageIndex, ImageManifest, MediaType};

use super::{IoContext, Storage, StorageError, durable};
use crate::name::RepoName;

/// What the registry needs to know of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// [`Kind::Manifest`] or [`Kind::Index`].
    pub kind: Kind,
    /// Its media type.
    pub media_type: String,
    /// Blobs it needs (config and layers), with their declared sizes;
    /// foreign layers, which live elsewhere, are left out.
    pub blobs: Vec<(Digest, u64)>,
    /// Manifests it lists (an index).
    pub children: Vec<Digest>,
    /// The manifest it refers to, if any.
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest its config's media type.
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: Option<HashMap<String, String>>,
}

/// The outcome of a manifest put.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

fn digest_of(d: &oci_spec::image::Digest) -> Result<Digest, String> {
    Digest::from_str(d.as_ref()).map_err(|e| e.to_string())
}

/// Parses a manifest or index; `content_type` is the request's
/// `Content-Type`. The error says what is wrong.
pub fn parse_manifest(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let field = obj.get("mediaType").and_then(|v| v.as_str());
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| matches!(media::kind(c), Kind::Manifest | Kind::Index));
    let media_type = match (header, field) {
        (Some(h), Some(f)) if h != f => {
            return Err(format!(
                "Content-Type {h} does not match the mediaType field {f}"
            ));
        }
        (Some(h), _) => h.to_owned(),
        (None, Some(f)) => f.to_owned(),
        (None, None) if obj.contains_key("manifests") => media::OCI_INDEX.to_owned(),
        (None, None) if obj.contains_key("config") => media::OCI_MANIFEST.to_owned(),
        (None, None) => return Err("no media type".to_owned()),
    };
    match media::kind(&media_type) {
        Kind::Manifest => {
            let m: ImageManifest =
                serde_json::from_value(value).map_err(|e| format!("bad image manifest: {e}"))?;
            if m.schema_version() != 2 {
                return Err(format!("schemaVersion {} is not 2", m.schema_version()));
            }
            let mut blobs = vec![(digest_of(m.config().digest())?, m.config().size())];
            for layer in m.layers() {
                let foreign = media::kind(layer.media_type().as_ref()) == Kind::ForeignLayer;
                let digest = digest_of(layer.digest())?;
                if !foreign {
                    blobs.push((digest, layer.size()));
                }
            }
            let artifact_type = m
                .artifact_type()
                .as_ref()
                .map(|t| t.to_string())
                .or_else(|| Some(m.config().media_type().to_string()));
            Ok(Manifest {
                kind: Kind::Manifest,
                media_type,
                blobs,
                children: Vec::new(),
                subject: m
                    .subject()
                    .as_ref()
                    .map(|s| digest_of(s.digest()))
                    .transpose()?,
                artifact_type,
                annotations: m.annotations().clone(),
            })
        }
        Kind::Index => {
            let i: ImageIndex =
                serde_json::from_value(value).map_err(|e| format!("bad image index: {e}"))?;
            let children = i
                .manifests()
                .iter()
                .map(|d| digest_of(d.digest()))
                .collect::<Result<_, _>>()?;
            Ok(Manifest {
                kind: Kind::Index,
                media_type,
                blobs: Vec::new(),
                children,
                subject: i
                    .subject()
                    .as_ref()
                    .map(|s| digest_of(s.digest()))
                    .transpose()?,
                artifact_type: i.artifact_type().as_ref().map(|t| t.to_string()),
                annotations: i.annotations().clone(),
            })
        }
        _ => Err(format!(
            "media type {media_type} is not a manifest or index"
        )),
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Storage {
    /// Stores a manifest under `reference` after checking it parses and that
    /// the repository has everything it references.
    pub fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<PutManifest, StorageError> {
        let digest = match reference {
            ManifestRef::Digest(want) => {
                let got = Digest::of(want.algorithm(), bytes);
                if got != *want {
                    return Err(StorageError::DigestMismatch {
                        expected: want.clone(),
                        actual: got,
                    });
                }
                got
            }
            ManifestRef::Tag(_) => Digest::of(Algorithm::Sha256, bytes),
        };
        let invalid = |reason: String| StorageError::ManifestInvalid {
            repo: repo.to_string(),
            reason,
        };
        let manifest = parse_manifest(content_type, bytes).map_err(invalid)?;
        for (blob, size) in &manifest.blobs {
            if !self.has_blob(repo, blob)? {
                return Err(StorageError::ManifestBlobUnknown {
                    repo: repo.to_string(),
                    digest: blob.clone(),
                });
            }
            let actual = self.content.info(blob)?.size;
            if actual != *size {
                return Err(invalid(format!(
                    "blob {blob} is {actual} bytes, its descriptor says {size}"
                )));
            }
        }
        for child in &manifest.children {
            if !self.revision_link(repo, child).exists() || !self.content.exists(child)? {
                return Err(StorageError::ManifestBlobUnknown {
                    repo: repo.to_string(),
                    digest: child.clone(),
                });
            }
        }

        if !self.content.exists(&digest)? {
            let size = bytes.len() as u64;
            // A ref of its own per request: two clients pushing the same
            // manifest at once both succeed (the second commit finds the blob).
            let nonce = durable::random_hex(8).ctx("random ingest ref in", self.content.root())?;
            let mut w = self
                .content
                .writer(&format!("manifest-{digest}-{nonce}"), Some((&digest, size)))?;
            w.write_all(bytes)
                .ctx("write manifest", self.content.root())?;
            w.commit(&digest, size)?;
        }
        let rev = self.revision_link(repo, &digest);
        durable::write_file(&rev, manifest.media_type.as_bytes()).ctx("write", &rev)?;
        if let Some(subject) = &manifest.subject {
            let desc =
                referrer_descriptor(&manifest, &digest, bytes.len() as u64).map_err(invalid)?;
            let path = self.referrer_path(repo, subject, &digest);
            let json = serde_json::to_vec(&desc).map_err(|e| invalid(e.to_string()))?;
            durable::write_file(&path, &json).ctx("write", &path)?;
        }
        if let ManifestRef::Tag(tag) = reference {
            let path = self.tag_path(repo, tag);
            durable::write_file(&path, digest.to_string().as_bytes()).ctx("write", &path)?;
        }
        Ok(PutManifest {
            digest,
            subject: manifest.subject,
        })
    }

    /// Resolves a reference to the manifest's digest and media type.
    pub fn resolve_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
    ) -> Result<(Digest, String), StorageError> {
        let unknown = || StorageError::ManifestUnknown {
            repo: repo.to_string(),
            reference: match reference {
                ManifestRef::Tag(t) => t.clone(),
                ManifestRef::Digest(d) => d.to_string(),
            },
        };
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(tag) => {
                let path = self.tag_path(repo, tag);
                let data = durable::read_optional(&path)
                    .ctx("read", &path)?
                    .ok_or_else(unknown)?;
                Digest::from_str(String::from_utf8_lossy(&data).trim())?
            }
        };
        let rev = self.revision_link(repo, &digest);
        let media_type = durable::read_optional(&rev)
            .ctx("read", &rev)?
            .ok_or_else(unknown)?;
        Ok((digest, String::from_utf8_lossy(&media_type).into_owned()))
    }

    /// A manifest's digest, media type and bytes.
    pub fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
    ) -> Result<(Digest, String, Vec<u8>), StorageError> {
        let (digest, media_type) = self.resolve_manifest(repo, reference)?;
        let mut bytes = Vec::new();
        let path = self.content.blob_path(&digest);
        self.content
            .open(&digest)?
            .read_to_end(&mut bytes)
            .ctx("read", &path)?;
        Ok((digest, media_type, bytes))
    }

    /// Deletes a tag, or a manifest by digest with its tags and its entry in
    /// its subject's referrers.
    pub fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
    ) -> Result<(), StorageError> {
        let unknown = |r: String| StorageError::ManifestUnknown {
            repo: repo.to_string(),
            reference: r,
        };
        match reference {
            ManifestRef::Tag(tag) => {
                let path = self.tag_path(repo, tag);
                if !durable::remove_file(&path).ctx("remove", &path)? {
                    return Err(unknown(tag.clone()));
                }
            }
            ManifestRef::Digest(digest) => {
                let (_, media_type, bytes) = self.get_manifest(repo, reference)?;
                for tag in self.tags(repo)? {
                    let path = self.tag_path(repo, &tag);
                    let points_here = durable::read_optional(&path)
                        .ctx("read", &path)?
                        .is_some_and(|d| d == digest.to_string().as_bytes());
                    if points_here {
                        durable::remove_file(&path).ctx("remove", &path)?;
                    }
                }
                if let Ok(m) = parse_manifest(Some(&media_type), &bytes)
                    && let Some(subject) = m.subject
                {
                    let path = self.referrer_path(repo, &subject, digest);
                    durable::remove_file(&path).ctx("remove", &path)?;
                }
                let rev = self.revision_link(repo, digest);
                if !durable::remove_file(&rev).ctx("remove", &rev)? {
                    return Err(unknown(digest.to_string()));
                }
            }
        }
        Ok(())
    }

    fn referrer_path(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> std::path::PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
            .join(format!("{}-{}", referrer.algorithm(), referrer.hex()))
    }

    /// Descriptors of the manifests whose subject is `subject`, sorted by
    /// digest, keeping only those of `artifact_type` if given.
    pub fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, StorageError> {
        let dir = self
            .repo_dir(repo)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex());
        let mut out = Vec::new();
        for name in durable::list_names(&dir).ctx("read", &dir)? {
            let path = dir.join(&name);
            let Some(data) = durable::read_optional(&path).ctx("read", &path)? else {
                continue;
            };
            let Ok(desc) = serde_json::from_slice::<Descriptor>(&data) else {
                continue;
            };
            // A referrer deleted by digest drops its entry; check anyway.
            let Ok(d) = digest_of(desc.digest()) else {
                continue;
            };
            if !self.revision_link(repo, &d).exists() {
                continue;
            }
            let matches = artifact_type.is_none_or(|want| {
                desc.artifact_type()
                    .as_ref()
                    .is_some_and(|t| t.to_string() == want)
            });
            if matches {
                out.push(desc);
            }
        }
        Ok(out)
    }
}

fn referrer_descriptor(m: &Manifest, digest: &Digest, size: u64) -> Result<Descriptor, String> {
    let oci_digest =
        oci_spec::image::Digest::from_str(&digest.to_string()).map_err(|e| e.to_string())?;
    let mut b = DescriptorBuilder::default()
        .media_type(MediaType::from(m.media_type.as_str()))
        .digest(oci_digest)
        .size(size);
    if let Some(t) = &m.artifact_type {
        b = b.artifact_type(MediaType::from(t.as_str()));
    }
    if let Some(a) = &m.annotations {
        b = b.annotations(a.clone());
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_image_manifest_and_index() {
        let cfg = Digest::of(Algorithm::Sha256, b"{}");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/x.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{cfg}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{cfg}","size":2}}}}"#,
            media::OCI_MANIFEST,
            media::OCI_MANIFEST
        );
        let p = parse_manifest(Some(media::OCI_MANIFEST), m.as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Manifest);
        assert_eq!(p.blobs, [(cfg.clone(), 2)]);
        assert_eq!(p.subject, Some(cfg.clone()));
        assert_eq!(p.artifact_type.as_deref(), Some("application/x.sig"));

        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{cfg}","size":2}}]}}"#,
            media::OCI_MANIFEST
        );
        let p = parse_manifest(Some(media::OCI_INDEX), i.as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Index);
        assert_eq!(p.children, [cfg]);
    }

    #[test]
    fn refuses_bad_manifests() {
        assert!(parse_manifest(Some(media::OCI_MANIFEST), b"{not json").is_err());
        assert!(parse_manifest(Some(media::OCI_MANIFEST), b"[]").is_err());
        assert!(parse_manifest(Some(media::OCI_MANIFEST), b"{\"schemaVersion\":2}").is_err());
        let e = parse_manifest(
            Some(media::OCI_INDEX),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
                media::OCI_MANIFEST
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
    }
}
