//! `docker cp`: stat, read and write paths inside a container. A running
//! container is reached through `/proc/<pid>/root` (its mounts included);
//! a stopped one through its root filesystem, mounted for the copy. Every
//! path is resolved inside that root (`RESOLVE_IN_ROOT`) and trees are
//! walked fd-relative, so a symlink made by the container never leads out.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_image::layer::{ApplyOptions, apply_layer};
use berth_image::snapshot::{mount_all, unmount};
use berth_runtime::rootfs::resolve;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use super::ContainerService;
use super::names::random_bytes;
use crate::error::EngineError;

/// What `X-Docker-Container-Path-Stat` carries.
#[derive(Debug, Clone, Serialize)]
pub struct PathStat {
    /// Base name.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Go's `os.FileMode` bits.
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    /// Target of a symlink.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// A root to copy in or out of; unmounts a temporary mount on drop.
struct Root {
    fd: OwnedFd,
    temp: Option<PathBuf>,
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some(t) = &self.temp {
            let _ = unmount(t);
            let _ = std::fs::remove_dir(t);
        }
    }
}

fn not_found(path: &str, id: &str) -> EngineError {
    EngineError::NotFoundPath(format!("Could not find the file {path} in container {id}"))
}

/// Go's `os.FileMode` of a `st_mode`.
fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match FileType::from_raw_mode(st_mode) {
        FileType::Directory => m |= 1 << 31,
        FileType::Symlink => m |= 1 << 27,
        FileType::Fifo => m |= 1 << 25,
        FileType::Socket => m |= 1 << 24,
        FileType::BlockDevice => m |= 1 << 26,
        FileType::CharacterDevice => m |= (1 << 26) | (1 << 21),
        _ => {}
    }
    if st_mode & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if st_mode & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if st_mode & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

impl ContainerService {
    fn copy_root(&self, name_or_id: &str) -> Result<(Root, String), EngineError> {
        let r = self.get(name_or_id)?;
        let io = |what: &str, e: std::io::Error| EngineError::io(what.to_owned(), e);
        if r.state.status.is_live() && r.state.pid > 0 {
            let p = format!("/proc/{}/root", r.state.pid);
            let fd = rustix::fs::open(
                &p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io(&format!("open {p}"), e.into()))?;
            return Ok((Root { fd, temp: None }, r.id));
        }
        let b: [u8; 6] = random_bytes()?;
        let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let dir = self.paths.bundle(&r.id).join(format!("cp-{name}"));
        std::fs::create_dir_all(&dir).map_err(|e| io(&format!("create {}", dir.display()), e))?;
        // Mounted already when it is made for a start (ahead of it, or by
        // one under way): the same mount, as an overlay's upper directory
        // must not be in two.
        let rootfs = self.paths.rootfs(&r.id);
        let mounted = if berth_image::snapshot::is_mountpoint(&rootfs) {
            rustix::mount::mount_bind(&rootfs, &dir).map_err(|e| {
                EngineError::io(format!("bind {} for the copy", rootfs.display()), e.into())
            })
        } else {
            let mounts = self
                .snapshotter
                .mounts(&r.id)
                .map_err(berth_image::store::StoreError::from)?;
            mount_all(&mounts, &dir).map_err(|e| berth_image::store::StoreError::from(e).into())
        };
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        let root = Root {
            fd: open_dir(&dir)?,
            temp: Some(dir.clone()),
        };
        // The container's volumes and bind mounts, where a running
        // container would see them (their mount points made as at start).
        // The detached unmount of the root takes them along.
        for m in &r.mount_points {
            let src = Path::new(&m.source);
            if !matches!(m.kind.as_str(), "volume" | "bind") || !src.is_dir() {
                continue;
            }
            let dest = Path::new(&m.destination);
            let Ok(fd) = resolve::mkdir_all(root.fd.as_fd(), dest) else {
                continue;
            };
            let target = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            if let Err(e) = rustix::mount::mount_bind_recursive(src, target.as_str()) {
                tracing::warn!(container = %r.id, mount = %m.destination, error = %e, "mount for copy");
                continue;
            }
            if !m.rw {
                let at = dir.join(dest.strip_prefix("/").unwrap_or(dest));
                let _ = rustix::mount::mount_remount(
                    &at,
                    rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                    c"",
                );
            }
        }
        Ok((root, r.id))
    }

    /// `docker export`: the container's root filesystem (without its
    /// mounts) as a tar.
    pub fn export(&self, name_or_id: &str, out: impl Write) -> Result<(), EngineError> {
        let r = self.get(name_or_id)?;
        let mounted = self.paths.rootfs(&r.id);
        if r.state.status.is_live() && berth_image::snapshot::is_mountpoint(&mounted) {
            berth_image::archive::export(&mounted, out)?;
            return Ok(());
        }
        let (root, _) = self.copy_root(&r.id)?;
        let dir = root.temp.clone().ok_or_else(|| {
            EngineError::Conflict(format!(
                "container {} changed state during the export",
                r.id
            ))
        })?;
        berth_image::archive::export(&dir, out)?;
        Ok(())
    }

    /// `HEAD /containers/{id}/archive`.
    pub fn path_stat(&self, name_or_id: &str, path: &str) -> Result<PathStat, EngineError> {
        let (root, id) = self.copy_root(name_or_id)?;
        stat_in(root.fd.as_fd(), path).map_err(|e| match e {
            Errno::NOENT | Errno::NOTDIR => not_found(path, &id),
            e => EngineError::io(format!("stat {path}"), e.into()),
        })
    }

    /// `GET /containers/{id}/archive`: a tar of `path` (named by its base
    /// name) written to `out`; the stat is returned first through `head`.
    pub fn archive_out(
        &self,
        name_or_id: &str,
        path: &str,
        head: impl FnOnce(&PathStat),
        out: impl Write,
    ) -> Result<(), EngineError> {
        let (root, id) = self.copy_root(name_or_id)?;
        let st = stat_in(root.fd.as_fd(), path).map_err(|e| match e {
            Errno::NOENT | Errno::NOTDIR => not_found(path, &id),
            e => EngineError::io(format!("stat {path}"), e.into()),
        })?;
        head(&st);
        let p = Path::new(path);
        let follow_dot = path.ends_with("/.") || path.ends_with('/');
        let parent = p.parent().unwrap_or(Path::new("/"));
        let base = p
            .file_name()
            .map(OsStr::to_os_string)
            .unwrap_or_else(|| OsStr::new(".").to_os_string());
        let parent_fd = resolve::open(root.fd.as_fd(), parent, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| EngineError::io(format!("open {}", parent.display()), e.into()))?;
        let mut b = tar::Builder::new(out);
        b.follow_symlinks(false);
        let (dirfd, name): (OwnedFd, std::ffi::OsString) = if follow_dot {
            let fd = resolve::open(root.fd.as_fd(), p, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| EngineError::io(format!("open {path}"), e.into()))?;
            (fd, ".".into())
        } else {
            (parent_fd, base.clone())
        };
        let tar_name = if base == "." || base.is_empty() {
            ".".to_owned()
        } else {
            base.to_string_lossy().into_owned()
        };
        append(&mut b, dirfd.as_fd(), &name, &tar_name)?;
        b.finish()
            .map_err(|e| EngineError::io("write the archive", e))?;
        Ok(())
    }

    /// `PUT /containers/{id}/archive`: extracts a tar into the directory `path`.
    pub fn archive_in(
        &self,
        name_or_id: &str,
        path: &str,
        tar: impl Read,
    ) -> Result<(), EngineError> {
        let (root, id) = self.copy_root(name_or_id)?;
        let r = self.get(&id)?;
        if r.host_config.readonly_rootfs {
            return Err(EngineError::Conflict(
                "container rootfs is marked read-only".into(),
            ));
        }
        let dir = resolve::open(
            root.fd.as_fd(),
            Path::new(path),
            OFlags::PATH | OFlags::DIRECTORY,
        )
        .map_err(|e| match e {
            Errno::NOENT => not_found(path, &id),
            Errno::NOTDIR => {
                EngineError::InvalidArgument("extraction point is not a directory".into())
            }
            e => EngineError::io(format!("open {path}"), e.into()),
        })?;
        apply_layer(
            tar,
            Path::new(&resolve::fd_path(&dir)),
            &ApplyOptions::default(),
        )
        .map_err(|e| EngineError::InvalidArgument(format!("could not extract the archive: {e}")))?;
        Ok(())
    }
}

fn open_dir(p: &Path) -> Result<OwnedFd, EngineError> {
    rustix::fs::open(
        p,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EngineError::io(format!("open {}", p.display()), e.into()))
}

fn stat_in(root: BorrowedFd<'_>, path: &str) -> Result<PathStat, Errno> {
    let p = Path::new(path);
    let fd = resolve::open(root, p, OFlags::PATH | OFlags::NOFOLLOW)?;
    let st = rustix::fs::fstat(&fd)?;
    let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        rustix::fs::readlinkat(&fd, "", Vec::new())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    Ok(PathStat {
        name: p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".to_owned()),
        size: st.st_size,
        mode: go_mode(st.st_mode),
        mtime,
        link_target,
    })
}

/// Appends `name` (in `dir`) as `tar_path`, recursing into directories.
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    tar_path: &str,
) -> Result<(), EngineError> {
    let io = |e: Errno| EngineError::io(format!("read {tar_path}"), e.into());
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    let werr = |e: std::io::Error| EngineError::io(format!("write {tar_path}"), e);
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io)?;
            let f = std::fs::File::from(fd);
            let len = f.metadata().map_err(werr)?.len();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(len);
            b.append_data(&mut h, tar_path, f.take(len)).map_err(werr)?;
        }
        FileType::Directory => {
            h.set_entry_type(tar::EntryType::Directory);
            let dir_path = if tar_path == "." {
                "./".to_owned()
            } else {
                format!("{tar_path}/")
            };
            b.append_data(&mut h, &dir_path, std::io::empty())
                .map_err(werr)?;
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io)?;
            let mut names = Vec::new();
            for e in rustix::fs::Dir::read_from(&fd).map_err(io)? {
                let e = e.map_err(io)?;
                let n = e.file_name().to_bytes();
                if n == b"." || n == b".." {
                    continue;
                }
                names.push(OsStr::from_bytes(n).to_os_string());
            }
            names.sort();
            for n in names {
                let child = if tar_path == "." {
                    n.to_string_lossy().into_owned()
                } else {
                    format!("{tar_path}/{}", n.to_string_lossy())
                };
                append(b, fd.as_fd(), &n, &child)?;
            }
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(io)?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, tar_path, OsStr::from_bytes(target.as_bytes()))
                .map_err(werr)?;
        }
        FileType::Fifo => {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, tar_path, std::io::empty())
                .map_err(werr)?;
        }
        FileType::CharacterDevice | FileType::BlockDevice => {
            h.set_entry_type(
                if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                },
            );
            let dev = st.st_rdev;
            h.set_device_major(rustix::fs::major(dev)).map_err(werr)?;
            h.set_device_minor(rustix::fs::minor(dev)).map_err(werr)?;
            b.append_data(&mut h, tar_path, std::io::empty())
                .map_err(werr)?;
        }
        _ => {}
    }
    Ok(())
}

/// What dockerd's init layer holds: mount points and files the engine
/// makes in every container. `docker diff` never lists them.
const INIT_LAYER: &[&str] = &[
    "/dev/pts",
    "/dev/shm",
    "/dev/console",
    "/proc",
    "/sys",
    "/.dockerenv",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/mtab",
];

/// `changes` without what dockerd's init layer would hide: the init
/// paths themselves, and a directory above them (`/etc`, `/dev`) that has
/// no other change below it.
pub fn hide_init_layer(
    changes: Vec<berth_image::snapshot::Change>,
) -> Vec<berth_image::snapshot::Change> {
    let is_init = |p: &Path| INIT_LAYER.iter().any(|i| p == Path::new(i));
    let kept: Vec<_> = changes.into_iter().filter(|c| !is_init(&c.path)).collect();
    let parents: Vec<PathBuf> = INIT_LAYER
        .iter()
        .filter_map(|i| Path::new(i).parent())
        .filter(|p| *p != Path::new("/"))
        .map(Path::to_path_buf)
        .collect();
    let has_child = |dir: &Path| {
        kept.iter()
            .any(|c| c.path != dir && c.path.starts_with(dir))
    };
    kept.iter()
        .filter(|c| {
            !(parents.contains(&c.path)
                && c.kind != berth_image::snapshot::ChangeKind::Deleted
                && !has_child(&c.path))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod init_layer_tests {
    use super::*;
    use berth_image::snapshot::{Change, ChangeKind};

    fn ch(kind: ChangeKind, p: &str) -> Change {
        Change {
            kind,
            path: PathBuf::from(p),
        }
    }

    #[test]
    fn init_paths_are_hidden() {
        let got = hide_init_layer(vec![
            ch(ChangeKind::Modified, "/etc"),
            ch(ChangeKind::Added, "/etc/hostname"),
            ch(ChangeKind::Added, "/etc/hosts"),
            ch(ChangeKind::Added, "/etc/resolv.conf"),
            ch(ChangeKind::Added, "/test"),
        ]);
        assert_eq!(got, vec![ch(ChangeKind::Added, "/test")]);
        // /etc stays when something else in it changed.
        let got = hide_init_layer(vec![
            ch(ChangeKind::Modified, "/etc"),
            ch(ChangeKind::Added, "/etc/hostname"),
            ch(ChangeKind::Added, "/etc/motd"),
        ]);
        assert_eq!(
            got,
            vec![
                ch(ChangeKind::Modified, "/etc"),
                ch(ChangeKind::Added, "/etc/motd")
            ]
        );
    }
}
