#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Real clients against berth-registry: podman (4.3) pushes and pulls
//! through it, and Debian's dockerd (20.10) pulls from and pushes to it as
//! an insecure localhost registry. Each keeps its whole state in a temp dir
//! (podman: `--root`/`--runroot`/`--tmpdir` and a throwaway HOME; dockerd:
//! its own data root, exec root, socket and containerd); the guards kill
//! what they started by PID and remove the host files these clients write
//! on their own when they were not there before.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Host paths podman and dockerd write whatever they are told (podman's
/// blob-info cache is fixed for root, its locks live in /dev/shm/libpod_lock;
/// dockerd 20.10 keeps a trust key in
/// /etc/docker and sockets dirs under /run). Removed afterwards when they
/// were not there before, deepest first.
const HOST_FILES: &[&str] = &[
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/etc/docker/key.json",
    "/dev/shm/libpod_lock",
];
const HOST_DIRS: &[&str] = &[
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/etc/docker",
    "/run/docker/plugins",
    "/run/docker",
    "/run/containerd",
];

/// Remembers which host paths existed; removes the new ones when dropped.
struct HostPaths(Vec<(&'static str, bool)>);

impl HostPaths {
    fn snapshot() -> HostPaths {
        HostPaths(
            HOST_FILES
                .iter()
                .chain(HOST_DIRS)
                .map(|p| (*p, Path::new(p).exists()))
                .collect(),
        )
    }
}

impl Drop for HostPaths {
    fn drop(&mut self) {
        for (p, existed) in &self.0 {
            if !existed {
                if HOST_FILES.contains(p) {
                    let _ = std::fs::remove_file(p);
                } else {
                    let _ = std::fs::remove_dir(p);
                }
            }
        }
    }
}

/// `bin`, or `None` (skip) when it is not installed; under BERTH_TEST_ROOT
/// a missing judge fails (scripts/install-deps.sh test installs them).
fn judge(bin: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var_os("BERTH_TEST_ROOT").is_some() {
            panic!("{bin} is not installed (scripts/install-deps.sh test installs it)");
        }
        eprintln!("skipping: {bin} is not installed");
    }
    found
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// An image pushed over the API: one gzip layer (/bin/busybox, /bin/sh and
/// a file naming `seed`), OCI media types. Returns (manifest, config) digests.
fn push_image(s: &Server, repo: &str, tag: &str, seed: &str) -> (String, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    for (name, body) in [("bin/busybox", bb), ("etc/seed", seed.as_bytes().to_vec())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, name, body.as_slice()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    tar.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let raw = tar.into_inner().unwrap();
    let layer = gzip(&raw);
    let a = agent();
    let ld = push_blob(&a, s, repo, &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&raw)]},
    }))
    .unwrap();
    let cd = push_blob(&a, s, repo, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let r = put_manifest(&a, s, repo, tag, OCI_MANIFEST, &manifest);
    assert_eq!(r.status(), 201);
    (sha256(&manifest), cd)
}

/// The registry's digest and media type for `repo:reference`.
fn registry_manifest(s: &Server, repo: &str, reference: &str) -> (String, String) {
    let r = agent()
        .head(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .call()
        .unwrap();
    assert_eq!(r.status(), 200, "HEAD {repo}:{reference}");
    (
        header(&r, "docker-content-digest").unwrap(),
        header(&r, "content-type").unwrap(),
    )
}

fn check(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// ---------------------------------------------------------------- podman

/// podman with every path of its own inside `dir`.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn run(&self, args: &[&str]) -> Output {
        let d = &self.dir;
        for sub in ["home", "xdg", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        Command::new("podman")
            .env("HOME", d.join("home"))
            .env("XDG_RUNTIME_DIR", d.join("xdg"))
            .env("XDG_CONFIG_HOME", d.join("home/.config"))
            .env("TMPDIR", d.join("tmp"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        check(&format!("podman {args:?}"), &self.run(args))
    }
}

#[test]
fn podman_push_and_pull_keep_digests() {
    if !is_root() || judge("podman").is_none() {
        return;
    }
    let _host = HostPaths::snapshot();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("reg"), &[]);
    let pm = Podman {
        dir: dir.path().join("podman"),
    };
    let h = s.host();

    // podman pulls what another client pushed, digest for digest.
    let (md, cd) = push_image(&s, "judge/src", "v1", "podman");
    let src = format!("{h}/judge/src:v1");
    pm.ok(&["pull", "-q", "--tls-verify=false", &src]);
    let inspect = pm.ok(&["image", "inspect", "--format", "{{.Digest}} {{.Id}}", &src]);
    assert_eq!(
        inspect,
        format!("{md} {}", cd.strip_prefix("sha256:").unwrap())
    );

    // podman pushes it in both formats; the registry holds what podman says.
    let mut pushed = Vec::new();
    for (format, media_type) in [
        (
            "v2s2",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
        ("oci", OCI_MANIFEST),
    ] {
        let dest = format!("{h}/judge/copy:{format}");
        pm.ok(&["tag", &src, &dest]);
        let digest_file = dir.path().join(format!("digest-{format}"));
        pm.ok(&[
            "push",
            "-q",
            "--tls-verify=false",
            "--format",
            format,
            "--digestfile",
            digest_file.to_str().unwrap(),
            &dest,
        ]);
        let digest = std::fs::read_to_string(&digest_file).unwrap();
        assert_eq!(
            registry_manifest(&s, "judge/copy", format),
            (digest.clone(), media_type.to_owned())
        );
        pushed.push((dest, digest));
    }

    // From an empty store: every image comes back with the digest pushed.
    pm.ok(&["rmi", "-a", "-f"]);
    assert_eq!(pm.ok(&["images", "-q"]), "");
    for (dest, digest) in &pushed {
        pm.ok(&["pull", "-q", "--tls-verify=false", dest]);
        let by_digest = format!("{h}/judge/copy@{digest}");
        // One image (same config) with both digests; each pulled names its own.
        let repo_digests = pm.ok(&["image", "inspect", "--format", "{{.RepoDigests}}", dest]);
        assert!(repo_digests.contains(&by_digest), "{repo_digests}");
        pm.ok(&["pull", "-q", "--tls-verify=false", &by_digest]);
    }
    // Their filesystems are the one pushed: the layer podman stored holds
    // the file the image was built with.
    let mnt = pm.ok(&["image", "mount", &pushed[0].0]);
    let seed = std::fs::read_to_string(Path::new(&mnt).join("etc/seed"));
    pm.ok(&["image", "unmount", &pushed[0].0]);
    assert_eq!(seed.unwrap(), "podman");
    pm.ok(&["rmi", "-a", "-f"]);
}

// ---------------------------------------------------------------- dockerd

/// Debian's dockerd on a socket in `dir`, with its own data root, exec root
/// (its containerd lives there too), no bridge and no iptables. Stopped by
/// PID when dropped: SIGTERM, then SIGKILL; whatever it left running that
/// names `dir` is killed too.
struct Dockerd {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
    cgroup_parent: String,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("daemon.json"), "{}\n").unwrap();
        let sock = dir.join("docker.sock");
        let cgroup_parent = format!("/berth/registry-judge-{}", std::process::id());
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=vfs",
                "--cgroup-parent",
                &cgroup_parent,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("dockerd.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let d = Dockerd {
            child,
            dir: dir.to_owned(),
            sock,
            cgroup_parent,
        };
        let deadline = Instant::now() + Duration::from_secs(40);
        while !(d.sock.exists() && d.run(&["version"]).status.success()) {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/docker")
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        check(&format!("docker {args:?}"), &self.run(args))
    }

    /// PIDs whose command line names the daemon's dir (dockerd, its containerd).
    fn pids(&self) -> Vec<i32> {
        let needle = self.dir.to_string_lossy().into_owned();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process};
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = kill_process(pid, Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in self.pids() {
            if let Some(p) = Pid::from_raw(p) {
                let _ = kill_process(p, Signal::KILL);
            }
        }
        // No container ran, so the cgroup parent is normally never made.
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for d in [
                ctrl.path().join(self.cgroup_parent.trim_start_matches('/')),
                Path::new("/sys/fs/cgroup").join(self.cgroup_parent.trim_start_matches('/')),
            ] {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

#[test]
fn dockerd_pulls_and_pushes() {
    if !is_root() || judge("dockerd").is_none() || judge("docker").is_none() {
        return;
    }
    let _host = HostPaths::snapshot();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("reg"), &[]);
    let d = Dockerd::start(&dir.path().join("docker"));
    let h = s.host();

    // dockerd pulls what another client pushed (127.0.0.0/8 is an insecure
    // registry by default): the image ID is the config's digest.
    let (md, cd) = push_image(&s, "judge/src", "v1", "dockerd");
    let src = format!("{h}/judge/src:v1");
    let out = d.ok(&["pull", &src]);
    assert!(out.contains(&format!("Digest: {md}")), "{out}");
    let inspect = d.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.RepoDigests}}",
        &src,
    ]);
    assert_eq!(inspect, format!("{cd} [{h}/judge/src@{md}]"));

    // dockerd pushes it (schema 2); the registry holds the digest it reports.
    let dest = format!("{h}/judge/copy:v1");
    d.ok(&["tag", &src, &dest]);
    let out = d.ok(&["push", &dest]);
    let digest = out
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in {out}"))
        .to_owned();
    assert_eq!(
        registry_manifest(&s, "judge/copy", "v1"),
        (
            digest.clone(),
            "application/vnd.docker.distribution.manifest.v2+json".to_owned()
        )
    );
    // A second push finds every layer there.
    let out = d.ok(&["push", &dest]);
    assert!(out.contains("Layer already exists"), "{out}");

    // From an empty store, by digest: the same image comes back.
    d.ok(&["rmi", "-f", &src, &dest]);
    let by_digest = format!("{h}/judge/copy@{digest}");
    d.ok(&["pull", &by_digest]);
    assert_eq!(
        d.ok(&["image", "inspect", "--format", "{{.Id}}", &by_digest]),
        cd
    );
    d.ok(&["rmi", "-f", &by_digest]);
}
