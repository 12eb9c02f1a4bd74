//! `berth-shim --zygote`: forks a shim per request from berthd (see
//! `berth_shim::launch` for the protocol and why).

use std::ffi::OsStr;
use std::io::{IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use berth_shim::launch::MAX_PATH;
use berth_shim::{proto, stdio};
use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::{ForkResult, fork, setsid};

/// Runs the zygote on the socket that is its stdin. Returns the exit code
/// of the process berthd started (the zygote itself runs in its child).
pub fn run() -> i32 {
    // The socket moves off stdin (close-on-exec: no shim keeps it), and
    // stdin becomes /dev/null.
    let sock = match nix::fcntl::fcntl(std::io::stdin(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)) {
        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor nothing owns.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(e) => {
            eprintln!("berth-shim --zygote: stdin: {e}");
            return 1;
        }
    };
    let null = match std::fs::File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth-shim --zygote: /dev/null: {e}");
            return 1;
        }
    };
    // SAFETY: dup2 onto stdin, which no Rust object owns.
    unsafe { libc::dup2(null.as_raw_fd(), 0) };
    drop(null);
    // The zygote is not its starter's child: this process exits at once
    // and the zygote goes on in a session of its own.
    // SAFETY: single-threaded (nothing has spawned a thread).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("berth-shim --zygote: fork: {e}");
            return 1;
        }
    }
    let _ = setsid();
    // The kernel reaps the shims when they exit (their children, the
    // containers' processes, are theirs to reap: they are subreapers).
    // SAFETY: no handler is installed, only the disposition changes.
    if let Err(e) = unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) } {
        eprintln!("berth-shim --zygote: SIGCHLD: {e}");
        return 1;
    }
    serve(sock)
}

/// The request loop; returns when berthd's end of the socket is closed.
fn serve(sock: OwnedFd) -> i32 {
    let mut buf = vec![0u8; MAX_PATH + 1];
    let mut cmsg = nix::cmsg_space!([RawFd; 3]);
    loop {
        let (n, truncated, raw) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fds = Vec::new();
                    for c in m.cmsgs().into_iter().flatten() {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            fds.extend(v);
                        }
                    }
                    let truncated = m
                        .flags
                        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                    (m.bytes, truncated, fds)
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("berth-shim --zygote: receive: {e}");
                    return 1;
                }
            }
        };
        let mut fds = Vec::with_capacity(raw.len());
        for fd in raw {
            // SAFETY: a descriptor just received; nothing else in this
            // process knows it.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if n == 0 && fds.is_empty() {
            // berthd has gone (or dropped the zygote).
            return 0;
        }
        let mut fds = fds.into_iter();
        let (Some(report), Some(stderr), go, None) =
            (fds.next(), fds.next(), fds.next(), fds.next())
        else {
            continue;
        };
        let mut report = std::fs::File::from(report);
        if truncated || n == 0 {
            let _ = report.write_all(proto::error_line("bad request to the zygote").as_bytes());
            continue;
        }
        let dir = PathBuf::from(OsStr::from_bytes(&buf[..n]));
        // SAFETY: single-threaded, so the child may run Rust code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(sock);
                // SAFETY: back to the default disposition, no handler.
                let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) };
                if stdio::restore(&stderr).is_err() {
                    std::process::exit(1);
                }
                drop(stderr);
                crate::spawn::serve(&dir, report, go)
            }
            Ok(ForkResult::Parent { .. }) => {}
            Err(e) => {
                let _ = report.write_all(proto::error_line(&format!("fork: {e}")).as_bytes());
            }
        }
    }
}
