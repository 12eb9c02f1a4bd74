#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Volumes through berthd, judged by the real docker CLI: named volumes
//! that outlive containers and a daemon restart, the in-use refusal,
//! anonymous volumes (image VOLUME, `-v /path`) with copy-up, `rm -v`,
//! `--volumes-from`, `--mount` of every type, the local driver's tmpfs and
//! bind options, prune, and bad input that leaves nothing behind.

mod common;

use std::path::Path;

use common::{Daemon, busybox_archive, root};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn daemon_with_busybox() -> Daemon {
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "busybox:latest", "volumes", &arch);
    d.docker_ok(&["load", "-q", "-i", arch.to_str().unwrap()]);
    d
}

fn volumes(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .docker_ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn is_mounted(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

#[test]
fn named_volumes_persist_and_are_guarded() {
    if !root() {
        return;
    }
    let mut d = daemon_with_busybox();
    assert_eq!(
        d.docker_ok(&["volume", "create", "--label", "team=a", "data"]),
        "data\n"
    );
    // Creating an existing name returns it.
    assert_eq!(d.docker_ok(&["volume", "create", "data"]), "data\n");
    let v = json(&d.docker_ok(&["volume", "inspect", "data"]))[0].clone();
    let mountpoint = d.data_root.join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.display().to_string());
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "a");
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{v}");

    // A writer, then the volume is in use until the container is removed.
    d.docker_ok(&[
        "run",
        "--name",
        "wr",
        "-v",
        "data:/d",
        "busybox",
        "sh",
        "-c",
        "echo hello > /d/f",
    ]);
    let id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "wr"]);
    let e = d.docker_err(&["volume", "rm", "data"]);
    assert!(
        e.contains(&format!("remove data: volume is in use - [{}]", id.trim())),
        "{e}"
    );
    let m = json(&d.docker_ok(&["inspect", "-f", "{{json .Mounts}}", "wr"]));
    assert_eq!(
        m,
        serde_json::json!([{"Type": "volume", "Name": "data", "Source": mountpoint.display().to_string(),
            "Destination": "/d", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""}])
    );
    assert_eq!(
        d.docker_ok(&[
            "ps",
            "-a",
            "--filter",
            "volume=data",
            "--format",
            "{{.Names}}"
        ]),
        "wr\n"
    );
    let dangling = d.docker_ok(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert!(!dangling.contains("data"), "{dangling}");
    d.docker_ok(&["rm", "-v", "wr"]);
    // rm -v keeps named volumes.
    assert_eq!(volumes(&d), ["data"]);
    assert_eq!(
        d.docker_ok(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "dangling=true",
            "--filter",
            "label=team=a"
        ]),
        "data\n"
    );

    // Read-only, and the data survives a daemon restart.
    assert_eq!(
        d.docker_ok(&["run", "--rm", "-v", "data:/d:ro", "busybox", "cat", "/d/f"]),
        "hello\n"
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/d:ro",
        "busybox",
        "touch",
        "/d/x",
    ]);
    assert!(!o.status.success());
    // A tmpfs-backed local volume, mounted while a container runs it.
    d.docker_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=2m",
        "tv",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "tc",
        "-v",
        "tv:/v",
        "busybox",
        "sh",
        "-c",
        "echo in-tmpfs > /v/f; sleep 100",
    ]);
    let tv = d.data_root.join("volumes/tv/_data");
    common_wait(|| tv.join("f").exists());
    assert!(is_mounted(&tv));
    let mounts = d.docker_ok(&["exec", "tc", "cat", "/proc/mounts"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs /v tmpfs") && l.contains("size=2048k")),
        "{mounts}"
    );

    d.kill9();
    d.spawn();
    assert!(
        is_mounted(&tv),
        "a running container keeps its volume mounted"
    );
    assert_eq!(d.docker_ok(&["exec", "tc", "cat", "/v/f"]), "in-tmpfs\n");
    d.docker_ok(&["rm", "-f", "tc"]);
    assert!(!is_mounted(&tv), "unmounted when no container uses it");
    assert_eq!(
        d.docker_ok(&["run", "--rm", "-v", "data:/d", "busybox", "cat", "/d/f"]),
        "hello\n"
    );
    d.terminate();
    d.spawn();
    assert_eq!(
        d.docker_ok(&["run", "--rm", "-v", "data:/d", "busybox", "cat", "/d/f"]),
        "hello\n"
    );
    d.docker_ok(&["volume", "rm", "data", "tv"]);
    assert!(!mountpoint.exists());
    assert!(volumes(&d).is_empty());

    // Bad input: clear errors, nothing made.
    let e = d.docker_err(&["volume", "create", "bad@name"]);
    assert!(
        e.contains("\"bad@name\" includes invalid characters for a local volume name"),
        "{e}"
    );
    let e = d.docker_err(&["volume", "create", "-d", "nope", "v2"]);
    assert!(e.contains("plugin \"nope\" not found"), "{e}");
    let e = d.docker_err(&["volume", "create", "-o", "bogus=1", "v3"]);
    assert!(e.contains("invalid option: \"bogus\""), "{e}");
    let e = d.docker_err(&["volume", "inspect", "nosuch"]);
    assert!(e.contains("no such volume"), "{e}");
    let e = d.docker_err(&["run", "--rm", "-v", "b@d:/x", "busybox", "true"]);
    assert!(e.contains("includes invalid characters"), "{e}");
    let e = d.docker_err(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/no/such/dir,dst=/x",
        "busybox",
        "true",
    ]);
    assert!(
        e.contains(
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir"
        ),
        "{e}"
    );
    let e = d.docker_err(&[
        "run", "--rm", "-v", "ok1:/x", "-v", "ok2:/x", "busybox", "true",
    ]);
    assert!(e.contains("Duplicate mount point: /x"), "{e}");
    assert!(volumes(&d).is_empty());
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
    let left: Vec<_> = std::fs::read_dir(d.data_root.join("volumes"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn common_wait(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn anonymous_volumes_copy_up_mounts_and_prune() {
    if !root() {
        return;
    }
    let d = daemon_with_busybox();
    // An image with content under a VOLUME.
    d.docker_ok(&[
        "run",
        "--name",
        "base",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo seed > /data/sub/f && chown -R 1:2 /data",
    ]);
    d.docker_ok(&["commit", "-c", "VOLUME /data", "base", "withvol"]);
    d.docker_ok(&["rm", "base"]);

    // The image's VOLUME: an anonymous volume filled from the image.
    d.docker_ok(&[
        "run",
        "--name",
        "an",
        "withvol",
        "sh",
        "-c",
        "cat /data/sub/f; stat -c %u:%g /data; echo more > /data/g",
    ]);
    let out = d.docker_ok(&["logs", "an"]);
    assert_eq!(out, "seed\n1:2\n");
    let m = json(&d.docker_ok(&["inspect", "-f", "{{json .Mounts}}", "an"]));
    let anon = m[0]["Name"].as_str().unwrap().to_owned();
    assert_eq!(anon.len(), 64, "{m}");
    assert_eq!(m[0]["Destination"], "/data");
    let v = json(&d.docker_ok(&["volume", "inspect", &anon]))[0].clone();
    assert!(
        v["Labels"].get("com.docker.volume.anonymous").is_some(),
        "{v}"
    );

    // --volumes-from, read-write and read-only.
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "an",
            "busybox",
            "cat",
            "/data/g"
        ]),
        "more\n"
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "an:ro",
        "busybox",
        "touch",
        "/data/x",
    ]);
    assert!(!o.status.success(), "{o:?}");

    // Copy-up into an empty named volume, not with nocopy, not when full.
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--rm",
            "-v",
            "fresh:/data",
            "withvol",
            "cat",
            "/data/sub/f"
        ]),
        "seed\n"
    );
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=nc,dst=/data,volume-nocopy",
            "withvol",
            "ls",
            "-A",
            "/data",
        ]),
        ""
    );
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "fresh:/data",
        "busybox",
        "rm",
        "-r",
        "/data/sub",
    ]);
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "fresh:/data",
        "busybox",
        "touch",
        "/data/mine",
    ]);
    assert_eq!(
        d.docker_ok(&["run", "--rm", "-v", "fresh:/data", "withvol", "ls", "/data"]),
        "mine\n"
    );

    // rm -v removes the anonymous volume; --rm removes its own.
    d.docker_ok(&["rm", "-v", "an"]);
    assert_eq!(volumes(&d), ["fresh", "nc"]);
    d.docker_ok(&["run", "--rm", "-v", "/anon", "busybox", "true"]);
    assert_eq!(volumes(&d), ["fresh", "nc"]);

    // --mount of every type, --tmpfs, and the local driver's bind option.
    let host = d.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    let bind = format!(
        "type=bind,src={},dst=/h,bind-propagation=rslave",
        host.display()
    );
    d.docker_ok(&[
        "run",
        "--name",
        "mm",
        "--mount",
        &bind,
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=1770",
        "--mount",
        "type=volume,dst=/anon2",
        "--tmpfs",
        "/t2:size=512k",
        "busybox",
        "sh",
        "-c",
        "echo via-bind > /h/f; grep -E ' /t2? ' /proc/mounts; stat -c %a /t",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("f")).unwrap(),
        "via-bind\n"
    );
    let out = d.docker_ok(&["logs", "mm"]);
    assert!(
        out.contains("tmpfs /t tmpfs") && out.contains("size=1024k"),
        "{out}"
    );
    assert!(
        out.contains("tmpfs /t2 tmpfs") && out.contains("size=512k"),
        "{out}"
    );
    assert!(out.ends_with("1770\n"), "{out}");
    let m = json(&d.docker_ok(&["inspect", "-f", "{{json .Mounts}}", "mm"]));
    let by_dest = |p: &str| {
        m.as_array()
            .unwrap()
            .iter()
            .find(|x| x["Destination"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("no mount at {p}: {m}"))
    };
    assert_eq!(by_dest("/h")["Type"], "bind");
    assert_eq!(by_dest("/h")["Propagation"], "rslave");
    assert_eq!(by_dest("/t")["Type"], "tmpfs");
    assert_eq!(by_dest("/anon2")["Type"], "volume");
    d.docker_ok(&["rm", "mm"]);

    let device = d.dir.path().join("bound");
    std::fs::create_dir(&device).unwrap();
    let dev_opt = format!("device={}", device.display());
    d.docker_ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev_opt,
        "bv",
    ]);
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "bv:/b",
        "busybox",
        "sh",
        "-c",
        "echo through > /b/f",
    ]);
    assert_eq!(
        std::fs::read_to_string(device.join("f")).unwrap(),
        "through\n"
    );
    d.docker_ok(&["volume", "rm", "bv"]);
    assert!(
        device.join("f").exists(),
        "removing the volume keeps the host's files"
    );

    // Prune: anonymous only by default (API >= 1.42), everything with -a.
    let out = d.docker_ok(&["volume", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(volumes(&d), ["fresh", "nc"]);
    let df = d.docker_ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Local Volumes 2"), "{df}");
    let out = d.docker_ok(&["volume", "prune", "-af"]);
    assert!(out.contains("fresh") && out.contains("nc"), "{out}");
    assert!(volumes(&d).is_empty());
}
