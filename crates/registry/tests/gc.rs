#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `berth-registry gc`: removes what nothing reaches, never what a tag or a
//! referrer still reaches, and refuses to run beside a writable server.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn gc(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth-registry"))
        .args(["gc", "--root"])
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "gc failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Pushed {
    tagged: Vec<u8>,
    untagged: Vec<u8>,
    referrer: Vec<u8>,
    stray: String,
    untagged_layer: String,
}

/// Image `keep:v1` with a signature referrer, image `keep@<digest>` whose
/// tag was deleted, and a blob no manifest references.
fn push_fixture(s: &Server) -> Pushed {
    let a = agent();
    let tagged = image_manifest(&a, s, "keep", "tagged");
    assert_eq!(
        put_manifest(&a, s, "keep", "v1", OCI_MANIFEST, &tagged).status(),
        201
    );

    let untagged_layer = push_blob(&a, s, "keep", b"only the untagged image has this");
    let config = push_blob(&a, s, "keep", b"{\"untagged\":true}");
    let untagged = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 17},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": untagged_layer, "size": 32}],
    }))
    .unwrap();
    assert_eq!(
        put_manifest(&a, s, "keep", "old", OCI_MANIFEST, &untagged).status(),
        201
    );
    assert_eq!(
        a.delete(s.url("/v2/keep/manifests/old"))
            .call()
            .unwrap()
            .status(),
        202
    );

    let empty = push_blob(&a, s, "keep", b"{}");
    let sig = push_blob(&a, s, "keep", b"a signature blob");
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 16}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(&tagged), "size": tagged.len()},
    }))
    .unwrap();
    let rd = sha256(&referrer);
    assert_eq!(
        put_manifest(&a, s, "keep", &rd, OCI_MANIFEST, &referrer).status(),
        201
    );

    let stray = push_blob(&a, s, "keep", b"pushed but never referenced");
    Pushed {
        tagged,
        untagged,
        referrer,
        stray,
        untagged_layer,
    }
}

fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn gc_removes_unreferenced_blobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let p = {
        let s = Server::start(&root, &[]);
        push_fixture(&s)
    };
    let before = blob_count(&root);

    let out = stdout(&gc(&root, &["--dry-run"]));
    assert!(
        out.contains(&format!("would remove blob {}", p.stray)),
        "{out}"
    );
    assert!(
        out.contains("would remove 1 blobs, 27 bytes freed"),
        "{out}"
    );
    assert_eq!(blob_count(&root), before, "dry run removes nothing");

    let out = stdout(&gc(&root, &[]));
    assert!(
        out.contains(&format!("removed blob {} 27 bytes", p.stray)),
        "{out}"
    );
    assert_eq!(blob_count(&root), before - 1);
    let out = stdout(&gc(&root, &[]));
    assert!(out.contains("removed 0 blobs"), "{out}");
    assert!(out.trim_end().ends_with("; 0 missing"), "{out}");

    // A referenced blob lost from outside is reported, not hidden.
    let hex = p.untagged_layer.strip_prefix("sha256:").unwrap();
    let lost = root.join("blobs/sha256").join(hex);
    let saved = std::fs::read(&lost).unwrap();
    std::fs::remove_file(&lost).unwrap();
    let out = stdout(&gc(&root, &["--dry-run"]));
    assert!(
        out.contains(&format!(
            "missing blob {}: referenced, but not stored",
            p.untagged_layer
        )),
        "{out}"
    );
    assert!(out.trim_end().ends_with("; 1 missing"), "{out}");
    std::fs::write(&lost, saved).unwrap();

    let s = Server::start(&root, &["--read-only"]);
    let a = agent();
    assert_eq!(
        a.head(s.url(&format!("/v2/keep/blobs/{}", p.stray)))
            .call()
            .unwrap()
            .status(),
        404
    );
    for m in [&p.tagged, &p.untagged, &p.referrer] {
        let d = sha256(m);
        let mut r = a
            .get(s.url(&format!("/v2/keep/manifests/{d}")))
            .call()
            .unwrap();
        assert_eq!(body(&mut r), *m);
    }
    assert_eq!(
        a.head(s.url(&format!("/v2/keep/blobs/{}", p.untagged_layer)))
            .call()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn gc_delete_untagged_keeps_what_tags_and_referrers_reach() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let p = {
        let s = Server::start(&root, &[]);
        push_fixture(&s)
    };
    let out = stdout(&gc(&root, &["--delete-untagged"]));
    assert!(
        out.contains(&format!("removed manifest keep@{}", sha256(&p.untagged))),
        "{out}"
    );
    assert!(
        !out.contains(&sha256(&p.referrer)),
        "the referrer of a tagged image stays: {out}"
    );
    // Stray blob, the untagged manifest, its config and its layer.
    assert!(out.contains("removed 4 blobs"), "{out}");

    let s = Server::start(&root, &["--read-only"]);
    let a = agent();
    let td = sha256(&p.tagged);
    let mut r = a.get(s.url("/v2/keep/manifests/v1")).call().unwrap();
    assert_eq!(body(&mut r), p.tagged);
    let v: serde_json::Value = serde_json::from_slice(&p.tagged).unwrap();
    for d in [&v["config"]["digest"], &v["layers"][0]["digest"]] {
        let d = d.as_str().unwrap();
        assert_eq!(
            a.head(s.url(&format!("/v2/keep/blobs/{d}")))
                .call()
                .unwrap()
                .status(),
            200
        );
    }
    let mut r = a
        .get(s.url(&format!("/v2/keep/referrers/{td}")))
        .call()
        .unwrap();
    let list = json(&mut r);
    assert_eq!(list["manifests"][0]["digest"], sha256(&p.referrer));
    let rv: serde_json::Value = serde_json::from_slice(&p.referrer).unwrap();
    let sig = rv["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        a.head(s.url(&format!("/v2/keep/blobs/{sig}")))
            .call()
            .unwrap()
            .status(),
        200
    );
    let ud = sha256(&p.untagged);
    assert_eq!(
        a.head(s.url(&format!("/v2/keep/manifests/{ud}")))
            .call()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        a.head(s.url(&format!("/v2/keep/blobs/{}", p.untagged_layer)))
            .call()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn gc_refuses_to_run_beside_a_writable_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let s = Server::start(&root, &[]);
    let out = gc(&root, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locked by another process"), "{err}");
    // A dry run only reads, so it may.
    assert!(gc(&root, &["--dry-run"]).status.success());
    drop(s);
    assert!(gc(&root, &[]).status.success());
}
