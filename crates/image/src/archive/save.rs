//! `docker save`: images out as one tarball that Docker (20.10 and 25+),
//! podman and OCI tools all load.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use super::ArchiveError;
use crate::content::{Digest, Provider};
use crate::reference::Reference;
use crate::store::{ImageStore, Platform};

/// Writes the images `names` (resolved for `platform`) to `out` as an OCI
/// image layout plus `manifest.json` and `repositories`. An image given by
/// several names is written once, with all of them as tags.
pub fn save(
    store: &ImageStore,
    names: &[&str],
    platform: &Platform,
    out: impl Write,
) -> Result<(), ArchiveError> {
    // manifest digest → (resolved image, names)
    let mut images: BTreeMap<String, (crate::store::Resolved, Vec<String>)> = BTreeMap::new();
    let mut order = Vec::new();
    for name in names {
        let img = store.get(name)?;
        let r = store.resolve(&img.target, platform)?;
        let key = r.manifest_desc.digest.clone();
        if !images.contains_key(&key) {
            order.push(key.clone());
        }
        let entry = images.entry(key).or_insert_with(|| (r, Vec::new()));
        if !img.name.starts_with("sha256:") {
            entry.1.push(img.name.clone());
        }
    }

    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add_dir(&mut tar, "blobs/")?;
    add_dir(&mut tar, "blobs/sha256/")?;

    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut index = Vec::new();
    let mut manifest_json = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for key in &order {
        let Some((r, tags)) = images.get(key) else {
            continue;
        };
        let mdigest = r.manifest_desc.digest()?;
        for (d, _) in &r.layers {
            let d: Digest = d.digest().to_string().parse()?;
            add_blob(store, &mut tar, &d, &mut written)?;
        }
        add_blob(store, &mut tar, &r.config_digest, &mut written)?;
        add_blob(store, &mut tar, &mdigest, &mut written)?;

        let blob_path = |d: &Digest| format!("blobs/{}/{}", d.algorithm(), d.hex());
        let mut repo_tags = Vec::new();
        let mut descriptor = serde_json::json!({
            "mediaType": r.manifest_desc.media_type,
            "digest": r.manifest_desc.digest,
            "size": r.manifest_desc.size,
        });
        for name in tags {
            let Ok(parsed) = Reference::parse_normalized(name) else {
                continue;
            };
            let Some(tag) = parsed.tag() else { continue };
            repo_tags.push(parsed.familiar());
            repositories
                .entry(familiar_repo(&parsed))
                .or_default()
                .insert(tag.to_owned(), r.config_digest.hex().to_owned());
            let mut d = descriptor.clone();
            d["annotations"] = serde_json::json!({
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            });
            index.push(d);
        }
        if repo_tags.is_empty() {
            descriptor["annotations"] = serde_json::json!({});
            index.push(descriptor);
        }
        manifest_json.push(serde_json::json!({
            "Config": blob_path(&r.config_digest),
            "RepoTags": if repo_tags.is_empty() { serde_json::Value::Null } else { repo_tags.into() },
            "Layers": r.layers.iter().map(|(l, _)| {
                l.digest().to_string().parse::<Digest>().map(|d| blob_path(&d)).unwrap_or_default()
            }).collect::<Vec<_>>(),
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::media::OCI_INDEX,
        "manifests": index,
    });
    let enc = |v: &serde_json::Value| {
        serde_json::to_vec(v).map_err(|e| ArchiveError::Invalid(format!("encode json: {e}")))
    };
    add_bytes(&mut tar, "index.json", &enc(&index)?)?;
    add_bytes(&mut tar, "manifest.json", &enc(&manifest_json.into())?)?;
    add_bytes(
        &mut tar,
        "repositories",
        &enc(&serde_json::to_value(&repositories).unwrap_or_default())?,
    )?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Write)?;
    Ok(())
}

/// `docker.io/library/busybox` → `busybox`, as `repositories` has it.
fn familiar_repo(r: &Reference) -> String {
    let fam = r.familiar();
    match fam.rsplit_once(':') {
        Some((repo, tag)) if Some(tag) == r.tag() => repo.to_owned(),
        _ => fam,
    }
}

fn add_blob<W: Write>(
    store: &ImageStore,
    tar: &mut tar::Builder<W>,
    d: &Digest,
    written: &mut BTreeSet<Digest>,
) -> Result<(), ArchiveError> {
    if !written.insert(d.clone()) {
        return Ok(());
    }
    let file = store.content().open(d)?;
    let size = file.metadata().map_err(ArchiveError::Write)?.len();
    let mut h = header(tar::EntryType::Regular, size, 0o444);
    tar.append_data(&mut h, format!("blobs/{}/{}", d.algorithm(), d.hex()), file)
        .map_err(ArchiveError::Write)
}

fn add_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> Result<(), ArchiveError> {
    let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o444);
    tar.append_data(&mut h, path, io::Cursor::new(data))
        .map_err(ArchiveError::Write)
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<(), ArchiveError> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, path, io::empty())
        .map_err(ArchiveError::Write)
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}
