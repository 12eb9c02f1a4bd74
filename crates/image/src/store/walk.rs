//! From an image's target to its manifest, config and layers.

use std::fmt;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use super::{ImageStore, StoreError, Target};
use crate::content::{Algorithm, Digest, Digester, Provider};
use crate::media::{self, Kind};

/// An os/architecture/variant triple, as in an index's `platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, `arm`, `386`, …
    pub architecture: String,
    /// `v8`, `v7`, … when the architecture has variants.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next().filter(|p| !p.is_empty())?;
        let arch = it.next().filter(|p| !p.is_empty())?;
        let variant = it.next().map(str::to_owned);
        if it.next().is_some() {
            return None;
        }
        Some(Platform {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant,
        })
    }

    /// How well an index entry's platform fits this one, as Docker's
    /// platform matcher ranks it: `Some(0)` for the same os, architecture
    /// and variant; then older variants this one can run (`arm/v7` runs
    /// `v6` and `v5`, `amd64/v3` runs `v2`), nearest first; then an entry
    /// that has a variant where this one has none, or the reverse. `None`
    /// when the entry cannot run here. Lower is better.
    pub fn rank(&self, os: &str, arch: &str, variant: Option<&str>) -> Option<u32> {
        if os != self.os || arch != self.architecture {
            return None;
        }
        // arm64 without a variant is v8, as Docker's platform matcher has it.
        let norm = |v: Option<&str>| match (arch, v) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        let (want, have) = (norm(self.variant.as_deref()), norm(variant));
        let level = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
        match (&want, &have) {
            (Some(w), Some(h)) if w == h => Some(0),
            (None, None) => Some(0),
            (Some(w), Some(h)) if matches!(arch, "arm" | "amd64") => match (level(w), level(h)) {
                (Some(w), Some(h)) if h < w => Some(w - h),
                _ => None,
            },
            (None, Some(_)) | (Some(_), None) => Some(100),
            (Some(_), Some(_)) => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image resolved for one platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The platform manifest's descriptor.
    pub manifest_desc: Target,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config's digest: Docker's image id.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfiguration,
    /// The config blob as stored (what `docker inspect` derives from).
    pub config_raw: Vec<u8>,
    /// The layers, bottom first, with their diffIDs from the config.
    pub layers: Vec<(Descriptor, String)>,
}

impl Resolved {
    /// Chain ids of the layers, bottom first: the snapshot names.
    pub fn chain_ids(&self) -> Vec<String> {
        let diff_ids: Vec<String> = self.layers.iter().map(|(_, d)| d.clone()).collect();
        chain_ids(&diff_ids)
    }
}

/// The OCI chain ids of a stack of diffIDs: the first is its diffID, each
/// next one `sha256(previous + " " + diffID)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let mut h = Digester::new(Algorithm::Sha256);
                h.update(format!("{prev} {d}").as_bytes());
                h.finish().to_string()
            }
        };
        out.push(next);
    }
    out
}

impl ImageStore {
    /// Resolves `target` (a manifest, or an index to pick from) for
    /// `platform`, reading and checking the manifest and the config: the
    /// config must be an image config whose diffIDs match the layer count,
    /// and every layer must be of a kind berth can apply.
    pub fn resolve(&self, target: &Target, platform: &Platform) -> Result<Resolved, StoreError> {
        let desc = match media::kind(&target.media_type) {
            Kind::Manifest => target.clone(),
            Kind::Index => self.select(target, platform)?,
            k => return Err(unsupported("image target", target, k)),
        };
        let digest = desc.digest()?;
        let raw = self.read_blob(&digest)?;
        let manifest: ImageManifest = serde_json::from_slice(&raw)
            .map_err(|e| invalid("manifest", &digest, e.to_string()))?;
        if manifest.schema_version() != 2 {
            return Err(invalid(
                "manifest",
                &digest,
                format!("schemaVersion {} is not 2", manifest.schema_version()),
            ));
        }
        let cdesc = manifest.config();
        let cmt = cdesc.media_type().to_string();
        if media::kind(&cmt) != Kind::Config {
            return Err(StoreError::Unsupported {
                what: "config",
                digest: cdesc.digest().to_string(),
                media_type: cmt,
                hint: ": not a container image (an artifact?)",
            });
        }
        let config_digest: Digest = cdesc.digest().to_string().parse()?;
        let config_raw = self.read_blob(&config_digest).map_err(|e| match e {
            StoreError::Content(crate::content::ContentError::NotFound(_)) => {
                StoreError::MissingBlob {
                    what: "config",
                    digest: config_digest.to_string(),
                    parent: digest.to_string(),
                }
            }
            e => e,
        })?;
        let config: ImageConfiguration = serde_json::from_slice(&config_raw)
            .map_err(|e| invalid("image config", &config_digest, e.to_string()))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(invalid(
                "manifest",
                &digest,
                format!(
                    "{} layers but its config lists {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (l, d) in manifest.layers().iter().zip(diff_ids) {
            let mt = l.media_type().to_string();
            match media::kind(&mt) {
                Kind::Layer => {}
                Kind::ForeignLayer => {
                    return Err(StoreError::Unsupported {
                        what: "layer",
                        digest: l.digest().to_string(),
                        media_type: mt,
                        hint: ": foreign (non-distributable) layers are not supported",
                    });
                }
                _ => {
                    return Err(StoreError::Unsupported {
                        what: "layer",
                        digest: l.digest().to_string(),
                        media_type: mt,
                        hint: "",
                    });
                }
            }
            d.parse::<Digest>()
                .map_err(|e| invalid("image config", &config_digest, e.to_string()))?;
            layers.push((l.clone(), d.clone()));
        }
        Ok(Resolved {
            manifest_desc: desc,
            manifest,
            config_digest,
            config,
            config_raw,
            layers,
        })
    }

    /// Picks the manifest for `platform` from the index `target`.
    fn select(&self, target: &Target, platform: &Platform) -> Result<Target, StoreError> {
        let digest = target.digest()?;
        let raw = self.read_blob(&digest)?;
        let index: ImageIndex =
            serde_json::from_slice(&raw).map_err(|e| invalid("index", &digest, e.to_string()))?;
        let mut best: Option<(u32, Target)> = None;
        for m in index.manifests() {
            if media::kind(m.media_type().as_ref()) != Kind::Manifest {
                continue;
            }
            let Some(p) = m.platform() else { continue };
            let Some(rank) = platform.rank(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            ) else {
                continue;
            };
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                let t = Target {
                    media_type: m.media_type().to_string(),
                    digest: m.digest().to_string(),
                    size: m.size(),
                };
                best = Some((rank, t));
            }
        }
        best.map(|(_, t)| t).ok_or_else(|| StoreError::NoPlatform {
            platform: platform.to_string(),
        })
    }

    /// Checks that `target` is whole in the content store: a manifest with
    /// its config and every layer; an index with at least one of its
    /// manifests, each present manifest whole (a pull fetches one platform).
    pub fn check_complete(&self, target: &Target) -> Result<(), StoreError> {
        let digest = target.digest()?;
        let kind = media::kind(&target.media_type);
        if !matches!(kind, Kind::Index | Kind::Manifest) {
            return Err(unsupported("image target", target, kind));
        }
        if !self.content.exists(&digest)? {
            return Err(StoreError::MissingBlob {
                what: "image target",
                digest: digest.to_string(),
                parent: "the image record".into(),
            });
        }
        let children = self.children(&target.media_type, &digest)?;
        let mut present = 0usize;
        for (child, mt) in &children {
            let exists = self.content.exists(child)?;
            match (kind, media::kind(mt)) {
                (Kind::Index, Kind::Manifest | Kind::Index) if exists => {
                    present += 1;
                    self.check_complete(&Target {
                        media_type: mt.clone(),
                        digest: child.to_string(),
                        size: 0,
                    })?;
                }
                (Kind::Index, _) => {}
                (Kind::Manifest, ck) if !exists && matches!(ck, Kind::Config | Kind::Layer) => {
                    return Err(StoreError::MissingBlob {
                        what: if ck == Kind::Config {
                            "config"
                        } else {
                            "layer"
                        },
                        digest: child.to_string(),
                        parent: digest.to_string(),
                    });
                }
                _ => {}
            }
        }
        if kind == Kind::Index && present == 0 {
            return Err(StoreError::MissingBlob {
                what: "every manifest",
                digest: "of the index".into(),
                parent: digest.to_string(),
            });
        }
        Ok(())
    }

    /// The blobs an index or manifest refers to directly (manifests,
    /// config, layers, subject) with their media types, for gc's mark
    /// phase. Other blobs, and blobs not in the store, refer to nothing.
    pub(crate) fn children(
        &self,
        media_type: &str,
        digest: &Digest,
    ) -> Result<Vec<(Digest, String)>, StoreError> {
        if !matches!(media::kind(media_type), Kind::Index | Kind::Manifest) {
            return Ok(Vec::new());
        }
        if !self.content.exists(digest)? {
            return Ok(Vec::new());
        }
        let raw = self.read_blob(digest)?;
        let v: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| invalid("manifest", digest, e.to_string()))?;
        let mut found = Vec::new();
        let mut add = |d: &serde_json::Value| {
            let mt = d.get("mediaType").and_then(|s| s.as_str()).unwrap_or("");
            if let Some(Ok(dg)) = d
                .get("digest")
                .and_then(|s| s.as_str())
                .map(str::parse::<Digest>)
            {
                found.push((dg, mt.to_owned()));
            }
        };
        for key in ["manifests", "layers"] {
            if let Some(arr) = v.get(key).and_then(|a| a.as_array()) {
                arr.iter().for_each(&mut add);
            }
        }
        for key in ["config", "subject"] {
            if let Some(d) = v.get(key) {
                add(d);
            }
        }
        Ok(found)
    }
}

fn invalid(what: &'static str, digest: &Digest, reason: String) -> StoreError {
    StoreError::Invalid {
        what,
        digest: digest.clone(),
        reason,
    }
}

fn unsupported(what: &'static str, t: &Target, kind: Kind) -> StoreError {
    StoreError::Unsupported {
        what,
        digest: t.digest.clone(),
        media_type: t.media_type.clone(),
        hint: match kind {
            Kind::Schema1 => ": Docker schema 1 images are not supported",
            _ => ": expected a manifest or an index",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn rank_prefers_exact_then_older_variants() {
        let p = |s| Platform::parse(s).unwrap_or_else(|| panic!("{s}"));
        let v7 = p("linux/arm/v7");
        assert_eq!(v7.rank("linux", "arm", Some("v7")), Some(0));
        assert_eq!(v7.rank("linux", "arm", Some("v6")), Some(1));
        assert_eq!(v7.rank("linux", "arm", Some("v5")), Some(2));
        assert_eq!(v7.rank("linux", "arm", Some("v8")), None);
        assert_eq!(v7.rank("linux", "arm64", Some("v8")), None);
        let arm64 = p("linux/arm64");
        assert_eq!(arm64.rank("linux", "arm64", Some("v8")), Some(0));
        let amd64 = p("linux/amd64");
        assert_eq!(amd64.rank("linux", "amd64", None), Some(0));
        assert_eq!(amd64.rank("linux", "amd64", Some("v2")), Some(100));
        assert_eq!(amd64.rank("windows", "amd64", None), None);
    }
}
