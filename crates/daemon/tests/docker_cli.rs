#![allow(clippy::unwrap_used, clippy::expect_used)]
//! berthd driven by the real docker CLI (and raw HTTP where the CLI hides
//! the detail): system endpoints, the image lifecycle, errors, shutdown.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use berth_image::archive::{self, LoadOptions};
use berth_image::store::{ImageStore, Platform};
use common::{Daemon, busybox_archive, busybox_rootfs};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// "2" when /sys/fs/cgroup is a cgroup2 mount (pure v2 host), else "1".
fn host_cgroup_version() -> &'static str {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v2 = mi.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let sep = f.iter().position(|x| *x == "-").unwrap_or(0);
        f.get(4) == Some(&"/sys/fs/cgroup") && f.get(sep + 1) == Some(&"cgroup2")
    });
    if v2 { "2" } else { "1" }
}

#[test]
fn docker_version_and_info() {
    let d = Daemon::start();
    let out = d.docker_ok(&["version"]);
    assert!(out.contains("Server: berth"), "{out}");
    assert!(out.contains("1.51 (minimum version 1.24)"), "{out}");
    let api = d.docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(api.trim(), "1.51");

    let info = json(&d.docker_ok(&["info", "--format", "{{json .}}"]));
    let ncpu = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(info["NCPU"].as_u64(), Some(ncpu));
    assert!(info["MemTotal"].as_u64().unwrap() > 0);
    assert_eq!(info["CgroupVersion"], host_cgroup_version());
    assert_eq!(info["Driver"], "overlayfs");
    assert_eq!(info["Images"], 0);
    assert_eq!(info["OSType"], "linux");
    assert_eq!(
        info["DockerRootDir"].as_str(),
        Some(d.data_root.to_str().unwrap())
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(info["KernelVersion"].as_str(), Some(kernel.trim()));
    for e in info["DriverStatus"].as_array().unwrap() {
        assert_eq!(e.as_array().unwrap().len(), 2, "{e}");
    }
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    let text = d.docker_ok(&["info"]);
    assert!(text.contains("Storage Driver: overlayfs"), "{text}");
    assert!(
        text.contains(&format!("Cgroup Version: {}", host_cgroup_version())),
        "{text}"
    );
}

#[test]
fn ping_versions_and_errors_over_http() {
    let d = Daemon::start();
    let (st, head, body) = d.http("HEAD", "/_ping");
    assert_eq!(st, 200);
    let h = head.to_ascii_lowercase();
    for want in [
        "api-version: 1.51",
        "ostype: linux",
        "docker-experimental: false",
        "builder-version: 1",
        "swarm: inactive",
        "cache-control: no-cache, no-store, must-revalidate",
        "pragma: no-cache",
        "content-length: 0",
        "content-type: text/plain; charset=utf-8",
    ] {
        assert!(h.contains(want), "{want} missing in {head}");
    }
    assert!(body.is_empty());
    let (st, _, body) = d.http("GET", "/_ping");
    assert_eq!((st, body.as_slice()), (200, &b"OK"[..]));
    let (st, _, body) = d.http("GET", "/v1.50/_ping");
    assert_eq!((st, body.as_slice()), (200, &b"OK"[..]));

    for path in ["/version", "/v1.41/version", "/v9.99/version"] {
        let (st, _, body) = d.http("GET", path);
        assert_eq!(st, 200, "{path}");
        let v = json(&String::from_utf8_lossy(&body));
        assert_eq!(v["ApiVersion"], "1.51");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["Os"], "linux");
    }
    let (st, _, body) = d.http("GET", "/v1.12/version");
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("too old"));

    let (st, head, body) = d.http("GET", "/v1.50/images/nope/json");
    assert_eq!(st, 404);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json\r\n")
            || head
                .to_ascii_lowercase()
                .ends_with("content-type: application/json"),
        "{head}"
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&body)),
        serde_json::json!({"message": "No such image: nope:latest"})
    );
    let (st, _, body) = d.http("GET", "/v1.50/no/such/route");
    assert_eq!(st, 404);
    assert_eq!(
        json(&String::from_utf8_lossy(&body))["message"],
        "page not found"
    );
    let (st, _, body) = d.http("POST", "/v1.50/build?t=x");
    assert_eq!(st, 501);
    assert!(String::from_utf8_lossy(&body).contains("build is not implemented"));
    // Only loopback registries in tests: Docker Hub is refused before any traffic.
    let (st, _, body) = d.http("POST", "/images/create?fromImage=busybox&tag=latest");
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("only reaches loopback registries"));
    // An unreachable registry: a 500 naming it, before any progress line.
    let (st, _, body) = d.http("POST", "/images/create?fromImage=127.0.0.1:9/x&tag=latest");
    assert_eq!(st, 500, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("127.0.0.1:9"));
    // Both filter encodings are accepted; unknown filters are refused.
    let (st, _, body) = d.http(
        "GET",
        "/images/json?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D",
    );
    assert_eq!((st, body.as_slice()), (200, &b"[]"[..]));
    let (st, _, _) = d.http(
        "GET",
        "/images/json?filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D",
    );
    assert_eq!(st, 200);
    let (st, _, body) = d.http(
        "GET",
        "/images/json?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D",
    );
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid filter 'nope'"));
}

#[test]
fn login_then_push_with_credentials() {
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "busybox:latest", "login", &arch);
    d.docker_ok(&["load", "-q", "-i", arch.to_str().unwrap()]);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(tmp.join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    let cfg = serde_json::json!({"auth": {
        "htpasswd": tmp.join("htpasswd"),
        "access": [{"account": "alice", "repositories": ["*"], "actions": ["*"]}],
        "token": {"expiry_secs": 60},
    }});
    std::fs::write(tmp.join("registry.json"), cfg.to_string()).unwrap();
    let reg = common::Registry::start_with(
        &tmp.join("registry"),
        &["--config", tmp.join("registry.json").to_str().unwrap()],
    );
    let name = format!("{}/alice/bb:1", reg.host);
    d.docker_ok(&["tag", "busybox", &name]);
    let err = d.docker_err(&["push", &name]);
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("refused"),
        "{err}"
    );
    let err = d.docker_err(&["login", "-u", "alice", "-p", "wrong", &reg.host]);
    assert!(err.contains("login") && err.contains("failed"), "{err}");
    let out = d.docker_ok(&["login", "-u", "alice", "-p", "s3cret", &reg.host]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let out = d.docker_ok(&["push", &name]);
    assert!(out.contains("digest: sha256:"), "{out}");
}

#[test]
fn search_says_what_is_missing() {
    let d = Daemon::start();
    let err = d.docker_err(&["search", "x"]);
    assert!(err.contains("search is not supported"), "{err}");
}

#[test]
fn push_and_pull_through_a_berth_registry() {
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "busybox:latest", "pushed", &arch);
    d.docker_ok(&["load", "-q", "-i", arch.to_str().unwrap()]);
    let reg = common::Registry::start(&tmp.join("registry"));
    let name = format!("{}/team/bb:v1", reg.host);

    d.docker_ok(&["tag", "busybox", &name]);
    let out = d.docker_ok(&["push", &name]);
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let pushed_id = inspect(&d, &name)["Id"].as_str().unwrap().to_owned();

    // Gone locally, then back by pull with the same id.
    d.docker_ok(&["rmi", &name, "busybox"]);
    let err = d.docker_err(&["inspect", "--type", "image", &name]);
    assert!(err.contains("No such image"), "{err}");
    // As dockerd, the layer is extracted at pull time. The API stream:
    // "Extracting" with the layer's bytes done/total, the last at total,
    // then that layer's "Pull complete".
    let (code, _, body) = d.http(
        "POST",
        &format!("/images/create?fromImage={}/team/bb&tag=v1", reg.host),
    );
    assert_eq!(code, 200);
    let msgs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&body)
        .into_iter()
        .map(|m| m.unwrap())
        .collect();
    let pos = |status: &str| {
        msgs.iter()
            .rposition(|m| m["status"] == status)
            .unwrap_or_else(|| panic!("no {status:?} in {msgs:?}"))
    };
    let last_extract = &msgs[pos("Extracting")];
    let detail = &last_extract["progressDetail"];
    assert!(detail["total"].as_u64().unwrap() > 0, "{last_extract}");
    assert_eq!(detail["current"], detail["total"], "{last_extract}");
    assert!(pos("Extracting") < pos("Pull complete"), "{msgs:?}");
    assert_eq!(msgs[pos("Pull complete")]["id"], last_extract["id"]);
    assert_eq!(inspect(&d, &name)["Id"].as_str().unwrap(), pushed_id);
    // The CLI: "Pull complete" per layer, the Digest line after every
    // layer (it hides "Extracting" off a terminal: those carry byte counts).
    d.docker_ok(&["rmi", &name]);
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image for"), "{out}");
    assert_eq!(inspect(&d, &name)["Id"].as_str().unwrap(), pushed_id);
    let at = |w: &str| out.find(w).unwrap_or_else(|| panic!("no {w:?} in:\n{out}"));
    assert!(
        at(": Download complete") < at(": Pull complete")
            && at(": Pull complete") < at("Digest: sha256:"),
        "{out}"
    );
    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains("Image is up to date"), "{out}");

    // Errors name what is missing.
    let err = d.docker_err(&["pull", &format!("{}/team/bb:nope", reg.host)]);
    assert!(err.contains("not found"), "{err}");
}

/// Ids of `docker images`, full.
fn image_ids(d: &Daemon, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["images", "-q", "--no-trunc"];
    args.extend_from_slice(extra);
    d.docker_ok(&args)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let v = json(&d.docker_ok(&["image", "inspect", name]));
    v.as_array().unwrap()[0].clone()
}

#[test]
fn image_lifecycle_with_the_docker_cli() {
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox-one.tar");
    busybox_archive(&tmp.join("scratch-one"), "busybox:latest", "one", &arch);

    // load
    let out = d.docker_ok(&["load", "-i", arch.to_str().unwrap()]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    let listed = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(listed.contains("busybox:latest "), "{listed}");

    // tag
    d.docker_ok(&["tag", "busybox:latest", "example.com/team/bb:v1"]);
    let listed = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(listed.contains("example.com/team/bb:v1"), "{listed}");

    // inspect, by name, full id and short id
    let i = inspect(&d, "busybox");
    let id1 = i["Id"].as_str().unwrap().to_owned();
    assert!(id1.starts_with("sha256:") && id1.len() == 71, "{id1}");
    let tags: BTreeSet<&str> = i["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from(["busybox:latest", "example.com/team/bb:v1"])
    );
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(i["Config"]["Labels"]["org.berth.test"], "one");
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["Architecture"], Platform::host().architecture);
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(i["Size"].as_u64().unwrap() > 500_000);
    chrono::DateTime::parse_from_rfc3339(i["Created"].as_str().unwrap()).unwrap();
    assert_eq!(inspect(&d, &id1)["Id"], id1.as_str());
    assert_eq!(inspect(&d, &id1[7..19])["Id"], id1.as_str());
    assert_eq!(
        d.docker_ok(&["inspect", "--format", "{{.Id}}", "example.com/team/bb:v1"])
            .trim(),
        id1
    );

    // history
    let h = d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{.Comment}}",
        "busybox",
    ]);
    assert!(
        h.starts_with(&format!(
            "{id1}|berth import|busybox for berthd tests (one)"
        )),
        "{h}"
    );

    // save: the tar loads back into a fresh berth store
    let saved = tmp.join("saved.tar");
    d.docker_ok(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    let fresh = ImageStore::open(&tmp.join("fresh")).unwrap();
    let report = archive::load(
        &fresh,
        std::fs::File::open(&saved).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let names: Vec<&str> = report.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["docker.io/library/busybox:latest"]);
    let r = fresh
        .resolve(&report.images[0].target, &Platform::host())
        .unwrap();
    assert_eq!(r.config_digest.to_string(), id1);

    // rmi by id of an image in two repositories: refused without force
    let err = d.docker_err(&["rmi", &id1[7..19]]);
    assert!(
        err.contains(&format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            &id1[7..19]
        )),
        "{err}"
    );
    // rmi of one tag only untags
    let out = d.docker_ok(&["rmi", "example.com/team/bb:v1"]);
    assert!(out.contains("Untagged: example.com/team/bb:v1"), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    assert!(image_ids(&d, &[]).contains(&id1));

    // a second load moves busybox:latest; the old image stays, dangling
    let arch2 = tmp.join("busybox-two.tar");
    busybox_archive(&tmp.join("scratch-two"), "busybox:latest", "two", &arch2);
    let out = d.docker_ok(&["load", "-i", arch2.to_str().unwrap()]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    let id2 = inspect(&d, "busybox")["Id"].as_str().unwrap().to_owned();
    assert_ne!(id1, id2);
    assert_eq!(
        image_ids(&d, &["--filter", "dangling=true"]),
        BTreeSet::from([id1.clone()])
    );
    assert_eq!(
        image_ids(&d, &["--filter", "reference=busy*"]),
        BTreeSet::from([id2.clone()])
    );
    assert_eq!(
        image_ids(&d, &["--filter", "label=org.berth.test=two"]),
        BTreeSet::from([id2.clone()])
    );

    // prune removes the dangling one
    let out = d.docker_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&id1), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(image_ids(&d, &["-a"]), BTreeSet::from([id2.clone()]));

    // import with changes
    let rootfs = tmp.join("rootfs.tar");
    std::fs::write(&rootfs, busybox_rootfs("three")).unwrap();
    let out = d.docker_ok(&[
        "import",
        "--change",
        r#"CMD ["sh", "-c", "echo hi"]"#,
        "--change",
        "ENV A=1",
        "--change",
        "WORKDIR /app",
        "--change",
        "LABEL made=import",
        "-m",
        "imported by a test",
        rootfs.to_str().unwrap(),
        "imported:v1",
    ]);
    let id3 = out.trim().to_owned();
    assert!(id3.starts_with("sha256:"), "{out}");
    let i = inspect(&d, "imported:v1");
    assert_eq!(i["Id"], id3.as_str());
    assert_eq!(
        i["Config"]["Cmd"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(i["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(i["Config"]["WorkingDir"], "/app");
    assert_eq!(i["Config"]["Labels"]["made"], "import");
    assert_eq!(i["Comment"], "imported by a test");

    // rmi by id with two tags of one repository: untag both, delete
    d.docker_ok(&["tag", "imported:v1", "imported:v2"]);
    let out = d.docker_ok(&["rmi", &id3[7..19]]);
    for want in [
        "Untagged: imported:v1",
        "Untagged: imported:v2",
        &format!("Deleted: {id3}"),
    ] {
        assert!(out.contains(want), "{want} missing in {out}");
    }
    // rmi of the last tag deletes the image
    let out = d.docker_ok(&["rmi", "busybox"]);
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert!(out.contains(&format!("Deleted: {id2}")), "{out}");
    assert!(image_ids(&d, &["-a"]).is_empty());
    let err = d.docker_err(&["rmi", "nope"]);
    // 28.x shows the daemon's text (nope:latest), 20.10 its own (nope).
    assert!(err.contains("No such image: nope"), "{err}");
    // and the blobs went with the images
    let blobs = std::fs::read_dir(d.data_root.join("content/blobs/sha256"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "blobs left after every image was removed");
}

#[test]
fn sigterm_stops_cleanly() {
    let mut d = Daemon::start_with(r#"{"storage-driver": "overlay2"}"#);
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    let pid = std::fs::read_to_string(&d.pidfile).unwrap();
    assert_eq!(pid.trim(), d.pid().to_string());
    d.docker_ok(&["version"]);
    let st = d.terminate();
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!d.sock.exists(), "socket left behind");
    assert!(!d.pidfile.exists(), "pid file left behind");
    let log = d.log();
    assert!(
        log.contains("unknown key") && log.contains("storage-driver"),
        "{log}"
    );
}

#[test]
fn bad_config_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("daemon.json");
    std::fs::write(&cfg, "{ \"data-root\": ").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("-H")
        .arg(format!("unix://{}/s.sock", dir.path().display()))
        .arg("--config-file")
        .arg(&cfg)
        .arg("--exec-root")
        .arg(dir.path().join("run"))
        .env_remove("BERTH_ROOT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not valid JSON"), "{err}");
    assert!(!dir.path().join("s.sock").exists());
}

#[test]
fn sigterm_lets_a_load_in_flight_finish() {
    use std::io::{Read, Write};
    let mut d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "inflight:latest", "in-flight", &arch);
    let bytes = std::fs::read(&arch).unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "POST /v1.50/images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    )
    .unwrap();
    let half = bytes.len() / 2;
    s.write_all(&bytes[..half]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // New connections are refused while the request in flight goes on.
    assert!(std::os::unix::net::UnixStream::connect(&d.sock).is_err());
    s.write_all(&bytes[half..]).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("Loaded image: inflight:latest"), "{resp}");
    let st = d.terminate_wait();
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!d.sock.exists());
    // The load is durable: a new store over the same data root has it.
    let store = ImageStore::open(&d.data_root).unwrap();
    assert!(store.get("inflight:latest").is_ok());
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    let d = Daemon::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("-H")
        .arg(format!("unix://{}", d.sock.display()))
        .arg("--data-root")
        .arg(d.dir.path().join("other-data"))
        .arg("--exec-root")
        .arg(d.dir.path().join("other-run"))
        .arg("--config-file")
        .arg(d.dir.path().join("daemon.json"))
        .env_remove("BERTH_ROOT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use"), "{err}");
    // The first daemon still serves.
    d.docker_ok(&["version"]);
}
