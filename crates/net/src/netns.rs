//! Named network namespaces: a bind mount of a namespace file under a run dir
//! (`/run/berth/netns/<id>` by default), plus helpers to run code or a command inside one.
//!
//! A namespace is created in a dedicated thread that `unshare(CLONE_NEWNET)`s itself and
//! bind-mounts `/proc/self/task/<tid>/ns/net` onto the file, so no other thread of the
//! (multi-threaded, tokio) caller ever changes namespace. [`NetNs::run`] and
//! [`NetNs::spawn`] do the same with `setns` for code that must run inside.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{NetError, Result};

/// Default directory for berth's named network namespaces.
pub const DEFAULT_NETNS_DIR: &str = "/run/berth/netns";

/// A network namespace pinned by a bind-mounted file.
#[derive(Debug, Clone)]
pub struct NetNs {
    name: String,
    path: PathBuf,
}

impl NetNs {
    /// Creates a new network namespace pinned at `dir/name`. Fails if the file exists.
    ///
    /// `lo` is still down afterwards: call [`crate::link::Netlink::loopback_up`] (or
    /// [`crate::bridge::BridgeDriver::new_netns`], which makes the namespace) to bring it up.
    pub fn create(dir: &Path, name: &str) -> Result<NetNs> {
        Self::create_then(dir, name, || ()).map(|(ns, ())| ns)
    }

    /// [`NetNs::create`], then `f` on the thread that made the namespace (inside it):
    /// for what must be done or made in there (a sysctl, a netlink socket) without
    /// another thread entering it.
    pub fn create_then<T, F>(dir: &Path, name: &str, f: F) -> Result<(NetNs, T)>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = new_pin_file(dir, name)?;
        let thread_path = path.clone();
        let joined = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || -> std::result::Result<T, (&'static str, Errno)> {
                // This thread exits right after: the namespace change dies with it.
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ("unshare", e))?;
                let tid = nix::unistd::gettid();
                let src = format!("/proc/self/task/{tid}/ns/net");
                mount(
                    Some(src.as_str()),
                    &thread_path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| ("bind mount namespace file", e))?;
                Ok(f())
            })
            .map_err(|e| NetError::netns(name, "spawn thread", e))?
            .join();
        let outcome = match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err((op, errno))) => Err(NetError::netns(name, op, errno)),
            Err(_) => Err(NetError::ThreadPanicked {
                what: format!("creating network namespace {name}"),
            }),
        };
        let ns = NetNs {
            name: name.to_string(),
            path,
        };
        match outcome {
            Ok(v) => Ok((ns, v)),
            Err(e) => {
                // Unmounted too if the bind mount was made (f panicked).
                let _ = ns.delete();
                Err(e)
            }
        }
    }

    /// Pins this namespace at `dir/name` too (a bind mount of its file there) and
    /// returns that pin; this one stays until deleted. Fails if `dir/name` exists.
    /// For a file cannot be renamed while it is a mount point.
    pub fn pin_at(&self, dir: &Path, name: &str) -> Result<NetNs> {
        let path = new_pin_file(dir, name)?;
        if let Err(e) = mount(
            Some(&self.path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = std::fs::remove_file(&path);
            return Err(NetError::netns(name, "bind mount namespace file", e));
        }
        Ok(NetNs {
            name: name.to_string(),
            path,
        })
    }

    /// Refers to an existing namespace at `dir/name` (checked to exist).
    pub fn open(dir: &Path, name: &str) -> Result<NetNs> {
        check_name(name)?;
        let path = dir.join(name);
        File::open(&path).map_err(|e| NetError::netns(name, "open namespace file", e))?;
        Ok(NetNs {
            name: name.to_string(),
            path,
        })
    }

    /// Refers to any namespace file, e.g. `/proc/<pid>/ns/net` of a running container.
    pub fn from_path(path: impl Into<PathBuf>) -> NetNs {
        let path = path.into();
        NetNs {
            name: path.display().to_string(),
            path,
        }
    }

    /// The namespace's name (the file name, or the path for [`NetNs::from_path`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file; give it to an OCI spec as the `network` namespace path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace file (for `setns`, or `IFLA_NET_NS_FD`).
    pub fn open_file(&self) -> Result<File> {
        File::open(&self.path).map_err(|e| NetError::netns(&self.name, "open namespace file", e))
    }

    /// Runs `f` on a fresh thread that has joined this namespace, and waits for it.
    /// Sockets created inside `f` stay in this namespace wherever they are used later.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f)?.join()
    }

    /// Starts `f` on a new thread inside this namespace and returns its handle
    /// (for long-running servers written with blocking std sockets).
    /// `f` never runs if joining the namespace fails.
    pub fn spawn<F, T>(&self, f: F) -> Result<NsThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.open_file()?;
        let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<(), Errno>>();
        let handle = std::thread::Builder::new()
            .name(format!("in-{}", short(&self.name)))
            .spawn(move || {
                let entered = setns(file.as_fd(), CloneFlags::CLONE_NEWNET);
                drop(file);
                let ok = entered.is_ok();
                let _ = tx.send(entered);
                ok.then(f)
            })
            .map_err(|e| NetError::netns(&self.name, "spawn thread", e))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(NsThread {
                handle,
                what: format!("thread in network namespace {}", self.name),
            }),
            Ok(Err(errno)) => Err(NetError::netns(&self.name, "setns", errno)),
            Err(_) => Err(NetError::ThreadPanicked {
                what: format!("entering network namespace {}", self.name),
            }),
        }
    }

    /// Makes `cmd` join this namespace between fork and exec (like `nsenter --net`).
    pub fn command<'c>(&self, cmd: &'c mut Command) -> Result<&'c mut Command> {
        let file = self.open_file()?;
        // SAFETY: the closure runs in the forked child before exec; it only calls setns(2),
        // which is async-signal-safe, on a file descriptor the closure owns.
        unsafe {
            cmd.pre_exec(move || {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        Ok(cmd)
    }

    /// Unmounts and removes the namespace file. Idempotent: a missing file is fine.
    /// The namespace itself goes away once no process or open fd uses it.
    pub fn delete(&self) -> Result<()> {
        delete_file(&self.name, &self.path)
    }

    /// [`NetNs::delete`] by directory and name, for cleanup without a handle.
    pub fn delete_named(dir: &Path, name: &str) -> Result<()> {
        check_name(name)?;
        delete_file(name, &dir.join(name))
    }
}

/// A thread running inside a network namespace (see [`NetNs::spawn`]).
#[derive(Debug)]
pub struct NsThread<T> {
    handle: JoinHandle<Option<T>>,
    what: String,
}

impl<T> NsThread<T> {
    /// Waits for the thread and returns what its closure returned.
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            _ => Err(NetError::ThreadPanicked { what: self.what }),
        }
    }

    /// True once the closure has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Creates the (empty) file `dir/name` for a namespace to be bind-mounted on; fails if
/// it exists.
fn new_pin_file(dir: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    std::fs::create_dir_all(dir).map_err(|e| NetError::netns(name, "create run dir", e))?;
    let path = dir.join(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| NetError::netns(name, "create namespace file", e))?;
    Ok(path)
}

fn delete_file(name: &str, path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(NetError::netns(name, "unmount namespace file", e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::netns(name, "remove namespace file", e)),
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(NetError::BadName {
            name: name.to_string(),
            problem: "a namespace name must be a plain, non-empty file name",
        });
    }
    Ok(())
}

fn short(name: &str) -> &str {
    let start = name.len().saturating_sub(10);
    name.get(start..).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        assert!(check_name("abc").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("../x").is_err());
        assert!(check_name("..").is_err());
    }
}
