#![allow(clippy::unwrap_used)]
//! Rootless containers: an unprivileged user created by the test runs
//! berth-runtime with user namespaces, as `runc --rootless` does — first
//! mapping only its own uid, then a subordinate range through
//! newuidmap/newgidmap.
//!
//! Run: `BERTH_TEST_ROOT=1 cargo test -p berth-runtime-cli --test rootless` as root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// A throwaway unprivileged user with a subordinate id range, removed on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: tempfile::TempDir,
}

impl User {
    fn new(tag: u32) -> User {
        let _lock = USERS.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("brl{}x{tag}", std::process::id());
        let home = tempfile::Builder::new()
            .prefix("berth-rootless-")
            .tempdir()
            .unwrap();
        fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let ok = Command::new("useradd")
            .args(["-M", "-d"])
            .arg(home.path())
            .args(["-s", "/bin/sh", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        // A subordinate range of our own, far from anything else.
        let base = 200_000 + ((std::process::id() % 1000) * 4 + tag) * 65_536;
        for file in ["/etc/subuid", "/etc/subgid"] {
            let mut text = fs::read_to_string(file).unwrap_or_default();
            text.push_str(&format!("{name}:{base}:65536\n"));
            fs::write(file, text).unwrap();
        }
        let u = User {
            name,
            uid,
            gid,
            home,
        };
        Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(u.home.path())
            .status()
            .unwrap();
        u
    }

    fn subid_base(&self) -> u32 {
        let text = fs::read_to_string("/etc/subuid").unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{}:", self.name)))
            .and_then(|rest| rest.split(':').next())
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Run `berth-runtime <args>` as this user.
    fn runtime(&self, bin: &Path, args: &[&str]) -> Out {
        let runtime_dir = self.home.path().join("run");
        run_cmd(
            Command::new("runuser")
                .args(["-u", &self.name, "--"])
                .arg("env")
                .arg(format!("XDG_RUNTIME_DIR={}", runtime_dir.display()))
                .arg(format!("HOME={}", self.home.path().display()))
                .arg(bin)
                .args(args)
                .current_dir(self.home.path()),
        )
    }
}

/// useradd/userdel and the subuid files are not safe to change concurrently.
static USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for User {
    fn drop(&mut self) {
        let _lock = USERS.lock().unwrap_or_else(|e| e.into_inner());
        // Kill whatever this test's user still runs (all started by the test).
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_string));
            if uid.as_deref() == Some(&self.uid.to_string()) {
                // SAFETY: kill(2) on a pid owned by the test's own user.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = Command::new("userdel").arg(&self.name).status();
        for file in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(text) = fs::read_to_string(file) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{}:", self.name)))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = fs::write(file, kept);
            }
        }
    }
}

fn berth() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime"))
}

/// A bundle owned by the user: busybox rootfs and `spec --rootless`.
fn bundle(u: &User, bin: &Path, script: &str, extra_maps: bool) -> PathBuf {
    let b = u.home.path().join("bundle");
    let _ = fs::remove_dir_all(&b);
    fs::create_dir_all(b.join("rootfs")).unwrap();
    make_rootfs(&b.join("rootfs"));
    Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", u.uid, u.gid))
        .arg(&b)
        .status()
        .unwrap();
    u.runtime(
        bin,
        &["spec", "--rootless", "--bundle", b.to_str().unwrap()],
    )
    .ok();
    let path = b.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["sh", "-c", script]);
    if extra_maps {
        let base = u.subid_base();
        spec["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": u.uid, "size": 1},
            {"containerID": 1, "hostID": base, "size": 65536}
        ]);
        spec["linux"]["gidMappings"] = json!([
            {"containerID": 0, "hostID": u.gid, "size": 1},
            {"containerID": 1, "hostID": base, "size": 65536}
        ]);
    }
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    Command::new("chown")
        .arg(format!("{}:{}", u.uid, u.gid))
        .arg(&path)
        .status()
        .unwrap();
    b
}

/// The binary must be reachable by the user: copy it next to the bundle.
fn user_binary(u: &User) -> PathBuf {
    let dst = u.home.path().join("berth-runtime");
    fs::copy(berth(), &dst).unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

#[test]
fn rootless_run_maps_own_uid_to_root() {
    if !require_root() {
        return;
    }
    let u = User::new(1);
    let bin = user_binary(&u);
    let b = bundle(
        &u,
        &bin,
        "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map; exit 7",
        false,
    );
    let out = u.runtime(&bin, &["run", "--bundle", b.to_str().unwrap(), "rl-own"]);
    assert_eq!(out.code, 7, "exit code propagates: {}", out.stderr);
    let lines: Vec<Vec<String>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(lines[0], ["0"], "root inside: {}", out.stdout);
    assert_eq!(
        lines[1],
        ["0", &u.uid.to_string(), "1"],
        "uid map: {}",
        out.stdout
    );
    assert_eq!(
        lines[2],
        ["0", &u.gid.to_string(), "1"],
        "gid map: {}",
        out.stdout
    );
    // run deletes the container; nothing is left in the user's state root.
    let list = u.runtime(&bin, &["list", "-q"]);
    list.ok();
    assert!(list.stdout.trim().is_empty(), "left: {}", list.stdout);
}

#[test]
fn rootless_lifecycle_with_subordinate_ids() {
    if !require_root() {
        return;
    }
    let u = User::new(2);
    let bin = user_binary(&u);
    let b = bundle(&u, &bin, "echo ready; exec sleep 600", true);
    u.runtime(&bin, &["create", "--bundle", b.to_str().unwrap(), "rl-sub"])
        .ok();
    u.runtime(&bin, &["start", "rl-sub"]).ok();
    let st = u.runtime(&bin, &["state", "rl-sub"]);
    st.ok();
    assert_eq!(st.json()["status"], "running", "{}", st.stdout);
    let pid = st.json()["pid"].as_i64().unwrap();
    // The container's root is the user on the host.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some(&u.uid.to_string()),
        "{uid_line}"
    );
    // The subordinate range is mapped (via newuidmap) and usable.
    let base = u.subid_base();
    let ex = u.runtime(&bin, &["exec", "--cap", "CAP_CHOWN", "rl-sub", "sh", "-c", "cat /proc/self/uid_map; touch /dev/shm/f && chown 5:5 /dev/shm/f && stat -c %u /dev/shm/f"]);
    ex.ok();
    assert!(
        ex.stdout.contains(&format!("{base}")) && ex.stdout.trim_end().ends_with('5'),
        "exec output: {}",
        ex.stdout
    );
    u.runtime(&bin, &["kill", "rl-sub", "KILL"]).ok();
    assert!(
        wait_until(WAIT, || !pid_alive(pid as i32)),
        "container died"
    );
    u.runtime(&bin, &["delete", "rl-sub"]).ok();
    let list = u.runtime(&bin, &["list", "-q"]);
    assert!(list.stdout.trim().is_empty(), "left: {}", list.stdout);
}
