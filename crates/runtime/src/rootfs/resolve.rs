//! Path resolution inside the container's root, by file descriptor.
//!
//! Every path in config.json that points into the rootfs is resolved with
//! `openat2(RESOLVE_IN_ROOT)` from an fd of the rootfs: `..`, absolute
//! symlinks and symlink chains all stay inside it, and a symlink swapped in
//! after the check cannot redirect a mount (CVE-2021-30465) because the
//! mount then targets `/proc/self/fd/N` of the fd we resolved.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Result, RuntimeError};

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// The path relative to the root ("/a/b" → "a/b"), refusing nothing: `..`
/// is harmless under RESOLVE_IN_ROOT.
fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Open `path` inside `root` with `flags` (O_PATH added when no access mode
/// is wanted by the caller).
pub fn open(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    loop {
        match rustix::fs::openat2(root, rel, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Open a directory inside `root`, creating missing components (mode 0755).
pub fn mkdir_all(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    // Most destinations exist already: one lookup.
    if let Ok(fd) = open(root, path, OFlags::PATH | OFlags::DIRECTORY) {
        return Ok(fd);
    }
    let names: Option<Vec<&std::ffi::OsStr>> = relative(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir | Component::RootDir))
        .map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    match names {
        Some(names) => mkdir_below_deepest(root, path, &names),
        None => mkdir_all_walking(root, path),
    }
}

/// [`mkdir_all`] of a path without `..`: from its deepest existing
/// ancestor (found within `root` as any path), each missing directory made
/// and then opened from its parent's fd, never through a symlink (one that
/// appears there meanwhile is an error, not followed).
fn mkdir_below_deepest(
    root: BorrowedFd<'_>,
    path: &Path,
    names: &[&std::ffi::OsStr],
) -> Result<OwnedFd> {
    let mut have = names.len();
    let mut current = loop {
        if have == 0 {
            break open(root, Path::new("/"), OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| err("open the container root", e))?;
        }
        have -= 1;
        let prefix: std::path::PathBuf = names[..have].iter().collect();
        match open(root, &prefix, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => break fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(err(&format!("/{}", prefix.display()), e)),
        }
    };
    for name in &names[have..] {
        match rustix::fs::mkdirat(current.as_fd(), *name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(err(&format!("mkdir {}", path.display()), e)),
        }
        let beneath = ResolveFlags::BENEATH
            .union(ResolveFlags::NO_SYMLINKS)
            .union(ResolveFlags::NO_MAGICLINKS);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        current = loop {
            match rustix::fs::openat2(current.as_fd(), *name, flags, Mode::empty(), beneath) {
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                other => break other.map_err(|e| err(&path.display().to_string(), e))?,
            }
        };
    }
    Ok(current)
}

/// [`mkdir_all`] of any path: component by component from the root, each
/// prefix resolved within it.
fn mkdir_all_walking(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    let mut current: OwnedFd = open(root, Path::new("/"), OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| err("open the container root", e))?;
    let mut prefix = std::path::PathBuf::from("/");
    for comp in relative(path).components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            Component::ParentDir => {
                prefix.push("..");
                current = open(root, &prefix, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(|e| err(&prefix.display().to_string(), e))?;
                continue;
            }
            Component::RootDir | Component::Prefix(_) => continue,
        };
        prefix.push(name);
        match open(root, &prefix, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => current = fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(current.as_fd(), name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(err(&format!("mkdir {}", prefix.display()), e)),
                }
                current = open(root, &prefix, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(|e| err(&prefix.display().to_string(), e))?;
            }
            Err(e) => return Err(err(&prefix.display().to_string(), e)),
        }
    }
    Ok(current)
}

/// Like [`create_file`], but an existing symlink at `path` is followed
/// (inside `root`), as runc does for bind mount destinations such as an
/// image's `/etc/resolv.conf -> ../run/resolv.conf`.
pub fn create_file_following(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    match open(root, path, OFlags::PATH) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => create_file(root, path),
        Err(e) => Err(err(&path.display().to_string(), e)),
    }
}

/// Open (creating it empty if missing) a regular file inside `root` as an
/// O_PATH fd, for a file bind mount. Parent directories are created. A
/// symlink at `path` itself is not followed.
pub fn create_file(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    match open(root, path, OFlags::PATH | OFlags::NOFOLLOW) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(err(&path.display().to_string(), e)),
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| {
        RuntimeError::InvalidArgument(format!("{} has no file name", path.display()))
    })?;
    let dir = mkdir_all(root, parent)?;
    // Reopen the parent for real (O_PATH fds cannot create entries).
    let dir = rustix::fs::openat(
        dir.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(&parent.display().to_string(), e))?;
    match rustix::fs::openat(
        dir.as_fd(),
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(_) | Err(Errno::EXIST) => {}
        Err(e) => return Err(err(&format!("create {}", path.display()), e)),
    }
    open(root, path, OFlags::PATH | OFlags::NOFOLLOW)
        .map_err(|e| err(&path.display().to_string(), e))
}

/// `/proc/self/fd/N` for a file descriptor, the mount target that cannot be
/// swapped for a symlink.
pub fn fd_path(fd: impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

fn err(what: &str, e: Errno) -> RuntimeError {
    RuntimeError::io(
        format!("resolve {what} inside the container root"),
        e.into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), "host").expect("write");
        symlink("/", root.join("up")).expect("symlink");
        symlink("../../../secret", root.join("etc/rel")).expect("symlink");
        let fd = std::fs::File::open(&root).expect("open root");
        // An absolute link to "/" is the container root, not the host's.
        let d = mkdir_all(fd.as_fd(), Path::new("/up/newdir")).expect("mkdir through link");
        drop(d);
        assert!(root.join("newdir").is_dir());
        assert!(!Path::new("/newdir").exists());
        // A relative escape resolves to <root>/secret, which does not exist.
        assert_eq!(
            open(fd.as_fd(), Path::new("/etc/rel"), OFlags::RDONLY).err(),
            Some(Errno::NOENT)
        );
        let f = create_file(fd.as_fd(), Path::new("/../../a/b/file")).expect("create");
        drop(f);
        assert!(root.join("a/b/file").is_file());
    }

    #[test]
    fn mkdir_all_makes_what_is_missing_below_what_exists() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sys/fs")).expect("mkdir");
        symlink("/sys", root.join("s")).expect("symlink");
        std::fs::write(root.join("file"), "").expect("write");
        let fd = std::fs::File::open(&root).expect("open root");
        let made = mkdir_all(fd.as_fd(), Path::new("/sys/fs/cgroup/cpu")).expect("mkdir");
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| std::fs::metadata(p).expect("stat").ino();
        assert_eq!(
            ino(Path::new(&fd_path(&made))),
            ino(&root.join("sys/fs/cgroup/cpu"))
        );
        // Through a symlink to an existing directory, within the root.
        mkdir_all(fd.as_fd(), Path::new("/s/fs/cgroup/memory")).expect("mkdir via link");
        assert!(root.join("sys/fs/cgroup/memory").is_dir());
        // Several levels from the root, and a `.` on the way.
        mkdir_all(fd.as_fd(), Path::new("/a/./b/c")).expect("mkdir");
        assert!(root.join("a/b/c").is_dir());
        // A file in the way is an error, not replaced.
        assert!(mkdir_all(fd.as_fd(), Path::new("/file/x")).is_err());
        // A dangling symlink in the way is not followed out of the root.
        symlink("/nowhere/x", root.join("dangling")).expect("symlink");
        assert!(mkdir_all(fd.as_fd(), Path::new("/dangling/y")).is_err());
        assert!(!Path::new("/nowhere").exists());
    }
}
