//! Handing the seccomp notify fd to the agent at `linux.seccomp.listenerPath`.

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::{ContainerProcessState, SECCOMP_FD_NAME, State};

use super::SeccompError;

/// Send the notify fd and the container process state to
/// `linux.seccomp.listenerPath`, as the OCI runtime spec requires: one
/// message on a UNIX stream socket whose payload is the `ContainerProcessState`
/// JSON (see [`container_process_state`]) and whose `SCM_RIGHTS` carries
/// `notify_fd` (named `seccompFd` in `fds`).
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let fail = |error: io::Error| SeccompError::Listener {
        path: listener_path.to_path_buf(),
        error,
    };
    if state_json.is_empty() {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty container process state",
        )));
    }
    let stream = UnixStream::connect(listener_path).map_err(fail)?;
    send_on(stream, listener_path, notify_fd, state_json)
}

/// Like [`send_to_listener`], on a stream already connected to
/// `listener_path` (the container's init connects before pivot_root, while
/// the host path is still reachable, and sends after installing the filter).
pub fn send_on(
    mut stream: UnixStream,
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let fail = |error: io::Error| SeccompError::Listener {
        path: listener_path.to_path_buf(),
        error,
    };
    let fds = [notify_fd.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(state_json)];
    let sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(fail(e.into())),
        }
    };
    // A stream socket may take the payload in pieces; the fd went with the
    // first one.
    if let Some(rest) = state_json.get(sent..) {
        stream.write_all(rest).map_err(fail)?;
    }
    Ok(())
}

/// The `ContainerProcessState` JSON for [`send_to_listener`]: `fds` is
/// `["seccompFd"]`, `metadata` is `linux.seccomp.listenerMetadata`, `pid` the
/// container process as seen by the runtime, `state` the container state.
pub fn container_process_state(
    pid: i32,
    metadata: Option<&str>,
    state: State,
) -> Result<Vec<u8>, SeccompError> {
    let mut cps = ContainerProcessState::default();
    cps.set_version(oci_spec::runtime::VERSION.to_string());
    cps.set_fds(vec![SECCOMP_FD_NAME.to_string()]);
    cps.set_pid(pid);
    cps.set_metadata(metadata.map(str::to_string));
    cps.set_state(state);
    serde_json::to_vec(&cps).map_err(|error| SeccompError::State { error })
}
