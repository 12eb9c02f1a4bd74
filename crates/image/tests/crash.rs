#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash consistency: a process that loads, imports, removes and collects
//! images in a loop is killed with SIGKILL at many different moments; after
//! each kill the store is reopened and must hold only whole images, and after
//! one gc nothing unreferenced may be left (no blob, ingest or lease).
//!
//! The worker is this test binary itself, re-executed to run
//! [`crash_worker`] with `BERTH_CRASH_WORKER` set.

use std::collections::BTreeSet;
use std::io::{BufReader, Cursor, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_image::archive::{self, ImportOptions, LoadOptions};
use berth_image::content::{Algorithm, Digester, Manager, Provider};
use berth_image::store::{GcOptions, ImageStore, Platform};

/// A gzip'd rootfs tarball with `files` pseudo-random files of `size` bytes.
fn rootfs_tgz(seed: u64, files: usize, size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut x = seed | 1;
    for i in 0..files {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x & 0xff) as u8
            })
            .collect();
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o777);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("data/f{i}"), data.as_slice())
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&tar).unwrap();
    e.finish().unwrap()
}

/// Runs only when re-executed by [`sigkill_at_any_point_leaves_a_consistent_store`].
#[test]
fn crash_worker() {
    let Ok(dir) = std::env::var("BERTH_CRASH_WORKER") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = ImageStore::open(&dir.join("store")).unwrap();
    let archive_bytes = std::fs::read(dir.join("archive.tar")).unwrap();
    let layer = std::fs::read(dir.join("layer.tgz")).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    for round in 0u64.. {
        archive::load(&store, Cursor::new(&archive_bytes), &LoadOptions::default()).unwrap();
        archive::import(
            &store,
            Cursor::new(&layer),
            &ImportOptions {
                name: Some(format!("imported:{}", round % 3)),
                message: Some(format!("round {round}")),
                ..Default::default()
            },
        )
        .unwrap();
        for img in store.list().unwrap() {
            if img.name.contains("saved") && round % 2 == 0 {
                store.delete(&img.name).unwrap();
            }
        }
        store.gc(&GcOptions::default()).unwrap();
    }
}

/// Runs only when re-executed by
/// [`sigkill_during_unpack_and_commit_leaves_consistent_snapshots`]: unpack,
/// container changes, commit, removal and gc of snapshots, in a loop.
#[test]
fn crash_snapshot_worker() {
    let Ok(dir) = std::env::var("BERTH_CRASH_SNAPSHOT_WORKER") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = ImageStore::open(&dir.join("store")).unwrap();
    let snaps = berth_image::snapshot::Snapshotter::open(
        &dir.join("store/snapshots"),
        store.db().clone(),
        None,
    )
    .unwrap();
    let host = Platform::host();
    let layer = std::fs::read(dir.join("layer.tgz")).unwrap();
    let base = archive::import(
        &store,
        Cursor::new(&layer),
        &ImportOptions {
            name: Some("base:1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    for round in 0u64.. {
        let top = store
            .unpack(&snaps, &base.target, &host, &Default::default())
            .unwrap();
        let key = format!("ctr-{round}");
        let mounts = snaps
            .prepare(&key, top.as_deref(), Default::default())
            .unwrap();
        berth_image::snapshot::mount_all(&mounts, &mnt).unwrap();
        std::fs::write(mnt.join(format!("data/new-{round}")), vec![7u8; 300_000]).unwrap();
        std::fs::remove_file(mnt.join("data/f0")).ok();
        berth_image::snapshot::unmount(&mnt).unwrap();
        let img = store
            .commit_container(
                &snaps,
                &key,
                &base.target,
                &host,
                &berth_image::store::CommitOptions {
                    name: Some(format!("committed:{}", round % 2)),
                    ..Default::default()
                },
            )
            .unwrap();
        store
            .unpack(&snaps, &img.target, &host, &Default::default())
            .unwrap();
        snaps.remove(&key).unwrap();
        store.gc_snapshots(&snaps, &host, false).unwrap();
        store.gc(&GcOptions::default()).unwrap();
    }
}

/// Re-executes this test binary to run the worker test `name` (with `env`
/// set to `dir`), waits until it prints "ready", lets it work `delay_ms`,
/// and kills it with SIGKILL; panics if it ended by itself.
fn kill_worker_after(name: &str, env: &str, dir: &std::path::Path, delay_ms: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Wait for "ready" so the delay counts from the start of the work.
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        if out.read(&mut byte).unwrap() == 0 {
            break;
        }
        seen.push(byte[0]);
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    // Our own child, not reaped yet: the pid cannot have been reused.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.code().is_none(),
        "worker {name} ended by itself: {status:?}"
    );
}

/// Every visible image resolves and each blob it needs re-hashes to its digest.
fn check_whole(store: &ImageStore) -> usize {
    let images = store.list().unwrap();
    for img in &images {
        let r = store
            .resolve(&img.target, &Platform::host())
            .unwrap_or_else(|e| panic!("image {} is not whole: {e}", img.name));
        let mut blobs = vec![img.target.digest().unwrap(), r.config_digest.clone()];
        for (l, _) in &r.layers {
            blobs.push(l.digest().to_string().parse().unwrap());
        }
        for d in blobs {
            let mut f = BufReader::new(store.content().open(&d).unwrap());
            let mut h = Digester::new(Algorithm::Sha256);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            assert_eq!(h.finish(), d, "blob {d} of {} is corrupt", img.name);
        }
    }
    images.len()
}

fn blobs(store: &ImageStore) -> BTreeSet<String> {
    store
        .content()
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.digest.to_string())
        .collect()
}

#[test]
fn sigkill_at_any_point_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // An archive worth a few tens of milliseconds of work: two images, three
    // layers of 4 × 256 KiB of noise each.
    {
        let src = ImageStore::open(&dir.join("src")).unwrap();
        for (i, name) in ["saved:a", "saved:b", "other:c"].iter().enumerate() {
            archive::import(
                &src,
                Cursor::new(rootfs_tgz(i as u64 + 7, 4, 256 << 10)),
                &ImportOptions {
                    name: Some((*name).into()),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        let mut out = Vec::new();
        archive::save(
            &src,
            &["saved:a", "saved:b", "other:c"],
            &Platform::host(),
            &mut out,
        )
        .unwrap();
        std::fs::write(dir.join("archive.tar"), out).unwrap();
        std::fs::write(dir.join("layer.tgz"), rootfs_tgz(99, 6, 256 << 10)).unwrap();
    }

    let mut kills = 0;
    // Delays spread over the work of a few rounds, so that kills land in
    // every phase: blob writes, commits, record writes, deletes, gc.
    for delay_ms in [
        2u64, 6, 12, 20, 31, 45, 62, 83, 108, 137, 171, 210, 255, 306, 364, 430, 505, 590,
    ] {
        kill_worker_after("crash_worker", "BERTH_CRASH_WORKER", dir, delay_ms);
        kills += 1;

        let store = ImageStore::open(&dir.join("store")).unwrap();
        check_whole(&store);
        store.gc(&GcOptions::default()).unwrap();
        let n = check_whole(&store);
        // After gc: exactly what the images reach, nothing else.
        let report = store.gc(&GcOptions { dry_run: true }).unwrap();
        assert!(report.blobs.is_empty(), "garbage left after gc: {report:?}");
        let kept: BTreeSet<String> = report.kept.iter().map(|d| d.to_string()).collect();
        assert_eq!(blobs(&store), kept, "blobs not reached by any image");
        assert!(
            store.content().ingests().unwrap().is_empty(),
            "ingests left"
        );
        assert!(store.leases().unwrap().is_empty(), "leases left");
        eprintln!("kill after {delay_ms} ms: {n} whole images");
        drop(store);
    }
    assert_eq!(kills, 18);
}

#[test]
fn sigkill_during_unpack_and_commit_leaves_consistent_snapshots() {
    if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
        eprintln!("skipped: set BERTH_TEST_ROOT=1 (as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("layer.tgz"), rootfs_tgz(5, 8, 256 << 10)).unwrap();
    let host = Platform::host();
    for delay_ms in [3u64, 10, 25, 45, 70, 100, 135, 175, 220, 270, 330, 400] {
        kill_worker_after(
            "crash_snapshot_worker",
            "BERTH_CRASH_SNAPSHOT_WORKER",
            dir,
            delay_ms,
        );
        // The killed worker may have left its container mount behind.
        let _ = berth_image::snapshot::unmount(&dir.join("mnt"));

        let store = ImageStore::open(&dir.join("store")).unwrap();
        let snaps = berth_image::snapshot::Snapshotter::open(
            &dir.join("store/snapshots"),
            store.db().clone(),
            None,
        )
        .unwrap();
        let n = check_whole(&store);
        // Every snapshot's parent exists, and each image unpacks.
        let all = snaps.list().unwrap();
        let names: BTreeSet<&str> = all.iter().map(|s| s.name.as_str()).collect();
        for s in &all {
            if let Some(p) = &s.parent {
                assert!(
                    names.contains(p.as_str()),
                    "{} has a missing parent {p}",
                    s.name
                );
            }
        }
        for img in store.list().unwrap() {
            store
                .unpack(&snaps, &img.target, &host, &Default::default())
                .unwrap_or_else(|e| panic!("unpack {} after a crash: {e}", img.name));
        }
        // Containers left by the dead worker are the engine's to remove.
        for s in &all {
            if s.name.starts_with("ctr-") {
                snaps.remove(&s.name).unwrap();
            }
        }
        store.gc_snapshots(&snaps, &host, false).unwrap();
        store.gc(&GcOptions::default()).unwrap();
        assert!(store.gc_snapshots(&snaps, &host, true).unwrap().is_empty());
        let roots = store.snapshot_roots(&host).unwrap();
        let left: BTreeSet<String> = snaps.list().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(left, roots, "snapshots beyond what images need");
        let report = store.gc(&GcOptions { dry_run: true }).unwrap();
        assert!(
            report.blobs.is_empty() && report.ingests.is_empty(),
            "{report:?}"
        );
        eprintln!(
            "kill after {delay_ms} ms: {n} whole images, {} snapshots",
            left.len()
        );
        drop(snaps);
        drop(store);
    }
}
