use std::os::fd::AsFd;

use berth_runtime::container::{self, CreateOptions};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::Globals;
use crate::args::{CreateArgs, RunArgs};

fn options(g: &Globals, a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        root: g.root.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        rootless: g.rootless,
    }
}

pub fn create(g: &Globals, a: &CreateArgs) -> anyhow::Result<()> {
    container::create(&options(g, a))?;
    Ok(())
}

/// Signals `run` forwards to the container's init.
const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

pub fn run(g: &Globals, a: &RunArgs) -> anyhow::Result<u8> {
    let c = container::create(&options(g, &a.create))?;
    let id = &a.create.id;
    if let Err(e) = container::start(&g.root, id) {
        let _ = container::delete(&g.root, id, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    // The init is our child: forward signals to it and wait for it. The
    // mask is set only now, after the fork, so the container does not
    // inherit blocked signals.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)?;
    let pid = Pid::from_raw(c.record.pid);
    let code = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => {}
            Err(nix::Error::ECHILD) => break wait_foreign(&c),
            Err(e) => return Err(e.into()),
        }
        if let Some(info) = sfd.read_signal()? {
            let signo = info.ssi_signo as i32;
            if signo != libc::SIGCHLD {
                // SAFETY: kill(2) with plain integers.
                unsafe { libc::kill(pid.as_raw(), signo) };
            }
        }
        let _ = sfd.as_fd();
    };
    // Reap other children (e.g. an intermediate) without blocking.
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG))
    {}
    if !a.keep {
        container::delete(&g.root, id, true)?;
    }
    Ok(u8::try_from(code & 0xff).unwrap_or(1))
}

/// The init is not our child (should not happen): poll until it is gone.
fn wait_foreign(c: &container::Container) -> i32 {
    while c.record.alive() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    0
}
