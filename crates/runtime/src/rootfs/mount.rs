//! Mount primitives that take file descriptors, not paths.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use crate::error::{Context, Result, RuntimeError};
use crate::rootfs::options::MountOptions;
use crate::rootfs::resolve::fd_path;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Attributes to set and clear on a detached mount tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attrs {
    set: u64,
    clear: u64,
    propagation: u64,
}

impl Attrs {
    /// Read-only (and nothing else).
    pub fn readonly() -> Self {
        Attrs {
            set: MOUNT_ATTR_RDONLY,
            ..Default::default()
        }
    }

    /// From mount(2) flags and the flags explicitly cleared.
    pub fn from_flags(flags: MsFlags, clear: MsFlags) -> Self {
        let mut a = Attrs::default();
        let pairs = [
            (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
            (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
            (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
            (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
            (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
        ];
        for (ms, attr) in pairs {
            if flags.contains(ms) {
                a.set |= attr;
            }
            if clear.contains(ms) {
                a.clear |= attr;
            }
        }
        if flags.contains(MsFlags::MS_NOATIME) {
            a.clear |= MOUNT_ATTR_ATIME_MASK;
            a.set |= MOUNT_ATTR_NOATIME;
        } else if flags.contains(MsFlags::MS_STRICTATIME) {
            a.clear |= MOUNT_ATTR_ATIME_MASK;
            a.set |= MOUNT_ATTR_STRICTATIME;
        } else if flags.contains(MsFlags::MS_RELATIME) {
            a.clear |= MOUNT_ATTR_ATIME_MASK;
        }
        a
    }

    /// From a recursive-attribute option such as `rro` or `rnosuid`.
    pub fn add_recursive_option(&mut self, opt: &str) {
        let (set, clear) = match opt {
            "rro" => (MOUNT_ATTR_RDONLY, 0),
            "rrw" => (0, MOUNT_ATTR_RDONLY),
            "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
            "rsuid" => (0, MOUNT_ATTR_NOSUID),
            "rnodev" => (MOUNT_ATTR_NODEV, 0),
            "rdev" => (0, MOUNT_ATTR_NODEV),
            "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
            "rexec" => (0, MOUNT_ATTR_NOEXEC),
            "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
            "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
            "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME_MASK),
            "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME_MASK),
            "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => (0, MOUNT_ATTR_ATIME_MASK),
            _ => (0, 0),
        };
        self.set |= set;
        self.clear |= clear;
    }

    fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0 && self.propagation == 0
    }
}

fn setattr(
    tree: BorrowedFd<'_>,
    attrs: Attrs,
    recursive: bool,
    userns: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let mut attr = MountAttr {
        attr_set: attrs.set,
        attr_clr: attrs.clear,
        propagation: attrs.propagation,
        userns_fd: 0,
    };
    if let Some(ns) = userns {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = ns.as_raw_fd() as u64;
    }
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: mount_setattr reads `attr` (a valid, correctly sized
    // mount_attr) and the empty C string; `tree` is a live fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret != 0 {
        return Err(RuntimeError::sys("mount_setattr", nix::Error::last()));
    }
    Ok(())
}

/// Bind `source` (a host path, or an fd with an empty path) onto `target`
/// with its attributes applied before the mount becomes visible.
pub fn bind(
    source_dir: BorrowedFd<'_>,
    source: &Path,
    target: BorrowedFd<'_>,
    recursive: bool,
    attrs: Attrs,
    recursive_attrs: Attrs,
    idmap_userns: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    if source.as_os_str().is_empty() {
        flags |= OpenTreeFlags::AT_EMPTY_PATH;
    }
    let tree: OwnedFd = rustix::mount::open_tree(source_dir, source, flags)
        .with_context(|| format!("open_tree {}", source.display()))?;
    if !attrs.is_empty() || idmap_userns.is_some() {
        setattr(tree.as_fd(), attrs, false, idmap_userns).map_err(|e| {
            RuntimeError::InvalidArgument(format!("bind {}: {e}", source.display()))
        })?;
    }
    if !recursive_attrs.is_empty() {
        setattr(tree.as_fd(), recursive_attrs, true, None).map_err(|e| {
            RuntimeError::InvalidArgument(format!("bind {}: {e}", source.display()))
        })?;
    }
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .with_context(|| format!("move_mount {}", source.display()))
}

/// Bind the file or directory behind `source` (an fd, no path lookup) onto
/// `target`, non-recursively and with no attribute changes.
pub fn bind_fd(source: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<()> {
    bind(
        source,
        Path::new(""),
        target,
        false,
        Attrs::default(),
        Attrs::default(),
        None,
    )
}

/// Mount a filesystem (proc, tmpfs, sysfs, …) on the directory behind `target`.
pub fn mount_fs(
    source: Option<&Path>,
    target: BorrowedFd<'_>,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<()> {
    let data = (!data.is_empty()).then_some(data);
    nix::mount::mount(
        source.or(Some(Path::new(fstype))),
        fd_path(target).as_str(),
        Some(fstype),
        flags,
        data,
    )
    .with_context(|| format!("mount {fstype}"))
}

/// Change propagation of the mount at `target`.
pub fn propagate(target: &str, flags: MsFlags) -> Result<()> {
    nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("set propagation {flags:?} on {target}"))
}

/// A detached tree of `source` with the container's id mapping applied
/// (`idmap`; recursive for `ridmap`/`rbind`), made by the runtime on the
/// host: only a process with CAP_SYS_ADMIN over the source filesystem may
/// create idmapped mounts.
pub fn idmapped_tree(
    source: &Path,
    recursive: bool,
    attrs: Attrs,
    userns: BorrowedFd<'_>,
) -> Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree: OwnedFd = rustix::mount::open_tree(rustix::fs::CWD, source, flags)
        .with_context(|| format!("open_tree {}", source.display()))?;
    setattr(tree.as_fd(), Attrs::default(), recursive, Some(userns))
        .map_err(|e| RuntimeError::InvalidArgument(format!("idmap {}: {e}", source.display())))?;
    if !attrs.is_empty() {
        setattr(tree.as_fd(), attrs, false, None)?;
    }
    Ok(tree)
}

/// Attach a detached tree onto `target`.
pub fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<()> {
    rustix::mount::move_mount(
        tree,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .context("move_mount")
}

/// Make a detached mount tree read-only (the runtime's own binary, see
/// [`crate::exe`]).
pub fn set_readonly(tree: BorrowedFd<'_>) -> Result<()> {
    setattr(tree, Attrs::readonly(), false, None)
}

/// Apply flags from a config.json mount to an already bound mount tree at
/// `target` (used for recursive ro on read-only paths, for instance).
pub fn make_readonly_recursive(target: BorrowedFd<'_>) -> Result<()> {
    let tree: OwnedFd = rustix::mount::open_tree(
        target,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .context("open_tree for a read-only path")?;
    setattr(tree.as_fd(), Attrs::readonly(), true, None)?;
    rustix::mount::move_mount(
        tree.as_fd(),
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .context("move_mount for a read-only path")
}

/// Parsed options converted into mount_setattr attributes:
/// (top-level, recursive).
pub fn attrs_of(o: &MountOptions) -> (Attrs, Attrs) {
    let top = Attrs::from_flags(o.flags, o.clear);
    let mut rec = Attrs::default();
    for r in &o.recursive_attrs {
        rec.add_recursive_option(r);
    }
    (top, rec)
}
