//! `docker load`: docker-archive and OCI layout tarballs into the store.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Read};

use oci_spec::image::{ImageConfiguration, ImageIndex};
use serde::Deserialize;

use super::{ArchiveError, decompressed};
use crate::content::{ContentError, Digest, Ingester, Provider};
use crate::media;
use crate::store::{GcOptions, Image, ImageStore, LeaseGuard, Platform, Resource, Target};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The platform whose manifest names an untagged OCI image.
    pub platform: Platform,
    /// Refuse archives with more entries than this (tar bombs).
    pub max_entries: u64,
    /// Name for an OCI layout whose index names nothing (podman's
    /// `load <archive> <name>`).
    pub name: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            platform: Platform::host(),
            max_entries: 100_000,
            name: None,
        }
    }
}

/// What a load made visible.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Image records written (tags, and ids of untagged images).
    pub images: Vec<Image>,
}

/// Small files kept in memory rather than stored as blobs.
const META_FILES: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];
/// Largest metadata file accepted.
const MAX_META: u64 = 16 << 20;

/// Loads a `docker save` (docker-archive) or OCI layout tarball, plain or
/// compressed, into `store`. Nothing is visible unless the whole archive
/// loads; a failed load leaves the store as it was.
pub fn load(
    store: &ImageStore,
    reader: impl Read,
    opts: &LoadOptions,
) -> Result<LoadReport, ArchiveError> {
    let lease = store.lease(None)?;
    match load_leased(store, &lease, reader, opts) {
        Ok(r) => {
            lease.release()?;
            Ok(r)
        }
        Err(e) => {
            drop(lease);
            // Take back the space the blobs of the failed load used.
            let _ = store.gc(&GcOptions::default());
            Err(e)
        }
    }
}

#[derive(Default)]
struct Seen {
    /// Small metadata files by path.
    meta: HashMap<String, Vec<u8>>,
    /// Stored blobs by path.
    blobs: HashMap<String, (Digest, u64)>,
    /// Links (symlinks and hardlinks) by path, to the path they name.
    links: HashMap<String, String>,
}

impl Seen {
    fn blob(&self, path: &str) -> Option<(Digest, u64)> {
        let mut p = clean(path)?;
        for _ in 0..16 {
            if let Some(b) = self.blobs.get(&p) {
                return Some(b.clone());
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

fn load_leased(
    store: &ImageStore,
    lease: &LeaseGuard,
    reader: impl Read,
    opts: &LoadOptions,
) -> Result<LoadReport, ArchiveError> {
    let plain =
        decompressed(BufReader::with_capacity(1 << 20, reader)).map_err(ArchiveError::Read)?;
    let mut ar = tar::Archive::new(plain);
    let free = free_bytes(store.content().root());
    let mut seen = Seen::default();
    let mut count = 0u64;
    let bad_tar = |e: io::Error| match e.kind() {
        // The decompressor's own errors (truncated or corrupt gzip/zstd).
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput => ArchiveError::Read(e),
        _ => ArchiveError::Invalid(format!("not a valid tar stream: {e}")),
    };
    for entry in ar.entries().map_err(bad_tar)? {
        let mut e = entry.map_err(bad_tar)?;
        count += 1;
        if count > opts.max_entries {
            return Err(ArchiveError::Invalid(format!(
                "more than {} entries: refusing a possible tar bomb",
                opts.max_entries
            )));
        }
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let Some(path) = clean(&raw) else {
            return Err(ArchiveError::Invalid(format!(
                "entry {raw:?} has a path outside the archive"
            )));
        };
        if path.is_empty() {
            // `./` itself (archives made with `tar -C dir -cf x .`).
            continue;
        }
        let kind = e.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = e
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let joined = if kind.is_symlink() && !target.starts_with('/') {
                match path.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target}"),
                    None => target,
                }
            } else {
                target
            };
            if let Some(t) = clean(&joined) {
                seen.links.insert(path, t);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = e.size();
        if let Some(free) = free.filter(|f| size > *f) {
            return Err(ArchiveError::Invalid(format!(
                "entry {path:?} declares {size} bytes, more than the {free} bytes free in {}",
                store.content().root().display()
            )));
        }
        let legacy = path.ends_with("/json") || path.ends_with("/VERSION");
        if META_FILES.contains(&path.as_str()) || legacy {
            if size > MAX_META {
                return Err(ArchiveError::Invalid(format!(
                    "{path} is {size} bytes, more than the {MAX_META} allowed"
                )));
            }
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            e.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
            if !legacy {
                seen.meta.insert(path, buf);
            }
            continue;
        }
        let digest = store_blob(store, lease, &path, &mut e, size)?;
        seen.blobs.insert(path, (digest, size));
    }
    // Whatever follows the tar's end-of-archive blocks is ignored, as tar does.

    let named = if let Some(mj) = seen.meta.get("manifest.json") {
        docker_archive(store, lease, &seen, mj)?
    } else if let Some(ij) = seen.meta.get("index.json") {
        oci_layout(store, &seen, ij, opts)?
    } else {
        return Err(ArchiveError::Invalid(
            "neither manifest.json nor index.json found: not a `docker save` or OCI image archive"
                .into(),
        ));
    };
    if named.is_empty() {
        return Err(ArchiveError::Invalid("the archive holds no image".into()));
    }
    let images = store.put_many(&named, &BTreeMap::new())?;
    Ok(LoadReport { images })
}

/// Streams one entry into the content store; `blobs/<alg>/<hex>` entries are
/// checked against their name.
fn store_blob(
    store: &ImageStore,
    lease: &LeaseGuard,
    path: &str,
    src: &mut impl Read,
    size: u64,
) -> Result<Digest, ArchiveError> {
    let blob_err = |source| ArchiveError::Blob {
        path: path.to_owned(),
        source,
    };
    let named: Option<Digest> = path
        .strip_prefix("blobs/")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(alg, hex)| format!("{alg}:{hex}").parse().ok());
    let wref = format!("load-{}-{}", lease.id(), path);
    let content = store.content();
    content.abort(&wref).map_err(blob_err)?;
    let mut w = content
        .writer(&wref, named.as_ref().map(|d| (d, size)))
        .map_err(blob_err)?;
    let copied = io::copy(src, &mut w).map_err(ArchiveError::Read)?;
    if copied != size {
        return Err(ArchiveError::Invalid(format!(
            "entry {path:?}: {copied} bytes instead of {size}"
        )));
    }
    let actual = w.digest();
    let digest = named.unwrap_or_else(|| actual.clone());
    if digest != actual {
        let _ = content.abort(&wref);
        return Err(blob_err(ContentError::DigestMismatch {
            expected: digest,
            actual,
        }));
    }
    lease.add(&Resource::Content(digest.clone()))?;
    w.commit(&digest, size).map_err(blob_err)?;
    Ok(digest)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn docker_archive(
    store: &ImageStore,
    lease: &LeaseGuard,
    seen: &Seen,
    mj: &[u8],
) -> Result<Vec<(String, Target)>, ArchiveError> {
    let entries: Vec<ManifestEntry> = serde_json::from_slice(mj)
        .map_err(|e| ArchiveError::Invalid(format!("manifest.json: {e}")))?;
    // Original manifests the archive carries (Docker 25+ writes both), by
    // their config digest, so that a round trip keeps manifest digests.
    let mut originals: HashMap<String, Target> = HashMap::new();
    let index = seen
        .meta
        .get("index.json")
        .and_then(|ij| serde_json::from_slice::<ImageIndex>(ij).ok());
    for m in index.iter().flat_map(|i| i.manifests()) {
        let t = Target {
            media_type: m.media_type().to_string(),
            digest: m.digest().to_string(),
            size: m.size(),
        };
        if media::kind(&t.media_type) != media::Kind::Manifest {
            continue;
        }
        let config = t
            .digest()
            .and_then(|d| store.read_blob(&d))
            .ok()
            .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .and_then(|v| v.pointer("/config/digest")?.as_str().map(str::to_owned));
        if let Some(c) = config {
            originals.insert(c, t);
        }
    }
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let (config_digest, config_size) = seen.blob(&entry.config).ok_or_else(|| {
            ArchiveError::Invalid(format!(
                "manifest.json[{i}] names config {:?}, which is not in the archive",
                entry.config
            ))
        })?;
        let raw = store.read_blob(&config_digest)?;
        let config: ImageConfiguration = serde_json::from_slice(&raw)
            .map_err(|e| ArchiveError::Invalid(format!("image config {}: {e}", entry.config)))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::Invalid(format!(
                "manifest.json[{i}] lists {} layers but config {} has {} diff_ids",
                entry.layers.len(),
                entry.config,
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let (digest, size) = seen.blob(path).ok_or_else(|| {
                ArchiveError::Invalid(format!(
                    "manifest.json[{i}] names layer {path:?}, which is not in the archive"
                ))
            })?;
            let media_type = layer_media_type(store, &digest, path)?;
            if media_type == media::OCI_LAYER && digest.to_string() != *diff_id {
                return Err(ArchiveError::Invalid(format!(
                    "layer {path:?} is {digest}, but the config's diff_id says {diff_id}"
                )));
            }
            layers.push((digest, size, media_type));
        }
        let target = match originals.get(&config_digest.to_string()) {
            Some(t) if store.check_complete(t).is_ok() => t.clone(),
            _ => lease.write_manifest(&config_digest, config_size, &layers)?,
        };
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            out.push((config_digest.to_string(), target.clone()));
        }
        for tag in tags {
            out.push((tag, target.clone()));
        }
    }
    Ok(out)
}

fn oci_layout(
    store: &ImageStore,
    seen: &Seen,
    ij: &[u8],
    opts: &LoadOptions,
) -> Result<Vec<(String, Target)>, ArchiveError> {
    if !seen.meta.contains_key("oci-layout") {
        return Err(ArchiveError::Invalid(
            "index.json without oci-layout: not an OCI image layout".into(),
        ));
    }
    let index: ImageIndex = serde_json::from_slice(ij)
        .map_err(|e| ArchiveError::Invalid(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    let single = index.manifests().len() == 1;
    for (i, m) in index.manifests().iter().enumerate() {
        let target = Target {
            media_type: m.media_type().to_string(),
            digest: m.digest().to_string(),
            size: m.size(),
        };
        store.check_complete(&target).map_err(|e| {
            ArchiveError::Invalid(format!(
                "index.json manifests[{i}] ({}): {e}",
                target.digest
            ))
        })?;
        let ann = m.annotations().clone().unwrap_or_default();
        let full = ann.get("io.containerd.image.name").cloned();
        let refname = ann.get("org.opencontainers.image.ref.name").cloned();
        let name = match (full, refname, &opts.name) {
            (Some(n), _, _) => n,
            (None, _, Some(n)) if single => n.clone(),
            (None, Some(r), _) if r.contains('/') || r.contains('@') => r,
            _ => store
                .resolve(&target, &opts.platform)?
                .config_digest
                .to_string(),
        };
        out.push((name, target));
    }
    Ok(out)
}

/// The media type a layer blob gets, by its first bytes; refuses blobs that
/// are not (compressed) tar archives.
fn layer_media_type(
    store: &ImageStore,
    digest: &Digest,
    path: &str,
) -> Result<&'static str, ArchiveError> {
    let file = store.content().open(digest)?;
    let mut r = BufReader::new(file);
    let (mt, mut plain): (&'static str, Box<dyn Read>) = {
        let head = io::BufRead::fill_buf(&mut r).map_err(ArchiveError::Read)?;
        let mt = if head.starts_with(&[0x1f, 0x8b]) {
            media::OCI_LAYER_GZIP
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            media::OCI_LAYER_ZSTD
        } else {
            media::OCI_LAYER
        };
        (mt, decompressed(r).map_err(ArchiveError::Read)?)
    };
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < block.len() {
        match plain.read(&mut block[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => {
                return Err(ArchiveError::Invalid(format!(
                    "layer {path:?} does not decompress: {e}"
                )));
            }
        }
    }
    // An empty tar is all zero blocks; anything else needs the ustar magic
    // (or the old v7 format's checksum rules, which no image tool writes).
    let empty = got == 512 && block.iter().all(|b| *b == 0);
    if !(empty || (got == 512 && &block[257..262] == b"ustar")) {
        return Err(ArchiveError::Invalid(format!(
            "layer {path:?} is not a tar archive"
        )));
    }
    Ok(mt)
}

/// A tar path made relative and clean: `./a//b` → `a/b`, `./` → ``; None
/// if it leaves the archive (`..`).
fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// Bytes available to root under `dir`, if statvfs answers.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean("./a//b/").as_deref(), Some("a/b"));
        assert_eq!(clean("a/../b").as_deref(), Some("b"));
        assert_eq!(clean("../x"), None);
        assert_eq!(clean("./").as_deref(), Some(""));
    }
}
