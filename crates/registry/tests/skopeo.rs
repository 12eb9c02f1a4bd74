#![allow(clippy::unwrap_used, clippy::expect_used)]

//! skopeo, a real client, round-trips an image through berth-registry:
//! an OCI layout made here from a small tarball is pushed, copied back to a
//! second layout, and both hold the same manifest, config and layer digests.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::*;

fn skopeo_available() -> bool {
    let found = Command::new("skopeo").arg("--version").output().is_ok();
    if !found && std::env::var_os("BERTH_TEST_ROOT").is_some() {
        panic!("skopeo is not installed (scripts/install-deps.sh test installs it)");
    }
    if !found {
        eprintln!("skipping: skopeo is not installed");
    }
    found
}

fn put_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let d = sha256(data);
    let hex = d.strip_prefix("sha256:").unwrap();
    std::fs::write(layout.join("blobs/sha256").join(hex), data).unwrap();
    (d, data.len())
}

/// An OCI layout with one image, tagged `v1`, whose single layer is a
/// gzipped tarball of two files. Returns the manifest digest.
fn make_layout(layout: &Path) -> (String, String, String) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("etc/motd", "hello from berth\n"),
        ("bin/tool", "#!/bin/sh\necho hi\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let diff_id = sha256(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let (layer, layer_size) = put_blob(layout, &gz.finish().unwrap());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/tool"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let (cfg, cfg_size) = put_blob(layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
    }))
    .unwrap();
    let (md, msize) = put_blob(layout, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": msize,
                       "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    (md, cfg, layer)
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skopeo_push_and_pull_keep_digests() {
    if !skopeo_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("root"), &[]);
    let src = dir.path().join("src");
    let (md, cfg, layer) = make_layout(&src);

    let dest = format!("docker://{}/skopeo/app:v1", s.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &dest,
    ]);

    // The registry holds exactly what was pushed.
    let a = agent();
    let r = a.head(s.url("/v2/skopeo/app/manifests/v1")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), Some(md.clone()));
    for d in [&cfg, &layer] {
        assert_eq!(
            a.head(s.url(&format!("/v2/skopeo/app/blobs/{d}")))
                .call()
                .unwrap()
                .status(),
            200
        );
    }

    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:v1", back.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], md);
    for d in [&md, &cfg, &layer] {
        let hex = d.strip_prefix("sha256:").unwrap();
        let data = std::fs::read(back.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(&sha256(&data), d);
        let orig = std::fs::read(src.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(data, orig);
    }

    // A second push of the same image is all "already exists" and mounts.
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{}/skopeo/other:v1", s.host()),
    ]);
    assert_eq!(
        std::fs::read_dir(s.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        3
    );
}
