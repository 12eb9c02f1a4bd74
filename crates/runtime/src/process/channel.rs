use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, RuntimeError};

/// A message between the runtime (parent) and a process it created.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Msg {
    /// Parent → child: maps written, cgroups joined; go on.
    Go,
    /// Child → parent: I unshared a user namespace, write my id maps.
    MapIds,
    /// Parent → child: maps written.
    MapsDone,
    /// Child → parent: my namespaces exist; run the createRuntime hooks.
    RunCreateRuntimeHooks,
    /// Parent → child: hooks done.
    HooksDone,
    /// Child → parent: the container's process has this host pid (the
    /// general path forks once more).
    Pid(i32),
    /// Child → parent: set up, blocked on the exec FIFO.
    Ready,
    /// Child → parent: about to execve (exec'd processes); EOF follows on
    /// success because the socket is close-on-exec.
    Exec,
    /// Child → parent: setup failed.
    Error(String),
}

/// One end of a SOCK_SEQPACKET pair.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (parent end, child end). Both are close-on-exec.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Send a message, optionally with file descriptors.
    pub fn send_with_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        let data = serde_json::to_vec(msg)
            .map_err(|e| RuntimeError::InvalidArgument(format!("encode message: {e}")))?;
        let iov = [IoSlice::new(&data)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
            .context("send to the container process")?;
        Ok(())
    }

    /// Send a message.
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fds(msg, &[])
    }

    /// Send to a child that may already have failed: if the send fails
    /// because the child is gone, return the error the child reported
    /// before exiting (its real cause), not the broken pipe.
    pub fn send_to_child(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        match self.send_with_fds(msg, fds) {
            Ok(()) => Ok(()),
            Err(e) => match self.recv() {
                Ok(Some(Msg::Error(child))) => Err(RuntimeError::Child(child)),
                _ => Err(e),
            },
        }
    }

    /// Receive a message; `None` on EOF (the other side exited or exec'd).
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_with_fds()?.map(|(m, _)| m))
    }

    /// Receive a message and any file descriptors sent with it.
    pub fn recv_with_fds(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; 64]);
        let (len, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_buf),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(r) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = r.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                for fd in raw {
                                    // SAFETY: SCM_RIGHTS gave us these fds; we own them now.
                                    fds.push(unsafe {
                                        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                                    });
                                }
                            }
                        }
                    }
                    break (r.bytes, fds);
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(RuntimeError::sys("receive from the container process", e)),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len])
            .map_err(|e| RuntimeError::InvalidArgument(format!("decode message: {e}")))?;
        Ok(Some((msg, fds)))
    }

    /// Wait for one specific message; an `Error` message or EOF becomes an error.
    pub fn expect(&self, want: &Msg) -> Result<()> {
        self.expect_with_fds(want).map(drop)
    }

    /// Like [`Channel::expect`], returning the fds sent with the message.
    pub fn expect_with_fds(&self, want: &Msg) -> Result<Vec<OwnedFd>> {
        match self.recv_with_fds()? {
            Some((m, fds)) if &m == want => Ok(fds),
            Some((Msg::Error(e), _)) => Err(RuntimeError::Child(e)),
            Some((other, _)) => Err(RuntimeError::Child(format!(
                "protocol error: expected {want:?}, got {other:?}"
            ))),
            None => Err(RuntimeError::Child(format!(
                "the container process exited before {want:?}"
            ))),
        }
    }

    /// The raw fd (to keep it across a fork or check it in tests).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
