use std::path::{Path, PathBuf};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::cgroups::CgroupManager;
use crate::container::Container;
use crate::error::{Result, RuntimeError};
use crate::process::caps::CapSets;
use crate::process::channel::{self, Msg};
use crate::process::clone::{self, Forked};
use crate::process::setup;
use crate::process::tenant::{self, TenantConfig};
use crate::state::Status;

/// How to run a process in a container (`exec`).
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process (args, env, cwd, user, capabilities, terminal, …).
    pub process: Process,
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    /// Write the process's host pid here.
    pub pid_file: Option<PathBuf>,
    /// Send the pty master here (process.terminal).
    pub console_socket: Option<PathBuf>,
    /// Pass fds 3..3+N.
    pub preserve_fds: u32,
    /// Allow exec into a paused container (the process starts frozen).
    pub ignore_paused: bool,
    /// As [`crate::container::CreateOptions::seccomp_cache`].
    pub seccomp_cache: Option<PathBuf>,
}

/// What became of an exec'd process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Detached: it runs with this host pid.
    Detached(i32),
    /// It exited with this code (128+N when killed by signal N).
    Exited(i32),
}

/// Run a process inside a created or running container.
///
/// Must be called from a single-threaded process (it forks). The caller
/// becomes a child subreaper (PR_SET_CHILD_SUBREAPER): the process is forked
/// by an intermediate inside the container's pid namespace and is reparented
/// to the caller, which can then wait for it.
pub fn exec(root: &Path, id: &str, opts: &ExecOptions) -> Result<ExecOutcome> {
    let c = Container::load(root, id)?;
    let status = c.status();
    let paused_ok = opts.ignore_paused && status == Status::Paused;
    if status != Status::Running && status != Status::Created && !paused_ok {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            op: "exec in",
            status: status.to_string(),
        });
    }
    if !clone::single_threaded() {
        return Err(RuntimeError::InvalidArgument(
            "exec must be called from a single-threaded process".into(),
        ));
    }
    crate::spec::validate_process(&opts.process)?;
    crate::container::create::check_preserve_fds(opts.preserve_fds)?;
    let namespaces = crate::namespaces::of_process(c.record.pid)?;
    let linux = c.record.spec.linux().clone().unwrap_or_default();
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|s| crate::seccomp::compile_with(s, opts.seccomp_cache.as_deref()))
        .transpose()?;
    let caps = CapSets::from_spec(opts.process.capabilities().as_ref())?;
    let console_socket = opts
        .console_socket
        .as_deref()
        .map(crate::process::console::connect)
        .transpose()?;
    let cgroups = c.cgroups()?;
    clone::become_subreaper()?;
    let (parent_ch, child_ch) = channel::pair()?;
    let seccomp_listener = setup::connect_seccomp_listener(&linux, seccomp.as_ref())?;
    let cfg = TenantConfig {
        process: opts.process.clone(),
        namespaces,
        caps,
        seccomp,
        console_socket,
        preserve_fds: opts.preserve_fds,
        spec: c.record.spec.clone(),
        id: c.record.id.clone(),
        bundle: c.record.bundle.clone(),
        seccomp_listener,
    };
    let child = match clone::fork(nix::sched::CloneFlags::empty())? {
        Forked::Child => {
            drop(parent_ch);
            tenant::run(cfg, &child_ch)
        }
        Forked::Parent(pid) => pid,
    };
    drop(child_ch);
    drop(cfg);
    let fail = |e: RuntimeError| {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(child, None);
        e
    };
    // Into the container's cgroups before anything runs; in a paused
    // container only once the process exec'd (a frozen setup would hang).
    if let (Some(cg), false) = (&cgroups, paused_ok) {
        cg.add_process(child.as_raw()).map_err(|e| fail(e.into()))?;
    }
    parent_ch.send_to_child(&Msg::Go, &[]).map_err(fail)?;
    let mut pid = None;
    loop {
        match parent_ch.recv()? {
            Some(Msg::Pid(p)) => {
                pid = Some(Pid::from_raw(p));
                let _ = waitpid(child, None);
            }
            Some(Msg::Exec) => {}
            Some(Msg::Error(e)) => {
                if let Some(p) = pid {
                    let _ = waitpid(p, None);
                }
                let _ = waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                return Err(RuntimeError::Child(e));
            }
            None => break,
            Some(other) => {
                return Err(RuntimeError::Child(format!(
                    "protocol error: unexpected {other:?}"
                )));
            }
        }
    }
    let pid =
        pid.ok_or_else(|| RuntimeError::Child("the exec'd process exited during setup".into()))?;
    if let (Some(cg), true) = (&cgroups, paused_ok) {
        cg.add_process(pid.as_raw())?;
    }
    if let Some(pf) = &opts.pid_file {
        crate::container::create::write_pid_file(pf, pid.as_raw())?;
    }
    if opts.detach {
        return Ok(ExecOutcome::Detached(pid.as_raw()));
    }
    Ok(ExecOutcome::Exited(wait_exit_code(pid)?))
}

/// Wait for a child and turn its end into a shell-style exit code.
pub fn wait_exit_code(pid: Pid) -> Result<i32> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(RuntimeError::sys(format!("wait for process {pid}"), e)),
        }
    }
}
