#![allow(clippy::unwrap_used, clippy::expect_used)]

//! SIGKILL the server at arbitrary moments while clients push: after each
//! restart every tag resolves to a whole manifest whose blobs are all there,
//! and every blob on disk hashes to its name.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// Pushes images `crash/r<k>:t<n>` until told to stop or the server is gone.
fn pusher(s: &Server, k: usize, stop: &AtomicBool) {
    let a = agent();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let repo = format!("crash/r{k}");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let m = image_manifest(&a, s, &repo, &format!("{k}-{n}-{}", std::process::id()));
            put_manifest(&a, s, &repo, &format!("t{n}"), OCI_MANIFEST, &m);
        }));
        if result.is_err() {
            return; // the server died under us
        }
        n += 1;
    }
}

fn check_store(root: &Path) {
    for entry in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            sha256(&data),
            format!("sha256:{name}"),
            "blob on disk is whole"
        );
    }
}

fn check_tags(s: &Server) -> usize {
    let a = agent();
    let mut r = a.get(s.url("/v2/_catalog")).call().unwrap();
    let repos = json(&mut r)["repositories"].as_array().unwrap().clone();
    let mut tags_seen = 0;
    for repo in repos {
        let repo = repo.as_str().unwrap();
        let mut r = a
            .get(s.url(&format!("/v2/{repo}/tags/list")))
            .call()
            .unwrap();
        for tag in json(&mut r)["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let mut r = a
                .get(s.url(&format!("/v2/{repo}/manifests/{tag}")))
                .call()
                .unwrap();
            assert_eq!(r.status(), 200, "{repo}:{tag}");
            let digest = header(&r, "docker-content-digest").unwrap();
            let m = body(&mut r);
            assert_eq!(sha256(&m), digest);
            let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
            let mut blobs = vec![v["config"]["digest"].as_str().unwrap().to_owned()];
            for l in v["layers"].as_array().unwrap() {
                blobs.push(l["digest"].as_str().unwrap().to_owned());
            }
            for b in blobs {
                let r = a
                    .head(s.url(&format!("/v2/{repo}/blobs/{b}")))
                    .call()
                    .unwrap();
                assert_eq!(r.status(), 200, "{repo}:{tag} needs {b}");
            }
            tags_seen += 1;
        }
    }
    tags_seen
}

#[test]
fn sigkill_during_pushes_leaves_every_tag_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut total = 0;
    for round in 0..6u64 {
        let s = Server::start(&root, &[]);
        total = check_tags(&s).max(total);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for k in 0..3 {
                let (s, stop) = (&s, &stop);
                scope.spawn(move || pusher(s, k, stop));
            }
            std::thread::sleep(Duration::from_millis(150 + 97 * round));
            s.signal(rustix::process::Signal::KILL);
            stop.store(true, Ordering::SeqCst);
        });
        drop(s);
        check_store(&root);
    }
    let s = Server::start(&root, &[]);
    let tags = check_tags(&s);
    assert!(tags >= total && tags > 0, "pushes landed: {tags}");
}
