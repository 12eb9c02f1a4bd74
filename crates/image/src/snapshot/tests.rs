//! Snapshot tests with real mounts: they need root and run only with
//! `BERTH_TEST_ROOT=1`. Each has its own temp root and a guard that detaches
//! every mount under it, even on failure.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tar::EntryType;

use super::copy::{copy_tree, xattrs};
use super::mount::{by_fd_paths, fsopen_overlay, parse_overlay};
use super::*;
use crate::layer::{ApplyOptions, apply_layer};

fn need_root() -> bool {
    if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "BERTH_TEST_ROOT=1 but not root"
    );
    true
}

/// A temp root, a redb database in it, and a mount guard.
struct Env {
    tmp: tempfile::TempDir,
    db: Arc<redb::Database>,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let db = redb::Database::create(tmp.path().join("state.redb")).expect("db");
        Env {
            tmp,
            db: Arc::new(db),
        }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn open(&self, backend: Option<Backend>) -> Snapshotter {
        Snapshotter::open(&self.root(), self.db.clone(), backend).expect("open")
    }

    /// Mount `mounts` on a fresh dir `<tmp>/m/<name>`.
    fn mount(&self, mounts: &[Mount], name: &str) -> PathBuf {
        let target = self.tmp.path().join("m").join(name);
        fs::create_dir_all(&target).expect("mkdir target");
        mount_all(mounts, &target).expect("mount");
        target
    }

    fn mounted(&self) -> Vec<PathBuf> {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(self.tmp.path()))
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for _ in 0..1000 {
            let mut left = self.mounted();
            if left.is_empty() {
                break;
            }
            left.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for m in left {
                let _ = unmount(&m);
            }
        }
    }
}

/// Tar entries for test layers.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Wh(&'a str),
    Sym(&'a str, &'a str),
    Link(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
    /// File with uid/gid and one xattr (PAX).
    Owned(&'a str, &'a str, u64, (&'a str, &'a str)),
}

fn header(name: &str, kind: EntryType, link: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (mut h, data): (tar::Header, Vec<u8>) = match e {
            E::Dir(p) => (
                header(&format!("{p}/"), EntryType::Directory, "", 0, 0o755),
                vec![],
            ),
            E::File(p, c) => (
                header(p, EntryType::Regular, "", c.len() as u64, 0o644),
                c.as_bytes().to_vec(),
            ),
            E::Wh(p) => {
                let (d, n) = p.rsplit_once('/').map_or(("", *p), |(d, n)| (d, n));
                let name = if d.is_empty() {
                    format!(".wh.{n}")
                } else {
                    format!("{d}/.wh.{n}")
                };
                (header(&name, EntryType::Regular, "", 0, 0o644), vec![])
            }
            E::Sym(p, t) => (header(p, EntryType::Symlink, t, 0, 0o777), vec![]),
            E::Link(p, t) => (header(p, EntryType::Link, t, 0, 0o644), vec![]),
            E::Char(p, ma, mi) => {
                let mut h = header(p, EntryType::Char, "", 0, 0o600);
                h.set_device_major(*ma).expect("major");
                h.set_device_minor(*mi).expect("minor");
                (h, vec![])
            }
            E::Fifo(p) => (header(p, EntryType::Fifo, "", 0, 0o640), vec![]),
            E::Owned(p, c, id, (k, v)) => {
                let mut pax = Vec::new();
                super::diff::pax_record(
                    &mut pax,
                    format!("SCHILY.xattr.{k}").as_bytes(),
                    v.as_bytes(),
                );
                let mut ph = header(
                    "PaxHeaders/x",
                    EntryType::XHeader,
                    "",
                    pax.len() as u64,
                    0o644,
                );
                ph.set_cksum();
                b.append(&ph, &pax[..]).expect("pax");
                let mut h = header(p, EntryType::Regular, "", c.len() as u64, 0o640);
                h.set_uid(*id);
                h.set_gid(*id);
                (h, c.as_bytes().to_vec())
            }
        };
        h.set_cksum();
        b.append(&h, &data[..]).expect("append");
    }
    b.into_inner().expect("tar")
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        allow_devices: true,
        ..ApplyOptions::default()
    }
}

fn base_layer() -> Vec<u8> {
    layer(&[
        E::Dir("etc"),
        E::File("etc/passwd", "root:x:0:0\n"),
        E::File("etc/hosts", "127.0.0.1 localhost\n"),
        E::Dir("dir"),
        E::Dir("dir/a"),
        E::File("dir/a/f", "f"),
        E::Dir("dir/b"),
        E::Dir("keep"),
        E::File("keep/file", "k"),
        E::Dir("op"),
        E::File("op/old", "o"),
        E::Dir("op/sub"),
        E::File("op/sub/deep", "d"),
        E::Sym("etc/link", "passwd"),
    ])
}

const BACKENDS: [Backend; 2] = [Backend::Overlay, Backend::Copy];

#[test]
fn detects_overlay() {
    if !need_root() {
        return;
    }
    let env = Env::new();
    let s = env.open(None);
    assert_eq!(s.backend(), Backend::Overlay);
    drop(s);
    // The store keeps its backend.
    let err =
        Snapshotter::open(&env.root(), env.db.clone(), Some(Backend::Copy)).expect_err("mismatch");
    assert!(
        matches!(err, SnapshotError::BackendMismatch { .. }),
        "{err}"
    );
    assert!(env.mounted().is_empty());
}

#[test]
fn stacked_layers_with_whiteouts_and_opaque_dirs() {
    if !need_root() {
        return;
    }
    for backend in BACKENDS {
        let env = Env::new();
        let s = env.open(Some(backend));
        s.unpack_layer("", None, "l1", &base_layer()[..], &opts(), None)
            .expect("l1");
        let l2 = layer(&[
            E::Wh("etc/hosts"),
            E::Dir("op"),
            E::File("op/.wh..wh..opq", ""),
            E::File("op/new", "n"),
            E::Wh("dir"),
            E::File("top", "t"),
        ]);
        let st = s
            .unpack_layer("", Some("l1"), "l2", &l2[..], &opts(), None)
            .expect("l2");
        assert_eq!(st.whiteouts, 3);
        // Again: nothing done.
        let again = s
            .unpack_layer("", Some("l1"), "l2", &l2[..], &opts(), None)
            .expect("again");
        assert_eq!(again.entries, 0);
        let l3 = layer(&[E::Dir("dir"), E::File("dir/back", "b")]);
        s.unpack_layer("", Some("l2"), "l3", &l3[..], &opts(), None)
            .expect("l3");

        let m = s.prepare("c1", Some("l3"), Labels::new()).expect("prepare");
        let root = env.mount(&m, "c1");
        let v = s.view("v1", Some("l3"), Labels::new()).expect("view");
        let vroot = env.mount(&v, "v1");
        for r in [&root, &vroot] {
            assert!(r.join("etc/passwd").is_file(), "{backend:?}");
            assert!(!r.join("etc/hosts").exists(), "{backend:?}");
            assert!(r.join("op/new").is_file(), "{backend:?}");
            assert!(!r.join("op/old").exists(), "{backend:?}");
            assert!(!r.join("op/sub").exists(), "{backend:?}");
            assert!(r.join("top").is_file());
            assert!(r.join("dir/back").is_file());
            assert!(!r.join("dir/a").exists(), "{backend:?}");
            assert_eq!(
                fs::read_link(r.join("etc/link")).expect("link"),
                Path::new("passwd")
            );
        }
        // The view is read-only, the container writable.
        assert!(fs::write(vroot.join("x"), "x").is_err());
        fs::write(root.join("x"), "x").expect("write in container");
        unmount(&vroot).expect("unmount view");
        unmount(&root).expect("unmount");
        // Only unpack leftovers: none; the layers are committed.
        let names: Vec<String> = s
            .list()
            .expect("list")
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["c1", "l1", "l2", "l3", "v1"]);
        drop(s);
        assert!(env.mounted().is_empty());
    }
}

#[test]
fn lifecycle_and_refusals() {
    if !need_root() {
        return;
    }
    for backend in BACKENDS {
        let env = Env::new();
        let s = env.open(Some(backend));
        let mut labels = Labels::new();
        labels.insert("a".into(), "1".into());
        let m = s.prepare("c1", None, labels.clone()).expect("prepare");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].kind, "bind");
        let root = env.mount(&m, "c1");
        fs::write(root.join("hello"), "hi").expect("write");
        unmount(&root).expect("unmount");

        assert!(matches!(
            s.prepare("c1", None, Labels::new()),
            Err(SnapshotError::Exists(_))
        ));
        assert!(matches!(
            s.prepare("c2", Some("c1"), Labels::new()),
            Err(SnapshotError::Invalid { .. })
        ));
        assert!(matches!(
            s.prepare("c2", Some("nope"), Labels::new()),
            Err(SnapshotError::NotFound(_))
        ));
        assert!(matches!(
            s.prepare("", None, Labels::new()),
            Err(SnapshotError::Invalid { .. })
        ));

        let info = s.stat("c1").expect("stat");
        assert_eq!(info.kind, Kind::Active);
        assert_eq!(info.labels, labels);
        assert!(s.usage("c1").expect("usage").inodes >= 2);

        s.commit("l1", "c1", Labels::new()).expect("commit");
        assert!(matches!(s.stat("c1"), Err(SnapshotError::NotFound(_))));
        assert_eq!(s.stat("l1").expect("stat").kind, Kind::Committed);
        assert_eq!(s.stat("l1").expect("stat").created, info.created);
        assert!(matches!(
            s.commit("l2", "l1", Labels::new()),
            Err(SnapshotError::Invalid { .. })
        ));

        s.prepare("c2", Some("l1"), Labels::new()).expect("c2");
        assert!(matches!(
            s.commit("l1", "c2", Labels::new()),
            Err(SnapshotError::Exists(_))
        ));
        s.view("v", Some("l1"), Labels::new()).expect("view");
        assert!(matches!(
            s.commit("l9", "v", Labels::new()),
            Err(SnapshotError::Invalid { .. })
        ));
        match s.remove("l1") {
            Err(SnapshotError::HasChildren { key, children }) => {
                assert_eq!(key, "l1");
                assert_eq!(children, ["c2", "v"]);
                let msg = SnapshotError::HasChildren { key, children }.to_string();
                assert_eq!(msg, "snapshot l1: in use as the parent of c2, v");
            }
            other => panic!("{other:?}"),
        }

        let mut l2 = Labels::new();
        l2.insert("b".into(), "2".into());
        assert_eq!(
            s.update_labels("c2", l2.clone()).expect("labels").labels,
            l2
        );
        assert_eq!(s.stat("c2").expect("stat").labels, l2);

        let root = env.mount(&s.mounts("c2").expect("mounts"), "c2");
        assert_eq!(fs::read_to_string(root.join("hello")).expect("hello"), "hi");
        unmount(&root).expect("unmount");

        for k in ["c2", "v", "l1"] {
            s.remove(k).expect("remove");
        }
        assert!(matches!(s.remove("l1"), Err(SnapshotError::NotFound(_))));
        assert!(s.list().expect("list").is_empty());
        let left = super::copy::names(&env.root().join("snapshots")).expect("names");
        assert!(left.is_empty(), "{left:?}");
        drop(s);
        assert!(env.mounted().is_empty());
    }
}

/// Make the changes of the `changes` test inside a mounted container.
fn change_things(root: &Path) {
    fs::write(root.join("etc/new"), "new").expect("add");
    fs::write(root.join("etc/passwd"), "root:x:0:0\nme:x:1:1\n").expect("modify");
    fs::remove_file(root.join("etc/hosts")).expect("delete");
    fs::rename(root.join("keep/file"), root.join("keep/file2")).expect("rename");
    fs::remove_dir_all(root.join("dir")).expect("rm dir");
    fs::remove_dir_all(root.join("op")).expect("rm op");
    fs::create_dir(root.join("op")).expect("mkdir op");
    fs::set_permissions(root.join("op"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(root.join("op/sub")).expect("mkdir op/sub");
    fs::set_permissions(root.join("op/sub"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(root.join("op/n"), "n").expect("op/n");
}

const EXPECTED: &[&str] = &[
    "D /dir",
    "C /etc",
    "D /etc/hosts",
    "A /etc/new",
    "C /etc/passwd",
    "C /keep",
    "D /keep/file",
    "A /keep/file2",
    "C /op",
    "A /op/n",
    "D /op/old",
    "C /op/sub",
    "D /op/sub/deep",
];

#[test]
fn changes_like_docker_diff() {
    if !need_root() {
        return;
    }
    for backend in BACKENDS {
        let env = Env::new();
        let s = env.open(Some(backend));
        s.unpack_layer("", None, "l1", &base_layer()[..], &opts(), None)
            .expect("l1");
        let root = env.mount(&s.prepare("c", Some("l1"), Labels::new()).expect("c"), "c");
        assert!(s.changes("c").expect("changes").is_empty(), "{backend:?}");
        change_things(&root);
        let got: Vec<String> = s
            .changes("c")
            .expect("changes")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, EXPECTED, "{backend:?}");
        unmount(&root).expect("unmount");
        drop(s);
        assert!(env.mounted().is_empty());
    }
}

/// Path → (type+mode, uid, gid, content or link target, xattrs, mtime of
/// non-directories).
type Tree = BTreeMap<
    PathBuf,
    (
        u32,
        u32,
        u32,
        Vec<u8>,
        Vec<(std::ffi::OsString, Vec<u8>)>,
        i64,
    ),
>;

fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("lstat");
            let content = if m.is_file() {
                fs::read(&p).expect("read")
            } else if m.file_type().is_symlink() {
                fs::read_link(&p)
                    .expect("readlink")
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            let x: Vec<_> = xattrs(&p)
                .expect("xattrs")
                .into_iter()
                .filter(|(k, _)| !k.to_string_lossy().starts_with("trusted.overlay."))
                .collect();
            let mtime = if m.is_dir() { 0 } else { m.mtime() };
            out.insert(
                p.strip_prefix(root).expect("rel").to_path_buf(),
                (m.mode(), m.uid(), m.gid(), content, x, mtime),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn write_diff_round_trip() {
    if !need_root() {
        return;
    }
    for backend in BACKENDS {
        let env = Env::new();
        let s = env.open(Some(backend));
        let base = base_layer();
        s.unpack_layer("", None, "l1", &base[..], &opts(), None)
            .expect("l1");
        let root = env.mount(&s.prepare("c", Some("l1"), Labels::new()).expect("c"), "c");
        change_things(&root);
        // Hardlinks, a long name, an xattr, a symlink, a fifo, an owner.
        fs::write(root.join("etc/h1"), "same").expect("h1");
        fs::hard_link(root.join("etc/h1"), root.join("etc/h2")).expect("h2");
        let long = format!("etc/{}", "x".repeat(150));
        fs::write(root.join(&long), "long").expect("long");
        rustix::fs::setxattr(
            root.join("etc/new").as_path(),
            "user.berth",
            b"v",
            rustix::fs::XattrFlags::empty(),
        )
        .expect("xattr");
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).expect("symlink");
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("fifo");
        std::os::unix::fs::lchown(root.join("etc/passwd"), Some(1234), Some(4321)).expect("chown");

        let mut tar = Vec::new();
        let st = s.write_diff("c", &mut tar).expect("diff");
        assert_eq!(st.size, tar.len() as u64);
        assert_eq!(
            st.diff_id,
            format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&tar))
        );

        // The entries, as a tar reader sees them.
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().expect("entries") {
            let e = e.expect("entry");
            let p = e.path().expect("path").to_string_lossy().into_owned();
            names.push((p, e.header().entry_type()));
        }
        if let Ok(dump) = std::env::var("BERTH_DUMP_DIFF") {
            fs::write(format!("{dump}.{backend:?}.tar"), &tar).expect("dump");
        }
        for (want, kind) in [
            (".wh.dir", EntryType::Regular),
            ("etc/.wh.hosts", EntryType::Regular),
            ("etc/h2", EntryType::Link),
            ("etc/passwd", EntryType::Regular),
            ("keep/.wh.file", EntryType::Regular),
            ("abs-link", EntryType::Symlink),
            ("fifo", EntryType::Fifo),
            (long.as_str(), EntryType::Regular),
        ] {
            assert!(
                names.contains(&(want.to_string(), kind)),
                "{backend:?} {want}: {names:?}"
            );
        }
        let opaque = names.iter().any(|(n, _)| n == "op/.wh..wh..opq");
        assert_eq!(opaque, backend == Backend::Overlay, "{names:?}");
        // No entries for what did not change.
        assert!(
            !names.iter().any(|(n, _)| n.starts_with("etc/link")),
            "{names:?}"
        );

        // Apply it onto a plain copy of the parent and compare.
        let check = env.tmp.path().join("check");
        fs::create_dir(&check).expect("check");
        apply_layer(&base[..], &check, &opts()).expect("base");
        let stats = apply_layer(&tar[..], &check, &opts()).expect("diff");
        assert_eq!(stats.diff_id.as_deref(), Some(st.diff_id.as_str()));
        assert_eq!(stats.hardlinks, 1, "{backend:?}");
        let a = tree(&root);
        let b = tree(&check);
        let ka: Vec<_> = a.keys().collect();
        let kb: Vec<_> = b.keys().collect();
        assert_eq!(ka, kb, "{backend:?}");
        for (k, v) in &a {
            assert_eq!(Some(v), b.get(k), "{backend:?} {}", k.display());
        }
        assert_eq!(
            fs::metadata(check.join("etc/h1")).expect("h1").ino(),
            fs::metadata(check.join("etc/h2")).expect("h2").ino()
        );
        unmount(&root).expect("unmount");
        drop(s);
        assert!(env.mounted().is_empty());
    }
}

#[test]
fn failed_unpack_leaves_nothing() {
    if !need_root() {
        return;
    }
    for backend in BACKENDS {
        let env = Env::new();
        let s = env.open(Some(backend));
        s.unpack_layer("p-", None, "l1", &base_layer()[..], &opts(), None)
            .expect("l1");
        let bad = layer(&[E::File("ok", "x"), E::Char("dev/null", 1, 3)]);
        let err = s
            .unpack_layer(
                "p-",
                Some("l1"),
                "l2",
                &bad[..],
                &ApplyOptions::default(),
                None,
            )
            .expect_err("devices refused");
        assert!(matches!(err, SnapshotError::Layer { .. }), "{err}");
        assert!(err.to_string().starts_with("unpack l2: "), "{err}");
        let names: Vec<String> = s
            .list()
            .expect("list")
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["l1"]);
        assert_eq!(
            super::copy::names(&env.root().join("snapshots"))
                .expect("n")
                .len(),
            1
        );
        assert!(
            super::copy::names(&env.root().join("mnt"))
                .expect("mnt")
                .is_empty()
        );
        assert!(s.cleanup().expect("cleanup").is_empty());
        drop(s);
        assert!(env.mounted().is_empty());
    }
}

#[test]
fn many_stacked_layers_mount() {
    if !need_root() {
        return;
    }
    let env = Env::new();
    let s = env.open(Some(Backend::Overlay));
    let mut parent: Option<String> = None;
    for i in 0..120 {
        let name = format!("f{i}");
        let l = layer(&[E::File(&name, "x")]);
        let chain = format!("sha256:{i:064x}");
        s.unpack_layer("", parent.as_deref(), &chain, &l[..], &opts(), None)
            .expect("unpack");
        parent = Some(chain);
    }
    let m = s
        .prepare("c", parent.as_deref(), Labels::new())
        .expect("prepare");
    let opts_len: usize = m[0].options.iter().map(String::len).sum();
    assert!(opts_len > 4096, "only {opts_len} bytes of options");
    let root = env.mount(&m, "c");
    for i in 0..120 {
        assert!(root.join(format!("f{i}")).is_file(), "f{i}");
    }
    fs::write(root.join("w"), "w").expect("write");
    unmount(&root).expect("unmount");

    // The fsopen path on its own (this kernel has `lowerdir+`).
    let target = env.tmp.path().join("m/fsopen");
    fs::create_dir_all(&target).expect("mkdir");
    fsopen_overlay(&parse_overlay(&m[0]), &target, true).expect("fsopen");
    assert!(target.join("f119").is_file() && fs::write(target.join("ro"), "x").is_err());
    unmount(&target).expect("unmount");

    // The fallback for kernels without `lowerdir+`.
    let target = env.tmp.path().join("m/fd");
    fs::create_dir_all(&target).expect("mkdir");
    by_fd_paths(&parse_overlay(&m[0]), &target, false).expect("fd paths");
    assert!(
        target.join("f0").is_file() && target.join("f119").is_file() && target.join("w").is_file()
    );
    unmount(&target).expect("unmount");

    // A read-only view of all of them.
    let v = env.mount(
        &s.view("v", parent.as_deref(), Labels::new()).expect("view"),
        "v",
    );
    assert!(v.join("f0").is_file() && v.join("f119").is_file());
    unmount(&v).expect("unmount");
    drop(s);
    assert!(env.mounted().is_empty());
}

#[test]
fn crash_leftovers_are_removed_on_open() {
    if !need_root() {
        return;
    }
    for backend in BACKENDS {
        let env = Env::new();
        let s = env.open(Some(backend));
        s.unpack_layer("", None, "l1", &base_layer()[..], &opts(), None)
            .expect("l1");
        let kept = s
            .prepare("container", Some("l1"), Labels::new())
            .expect("c");
        drop(kept);
        let snaps = env.root().join("snapshots");
        let before = super::copy::names(&snaps).expect("names");
        // A create that died before its commit (temp dir), one that died
        // between rename and commit (a numbered dir without a record).
        fs::create_dir_all(snaps.join("new-123-456-0/fs/etc")).expect("new");
        fs::create_dir_all(snaps.join("999/fs")).expect("999");
        fs::write(snaps.join("999/fs/file"), "x").expect("file");
        // An unpack that died mounted.
        let mut labels = Labels::new();
        labels.insert(UNPACK_LABEL.into(), "sha256:dead".into());
        let m = s
            .prepare("unpack-sha256:dead-1", Some("l1"), labels)
            .expect("unpack");
        let mnt = env.root().join("mnt/unpack-1");
        fs::create_dir_all(&mnt).expect("mnt");
        mount_all(&m, &mnt).expect("mount");
        fs::write(mnt.join("half"), "x").expect("half");
        drop(s);

        let s = env.open(None);
        assert_eq!(s.backend(), backend);
        let names: Vec<String> = s
            .list()
            .expect("list")
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["container", "l1"]);
        assert_eq!(super::copy::names(&snaps).expect("names"), before);
        assert!(
            super::copy::names(&env.root().join("mnt"))
                .expect("mnt")
                .is_empty()
        );
        assert!(env.mounted().is_empty());
        let root = env.mount(&s.mounts("container").expect("mounts"), "c");
        assert!(root.join("etc/passwd").is_file());
        unmount(&root).expect("unmount");
        drop(s);
        assert!(env.mounted().is_empty());
    }
}

#[test]
fn copy_backend_preserves_metadata() {
    if !need_root() {
        return;
    }
    let env = Env::new();
    let s = env.open(Some(Backend::Copy));
    let l = layer(&[
        E::Dir("d"),
        E::Owned("d/owned", "secret", 1000, ("user.k", "v")),
        E::Link("d/hard", "d/owned"),
        E::Char("d/null", 1, 3),
        E::Fifo("d/fifo"),
        E::Sym("d/sym", "owned"),
    ]);
    s.unpack_layer("", None, "l1", &l[..], &opts(), None)
        .expect("l1");
    s.prepare("c", Some("l1"), Labels::new()).expect("c");
    let parent = s.layout("l1").expect("l1").fs;
    let child = s.layout("c").expect("c").fs;
    assert_ne!(parent, child);
    let (a, b) = (tree(&parent), tree(&child));
    assert_eq!(a, b);
    let owned = fs::symlink_metadata(child.join("d/owned")).expect("owned");
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 1000, 0o640)
    );
    assert_eq!(owned.mtime(), 1_600_000_000);
    assert_eq!(owned.nlink(), 2);
    assert_eq!(
        owned.ino(),
        fs::symlink_metadata(child.join("d/hard"))
            .expect("hard")
            .ino()
    );
    assert_ne!(
        owned.ino(),
        fs::symlink_metadata(parent.join("d/owned"))
            .expect("p")
            .ino()
    );
    assert_eq!(
        super::copy::get_xattr(&child.join("d/owned"), "user.k".as_ref()).expect("xattr"),
        Some(b"v".to_vec())
    );
    let null = fs::symlink_metadata(child.join("d/null")).expect("null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert!(
        fs::symlink_metadata(child.join("d/fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo()
    );

    // copy_tree on its own.
    let dst = env.tmp.path().join("copy");
    fs::create_dir(&dst).expect("dst");
    copy_tree(&child, &dst).expect("copy");
    assert_eq!(tree(&dst), b);
    drop(s);
    assert!(env.mounted().is_empty());
}
