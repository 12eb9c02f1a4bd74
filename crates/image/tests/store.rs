#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Image store rules: platform selection from indexes, media types refused
//! by name, completeness before a record is written.

use std::io::Write;

use berth_image::content::{Algorithm, Digest, Ingester};
use berth_image::media;
use berth_image::store::{ImageStore, Platform, Target};
use serde_json::json;

fn put(s: &ImageStore, bytes: &[u8]) -> Digest {
    let d = Digest::of(Algorithm::Sha256, bytes);
    let mut w = s
        .content()
        .writer(&format!("t-{d}"), Some((&d, bytes.len() as u64)))
        .unwrap();
    w.write_all(bytes).unwrap();
    w.commit(&d, bytes.len() as u64).unwrap();
    d
}

fn put_json(s: &ImageStore, v: &serde_json::Value) -> (Digest, u64) {
    let b = serde_json::to_vec(v).unwrap();
    (put(s, &b), b.len() as u64)
}

/// A manifest for `arch` with one (fake, uncompressed) layer of media type `layer_mt`.
fn manifest(s: &ImageStore, arch: &str, layer_mt: &str) -> Target {
    let layer = format!("layer for {arch}").into_bytes();
    let ld = put(s, &layer);
    let (cd, cs) = put_json(
        s,
        &json!({"architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [ld.to_string()]}}),
    );
    let (md, ms) = put_json(
        s,
        &json!({"schemaVersion": 2, "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": media::DOCKER_CONFIG, "digest": cd.to_string(), "size": cs},
            "layers": [{"mediaType": layer_mt, "digest": ld.to_string(), "size": layer.len()}]}),
    );
    Target {
        media_type: media::DOCKER_MANIFEST.into(),
        digest: md.to_string(),
        size: ms,
    }
}

#[test]
fn index_platform_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let s = ImageStore::open(tmp.path()).unwrap();
    let amd = manifest(&s, "amd64", media::DOCKER_LAYER);
    let arm = manifest(&s, "arm64", media::DOCKER_LAYER);
    let entry = |t: &Target, arch: &str, variant: Option<&str>| {
        let mut p = json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        json!({"mediaType": t.media_type, "digest": t.digest, "size": t.size, "platform": p})
    };
    let (id, isz) = put_json(
        &s,
        &json!({"schemaVersion": 2, "mediaType": media::DOCKER_MANIFEST_LIST,
            "manifests": [entry(&arm, "arm64", Some("v8")), entry(&amd, "amd64", None)]}),
    );
    let index = Target {
        media_type: media::DOCKER_MANIFEST_LIST.into(),
        digest: id.to_string(),
        size: isz,
    };
    let img = s.put("multi:1", index.clone()).unwrap();
    let pick = |p: &str| s.resolve(&img.target, &Platform::parse(p).unwrap());
    assert_eq!(pick("linux/amd64").unwrap().manifest_desc, amd);
    // arm64 without a variant is v8.
    assert_eq!(pick("linux/arm64").unwrap().manifest_desc, arm);
    assert_eq!(pick("linux/arm64/v8").unwrap().manifest_desc, arm);
    let e = pick("linux/s390x").unwrap_err().to_string();
    assert_eq!(
        e,
        "no matching manifest for linux/s390x in the manifest list entries"
    );
}

#[test]
fn foreign_layers_and_schema1_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let s = ImageStore::open(tmp.path()).unwrap();
    let t = manifest(
        &s,
        "amd64",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    );
    let e = s.resolve(&t, &Platform::host()).unwrap_err().to_string();
    assert!(
        e.contains("foreign (non-distributable) layers are not supported"),
        "{e}"
    );
    let t = Target {
        media_type: "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
        digest: t.digest,
        size: t.size,
    };
    let e = s.resolve(&t, &Platform::host()).unwrap_err().to_string();
    assert!(e.contains("schema 1"), "{e}");
    let t2 = Target {
        media_type: "application/x-unknown".into(),
        ..t
    };
    let e = s.put("unknown:1", t2).unwrap_err().to_string();
    assert!(e.contains("application/x-unknown"), "{e}");
}

#[test]
fn a_record_needs_every_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let s = ImageStore::open(tmp.path()).unwrap();
    let missing = format!("sha256:{}", "3".repeat(64));
    let (md, ms) = put_json(
        &s,
        &json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": missing, "size": 10},
            "layers": []}),
    );
    let e = s
        .put(
            "broken:1",
            Target {
                media_type: media::OCI_MANIFEST.into(),
                digest: md.to_string(),
                size: ms,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains(&missing) && e.contains("missing"), "{e}");
    assert!(s.list().unwrap().is_empty());
}
