use std::path::Path;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::container::Container;
use crate::error::{Result, RuntimeError};
use crate::state::Status;

fn send(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) with plain integers; no memory is involved.
    let ret = unsafe { libc::kill(pid, sig) };
    if ret != 0 {
        let e = nix::Error::last();
        if e != nix::Error::ESRCH {
            return Err(RuntimeError::sys(
                format!("kill {pid} with signal {sig}"),
                e,
            ));
        }
    }
    Ok(())
}

/// Send `signal` to the container's init, or with `all` to every process in
/// its cgroup.
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status == Status::Stopped && !all {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            op: "kill",
            status: "not running".into(),
        });
    }
    if all {
        for pid in c.pids()? {
            send(pid, signal)?;
        }
        // A frozen cgroup never handles the signal; thaw it for SIGKILL as runc does.
        if status == Status::Paused
            && signal == Signal::SIGKILL as i32
            && let Some(cg) = c.cgroups()?
        {
            use crate::cgroups::CgroupManager;
            cg.thaw()?;
        }
        return Ok(());
    }
    send(c.record.pid, signal)
}

/// Kill everything in the container with SIGKILL and wait (bounded) until
/// the init is gone.
pub(crate) fn kill_all_and_wait(c: &Container) -> Result<()> {
    use crate::cgroups::CgroupManager;
    if let Some(cg) = c.cgroups()? {
        for pid in cg.processes()? {
            send(pid, libc::SIGKILL)?;
        }
        let _ = cg.thaw();
    }
    if c.record.alive() {
        send(c.record.pid, libc::SIGKILL)?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Reap it if it is our child (run, tests); otherwise its parent does.
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(c.record.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        let empty = match c.cgroups()? {
            Some(cg) => cg.processes().map(|p| p.is_empty()).unwrap_or(true),
            None => true,
        };
        if !c.record.alive() && empty {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(RuntimeError::InvalidArgument(format!(
                "container {} did not die within 10 s of SIGKILL",
                c.record.id
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
