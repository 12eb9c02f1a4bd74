//! Run the runtime from a read-only view of its own binary.
//!
//! CVE-2019-5736: a container process that execs `/proc/self/exe` of the
//! runtime (for example through a `#!/proc/self/exe` script, or by opening
//! `/proc/<init>/exe` before init execs) can reopen the runtime's binary for
//! writing once the runtime exits, and replace it on the host.
//!
//! Before creating or entering a container, the runtime re-executes itself
//! from a detached, read-only bind mount of its binary (`open_tree` +
//! `mount_setattr(MOUNT_ATTR_RDONLY)` + `execveat`), so `/proc/self/exe` of
//! every process it forks is a file on a read-only mount: opening it for
//! writing fails with EROFS. The mount is never attached anywhere, so
//! nothing shows in any mount table. This is crun's and runc 1.1's
//! "bind-fd" defence without a temporary mount point, and costs one exec,
//! not a copy of the binary. Where the new mount API is missing, a sealed
//! memfd copy (youki's and runc's other defence) is used instead.
//!
//! An installed binary marked immutable (`chattr +i`, which `make install`
//! does) is protected as it is: not even root may open an immutable file
//! for writing, so no re-exec is needed and none is done.
//!
//! Limit (shared with crun and runc's bind-fd): a container granted
//! CAP_SYS_ADMIN (or CAP_LINUX_IMMUTABLE) in the host's user namespace
//! could make the binary writable again; such a container already controls
//! the host.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mount::OpenTreeFlags;

use crate::error::{Context, Result, RuntimeError};

const SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

/// Whether this process runs from a binary that cannot be written: an
/// immutable file, a read-only mount, or a sealed memfd.
pub fn is_protected() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    if rustix::fs::ioctl_getflags(&exe).is_ok_and(|f| f.contains(rustix::fs::IFlags::IMMUTABLE)) {
        return true;
    }
    if rustix::fs::fcntl_get_seals(&exe).is_ok_and(|s| s.contains(SEALS)) {
        return true;
    }
    rustix::fs::fstatvfs(&exe)
        .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Re-execute the current program from a read-only view of its binary,
/// unless it already runs from one. On success this does not return.
pub fn ensure_protected() -> Result<()> {
    if is_protected() {
        return Ok(());
    }
    let fd = match readonly_bind() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(
                "read-only bind of the runtime binary failed ({e}); using a sealed memfd copy"
            );
            sealed_copy()?
        }
    };
    reexec(fd)
}

/// A detached read-only bind mount of /proc/self/exe.
fn readonly_bind() -> Result<OwnedFd> {
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        "/proc/self/exe",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .context("open_tree /proc/self/exe")?;
    crate::rootfs::mount::set_readonly(tree.as_fd())?;
    Ok(tree)
}

/// A sealed memfd copy of /proc/self/exe.
fn sealed_copy() -> Result<OwnedFd> {
    let mut exe = File::open("/proc/self/exe").context("open /proc/self/exe")?;
    let memfd = rustix::fs::memfd_create(
        "berth-runtime",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .context("memfd_create")?;
    let mut out = File::from(memfd);
    std::io::copy(&mut exe, &mut out).context("copy the runtime binary into a memfd")?;
    rustix::fs::fcntl_add_seals(&out, SEALS).context("seal the memfd copy")?;
    Ok(OwnedFd::from(out))
}

fn reexec(fd: OwnedFd) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| RuntimeError::InvalidArgument("argument contains a NUL byte".into()))?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv)
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| RuntimeError::InvalidArgument("environment contains a NUL byte".into()))?;
    match nix::unistd::fexecve(fd.as_fd(), &args, &env) {
        Err(e) => Err(RuntimeError::sys(
            "re-exec from a read-only view of the binary",
            e,
        )),
        Ok(never) => match never {},
    }
}
