#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The distribution API against a real `berth-registry serve` on loopback.

mod common;

use common::*;

fn setup() -> (tempfile::TempDir, Server, ureq::Agent) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("root"), &[]);
    (dir, s, agent())
}

#[test]
fn base_answers_with_api_version() {
    let (_d, s, a) = setup();
    let r = a.get(s.url("/v2/")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    let mut r = a.get(s.url("/v2/Bad/tags/list")).call().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    assert_eq!(code(&mut r), "NAME_INVALID");
    let mut r = a.get(s.url("/v2/nothing/here/tags/list")).call().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&mut r), "NAME_UNKNOWN");
}

/// A blob of several 512 KiB chunks where the server reads it (one 2 MiB
/// window where it maps it, as here; body.rs tests both ways): the whole
/// blob, and a range that starts inside a chunk and ends two chunks later.
#[test]
fn blob_of_several_read_chunks_whole_and_range() {
    let (_d, s, a) = setup();
    let data: Vec<u8> = (0..1_300_000u32).map(|i| (i % 253) as u8).collect();
    let d = push_blob(&a, &s, "lib/big", &data);

    let mut r = a
        .get(s.url(&format!("/v2/lib/big/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").as_deref(), Some("1300000"));
    assert!(body(&mut r) == data, "whole blob differs");

    let mut r = a
        .get(s.url(&format!("/v2/lib/big/blobs/{d}")))
        .header("Range", "bytes=500000-1100000")
        .call()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range").as_deref(),
        Some("bytes 500000-1100000/1300000")
    );
    assert_eq!(header(&r, "content-length").as_deref(), Some("600001"));
    assert!(body(&mut r) == data[500_000..=1_100_000], "range differs");
}

/// A blob of no bytes: nothing to map, an empty 200, and every range
/// unsatisfiable.
#[test]
fn empty_blob_whole_head_and_range() {
    let (_d, s, a) = setup();
    let d = push_blob(&a, &s, "lib/empty", b"");
    let url = s.url(&format!("/v2/lib/empty/blobs/{d}"));
    let r = a.head(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
    let mut r = a.get(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
    assert!(body(&mut r).is_empty());
    let r = a.get(&url).header("Range", "bytes=0-").call().unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range").as_deref(), Some("bytes */0"));
}

#[test]
fn monolithic_blob_head_get_range_delete() {
    let (_d, s, a) = setup();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = push_blob(&a, &s, "lib/x", &data);

    let r = a
        .head(s.url(&format!("/v2/lib/x/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").as_deref(), Some("100000"));
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );

    let mut r = a
        .get(s.url(&format!("/v2/lib/x/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body(&mut r), data);

    let mut r = a
        .get(s.url(&format!("/v2/lib/x/blobs/{d}")))
        .header("Range", "bytes=10-19")
        .call()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range").as_deref(),
        Some("bytes 10-19/100000")
    );
    assert_eq!(header(&r, "content-length").as_deref(), Some("10"));
    assert_eq!(body(&mut r), &data[10..20]);

    let mut r = a
        .get(s.url(&format!("/v2/lib/x/blobs/{d}")))
        .header("Range", "bytes=-5")
        .call()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(body(&mut r), &data[99_995..]);

    let r = a
        .get(s.url(&format!("/v2/lib/x/blobs/{d}")))
        .header("Range", "bytes=100000-")
        .call()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        header(&r, "content-range").as_deref(),
        Some("bytes */100000")
    );

    // Another repository does not see it until it is pushed or mounted there.
    let mut r = a
        .get(s.url(&format!("/v2/lib/y/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&mut r), "BLOB_UNKNOWN");

    let mut r = a
        .get(s.url("/v2/lib/x/blobs/sha256:nothex"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "DIGEST_INVALID");

    let r = a
        .delete(s.url(&format!("/v2/lib/x/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = a
        .head(s.url(&format!("/v2/lib/x/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn monolithic_upload_with_wrong_digest_is_refused() {
    let (_d, s, a) = setup();
    let wrong = sha256(b"other");
    let mut r = a
        .post(s.url(&format!("/v2/r/blobs/uploads/?digest={wrong}")))
        .send(&b"data"[..])
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "DIGEST_INVALID");
    assert_eq!(
        a.head(s.url(&format!("/v2/r/blobs/{wrong}")))
            .call()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn chunked_upload_with_status_out_of_order_and_finish() {
    let (_d, s, a) = setup();
    let data = b"0123456789abcdefghij".to_vec();
    let d = sha256(&data);

    let r = a.post(s.url("/v2/c/blobs/uploads/")).send_empty().unwrap();
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location").unwrap();
    assert!(loc.starts_with("/v2/c/blobs/uploads/"), "{loc}");
    assert_eq!(header(&r, "range").as_deref(), Some("0-0"));
    assert!(header(&r, "docker-upload-uuid").is_some());

    let r = a
        .patch(s.url(&loc))
        .header("Content-Range", "0-9")
        .header("Content-Type", "application/octet-stream")
        .send(&data[..10])
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range").as_deref(), Some("0-9"));
    let loc = header(&r, "location").unwrap();

    let r = a.get(s.url(&loc)).call().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range").as_deref(), Some("0-9"));

    // A chunk that does not start at the end is refused with the current range.
    let mut r = a
        .patch(s.url(&loc))
        .header("Content-Range", "5-14")
        .send(&data[5..15])
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range").as_deref(), Some("0-9"));
    assert_eq!(code(&mut r), "BLOB_UPLOAD_INVALID");

    let r = a
        .patch(s.url(&loc))
        .header("Content-Range", "10-14")
        .send(&data[10..15])
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range").as_deref(), Some("0-14"));

    // Not visible before the final PUT.
    assert_eq!(
        a.head(s.url(&format!("/v2/c/blobs/{d}")))
            .call()
            .unwrap()
            .status(),
        404
    );

    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = a
        .put(s.url(&format!("{loc}{sep}digest={d}")))
        .send(&data[15..])
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "location").as_deref(),
        Some(format!("/v2/c/blobs/{d}").as_str())
    );
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    let mut r = a.get(s.url(&format!("/v2/c/blobs/{d}"))).call().unwrap();
    assert_eq!(body(&mut r), data);

    // The session is gone.
    let mut r = a.get(s.url(&loc)).call().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&mut r), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn post_then_put_and_wrong_digest_and_cancel() {
    let (_d, s, a) = setup();
    let r = a.post(s.url("/v2/p/blobs/uploads/")).send_empty().unwrap();
    let loc = header(&r, "location").unwrap();
    let d = sha256(b"whole");
    let r = a
        .put(s.url(&format!("{loc}?digest={d}")))
        .send(&b"whole"[..])
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = a.post(s.url("/v2/p/blobs/uploads/")).send_empty().unwrap();
    let loc = header(&r, "location").unwrap();
    let mut r = a
        .put(s.url(&format!("{loc}?digest={}", sha256(b"x"))))
        .send(&b"y"[..])
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "DIGEST_INVALID");

    let r = a.post(s.url("/v2/p/blobs/uploads/")).send_empty().unwrap();
    let loc = header(&r, "location").unwrap();
    a.patch(s.url(&loc)).send(&b"partial"[..]).unwrap();
    let r = a.delete(s.url(&loc)).call().unwrap();
    assert_eq!(r.status(), 204);
    let mut r = a.get(s.url(&loc)).call().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&mut r), "BLOB_UPLOAD_UNKNOWN");
    let mut r = a
        .patch(s.url("/v2/p/blobs/uploads/0123456789abcdef0123456789abcdef"))
        .send(&b"x"[..])
        .unwrap();
    // The body was not read: the server says it closes the connection.
    assert_eq!(header(&r, "connection").as_deref(), Some("close"));
    assert_eq!(code(&mut r), "BLOB_UPLOAD_UNKNOWN");
    let mut r = a.put(s.url(&loc)).send_empty().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "DIGEST_INVALID");
    // Nothing of the cancelled upload is left in the store's ingests.
    let ingests = std::fs::read_dir(s.root.join("ingest")).unwrap().count();
    assert_eq!(ingests, 0);
}

#[test]
fn manifests_by_tag_and_digest() {
    let (_d, s, a) = setup();
    let m = image_manifest(&a, &s, "app", "one");
    let md = sha256(&m);

    let r = put_manifest(&a, &s, "app", "v1", OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(md.as_str())
    );
    assert_eq!(
        header(&r, "location").as_deref(),
        Some(format!("/v2/app/manifests/{md}").as_str())
    );
    assert!(header(&r, "oci-subject").is_none());

    for reference in ["v1", md.as_str()] {
        let mut r = a
            .get(s.url(&format!("/v2/app/manifests/{reference}")))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(
            header(&r, "docker-content-digest").as_deref(),
            Some(md.as_str())
        );
        assert_eq!(header(&r, "content-length"), Some(m.len().to_string()));
        assert_eq!(body(&mut r), m);
        let r = a
            .head(s.url(&format!("/v2/app/manifests/{reference}")))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), Some(m.len().to_string()));
        assert_eq!(
            header(&r, "docker-content-digest").as_deref(),
            Some(md.as_str())
        );
    }

    // By digest: the digest must match.
    let r = put_manifest(&a, &s, "app", &md, OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201);
    let mut r = put_manifest(&a, &s, "app", &sha256(b"no"), OCI_MANIFEST, &m);
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "DIGEST_INVALID");

    // An index over it.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .unwrap();
    assert_eq!(
        put_manifest(&a, &s, "app", "multi", OCI_INDEX, &index).status(),
        201
    );
    let r = a.get(s.url("/v2/app/manifests/multi")).call().unwrap();
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));

    // Deleting the tag leaves the manifest; deleting the digest removes both.
    assert_eq!(
        a.delete(s.url("/v2/app/manifests/v1"))
            .call()
            .unwrap()
            .status(),
        202
    );
    let mut r = a.get(s.url("/v2/app/manifests/v1")).call().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&mut r), "MANIFEST_UNKNOWN");
    assert_eq!(
        a.get(s.url(&format!("/v2/app/manifests/{md}")))
            .call()
            .unwrap()
            .status(),
        200
    );
    put_manifest(&a, &s, "app", "v2", OCI_MANIFEST, &m);
    assert_eq!(
        a.delete(s.url(&format!("/v2/app/manifests/{md}")))
            .call()
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        a.get(s.url(&format!("/v2/app/manifests/{md}")))
            .call()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        a.get(s.url("/v2/app/manifests/v2"))
            .call()
            .unwrap()
            .status(),
        404
    );
    let mut r = a
        .delete(s.url(&format!("/v2/app/manifests/{md}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&mut r), "MANIFEST_UNKNOWN");
}

#[test]
fn bad_manifests_are_refused() {
    let (_d, s, a) = setup();
    let mut r = put_manifest(&a, &s, "bad", "t", OCI_MANIFEST, b"{ not json");
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "MANIFEST_INVALID");

    let mut r = put_manifest(&a, &s, "bad", "t", OCI_MANIFEST, b"{\"schemaVersion\":2}");
    assert_eq!(code(&mut r), "MANIFEST_INVALID");

    // A manifest whose layer was never pushed.
    let config = b"{}";
    let cd = push_blob(&a, &s, "bad", config);
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(b"missing"), "size": 7}],
    }))
    .unwrap();
    let mut r = put_manifest(&a, &s, "bad", "t", OCI_MANIFEST, &m);
    assert_eq!(r.status(), 400);
    let v = json(&mut r);
    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(v["errors"][0]["detail"]["digest"], sha256(b"missing"));

    // An index whose child manifest is missing.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}]
    }))
    .unwrap();
    let mut r = put_manifest(&a, &s, "bad", "t", OCI_INDEX, &index);
    assert_eq!(code(&mut r), "MANIFEST_BLOB_UNKNOWN");

    // Content-Type and mediaType disagree.
    let mut r = put_manifest(&a, &s, "bad", "t", OCI_INDEX, &m);
    assert_eq!(code(&mut r), "MANIFEST_INVALID");

    // Nothing was tagged.
    assert!(
        json(&mut a.get(s.url("/v2/bad/tags/list")).call().unwrap())["tags"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn tags_and_catalog_paginate_with_link() {
    let (_d, s, a) = setup();
    let m = image_manifest(&a, &s, "pg/one", "p");
    for tag in ["d", "a", "c", "b", "e"] {
        assert_eq!(
            put_manifest(&a, &s, "pg/one", tag, OCI_MANIFEST, &m).status(),
            201
        );
    }
    for repo in ["pg/two", "pg/three", "aaa"] {
        let m = image_manifest(&a, &s, repo, repo);
        put_manifest(&a, &s, repo, "latest", OCI_MANIFEST, &m);
    }

    let mut r = a.get(s.url("/v2/pg/one/tags/list")).call().unwrap();
    assert_eq!(
        json(&mut r),
        serde_json::json!({"name": "pg/one", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(header(&r, "link").is_none());

    let mut r = a.get(s.url("/v2/pg/one/tags/list?n=2")).call().unwrap();
    let link = header(&r, "link").unwrap();
    assert_eq!(json(&mut r)["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(link, "</v2/pg/one/tags/list?n=2&last=b>; rel=\"next\"");
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let mut r = a.get(s.url(&next)).call().unwrap();
    let link = header(&r, "link").unwrap();
    assert_eq!(json(&mut r)["tags"], serde_json::json!(["c", "d"]));
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let mut r = a.get(s.url(&next)).call().unwrap();
    assert!(header(&r, "link").is_none());
    assert_eq!(json(&mut r)["tags"], serde_json::json!(["e"]));
    let mut r = a.get(s.url("/v2/pg/one/tags/list?n=0")).call().unwrap();
    assert_eq!(json(&mut r)["tags"], serde_json::json!([]));

    let mut r = a.get(s.url("/v2/_catalog")).call().unwrap();
    assert_eq!(
        json(&mut r)["repositories"],
        serde_json::json!(["aaa", "pg/one", "pg/three", "pg/two"])
    );
    let mut r = a.get(s.url("/v2/_catalog?n=3")).call().unwrap();
    assert_eq!(
        header(&r, "link").as_deref(),
        Some("</v2/_catalog?n=3&last=pg%2Fthree>; rel=\"next\"")
    );
    assert_eq!(
        json(&mut r)["repositories"],
        serde_json::json!(["aaa", "pg/one", "pg/three"])
    );
    let mut r = a
        .get(s.url("/v2/_catalog?n=3&last=pg%2Fthree"))
        .call()
        .unwrap();
    assert!(header(&r, "link").is_none());
    assert_eq!(json(&mut r)["repositories"], serde_json::json!(["pg/two"]));
}

#[test]
fn cross_repository_mount_and_fallback() {
    let (_d, s, a) = setup();
    let d = push_blob(&a, &s, "src/repo", b"shared layer");
    let r = a
        .post(s.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo"
        )))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "location").as_deref(),
        Some(format!("/v2/dst/repo/blobs/{d}").as_str())
    );
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    let mut r = a
        .get(s.url(&format!("/v2/dst/repo/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(body(&mut r), b"shared layer");
    // One copy of the bytes.
    let blobs = std::fs::read_dir(s.root.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 1);

    // From a repository that lacks it: an upload session instead.
    let other = sha256(b"not there");
    let r = a
        .post(s.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={other}&from=src/repo"
        )))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location").unwrap();
    let r = a
        .put(s.url(&format!("{loc}?digest={other}")))
        .send(&b"not there"[..])
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn referrers_and_oci_subject() {
    let (_d, s, a) = setup();
    let m = image_manifest(&a, &s, "ref", "subject");
    let md = sha256(&m);
    put_manifest(&a, &s, "ref", "v1", OCI_MANIFEST, &m);

    let empty = push_blob(&a, &s, "ref", b"{}");
    let sig_blob = push_blob(&a, &s, "ref", b"signature");
    let referrer = |artifact: &str, note: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig_blob, "size": 9}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()},
            "annotations": {"note": note},
        }))
        .unwrap()
    };
    let sig = referrer("application/vnd.example.sig", "a");
    let sbom = referrer("application/vnd.example.sbom", "b");
    for art in [&sig, &sbom] {
        let d = sha256(art);
        let r = put_manifest(&a, &s, "ref", &d, OCI_MANIFEST, art);
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject").as_deref(), Some(md.as_str()));
    }

    let mut r = a
        .get(s.url(&format!("/v2/ref/referrers/{md}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));
    let v = json(&mut r);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for d in list {
        assert_eq!(d["mediaType"], OCI_MANIFEST);
        assert!(
            d["artifactType"]
                .as_str()
                .unwrap()
                .starts_with("application/vnd.example.")
        );
        assert!(d["annotations"]["note"].is_string());
    }

    let mut r = a
        .get(s.url(&format!(
            "/v2/ref/referrers/{md}?artifactType=application/vnd.example.sbom"
        )))
        .call()
        .unwrap();
    assert_eq!(
        header(&r, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let v = json(&mut r);
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], sha256(&sbom));
    assert_eq!(v["manifests"][0]["size"], sbom.len());

    // Deleting a referrer drops it from the list; an unknown subject has none.
    a.delete(s.url(&format!("/v2/ref/manifests/{}", sha256(&sig))))
        .call()
        .unwrap();
    let mut r = a
        .get(s.url(&format!("/v2/ref/referrers/{md}")))
        .call()
        .unwrap();
    assert_eq!(json(&mut r)["manifests"].as_array().unwrap().len(), 1);
    let mut r = a
        .get(s.url(&format!("/v2/ref/referrers/{}", sha256(b"x"))))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(json(&mut r)["manifests"].as_array().unwrap().is_empty());
    let mut r = a.get(s.url("/v2/ref/referrers/sha256:zz")).call().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "DIGEST_INVALID");
}

#[test]
fn concurrent_pushes_of_the_same_blob() {
    let (_d, s, a) = setup();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let d = sha256(&data);
    std::thread::scope(|scope| {
        for i in 0..6 {
            let (a, s, data, d) = (&a, &s, &data, &d);
            scope.spawn(move || {
                let repo = format!("con/r{}", i % 3);
                let r = a
                    .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
                    .send_empty()
                    .unwrap();
                let loc = header(&r, "location").unwrap();
                for (n, chunk) in data.chunks(300_000).enumerate() {
                    let start = n * 300_000;
                    let r = a
                        .patch(s.url(&loc))
                        .header(
                            "Content-Range",
                            &format!("{start}-{}", start + chunk.len() - 1),
                        )
                        .send(chunk)
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
                let r = a
                    .put(s.url(&format!("{loc}?digest={d}")))
                    .send_empty()
                    .unwrap();
                assert_eq!(r.status(), 201);
            });
        }
    });
    for i in 0..3 {
        let mut r = a
            .get(s.url(&format!("/v2/con/r{i}/blobs/{d}")))
            .call()
            .unwrap();
        assert_eq!(body(&mut r), data);
    }
    assert_eq!(
        std::fs::read_dir(s.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(std::fs::read_dir(s.root.join("ingest")).unwrap().count(), 0);
}

#[test]
fn read_only_mode_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let a = agent();
    let d;
    {
        let s = Server::start(&root, &[]);
        d = push_blob(&a, &s, "ro", b"kept");
    }
    let s = Server::start(&root, &["--read-only"]);
    let mut r = a.get(s.url(&format!("/v2/ro/blobs/{d}"))).call().unwrap();
    assert_eq!(body(&mut r), b"kept");
    let mut r = a.post(s.url("/v2/ro/blobs/uploads/")).send_empty().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(code(&mut r), "UNSUPPORTED");
    let mut r = a
        .delete(s.url(&format!("/v2/ro/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(code(&mut r), "UNSUPPORTED");
    let r = put_manifest(&a, &s, "ro", "t", OCI_MANIFEST, b"{}");
    assert_eq!(r.status(), 405);
}

#[test]
fn requests_are_logged_one_line_each() {
    let (_d, s, a) = setup();
    a.get(s.url("/v2/")).call().unwrap();
    a.get(s.url("/v2/x/tags/list")).call().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = s.logs();
    let lines: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("berth_registry::access"))
        .collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines[0].contains("\"GET /v2/\" 200"), "{}", lines[0]);
    assert!(
        lines[1].contains("\"GET /v2/x/tags/list\" 404"),
        "{}",
        lines[1]
    );
}

#[test]
fn oversized_manifest_is_refused_with_size_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.json");
    std::fs::write(&path, r#"{"max_manifest_bytes": 64}"#).unwrap();
    let s = Server::start(
        &dir.path().join("root"),
        &["--config", path.to_str().unwrap()],
    );
    let a = agent();
    let m = image_manifest(&a, &s, "big", "x");
    let mut r = put_manifest(&a, &s, "big", "t", OCI_MANIFEST, &m);
    assert_eq!(r.status(), 413);
    assert_eq!(code(&mut r), "SIZE_INVALID");
}

#[test]
fn docker_schema2_manifests_keep_their_media_type() {
    let (_d, s, a) = setup();
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let config = push_blob(&a, &s, "dk", b"{\"os\":\"linux\"}");
    let layer = push_blob(&a, &s, "dk", b"docker layer");
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": docker,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 14},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 12}],
    }))
    .unwrap();
    assert_eq!(
        put_manifest(&a, &s, "dk", "latest", docker, &m).status(),
        201
    );
    let r = a.get(s.url("/v2/dk/manifests/latest")).call().unwrap();
    assert_eq!(header(&r, "content-type").as_deref(), Some(docker));
    // Schema 1 is refused.
    let mut r = put_manifest(
        &a,
        &s,
        "dk",
        "old",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        b"{\"schemaVersion\":1,\"name\":\"dk\",\"tag\":\"old\",\"fsLayers\":[]}",
    );
    assert_eq!(r.status(), 400);
    assert_eq!(code(&mut r), "MANIFEST_INVALID");
}

#[test]
fn concurrent_pushes_of_the_same_manifest() {
    let (_d, s, a) = setup();
    let m = image_manifest(&a, &s, "same", "m");
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (a, s, m) = (&a, &s, &m);
            scope.spawn(move || {
                let r = put_manifest(a, s, "same", &format!("t{i}"), OCI_MANIFEST, m);
                assert_eq!(r.status(), 201);
            });
        }
    });
    let mut r = a.get(s.url("/v2/same/tags/list")).call().unwrap();
    assert_eq!(json(&mut r)["tags"].as_array().unwrap().len(), 8);
    assert_eq!(std::fs::read_dir(s.root.join("ingest")).unwrap().count(), 0);
}
