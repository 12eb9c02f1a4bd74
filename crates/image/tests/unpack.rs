#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Images and snapshots together, with real overlay mounts (root):
//! unpack, a container's changes, commit as a new image, `docker diff`
//! output, diffID checks, and snapshot gc.
//!
//! Run: `BERTH_TEST_ROOT=1 cargo test -p berth-image --test unpack` as root.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use berth_image::archive::{self, ImportOptions, LoadOptions};
use berth_image::layer::ApplyOptions;
use berth_image::snapshot::{ChangeKind, Snapshotter, mount_all, unmount};
use berth_image::store::{CommitOptions, GcOptions, ImageStore, LayerEvent, Platform};

fn root_ok() -> bool {
    if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
        eprintln!("skipped: set BERTH_TEST_ROOT=1 (as root)");
        return false;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "BERTH_TEST_ROOT=1 needs root"
    );
    true
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, body) in files {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if p.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, p, std::io::empty()).unwrap();
        } else {
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            b.append_data(&mut h, p, body.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// A temp dir with an image store and a snapshotter in it.
fn stores() -> (tempfile::TempDir, ImageStore, Snapshotter) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path()).unwrap();
    let snaps = Snapshotter::open(&tmp.path().join("snapshots"), store.db().clone(), None).unwrap();
    (tmp, store, snaps)
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn new(s: &Snapshotter, key: &str, at: &Path) -> Mounted {
        fs::create_dir_all(at).unwrap();
        mount_all(&s.mounts(key).unwrap(), at).unwrap();
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

#[test]
fn unpack_change_commit_diff_and_gc() {
    if !root_ok() {
        return;
    }
    let (tmp, store, snaps) = stores();
    let host = Platform::host();
    let base = archive::import(
        &store,
        Cursor::new(tar_of(&[
            ("etc/", ""),
            ("etc/motd", "base\n"),
            ("etc/old", "to delete\n"),
            ("var/", ""),
            ("var/data", "v\n"),
        ])),
        &ImportOptions {
            name: Some("base:1".into()),
            config: Some(serde_json::json!({"Cmd": ["sh"]})),
            ..Default::default()
        },
    )
    .unwrap();
    let top = store
        .unpack(&snaps, &base.target, &host, &ApplyOptions::default())
        .unwrap()
        .unwrap();
    // Unpacking again does nothing new.
    let again = store
        .unpack(&snaps, &base.target, &host, &ApplyOptions::default())
        .unwrap();
    assert_eq!(again.as_deref(), Some(top.as_str()));

    // A container: write, modify, delete.
    snaps
        .prepare("ctr", Some(&top), Default::default())
        .unwrap();
    {
        let m = Mounted::new(&snaps, "ctr", &tmp.path().join("mnt"));
        fs::write(m.0.join("etc/motd"), "changed\n").unwrap();
        fs::remove_file(m.0.join("etc/old")).unwrap();
        fs::create_dir(m.0.join("new")).unwrap();
        fs::write(m.0.join("new/file"), "added\n").unwrap();
    }
    let changes: Vec<String> = snaps
        .changes("ctr")
        .unwrap()
        .into_iter()
        .map(|c| {
            let k = match c.kind {
                ChangeKind::Added => "A",
                ChangeKind::Modified => "C",
                ChangeKind::Deleted => "D",
            };
            format!("{k} {}", c.path.display())
        })
        .collect();
    assert_eq!(
        changes,
        [
            "C /etc",
            "C /etc/motd",
            "D /etc/old",
            "A /new",
            "A /new/file"
        ],
        "docker diff order and kinds"
    );

    let committed = store
        .commit_container(
            &snaps,
            "ctr",
            &base.target,
            &host,
            &CommitOptions {
                name: Some("committed:1".into()),
                comment: Some("a test commit".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let r = store.resolve(&committed.target, &host).unwrap();
    assert_eq!(r.layers.len(), 2);
    assert_eq!(
        r.config.config().as_ref().unwrap().cmd().as_deref(),
        Some(&["sh".to_string()][..])
    );
    let new_top = store
        .unpack(&snaps, &committed.target, &host, &ApplyOptions::default())
        .unwrap()
        .unwrap();
    snaps
        .view("view", Some(&new_top), Default::default())
        .unwrap();
    {
        let m = Mounted::new(&snaps, "view", &tmp.path().join("view"));
        assert_eq!(
            fs::read_to_string(m.0.join("etc/motd")).unwrap(),
            "changed\n"
        );
        assert!(!m.0.join("etc/old").exists());
        assert_eq!(fs::read_to_string(m.0.join("new/file")).unwrap(), "added\n");
        assert_eq!(fs::read_to_string(m.0.join("var/data")).unwrap(), "v\n");
    }
    snaps.remove("view").unwrap();

    // The committed image round-trips through save/load into another store.
    let mut saved = Vec::new();
    archive::save(&store, &["committed:1"], &host, &mut saved).unwrap();
    let other = ImageStore::open(&tmp.path().join("other")).unwrap();
    archive::load(&other, Cursor::new(&saved), &LoadOptions::default()).unwrap();

    // gc: the base's snapshot is the parent of the committed one's, and
    // the container's active snapshot is kept whatever happens.
    store.delete("base:1").unwrap();
    assert!(store.gc_snapshots(&snaps, &host, false).unwrap().is_empty());
    store.delete("committed:1").unwrap();
    let dry = store.gc_snapshots(&snaps, &host, true).unwrap();
    assert_eq!(
        dry,
        vec![new_top.clone()],
        "only the top layer: ctr needs the base"
    );
    assert_eq!(
        store.gc_snapshots(&snaps, &host, false).unwrap(),
        vec![new_top]
    );
    snaps.remove("ctr").unwrap();
    assert_eq!(store.gc_snapshots(&snaps, &host, false).unwrap(), vec![top]);
    assert!(snaps.list().unwrap().is_empty());
    store.gc(&GcOptions::default()).unwrap();
    assert!(
        berth_image::content::Manager::list(store.content())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_not_unpacked() {
    if !root_ok() {
        return;
    }
    let (_tmp, store, snaps) = stores();
    // A docker-archive whose gzip layer's content differs from the
    // config's diff_id (only checkable once decompressed, at unpack).
    let layer = tar_of(&[("a", "1")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let wrong = format!("sha256:{}", "4".repeat(64));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [wrong]}}))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in [
        ("l.tar.gz", gz.clone()),
        ("c.json", config),
        (
            "manifest.json",
            serde_json::to_vec(&serde_json::json!([{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l.tar.gz"]}]))
                .unwrap(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, d.as_slice()).unwrap();
    }
    let r = archive::load(
        &store,
        Cursor::new(b.into_inner().unwrap()),
        &LoadOptions::default(),
    )
    .unwrap();
    let e = store
        .unpack(
            &snaps,
            &r.images[0].target,
            &Platform::host(),
            &ApplyOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("diff_id") && e.contains(&"4".repeat(64)), "{e}");
    assert!(
        snaps.list().unwrap().is_empty(),
        "nothing half-unpacked is left"
    );
}

/// Unpacking reports each layer's extraction with byte counts of the stored
/// blob, then its completion; layers already unpacked are not reported.
#[test]
fn unpack_reports_bytes_per_layer() {
    if !root_ok() {
        return;
    }
    let (_tmp, store, snaps) = stores();
    let host = Platform::host();
    // ~3 MiB that does not compress away: several progress steps.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let body: String = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let img = archive::import(
        &store,
        Cursor::new(tar_of(&[("data/", ""), ("data/big", &body)])),
        &ImportOptions {
            name: Some("big:1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut events = Vec::new();
    store
        .unpack_reporting(
            &snaps,
            &img.target,
            &host,
            &ApplyOptions::default(),
            &mut |d, e| events.push((d.to_owned(), e)),
        )
        .unwrap();
    let digest = &events[0].0;
    assert!(events.iter().all(|(d, _)| d == digest), "{events:?}");
    let total = match events[0].1 {
        LayerEvent::Extracting { done: 0, total } => total,
        e => panic!("first event {e:?}"),
    };
    assert!(total > 1 << 20, "{total}");
    assert_eq!(events.last().unwrap().1, LayerEvent::Done);
    let dones: Vec<u64> = events[..events.len() - 1]
        .iter()
        .map(|(_, e)| match e {
            LayerEvent::Extracting { done, total: t } => {
                assert_eq!(*t, total);
                *done
            }
            e => panic!("{e:?} before the end"),
        })
        .collect();
    assert!(dones.len() > 3, "{dones:?}");
    assert!(dones.windows(2).all(|w| w[0] < w[1]), "{dones:?}");
    assert_eq!(*dones.last().unwrap(), total);
    let mut again = 0;
    store
        .unpack_reporting(
            &snaps,
            &img.target,
            &host,
            &ApplyOptions::default(),
            &mut |_, _| again += 1,
        )
        .unwrap();
    assert_eq!(again, 0);
}
