//! A berthd of the test's own (socket, data root, exec root, pidfile in a
//! temp dir) and the `berth` binary pointed at it. The guard kills only
//! that daemon's pid and removes the temp dir, even when the test fails.
//!
//! berthd is a binary of another crate, so Cargo cannot hand its path to
//! these tests: they run `target/debug/berthd` next to this test binary.
//! `cargo test --workspace` builds it; with `-p berth-cli` run
//! `cargo build -p berth-daemon` first (or set `BERTHD` to its path).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_image::archive::{self, ImportOptions};
use berth_image::store::{ImageStore, Platform};

/// `target/debug/berthd` (the test binary lives in `target/debug/deps/`).
pub fn berthd_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTHD") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join("berthd");
    assert!(
        p.exists(),
        "berthd not found at {}: build it first (`cargo build -p berth-daemon`, or run \
         `cargo test --workspace`), or set BERTHD=/path/to/berthd",
        p.display()
    );
    p
}

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub data_root: PathBuf,
    /// This daemon's default bridge device and nftables table (`bt<hex>`).
    pub net_tag: String,
}

/// A distinct bridge, table and address space per daemon of this process
/// (test binaries run one at a time): bridge `10.149.<n>.0/24`, user
/// networks in `10.<40+n>.0.0/16`.
fn net_identity() -> (String, u32) {
    use std::io::Read;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 40;
    let mut b = [0u8; 3];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    (format!("bt{:02x}{:02x}{:02x}", b[0], b[1], b[2]), n)
}

impl Daemon {
    /// Starts berthd and waits (10 s at most) until `berth version` reaches it.
    ///
    /// `BERTH_CLI_TEST_DAEMON=unix:///path` runs the test against that
    /// daemon instead (a private dockerd, to check the tests themselves;
    /// use `--test-threads=1` then, as tests share its names).
    pub fn start() -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-cli-test-")
            .tempdir()
            .unwrap();
        if let Ok(host) = std::env::var("BERTH_CLI_TEST_DAEMON") {
            let sock = PathBuf::from(host.trim_start_matches("unix://"));
            return Daemon {
                child: None,
                data_root: dir.path().join("data"),
                dir,
                sock,
                net_tag: String::new(),
            };
        }
        let sock = dir.path().join("berth.sock");
        let data_root = dir.path().join("data");
        let exec_root = dir.path().join("run");
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let log = std::fs::File::create(dir.path().join("berthd.log")).unwrap();
        let (net_tag, net_index) = net_identity();
        let child = Command::new(berthd_path())
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.path().join("berthd.pid"))
            .arg("--config-file")
            .arg(&config)
            .args([
                "--bridge",
                &net_tag,
                "--firewall-table",
                &net_tag,
                "--bip",
                &format!("10.149.{net_index}.1/24"),
                "--default-address-pool",
                &format!("base=10.{}.0.0/16,size=24", 40 + net_index),
                "--dns-forward=false",
            ])
            .env_remove("BERTH_ROOT")
            // No test may pull from outside the machine.
            .env("BERTH_LOOPBACK_REGISTRIES_ONLY", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            dir,
            sock,
            data_root,
            net_tag,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.sock.exists() || !d.berth(&["version"]).status.success() {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("berthd exited early ({st}): {}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not come up: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn log(&self) -> String {
        if self.child.is_none() {
            return "(external daemon)".into();
        }
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `berth` with `BERTH_HOST` at this daemon (and no `DOCKER_HOST`).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(args)
            .env("BERTH_HOST", format!("unix://{}", self.sock.display()))
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_API_VERSION")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs berth with `input` on stdin.
    pub fn berth_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs berth, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}): {}\n{}\nberthd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs berth, asserts it fails with `code`, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.berth(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "berth {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Loads a busybox image called `name` (built by [`busybox_archive`]).
    pub fn load_busybox(&self, name: &str) {
        let archive = self.path(&format!("{}.tar", name.replace([':', '/'], "_")));
        busybox_archive(&self.path("scratch-store"), name, name, &archive);
        let out = self.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert!(out.contains("Loaded image"), "{out}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Containers first (a failed test may leave some running), through
        // the daemon while it is up.
        if self.child.is_some() {
            let ids = self.berth(&["ps", "-aq", "--no-trunc"]);
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.berth(&["rm", "-f", id]);
            }
            // User networks' bridges live in the host, not in the temp dir.
            let _ = self.berth(&["network", "prune", "-f"]);
        }
        if let Some(mut c) = self.child.take() {
            // Only the daemon this guard started: SIGTERM (it deletes what
            // it keeps for later, such as its spare network namespace),
            // SIGKILL if it does not stop.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            unmount_under(self.dir.path());
            let _ = Command::new("ip")
                .args(["link", "del", &self.net_tag])
                .stderr(Stdio::null())
                .status();
            for family in ["ip", "ip6"] {
                let _ = Command::new("nft")
                    .args(["delete", "table", family, &self.net_tag])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Unmounts whatever is still mounted under `dir` (a killed daemon's
/// namespaces), deepest first.
fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The busybox applets the tests call, as symlinks in `bin/`.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "ls", "id", "true", "false", "env",
];

/// A root filesystem tarball with the host's static busybox and a marker.
pub fn busybox_rootfs(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    for d in ["bin/", "etc/", "tmp/", "proc/", "sys/", "dev/"] {
        b.append_data(&mut dir.clone(), d, std::io::empty())
            .unwrap();
    }
    let bb = std::fs::read("/bin/busybox").expect("the host's static busybox (busybox-static)");
    let mut f = tar::Header::new_ustar();
    f.set_mode(0o755);
    f.set_size(bb.len() as u64);
    b.append_data(&mut f, "bin/busybox", bb.as_slice()).unwrap();
    for a in APPLETS {
        let mut l = tar::Header::new_ustar();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    for (p, body) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n".to_owned()),
        ("etc/marker", format!("{marker}\n")),
    ] {
        let mut f = tar::Header::new_ustar();
        f.set_mode(0o644);
        f.set_size(body.len() as u64);
        b.append_data(&mut f, p, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A `docker save`-style archive of a busybox image named `name`, made
/// with the image library in a scratch store; written to `out`.
pub fn busybox_archive(scratch: &Path, name: &str, marker: &str, out: &Path) {
    let store = ImageStore::open(scratch).unwrap();
    archive::import(
        &store,
        std::io::Cursor::new(busybox_rootfs(marker)),
        &ImportOptions {
            name: Some(name.into()),
            config: Some(serde_json::json!({
                "Cmd": ["sh"],
                "Env": ["PATH=/bin"],
                "Labels": {"org.berth.test": marker},
            })),
            message: Some(format!("busybox for berth CLI tests ({marker})")),
            ..Default::default()
        },
    )
    .unwrap();
    let f = std::fs::File::create(out).unwrap();
    archive::save(&store, &[name], &Platform::host(), f).unwrap();
}
