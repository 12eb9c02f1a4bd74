//! berth-shim end to end: busybox containers created, fed, watched, logged
//! and reaped by the real shim binary, driven over its socket.
//!
//! Run as root: `cargo test -p berth-shim` (skipped otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use berth_shim::proto::{Frame, Reply, Request, Spawned};
use common::{Ct, require_root, wait_until};
use serde_json::json;

#[test]
fn exit_codes_reach_wait_and_exit_json() {
    if !require_root() {
        return;
    }
    for (args, code) in [(&["true"][..], 0), (&["sh", "-c", "exit 3"][..], 3)] {
        let mut ct = Ct::new(args, |_, _| {});
        ct.ready();
        let state = match ct.request(&Request::State) {
            Reply::State(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(state.status, "running");
        assert_eq!(Some(state.pid), ct.init_pid);
        let exit = ct.run_to_exit();
        assert_eq!(exit.code, code, "{args:?}");
        assert!(!exit.oom_killed);
        assert_eq!(ct.assert_clean_exit(), exit);
    }
}

#[test]
fn kill_ends_the_container_with_128_plus_signal() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sleep", "1000"], |_, _| {});
    ct.ready();
    ct.start();
    let state = match ct.request(&Request::State) {
        Reply::State(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(state.status, "running");
    assert!(state.exit.is_none());
    // Two waiters, both answered.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let mut s = ct.connect();
            std::io::Write::write_all(&mut s, b"{\"op\":\"wait\"}\n").unwrap();
            s
        })
        .collect();
    ct.kill(9, false);
    for s in waiters {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line).unwrap();
        match serde_json::from_str(&line).unwrap() {
            Reply::Exited(e) => assert_eq!(e.code, 137),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ct.assert_clean_exit().code, 137);
}

#[test]
fn stdout_and_stderr_become_json_file_lines() {
    if !require_root() {
        return;
    }
    let script = "echo out1; echo err1 >&2; echo out2; printf partial";
    let mut ct = Ct::new(&["sh", "-c", script], |_, _| {});
    ct.ready();
    assert_eq!(ct.run_to_exit().code, 0);
    let lines = ct.log_lines(&ct.log_path());
    let of = |stream: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, l)| l.clone())
            .collect()
    };
    assert_eq!(of("stdout"), ["out1\n", "out2\n", "partial"]);
    assert_eq!(of("stderr"), ["err1\n"]);
    let raw = std::fs::read_to_string(ct.log_path()).unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    ct.assert_clean_exit();
}

#[test]
fn the_log_rotates_to_max_file_files() {
    if !require_root() {
        return;
    }
    let script = "i=0; while [ $i -lt 60 ]; do echo line$i; i=$((i+1)); done";
    let mut ct = Ct::new(&["sh", "-c", script], |cfg, _| {
        let log = cfg.log.as_mut().unwrap();
        log.max_size = Some(300);
        log.max_file = 2;
    });
    ct.ready();
    assert_eq!(ct.run_to_exit().code, 0);
    let path = ct.log_path();
    let older = std::path::PathBuf::from(format!("{}.1", path.display()));
    for p in [&path, &older] {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len > 0 && len <= 300, "{} has {len} bytes", p.display());
    }
    assert!(!std::path::Path::new(&format!("{}.2", path.display())).exists());
    let current = ct.log_lines(&path);
    assert_eq!(current.last().unwrap().1, "line59\n");
    ct.assert_clean_exit();
}

#[test]
fn attach_before_start_gets_all_output_and_the_exit() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sh", "-c", "echo one; echo two >&2; exit 4"], |_, _| {});
    ct.ready();
    let mut a = ct.attach(false);
    ct.start();
    let exit = a.until_exit();
    assert_eq!(exit.code, 4);
    assert_eq!(a.stdout(), "one\n");
    assert_eq!(a.stderr(), "two\n");
    ct.assert_clean_exit();
}

#[test]
fn two_attached_clients_both_get_the_output() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sh", "-c", "echo hi; echo there"], |_, _| {});
    ct.ready();
    let mut a = ct.attach(false);
    let mut b = ct.stream(&Request::Attach {
        stdin: false,
        stdout: true,
        stderr: false,
    });
    ct.start();
    for c in [&mut a, &mut b] {
        assert_eq!(c.until_exit().code, 0);
        assert_eq!(c.stdout(), "hi\nthere\n");
    }
    ct.assert_clean_exit();
}

#[test]
fn stdin_reaches_the_container_and_stdin_once_closes_it() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["cat"], |cfg, _| {
        cfg.open_stdin = true;
        cfg.stdin_once = true;
    });
    ct.ready();
    let mut a = ct.attach(true);
    ct.start();
    a.send(b"hello\n");
    a.read_until("hello\n");
    a.send(b"bye\n");
    a.close_stdin();
    // cat sees EOF and exits 0.
    assert_eq!(a.until_exit().code, 0);
    assert_eq!(a.stdout(), "hello\nbye\n");
    assert_eq!(ct.assert_clean_exit().code, 0);
}

#[test]
fn without_stdin_once_a_client_eof_leaves_stdin_open() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["cat"], |cfg, _| cfg.open_stdin = true);
    ct.ready();
    let mut a = ct.attach(true);
    ct.start();
    a.send(b"first\n");
    a.read_until("first\n");
    a.close_stdin();
    // Another client's stdin still reaches cat; the first still gets output.
    let mut b = ct.attach(true);
    b.send(b"second\n");
    b.read_until("second\n");
    a.read_until("second\n");
    ct.kill(9, false);
    assert_eq!(a.until_exit().code, 137);
    ct.assert_clean_exit();
}

#[test]
fn a_tty_container_is_resized_through_its_master() {
    if !require_root() {
        return;
    }
    let script = "stty size; read x; stty size";
    let mut ct = Ct::new(&["sh", "-c", script], |cfg, _| {
        cfg.tty = true;
        cfg.open_stdin = true;
        cfg.console_size = Some((30, 100));
    });
    ct.ready();
    let mut a = ct.attach(true);
    ct.start();
    a.read_until("30 100");
    assert_eq!(
        ct.request(&Request::Resize {
            exec_id: None,
            height: 40,
            width: 120
        }),
        Reply::Ok
    );
    a.send(b"go\n");
    assert_eq!(a.until_exit().code, 0);
    assert!(a.stdout().contains("40 120"), "{:?}", a.stdout());
    assert!(a.err.is_empty(), "a tty has one stream");
    // The log has it too, as stdout (with the terminal's \r\n).
    let lines = ct.log_lines(&ct.log_path());
    assert!(lines.iter().all(|(s, _)| s == "stdout"));
    assert!(lines.iter().any(|(_, l)| l.contains("30 100")), "{lines:?}");
    ct.assert_clean_exit();
}

fn process(args: &[&str], terminal: bool) -> serde_json::Value {
    json!({
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/"
    })
}

#[test]
fn exec_streams_output_and_its_exit_code() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sleep", "1000"], |_, _| {});
    ct.ready();
    ct.start();
    let mut e = ct.stream(&Request::Exec {
        exec_id: "e1".into(),
        process: process(&["sh", "-c", "echo out; echo err >&2; exit 5"], false),
        stdin: false,
        console_size: None,
    });
    assert_eq!(e.until_exit().code, 5);
    assert_eq!(e.stdout(), "out\n");
    assert_eq!(e.stderr(), "err\n");
    // With stdin, and a missing program refused with the runtime's words.
    let mut e = ct.stream(&Request::Exec {
        exec_id: "e2".into(),
        process: process(&["cat"], false),
        stdin: true,
        console_size: None,
    });
    e.send(b"piped\n");
    e.close_stdin();
    assert_eq!(e.until_exit().code, 0);
    assert_eq!(e.stdout(), "piped\n");
    match ct.request(&Request::Exec {
        exec_id: "e3".into(),
        process: process(&["nope"], false),
        stdin: false,
        console_size: None,
    }) {
        Reply::Error { message } => {
            assert!(message.contains("executable file not found"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A process left behind holds the output open: the exit still comes.
    let mut e = ct.stream(&Request::Exec {
        exec_id: "e4".into(),
        process: process(&["sh", "-c", "sleep 1000 & echo bg; exit 2"], false),
        stdin: false,
        console_size: None,
    });
    assert_eq!(e.until_exit().code, 2);
    assert_eq!(e.stdout(), "bg\n");
    // Exec output is not the container's log.
    assert!(ct.log_lines(&ct.log_path()).is_empty());
}

#[test]
fn exec_with_a_tty() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sleep", "1000"], |_, _| {});
    ct.ready();
    ct.start();
    let mut e = ct.stream(&Request::Exec {
        exec_id: "t1".into(),
        process: process(&["sh", "-c", "stty size; read x; stty size; tty"], true),
        stdin: true,
        console_size: Some((20, 70)),
    });
    e.read_until("20 70");
    assert_eq!(
        ct.request(&Request::Resize {
            exec_id: Some("t1".into()),
            height: 21,
            width: 71
        }),
        Reply::Ok
    );
    e.send(b"x\n");
    assert_eq!(e.until_exit().code, 0);
    let out = e.stdout();
    assert!(
        out.contains("21 71") && out.contains("/dev/pts/"),
        "{out:?}"
    );
}

#[test]
fn a_missing_program_fails_the_spawn_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["nope"], |_, _| {});
    match ct.spawn() {
        Spawned::Failed(msg) => assert!(
            msg.contains("exec: \"nope\": executable file not found in $PATH"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(!ct.root.join(&ct.id).exists(), "runtime state left");
    assert!(common::cgroup_dirs(&ct.id).is_empty(), "cgroups left");
    for f in ["shim.sock", "shim.pid", "console.sock", "exit.json"] {
        assert!(!ct.state.join(f).exists(), "{f} left");
    }
}

/// The json-file log is opened before the container is created (the shim
/// reports before the monitor runs): one that cannot be opened fails the
/// spawn, with its path, and nothing is created.
#[test]
fn a_log_that_cannot_be_opened_fails_the_spawn() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["true"], |cfg, _| {
        // Under <tmp>/ctr.log, made a regular file below.
        let l = cfg.log.as_mut().unwrap();
        l.path = l.path.join("sub/c-json.log");
    });
    std::fs::write(ct.tmp.path().join("ctr.log"), b"a file").unwrap();
    match ct.spawn() {
        Spawned::Failed(msg) => assert!(
            msg.contains("open the log") && msg.contains("ctr.log/sub/c-json.log"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(!ct.root.join(&ct.id).exists(), "runtime state left");
    assert!(common::cgroup_dirs(&ct.id).is_empty(), "cgroups left");
    for f in ["shim.sock", "shim.pid", "exit.json"] {
        assert!(!ct.state.join(f).exists(), "{f} left");
    }
}

/// berthd starts the shim before it writes the bundle: the shim creates
/// the container only after the go byte, and gives up cleanly without it.
#[test]
fn a_gated_shim_waits_for_the_bundle_or_gives_up() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["true"], |_, _| {});
    let spec = ct.bundle.join("config.json");
    let aside = ct.bundle.join("config.json.aside");
    std::fs::rename(&spec, &aside).unwrap();
    // Written only after the request: a shim that did not wait would fail
    // on the missing config.json.
    let gate = |ct: &Ct| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::rename(
            ct.bundle.join("config.json.aside"),
            ct.bundle.join("config.json"),
        )
        .unwrap();
        true
    };
    match ct.spawn_gated(Some(&gate)) {
        Spawned::Ready { .. } => {}
        Spawned::Failed(e) => panic!("the shim failed: {e}\n{}", ct.shim_log()),
    }

    let mut ct = Ct::new(&["true"], |_, _| {});
    match ct.spawn_gated(Some(&|_: &Ct| false)) {
        Spawned::Failed(msg) => assert!(msg.contains("gave the start up"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(!ct.root.join(&ct.id).exists(), "runtime state left");
    assert!(common::cgroup_dirs(&ct.id).is_empty(), "cgroups left");
    for f in ["shim.sock", "shim.pid", "console.sock", "exit.json"] {
        assert!(!ct.state.join(f).exists(), "{f} left");
    }
}

#[test]
fn the_shim_outlives_its_spawner_and_keeps_logging() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sh", "-c", "echo a; sleep 1; echo b"], |_, _| {});
    ct.ready();
    let (pid, _) = ct.pid_file();
    // The process that spawned it has exited; it is nobody's child here.
    assert_ne!(ppid(pid), std::process::id() as i32);
    // Start, and hang up: nobody listens any more.
    ct.start();
    assert!(ct.shim_alive());
    assert!(
        wait_until(|| ct.state.join("exit.json").exists()),
        "no exit.json\n{}",
        ct.shim_log()
    );
    let lines: Vec<String> = ct
        .log_lines(&ct.log_path())
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(lines, ["a\n", "b\n"]);
    assert_eq!(ct.assert_clean_exit().code, 0);
}

#[test]
fn garbage_gets_an_error_and_the_shim_keeps_serving() {
    if !require_root() {
        return;
    }
    use std::io::{Read, Write};
    let mut ct = Ct::new(&["sh", "-c", "echo ok"], |_, _| {});
    ct.ready();
    for junk in [
        &b"this is not json\n"[..],
        b"{\"op\":\"fly\"}\n",
        b"\xff\xfe\x00\n",
        b"{\"op\":",
    ] {
        let mut s = ct.connect();
        s.write_all(junk).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        match serde_json::from_str(all.trim_end()).unwrap() {
            Reply::Error { .. } => {}
            other => panic!("{junk:?}: {other:?}"),
        }
        assert_eq!(all.lines().count(), 1, "then closed");
    }
    // A client that connects and goes away.
    drop(ct.connect());
    assert_eq!(ct.run_to_exit().code, 0);
    ct.assert_clean_exit();
}

#[test]
fn a_client_that_does_not_read_blocks_nothing() {
    if !require_root() {
        return;
    }
    // 4 MiB of output without a newline, then a last line.
    let script = "head -c 4194304 /dev/zero | tr '\\0' x; echo; echo done";
    let mut ct = Ct::new(&["sh", "-c", script], |_, _| {});
    ct.ready();
    let stuck = ct.attach(false);
    assert_eq!(ct.run_to_exit().code, 0);
    let lines = ct.log_lines(&ct.log_path());
    assert_eq!(lines.last().unwrap().1, "done\n");
    let bytes: usize = lines.iter().map(|(_, l)| l.trim_end().len()).sum();
    assert_eq!(bytes, 4 * 1024 * 1024 + 4);
    ct.assert_clean_exit();
    drop(stuck);
}

#[test]
fn idle_rss_of_the_shim() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sleep", "1000"], |_, _| {});
    ct.ready();
    ct.start();
    let mut a = ct.attach(false);
    let mut e = ct.stream(&Request::Exec {
        exec_id: "r".into(),
        process: process(&["true"], false),
        stdin: false,
        console_size: None,
    });
    assert_eq!(e.until_exit().code, 0);
    // An exec ran (through a berth-shim helper, reaped) and a client is
    // attached: the monitor's resident set stays small.
    let (pid, _) = ct.pid_file();
    let rss = common::rss_kib(pid);
    eprintln!("berth-shim idle VmRSS (this build): {rss} KiB");
    // A debug build is several times the size of a release one.
    assert!(rss < 8 * 1024, "shim RSS {rss} KiB");
    ct.kill(9, true);
    assert!(matches!(a.frame(), Some(Frame::Exit(_))));
    ct.assert_clean_exit();
}

#[test]
fn without_a_pid_namespace_leftovers_do_not_hold_the_exit() {
    if !require_root() {
        return;
    }
    // The background sleep keeps stdout open after the init exits.
    let mut ct = Ct::new(
        &["sh", "-c", "sleep 1000 & echo started; exit 6"],
        |_, spec| {
            let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "pid");
        },
    );
    ct.ready();
    let mut a = ct.attach(false);
    ct.start();
    assert_eq!(a.until_exit().code, 6);
    assert_eq!(a.stdout(), "started\n");
    assert_eq!(ct.assert_clean_exit().code, 6);
}

#[test]
fn an_oom_kill_is_reported() {
    if !require_root() {
        return;
    }
    let script = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";
    let mut ct = Ct::new(&["sh", "-c", script], |_, spec| {
        spec["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    });
    ct.ready();
    let exit = ct.run_to_exit();
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137);
    ct.assert_clean_exit();
}

#[test]
fn the_resident_shim_is_the_monitor_and_the_inits_parent() {
    if !require_root() {
        return;
    }
    let mut ct = Ct::new(&["sleep", "1000"], |_, _| {});
    ct.ready();
    let (pid, _) = ct.pid_file();
    // The same process, now running the monitor's program (berth-shim
    // executed it after creating the container).
    assert!(
        wait_until(|| std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|e| e.ends_with("berth-shim-monitor"))),
        "{:?}",
        std::fs::read_link(format!("/proc/{pid}/exe"))
    );
    assert_eq!(
        ppid(ct.init_pid.unwrap()),
        pid,
        "the init's parent is the shim"
    );
    // Created, not started: no exec yet.
    match ct.request(&Request::Exec {
        exec_id: "early".into(),
        process: process(&["true"], false),
        stdin: false,
        console_size: None,
    }) {
        Reply::Error { message } => assert!(message.contains("is not running"), "{message}"),
        other => panic!("{other:?}"),
    }
    // It still serves: an exec (through berth-shim --exec) and the exit.
    ct.start();
    let mut e = ct.stream(&Request::Exec {
        exec_id: "m".into(),
        process: process(&["sh", "-c", "echo $PPID"], false),
        stdin: false,
        console_size: None,
    });
    assert_eq!(e.until_exit().code, 0);
    let mut a = ct.attach(false);
    ct.kill(9, false);
    assert_eq!(a.until_exit().code, 137);
    ct.assert_clean_exit();
}

/// The parent pid of `pid`.
fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields = stat.rsplit_once(')').unwrap().1;
    fields.split_whitespace().nth(1).unwrap().parse().unwrap()
}
