//! Mounting what [`Snapshotter::mounts`](super::Snapshotter::mounts) returns.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use super::{Mount, SnapshotError};

/// Longest option string given to mount(2): the kernel copies one page.
const MAX_OPTIONS: usize = 4095;

/// Mount `mounts` (in order) on the directory `target`.
///
/// `bind` mounts are recursive binds, remounted read-only with `ro`.
/// `overlay` mounts with an option string that fits in a page use
/// mount(2); longer ones (many lower dirs) use the fsopen API with one
/// `lowerdir+` per layer, or, on kernels without it, mount(2) with the lower
/// dirs given as short `/proc/self/fd/N` paths.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), SnapshotError> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = unmount(target);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Whether something is mounted at `target`: asked of statx (the root of
/// a mount says so, kernel 5.8 on), else read in /proc/self/mountinfo.
pub fn is_mountpoint(target: &Path) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    match statx(
        CWD,
        target,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) {
        Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(Errno::NOENT | Errno::NOTDIR) => false,
        _ => super::snapshotter::mounts_under(target).is_ok_and(|m| m.iter().any(|p| p == target)),
    }
}

/// Detach the mount on `target` (lazily, `MNT_DETACH`).
pub fn unmount(target: &Path) -> Result<(), SnapshotError> {
    rustix::mount::unmount(target, UnmountFlags::DETACH)
        .map_err(|e| SnapshotError::io("unmount", target, e))
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), SnapshotError> {
    let ro = m.options.iter().any(|o| o == "ro");
    match m.kind.as_str() {
        "bind" | "rbind" => {
            rustix::mount::mount_bind_recursive(m.source.as_str(), target)
                .map_err(|e| SnapshotError::io(format!("bind mount {} on", m.source), target, e))?;
            let remount =
                || rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, c"");
            if let Some(Err(e)) = ro.then(remount) {
                let _ = unmount(target);
                return Err(SnapshotError::io("remount read-only", target, e));
            }
            Ok(())
        }
        "overlay" => mount_overlay(m, target, ro),
        other => Err(SnapshotError::io(
            format!("mount type {other} on"),
            target,
            Errno::NODEV,
        )),
    }
}

/// Options of an overlay mount, split.
pub(super) struct Overlay {
    lower: Vec<PathBuf>,
    upper: Option<String>,
    work: Option<String>,
    other: Vec<String>,
}

pub(super) fn parse_overlay(m: &Mount) -> Overlay {
    let mut o = Overlay {
        lower: Vec::new(),
        upper: None,
        work: None,
        other: Vec::new(),
    };
    for opt in &m.options {
        if let Some(v) = opt.strip_prefix("lowerdir=") {
            o.lower = v.split(':').map(PathBuf::from).collect();
        } else if let Some(v) = opt.strip_prefix("upperdir=") {
            o.upper = Some(v.to_string());
        } else if let Some(v) = opt.strip_prefix("workdir=") {
            o.work = Some(v.to_string());
        } else if opt != "ro" && opt != "rw" {
            o.other.push(opt.clone());
        }
    }
    o
}

fn data_string(o: &Overlay, lower: &[String]) -> String {
    let mut parts = vec![format!("lowerdir={}", lower.join(":"))];
    if let Some(u) = &o.upper {
        parts.push(format!("upperdir={u}"));
    }
    if let Some(w) = &o.work {
        parts.push(format!("workdir={w}"));
    }
    parts.extend(o.other.iter().cloned());
    parts.join(",")
}

fn mount_overlay(m: &Mount, target: &Path, ro: bool) -> Result<(), SnapshotError> {
    let o = parse_overlay(m);
    let lower: Vec<String> = o
        .lower
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let data = data_string(&o, &lower);
    if data.len() <= MAX_OPTIONS {
        return legacy(&data, target, ro);
    }
    match fsopen_overlay(&o, target, ro) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::PERM) => by_fd_paths(&o, target, ro),
        Err(e) => Err(SnapshotError::io("mount overlay (fsopen) on", target, e)),
    }
}

fn legacy(data: &str, target: &Path, ro: bool) -> Result<(), SnapshotError> {
    let flags = if ro {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    let data = std::ffi::CString::new(data)
        .map_err(|e| SnapshotError::io("mount overlay on", target, io::Error::other(e)))?;
    rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str())
        .map_err(|e| SnapshotError::io("mount overlay on", target, e))
}

/// The new mount API, one `lowerdir+` per layer (Linux 6.8+).
pub(super) fn fsopen_overlay(o: &Overlay, target: &Path, ro: bool) -> Result<(), Errno> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in &o.lower {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    if let Some(u) = &o.upper {
        rustix::mount::fsconfig_set_string(&fs, "upperdir", u.as_str())?;
    }
    if let Some(w) = &o.work {
        rustix::mount::fsconfig_set_string(&fs, "workdir", w.as_str())?;
    }
    for opt in &o.other {
        match opt.split_once('=') {
            Some((k, v)) => rustix::mount::fsconfig_set_string(&fs, k, v)?,
            None => rustix::mount::fsconfig_set_flag(&fs, opt.as_str())?,
        }
    }
    rustix::mount::fsconfig_create(&fs)?;
    let attrs = if ro {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    rustix::mount::move_mount(
        &mnt,
        c"",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// mount(2) with each lower dir named `/proc/self/fd/N` (held open for the
/// call): about 17 bytes a layer.
pub(super) fn by_fd_paths(o: &Overlay, target: &Path, ro: bool) -> Result<(), SnapshotError> {
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(o.lower.len());
    for l in &o.lower {
        let fd = rustix::fs::open(
            l,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SnapshotError::io("open lower dir", l, e))?;
        fds.push(fd);
    }
    let lower: Vec<String> = fds
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
        .collect();
    let data = data_string(o, &lower);
    if data.len() > MAX_OPTIONS {
        return Err(SnapshotError::io(
            format!("mount overlay with {} lower dirs on", o.lower.len()),
            target,
            Errno::TOOBIG,
        ));
    }
    legacy(&data, target, ro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountpoints_are_told_from_plain_directories() {
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(is_mountpoint(Path::new("/")));
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_mountpoint(dir.path()));
        assert!(!is_mountpoint(&dir.path().join("missing")));
        if std::env::var("BERTH_TEST_ROOT").as_deref() == Ok("1") {
            let target = dir.path().join("m");
            std::fs::create_dir(&target).expect("mkdir");
            rustix::mount::mount("tmpfs", &target, "tmpfs", MountFlags::empty(), None)
                .expect("mount tmpfs");
            let mounted = is_mountpoint(&target);
            unmount(&target).expect("unmount");
            assert!(mounted);
            assert!(!is_mountpoint(&target));
        }
    }
}
