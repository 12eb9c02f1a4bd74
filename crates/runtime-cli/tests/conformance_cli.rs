#![allow(clippy::unwrap_used)]
//! The runc command-line surface containerd, docker and podman rely on, checked against every
//! runtime from `common::runtimes()` (runc as the reference, and berth-runtime).
//!
//! Run: `BERTH_TEST_ROOT=1 cargo test -p berth-runtime-cli --test conformance_cli` as root.

mod common;

use common::*;
use serde_json::{Value, json};
use std::fs;

macro_rules! cli_test {
    ($name:ident, |$rt:ident| $body:block) => {
        #[test]
        fn $name() {
            if !require_root() {
                return;
            }
            each_runtime(stringify!($name), |$rt: &Runtime| $body);
        }
    };
}

fn cgroup_procs(c: &Ct) -> Vec<i32> {
    fs::read_to_string(c.cg("pids").join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

cli_test!(create_pid_file_start_and_state_fields, |rt| {
    let mut c = Ct::new(rt);
    c.spec["annotations"] = json!({ "org.berth.cli": "yes", "org.berth.empty": "" });
    c.sh("echo ready; exec sleep 600");
    let pidfile = c.tmp.join("init.pid");
    let o = c.create_with(&["--pid-file", pidfile.to_str().unwrap()]);
    o.ok();
    let st = c.state();
    assert_eq!(st["status"], "created");
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with('1')),
        "ociVersion: {st}"
    );
    assert_eq!(st["id"], json!(c.id));
    let pid = st["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0, "pid: {st}");
    assert_eq!(read_trim(&pidfile), pid.to_string(), "pid file");
    assert_eq!(st["bundle"], json!(c.bundle.to_str().unwrap()));
    assert_eq!(st["rootfs"], json!(c.rootfs.to_str().unwrap()));
    let created = st["created"].as_str().unwrap_or_default();
    assert!(
        created.len() >= 20 && created.as_bytes()[4] == b'-' && created.as_bytes()[10] == b'T',
        "created is not RFC 3339: {created:?}"
    );
    assert!(st["owner"].is_string(), "owner: {st}");
    assert_eq!(
        st["annotations"],
        json!({ "org.berth.cli": "yes", "org.berth.empty": "" })
    );
    c.start().ok();
    c.wait_stdout("ready");
    assert_eq!(c.status(), "running");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    let st = c.state();
    assert_eq!(st["id"], json!(c.id));
    assert_eq!(st["bundle"], json!(c.bundle.to_str().unwrap()));
});

cli_test!(kill_signal_by_name_and_number, |rt| {
    let mut c = Ct::new(rt);
    c.start_running(
        "trap 'echo usr1' USR1; trap 'echo term; exit 0' TERM; while true; do sleep 0.1; done",
    );
    for (i, sig) in ["USR1", "SIGUSR1", "10"].iter().enumerate() {
        c.kill(sig).ok();
        let want = i + 1;
        assert!(
            wait_until(WAIT, || c.stdout().matches("usr1").count() >= want),
            "signal {sig} not delivered: {:?}",
            c.stdout()
        );
    }
    // Unknown signal names are rejected and change nothing.
    let o = c.kill("SIGBERTHBOGUS");
    o.failed();
    assert_one_line_error(&o, &c.tag());
    assert_eq!(c.status(), "running");
    c.kill("SIGTERM").ok();
    c.wait_status("stopped");
    assert!(c.stdout().contains("term"));

    // KILL by name and by number.
    for sig in ["KILL", "9"] {
        let mut k = Ct::new(rt);
        k.start_running("exec sleep 600");
        k.kill(sig).ok();
        k.wait_status("stopped");
    }
});

cli_test!(kill_all_reaches_every_process, |rt| {
    let mut c = Ct::new(rt);
    c.start_running("sleep 600 & sleep 600 & sleep 600 & wait");
    assert!(
        wait_until(WAIT, || cgroup_procs(&c).len() >= 4),
        "children not started: {:?}",
        cgroup_procs(&c)
    );
    let pids = cgroup_procs(&c);
    c.rt(&["kill", "--all", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    for p in pids {
        assert!(
            wait_until(WAIT, || !pid_alive(p)),
            "process {p} survived kill --all"
        );
    }
});

cli_test!(delete_force_running, |rt| {
    let mut c = Ct::new(rt);
    c.start_running("sleep 600 & exec sleep 600");
    let pids = cgroup_procs(&c);
    assert!(!pids.is_empty());
    c.rt(&["delete", "--force", &c.id]).ok();
    c.rt(&["state", &c.id]).failed();
    assert!(!c.root.join(&c.id).exists());
    for p in pids {
        assert!(
            wait_until(WAIT, || !pid_alive(p)),
            "process {p} survived delete --force"
        );
    }
    assert!(
        cgroup_dirs(&c.cgroup).is_empty(),
        "cgroups left: {:?}",
        cgroup_dirs(&c.cgroup)
    );
    // delete --force of a created (never started) container.
    let mut d = Ct::new(rt);
    d.args(&["sleep", "600"]);
    d.create().ok();
    let pid = d.pid();
    d.rt(&["delete", "--force", &d.id]).ok();
    assert!(wait_until(WAIT, || !pid_alive(pid)));
    assert!(cgroup_dirs(&d.cgroup).is_empty());
});

cli_test!(exec_variants, |rt| {
    let mut c = Ct::new(rt);
    c.spec["process"]["env"] = json!(["PATH=/bin", "FROM_SPEC=1"]);
    c.start_running("exec sleep 600");
    let id = c.id.clone();

    let o = c.rt(&["exec", &id, "echo", "hello", "world"]);
    o.ok();
    assert_eq!(o.stdout.trim(), "hello world");

    let o = c.rt(&["exec", &id, "sh", "-c", "exit 7"]);
    assert_eq!(o.code, 7, "exec exit code not propagated: {o:?}");

    let o = c.rt(&[
        "exec",
        "--env",
        "BERTH_X=42",
        "--cwd",
        "/tmp",
        "--user",
        "65534:65534",
        &id,
        "sh",
        "-c",
        "echo x=$BERTH_X; echo cwd=$(pwd); echo id=$(id -u):$(id -g)",
    ]);
    o.ok();
    assert!(o.stdout.contains("x=42"), "{}", o.stdout);
    assert!(o.stdout.contains("cwd=/tmp"), "{}", o.stdout);
    assert!(o.stdout.contains("id=65534:65534"), "{}", o.stdout);

    let process = json!({
        "terminal": false,
        "user": { "uid": 0, "gid": 0 },
        "args": ["sh", "-c", "echo via-process-file $P; pwd"],
        "env": ["PATH=/bin", "P=json"],
        "cwd": "/etc",
    });
    let pf = c.tmp.join("process.json");
    fs::write(&pf, process.to_string()).unwrap();
    let o = c.rt(&["exec", "--process", pf.to_str().unwrap(), &id]);
    o.ok();
    assert!(o.stdout.contains("via-process-file json"), "{}", o.stdout);
    assert!(o.stdout.contains("/etc"), "{}", o.stdout);

    // The exec'd process shares the container's namespaces.
    let o = c.rt(&[
        "exec",
        &id,
        "sh",
        "-c",
        "readlink /proc/1/ns/pid; readlink /proc/self/ns/pid",
    ]);
    o.ok();
    let l: Vec<&str> = o.stdout.lines().collect();
    assert!(
        l.len() == 2 && l[0] == l[1],
        "exec not in the container's pid ns: {l:?}"
    );

    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.rt(&["exec", &id, "true"]).failed();
});

cli_test!(ps_and_list, |rt| {
    let mut c = Ct::new(rt);
    c.start_running("exec sleep 600");
    let pid = c.pid();
    let ps = c.rt(&["ps", "--format", "json", &c.id]);
    ps.ok();
    let pids = ps.json();
    let pids: Vec<i64> = pids
        .as_array()
        .expect("ps json is an array")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(pids.contains(&(pid as i64)), "ps {pids:?} lacks init {pid}");

    let table = c.rt(&["list"]);
    table.ok();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&c.id))
        .unwrap_or_else(|| panic!("list: {}", table.stdout));
    assert!(row.contains("running"), "list row: {row}");
    assert!(row.contains(&pid.to_string()), "list row: {row}");

    let q = c.rt(&["list", "-q"]);
    q.ok();
    assert_eq!(q.stdout.lines().collect::<Vec<_>>(), [c.id.as_str()]);

    let j = c.rt(&["list", "--format", "json"]);
    j.ok();
    let arr = j.json();
    let arr = arr.as_array().expect("list json is an array");
    assert_eq!(arr.len(), 1, "{arr:?}");
    assert_eq!(arr[0]["id"], json!(c.id));
    assert_eq!(arr[0]["status"], "running");
    assert_eq!(arr[0]["pid"], json!(pid));
    assert_eq!(arr[0]["bundle"], json!(c.bundle.to_str().unwrap()));
});

cli_test!(pause_resume, |rt| {
    let mut c = Ct::new(rt);
    c.start_running("exec sleep 600");
    c.rt(&["pause", &c.id]).ok();
    assert_eq!(c.status(), "paused");
    let freezer = c.cg("freezer").join("freezer.state");
    if freezer.exists() {
        assert_eq!(read_trim(&freezer), "FROZEN");
    }
    c.rt(&["resume", &c.id]).ok();
    assert_eq!(c.status(), "running");
    if freezer.exists() {
        assert_eq!(read_trim(&freezer), "THAWED");
    }
});

cli_test!(update_resources, |rt| {
    let mut c = Ct::new(rt);
    c.start_running("exec sleep 600");
    c.rt(&[
        "update",
        "--pids-limit",
        "77",
        "--memory",
        "104857600",
        &c.id,
    ])
    .ok();
    assert_eq!(read_trim(c.cg("pids").join("pids.max")), "77");
    assert_eq!(
        read_trim(c.cg("memory").join("memory.limit_in_bytes")),
        "104857600"
    );
});

cli_test!(events_stats_one_shot, |rt| {
    let mut c = Ct::new(rt);
    c.start_running("exec sleep 600");
    let o = c.rt(&["events", "--stats", &c.id]);
    o.ok();
    let ev = o.json();
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], json!(c.id), "{ev}");
    assert!(ev["data"].is_object(), "{ev}");
    assert!(
        ev["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "pids stats: {ev}"
    );
    assert!(ev["data"]["memory"].is_object(), "memory stats: {ev}");
});

cli_test!(spec_writes_valid_config, |rt| {
    let dir = tempfile::tempdir().unwrap();
    let o = run_cmd(
        std::process::Command::new(&rt.bin)
            .arg("spec")
            .arg("--bundle")
            .arg(dir.path()),
    );
    o.ok();
    let text =
        fs::read_to_string(dir.path().join("config.json")).expect("spec wrote no config.json");
    let v: Value = serde_json::from_str(&text).expect("config.json is not JSON");
    assert!(
        v["ociVersion"].as_str().is_some_and(|s| s.starts_with('1')),
        "{v}"
    );
    assert!(
        v["process"]["args"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{v}"
    );
    assert_eq!(v["process"]["cwd"], "/");
    assert_eq!(v["root"]["path"], "rootfs");
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for t in ["pid", "mount"] {
        assert!(ns.contains(&t), "namespaces {ns:?}");
    }
    // An existing config.json is not overwritten.
    fs::write(dir.path().join("config.json"), "keep").unwrap();
    let o = run_cmd(
        std::process::Command::new(&rt.bin)
            .arg("spec")
            .arg("--bundle")
            .arg(dir.path()),
    );
    o.failed();
    assert_eq!(
        fs::read_to_string(dir.path().join("config.json")).unwrap(),
        "keep"
    );
});

/// A failed `create` must print one error line and leave no state entry and no cgroup.
fn assert_clean_failure(c: &Ct, o: &Out, bad_id: &str, what: &str) {
    if o.code == 0 {
        let _ = run_cmd(c.cmd().args(["delete", "--force", bad_id]));
    }
    assert_ne!(o.code, 0, "{what}: create succeeded: {o:?}");
    assert_one_line_error(o, &format!("{} {what}", c.tag()));
    assert!(
        state_entries(&c.root).is_empty(),
        "{what}: state dir has {:?}",
        state_entries(&c.root)
    );
    assert!(
        cgroup_dirs(&c.cgroup).is_empty(),
        "{what}: cgroup left: {:?}",
        cgroup_dirs(&c.cgroup)
    );
}

fn create_as(c: &Ct, id: &str) -> Out {
    run_cmd(c.cmd().arg("create").arg("--bundle").arg(&c.bundle).arg(id))
}

cli_test!(bad_input_fails_cleanly, |rt| {
    // Bundle problems.
    let c = Ct::new(rt);
    fs::remove_file(c.bundle.join("config.json")).unwrap();
    assert_clean_failure(&c, &create_as(&c, &c.id), &c.id, "missing config.json");
    fs::write(
        c.bundle.join("config.json"),
        "{ \"ociVersion\": \"1.0.2\", ",
    )
    .unwrap();
    assert_clean_failure(&c, &create_as(&c, &c.id), &c.id, "invalid JSON");
    c.write_spec();
    fs::rename(&c.rootfs, c.bundle.join("rootfs-moved")).unwrap();
    assert_clean_failure(&c, &create_as(&c, &c.id), &c.id, "missing rootfs");
    fs::rename(c.bundle.join("rootfs-moved"), &c.rootfs).unwrap();

    // Bad ids.
    let long = "x".repeat(1025);
    for bad in ["", "../x", "a/b", ".", "..", long.as_str()] {
        let o = create_as(&c, bad);
        assert_clean_failure(&c, &o, bad, &format!("id {:?}", &bad[..bad.len().min(12)]));
    }
    assert!(!c.tmp.join("x").exists(), "id ../x escaped the state dir");

    // Duplicate id: fails, and the first container is untouched.
    let mut c = c;
    c.args(&["sleep", "600"]);
    c.create().ok();
    let o = create_as(&c, &c.id);
    o.failed();
    assert_one_line_error(&o, &c.tag());
    assert_eq!(state_entries(&c.root), [c.id.clone()]);
    assert_eq!(c.status(), "created");

    // Unknown signal name.
    let o = c.kill("SIGNOPE");
    o.failed();
    assert_one_line_error(&o, &c.tag());
    assert_eq!(c.status(), "created");

    // Commands on a container that does not exist.
    for args in [
        vec!["start", "conf-nope"],
        vec!["state", "conf-nope"],
        vec!["kill", "conf-nope", "KILL"],
        vec!["delete", "conf-nope"],
        vec!["exec", "conf-nope", "true"],
    ] {
        let o = c.rt(&args);
        o.failed();
        assert_one_line_error(&o, &c.tag());
    }
});

cli_test!(update_from_resources_file_and_suffixes, |rt| {
    let mut c = Ct::new(rt);
    c.start_running("exec sleep 600");
    let file = c.tmp.join("resources.json");
    fs::write(
        &file,
        serde_json::to_vec(&json!({"pids": {"limit": 55}, "cpu": {"shares": 256}})).unwrap(),
    )
    .unwrap();
    c.rt(&["update", "-r", file.to_str().unwrap(), &c.id]).ok();
    assert_eq!(read_trim(c.cg("pids").join("pids.max")), "55");
    assert_eq!(read_trim(c.cg("cpu").join("cpu.shares")), "256");
    // Sizes take k/m/g suffixes, as runc's do.
    c.rt(&["update", "--memory", "96m", &c.id]).ok();
    assert_eq!(
        read_trim(c.cg("memory").join("memory.limit_in_bytes")),
        (96u64 << 20).to_string()
    );
});

cli_test!(features_document, |rt| {
    let o = run_cmd(std::process::Command::new(&rt.bin).arg("features"));
    o.ok();
    let f = o.json();
    assert!(
        f["ociVersionMin"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{f}"
    );
    assert!(f["ociVersionMax"].is_string(), "{f}");
    let hooks = f["hooks"].as_array().cloned().unwrap_or_default();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&json!(h)), "hook {h}: {f}");
    }
    let opts = f["mountOptions"].as_array().cloned().unwrap_or_default();
    for o in ["ro", "nosuid", "rbind", "rprivate"] {
        assert!(opts.contains(&json!(o)), "mount option {o}: {f}");
    }
    let ns = f["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&json!(n)), "namespace {n}: {f}");
    }
    assert!(
        f["linux"]["capabilities"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("CAP_SYS_ADMIN"))),
        "{f}"
    );
    assert_eq!(f["linux"]["seccomp"]["enabled"], json!(true), "{f}");
});

cli_test!(json_log_carries_the_error, |rt| {
    // containerd reads the last error from --log in --log-format json.
    let c = Ct::new(rt);
    let log = c.tmp.join("runtime.log");
    let o = run_cmd(c.cmd().arg("--log").arg(&log).args([
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]));
    o.failed();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let errors: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .collect();
    assert!(!errors.is_empty(), "no error line in the log: {text:?}");
    assert!(
        errors.iter().any(|e| e["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist"))),
        "{text}"
    );
});

cli_test!(create_no_new_keyring, |rt| {
    let mut c = Ct::new(rt);
    c.sh("echo ready; cat /proc/self/stat > /dev/null; exec sleep 600");
    c.create_with(&["--no-new-keyring"]).ok();
    c.start().ok();
    c.wait_stdout("ready");
    c.kill("KILL").ok();
});

cli_test!(run_no_pivot, |rt| {
    // --no-pivot: MS_MOVE + chroot instead of pivot_root; the process still
    // sees only its rootfs.
    let mut c = Ct::new(rt);
    c.sh("ls / | tr '\\n' ' '; test -e /bin/busybox && echo BUSYBOX");
    c.write_spec();
    let o = run_cmd(
        c.cmd()
            .args(["run", "--no-pivot", "--bundle"])
            .arg(&c.bundle)
            .arg(&c.id),
    );
    o.ok();
    assert!(o.stdout.contains("BUSYBOX"), "{}", o.stdout);
    assert!(
        !o.stdout.contains("work "),
        "host root visible: {}",
        o.stdout
    );
});

cli_test!(exec_process_file_without_user, |rt| {
    // runc takes a --process without "user" as root.
    let mut c = Ct::new(rt);
    c.start_running("exec sleep 600");
    let p = c.tmp.join("minimal-process.json");
    fs::write(
        &p,
        serde_json::to_vec(
            &json!({"args": ["/bin/sh", "-c", "/bin/id -u; echo minimal"], "cwd": "/"}),
        )
        .unwrap(),
    )
    .unwrap();
    let o = c.rt(&["exec", "--process", p.to_str().unwrap(), &c.id]);
    o.ok();
    assert!(o.stdout.starts_with("0\nminimal"), "{}", o.stdout);
});

cli_test!(relative_args0_runs_from_cwd, |rt| {
    // `./run.sh` is looked up from process.cwd, not from /.
    let mut c = Ct::new(rt);
    fs::create_dir_all(c.rootfs.join("app")).unwrap();
    fs::write(c.rootfs.join("app/run.sh"), "#!/bin/sh\necho from-app\n").unwrap();
    fs::set_permissions(
        c.rootfs.join("app/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    c.args(&["./run.sh"]);
    c.spec["process"]["cwd"] = json!("/app");
    let out = c.run_ok();
    assert_eq!(out.trim(), "from-app");
});

cli_test!(file_bind_onto_image_symlink_lands_inside, |rt| {
    // An image's /etc/resolv.conf -> ../run/resolv.conf: the bind follows
    // the link inside the rootfs.
    let mut c = Ct::new(rt);
    fs::create_dir_all(c.rootfs.join("run")).unwrap();
    let _ = fs::remove_file(c.rootfs.join("etc/resolv.conf"));
    std::os::unix::fs::symlink("../run/resolv.conf", c.rootfs.join("etc/resolv.conf")).unwrap();
    fs::write(c.rootfs.join("run/resolv.conf"), "").unwrap();
    let src = c.tmp.join("resolv.conf");
    fs::write(&src, "nameserver 127.0.0.53\n").unwrap();
    c.spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/etc/resolv.conf", "type": "bind",
        "source": src, "options": ["bind", "ro"]
    }));
    c.sh("cat /etc/resolv.conf; cat /run/resolv.conf");
    let out = c.run_ok();
    assert_eq!(out.matches("127.0.0.53").count(), 2, "{out}");
});

cli_test!(container_signal_state_is_clean, |rt| {
    // Nothing blocked, and SIGPIPE not ignored (the Rust runtime ignores it
    // in berth-runtime itself; an ignored signal survives execve).
    let mut c = Ct::new(rt);
    c.sh("grep -E 'SigBlk|SigIgn' /proc/self/status");
    let out = c.run_ok();
    let mask = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{out}");
    assert_eq!(
        mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {out}"
    );
});
