#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Containers through berthd, judged by the real docker CLI: run with
//! output and exit codes, detached life (logs, exec, stop, rm), wait,
//! rename, restart policies, inspect, events, and containers that outlive a
//! SIGKILLed daemon.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, busybox_archive};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A daemon with `busybox:latest` loaded.
fn daemon_with_busybox() -> Daemon {
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "busybox:latest", "containers", &arch);
    d.docker_ok(&["load", "-q", "-i", arch.to_str().unwrap()]);
    d
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let v = json(&d.docker_ok(&["inspect", "--type", "container", name]));
    v[0].clone()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn run_prints_output_and_returns_exit_codes() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    let out = d.docker_ok(&["run", "--rm", "busybox", "echo", "hello", "from", "berth"]);
    assert_eq!(out, "hello from berth\n");

    // stdout and stderr stay apart.
    let o = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(code(&o), 3, "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("err\n"),
        "{o:?}"
    );

    // A killed process: 128 + signal.
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "kill -9 $$"]);
    assert_eq!(code(&o), 137, "{o:?}");

    // docker run's own codes: 127 for a missing program, 126 for one that
    // cannot be executed, 125 for a daemon error.
    let o = d.docker(&["run", "--rm", "busybox", "/no/such/program"]);
    assert_eq!(code(&o), 127, "{o:?}");
    let o = d.docker(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code(&o), 126, "{o:?}");
    let o = d.docker(&["run", "--rm", "--memory", "1k", "busybox", "true"]);
    assert_eq!(code(&o), 125, "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Minimum memory limit"),
        "{o:?}"
    );

    // --rm removed every one of them.
    let all = d.docker_ok(&["ps", "-aq"]);
    assert_eq!(all.trim(), "", "left: {all}");

    // env, workdir, user, hostname.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--hostname",
        "box1",
        "busybox",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; id -u; id -g; hostname",
    ]);
    assert_eq!(out, "hi there\n/tmp\n1000\n1000\nbox1\n");

    // stdin through -i.
    let mut child = d
        .docker_cmd(&["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"shout\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "SHOUT\n", "{o:?}");
    assert!(o.status.success());
}

#[test]
fn detached_container_life() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    let id = d
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "-l",
            "tier=front",
            "busybox",
            "sh",
            "-c",
            "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.docker_ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
    assert!(ps.starts_with(&format!("{} web Up", &id[..12])), "{ps}");
    let ps = d.docker_ok(&["ps", "-q", "--filter", "label=tier=front"]);
    assert_eq!(ps.trim(), &id[..12]);
    wait_for("the first log line", Duration::from_secs(10), || {
        d.docker_ok(&["logs", "web"]).contains("started")
    });

    // exec: output, exit code, environment of the container.
    let out = d.docker_ok(&["exec", "web", "sh", "-c", "echo in-$HOSTNAME"]);
    assert_eq!(out, format!("in-{}\n", &id[..12]));
    let o = d.docker(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(code(&o), 7, "{o:?}");

    // inspect
    let i = inspect(&d, "web");
    assert_eq!(i["State"]["Status"], "running");
    assert_eq!(i["State"]["Running"], true);
    assert!(i["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(i["Name"], "/web");
    assert_eq!(i["Config"]["Labels"]["tier"], "front");
    assert_eq!(i["HostConfig"]["LogConfig"]["Type"], "json-file");

    // top
    let top = d.docker_ok(&["top", "web"]);
    assert!(
        top.contains("PID") && top.contains("sleep") || top.contains("sh"),
        "{top}"
    );

    // pause / unpause
    d.docker_ok(&["pause", "web"]);
    assert_eq!(inspect(&d, "web")["State"]["Status"], "paused");
    d.docker_ok(&["unpause", "web"]);
    assert_eq!(inspect(&d, "web")["State"]["Status"], "running");

    // rename
    d.docker_ok(&["rename", "web", "web2"]);
    let err = d.docker_err(&["inspect", "--type", "container", "web"]);
    assert!(err.contains("No such container"), "{err}");

    // stop: the trap runs, exit code 0, logs have it.
    d.docker_ok(&["stop", "web2"]);
    let i = inspect(&d, "web2");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 0);
    let logs = d.docker_ok(&["logs", "web2"]);
    assert_eq!(logs, "started\nbye\n");
    let ps = d.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("web2 Exited (0)"), "{ps}");

    // start again, then rm -f
    d.docker_ok(&["start", "web2"]);
    assert_eq!(inspect(&d, "web2")["State"]["Running"], true);
    let err = d.docker_err(&["rm", "web2"]);
    assert!(err.contains("container is running"), "{err}");
    d.docker_ok(&["rm", "-f", "web2"]);
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
    let err = d.docker_err(&["rm", "web2"]);
    assert!(err.contains("No such container: web2"), "{err}");
}

#[test]
fn wait_kill_names_and_conflicts() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    d.docker_ok(&[
        "create",
        "--name",
        "w1",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3; exit 4",
    ]);
    let err = d.docker_err(&["create", "--name", "w1", "busybox", "true"]);
    assert!(err.contains("is already in use"), "{err}");
    let err = d.docker_err(&["create", "--name", "bad name", "busybox", "true"]);
    assert!(err.contains("Invalid container name"), "{err}");
    assert_eq!(inspect(&d, "w1")["State"]["Status"], "created");
    d.docker_ok(&["start", "w1"]);
    assert_eq!(d.docker_ok(&["wait", "w1"]).trim(), "4");

    d.docker_ok(&["run", "-d", "--name", "k1", "busybox", "sleep", "100"]);
    d.docker_ok(&["kill", "-s", "TERM", "k1"]);
    assert_eq!(d.docker_ok(&["wait", "k1"]).trim(), "143");
    let err = d.docker_err(&["kill", "k1"]);
    assert!(err.contains("is not running"), "{err}");

    // restart policy on-failure:2: two restarts, then it stays down.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "r1",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    wait_for("two restarts", Duration::from_secs(20), || {
        let i = inspect(&d, "r1");
        i["RestartCount"] == 2 && i["State"]["Status"] == "exited"
    });

    // docker container prune removes the stopped ones.
    let out = d.docker_ok(&["container", "prune", "-f"]);
    assert!(out.contains("Deleted Containers"), "{out}");
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn containers_outlive_a_killed_daemon() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut d = daemon_with_busybox();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 100",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ends",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo two; exit 5",
    ]);
    let pid = inspect(&d, "keep")["State"]["Pid"].as_i64().unwrap();
    d.kill9();
    // While the daemon is away: one keeps running, the other exits.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    d.spawn();
    let i = inspect(&d, "keep");
    assert_eq!(i["State"]["Status"], "running", "{i}");
    assert_eq!(i["State"]["Pid"].as_i64().unwrap(), pid);
    let out = d.docker_ok(&["exec", "keep", "echo", "still here"]);
    assert_eq!(out, "still here\n");
    wait_for("the exit recorded", Duration::from_secs(10), || {
        inspect(&d, "ends")["State"]["Status"] == "exited"
    });
    let i = inspect(&d, "ends");
    assert_eq!(i["State"]["ExitCode"], 5, "{i}");
    assert_eq!(d.docker_ok(&["logs", "ends"]), "two\n");
    d.docker_ok(&["stop", "-t", "1", "keep"]);
    assert_eq!(inspect(&d, "keep")["State"]["ExitCode"], 137);
}
