//! OCI whiteouts: removal relative to directory fds, never following
//! symlinks.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Prefix of a whiteout file name.
pub(super) const PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub(super) const OPAQUE: &str = ".wh..wh..opq";

/// Open `name` in `dir` as a readable directory, refusing symlinks.
fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in a directory, without `.` and `..`.
fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Remove `name` in `dir` and, if it is a directory (not a symlink to one),
/// everything under it. A missing entry is not an error.
pub(super) fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = open_dir(dir, name)?;
        for child in list(sub.as_fd())? {
            remove_all(sub.as_fd(), &child)?;
        }
        drop(sub);
        match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    } else {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Apply an opaque marker: remove from `dir` (at `rel` inside the root)
/// everything this layer did not put there. Directories this layer touched
/// that already existed in a lower layer are cleared the same way, so the
/// result does not depend on where the marker appears in the tar.
pub(super) fn clear_opaque(
    dir: BorrowedFd<'_>,
    rel: &Path,
    touched: &HashSet<PathBuf>,
) -> io::Result<()> {
    let dir = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for name in list(dir.as_fd())? {
        let child = rel.join(&name);
        if !touched.contains(&child) {
            remove_all(dir.as_fd(), &name)?;
            continue;
        }
        let st = rustix::fs::statat(dir.as_fd(), &name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = open_dir(dir.as_fd(), &name)?;
            clear_opaque(sub.as_fd(), &child, touched)?;
        }
    }
    Ok(())
}
