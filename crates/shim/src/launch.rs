//! Starting shims: the zygote's client side.
//!
//! berthd keeps one `berth-shim --zygote` running and asks it for each
//! container's shim. The zygote is a small single-threaded process that
//! forks a child per request; the child is the shim (it creates the
//! container and becomes the monitor). Compared with executing berth-shim
//! per container, nothing is loaded, relocated or initialised again and no
//! intermediate process starts and exits: on the `docker run --rm` path
//! that is the cost of one exec of a static program.
//!
//! The zygote is not its starter's child (it forks away at start) and it
//! ends when the last copy of the starter's end of its socket is closed, so
//! a daemon that exits or is killed takes it along; the shims it made are
//! on their own and live on, as they always did.
//!
//! A request is one `SOCK_SEQPACKET` message: the shim's state directory
//! (bytes of the path) with two or three descriptors: the write ends where
//! the shim reports ([`crate::proto::ready_line`] or
//! [`crate::proto::error_line`]) and where it writes what it has to say
//! before its own log exists, and optionally the read end of a pipe the
//! shim waits on before it creates the container (see [`Zygote::request`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};

/// The argument that makes berth-shim a zygote.
pub const ZYGOTE_ARG: &str = "--zygote";

/// The longest state directory path a request may carry.
pub const MAX_PATH: usize = 4096;

/// A running zygote and the socket it takes requests on. Dropping it ends
/// the zygote (once no other copy of the socket is open).
#[derive(Debug)]
pub struct Zygote {
    sock: OwnedFd,
}

impl Zygote {
    /// Starts `bin --zygote <root>`; `root` (the directory the shims' state
    /// directories are in) only names the zygote's owner in `ps`. Returns
    /// once the zygote runs on its own: the process `bin` starts forks the
    /// zygote off and exits, and is reaped here.
    pub fn start(bin: &Path, root: &Path) -> io::Result<Zygote> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let status = Command::new(bin)
            .arg(ZYGOTE_ARG)
            .arg(root)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| io::Error::new(e.kind(), format!("run {}: {e}", bin.display())))?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "{} {ZYGOTE_ARG} exited with {status}",
                bin.display()
            )));
        }
        Ok(Zygote { sock: ours })
    }

    /// Asks for a shim on state directory `dir` (its `shim.json` written):
    /// it reports on `report` and writes early diagnostics to `stderr`.
    /// With `go`, the read end of a pipe, the shim prepares itself but
    /// creates the container only once a byte comes on it (the bundle is
    /// ready); end of file instead ends the shim with an error report. An
    /// error means the request did not reach a zygote (it has gone away).
    pub fn request(
        &self,
        dir: &Path,
        report: BorrowedFd,
        stderr: BorrowedFd,
        go: Option<BorrowedFd>,
    ) -> io::Result<()> {
        let path = dir.as_os_str().as_bytes();
        if path.is_empty() || path.len() > MAX_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("state directory path empty or longer than {MAX_PATH} bytes"),
            ));
        }
        let mut fds = vec![report.as_raw_fd(), stderr.as_raw_fd()];
        fds.extend(go.map(|g| g.as_raw_fd()));
        let sent = sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[io::IoSlice::new(path)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if sent != path.len() {
            return Err(io::Error::other("short write to the zygote"));
        }
        Ok(())
    }
}
