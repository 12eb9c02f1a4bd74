//! Arbitrary bytes applied as a layer must never create, change or link
//! anything outside the root.
//!
//! Layout of each run, in a fresh temp dir T (on tmpfs when there is one):
//! `T/up/root` is the root the layer is applied to; `T/up/sentinel` is an
//! empty directory and `T/up/outside` a file; `T/up` holds nothing else.
//! After the apply (which may fail: most inputs are not tars), `T` and `T/up`
//! must hold exactly those entries, the sentinel must still be empty, the
//! outside file must be unchanged with one link, and no file in the root may
//! share an inode with anything outside it. Symlinks in the root may point
//! anywhere: they are only text.
#![no_main]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_image::layer::{ApplyOptions, apply_layer};
use libfuzzer_sys::fuzz_target;

const OUTSIDE: &[u8] = b"outside content";

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every inode under `dir` (not following symlinks), except those of
/// directories.
fn inodes(dir: &Path, out: &mut Vec<(u64, u64, String)>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        let m = std::fs::symlink_metadata(&p).expect("lstat");
        if m.is_dir() {
            inodes(&p, out);
        } else {
            out.push((m.dev(), m.ino(), p.display().to_string()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let base = if Path::new("/dev/shm").is_dir() {
        Path::new("/dev/shm").to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let tmp = tempfile::Builder::new()
        .prefix("berth-fuzz-")
        .tempdir_in(base)
        .expect("tempdir");
    let up = tmp.path().join("up");
    let root = up.join("root");
    std::fs::create_dir_all(&root).expect("root");
    std::fs::create_dir(up.join("sentinel")).expect("sentinel");
    std::fs::write(up.join("outside"), OUTSIDE).expect("outside");
    let outside = std::fs::metadata(up.join("outside")).expect("outside");

    let opts = ApplyOptions {
        max_entry_size: 1 << 20,
        ..ApplyOptions::default()
    };
    let _ = apply_layer(data, &root, &opts);

    assert_eq!(names(tmp.path()), BTreeSet::from(["up".to_string()]));
    assert_eq!(
        names(&up),
        BTreeSet::from(["outside", "root", "sentinel"].map(String::from))
    );
    assert!(
        names(&up.join("sentinel")).is_empty(),
        "sentinel written to"
    );
    let now = std::fs::symlink_metadata(up.join("outside")).expect("outside");
    assert!(now.is_file(), "outside file replaced");
    assert_eq!(now.ino(), outside.ino(), "outside file replaced");
    assert_eq!(now.nlink(), 1, "outside file hardlinked");
    assert_eq!(std::fs::read(up.join("outside")).expect("read"), OUTSIDE);
    let m = std::fs::symlink_metadata(&root).expect("root");
    assert!(m.is_dir(), "root replaced");
    let mut inside = Vec::new();
    inodes(&root, &mut inside);
    let host: Vec<_> = ["/etc/passwd", "/etc/shadow", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .collect();
    for (dev, ino, path) in &inside {
        assert!(
            (*dev, *ino) != (outside.dev(), outside.ino()),
            "{path} is the outside file"
        );
        for h in &host {
            assert!((*dev, *ino) != (h.dev(), h.ino()), "{path} is a host file");
        }
    }
});
