#![allow(clippy::unwrap_used)]
//! config.json features that runc 1.1 does not have, or that this suite
//! checks more deeply than the conformance suite: time namespaces with
//! offsets, idmapped bind mounts, hook timeouts, personality, domainname,
//! the console socket, the seccomp notify listener, refused fields.
//! These run against berth-runtime only (runc 1.1.5 lacks them).
//!
//! Run: `BERTH_TEST_ROOT=1 cargo test -p berth-runtime-cli --test features` as root.

mod common;

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use common::*;
use serde_json::json;

fn berth() -> Runtime {
    Runtime {
        name: "berth".into(),
        bin: PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime")),
    }
}

/// Receive one fd (and the message) from a connected UNIX socket.
fn recv_fd(conn: &std::os::unix::net::UnixStream) -> (Vec<u8>, OwnedFd) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = vec![0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    // SAFETY: a zeroed msghdr filled with valid buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len();
    // SAFETY: msg points to valid buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled a control message; CMSG_FIRSTHDR/DATA read it.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null(), "no control message");
        assert_eq!((*c).cmsg_type, libc::SCM_RIGHTS);
        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32)
    };
    let data = buf[..n as usize].to_vec();
    // SAFETY: SCM_RIGHTS gave us this fd.
    (data, unsafe { OwnedFd::from_raw_fd(fd) })
}

#[test]
fn time_namespace_offsets() {
    if !require_root() {
        return;
    }
    let mut c = Ct::new(&berth());
    let ns = c.spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "time"}));
    c.spec["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": 86400 * 365, "nanosecs": 0},
        "boottime": {"secs": 86400 * 365, "nanosecs": 0}
    });
    c.sh("cat /proc/uptime; cat /proc/self/timens_offsets");
    let out = c.run_ok();
    let uptime: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        uptime > 86400.0 * 365.0,
        "uptime inside the time namespace: {out}"
    );
    assert!(
        out.contains("monotonic") && out.contains("31536000"),
        "{out}"
    );
    // Offsets without a time namespace are refused, naming the field.
    let mut d = Ct::new(&berth());
    d.spec["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 1}});
    let o = d.run();
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("linux.timeOffsets"), "{}", o.stderr);
}

#[test]
fn idmapped_bind_mount() {
    if !require_root() {
        return;
    }
    let mut c = Ct::new(&berth());
    let host_dir = c.tmp.join("idmap-src");
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("f"), "x").unwrap();
    std::os::unix::fs::chown(host_dir.join("f"), Some(100_000), Some(100_000)).unwrap();
    // The container's root is host uid 100000: it must own its rootfs.
    let ok = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(&c.rootfs)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ns = c.spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    c.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // A user namespace cannot mount sysfs or a cgroup fs of the host's net ns.
    let mounts: Vec<_> = c.spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] != "sysfs" && m["type"] != "cgroup")
        .cloned()
        .collect();
    c.spec["mounts"] = json!(mounts);
    let m = c.spec["mounts"].as_array_mut().unwrap();
    m.push(
        json!({"destination": "/plain", "type": "bind", "source": host_dir, "options": ["bind"]}),
    );
    m.push(json!({"destination": "/mapped", "type": "bind", "source": host_dir, "options": ["bind", "idmap"]}));
    // Owned by host uid 100000 = container root through the user namespace;
    // with idmap the host's file owner 100000 is shifted again by the mapping.
    c.sh("stat -c %u /plain/f; stat -c %u /mapped/f");
    let out = c.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "plain bind shows the mapped owner: {out}");
    assert_ne!(lines[1], "0", "idmapped bind shifts ownership: {out}");
}

#[test]
fn hook_timeout_kills_the_hook_and_fails_create() {
    if !require_root() {
        return;
    }
    let mut c = Ct::new(&berth());
    c.spec["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]
    });
    // A state bigger than a pipe holds, which the hook never reads: the
    // timeout must still fire.
    c.spec["annotations"] = json!({"org.berth.big": "x".repeat(200_000)});
    let started = std::time::Instant::now();
    let o = c.create();
    assert_ne!(o.code, 0, "create with a hanging hook must fail");
    assert!(o.stderr.contains("timed out"), "{}", o.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "hook was not killed"
    );
    // Nothing is left: the state entry is gone.
    assert!(!c.root.join(&c.id).exists(), "state dir left behind");
}

#[test]
fn personality_and_domainname() {
    if !require_root() {
        return;
    }
    let mut c = Ct::new(&berth());
    c.spec["linux"]["personality"] = json!({"domain": "LINUX32"});
    c.spec["domainname"] = json!("berth.test");
    c.sh("uname -m; cat /proc/sys/kernel/domainname");
    let out = c.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "i686", "LINUX32 personality: {out}");
    assert_eq!(lines[1], "berth.test", "{out}");
}

#[test]
fn console_socket_receives_the_pty() {
    if !require_root() {
        return;
    }
    let mut c = Ct::new(&berth());
    c.spec["process"]["terminal"] = json!(true);
    c.spec["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    c.sh("tty; stty size; ls -l /dev/console | cut -c1; sleep 600");
    let sock_path = c.tmp.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let o = c.create_with(&["--console-socket", sock_path.to_str().unwrap()]);
    o.ok();
    let (conn, _) = listener.accept().unwrap();
    let (_, master) = recv_fd(&conn);
    c.start().ok();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let ok = wait_until(WAIT, || {
        // SAFETY: read into a valid buffer from an fd we own.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            text.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
        }
        text.contains("33 111") && text.lines().count() >= 3
    });
    assert!(ok, "console output: {text:?}");
    assert!(text.contains("/dev/pts/0"), "{text}");
    // /dev/console is the pty (a character device), bound by fd.
    assert!(text.lines().any(|l| l.trim() == "c"), "{text}");
    c.kill("KILL").ok();
}

#[test]
fn seccomp_notify_listener_gets_fd_and_state() {
    if !require_root() {
        return;
    }
    let mut c = Ct::new(&berth());
    let sock_path = c.tmp.join("seccomp.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    c.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock_path,
        "listenerMetadata": "berth-test",
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_NOTIFY"}]
    });
    c.sh("echo ready; exec sleep 600");
    c.create().ok();
    c.start().ok();
    let (conn, _) = listener.accept().unwrap();
    let (data, notify_fd) = recv_fd(&conn);
    let state: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "berth-test", "{state}");
    assert_eq!(state["state"]["id"], json!(c.id), "{state}");
    assert!(notify_fd.as_raw_fd() >= 0);
    c.wait_stdout("ready");
    // A process exec'd into the container gets the same filter, and its
    // notify fd reaches the listener too.
    c.rt(&["exec", "-d", &c.id, "sleep", "30"]).ok();
    let (conn2, _) = listener.accept().unwrap();
    let (data2, fd2) = recv_fd(&conn2);
    let state2: serde_json::Value = serde_json::from_slice(&data2).unwrap();
    assert_eq!(state2["state"]["id"], json!(c.id), "{state2}");
    assert!(fd2.as_raw_fd() >= 0);
    c.kill("KILL").ok();
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    if !require_root() {
        return;
    }
    for (field, value, name) in [
        (
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_BIND", "nodes": "0"}),
            "linux.memoryPolicy",
        ),
        ("/linux/netDevices", json!({"eth9": {}}), "linux.netDevices"),
        ("/linux/intelRdt", json!({"closID": "x"}), "linux.intelRdt"),
        (
            "/process/scheduler",
            json!({"policy": "SCHED_OTHER"}),
            "process.scheduler",
        ),
        (
            "/process/apparmorProfile",
            json!("unconfined"),
            "process.apparmorProfile",
        ),
        (
            "/process/selinuxLabel",
            json!("system_u:system_r:container_t:s0"),
            "process.selinuxLabel",
        ),
    ] {
        let mut c = Ct::new(&berth());
        *c.spec
            .pointer_mut(field.rsplit_once('/').unwrap().0)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .entry(field.rsplit_once('/').unwrap().1)
            .or_insert(json!(null)) = value;
        let o = c.run();
        assert_ne!(o.code, 0, "{field} accepted");
        assert!(o.stderr.contains(name), "{field}: {}", o.stderr);
        assert_eq!(
            o.stderr.trim().lines().count(),
            1,
            "one-line error: {}",
            o.stderr
        );
    }
}

#[test]
fn systemd_cgroup_flag_is_refused_clearly() {
    if !require_root() {
        return;
    }
    let c = Ct::new(&berth());
    // Global flags go before the verb, as runc takes them.
    let o = run_cmd(
        std::process::Command::new(env!("CARGO_BIN_EXE_berth-runtime"))
            .args(["--systemd-cgroup", "--root"])
            .arg(&c.root)
            .arg("list"),
    );
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("systemd"), "{}", o.stderr);
}

#[test]
fn events_reports_oom_kills() {
    if !require_root() {
        return;
    }
    oom_event_for("head -c 200m /dev/zero | tail -c 150m > /dev/null; sleep 600");
}

/// The OOM killer may pick the container's init: the container stops
/// between two polls, and the stream still reports the kill before it ends.
#[test]
fn events_reports_the_oom_kill_that_stopped_the_container() {
    if !require_root() {
        return;
    }
    oom_event_for("exec tail -c 150m < /dev/zero");
}

/// Runs `script` in a container limited to 32 MiB once `events` streams,
/// and expects an `oom` event from it.
fn oom_event_for(script: &str) {
    use std::io::BufRead;
    let mut c = Ct::new(&berth());
    c.spec["linux"]["resources"]["memory"] = json!({"limit": 32 << 20, "swap": 32 << 20});
    // The allocation waits for /tmp/go, written once `events` has sent its
    // first stats (it has read the OOM counter's baseline by then): an OOM
    // before that would not be a new one, and would not be reported.
    c.start_running(&format!(
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; {script}"
    ));
    let mut ev = c
        .cmd()
        .args(["events", "--interval", "200ms", &c.id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = ev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if tx
                .send(v["type"].as_str().unwrap_or_default().to_string())
                .is_err()
            {
                return;
            }
        }
    });
    let mut kinds = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline && !kinds.iter().any(|k| k == "oom") {
        if let Ok(k) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            if k == "stats" && !kinds.iter().any(|k| k == "stats") {
                std::fs::write(c.rootfs.join("tmp/go"), "").unwrap();
            }
            kinds.push(k);
        }
    }
    let _ = ev.kill();
    let stderr = ev
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    // What the kernel saw, should the event be missing.
    let counter = berth_runtime::container::oom_kills(&c.root, &c.id);
    assert!(kinds.iter().any(|k| k == "stats"), "{kinds:?} {stderr}");
    assert!(
        kinds.iter().any(|k| k == "oom"),
        "no oom event: {kinds:?}; events' stderr: {stderr:?}; oom_kill now: {counter:?}"
    );
    // The OOM killer may have picked the init itself: it may be gone already.
    let _ = c.kill("KILL");
}

/// A second mount of the host's cgroup2 hierarchy, shown to berth-runtime
/// as the only cgroup mount (through its test seam): containers run as on a
/// pure cgroup v2 host.
struct PureV2 {
    dir: tempfile::TempDir,
    mountinfo: PathBuf,
}

impl PureV2 {
    fn new() -> PureV2 {
        let dir = tempfile::Builder::new()
            .prefix("berth-v2-")
            .tempdir()
            .unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "cgroup2", "berth-v2-test"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount cgroup2");
        let mountinfo = dir.path().with_extension("mountinfo");
        fs::write(
            &mountinfo,
            format!(
                "99 1 0:99 / {} rw,relatime - cgroup2 berth-v2-test rw\n",
                dir.path().display()
            ),
        )
        .unwrap();
        PureV2 { dir, mountinfo }
    }
}

impl Drop for PureV2 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        let _ = fs::remove_file(&self.mountinfo);
    }
}

#[test]
fn pure_cgroup_v2_container_lifecycle() {
    if !require_root() {
        return;
    }
    let v2 = PureV2::new();
    let mut c = Ct::new(&berth());
    let host_dir = v2.dir.path().join(c.cgroup.trim_start_matches('/'));
    // No memory/cpu controllers on this cgroup2 (they are bound to v1 here):
    // only what cgroup2 always has — processes, freezer, device filter.
    c.spec["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    for set in ["bounding", "effective", "permitted"] {
        c.spec["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
    }
    // tun (10:200) is not in the allowed set: its node can be made (the
    // "m" rule) but not opened; /dev/null (1:3) can.
    c.sh("echo ready; cat /proc/self/cgroup; ls /sys/fs/cgroup/cgroup.procs; echo x > /dev/null && echo NULL-OK; mknod /dev/t c 10 200 && echo MKNOD-OK; (exec 3<>/dev/t) && echo TUN-OK; echo CHECKS-DONE; exec sleep 600");
    c.write_spec();
    let so = fs::File::create(&c.out_path).unwrap();
    // Only create needs the seam: the container's state remembers it.
    let st = c
        .cmd()
        .env("BERTH_TEST_CGROUP_MOUNTINFO", &v2.mountinfo)
        .args(["create", "--bundle"])
        .arg(&c.bundle)
        .arg(&c.id)
        .stdout(so)
        .status()
        .unwrap();
    assert!(st.success(), "create on cgroup v2");
    c.start().ok();
    c.wait_stdout("ready");
    // Wait for the last line: the checks print in order.
    let out = c.wait_stdout("CHECKS-DONE");
    // The init was placed in its cgroup (clone3 CLONE_INTO_CGROUP) ...
    let pid = c.pid();
    let procs = fs::read_to_string(host_dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.split_whitespace().any(|p| p == pid.to_string()),
        "{procs}"
    );
    // ... sees its cgroup2 directory mounted at /sys/fs/cgroup,
    assert!(out.contains(&format!("0::{}\n", c.cgroup)), "{out}");
    // ... and the device filter (eBPF) allows /dev/null and mknod, not tun.
    assert!(out.contains("NULL-OK") && out.contains("MKNOD-OK"), "{out}");
    assert!(!out.contains("TUN-OK"), "{out}");
    // pause/resume through cgroup.freeze
    c.rt(&["pause", &c.id]).ok();
    assert_eq!(c.status(), "paused");
    assert_eq!(
        fs::read_to_string(host_dir.join("cgroup.freeze"))
            .unwrap()
            .trim(),
        "1"
    );
    c.rt(&["resume", &c.id]).ok();
    assert_eq!(c.status(), "running");
    c.rt(&["delete", "--force", &c.id]).ok();
    assert!(!host_dir.exists(), "v2 cgroup left: {}", host_dir.display());
}

#[test]
fn pure_cgroup_v2_with_cgroup_namespace() {
    if !require_root() {
        return;
    }
    let v2 = PureV2::new();
    let mut c = Ct::new(&berth());
    c.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    c.spec["linux"]["resources"] = json!({});
    // In its own cgroup namespace the container is at "/", and a fresh
    // cgroup2 is mounted on /sys/fs/cgroup showing only its subtree.
    c.sh("cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mounts; cat /sys/fs/cgroup/cgroup.procs");
    c.write_spec();
    let so = fs::File::create(&c.out_path).unwrap();
    let st = c
        .cmd()
        .env("BERTH_TEST_CGROUP_MOUNTINFO", &v2.mountinfo)
        .args(["run", "--bundle"])
        .arg(&c.bundle)
        .arg(&c.id)
        .stdout(so)
        .status()
        .unwrap();
    let out = c.stdout();
    assert!(st.success(), "{out}");
    assert!(out.lines().any(|l| l == "0::/"), "{out}");
    assert!(out.contains("cgroup2 /sys/fs/cgroup cgroup2"), "{out}");
    // Its own pid 1 is the only process listed.
    assert!(out.lines().any(|l| l.trim() == "1"), "{out}");
    let host_dir = v2.dir.path().join(c.cgroup.trim_start_matches('/'));
    assert!(!host_dir.exists(), "v2 cgroup left: {}", host_dir.display());
}

#[test]
fn delete_force_cleans_an_interrupted_create() {
    if !require_root() {
        return;
    }
    let mut c = Ct::new(&berth());
    c.spec["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "2"]}]});
    c.args(&["sleep", "600"]);
    c.write_spec();
    let mut create = c
        .cmd()
        .args(["create", "--bundle"])
        .arg(&c.bundle)
        .arg(&c.id)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the runtime while the hook runs (the init exists, no record yet).
    let dir = c.root.join(&c.id);
    assert!(
        wait_until(WAIT, || dir.join("exec.fifo").exists()),
        "create never started"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = create.kill();
    let _ = create.wait();
    assert!(dir.exists() && !dir.join("state.json").exists());
    c.rt(&["delete", "--force", &c.id]).ok();
    assert!(!dir.exists(), "state dir left");
    assert!(
        cgroup_dirs(&c.cgroup).iter().all(|d| !d.exists()),
        "cgroups left"
    );
    // The id can be used again.
    c.args(&["true"]);
    c.run_ok();
}

#[test]
fn init_errors_are_not_hidden_by_a_broken_pipe() {
    if !require_root() {
        return;
    }
    // The init fails on its first mount while the parent still makes the
    // (many) cgroup device rules: the user sees the mount error.
    let mut c = Ct::new(&berth());
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for minor in 0..1500 {
        rules
            .push(json!({"allow": true, "type": "c", "major": 250, "minor": minor, "access": "r"}));
    }
    c.spec["linux"]["resources"]["devices"] = json!(rules);
    c.spec["mounts"].as_array_mut().unwrap().insert(
        0,
        json!({"destination": "/x", "type": "nosuchfs", "source": "none"}),
    );
    let o = c.run();
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("mounts[0]"), "{}", o.stderr);
    assert!(!o.stderr.contains("Broken pipe"), "{}", o.stderr);
}
