#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `export` of a directory tree: what it writes is what `apply_layer` and
//! GNU tar read back, and hostile symlinks are written, never followed.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use berth_image::archive::export;
use berth_image::layer::{ApplyOptions, apply_layer};

fn tree(root: &Path) {
    fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    fs::write(root.join("etc/hostname"), "box\n").unwrap();
    fs::set_permissions(root.join("etc/hostname"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(root.join("etc/deep/er/file"), vec![b'x'; 100_000]).unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname.link")).unwrap();
    // Hostile: absolute and relative symlinks pointing out of the tree.
    symlink("/etc/shadow", root.join("shadow")).unwrap();
    symlink("../../../../../etc", root.join("up")).unwrap();
    let long = "n".repeat(150);
    fs::write(root.join("etc").join(&long), "long name").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn export_round_trips_through_apply_and_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    let xattr = rustix::fs::setxattr(
        src.join("etc/hostname"),
        "user.berth",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();

    let mut out = Vec::new();
    let stats = export(&src, &mut out).unwrap();
    assert!(stats.entries >= 10, "{stats:?}");
    assert_eq!(stats.bytes, 100_000 + 4 + 9);

    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let opts = ApplyOptions {
        preserve_owners: rustix::process::geteuid().is_root(),
        ..Default::default()
    };
    apply_layer(std::io::Cursor::new(&out), &dst, &opts).unwrap();
    assert_eq!(
        fs::read(dst.join("etc/deep/er/file")).unwrap().len(),
        100_000
    );
    assert_eq!(
        fs::read_link(dst.join("shadow")).unwrap().to_str(),
        Some("/etc/shadow")
    );
    assert_eq!(
        fs::read_link(dst.join("up")).unwrap().to_str(),
        Some("../../../../../etc")
    );
    let a = fs::metadata(dst.join("etc/hostname")).unwrap();
    let b = fs::metadata(dst.join("etc/hostname.link")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink kept");
    assert_eq!(a.mode() & 0o7777, 0o640);
    assert_eq!(
        a.mtime(),
        fs::metadata(src.join("etc/hostname")).unwrap().mtime()
    );
    assert_eq!(
        fs::read_to_string(dst.join("etc").join("n".repeat(150))).unwrap(),
        "long name"
    );
    assert!(
        fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
            || !rustix::process::geteuid().is_root()
    );
    if xattr {
        let mut v = [0u8; 16];
        let n = rustix::fs::getxattr(dst.join("etc/hostname"), "user.berth", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"kept");
    }

    // GNU tar reads it too, xattrs included.
    let file = tmp.path().join("out.tar");
    fs::write(&file, &out).unwrap();
    let o = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-tvf"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(listing.contains("shadow -> /etc/shadow"), "{listing}");
    assert!(
        listing.contains("etc/hostname.link link to etc/hostname"),
        "{listing}"
    );
    let gx = tmp.path().join("gnu");
    fs::create_dir(&gx).unwrap();
    let o = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xf"])
        .arg(&file)
        .arg("-C")
        .arg(&gx)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if xattr {
        let mut v = [0u8; 16];
        let n = rustix::fs::getxattr(gx.join("etc/hostname"), "user.berth", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"kept");
    }
}

#[test]
fn same_tree_same_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    export(&src, &mut a).unwrap();
    export(&src, &mut b).unwrap();
    assert_eq!(a, b);
}
