#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The image store and archives through the public API: import, save, load,
//! gc, leases, and bad input. No root needed.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use berth_image::archive::{self, ImportOptions, LoadOptions};
use berth_image::content::{Manager, Provider};
use berth_image::store::{GcOptions, ImageStore, Platform};

/// A small root filesystem tarball: a file, a dir, a symlink, a hardlink.
fn rootfs_tar(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(0);
    dir.set_mode(0o777);
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir.clone(), "etc/", std::io::empty())
        .unwrap();
    b.append_data(&mut dir, "bin/", std::io::empty()).unwrap();
    let mut f = tar::Header::new_ustar();
    f.set_uid(0);
    f.set_gid(0);
    f.set_mtime(0);
    f.set_mode(0o777);
    f.set_mode(0o644);
    let body = format!("root:x:0:0:root:/root:/bin/sh\n# {marker}\n");
    f.set_size(body.len() as u64);
    b.append_data(&mut f, "etc/passwd", body.as_bytes())
        .unwrap();
    let mut l = tar::Header::new_ustar();
    l.set_uid(0);
    l.set_gid(0);
    l.set_mtime(0);
    l.set_mode(0o777);
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    b.append_link(&mut l, "bin/sh", "busybox").unwrap();
    let mut f = tar::Header::new_ustar();
    f.set_uid(0);
    f.set_gid(0);
    f.set_mtime(0);
    f.set_mode(0o777);
    f.set_mode(0o755);
    f.set_size(5);
    b.append_data(&mut f, "bin/busybox", &b"#!x\n\n"[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(dir).unwrap()
}

/// Bytes used by committed blobs and ingests.
fn disk_usage(dir: &Path) -> u64 {
    fn walk(p: &Path, total: &mut u64) {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    walk(&e.path(), total);
                } else {
                    *total += m.len();
                }
            }
        }
    }
    let mut t = 0;
    walk(&dir.join("content"), &mut t);
    t
}

fn blob_count(s: &ImageStore) -> usize {
    s.content().list().unwrap().len()
}

#[test]
fn import_save_load_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let a = store(&tmp.path().join("a"));
    let img = archive::import(
        &a,
        Cursor::new(gzip(&rootfs_tar("one"))),
        &ImportOptions {
            name: Some("example.com/team/app:v1".into()),
            config: Some(serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["A=1"]})),
            message: Some("from a test".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(img.name, "example.com/team/app:v1");
    let r = a.resolve(&img.target, &Platform::host()).unwrap();
    assert_eq!(r.layers.len(), 1);
    assert_eq!(
        r.layers[0].0.media_type().to_string(),
        berth_image::media::OCI_LAYER_GZIP
    );
    // The diffID is the sha256 of the uncompressed tarball.
    let plain = rootfs_tar("one");
    let want = berth_image::content::Digest::of(berth_image::content::Algorithm::Sha256, &plain);
    assert_eq!(r.layers[0].1, want.to_string());
    a.put("app:second", img.target.clone()).unwrap();

    let mut saved = Vec::new();
    archive::save(
        &a,
        &["example.com/team/app:v1", "app:second"],
        &Platform::host(),
        &mut saved,
    )
    .unwrap();
    // The archive has both layouts, and the image once.
    let mut names = BTreeSet::new();
    let mut ar = tar::Archive::new(Cursor::new(&saved));
    let mut manifest_json = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "manifest.json" {
            e.read_to_string(&mut manifest_json).unwrap();
        }
        names.insert(p);
    }
    for f in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(names.contains(f), "{f} missing from {names:?}");
    }
    let mj: serde_json::Value = serde_json::from_str(&manifest_json).unwrap();
    assert_eq!(mj.as_array().unwrap().len(), 1);
    let tags: BTreeSet<&str> = mj[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from(["example.com/team/app:v1", "app:second"])
    );

    let b = store(&tmp.path().join("b"));
    let report = archive::load(&b, Cursor::new(&saved), &LoadOptions::default()).unwrap();
    let loaded: BTreeSet<String> = report.images.iter().map(|i| i.name.clone()).collect();
    assert_eq!(
        loaded,
        BTreeSet::from([
            "docker.io/library/app:second".to_string(),
            "example.com/team/app:v1".to_string()
        ])
    );
    // Same manifest digest: the original manifest came along.
    let again = b.get("example.com/team/app:v1").unwrap();
    assert_eq!(again.target, img.target);
    let rb = b.resolve(&again.target, &Platform::host()).unwrap();
    assert_eq!(rb.config_digest, r.config_digest);
    assert!(b.leases().unwrap().is_empty(), "load leaves no lease");
    assert!(b.content().ingests().unwrap().is_empty());
}

/// A docker-archive as Docker 20.10 writes it: `<id>/layer.tar`, `<hex>.json`,
/// a symlinked duplicate layer, manifest.json and repositories, gzip'd whole.
fn legacy_docker_archive(
    layer: &[u8],
    tag: Option<&str>,
    diff_id_override: Option<&str>,
) -> Vec<u8> {
    let diff = berth_image::content::Digest::of(berth_image::content::Algorithm::Sha256, layer);
    let diff_s = diff_id_override
        .map(str::to_owned)
        .unwrap_or(diff.to_string());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_s.clone(), diff_s]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let chex = berth_image::content::Digest::of(berth_image::content::Algorithm::Sha256, &config)
        .hex()
        .to_owned();
    let manifest = serde_json::json!([{
        "Config": format!("{chex}.json"),
        "RepoTags": tag.map(|t| vec![t]),
        "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"],
    }]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o777);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("aaaa/VERSION", b"1.0");
    add("aaaa/json", b"{}");
    add("aaaa/layer.tar", layer);
    add(&format!("{chex}.json"), &config);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("repositories", b"{}");
    let mut l = tar::Header::new_ustar();
    l.set_uid(0);
    l.set_gid(0);
    l.set_mtime(0);
    l.set_mode(0o777);
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    b.append_link(&mut l, "bbbb/layer.tar", "../aaaa/layer.tar")
        .unwrap();
    gzip(&b.into_inner().unwrap())
}

#[test]
fn legacy_docker_archive_loads_untagged_and_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let layer = rootfs_tar("legacy");
    let r = archive::load(
        &s,
        Cursor::new(legacy_docker_archive(&layer, Some("busybox:old"), None)),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(r.images.len(), 1);
    assert_eq!(r.images[0].name, "docker.io/library/busybox:old");
    let res = s.resolve(&r.images[0].target, &Platform::host()).unwrap();
    assert_eq!(res.layers.len(), 2);
    assert_eq!(res.chain_ids().len(), 2);
    assert_ne!(res.chain_ids()[0], res.chain_ids()[1]);

    let r = archive::load(
        &s,
        Cursor::new(legacy_docker_archive(&rootfs_tar("x"), None, None)),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(
        r.images[0].name.starts_with("sha256:"),
        "{}",
        r.images[0].name
    );
}

/// Runs a load that must fail, and checks the error names the problem and
/// that nothing was left: no image, no lease, no ingest, no extra bytes.
fn refused(s: &ImageStore, dir: &Path, data: Vec<u8>, want: &str) {
    let images = s.list().unwrap();
    let blobs = blob_count(s);
    let usage = disk_usage(dir);
    let err = archive::load(s, Cursor::new(data), &LoadOptions::default())
        .expect_err("load must fail")
        .to_string();
    eprintln!("refused: {err}");
    assert!(err.contains(want), "error {err:?} should mention {want:?}");
    assert_eq!(s.list().unwrap(), images, "no image may appear");
    assert_eq!(blob_count(s), blobs, "no blob may stay");
    assert!(s.leases().unwrap().is_empty());
    assert!(s.content().ingests().unwrap().is_empty());
    assert_eq!(disk_usage(dir), usage, "disk usage back where it was");
}

#[test]
fn bad_archives_are_refused_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    // Something loaded first, which must survive every failure below.
    archive::load(
        &s,
        Cursor::new(legacy_docker_archive(
            &rootfs_tar("keep"),
            Some("keep:me"),
            None,
        )),
        &LoadOptions::default(),
    )
    .unwrap();

    let good = legacy_docker_archive(&rootfs_tar("good"), Some("good:1"), None);
    // Truncated: gzip stream cut in half.
    refused(
        &s,
        tmp.path(),
        good[..good.len() / 2].to_vec(),
        "read archive",
    );
    // Corrupt: flipped bytes in the middle of the gzip stream.
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b ^= 0x5a;
    }
    refused(&s, tmp.path(), corrupt, "archive");
    // Not a tar at all.
    refused(
        &s,
        tmp.path(),
        b"hello, this is not a tarball".repeat(40),
        "not a valid tar",
    );
    // diff_id mismatch.
    refused(
        &s,
        tmp.path(),
        legacy_docker_archive(
            &rootfs_tar("m"),
            Some("m:1"),
            Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        ),
        "diff_id",
    );
    // A layer that is not a tar.
    refused(
        &s,
        tmp.path(),
        legacy_docker_archive(&vec![7u8; 4096], Some("n:1"), None),
        "is not a tar archive",
    );
    // An OCI layout whose manifest names a missing blob.
    let mut b = tar::Builder::new(Vec::new());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": berth_image::media::OCI_MANIFEST,
        "config": {"mediaType": berth_image::media::OCI_CONFIG, "digest": format!("sha256:{}", "1".repeat(64)), "size": 2},
        "layers": []});
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = berth_image::content::Digest::of(berth_image::content::Algorithm::Sha256, &mbytes);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": berth_image::media::OCI_MANIFEST, "digest": md.to_string(), "size": mbytes.len()}]});
    for (p, d) in [
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (format!("blobs/sha256/{}", md.hex()), mbytes.clone()),
        (
            "index.json".to_string(),
            serde_json::to_vec(&index).unwrap(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o777);
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, d.as_slice()).unwrap();
    }
    refused(
        &s,
        tmp.path(),
        b.into_inner().unwrap(),
        "missing from the content store",
    );
    // A blob whose bytes do not match its name.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_mode(0o777);
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(
        &mut h,
        format!("blobs/sha256/{}", "2".repeat(64)),
        &b"hello"[..],
    )
    .unwrap();
    refused(&s, tmp.path(), b.into_inner().unwrap(), "digest mismatch");
    // A tar bomb: an entry that declares more bytes than the disk has.
    let mut hdr = tar::Header::new_gnu();
    hdr.set_size(1 << 60);
    hdr.set_mode(0o644);
    hdr.set_path("blobs/huge").unwrap();
    hdr.set_cksum();
    let mut bomb = hdr.as_bytes().to_vec();
    bomb.extend(vec![0u8; 4096]);
    refused(&s, tmp.path(), bomb, "bytes free");
    // A tar bomb: too many entries.
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..60 {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, format!("d{i}/"), std::io::empty())
            .unwrap();
    }
    let err = archive::load(
        &s,
        Cursor::new(b.into_inner().unwrap()),
        &LoadOptions {
            max_entries: 50,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("tar bomb"), "{err}");
    // Neither layout.
    refused(
        &s,
        tmp.path(),
        rootfs_tar("plain"),
        "neither manifest.json nor index.json",
    );

    assert_eq!(s.list().unwrap().len(), 1);
    let keep = s.get("keep:me").unwrap();
    s.resolve(&keep.target, &Platform::host()).unwrap();
}

#[test]
fn gc_keeps_what_images_and_leases_reach() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let one = archive::import(
        &s,
        Cursor::new(rootfs_tar("1")),
        &ImportOptions {
            name: Some("one".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let two = archive::import(
        &s,
        Cursor::new(gzip(&rootfs_tar("2"))),
        &ImportOptions {
            name: Some("two".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(blob_count(&s), 6);
    let report = s.gc(&GcOptions::default()).unwrap();
    assert!(report.blobs.is_empty(), "{report:?}");

    // A leased blob survives without an image.
    let lease = s.lease(None).unwrap();
    let stray = b"stray blob";
    let d = berth_image::content::Digest::of(berth_image::content::Algorithm::Sha256, stray);
    {
        use berth_image::content::Ingester;
        let mut w = s
            .content()
            .writer("stray", Some((&d, stray.len() as u64)))
            .unwrap();
        w.write_all(stray).unwrap();
        lease
            .add(&berth_image::store::Resource::Content(d.clone()))
            .unwrap();
        w.commit(&d, stray.len() as u64).unwrap();
    }
    assert!(s.gc(&GcOptions::default()).unwrap().blobs.is_empty());
    lease.release().unwrap();

    s.delete("one").unwrap();
    let dry = s.gc(&GcOptions { dry_run: true }).unwrap();
    assert_eq!(dry.blobs.len(), 4, "{dry:?}");
    assert_eq!(blob_count(&s), 7);
    let report = s.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.blobs.len(), 4);
    assert!(!s.content().exists(&d).unwrap());
    assert!(
        s.content()
            .exists(&one.target.digest().unwrap())
            .is_ok_and(|e| !e)
    );
    s.resolve(&two.target, &Platform::host()).unwrap();
    assert_eq!(blob_count(&s), 3);
}

#[test]
fn names_are_normalised_and_missing_images_named() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let img = archive::import(
        &s,
        Cursor::new(rootfs_tar("n")),
        &ImportOptions {
            name: Some("busybox".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(img.name, "docker.io/library/busybox:latest");
    assert_eq!(
        s.get("docker.io/library/busybox").unwrap().target,
        img.target
    );
    assert_eq!(s.get("busybox:latest").unwrap().target, img.target);
    let e = s.get("nothere").unwrap_err().to_string();
    assert_eq!(e, "No such image: nothere");
    let e = s.get("UPPER").unwrap_err().to_string();
    assert!(e.contains("must be lowercase"), "{e}");
}

#[test]
fn archives_made_with_tar_dot_load() {
    // `tar -C dir -cf x .` writes `./` and `./name` entries; docker load
    // accepts that, and so must berth.
    let tmp = tempfile::tempdir().unwrap();
    let src = store(&tmp.path().join("src"));
    archive::import(
        &src,
        Cursor::new(rootfs_tar("dot")),
        &ImportOptions {
            name: Some("dot:1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut saved = Vec::new();
    archive::save(&src, &["dot:1"], &Platform::host(), &mut saved).unwrap();
    let dir = tmp.path().join("unpacked");
    fs::create_dir(&dir).unwrap();
    tar::Archive::new(Cursor::new(&saved)).unpack(&dir).unwrap();
    let out = tmp.path().join("dot.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let dst = store(&tmp.path().join("dst"));
    let r = archive::load(&dst, fs::File::open(&out).unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(r.images[0].name, "docker.io/library/dot:1");
}
