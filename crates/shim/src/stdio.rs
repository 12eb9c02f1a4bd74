//! A process's stdio: pipes (or a console socket for a terminal) whose
//! child ends become its fds 0-2, and the ends the shim keeps.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// What the shim keeps of a process's stdio.
#[derive(Debug)]
pub struct Ends {
    /// stdout and stderr read ends (with a terminal: the master, once).
    pub out: [Option<OwnedFd>; 2],
    /// The write end of stdin (with a terminal: the master).
    pub stdin: Option<OwnedFd>,
    /// The terminal master.
    pub master: Option<OwnedFd>,
}

/// How stdio is being prepared for one create or exec.
#[derive(Debug)]
pub enum Prepared {
    /// Pipes; the shim's ends (the child's come with them from [`pipes`]).
    Pipes {
        out: [OwnedFd; 2],
        stdin: Option<OwnedFd>,
    },
    /// A console socket the runtime sends the master to.
    Console {
        listener: UnixListener,
        path: PathBuf,
    },
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Puts `fd` on descriptor `target` (0-2) of this process.
fn dup_onto(fd: impl AsFd, target: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 onto 0-2 replaces the shim's own stdio, which it
    // restores afterwards; no Rust object owns those descriptors.
    let r = unsafe { libc::dup2(fd.as_fd().as_raw_fd(), target) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn dev_null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

/// Stdio for a process without a terminal: the shim's ends, and the
/// child's fds 0-2 (stdin /dev/null unless `stdin`).
pub fn pipes(stdin: bool) -> std::io::Result<(Prepared, [OwnedFd; 3])> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (in_r, in_w) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (dev_null()?, None)
    };
    let prepared = Prepared::Pipes {
        out: [out_r, err_r],
        stdin: in_w,
    };
    Ok((prepared, [in_r, out_w, err_w]))
}

/// Makes `child` this process's fds 0-2 (for the runtime library, whose
/// processes inherit them).
pub fn install(child: &[OwnedFd; 3]) -> std::io::Result<()> {
    for (fd, target) in child.iter().zip(0..) {
        dup_onto(fd, target)?;
    }
    Ok(())
}

/// A console socket at `path` for a process with a terminal.
pub fn console(path: &Path) -> std::io::Result<Prepared> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    Ok(Prepared::Console {
        listener,
        path: path.to_owned(),
    })
}

/// Puts the shim's own stdio back: /dev/null, and stderr to `log`.
pub fn restore(log: &impl AsFd) -> std::io::Result<()> {
    let null = dev_null()?;
    dup_onto(&null, 0)?;
    dup_onto(&null, 1)?;
    dup_onto(log, 2)
}

/// After the fork: the shim's ends, non-blocking.
pub fn finish(p: Prepared, size: Option<(u16, u16)>) -> std::io::Result<Ends> {
    match p {
        Prepared::Pipes { out: [o, e], stdin } => {
            for fd in [Some(&o), Some(&e), stdin.as_ref()].into_iter().flatten() {
                set_nonblocking(fd)?;
            }
            Ok(Ends {
                out: [Some(o), Some(e)],
                stdin,
                master: None,
            })
        }
        Prepared::Console { listener, path } => {
            let got = receive_master(&listener);
            let _ = std::fs::remove_file(&path);
            let master = got?;
            if let Some((h, w)) = size {
                resize(&master, h, w)?;
            }
            set_nonblocking(&master)?;
            let reader = master.try_clone()?;
            let writer = master.try_clone()?;
            Ok(Ends {
                out: [Some(reader), None],
                stdin: Some(writer),
                master: Some(master),
            })
        }
    }
}

/// The terminal master the runtime sends to a console socket.
fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    // The runtime has sent the master (or failed) by now: do not wait long
    // for a connection that is not coming.
    let mut pfd = [rustix::event::PollFd::new(
        listener,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 5,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut pfd, Some(&timeout))? == 0 {
        return Err(std::io::Error::other("the runtime sent no terminal"));
    }
    let (conn, _) = listener.accept()?;
    receive_fd(&conn)
}

/// The descriptor a peer sent over `conn` (SCM_RIGHTS), close-on-exec.
fn receive_fd(conn: &impl AsFd) -> std::io::Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 64];
    recvmsg(
        conn,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut ancillary,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                received.get_or_insert(fd);
            }
        }
    }
    received.ok_or_else(|| std::io::Error::other("the console socket carried no terminal"))
}

/// The console socket path, when one is used.
pub fn console_path(p: &Prepared) -> Option<PathBuf> {
    match p {
        Prepared::Console { path, .. } => Some(path.clone()),
        Prepared::Pipes { .. } => None,
    }
}

/// Sets a terminal's size.
pub fn resize(master: &impl AsFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, ws).map_err(std::io::Error::from)
}

/// O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: &impl AsFd) -> std::io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}
