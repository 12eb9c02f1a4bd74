use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use rustix::fs::OFlags;

use crate::error::{Context, Result, RuntimeError};
use crate::rootfs::resolve;

/// A pty created inside the container's devpts.
#[derive(Debug)]
pub struct Pty {
    /// The master side, sent to the console socket.
    pub master: OwnedFd,
    /// The slave side, the process's stdio and controlling terminal.
    pub slave: OwnedFd,
}

/// Open a new pty from the container's /dev/ptmx (resolved inside `root`),
/// and set its size.
pub fn open_in(root: BorrowedFd<'_>, size: Option<(u16, u16)>) -> Result<Pty> {
    let master = resolve::open(root, Path::new("/dev/ptmx"), OFlags::RDWR | OFlags::NOCTTY)
        .map_err(|e| {
            RuntimeError::io(
                "open /dev/ptmx in the container (is devpts mounted on /dev/pts?)",
                e.into(),
            )
        })?;
    rustix::pty::unlockpt(&master).context("unlockpt")?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
    )
    .context("open the pty slave (TIOCGPTPEER)")?;
    if let Some((height, width)) = size {
        let ws = rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, ws).context("set the console size")?;
    }
    Ok(Pty { master, slave })
}

/// Send the pty master over the console socket, as runc does (the fd by
/// SCM_RIGHTS, the pty's name as the message).
pub fn send_master(socket: BorrowedFd<'_>, master: BorrowedFd<'_>) -> Result<()> {
    let name = b"/dev/ptmx";
    let iov = [IoSlice::new(name)];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("send the console to --console-socket")?;
    Ok(())
}

/// Make the pty slave this process's controlling terminal and stdio.
pub fn become_session_leader(slave: &OwnedFd) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    rustix::process::ioctl_tiocsctty(slave).context("set the controlling terminal (TIOCSCTTY)")?;
    for target in 0..3 {
        // SAFETY: dup2 onto 0, 1, 2 replaces our stdio with the slave; the
        // fds are ours and no Rust object owns 0-2 by value.
        let ret = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        if ret < 0 {
            return Err(RuntimeError::sys(
                "dup2 the console onto stdio",
                nix::Error::last(),
            ));
        }
    }
    Ok(())
}

/// Connect to a console socket path (done by the parent, before fork).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("connect to --console-socket {}", path.display()))?;
    Ok(OwnedFd::from(s))
}

/// Receive a pty master from a socket (used by `run` in the foreground with
/// a terminal, and by tests).
pub fn recv_master(socket: BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receive the console")?;
    for c in msg.cmsgs().context("read control messages")? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS just gave us this fd; nobody else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(RuntimeError::Child("no console fd received".into()))
}
