//! Copying a tree for the copy backend, and filesystem helpers.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::SnapshotError;

/// The extended attributes of `path` (not following a symlink), sorted.
pub(super) fn xattrs(path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut names = vec![0u8; 256];
    loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            Err(Errno::RANGE) => {
                let want = rustix::fs::llistxattr_query(path)?;
                names.resize(want.max(names.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        if let Some(v) = get_xattr(path, name)? {
            out.push((name.to_os_string(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// One extended attribute of `path`, `None` when it is not set.
pub(super) fn get_xattr(path: &Path, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(n) => {
                value.truncate(n);
                return Ok(Some(value));
            }
            Err(Errno::RANGE) => {
                let want = rustix::fs::lgetxattr_query(path, name)?;
                value.resize(want.max(value.len() * 2), 0);
            }
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Names in a directory, sorted.
pub(super) fn names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        out.push(e?.file_name());
    }
    out.sort();
    Ok(out)
}

/// Remove a directory tree; a missing one is fine.
pub(super) fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io("remove", path, e)),
    }
}

/// Copy the tree `src` into the existing directory `dst` (whose own
/// metadata is set from `src`): modes, owners, xattrs, mtimes, symlinks,
/// device nodes, fifos, and hardlinks as hardlinks.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let mut links = HashMap::new();
    copy_dir(src, dst, &mut links)?;
    let meta = fs::symlink_metadata(src).map_err(|e| SnapshotError::io("stat", src, e))?;
    set_meta(src, dst, &meta)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), SnapshotError> {
    for name in names(src).map_err(|e| SnapshotError::io("read directory", src, e))? {
        let s = src.join(&name);
        let d = dst.join(&name);
        let meta = fs::symlink_metadata(&s).map_err(|e| SnapshotError::io("stat", &s, e))?;
        let ft = FileType::from_raw_mode(meta.mode());
        match ft {
            FileType::Directory => {
                fs::create_dir(&d).map_err(|e| SnapshotError::io("mkdir", &d, e))?;
                copy_dir(&s, &d, links)?;
            }
            FileType::RegularFile => {
                let id = (meta.dev(), meta.ino());
                if meta.nlink() > 1 {
                    if let Some(first) = links.get(&id) {
                        fs::hard_link(first, &d).map_err(|e| SnapshotError::io("link", &d, e))?;
                        continue;
                    }
                    links.insert(id, d.clone());
                }
                let mut from = File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&s)
                    .map_err(|e| SnapshotError::io("open", &s, e))?;
                let mut to = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&d)
                    .map_err(|e| SnapshotError::io("create", &d, e))?;
                io::copy(&mut from, &mut to).map_err(|e| SnapshotError::io("copy to", &d, e))?;
            }
            FileType::Symlink => {
                let target = fs::read_link(&s).map_err(|e| SnapshotError::io("readlink", &s, e))?;
                std::os::unix::fs::symlink(&target, &d)
                    .map_err(|e| SnapshotError::io("symlink", &d, e))?;
            }
            FileType::Fifo
            | FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Socket => {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &d,
                    ft,
                    Mode::from_raw_mode(0o600),
                    meta.rdev(),
                )
                .map_err(|e| SnapshotError::io("mknod", &d, e))?;
            }
            FileType::Unknown => continue,
        }
        set_meta(&s, &d, &meta)?;
    }
    Ok(())
}

// `Nsecs` is `c_long` on some 32-bit targets, `i64` elsewhere.
#[allow(clippy::useless_conversion)]
fn nsecs(n: i64) -> rustix::fs::Nsecs {
    n.try_into().unwrap_or(0)
}

/// Owner, then mode, xattrs, times of `dst` from `src`.
fn set_meta(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<(), SnapshotError> {
    let is_link = meta.file_type().is_symlink();
    rustix::fs::chownat(
        rustix::fs::CWD,
        dst,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| SnapshotError::io("chown", dst, e))?;
    if !is_link {
        rustix::fs::chmodat(
            rustix::fs::CWD,
            dst,
            Mode::from_raw_mode(meta.mode() & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| SnapshotError::io("chmod", dst, e))?;
    }
    for (name, value) in xattrs(src).map_err(|e| SnapshotError::io("list xattrs of", src, e))? {
        match rustix::fs::lsetxattr(dst, &name, &value, XattrFlags::empty()) {
            Ok(()) => {}
            // user.* xattrs are not allowed on symlinks.
            Err(Errno::PERM) if is_link => {}
            Err(e) => {
                return Err(SnapshotError::io(
                    format!("set xattr {} on", name.to_string_lossy()),
                    dst,
                    e,
                ));
            }
        }
    }
    let ts = |sec: i64, nsec: i64| Timespec {
        tv_sec: sec,
        tv_nsec: nsecs(nsec),
    };
    let times = Timestamps {
        last_access: ts(meta.atime(), meta.atime_nsec()),
        last_modification: ts(meta.mtime(), meta.mtime_nsec()),
    };
    rustix::fs::utimensat(rustix::fs::CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| SnapshotError::io("set times of", dst, e))
}

/// Bytes allocated and distinct inodes under `path` (itself included).
pub fn usage(path: &Path) -> Result<(u64, u64), SnapshotError> {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).map_err(|e| SnapshotError::io("stat", &p, e))?;
        if seen.insert((m.dev(), m.ino())) {
            bytes += m.blocks() * 512;
        }
        if m.is_dir() {
            for name in names(&p).map_err(|e| SnapshotError::io("read directory", &p, e))? {
                stack.push(p.join(name));
            }
        }
    }
    Ok((bytes, seen.len() as u64))
}
