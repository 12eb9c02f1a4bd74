//! `run` in the foreground with process.terminal and no --console-socket:
//! berth-runtime receives the pty master itself and connects it to its own
//! stdin/stdout, as runc does.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, SetArg, Termios};

/// A private console socket for one `run`.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listen on `<root>/<id>.console.sock` (root is private to the runtime).
    pub fn new(root: &Path, id: &str) -> anyhow::Result<ConsoleSocket> {
        std::fs::create_dir_all(root)?;
        let path = root.join(format!(".{id}.console.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket { path, listener })
    }

    /// Its path, for `create`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the container's init sent.
    pub fn receive(&self) -> anyhow::Result<OwnedFd> {
        let (conn, _) = self.listener.accept()?;
        Ok(berth_runtime::process::console::recv_master(conn.as_fd())?)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Raw mode on our terminal while the container owns it.
pub struct RawMode {
    saved: Option<Termios>,
}

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawMode")
    }
}

impl RawMode {
    /// Put stdin in raw mode if it is a terminal.
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copy our terminal size to the pty.
pub fn resize(master: BorrowedFd<'_>) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}

/// Move bytes between stdin/stdout and the pty until `signal_fd` is
/// readable (a signal arrived): returns so the caller can handle it. Once
/// the pty hangs up (every slave closed) it is no longer polled.
pub fn pump(
    master: BorrowedFd<'_>,
    signal_fd: BorrowedFd<'_>,
    stdin_open: &mut bool,
    master_open: &mut bool,
) -> anyhow::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(signal_fd, PollFlags::POLLIN)];
        let master_at = master_open.then(|| {
            fds.push(PollFd::new(master, PollFlags::POLLIN));
            fds.len() - 1
        });
        let stdin_at = (*stdin_open && *master_open).then(|| {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let ready = |i: Option<usize>| {
            i.and_then(|i| fds.get(i))
                .and_then(|f| f.revents())
                .unwrap_or(PollFlags::empty())
        };
        let (sig, out, inp) = (ready(Some(0)), ready(master_at), ready(stdin_at));
        if out.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(master, &mut buf) {
                // Every slave is closed: stop polling the pty (it would
                // stay readable and spin).
                Ok(0) | Err(nix::Error::EIO) => *master_open = false,
                Ok(n) => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&buf[..n])?;
                    o.flush()?;
                }
                Err(nix::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if inp.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match std::io::stdin().lock().read(&mut buf) {
                Ok(0) => *stdin_open = false,
                Ok(n) => {
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
                Err(_) => *stdin_open = false,
            }
        }
        if !sig.is_empty() {
            return Ok(());
        }
    }
}

/// Copy what is left in the pty to stdout once the process is gone.
pub fn drain(master: BorrowedFd<'_>) {
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(master, PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        match nix::unistd::read(master, &mut buf) {
            Ok(n) if n > 0 => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(&buf[..n]);
                let _ = o.flush();
            }
            _ => return,
        }
    }
}
