use std::os::fd::{AsFd, OwnedFd};

use super::tty;

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
        seccomp_cache: None,
    }
}

pub fn create(g: &Globals, a: &CreateArgs) -> anyhow::Result<()> {
    warn_notify_socket(a);
    container::create(&options(g, a))?;
    Ok(())
}

/// --notify-socket (systemd's sd_notify) is accepted for compatibility but
/// not relayed: say so rather than ignore it.
fn warn_notify_socket(a: &CreateArgs) {
    if let Some(p) = &a.notify_socket {
        tracing::warn!(
            "--notify-socket {}: sd_notify is not relayed by berth-runtime; the container's READY=1 will not reach it",
            p.display()
        );
    }
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
    // Signals that arrive while the container is made wait (blocked) and
    // are forwarded once it runs, as runc does; a Ctrl-C must not kill us
    // half-way and leave the container behind. The init unblocks them.
    if !a.detach {
        forwarded_mask().thread_block()?;
    }
    warn_notify_socket(&a.create);
    let mut opts = options(g, &a.create);
    let terminal = berth_runtime::spec::load(&a.create.bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false);
    // Foreground with a terminal and no console socket: we hold the pty.
    let console = if terminal && opts.console_socket.is_none() {
        if a.detach {
            anyhow::bail!(
                "process.terminal is true: a detached container needs --console-socket to receive its terminal"
            );
        }
        let sock = tty::ConsoleSocket::new(&g.root, &a.create.id)?;
        opts.console_socket = Some(sock.path().to_path_buf());
        Some(sock)
    } else {
        None
    };
    let c = container::create(&opts)?;
    let master = match &console {
        Some(sock) => Some(sock.receive()?),
        None => None,
    };
    drop(console);
    if let Err(e) = container::start_loaded(&c) {
        let _ = container::delete_loaded(&c, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    let code = supervise(Pid::from_raw(c.record.pid), master.as_ref(), || {
        wait_foreign(&c)
    })?;
    // Reap other children (e.g. an intermediate) without blocking.
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG))
    {}
    if !a.keep {
        container::delete_loaded(&c, true)?;
    }
    Ok(u8::try_from(code & 0xff).unwrap_or(1))
}

/// Wait for `pid` (our child), forwarding signals to it and, with a pty
/// master, connecting it to our stdin/stdout. Returns its exit code
/// (128+N when killed by signal N).
pub fn supervise(
    pid: Pid,
    master: Option<&OwnedFd>,
    foreign: impl Fn() -> i32,
) -> anyhow::Result<i32> {
    let mask = forwarded_mask();
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)?;
    let _raw = master.map(|m| {
        tty::resize(m.as_fd());
        tty::RawMode::enter()
    });
    let mut stdin_open = true;
    let mut master_open = true;
    let code = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => {}
            Err(nix::Error::ECHILD) => break foreign(),
            Err(e) => return Err(e.into()),
        }
        if let Some(m) = master {
            tty::pump(m.as_fd(), sfd.as_fd(), &mut stdin_open, &mut master_open)?;
        }
        if let Some(info) = sfd.read_signal()? {
            let signo = info.ssi_signo as i32;
            if signo == libc::SIGWINCH
                && let Some(m) = master
            {
                tty::resize(m.as_fd());
            } else if signo != libc::SIGCHLD {
                // SAFETY: kill(2) with plain integers.
                unsafe { libc::kill(pid.as_raw(), signo) };
            }
        }
    };
    if let Some(m) = master {
        tty::drain(m.as_fd());
    }
    Ok(code)
}

/// SIGCHLD and the signals forwarded to the container.
fn forwarded_mask() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask
}

/// The init is not our child (should not happen): poll until it is gone.
fn wait_foreign(c: &container::Container) -> i32 {
    while c.record.alive() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    0
}
