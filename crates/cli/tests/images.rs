#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `berth` against a berthd of its own: system verbs, the image lifecycle
//! (load, images, inspect, tag, rmi, save, import) and the errors a user
//! sees. Run as root; needs `target/debug/berthd` (see tests/common).

mod common;

use common::{Daemon, busybox_rootfs};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn version_and_info() {
    let d = Daemon::start();
    let out = d.ok(&["version"]);
    assert!(out.starts_with("Client:\n Version:"), "{out}");
    assert!(out.contains("\nServer: berth"), "{out}");
    assert!(
        out.contains("API version:      1.51 (minimum version 1.24)"),
        "{out}"
    );
    assert_eq!(
        d.ok(&["version", "--format", "{{.Server.APIVersion}}"])
            .trim(),
        "1.51"
    );
    assert_eq!(
        d.ok(&["version", "-f", "{{.Client.ApiVersion}}"]).trim(),
        "1.51"
    );

    let info = json(&d.ok(&["info", "--format", "{{json .}}"]));
    let ncpu = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(info["NCPU"].as_u64(), Some(ncpu));
    assert_eq!(info["Images"], 0);
    assert_eq!(
        info["DockerRootDir"].as_str(),
        Some(d.data_root.to_str().unwrap())
    );
    assert_eq!(info["ClientInfo"]["Context"], "default");
    let text = d.ok(&["info"]);
    assert!(text.contains("\nServer:\n Containers: 0\n"), "{text}");
    assert!(text.contains(" Storage Driver: overlayfs\n"), "{text}");
    assert!(text.contains(&format!(" CPUs: {ncpu}\n")), "{text}");
    assert_eq!(d.ok(&["info", "-f", "{{.OSType}}"]).trim(), "linux");
}

#[test]
fn an_older_pinned_api_version_is_used_in_paths() {
    let d = Daemon::start();
    let out = d
        .cmd(&["-D", "images", "-q"])
        .env("BERTH_API_VERSION", "1.41")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GET /v1.41/images/json"), "{err}");
}

#[test]
fn load_images_inspect_tag_rmi() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");

    let table = d.ok(&["images"]);
    let lines: Vec<&str> = table.lines().collect();
    // Columns are as wide as their widest cell plus 3 (CREATED varies).
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED   "),
        "{table}"
    );
    assert!(lines[0].ends_with("   SIZE"), "{table}");
    assert_eq!(lines[0].find("SIZE"), lines[1].rfind("  ").map(|i| i + 2));
    assert_eq!(lines.len(), 2, "{table}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cols[..2], &["bb", "latest"], "{table}");
    let id = d
        .ok(&["inspect", "--format", "{{.Id}}", "bb"])
        .trim()
        .to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(cols[2], &id[7..19]);
    assert!(lines[1].ends_with("MB"), "{table}");

    assert_eq!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]),
        format!("bb:latest {}\n", &id[7..19])
    );
    assert_eq!(d.ok(&["images", "-q"]), format!("{}\n", &id[7..19]));
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]), format!("{id}\n"));
    let t = d.ok(&["images", "--format", "table {{.Repository}}\t{{.Tag}}"]);
    assert_eq!(t, "REPOSITORY   TAG\nbb           latest\n");
    let j = json(&d.ok(&["images", "--format", "json"]));
    assert_eq!(j["Repository"], "bb");

    // inspect: the JSON array, or a template per object.
    let all = json(&d.ok(&["inspect", "bb"]));
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(all[0]["Id"], id.as_str());
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.Config.Cmd}} {{index .Config.Labels \"org.berth.test\"}}",
            "bb"
        ]),
        "[sh] bb:latest\n"
    );
    assert_eq!(
        d.ok(&[
            "inspect",
            "--type",
            "image",
            "-f",
            "{{json .RepoTags}}",
            "bb:latest"
        ]),
        "[\"bb:latest\"]\n"
    );

    d.ok(&["tag", "bb", "localhost:5000/team/bb:v2"]);
    let tags = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["bb:latest", "localhost:5000/team/bb:v2"]);
    assert_eq!(
        d.ok(&["images", "-q"]).lines().count(),
        1,
        "one image, listed once with -q"
    );
    assert_eq!(
        d.ok(&["images", "--format", "{{.Tag}}", "localhost:5000/team/bb"]),
        "v2\n"
    );

    assert_eq!(
        d.ok(&["rmi", "localhost:5000/team/bb:v2"]),
        "Untagged: localhost:5000/team/bb:v2\n"
    );
    let out = d.ok(&["rmi", "bb"]);
    assert_eq!(out, format!("Untagged: bb:latest\nDeleted: {id}\n"));
    assert_eq!(d.ok(&["images", "-q"]), "");
}

#[test]
fn errors_for_unknown_images() {
    let d = Daemon::start();
    let err = d.fails(&["rmi", "nope"], 1);
    assert_eq!(
        err,
        "Error response from daemon: No such image: nope:latest\n"
    );
    let err = d.fails(&["inspect", "nope"], 1);
    assert!(err.contains("Error: No such object: nope"), "{err}");
    let err = d.fails(&["tag", "nope", "other"], 1);
    assert!(
        err.starts_with("Error response from daemon: No such image: nope"),
        "{err}"
    );
    let err = d.fails(
        &["save", "-o", d.path("x.tar").to_str().unwrap(), "nope"],
        1,
    );
    assert!(err.contains("Error response from daemon:"), "{err}");
    assert!(err.contains("nope"), "{err}");
    assert!(!d.path("x.tar").exists(), "no file for a failed save");
    // Several targets: the good ones succeed, the bad one is reported, exit 1.
    d.load_busybox("bb:latest");
    d.ok(&["tag", "bb", "bb:two"]);
    let out = d.berth(&["rmi", "bb:two", "nope:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Untagged: bb:two\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error response from daemon: No such image: nope:1\n"
    );
    // A run against an image berthd cannot pull: the daemon's word, exit 125.
    let out = d.berth(&["pull", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("Error response from daemon: "),
        "{out:?}"
    );
}

#[test]
fn no_daemon_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-H", &format!("unix://{}", sock.display()), "images"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Cannot connect to the berth daemon at unix://{}. Is berthd running?",
            sock.display()
        )),
        "{err}"
    );
    // `version` still prints the client half.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-H", &format!("unix://{}", sock.display()), "version"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Client:\n"));
    // A usage error exits 125, like docker's flag errors.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["images", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn save_then_load_round_trip() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    d.ok(&["tag", "bb", "bb:keep"]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "bb"]);
    let file = d.path("saved.tar");
    assert_eq!(
        d.ok(&["save", "-o", file.to_str().unwrap(), "bb:latest", "bb:keep"]),
        ""
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert!(
        meta.len() > 1_000_000,
        "busybox is in there: {}",
        meta.len()
    );
    d.ok(&["rmi", "bb:latest", "bb:keep"]);
    assert_eq!(d.ok(&["images", "-q"]), "");

    let out = d.ok(&["load", "-i", file.to_str().unwrap()]);
    assert!(out.contains("Loaded image: bb:latest"), "{out}");
    assert!(out.contains("Loaded image: bb:keep"), "{out}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.Id}}", "bb:keep"]), id);

    // save to stdout, load from stdin (-q).
    let saved = d.berth(&["save", "bb:keep"]);
    assert!(saved.status.success());
    d.ok(&["rmi", "bb:latest", "bb:keep"]);
    let out = d.berth_stdin(&["load", "-q"], &saved.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bb:keep"));
    assert_eq!(d.ok(&["inspect", "-f", "{{.Id}}", "bb:keep"]), id);
}

#[test]
fn import_from_file_and_stdin() {
    let d = Daemon::start();
    let rootfs = d.path("rootfs.tar");
    std::fs::write(&rootfs, busybox_rootfs("imported")).unwrap();
    let out = d.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV PATH=/bin",
        "-m",
        "from a tarball",
        rootfs.to_str().unwrap(),
        "imp:1",
    ]);
    let id = out.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.Id}} {{.Config.Cmd}} {{.Config.Env}} {{.Comment}}",
            "imp:1"
        ]),
        format!("{id} [sh] [PATH=/bin] from a tarball\n")
    );

    let out = d.berth_stdin(&["import", "-", "imp:stdin"], &busybox_rootfs("stdin"));
    assert!(out.status.success(), "{out:?}");
    let tags = d.ok(&["images", "--format", "{{.Tag}}", "imp"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["1", "stdin"]);
    let err = d.fails(&["import", d.path("missing.tar").to_str().unwrap()], 1);
    assert!(err.contains("missing.tar"), "{err}");
}

#[test]
fn image_prune_removes_dangling_images() {
    let d = Daemon::start();
    let rootfs = d.path("rootfs.tar");
    std::fs::write(&rootfs, busybox_rootfs("dangling")).unwrap();
    let id = d
        .ok(&["import", rootfs.to_str().unwrap()])
        .trim()
        .to_owned();
    assert_eq!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "<none>:<none>\n"
    );
    let out = d.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(d.ok(&["images", "-q"]), "");
}
