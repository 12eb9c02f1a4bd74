#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The judge (issue 8, point 8): the same scenarios, through the same
//! docker CLI, against berthd and against Debian's dockerd (20.10), both
//! started here on private roots, in one test. A scenario that fails on
//! dockerd is a bug of this test.
//!
//! 1. two containers talk over a user network by container name and alias;
//! 2. a published port served by busybox httpd, fetched with curl from the
//!    host on 127.0.0.1;
//! 3. a published port reached from containers (its own and another one)
//!    through the bridge's gateway address (hairpin);
//! 4. `--volumes-from` (named and anonymous volumes, `:ro`);
//! 5. a named volume keeps its data across containers and across a daemon
//!    restart (last: it restarts the daemon).
//!
//! dockerd runs with its own temp data root, exec root, pid file and socket,
//! no iptables, no masquerade, no ip_forward change, the userland proxy for
//! published ports, cgroups under `berth/`, a default bridge this test makes
//! (`bj<hex>`, 10.198.x.1/24: `-b` and `--bip` are exclusive in dockerd, so
//! the bridge's address is its bip) and user networks from a /20 of
//! 10.197.0.0/16, away from berth's test ranges. Its guard removes every
//! container, stops only the dockerd (and its containerd) this test started,
//! deletes its bridges, unmounts what is under its temp dir, removes its
//! cgroups and the host files dockerd writes outside its roots when they were
//! not there before. Traffic goes only to 127.0.0.1 and to the containers.
//!
//! Takes about 8 s here (both daemons at once, on two threads), besides the
//! shim build check every berthd test binary makes.

mod common;

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, busybox_archive, root};

const IMAGE: &str = "busybox:latest";

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A daemon the scenarios are run against, through the docker CLI.
trait Peer: Send {
    fn name(&self) -> &'static str;
    /// `docker ARGS` against this daemon.
    fn cli(&self, args: &[&str]) -> Command;
    /// The daemon's log (its tail goes into failure messages).
    fn log(&self) -> String;
    /// Stops the daemon (SIGTERM, as a service manager would) and starts it
    /// again on the same roots.
    fn restart(&mut self);
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn docker(p: &dyn Peer, args: &[&str]) -> Output {
    p.cli(args).output().unwrap()
}

/// `docker ARGS`, asserted to succeed; its stdout.
fn ok(p: &dyn Peer, args: &[&str]) -> String {
    let out = docker(p, args);
    assert!(
        out.status.success(),
        "{}: docker {args:?} failed: {}\n{}\n{} log (tail):\n{}",
        p.name(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        p.name(),
        tail(&p.log(), 30)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A busybox httpd serving `body` on port 80, detached, `args` before the
/// image.
fn httpd(p: &dyn Peer, name: &str, args: &[&str], body: &str) {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut a = vec!["run", "-d", "--name", name];
    a.extend_from_slice(args);
    a.extend_from_slice(&[IMAGE, "sh", "-c", &script]);
    ok(p, &a);
}

// --- the scenarios -------------------------------------------------------

/// Two containers on a user network: wget by container name and by alias.
fn user_network_by_name(p: &mut dyn Peer) {
    ok(p, &["network", "create", "judge-net"]);
    httpd(
        p,
        "judge-web",
        &["--network", "judge-net", "--network-alias", "judge-www"],
        "judge-web-body",
    );
    // httpd may need a moment to listen: each name is tried for 5 s.
    let out = ok(
        p,
        &[
            "run",
            "--rm",
            "--network",
            "judge-net",
            IMAGE,
            "sh",
            "-c",
            "for h in judge-web judge-www; do i=0; \
             until wget -qO- http://$h/; do i=$((i+1)); \
             [ $i -ge 50 ] && { echo FAIL $h; break; }; sleep 0.1; done; done",
        ],
    );
    assert_eq!(
        out.matches("judge-web-body").count(),
        2,
        "{}: {out}",
        p.name()
    );
    assert!(!out.contains("FAIL"), "{}: {out}", p.name());
    ok(p, &["rm", "-f", "judge-web"]);
    ok(p, &["network", "rm", "judge-net"]);
}

/// `-p 127.0.0.1::80` to busybox httpd; `docker port` names the host port;
/// curl on 127.0.0.1 gets the page; after rm the port is free.
fn published_port(p: &mut dyn Peer) {
    httpd(p, "judge-pub", &["-p", "127.0.0.1::80"], "judge-published");
    let mapping = ok(p, &["port", "judge-pub", "80"]);
    let first = mapping.lines().next().unwrap_or_default().trim().to_owned();
    let (ip, port) = first
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{}: docker port: {mapping:?}", p.name()));
    assert_eq!(ip, "127.0.0.1", "{}: {mapping}", p.name());
    let port: u16 = port.parse().unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &url])
            .output()
            .expect("curl (scripts/install-deps.sh test)");
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{}: curl {url}: {}",
            p.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(body.trim(), "judge-published", "{}", p.name());
    ok(p, &["rm", "-f", "judge-pub"]);
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("{}: port {port} still taken after rm: {e}", p.name()));
}

/// Hairpin: `-p <gateway>::80` (the default bridge's gateway, so nothing
/// listens on the host's other addresses); the container itself and another
/// one on the bridge get the page from `<gateway>:<host port>`.
fn published_port_from_containers(p: &mut dyn Peer) {
    let gw = ok(
        p,
        &[
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{(index .IPAM.Config 0).Gateway}}",
        ],
    );
    let gw = gw.trim().to_owned();
    httpd(
        p,
        "judge-hair",
        &["-p", &format!("{gw}::80")],
        "judge-hairpin",
    );
    let mapping = ok(p, &["port", "judge-hair", "80"]);
    let port = mapping
        .lines()
        .next()
        .and_then(|l| l.trim().rsplit_once(':'))
        .map(|(_, port)| port.to_owned())
        .unwrap_or_else(|| panic!("{}: docker port: {mapping:?}", p.name()));
    // httpd may need a moment to listen: tried for 5 s. (Not `wget -T`:
    // Debian's busybox 1.35 crashes with it.)
    let fetch = format!(
        "i=0; until timeout 5 wget -qO- http://{gw}:{port}/; do i=$((i+1)); \
         [ $i -ge 50 ] && {{ echo FAIL; break; }}; sleep 0.1; done"
    );
    let own = ok(p, &["exec", "judge-hair", "sh", "-c", &fetch]);
    assert_eq!(own.trim(), "judge-hairpin", "{}: own port", p.name());
    let other = ok(p, &["run", "--rm", IMAGE, "sh", "-c", &fetch]);
    assert_eq!(other.trim(), "judge-hairpin", "{}: from another", p.name());
    ok(p, &["rm", "-f", "judge-hair"]);
}

/// `--volumes-from` a stopped container: its named and anonymous volumes,
/// writable, and read-only with `:ro`.
fn volumes_from(p: &mut dyn Peer) {
    ok(
        p,
        &[
            "run",
            "--name",
            "judge-vsrc",
            "-v",
            "judge-shared:/shared",
            "-v",
            "/anon",
            IMAGE,
            "sh",
            "-c",
            "echo named > /shared/n && echo anon > /anon/a",
        ],
    );
    let out = ok(
        p,
        &[
            "run",
            "--rm",
            "--volumes-from",
            "judge-vsrc",
            IMAGE,
            "sh",
            "-c",
            "cat /shared/n /anon/a && echo more > /anon/m",
        ],
    );
    assert_eq!(out, "named\nanon\n", "{}", p.name());
    let out = ok(
        p,
        &[
            "run",
            "--rm",
            "--volumes-from",
            "judge-vsrc:ro",
            IMAGE,
            "sh",
            "-c",
            "cat /anon/m; touch /shared/x 2>/dev/null && echo WRITABLE || echo RO",
        ],
    );
    assert_eq!(out, "more\nRO\n", "{}", p.name());
    ok(p, &["rm", "-v", "judge-vsrc"]);
    ok(p, &["volume", "rm", "judge-shared"]);
}

/// `-v judge-data:/data`: written by one container, removed; read by the
/// next, and again after the daemon restarted.
fn volume_survives_containers_and_restart(p: &mut dyn Peer) {
    ok(
        p,
        &[
            "run",
            "--name",
            "judge-writer",
            "-v",
            "judge-data:/data",
            IMAGE,
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    );
    ok(p, &["rm", "judge-writer"]);
    let read = [
        "run",
        "--rm",
        "-v",
        "judge-data:/data",
        IMAGE,
        "cat",
        "/data/f",
    ];
    assert_eq!(ok(p, &read), "kept\n", "{}", p.name());
    p.restart();
    let vols = ok(p, &["volume", "ls", "-q"]);
    assert!(
        vols.lines().any(|v| v == "judge-data"),
        "{}: {vols}",
        p.name()
    );
    assert_eq!(ok(p, &read), "kept\n", "{} after restart", p.name());
    ok(p, &["volume", "rm", "judge-data"]);
}

type Scenario = fn(&mut dyn Peer);

/// In this order: the restart comes last.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("user network by name and alias", user_network_by_name),
    ("published port fetched with curl", published_port),
    (
        "published port reached from containers through the gateway",
        published_port_from_containers,
    ),
    ("--volumes-from", volumes_from),
    (
        "named volume across containers and a daemon restart",
        volume_survives_containers_and_restart,
    ),
];

/// Every scenario on `p`; the failures, by scenario.
fn run_all(p: &mut dyn Peer) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, f) in SCENARIOS {
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut *p)));
        eprintln!(
            "[judge] {}: {name}: {} in {:.1} s",
            p.name(),
            if r.is_ok() { "ok" } else { "FAILED" },
            t.elapsed().as_secs_f64()
        );
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{} — {name}: {msg}", p.name()));
        }
    }
    failures
}

// --- berthd ----------------------------------------------------------------

struct Berth(Daemon);

impl Peer for Berth {
    fn name(&self) -> &'static str {
        "berthd"
    }
    fn cli(&self, args: &[&str]) -> Command {
        self.0.docker_cmd(args)
    }
    fn log(&self) -> String {
        self.0.log()
    }
    fn restart(&mut self) {
        let st = self.0.terminate();
        assert!(st.success(), "berthd exited with {st} on SIGTERM");
        self.0.spawn();
    }
}

// --- dockerd ---------------------------------------------------------------

/// Files dockerd 20.10 (and its containerd) write outside their roots,
/// whatever they are told; removed at the end when they were not there
/// before (directories only when empty: another daemon may use them).
const HOST_FILES: &[&str] = &["/etc/docker/key.json"];
const HOST_DIRS: &[&str] = &[
    "/etc/docker",
    "/run/docker/plugins",
    "/run/docker",
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd/runc",
    "/run/containerd",
];

/// Debian's dockerd on the test's own roots, socket, bridge and cgroup
/// parent.
struct Dockerd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The default bridge, made (and removed) by this guard.
    bridge: String,
    bip: String,
    pool: String,
    cgroup_parent: String,
    /// Bridges of this dockerd's user networks, learned while it runs.
    user_bridges: Vec<String>,
    host_before: Vec<(&'static str, bool)>,
}

/// The first bytes of `/dev/urandom`.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

/// An IPv4 prefix `10.a.b.` that no host address or route uses yet.
fn prefix_in_use(prefix: &str) -> bool {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .unwrap();
    let addrs = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(prefix)
        || String::from_utf8_lossy(&addrs.stdout).contains(prefix)
}

fn run_quiet(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Dockerd {
    fn start(bin: PathBuf) -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-judge-dockerd-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("daemon.json"), "{}\n").unwrap();
        std::fs::create_dir_all(dir.path().join("docker-config")).unwrap();
        let host_before = HOST_FILES
            .iter()
            .chain(HOST_DIRS)
            .map(|p| (*p, Path::new(p).exists()))
            .collect();
        let r = random_bytes::<4>();
        // 10.198.x.0/24 for the default bridge, a /20 of 10.197.0.0/16 for
        // user networks, both unused on this host.
        let mut x = r[0];
        while prefix_in_use(&format!("10.198.{x}.")) {
            x = x.wrapping_add(1);
        }
        let mut k = r[1] % 16;
        while (0..16).any(|i| prefix_in_use(&format!("10.197.{}.", k * 16 + i))) {
            k = (k + 1) % 16;
        }
        let mut d = Dockerd {
            bin,
            dir,
            child: None,
            bridge: format!("bj{:02x}{:02x}{:02x}", r[1], r[2], r[3]),
            bip: format!("10.198.{x}.1/24"),
            pool: format!("base=10.197.{}.0/20,size=24", k * 16),
            cgroup_parent: format!("/berth/judge-{:02x}{:02x}{:02x}", r[1], r[2], r[3]),
            user_bridges: Vec::new(),
            host_before,
        };
        assert!(
            run_quiet("ip", &["link", "add", &d.bridge, "type", "bridge"]),
            "ip link add {} type bridge failed",
            d.bridge
        );
        assert!(run_quiet("ip", &["addr", "add", &d.bip, "dev", &d.bridge]));
        assert!(run_quiet("ip", &["link", "set", &d.bridge, "up"]));
        d.spawn();
        d
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn sock(&self) -> PathBuf {
        self.path("docker.sock")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "dockerd is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("dockerd.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("--config-file")
            .arg(self.path("daemon.json"))
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock().display()))
            .args([
                "--bridge",
                &self.bridge,
                "--default-address-pool",
                &self.pool,
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--userland-proxy=true",
                "--cgroup-parent",
                &self.cgroup_parent,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if self.sock().exists() && docker(self, &["version"]).status.success() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("dockerd exited early ({st}): {}", tail(&self.log(), 30));
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up: {}",
                tail(&self.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Processes whose parent is `ppid`.
    fn children_of(ppid: i32) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid …: comm may hold spaces, so after ')'.
            let ppid_field = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid_field == Some(ppid) {
                out.push(pid);
            }
        }
        out
    }

    /// The command line of `pid` names this test's temp dir.
    fn ours(&self, pid: i32) -> bool {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmd).contains(&*self.dir.path().to_string_lossy())
    }

    /// Remembers the bridges of dockerd's user networks (`br-<id>` unless
    /// named) while it answers.
    fn learn_bridges(&mut self) {
        let out = docker(
            self,
            &[
                "network",
                "ls",
                "--no-trunc",
                "--filter",
                "driver=bridge",
                "--format",
                "{{.ID}}",
            ],
        );
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let named = docker(
                self,
                &[
                    "network",
                    "inspect",
                    "-f",
                    "{{index .Options \"com.docker.network.bridge.name\"}}",
                    id,
                ],
            );
            let named = String::from_utf8_lossy(&named.stdout).trim().to_owned();
            let b = if named.is_empty() || named == "<no value>" {
                format!("br-{}", &id[..12.min(id.len())])
            } else {
                named
            };
            if b != self.bridge && !self.user_bridges.contains(&b) {
                self.user_bridges.push(b);
            }
        }
    }

    /// SIGTERM to dockerd, up to 20 s, then SIGKILL; its containerd (by
    /// pid) killed if it outlived it.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.pid()?;
        let children = Self::children_of(pid);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let st = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in children {
            while self.ours(c) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.ours(c) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        Some(st)
    }
}

impl Peer for Dockerd {
    fn name(&self) -> &'static str {
        "dockerd"
    }
    fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock().display()))
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        c
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
    }
    fn restart(&mut self) {
        self.learn_bridges();
        let st = self.stop();
        assert!(
            st.is_some_and(|s| s.success()),
            "dockerd exited with {st:?} on SIGTERM"
        );
        self.spawn();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.learn_bridges();
            let ids = docker(self, &["ps", "-aq"]);
            let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut a = vec!["rm", "-f"];
                a.extend(ids.iter().map(String::as_str));
                let _ = docker(self, &a);
            }
        }
        self.stop();
        // Shims (and anything else) whose command line names the temp dir,
        // then whatever is left in this daemon's cgroups.
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter(|p| *p != std::process::id() as i32 && self.ours(*p))
            .collect();
        let rel = self.cgroup_parent.trim_start_matches('/').to_owned();
        let mut cgroups = Vec::new();
        for ctl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = ctl.path().join(&rel);
            if !parent.is_dir() {
                continue;
            }
            for c in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if c.path().is_dir() {
                    let procs =
                        std::fs::read_to_string(c.path().join("cgroup.procs")).unwrap_or_default();
                    pids.extend(
                        procs
                            .split_whitespace()
                            .filter_map(|p| p.parse::<i32>().ok()),
                    );
                    cgroups.push(c.path());
                }
            }
            cgroups.push(parent);
        }
        pids.sort_unstable();
        pids.dedup();
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
        common::unmount_under(self.dir.path());
        for c in cgroups {
            for _ in 0..20 {
                if std::fs::remove_dir(&c).is_ok() || !c.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for b in std::iter::once(&self.bridge).chain(&self.user_bridges) {
            run_quiet("ip", &["link", "del", b]);
        }
        for (p, existed) in &self.host_before {
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

/// dockerd, or `None` (skipped; a failure under CI, where
/// `scripts/install-deps.sh test` installs docker.io and curl).
fn dockerd_bin() -> Option<PathBuf> {
    let bin = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let curl = run_quiet("curl", &["--version"]);
    if bin.is_none() || !curl {
        let msg = "judge: dockerd or curl not installed (scripts/install-deps.sh test)";
        assert!(!ci(), "{msg}");
        eprintln!("skipped: {msg}");
        return None;
    }
    bin
}

#[test]
fn the_same_scenarios_pass_on_dockerd_and_berthd() {
    if !root() {
        return;
    }
    let Some(bin) = dockerd_bin() else {
        return;
    };
    let t = Instant::now();
    let mut berth = Berth(Daemon::start());
    eprintln!("[judge] berthd up in {:.1} s", t.elapsed().as_secs_f64());
    let mut dockerd = Dockerd::start(bin);
    eprintln!("[judge] dockerd up in {:.1} s", t.elapsed().as_secs_f64());
    // The same image in both.
    let arch = berth.0.dir.path().join("busybox.tar");
    busybox_archive(&berth.0.dir.path().join("scratch"), IMAGE, "judge", &arch);
    let arch = arch.to_str().unwrap();
    ok(&berth, &["load", "-q", "-i", arch]);
    ok(&dockerd, &["load", "-q", "-i", arch]);
    eprintln!(
        "[judge] daemons up, image loaded in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let (on_dockerd, on_berthd) = std::thread::scope(|s| {
        let d = s.spawn(|| run_all(&mut dockerd));
        let b = s.spawn(|| run_all(&mut berth));
        (d.join().unwrap(), b.join().unwrap())
    });
    eprintln!(
        "[judge] all scenarios in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut failures = on_dockerd;
    if !failures.is_empty() {
        failures.insert(
            0,
            "(a scenario that fails on dockerd is a bug of this test)".into(),
        );
    }
    failures.extend(on_berthd);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
