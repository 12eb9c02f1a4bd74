use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::error::{Result, RuntimeError};

/// `struct clone_args` of clone3(2), the fields berth uses.
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of the fork we are on.
#[derive(Debug)]
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// Fork with clone3: like fork(2), the child runs on a copy of the caller's
/// stack, but it can start in new namespaces (`flags`) and, with
/// `CLONE_PARENT`, as a sibling of the caller.
///
/// The caller must be single-threaded: the child gets only the calling
/// thread, so a lock held by another thread would never be released.
pub fn fork(flags: CloneFlags) -> Result<Forked> {
    fork_into(flags, None)
}

/// `CLONE_INTO_CGROUP`: the child starts in the cgroup (v2) behind the fd.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Like [`fork`], and on cgroup v2 start the child directly in the cgroup
/// whose directory `cgroup` is open (no later migration, no lock).
pub fn fork_into(flags: CloneFlags, cgroup: Option<std::os::fd::BorrowedFd<'_>>) -> Result<Forked> {
    let mut args = CloneArgs {
        flags: u64::from(flags.bits() as u32),
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        use std::os::fd::AsRawFd;
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 with stack 0 behaves like fork: the child continues on
    // a copy-on-write copy of this thread's stack. `args` is a valid,
    // correctly sized clone_args that outlives the call. The process is
    // single-threaded (documented precondition), so the child inherits no
    // lock held by another thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(RuntimeError::sys(
            format!("clone3 with flags {flags:?}"),
            nix::Error::last(),
        )),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Make the caller a child subreaper, so that grandchildren forked by an
/// intermediate process (to enter a pid namespace) become its children.
pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| RuntimeError::sys("prctl(PR_SET_CHILD_SUBREAPER)", e))
}

/// Whether the calling process has exactly one thread.
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim() == "1"))
        })
        .unwrap_or(false)
}
