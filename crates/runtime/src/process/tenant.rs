//! A process started inside a running container (`exec`).

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::error::{Result, RuntimeError};
use crate::namespaces;
use crate::process::caps::CapSets;
use crate::process::channel::{Channel, Msg};
use crate::process::clone::{self, Forked};
use crate::process::setup;
use crate::seccomp::SeccompProgram;

/// What the exec'd process needs; built before the fork.
#[derive(Debug)]
pub struct TenantConfig {
    /// The process to run.
    pub process: Process,
    /// The container's namespaces (as open files), user first.
    pub namespaces: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Capabilities.
    pub caps: CapSets,
    /// The container's seccomp filter.
    pub seccomp: Option<SeccompProgram>,
    /// Connected console socket, when process.terminal.
    pub console_socket: Option<OwnedFd>,
    /// --preserve-fds.
    pub preserve_fds: u32,
    /// The container's spec, id and bundle (for the seccomp listener).
    pub spec: oci_spec::runtime::Spec,
    /// Container id.
    pub id: String,
    /// Bundle path.
    pub bundle: std::path::PathBuf,
    /// Connection to linux.seccomp.listenerPath, made before the fork.
    pub seccomp_listener: Option<std::os::unix::net::UnixStream>,
}

/// The first child: wait until the parent placed us in the container's
/// cgroups, join every namespace, then fork the real process (a pid
/// namespace only applies to children) and report its pid. The caller is a
/// child subreaper, so the process becomes its child when we exit.
pub fn run(cfg: TenantConfig, chan: &Channel) -> ! {
    // Inherited fds never reach the container (CVE-2024-21626), and none is
    // open while we enter it: close-on-exec from the start.
    if let Err(e) = setup::cloexec_from(3 + cfg.preserve_fds) {
        let _ = chan.send(&Msg::Error(e.full()));
        // SAFETY: _exit ends the forked child without the parent's destructors.
        unsafe { libc::_exit(1) }
    }
    let _ = nix::sys::prctl::set_dumpable(false);
    let code = match join_and_fork(&cfg, chan) {
        Ok(()) => {
            let err = match exec(&cfg, chan) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = chan.send(&Msg::Error(err.full()));
            127
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.full()));
            1
        }
    };
    // SAFETY: _exit ends the forked child without the parent's destructors.
    unsafe { libc::_exit(code) }
}

fn join_and_fork(cfg: &TenantConfig, chan: &Channel) -> Result<()> {
    chan.expect(&Msg::Go)?;
    // oom_score_adj and io priority are written here, through the host's
    // procfs before entering the container's mount namespace (a container
    // could bind other procfs files over its own /proc/<pid>/...), and are
    // inherited by the process forked below (CVE-2025-52881).
    setup::apply_process_attrs(&cfg.process)?;
    for (t, fd) in &cfg.namespaces {
        namespaces::join(*t, fd.as_fd())?;
    }
    match clone::fork(CloneFlags::empty())? {
        Forked::Parent(pid) => {
            let _ = chan.send(&Msg::Pid(pid.as_raw()));
            // SAFETY: the intermediate ends here; see run().
            unsafe { libc::_exit(0) }
        }
        Forked::Child => Ok(()),
    }
}

fn exec(cfg: &TenantConfig, chan: &Channel) -> Result<std::convert::Infallible> {
    let p = &cfg.process;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(RuntimeError::spec("process.args", "must not be empty"));
    }
    let env = p.env().clone().unwrap_or_default();
    if let Some(r) = p.rlimits() {
        setup::set_rlimits(r)?;
    }
    let pty = if p.terminal().unwrap_or(false) {
        let sock = cfg
            .console_socket
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidArgument("--tty needs --console-socket".into()))?;
        let root = std::fs::File::open("/").map_err(|e| RuntimeError::io("open /", e))?;
        let size = p
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        let pty = crate::process::console::open_in(root.as_fd(), size)?;
        crate::process::console::send_master(sock.as_fd(), pty.master.as_fd())?;
        Some(pty)
    } else {
        None
    };
    let path = setup::find_executable(&args[0], &env, p.cwd())?;
    let args_c = setup::cstrings(&args, "process.args")?;
    let env_c = setup::cstrings(&env, "process.env")?;
    setup::set_apparmor(p)?;
    // Before seccomp, which may not allow the signal syscalls.
    setup::reset_signals()?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    cfg.caps.apply_bounding()?;
    let mut notify = None;
    if let (Some(prog), false) = (&cfg.seccomp, nnp) {
        notify = prog.install()?;
    }
    let allow_setgroups =
        std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow");
    setup::set_user(p.user(), allow_setgroups)?;
    cfg.caps.apply_rest()?;
    setup::set_umask(p.user());
    setup::enter_cwd(p.cwd())?;
    if let Some(pty) = &pty {
        crate::process::console::become_session_leader(&pty.slave)?;
    }
    if nnp {
        setup::set_no_new_privs()?;
        if let Some(prog) = &cfg.seccomp {
            notify = prog.install()?;
        }
    }
    if let Some(fd) = notify {
        // Our pid as the host sees it is not known in the container's pid
        // namespace; the state carries the container's id and bundle.
        setup::send_notify_fd(
            &cfg.spec,
            cfg.seccomp_listener.as_ref(),
            &cfg.id,
            &cfg.bundle,
            nix::unistd::getpid().as_raw(),
            fd,
        )?;
    }
    chan.send(&Msg::Exec)?;
    setup::cloexec_from(3 + cfg.preserve_fds)?;
    Err(setup::exec(&path, &args_c, &env_c))
}
