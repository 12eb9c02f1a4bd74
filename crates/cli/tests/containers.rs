#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Container verbs against berthd (the same sequences were checked by
//! hand against a private dockerd).

mod common;

use common::Daemon;

#[test]

fn run_prints_output_and_exits_with_the_code() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    let before = d.ok(&["ps", "-a", "-q"]);
    let out = d.berth(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(d.ok(&["ps", "-a", "-q"]), before, "--rm removed it");

    let out = d.berth(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "bb",
        "sh",
        "-c",
        "echo $A $(pwd)",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 /tmp\n", "{out:?}");
}

#[test]

fn run_start_errors_map_to_126_and_127() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    let err = d.fails(&["run", "--rm", "bb", "no-such-binary"], 127);
    assert!(
        err.starts_with("berth: Error response from daemon: "),
        "{err}"
    );
    d.fails(&["run", "--rm", "bb", "/etc/passwd"], 126);
    let err = d.fails(&["run", "--rm", "--name", "bad name", "bb", "true"], 125);
    assert!(err.contains("Invalid container name"), "{err}");
}

#[test]

fn run_with_piped_stdin() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    let out = d.berth_stdin(&["run", "--rm", "-i", "bb", "cat"], b"piped\nlines\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\nlines\n");
}

#[test]

fn detached_logs_exec_stop_rm() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "role=test",
        "bb",
        "sh",
        "-c",
        "echo hello; exec sleep 1000",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");

    let ps = d.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(
        lines[0]
            .split("   ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>(),
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{ps}"
    );
    assert!(lines[1].starts_with(&id[..12]), "{ps}");
    assert!(lines[1].ends_with("web"), "{ps}");
    // Labels include the image's (org.berth.test=…), sorted.
    let l = d.ok(&["ps", "--format", "{{.Names}} {{.State}} {{.Labels}}"]);
    assert!(
        l.starts_with("web running ") && l.contains("role=test"),
        "{l}"
    );
    assert_eq!(d.ok(&["ps", "-q", "--no-trunc"]), format!("{id}\n"));
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "web"]),
        "running /web\n"
    );

    // logs once the echo has happened.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.ok(&["logs", "web"]) != "hello\n" {
        assert!(std::time::Instant::now() < deadline, "no log line");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ts = d.ok(&["logs", "-t", "web"]);
    assert!(ts.ends_with(" hello\n") && ts.starts_with("20"), "{ts}");

    let out = d.berth(&["exec", "web", "sh", "-c", "echo in exec; exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in exec\n");
    assert_eq!(
        d.ok(&["exec", "-e", "X=y", "web", "sh", "-c", "echo $X"]),
        "y\n"
    );

    assert_eq!(d.ok(&["stop", "-t", "1", "web"]), "web\n");
    assert_eq!(d.ok(&["ps", "-q"]), "");
    let st = d.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(st.starts_with("Exited ("), "{st}");
    assert!(d.ok(&["wait", "web"]).trim().parse::<i32>().is_ok());
    assert_eq!(d.ok(&["rm", "web"]), "web\n");
    assert_eq!(d.ok(&["ps", "-a", "-q"]), "");
    let err = d.fails(&["rm", "web"], 1);
    assert!(err.contains("No such container: web"), "{err}");
}

#[test]

fn ps_formats_and_filters() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    d.ok(&["create", "--name", "made", "bb", "true"]);
    d.ok(&["run", "-d", "--name", "up", "bb", "sleep", "1000"]);
    assert_eq!(d.ok(&["ps", "--format", "{{.Names}}"]), "up\n");
    let mut all: Vec<String> = d
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect();
    all.sort();
    assert_eq!(all, ["made", "up"]);
    assert_eq!(
        d.ok(&["ps", "-a", "-f", "status=created", "--format", "{{.Names}}"]),
        "made\n"
    );
    assert_eq!(d.ok(&["ps", "-l", "--format", "{{.Names}}"]), "up\n");
    let t = d.ok(&["ps", "-a", "--format", "table {{.Names}}\t{{.Command}}"]);
    assert!(t.starts_with("NAMES     COMMAND\n"), "{t}");
    let j = d.ok(&["ps", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
    assert_eq!(v["Names"], "up");
    d.ok(&["rm", "-f", "made", "up"]);
}
