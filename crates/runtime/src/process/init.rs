//! The container's init process: everything between clone and execve.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::Uid;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::error::{Context, Result, RuntimeError};
use crate::hooks::{self, HookKind};
use crate::namespaces::{self, Namespaces};
use crate::process::caps::CapSets;
use crate::process::channel::{Channel, Msg};
use crate::process::clone::{self, Forked};
use crate::process::setup;
use crate::rootfs::{self, RootfsPlan};
use crate::seccomp::SeccompProgram;

/// Everything the init process needs; built by `create` before the fork.
#[derive(Debug)]
pub struct InitConfig<'a> {
    /// Container id.
    pub id: &'a str,
    /// The spec.
    pub spec: &'a Spec,
    /// Absolute rootfs.
    pub rootfs: &'a Path,
    /// Absolute bundle.
    pub bundle: &'a Path,
    /// Namespaces.
    pub namespaces: &'a Namespaces,
    /// Namespaces to join, opened before the fork.
    pub joined: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Whether clone3 created all namespaces (fast path).
    pub fast: bool,
    /// The exec FIFO, opened read-write so opening never blocks; init
    /// waits for one byte on it (written by `start`).
    pub fifo: OwnedFd,
    /// Connected --console-socket.
    pub console_socket: Option<OwnedFd>,
    /// Compiled seccomp filter.
    pub seccomp: Option<SeccompProgram>,
    /// --no-pivot.
    pub no_pivot: bool,
    /// --no-new-keyring.
    pub no_new_keyring: bool,
    /// --preserve-fds.
    pub preserve_fds: u32,
    /// Cgroup dirs to show in the container's /sys/fs/cgroup.
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    /// Mount a fresh cgroup2 (pure v2 host with a cgroup namespace).
    pub fresh_cgroup2: bool,
    /// Capabilities, resolved before the fork.
    pub caps: CapSets,
    /// Connection to linux.seccomp.listenerPath, made before the fork.
    pub seccomp_listener: Option<std::os::unix::net::UnixStream>,
    /// cgroup v1 `tasks` files to write "0" into: init joins its cgroups
    /// itself, which avoids the kernel's global lock on `cgroup.procs`.
    pub cgroup_tasks: Vec<PathBuf>,
    /// The parent makes the cgroups while init prepares its root
    /// filesystem: `Go` is awaited only before the first cgroup mount.
    pub late_go: bool,
}

/// Run the init side. Never returns: it execs the user program or exits
/// after reporting the error to the parent.
pub fn run(cfg: InitConfig<'_>, chan: &Channel) -> ! {
    // No fd the runtime inherited (other than stdio and --preserve-fds) may
    // reach the container (CVE-2024-21626): close-on-exec from the start.
    if let Err(e) = setup::cloexec_from(3 + cfg.preserve_fds) {
        let _ = chan.send(&Msg::Error(e.full()));
        // SAFETY: _exit ends the forked child without the parent's destructors.
        unsafe { libc::_exit(1) }
    }
    let code = match setup(&cfg, chan) {
        Ok(ready) => {
            // Past `Ready`: errors can only go to stderr now (and before
            // `start` comes, `start` finds the init gone).
            let err = ready.exec(&cfg);
            eprintln!("berth-runtime: container {}: {err}", cfg.id);
            127
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.full()));
            1
        }
    };
    // SAFETY: _exit ends the forked child without running the parent's
    // atexit handlers or destructors (which belong to the parent).
    unsafe { libc::_exit(code) }
}

/// State kept from setup to exec.
struct Ready {
    path: PathBuf,
    args: Vec<std::ffi::CString>,
    env: Vec<std::ffi::CString>,
    pty: Option<crate::process::console::Pty>,
    host_pid: i32,
}

/// Everything up to `Ready` (the parent's `create` returns then); the init
/// then waits for `start` in [`Ready::exec`].
fn setup(cfg: &InitConfig<'_>, chan: &Channel) -> Result<Ready> {
    let ns = cfg.namespaces;
    // Wait until the cgroups exist, join them, and enter a new cgroup
    // namespace rooted there.
    let join_cgroups = || -> Result<Vec<OwnedFd>> {
        let fds = chan.expect_with_fds(&Msg::Go)?;
        for file in &cfg.cgroup_tasks {
            std::fs::write(file, "0").with_context(|| format!("join cgroup {}", file.display()))?;
        }
        Ok(fds)
    };
    let unshare_cgroupns = || -> Result<()> {
        if ns.creates(LinuxNamespaceType::Cgroup) {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .context("unshare the cgroup namespace")?;
        }
        Ok(())
    };
    let mut idmapped = if cfg.late_go {
        Vec::new()
    } else {
        join_cgroups()?
    };
    if !cfg.fast {
        idmapped.extend(enter_namespaces(cfg, chan)?);
    }
    if ns.has_new_or_joined(LinuxNamespaceType::User) {
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .context("become root in the user namespace (setresgid)")?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .context("become root in the user namespace (setresuid)")?;
    }
    // Non-dumpable until exec: the container cannot ptrace us or open our
    // /proc files (CVE-2019-5736 defence in depth). Only now: the parent (or
    // newuidmap, for rootless containers) had to open our /proc/<pid>/*_map
    // files, which a non-dumpable process's owner can no longer do.
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE)")?;
    if !cfg.late_go {
        unshare_cgroupns()?;
    }
    if !cfg.no_new_keyring {
        join_session_keyring(cfg.id);
    }
    let host_pid: i32 = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let spec = cfg.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::spec("process", "missing"))?;

    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).context("sethostname (hostname)")?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        set_domainname(d)?;
    }

    let late_join = || -> Result<()> {
        join_cgroups()?;
        unshare_cgroupns()
    };
    let plan = RootfsPlan {
        spec,
        rootfs: cfg.rootfs,
        bundle: cfg.bundle,
        cgroup_dirs: cfg.cgroup_dirs.clone(),
        fresh_cgroup2: cfg.fresh_cgroup2,
        userns: ns.has_new_or_joined(LinuxNamespaceType::User),
        terminal: process.terminal().unwrap_or(false).then(|| {
            process
                .console_size()
                .map(|b| (b.height() as u16, b.width() as u16))
        }),
        idmapped: std::cell::RefCell::new(idmapped.into()),
        join_cgroups: cfg.late_go.then_some(&late_join as &dyn Fn() -> Result<()>),
    };
    let pty = rootfs::prepare(&plan)?;
    // The working directory is created if missing, as runc does.
    {
        let root = std::fs::File::open(cfg.rootfs).context("open rootfs")?;
        rootfs::resolve::mkdir_all(root.as_fd(), process.cwd())?;
    }

    let hooks = spec.hooks().as_ref();
    let has_runtime_hooks = hooks.is_some_and(|h| {
        !HookKind::Prestart.of(h).is_empty() || !HookKind::CreateRuntime.of(h).is_empty()
    });
    if has_runtime_hooks {
        chan.send(&Msg::RunCreateRuntimeHooks)?;
        chan.expect(&Msg::HooksDone)?;
    }
    let state = hooks::state_json(cfg.id, host_pid, cfg.bundle, cfg.spec, "created");
    hooks::run(hooks, HookKind::CreateContainer, &state)?;

    // Settings written through /proc before pivot_root: the host's procfs
    // is still mounted at /proc (verified as procfs on every write).
    if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctl {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            setup::write_proc(&path, v.as_bytes())
                .map_err(|e| RuntimeError::spec(format!("linux.sysctl.{k}"), e.to_string()))?;
        }
    }
    setup::apply_process_attrs(process)?;
    setup::set_apparmor(process)?;

    rootfs::pivot(cfg.rootfs, cfg.no_pivot)?;
    rootfs::finish(spec)?;

    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        use oci_spec::runtime::LinuxPersonalityDomain as D;
        let persona = match p.domain() {
            D::PerLinux => nix::sys::personality::Persona::empty(),
            D::PerLinux32 => nix::sys::personality::Persona::from_bits_retain(0x0008),
        };
        nix::sys::personality::set(persona).context("personality (linux.personality)")?;
    }
    if let Some(r) = process.rlimits() {
        setup::set_rlimits(r)?;
    }

    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let path = setup::find_executable(&args[0], &env, process.cwd())?;
    let args_c = setup::cstrings(&args, "process.args")?;
    let env_c = setup::cstrings(&env, "process.env")?;

    if let (Some(pty), Some(sock)) = (&pty, &cfg.console_socket) {
        crate::process::console::send_master(sock.as_fd(), pty.master.as_fd())?;
    } else if pty.is_some() {
        return Err(RuntimeError::InvalidArgument(
            "process.terminal is true but no --console-socket was given".into(),
        ));
    }
    chan.send(&Msg::Ready)?;
    Ok(Ready {
        path,
        args: args_c,
        env: env_c,
        pty,
        host_pid,
    })
}

impl Ready {
    /// Waits for `start`, then executes the process; returns only on failure.
    ///
    /// The last steps (signals, capabilities, seccomp without no_new_privs,
    /// user, umask, cwd) are taken before the wait, as runc takes them,
    /// while the caller of `create` goes on (its state, the shim's monitor,
    /// berthd's bookkeeping): a `start` then only waits for the execve.
    /// Docker's default seccomp profile alone takes ~0.5 ms of kernel time
    /// to load. With startContainer hooks all of it comes after the wait
    /// and the hooks, as before: the hooks run with the runtime's
    /// privileges, before the process's own.
    fn exec(self, cfg: &InitConfig<'_>) -> RuntimeError {
        let start_hooks = cfg
            .spec
            .hooks()
            .as_ref()
            .is_some_and(|h| !HookKind::StartContainer.of(h).is_empty());
        let res = (|| {
            let process = cfg
                .spec
                .process()
                .as_ref()
                .ok_or_else(|| RuntimeError::spec("process", "missing"))?;
            let mut notify = None;
            if !start_hooks {
                notify = self.arm(cfg, process)?;
            }
            wait_for_start(cfg)?;
            if start_hooks {
                let state =
                    hooks::state_json(cfg.id, self.host_pid, cfg.bundle, cfg.spec, "running");
                hooks::run(cfg.spec.hooks().as_ref(), HookKind::StartContainer, &state)?;
                drop(state);
                notify = self.arm(cfg, process)?;
            }
            self.finish(cfg, process, notify)
        })();
        match res {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    /// Takes the process's own settings up to, without no_new_privs, the
    /// seccomp filter. Returns the seccomp notify fd, if one was made.
    fn arm(&self, cfg: &InitConfig<'_>, process: &Process) -> Result<Option<OwnedFd>> {
        // Before seccomp, which may not allow the signal syscalls.
        setup::reset_signals()?;
        let nnp = process.no_new_privileges().unwrap_or(false);
        cfg.caps.apply_bounding()?;
        let mut notify = None;
        if let (Some(prog), false) = (&cfg.seccomp, nnp) {
            notify = prog.install()?;
        }
        let allow_setgroups = !cfg.namespaces.has_new_or_joined(LinuxNamespaceType::User)
            || std::fs::read_to_string("/proc/self/setgroups")
                .map_or(true, |s| s.trim() == "allow");
        setup::set_user(process.user(), allow_setgroups)?;
        cfg.caps.apply_rest()?;
        setup::set_umask(process.user());
        setup::enter_cwd(process.cwd())?;
        if let Some(pty) = &self.pty {
            crate::process::console::become_session_leader(&pty.slave)?;
        }
        Ok(notify)
    }

    /// After `start`: no_new_privs and its seccomp filter, the notify fd to
    /// the seccomp agent, execve.
    fn finish(
        &self,
        cfg: &InitConfig<'_>,
        process: &Process,
        mut notify: Option<OwnedFd>,
    ) -> Result<std::convert::Infallible> {
        if process.no_new_privileges().unwrap_or(false) {
            setup::set_no_new_privs()?;
            if let Some(prog) = &cfg.seccomp {
                notify = prog.install()?;
            }
        }
        if let Some(fd) = notify {
            setup::send_notify_fd(
                cfg.spec,
                cfg.seccomp_listener.as_ref(),
                cfg.id,
                cfg.bundle,
                self.host_pid,
                fd,
            )?;
        }
        setup::cloexec_from(3 + cfg.preserve_fds)?;
        Err(setup::exec(&self.path, &self.args, &self.env))
    }
}

/// Blocks until `start` writes its byte to the exec FIFO.
fn wait_for_start(cfg: &InitConfig<'_>) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(cfg.fifo.as_fd(), &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys("wait for start on the exec FIFO", e)),
        }
    }
}

/// The general path: join namespaces by path and unshare new ones in the
/// right order, then fork the real init when a pid or time namespace
/// only applies to children.
fn enter_namespaces(cfg: &InitConfig<'_>, chan: &Channel) -> Result<Vec<OwnedFd>> {
    let mut idmapped = Vec::new();
    let ns = cfg.namespaces;
    for (t, fd) in &cfg.joined {
        if *t == LinuxNamespaceType::User {
            namespaces::join(*t, fd)?;
        }
    }
    if ns.creates(LinuxNamespaceType::User) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).context("unshare the user namespace")?;
        chan.send(&Msg::MapIds)?;
        idmapped = chan.expect_with_fds(&Msg::MapsDone)?;
    }
    for (t, fd) in &cfg.joined {
        if *t != LinuxNamespaceType::User {
            namespaces::join(*t, fd)?;
        }
    }
    nix::sched::unshare(ns.unshare_flags()).context("unshare namespaces")?;
    if ns.creates(LinuxNamespaceType::Time)
        && let Some(offsets) = cfg
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().as_ref())
    {
        let mut text = String::new();
        for (clock, off) in offsets {
            text.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        setup::write_proc("/proc/self/timens_offsets", text.as_bytes())
            .map_err(|e| RuntimeError::spec("linux.timeOffsets", e.to_string()))?;
    }
    let must_fork = ns.has_new_or_joined(LinuxNamespaceType::Pid)
        || ns.has_new_or_joined(LinuxNamespaceType::Time);
    if must_fork {
        // The intermediate and the init share the channel: the init must
        // not say `Ready` before the runtime knows its pid (read first, the
        // runtime would take the intermediate, which exits at once, for the
        // init). It waits for the intermediate's byte, written once `Pid`
        // is sent; EOF without it means the intermediate died first.
        let (sent_r, sent_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
        match clone::fork(CloneFlags::empty())? {
            Forked::Parent(pid) => {
                let code = match chan.send(&Msg::Pid(pid.as_raw())) {
                    Ok(()) if nix::unistd::write(&sent_w, b"p") == Ok(1) => 0,
                    _ => 1,
                };
                // SAFETY: the intermediate process ends here without running
                // destructors that belong to the original parent.
                unsafe { libc::_exit(code) }
            }
            Forked::Child => {
                drop(sent_w);
                let mut b = [0u8; 1];
                loop {
                    match nix::unistd::read(sent_r.as_fd(), &mut b) {
                        Ok(1) => break,
                        Err(nix::Error::EINTR) => continue,
                        Ok(_) | Err(_) => {
                            return Err(RuntimeError::Child(
                                "the intermediate process ended before reporting the init's pid"
                                    .into(),
                            ));
                        }
                    }
                }
            }
        }
    } else {
        chan.send(&Msg::Pid(nix::unistd::getpid().as_raw()))?;
    }
    Ok(idmapped)
}

fn join_session_keyring(id: &str) {
    let Ok(name) = std::ffi::CString::new(format!("_ses.{id}")) else {
        return;
    };
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING (1) takes a NUL-terminated name.
    // Failure (no keyring support, or a user namespace) is not fatal, as in runc.
    unsafe {
        libc::syscall(libc::SYS_keyctl, 1, name.as_ptr());
    }
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: setdomainname reads `len` bytes from a valid buffer.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret != 0 {
        return Err(RuntimeError::sys(
            "setdomainname (domainname)",
            nix::Error::last(),
        ));
    }
    Ok(())
}
