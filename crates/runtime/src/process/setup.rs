use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType, Process, User};

use crate::error::{Context, Result, RuntimeError};

/// Open a file under /proc for writing, and refuse it unless it really is
/// on procfs (CVE-2019-16884: a volume mounted over /proc could redirect
/// writes to /proc/self/attr/*, and CVE-2025-52881: procfs writes redirected
/// through shared mounts).
pub fn write_proc(path: &str, value: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("open {path}"))?;
    let st = rustix::fs::fstatfs(f.as_fd()).with_context(|| format!("statfs {path}"))?;
    if st.f_type != libc::PROC_SUPER_MAGIC {
        return Err(RuntimeError::InvalidArgument(format!(
            "{path} is not on procfs (filesystem type {:#x}); refusing to write to it",
            st.f_type
        )));
    }
    f.write_all(value).with_context(|| format!("write {path}"))
}

/// Switch to the process user: supplementary groups, gid, uid, keeping
/// capabilities across the uid change so that the caller can set them.
pub fn set_user(user: &User, allow_setgroups: bool) -> Result<()> {
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    if allow_setgroups {
        let mut groups: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        groups.dedup();
        nix::unistd::setgroups(&groups).context("setgroups (process.user.additionalGids)")?;
    } else if user
        .additional_gids()
        .as_ref()
        .is_some_and(|g| !g.is_empty())
    {
        return Err(RuntimeError::spec(
            "process.user.additionalGids",
            "cannot set supplementary groups: setgroups is denied in this user namespace",
        ));
    }
    nix::sys::prctl::set_keepcaps(true).context("prctl(PR_SET_KEEPCAPS)")?;
    nix::unistd::setresgid(gid, gid, gid)
        .with_context(|| format!("setresgid {gid} (process.user.gid)"))?;
    nix::unistd::setresuid(uid, uid, uid)
        .with_context(|| format!("setresuid {uid} (process.user.uid)"))?;
    nix::sys::prctl::set_keepcaps(false).context("prctl(PR_SET_KEEPCAPS)")?;
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Apply `process.rlimits`. Raising a hard limit above the current one
/// needs CAP_SYS_RESOURCE; without it the error says which limit and why.
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        let res = rlimit_resource(r.typ());
        let new = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `new` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(res, &new) } != 0 {
            let err = std::io::Error::last_os_error();
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into `cur`, a valid rlimit.
            unsafe { libc::getrlimit(res, &mut cur) };
            return Err(RuntimeError::spec(
                format!("process.rlimits {:?}", r.typ()),
                format!(
                    "cannot set soft {} hard {} (current hard limit {}; raising it needs CAP_SYS_RESOURCE): {err}",
                    r.soft(),
                    r.hard(),
                    cur.rlim_max
                ),
            ));
        }
    }
    Ok(())
}

/// Find the program to execute: a path with a slash as is (a relative one
/// from `cwd`, where it will be executed), otherwise the first executable
/// match in the process's PATH (or the default PATH).
pub fn find_executable(arg0: &str, env: &[String], cwd: &Path) -> Result<PathBuf> {
    let not_found = |why: &str| RuntimeError::Child(format!("exec: {arg0:?}: {why}"));
    if arg0.contains('/') {
        let p = cwd.join(arg0);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => {
                // As Go's exec.LookPath (runc): a file without any execute
                // bit is refused before the exec.
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o111 == 0 {
                    Err(not_found("permission denied"))
                } else {
                    Ok(p)
                }
            }
            Ok(_) => Err(not_found("is not a regular file")),
            Err(_) => Err(not_found("no such file or directory")),
        };
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = cwd.join(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(not_found("executable file not found in $PATH"))
}

/// Convert strings for execve.
pub fn cstrings(items: &[String], what: &str) -> Result<Vec<CString>> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| RuntimeError::spec(what, "contains a NUL byte"))
}

/// Give the user program the signal state a process expects: nothing
/// blocked (`run` blocks the signals it forwards) and SIGPIPE at its
/// default (the Rust runtime ignores it, and an ignored signal stays
/// ignored across execve).
pub fn reset_signals() -> Result<()> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    // SAFETY: setting SIGPIPE back to SIG_DFL installs no Rust handler.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .context("reset SIGPIPE")?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context("unblock signals")?;
    Ok(())
}

/// Replace this process with the user program.
pub fn exec(path: &Path, args: &[CString], env: &[CString]) -> RuntimeError {
    let p = match CString::new(path.as_os_str().as_bytes()) {
        Ok(p) => p,
        Err(_) => return RuntimeError::spec("process.args[0]", "contains a NUL byte"),
    };
    match nix::unistd::execve(&p, args, env) {
        Err(e) => RuntimeError::sys(format!("exec {}", path.display()), e),
        Ok(never) => match never {},
    }
}

/// Mark every fd from `first` up as close-on-exec (CVE-2024-21626: no host
/// fd may reach the container's process).
pub fn cloexec_from(first: u32) -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret != 0 {
        return Err(RuntimeError::sys("close_range", nix::Error::last()));
    }
    Ok(())
}

/// Change into the process's working directory and check it is inside the
/// container's root (CVE-2024-21626: a cwd like /proc/self/fd/N can point at
/// a host directory through a leaked fd).
pub fn enter_cwd(cwd: &Path) -> Result<()> {
    nix::unistd::chdir(cwd).with_context(|| format!("chdir to process.cwd {}", cwd.display()))?;
    let outside = || {
        RuntimeError::spec(
            "process.cwd",
            format!("{} resolves outside the container", cwd.display()),
        )
    };
    // getcwd fails with ENOENT for a directory not reachable from our root.
    let now = nix::unistd::getcwd().map_err(|_| outside())?;
    if !now.is_absolute() || now.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(outside());
    }
    Ok(())
}

/// Settings of the process that only affect itself: oom score, umask,
/// io priority, no_new_privs is separate (it must come late).
pub fn apply_process_attrs(p: &Process) -> Result<()> {
    if let Some(adj) = p.oom_score_adj() {
        write_proc("/proc/self/oom_score_adj", adj.to_string().as_bytes()).map_err(|e| {
            RuntimeError::spec(
                "process.oomScoreAdj",
                format!("cannot set {adj} (lowering it needs CAP_SYS_RESOURCE): {e}"),
            )
        })?;
    }
    if let Some(prio) = p.io_priority() {
        use oci_spec::runtime::IOPriorityClass as C;
        let class: i64 = match prio.class() {
            C::IoprioClassRt => 1,
            C::IoprioClassBe => 2,
            C::IoprioClassIdle => 3,
        };
        let value = (class << 13) | prio.priority();
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, 0 = self, value) takes plain integers.
        let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) };
        if ret != 0 {
            return Err(RuntimeError::sys(
                "process.ioPriority: ioprio_set",
                nix::Error::last(),
            ));
        }
    }
    Ok(())
}

/// Confine the next exec with process.apparmorProfile (checked available
/// at validation); the write goes through [`write_proc`].
pub fn set_apparmor(p: &Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|p| !p.is_empty()) {
        write_proc(
            "/proc/self/attr/apparmor/exec",
            format!("exec {profile}").as_bytes(),
        )
        .map_err(|e| RuntimeError::spec("process.apparmorProfile", e.to_string()))?;
    }
    Ok(())
}

/// Connect to linux.seccomp.listenerPath when the filter has NOTIFY rules
/// (done by the runtime before forking: the path is on the host).
pub fn connect_seccomp_listener(
    linux: &oci_spec::runtime::Linux,
    prog: Option<&crate::seccomp::SeccompProgram>,
) -> Result<Option<std::os::unix::net::UnixStream>> {
    let path = linux
        .seccomp()
        .as_ref()
        .and_then(|s| s.listener_path().clone());
    match (prog, path) {
        (Some(p), Some(path)) if p.needs_listener() => {
            std::os::unix::net::UnixStream::connect(&path)
                .map(Some)
                .map_err(|e| {
                    RuntimeError::spec(
                        "linux.seccomp.listenerPath",
                        format!("connect to {}: {e}", path.display()),
                    )
                })
        }
        _ => Ok(None),
    }
}

/// Hand a seccomp notify fd and the container process state to the
/// listener at linux.seccomp.listenerPath, over a connection made before
/// the process entered the container (the path is on the host).
pub fn send_notify_fd(
    spec: &oci_spec::runtime::Spec,
    listener: Option<&std::os::unix::net::UnixStream>,
    id: &str,
    bundle: &Path,
    pid: i32,
    fd: std::os::fd::OwnedFd,
) -> Result<()> {
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let (Some(path), Some(stream)) = (seccomp.and_then(|s| s.listener_path().as_ref()), listener)
    else {
        return Err(RuntimeError::spec(
            "linux.seccomp.listenerPath",
            "a SCMP_ACT_NOTIFY rule needs a listener",
        ));
    };
    let meta = seccomp.and_then(|s| s.listener_metadata().as_deref());
    let state = oci_spec::runtime::StateBuilder::default()
        .version(crate::state::OCI_VERSION)
        .id(id)
        .status(oci_spec::runtime::ContainerState::Running)
        .pid(pid)
        .bundle(bundle)
        .build()
        .map_err(|e| RuntimeError::InvalidArgument(format!("build state: {e}")))?;
    let json = crate::seccomp::container_process_state(pid, meta, state)?;
    let stream = stream
        .try_clone()
        .context("duplicate the seccomp listener connection")?;
    crate::seccomp::send_on(stream, path, fd.as_fd(), &json)?;
    Ok(())
}

/// Set the umask (process.user.umask, default 0022).
pub fn set_umask(user: &User) {
    let mask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

/// Set no_new_privs.
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")
}
