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

    // A process killed from outside: 128 + signal. (From inside, SIGKILL
    // to a pid namespace's init is ignored by the kernel, as under Docker.)
    d.docker_ok(&["run", "-d", "--name", "killed", "busybox", "sleep", "100"]);
    d.docker_ok(&["kill", "killed"]);
    assert_eq!(d.docker_ok(&["wait", "killed"]).trim(), "137");
    d.docker_ok(&["rm", "killed"]);

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

    // `docker restart` of a --rm container restarts it (as dockerd), and
    // its next exit removes it.
    d.docker_ok(&[
        "run", "-d", "--rm", "--name", "rmre", "busybox", "sleep", "60",
    ]);
    let before = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "rmre"]);
    d.docker_ok(&["restart", "-t", "0", "rmre"]);
    let st = d.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "rmre"]);
    assert!(st.starts_with("running "), "{st}");
    assert_ne!(st.split_whitespace().nth(1), Some(before.trim()), "{st}");
    d.docker_ok(&["stop", "-t", "0", "rmre"]);
    wait_for(
        "rmre removed after its stop",
        Duration::from_secs(5),
        || !d.docker(&["inspect", "rmre"]).status.success(),
    );

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

    // --init: tini is PID 1, the command its child; exit codes pass through.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/comm; echo $$",
    ]);
    assert_eq!(out.lines().next(), Some("docker-init"), "{out}");
    assert_ne!(out.lines().nth(1), Some("1"), "{out}");
    let o = d.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 5"]);
    assert_eq!(code(&o), 5, "{o:?}");

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

    // rm -f of a running --rm container: its exit starts the removal, and
    // rm waits for that instead of failing with "already in progress".
    for i in 0..3 {
        let name = format!("gone{i}");
        d.docker_ok(&[
            "run", "-d", "--rm", "--name", &name, "busybox", "sleep", "100",
        ]);
        d.docker_ok(&["rm", "-f", &name]);
        assert_eq!(
            d.docker_ok(&["ps", "-aq", "--filter", &format!("name={name}")]),
            ""
        );
    }
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

    // The signal reaches the process (PID 1 ignores signals it has no
    // handler for, as under Docker: the trap shows it arrived).
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "k1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    d.docker_ok(&["kill", "-s", "TERM", "k1"]);
    assert_eq!(d.docker_ok(&["wait", "k1"]).trim(), "7");
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
    assert_eq!(zygotes(&d).len(), 1, "one zygote starts the shims");
    d.kill9();
    // While the daemon is away: one keeps running, the other exits; the
    // zygote that forked their shims has gone with the daemon.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(zygotes(&d), Vec::<i32>::new(), "the zygote outlived berthd");
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
    // A zygote killed under the daemon is replaced at the next start.
    assert_eq!(d.docker_ok(&["run", "--rm", "busybox", "echo", "a"]), "a\n");
    let z = zygotes(&d);
    assert_eq!(z.len(), 1, "{z:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(z[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the zygote killed", Duration::from_secs(5), || {
        zygotes(&d).is_empty()
    });
    assert_eq!(d.docker_ok(&["run", "--rm", "busybox", "echo", "b"]), "b\n");
    let again = zygotes(&d);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, z);
}

/// The pids of the shim zygotes of `d` (`berth-shim --zygote <its exec root>/…`).
fn zygotes(d: &Daemon) -> Vec<i32> {
    let exec = d.exec_root().display().to_string();
    processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("berth-shim --zygote") && cmd.contains(&exec))
        .map(|(pid, _)| pid)
        .collect()
}

/// Every process's pid and command line (arguments joined by spaces).
fn processes() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
    }
    out
}

/// Leftovers of a daemon's containers: mounts under its dirs, berth-shim
/// processes naming its exec root, cgroups of its ids.
fn leftovers(d: &Daemon, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = d.dir.path().display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for m in info.lines().filter_map(|l| l.split(' ').nth(4)) {
        if m.starts_with(&prefix) && m.contains("/containers/") {
            out.push(format!("mount {m}"));
        }
    }
    let exec = d.exec_root().display().to_string();
    for (_, cmd) in processes() {
        // The zygote is the daemon's, not a container's.
        if cmd.contains("berth-shim") && cmd.contains(&exec) && !cmd.contains("--zygote") {
            out.push(format!("shim {}", cmd.trim()));
        }
    }
    for id in ids {
        for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = c.path().join("berth").join(id);
            if p.exists() {
                out.push(format!("cgroup {}", p.display()));
            }
        }
    }
    out
}

fn api(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, Value) {
    // Generous: 200 starts at once on 2 cores queue behind each other.
    let (status, _, b) = d
        .try_http_within(method, path, body.as_bytes(), Duration::from_secs(300))
        .unwrap();
    let v = if b.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&b).unwrap_or(Value::Null)
    };
    (status, v)
}

#[test]
fn two_hundred_concurrent_create_start_remove() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    let ids = std::sync::Mutex::new(Vec::new());
    let errors = std::sync::Mutex::new(Vec::new());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for i in 0..200 {
            let (d, ids, errors) = (&d, &ids, &errors);
            s.spawn(move || {
                let body = format!(
                    r#"{{"Image":"busybox","Cmd":["sleep","30"],"HostConfig":{{"NetworkMode":"none"}},"Labels":{{"n":"{i}"}}}}"#
                );
                let (st, v) = api(d, "POST", &format!("/containers/create?name=c{i}"), &body);
                if st != 201 {
                    errors.lock().unwrap().push(format!("create {i}: {st} {v}"));
                    return;
                }
                let id = v["Id"].as_str().unwrap().to_owned();
                ids.lock().unwrap().push(id.clone());
                let (st, v) = api(d, "POST", &format!("/containers/{id}/start"), "");
                if st != 204 {
                    errors.lock().unwrap().push(format!("start {i}: {st} {v}"));
                }
                let (st, v) = api(d, "DELETE", &format!("/containers/{id}?force=1"), "");
                if st != 204 {
                    errors.lock().unwrap().push(format!("remove {i}: {st} {v}"));
                }
            });
        }
    });
    eprintln!("200 create+start+remove: {:?}", t0.elapsed());
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} failures:\n{}\n{}",
        errors.len(),
        errors.join("\n"),
        d.log()
    );
    assert_eq!(d.docker_ok(&["ps", "-aq"]).trim(), "");
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 200);
    let left = leftovers(&d, &ids);
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}

#[test]
fn fifty_containers_survive_a_daemon_killed_mid_work() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut d = daemon_with_busybox();
    // 50 containers, then a burst of creates/starts/removes with the
    // daemon SIGKILLed in the middle of it.
    let mut ids = Vec::new();
    for i in 0..50 {
        let (st, v) = api(
            &d,
            "POST",
            &format!("/containers/create?name=s{i}"),
            r#"{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{"NetworkMode":"none"}}"#,
        );
        assert_eq!(st, 201, "{v}");
        let id = v["Id"].as_str().unwrap().to_owned();
        if i < 40 {
            let (st, v) = api(&d, "POST", &format!("/containers/{id}/start"), "");
            assert_eq!(st, 204, "{v}");
        }
        ids.push(id);
    }
    let acknowledged = std::sync::Mutex::new(Vec::<(String, &'static str)>::new());
    std::thread::scope(|s| {
        let d = &d;
        let ack = &acknowledged;
        let ids = &ids;
        s.spawn(move || {
            for (n, id) in ids.iter().enumerate().skip(40) {
                if let Ok((204, _, _)) = d.try_http("POST", &format!("/containers/{id}/start"), b"")
                {
                    ack.lock().unwrap().push((id.clone(), "started"));
                }
                if n % 3 == 0
                    && let Ok((204, _, _)) = d.try_http(
                        "DELETE",
                        &format!("/containers/{}?force=1", ids[n - 40]),
                        b"",
                    )
                {
                    ack.lock().unwrap().push((ids[n - 40].clone(), "removed"));
                }
            }
        });
        s.spawn(move || {
            for i in 0..10 {
                if let Ok((201, _, b)) = d.try_http(
                    "POST",
                    &format!("/containers/create?name=late{i}"),
                    br#"{"Image":"busybox","Cmd":["sleep","1000"]}"#,
                ) {
                    let v: Value = serde_json::from_slice(&b).unwrap();
                    ack.lock()
                        .unwrap()
                        .push((v["Id"].as_str().unwrap().to_owned(), "created"));
                }
            }
        });
        std::thread::sleep(Duration::from_millis(150));
    });
    d.kill9();
    d.spawn();
    let ack = acknowledged.into_inner().unwrap();
    let names: Vec<String> = d
        .docker_ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect();
    let mut uniq = names.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), names.len(), "duplicated names: {names:?}");
    for (id, what) in &ack {
        let out = d.docker(&["inspect", "--type", "container", id]);
        match *what {
            "removed" => assert!(!out.status.success(), "{id} was removed but is back"),
            "started" => {
                let i = json(&String::from_utf8_lossy(&out.stdout));
                assert_eq!(
                    i[0]["State"]["Status"], "running",
                    "{id}: {}",
                    i[0]["State"]
                );
            }
            _ => assert!(out.status.success(), "{id} was created but is lost"),
        }
    }
    // The first 40 were running before the burst: each is running still,
    // or was removed on request.
    for id in &ids[..40] {
        if ack.iter().any(|(x, w)| x == id && *w == "removed") {
            continue;
        }
        let out = d.docker(&["inspect", "--type", "container", id]);
        if out.status.success() {
            let i = json(&String::from_utf8_lossy(&out.stdout));
            let st = i[0]["State"]["Status"].as_str().unwrap().to_owned();
            assert!(st == "running" || st == "exited", "{id}: {st}");
        }
    }
    // Everything removed now leaves nothing.
    let all: Vec<String> = d
        .docker_ok(&["ps", "-aq", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect();
    for id in &all {
        d.docker_ok(&["rm", "-f", id]);
    }
    let mut every = ids.clone();
    every.extend(all);
    let left = leftovers(&d, &every);
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}

#[test]
fn interactive_tty_through_a_pseudo_terminal() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    // `script` gives the docker CLI a terminal of its own (rows 24, cols 80
    // by default under script): the container sees a tty with that size,
    // and what is typed reaches it.
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        "stty rows 33 cols 101; docker run -it --rm busybox sh -c 'tty; stty size; read x; echo got:$x; exit 4'",
        "/dev/null",
    ])
    .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
    .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        stdin.write_all(b"hello\r").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("33 101"), "{out}");
    assert!(out.contains("got:hello"), "{out}");
    assert_eq!(code(&o), 4, "{out}");
}

#[test]
fn cp_commit_events_stats_health_and_limits() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    let tmp = d.dir.path().to_owned();
    let since = chrono::Utc::now().timestamp().to_string();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sh",
        "-c",
        "while true; do sleep 0.1; done",
    ]);

    // Limits are visible inside (cgroup v1 memory controller here, v2 elsewhere).
    let mem = d.docker_ok(&["exec", "box", "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(mem.trim(), "67108864");
    // docker update changes them live.
    d.docker_ok(&["update", "--memory", "96m", "--memory-swap", "-1", "box"]);
    let mem = d.docker_ok(&["exec", "box", "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(mem.trim(), "100663296");
    assert_eq!(inspect(&d, "box")["HostConfig"]["Memory"], 100663296);
    // --device: the node exists inside, usable, and mknod of others stays
    // refused by the cgroup.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/x:rw",
        "busybox",
        "sh",
        "-c",
        "ls -l /dev/x; echo hi > /dev/x && echo wrote",
    ]);
    assert!(out.starts_with("crw") && out.contains("wrote"), "{out}");
    let err = d.docker_err(&["run", "--rm", "--device", "/dev/nope", "busybox", "true"]);
    assert!(err.contains("error gathering device information"), "{err}");
    let err = d.docker_err(&["run", "--rm", "--device", "/etc/passwd", "busybox", "true"]);
    assert!(err.contains("not a device node"), "{err}");

    // cp into the container and back out.
    std::fs::write(tmp.join("in.txt"), "copied in\n").unwrap();
    d.docker_ok(&[
        "cp",
        tmp.join("in.txt").to_str().unwrap(),
        "box:/tmp/in.txt",
    ]);
    assert_eq!(
        d.docker_ok(&["exec", "box", "cat", "/tmp/in.txt"]),
        "copied in\n"
    );
    d.docker_ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo deep > /data/sub/f",
    ]);
    d.docker_ok(&["cp", "box:/data", tmp.join("out").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(tmp.join("out/sub/f")).unwrap(),
        "deep\n"
    );
    let err = d.docker_err(&["cp", "box:/nope", tmp.to_str().unwrap()]);
    assert!(err.contains("Could not find the file /nope"), "{err}");

    // Health: unhealthy, then healthy once the file exists.
    wait_for("unhealthy", Duration::from_secs(10), || {
        inspect(&d, "box")["State"]["Health"]["Status"] == "unhealthy"
    });
    d.docker_ok(&["exec", "box", "touch", "/tmp/ok"]);
    wait_for("healthy", Duration::from_secs(10), || {
        inspect(&d, "box")["State"]["Health"]["Status"] == "healthy"
    });
    let ps = d.docker_ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.contains("(healthy)"), "{ps}");

    // stats --no-stream
    let stats = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}}",
        "box",
    ]);
    assert!(
        stats.starts_with("box ") && stats.contains("96MiB"),
        "{stats}"
    );

    // diff and commit
    let diff = d.docker_ok(&["diff", "box"]);
    assert!(diff.contains("A /tmp/in.txt"), "{diff}");
    d.docker_ok(&["commit", "-m", "snap", "box", "snap:1"]);
    let out = d.docker_ok(&["run", "--rm", "snap:1", "cat", "/tmp/in.txt"]);
    assert_eq!(out, "copied in\n");

    // export
    let out = d.docker_cmd(&["export", "box"]).output().unwrap();
    assert!(out.status.success());
    let mut ar = tar::Archive::new(out.stdout.as_slice());
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "tmp/in.txt"),
        "{names:?}"
    );

    // events since the start of the test, up to now
    d.docker_ok(&["stop", "-t", "1", "box"]);
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let ev = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=box",
        "--format",
        "{{.Action}}",
    ]);
    for want in [
        "create",
        "start",
        "exec_start",
        "health_status: healthy",
        "kill",
        "die",
        "stop",
    ] {
        assert!(
            ev.lines().any(|l| l.starts_with(want)),
            "no {want} in:\n{ev}"
        );
    }
}

#[test]
fn oom_kill_is_reported_in_inspect_and_events() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    let start = chrono_now();
    // `tail` keeps a line without newlines whole: /dev/zero grows it until
    // the 16 MiB limit (no swap) kills it.
    let out = d.docker(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(code(&out), 137, "{out:?}");
    let c = inspect(&d, "hog");
    assert_eq!(c["State"]["OOMKilled"], true, "{c}");
    assert_eq!(c["State"]["ExitCode"], 137);
    let ev = d.docker_ok(&[
        "events",
        "--since",
        &start,
        "--until",
        &chrono_next(),
        "--filter",
        "container=hog",
        "--format",
        "{{.Action}}",
    ]);
    assert!(ev.lines().any(|l| l == "oom"), "{ev}");
    // A container that stays under its limit is not marked.
    d.docker_ok(&["run", "--name", "fine", "-m", "16m", "busybox", "true"]);
    assert_eq!(inspect(&d, "fine")["State"]["OOMKilled"], false);
}

/// Unix seconds now, as `docker events --since` takes them (`--until`
/// excludes what happened after its whole second: give it the next one).
fn chrono_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

fn chrono_next() -> String {
    (chrono_now().parse::<u64>().unwrap() + 1).to_string()
}

/// Debian's docker 20.10 client (`/usr/bin/docker` of docker.io, API 1.41)
/// drives berthd too: negotiation, images, run, detached life, networks.
#[test]
fn debian_docker_20_10_client_drives_berthd() {
    let old = std::path::Path::new("/usr/bin/docker");
    let is_20 = std::process::Command::new(old)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("version 20.10"));
    if !nix::unistd::Uid::effective().is_root() || !is_20 {
        eprintln!("skipped: needs root and Debian's docker.io client at /usr/bin/docker");
        return;
    }
    let d = daemon_with_busybox();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(old)
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_CONTEXT")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker 20.10 {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let v = run(&[
        "version",
        "-f",
        "{{.Client.APIVersion}} {{.Server.APIVersion}}",
    ]);
    assert!(v.starts_with("1.41 "), "{v}");
    assert!(run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).contains("busybox:latest"));
    assert_eq!(
        run(&["run", "--rm", "busybox", "echo", "old", "client"]),
        "old client\n"
    );
    run(&["network", "create", "oldnet"]);
    run(&[
        "run",
        "-d",
        "--name",
        "old1",
        "--network",
        "oldnet",
        "busybox",
        "sleep",
        "60",
    ]);
    let ps = run(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("old1 Up"), "{ps}");
    assert_eq!(run(&["exec", "old1", "echo", "in"]), "in\n");
    let ip = run(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.oldnet.IPAddress}}",
        "old1",
    ]);
    assert!(ip.trim().starts_with("10."), "{ip}");
    let out = run(&[
        "run",
        "--rm",
        "--network",
        "oldnet",
        "busybox",
        "ping",
        "-c",
        "1",
        "old1",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    run(&["rm", "-f", "old1"]);
    run(&["network", "rm", "oldnet"]);
    assert_eq!(run(&["ps", "-aq"]), "");
}

/// Attach with `logs=1` replays the log first; `/attach/ws` carries the
/// same output over a websocket (raw, binary messages).
#[test]
fn attach_with_logs_and_over_a_websocket() {
    use std::io::{Read, Write};
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = daemon_with_busybox();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo first; echo oops >&2; sleep 2; echo second; sleep 30",
    ]);
    wait_for("first line", Duration::from_secs(10), || {
        d.docker_ok(&["logs", "talker"]).contains("first")
    });
    // logs=1 without stream: the multiplexed log, then the end.
    let (status, _, body) = d
        .try_http(
            "POST",
            "/containers/talker/attach?logs=1&stream=0&stdout=1&stderr=1",
            b"",
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
    assert_eq!(&body[8..14], b"first\n");
    assert_eq!(body[14], 2, "stderr frame: {body:?}");

    // The same upgraded (docker-py's way): nothing after the 101 answer
    // until the client has read it, so one read gets the answer alone (a
    // client that then reads the raw socket loses nothing).
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /containers/talker/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut first = vec![0u8; 8192];
    let n = s.read(&mut first).unwrap();
    let head = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "more than the answer in one read: {head:?}"
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(&rest[..14], b"\x01\0\0\0\0\0\0\x06first\n", "{rest:?}");

    // The websocket: handshake, then the log and the live output.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /containers/talker/attach/ws?logs=1&stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    // Frames after the 101 head: server frames are unmasked, short ones.
    while Instant::now() < deadline {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.contains("second") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{text}"
    );
    let first = text.find("first").expect("log replayed");
    let second = text.find("second").expect("live output");
    assert!(first < second);
    assert!(!text.contains("oops"), "stderr was not asked for: {text}");
    // The payload of the first frame is binary (opcode 2).
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got[head_end] & 0x0f, 2);
    d.docker_ok(&["rm", "-f", "talker"]);
}

/// Whether `d` has made container `id` ahead of its start: its shim runs
/// while the record still says created.
fn made_ahead(d: &Daemon, id: &str) -> bool {
    let exec = d.exec_root().display().to_string();
    processes()
        .iter()
        .any(|(_, cmd)| cmd.contains("berth-shim") && cmd.contains(&exec) && cmd.contains(id))
}

/// What is left of a created container made ahead of its start, besides
/// its record: shim, mounts (rootfs, pinned network namespace), cgroups.
fn made_leftovers(d: &Daemon, id: &str) -> Vec<String> {
    let mut out: Vec<String> = leftovers(d, &[id.to_owned()])
        .into_iter()
        .filter(|l| l.contains(id))
        .collect();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for m in info.lines().filter_map(|l| l.split(' ').nth(4)) {
        if m.contains(id) && !out.iter().any(|o| o.ends_with(m)) {
            out.push(format!("mount {m}"));
        }
    }
    out
}

/// `docker create ARGS`, once `d` has made the container ahead of its
/// start; its id.
fn create_made_ahead(d: &Daemon, args: &[&str]) -> String {
    let mut full = vec!["create"];
    full.extend_from_slice(args);
    let id = d.docker_ok(&full).trim().to_owned();
    wait_for("the container made ahead", Duration::from_secs(5), || {
        made_ahead(d, &id)
    });
    id
}

#[test]
fn created_containers_made_ahead_of_their_start() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut d = daemon_with_busybox();
    // Made after the create, dropped when no start comes: nothing left.
    let id = create_made_ahead(&d, &["--name", "idle", "busybox", "sleep", "60"]);
    assert_eq!(inspect(&d, "idle")["State"]["Status"], "created");
    assert_eq!(inspect(&d, "idle")["State"]["Pid"], 0);
    wait_for(
        "the unstarted container dropped",
        Duration::from_secs(10),
        || made_leftovers(&d, &id).is_empty(),
    );
    d.docker_ok(&["start", "idle"]);
    assert_eq!(inspect(&d, "idle")["State"]["Status"], "running");
    d.docker_ok(&["rm", "-f", "idle"]);
    assert_eq!(made_leftovers(&d, &id), Vec::<String>::new());

    // Removed while made ahead: nothing left once rm answers.
    let id = create_made_ahead(&d, &["busybox", "true"]);
    d.docker_ok(&["rm", &id]);
    assert_eq!(made_leftovers(&d, &id), Vec::<String>::new());

    // Changed between create and start: the start has the change.
    d.docker_ok(&["network", "create", "--subnet", "10.231.61.0/24", "ahead1"]);
    d.docker_ok(&["network", "create", "--subnet", "10.231.62.0/24", "ahead2"]);
    let id = create_made_ahead(
        &d,
        &[
            "--name",
            "moved",
            "--network",
            "ahead1",
            "--memory",
            "64m",
            "busybox",
            "sleep",
            "60",
        ],
    );
    d.docker_ok(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "200m",
        "moved",
    ]);
    d.docker_ok(&["rename", "moved", "moved2"]);
    d.docker_ok(&["network", "disconnect", "ahead1", "moved2"]);
    d.docker_ok(&["network", "connect", "ahead2", "moved2"]);
    // A network whose only user was made ahead on it goes.
    d.docker_ok(&["network", "rm", "ahead1"]);
    d.docker_ok(&["start", "moved2"]);
    let addrs = d.docker_ok(&["exec", "moved2", "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains("10.231.62."), "{addrs}");
    assert!(!addrs.contains("10.231.61."), "{addrs}");
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/berth/{id}/memory.limit_in_bytes"
    ))
    .unwrap();
    assert_eq!(limit.trim(), (96u64 << 20).to_string());
    // Its name on the network is the new one.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "ahead2",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "moved2",
    ]);
    assert!(out.contains("1 packets received"), "{out}");

    // Copied into while made ahead: the start sees the file.
    let tmp = d.dir.path().join("cp-in");
    std::fs::write(&tmp, "copied\n").unwrap();
    create_made_ahead(&d, &["--name", "filled", "busybox", "cat", "/in"]);
    d.docker_ok(&["cp", tmp.to_str().unwrap(), "filled:/in"]);
    assert_eq!(d.docker_ok(&["start", "-a", "filled"]), "copied\n");

    // berthd stopped while one is made ahead drops it before it exits.
    let id = create_made_ahead(&d, &["--name", "stopped", "busybox", "echo", "later"]);
    assert!(d.terminate().success());
    assert_eq!(made_leftovers(&d, &id), Vec::<String>::new());
    d.spawn();
    assert_eq!(d.docker_ok(&["start", "-a", "stopped"]), "later\n");

    // A daemon killed while one is made ahead: the next daemon drops it
    // and the container starts.
    let id = create_made_ahead(&d, &["--name", "orphan", "busybox", "echo", "after"]);
    d.kill9();
    d.spawn();
    wait_for("the orphan dropped", Duration::from_secs(10), || {
        made_leftovers(&d, &id).is_empty()
    });
    assert_eq!(d.docker_ok(&["start", "-a", "orphan"]), "after\n");

    for c in ["moved2", "filled", "stopped", "orphan"] {
        d.docker_ok(&["rm", "-f", c]);
    }
    d.docker_ok(&["network", "rm", "ahead2"]);
}
