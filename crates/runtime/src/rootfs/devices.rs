//! /dev inside the container: the default device set, config.json devices,
//! the standard symlinks, and /dev/console.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::{FileType, Mode, OFlags};

use crate::error::{Context, Result, RuntimeError};
use crate::rootfs::mount;
use crate::rootfs::resolve;

/// A device node to create.
#[derive(Debug, Clone)]
pub struct Device {
    path: PathBuf,
    kind: FileType,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The devices every container gets (the OCI spec's default set; ptmx, pts,
/// shm and console come from mounts and symlinks).
pub fn defaults() -> Vec<Device> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Device {
        path: PathBuf::from("/dev").join(name),
        kind: FileType::CharacterDevice,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Convert `linux.devices[i]`.
pub fn from_spec(i: usize, d: &LinuxDevice) -> Result<Device> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => FileType::CharacterDevice,
        LinuxDeviceType::B => FileType::BlockDevice,
        LinuxDeviceType::P => FileType::Fifo,
        LinuxDeviceType::A => {
            return Err(RuntimeError::spec(
                format!("linux.devices[{i}].type"),
                "type \"a\" is only valid in device cgroup rules",
            ));
        }
    };
    let num = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| {
            RuntimeError::spec(
                format!("linux.devices[{i}].{what}"),
                format!("{v} is out of range"),
            )
        })
    };
    Ok(Device {
        path: d.path().clone(),
        kind,
        major: num(d.major(), "major")?,
        minor: num(d.minor(), "minor")?,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Create `dev` inside `root`: mknod, or in a user namespace (where mknod
/// is not allowed) a bind mount of the host's node onto an empty file.
pub fn create(root: BorrowedFd<'_>, dev: &Device, bind_from_host: bool) -> Result<()> {
    let parent = dev.path.parent().unwrap_or(Path::new("/dev"));
    let name = dev.path.file_name().ok_or_else(|| {
        RuntimeError::InvalidArgument(format!("bad device path {}", dev.path.display()))
    })?;
    let dir_path = resolve::mkdir_all(root, parent)?;
    let dir = rustix::fs::openat(
        dir_path.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", parent.display()))?;
    match rustix::fs::unlinkat(dir.as_fd(), name, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(RuntimeError::io(
                format!("replace {}", dev.path.display()),
                e.into(),
            ));
        }
    }
    if bind_from_host {
        let target = resolve::create_file(root, &dev.path)?;
        let host = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open(&dev.path)
                .with_context(|| format!("open host device {}", dev.path.display()))?
        };
        // Only the device asked for: the host node must have its type and number.
        let st = rustix::fs::fstat(&host)
            .with_context(|| format!("stat host device {}", dev.path.display()))?;
        if FileType::from_raw_mode(st.st_mode) != dev.kind
            || rustix::fs::major(st.st_rdev) != dev.major
            || rustix::fs::minor(st.st_rdev) != dev.minor
        {
            return Err(RuntimeError::InvalidArgument(format!(
                "host {} is not the device {}:{} the container asks for",
                dev.path.display(),
                dev.major,
                dev.minor
            )));
        }
        return mount::bind_fd(host.as_fd(), target.as_fd());
    }
    let devnum = rustix::fs::makedev(dev.major, dev.minor);
    rustix::fs::mknodat(
        dir.as_fd(),
        name,
        dev.kind,
        Mode::from_raw_mode(dev.mode),
        devnum,
    )
    .with_context(|| format!("mknod {}", dev.path.display()))?;
    // mknod honours the umask; set the exact mode and owner.
    rustix::fs::chmodat(
        dir.as_fd(),
        name,
        Mode::from_raw_mode(dev.mode),
        rustix::fs::AtFlags::empty(),
    )
    .with_context(|| format!("chmod {}", dev.path.display()))?;
    rustix::fs::chownat(
        dir.as_fd(),
        name,
        Some(rustix::fs::Uid::from_raw(dev.uid)),
        Some(rustix::fs::Gid::from_raw(dev.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("chown {}", dev.path.display()))
}

/// The standard /dev symlinks.
pub fn symlinks(root: BorrowedFd<'_>) -> Result<()> {
    let dev = resolve::mkdir_all(root, Path::new("/dev"))?;
    let dev = rustix::fs::openat(
        dev.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context("open /dev")?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            let _ = rustix::fs::unlinkat(dev.as_fd(), name, rustix::fs::AtFlags::empty());
        }
        match rustix::fs::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(RuntimeError::io(format!("symlink /dev/{name}"), e.into())),
        }
    }
    Ok(())
}

/// Bind the console's pty slave (by fd) onto /dev/console. The target is
/// created by us as a regular file and opened without following links
/// (CVE-2025-52565: a racing symlink at /dev/console must not redirect the
/// bind).
pub fn console(root: BorrowedFd<'_>, slave: BorrowedFd<'_>) -> Result<()> {
    let target = resolve::create_file(root, Path::new("/dev/console"))?;
    let st = rustix::fs::fstat(target.as_fd()).context("stat /dev/console")?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(RuntimeError::InvalidArgument(
            "/dev/console in the container is not a regular file; refusing to bind the console over it".into(),
        ));
    }
    mount::bind_fd(slave, target.as_fd())
}
