//! Unit tests for compile, and live tests that install filters in forked
//! children (the child only calls `install()` and raw syscalls: the test
//! harness is multi-threaded, so nothing that may allocate or lock).

#![allow(clippy::unwrap_used)]

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde_json::json;

use super::*;
use oci_spec::runtime::State;

fn spec(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).unwrap()
}

fn invalid_field(v: serde_json::Value) -> String {
    match compile(&spec(v)) {
        Err(SeccompError::InvalidSpec { field, .. }) => field,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

fn insns(p: &SeccompProgram) -> Vec<(u16, u8, u8, u32)> {
    p.instructions()
        .iter()
        .map(|i| (i.code, i.jt, i.jf, i.k))
        .collect()
}

#[test]
fn compile_simple_profile() {
    let p = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 17, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 3},
            {"names": ["kexec_load"], "action": "SCMP_ACT_KILL"},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["acct"], "action": "SCMP_ACT_TRAP"},
            {"names": ["sync"], "action": "SCMP_ACT_LOG"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"}
        ]
    })))
    .unwrap();
    assert!(!p.needs_listener());
    assert!(!p.instructions().is_empty());
    assert_eq!(p.flags() & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, 0);
    // No flags given: SPEC_ALLOW by default, as runc.
    assert_ne!(p.flags() & libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW, 0);
}

#[test]
fn explicit_flags() {
    let p = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
    })))
    .unwrap();
    assert_eq!(
        p.flags(),
        libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_TSYNC
    );
    let p = compile(&spec(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": []}),
    ))
    .unwrap();
    assert_eq!(p.flags(), 0);
}

#[test]
fn validation_errors() {
    assert_eq!(
        invalid_field(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}
            ]
        })),
        "linux.seccomp.syscalls[1].args[1].index"
    );
    assert_eq!(
        invalid_field(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        })),
        "linux.seccomp.listenerPath"
    );
    assert_eq!(
        invalid_field(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"})),
        "linux.seccomp.defaultAction"
    );
    assert_eq!(
        invalid_field(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]
        })),
        "linux.seccomp.syscalls[0].names[1]"
    );
    assert_eq!(
        invalid_field(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
        })),
        "linux.seccomp.syscalls[0].errnoRet"
    );
    assert_eq!(
        invalid_field(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536})),
        "linux.seccomp.defaultErrnoRet"
    );
    assert_eq!(
        invalid_field(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]
        })),
        "linux.seccomp.syscalls[0].names"
    );
    assert_eq!(
        invalid_field(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]
        })),
        "linux.seccomp.syscalls[0].names[1]"
    );
    let msg = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 9, "value": 0, "op": "SCMP_CMP_EQ"}]}]
    })))
    .unwrap_err()
    .to_string();
    assert!(
        msg.starts_with("linux.seccomp.syscalls[0].args[0].index: 9 is out of range"),
        "{msg}"
    );
}

#[test]
fn unknown_syscalls_are_skipped() {
    let with = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "no_such_syscall_xyz", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    let without = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    assert_eq!(insns(&with), insns(&without));
}

#[test]
fn rules_with_the_default_action_are_skipped() {
    let empty = compile(&spec(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
    let same = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    assert_eq!(insns(&empty), insns(&same));
    // ERRNO with another errno is a different action.
    let base = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    let errno_default = compile(&spec(base)).unwrap();
    let errno_other = compile(&spec(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]}),
    ))
    .unwrap();
    assert_ne!(insns(&errno_default), insns(&errno_other));
}

#[test]
fn needs_listener() {
    let p = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap();
    assert!(p.needs_listener());
    assert_ne!(p.flags() & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, 0);
    assert_ne!(p.flags() & libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH, 0);
}

#[test]
fn enosys_stub_only_for_restrictive_defaults() {
    let rules = json!([{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]);
    let len = |default: &str, errno: Option<u32>| {
        let mut v = json!({"defaultAction": default, "syscalls": rules.clone()});
        if let Some(e) = errno {
            v["defaultErrnoRet"] = json!(e);
        }
        let p = compile(&spec(v)).unwrap();
        // The stub starts by loading seccomp_data.arch; libseccomp too, so
        // look for the stub's ENOSYS return instead.
        p.instructions()
            .iter()
            .any(|i| i.code == (libc::BPF_RET | libc::BPF_K) as u16 && i.k == 0x0005_0000 | 38)
    };
    assert!(len("SCMP_ACT_ERRNO", None));
    assert!(len("SCMP_ACT_KILL_PROCESS", None));
    assert!(!len("SCMP_ACT_LOG", None));
    // defaultErrnoRet ENOSYS: no stub, so the program is as long as
    // libseccomp's alone (same as for any other errno minus the stub).
    let n = |errno: u32| {
        let v = json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno, "syscalls": rules.clone()});
        compile(&spec(v)).unwrap().instructions().len()
    };
    let stub = enosys::stub(&[ScmpArch::Native], &["read", "exit_group"]).len();
    assert!(stub > 0);
    assert_eq!(n(libc::ENOSYS as u32) + stub, n(libc::EIO as u32));
    assert!(!len("SCMP_ACT_LOG", None));
}

#[test]
fn features_document() {
    let f = features();
    assert_eq!(f.enabled(), &Some(true));
    assert_eq!(f.actions().as_ref().unwrap().len(), 9);
    assert!(
        f.operators()
            .as_ref()
            .unwrap()
            .contains(&"SCMP_CMP_MASKED_EQ".to_string())
    );
    let known = f.known_flags().as_ref().unwrap();
    let supported = f.supported_flags().as_ref().unwrap();
    assert!(supported.iter().all(|s| known.contains(s)));
    assert!(supported.contains(&"SECCOMP_FILTER_FLAG_LOG".to_string()));
    let v = serde_json::to_value(&f).unwrap();
    assert!(v.get("knownFlags").is_some(), "{v}");
}

#[test]
fn process_state_json() {
    let mut state = State::default();
    state.set_id("c1".into());
    let raw = container_process_state(42, Some("meta"), state).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["pid"], json!(42));
    assert_eq!(v["metadata"], json!("meta"));
    assert_eq!(v["state"]["id"], json!("c1"));
}

// ---- live tests -------------------------------------------------------------

/// A forked child; killed and reaped on drop unless already reaped.
struct Child(libc::pid_t, bool);

impl Child {
    fn wait(&mut self) -> libc::c_int {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(self.0, &mut status, 0) };
            if r == self.0 {
                self.1 = true;
                return status;
            }
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EINTR)
            );
        }
    }

    fn exit_code(&mut self) -> i32 {
        let status = self.wait();
        assert!(
            libc::WIFEXITED(status),
            "child did not exit: status {status:#x}"
        );
        libc::WEXITSTATUS(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.1 {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Forks; the child sets no_new_privs, installs `prog`, then `_exit(body())`.
/// `body` must only make raw syscalls (no allocation).
fn run_child(prog: &SeccompProgram, body: fn() -> i32) -> Child {
    // SAFETY: the child only calls async-signal-safe functions (prctl,
    // install() = one raw syscall, `body`'s raw syscalls, _exit).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain prctl/_exit calls in the child.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(101);
            }
            if prog.install().is_err() {
                libc::_exit(102);
            }
            libc::_exit(body())
        }
    }
    Child(pid, false)
}

#[test]
fn live_errno_rules() {
    let p = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO"}
        ]
    })))
    .unwrap();
    let mut child = run_child(&p, || {
        // SAFETY: raw syscalls with valid (or deliberately bogus) arguments.
        unsafe {
            if libc::syscall(libc::SYS_getpid) != -1 || errno() != 42 {
                return 1;
            }
            let path = c"/nonexistent-berth-dir/x".as_ptr();
            if libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path, 0o755) != -1
                || errno() != libc::EPERM
            {
                return 2;
            }
            // Not filtered: still works.
            if libc::syscall(libc::SYS_getppid) <= 0 {
                return 3;
            }
        }
        0
    });
    assert_eq!(child.exit_code(), 0);
}

#[test]
fn live_argument_filter() {
    let p = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
             "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_NE"}]},
            // (flags & 0xff) == 0x11 → ERRNO 9, i.e. AND of mask and datum.
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9,
             "args": [{"index": 0, "value": 255, "valueTwo": 17, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    })))
    .unwrap();
    let mut child = run_child(&p, || {
        // SAFETY: raw syscalls; personality(0xffffffff) only queries.
        unsafe {
            if libc::syscall(libc::SYS_personality, 0xffff_ffffu64) == -1 {
                return 1;
            }
            if libc::syscall(libc::SYS_personality, 0u64) != -1 || errno() != 7 {
                return 2;
            }
            if libc::syscall(libc::SYS_getpriority, 0x111u64, 0u64) != -1 || errno() != 9 {
                return 3;
            }
            // 0x12 & 0xff != 0x11: reaches the kernel (PRIO_PROCESS, self).
            if libc::syscall(libc::SYS_getpriority, 0u64, 0u64) == -1 {
                return 4;
            }
        }
        0
    });
    assert_eq!(child.exit_code(), 0);
}

#[test]
fn live_kill_process_default_and_enosys() {
    let p = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        // Several stub sections, and two ABIs on the x86-64 one.
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["exit_group", "exit"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11}
        ]
    })))
    .unwrap();
    let mut child = run_child(&p, || {
        // SAFETY: raw syscalls; getrandom with a zero-length buffer.
        unsafe {
            if libc::syscall(libc::SYS_getppid) != -1 || errno() != 11 {
                return 1;
            }
            // getrandom (318) is newer than exit_group (231), the largest
            // syscall the profile knows: the stub answers ENOSYS.
            if libc::syscall(
                libc::SYS_getrandom,
                std::ptr::null_mut::<u8>(),
                0usize,
                0u32,
            ) != -1
                || errno() != libc::ENOSYS
            {
                return 2;
            }
            // getpid is known-range and not allowed: killed.
            libc::syscall(libc::SYS_getpid);
        }
        3
    });
    let status = child.wait();
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
        "status {status:#x} (exit code {})",
        libc::WEXITSTATUS(status)
    );
}

#[test]
fn live_notify_and_listener() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let p = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap();
    assert!(p.needs_listener());
    let listener = UnixListener::bind(&sock).unwrap();

    // The child reports the notify fd number over a pipe; the parent takes
    // the fd with pidfd_getfd (as runc does).
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let wr_raw = wr.as_raw_fd();
    // SAFETY: the child only makes raw syscalls (see run_child).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(101);
            }
            let fd = match p.install() {
                Ok(Some(fd)) => fd.into_raw_fd(),
                _ => libc::_exit(102),
            };
            if libc::write(wr_raw, (&fd as *const RawFd).cast(), 4) != 4 {
                libc::_exit(103);
            }
            // Blocks until the agent answers.
            let r = libc::syscall(libc::SYS_getppid);
            libc::_exit(if r == 777 { 0 } else { 104 });
        }
    }
    let mut child = Child(pid, false);
    drop(wr);
    let mut buf = [0u8; 4];
    std::fs::File::from(rd).read_exact(&mut buf).unwrap();
    let child_fd = RawFd::from_ne_bytes(buf);
    // SAFETY: raw pidfd syscalls; results checked.
    let notify_fd = unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        assert!(pidfd >= 0, "pidfd_open: {}", errno());
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), child_fd, 0);
        assert!(fd >= 0, "pidfd_getfd: {}", errno());
        OwnedFd::from_raw_fd(fd as RawFd)
    };

    let state = container_process_state(pid, Some("meta-42"), State::default()).unwrap();
    send_to_listener(&sock, notify_fd.as_fd(), &state).unwrap();
    drop(notify_fd);

    // Agent side: one message with the JSON and the fd.
    let (conn, _) = listener.accept().unwrap();
    let mut data = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut data)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .unwrap();
        let fds: Vec<RawFd> = msg
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        (msg.bytes, fds)
    };
    assert_eq!(&data[..len], &state[..]);
    let v: serde_json::Value = serde_json::from_slice(&data[..len]).unwrap();
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["metadata"], json!("meta-42"));
    assert_eq!(fds.len(), 1);
    // SAFETY: SCM_RIGHTS gave us a new fd.
    let agent_fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };

    // Answer the child's getppid with 777.
    // SAFETY: zeroed seccomp_notif/resp are valid; ioctls on the notify fd
    // with correctly sized structs.
    unsafe {
        let mut req: libc::seccomp_notif = std::mem::zeroed();
        let r = libc::ioctl(
            agent_fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        );
        assert_eq!(r, 0, "NOTIF_RECV: {}", errno());
        assert_eq!(req.data.nr, libc::SYS_getppid as i32);
        assert_eq!(req.pid as i32, pid);
        let mut resp: libc::seccomp_notif_resp = std::mem::zeroed();
        resp.id = req.id;
        resp.val = 777;
        let r = libc::ioctl(
            agent_fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        );
        assert_eq!(r, 0, "NOTIF_SEND: {}", errno());
    }
    assert_eq!(child.exit_code(), 0);
}
