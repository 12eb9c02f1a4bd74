//! A berthd of the test's own (socket, data root, exec root in a temp dir)
//! and the docker CLI pointed at it. The guard kills only that daemon's
//! pid and removes the temp dir, even when the test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use berth_image::archive::{self, ImportOptions};
use berth_image::store::{ImageStore, Platform};

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub data_root: PathBuf,
    pub pidfile: PathBuf,
    /// Arguments after the usual ones.
    pub extra: Vec<String>,
    /// `--log-level debug`.
    pub debug: bool,
    /// This daemon's default bridge device and nftables table (`bt<hex>`).
    pub net_tag: String,
    /// Its default bridge subnet's third octet: `10.150.<n>.0/24`; user
    /// networks get /24s of `10.<151+n%100>.0.0/16`.
    pub net_index: u32,
}

/// A distinct bridge, table and address space per daemon of this process
/// (test binaries run one at a time).
fn net_identity() -> (String, u32) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100;
    let mut b = [0u8; 3];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    (format!("bt{:02x}{:02x}{:02x}", b[0], b[1], b[2]), n)
}

impl Daemon {
    /// Starts berthd and waits (10 s at most) until it answers `/_ping`.
    pub fn start() -> Daemon {
        Self::start_with("{}")
    }

    /// Starts berthd with `config` as its daemon.json.
    pub fn start_with(config_json: &str) -> Daemon {
        Self::start_args(config_json, &[], true)
    }

    /// Starts berthd (again) on this daemon's roots and waits (60 s at
    /// most) until it answers `/_ping`.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "berthd is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--config-file")
            .arg(self.config_path())
            .args([
                "--bridge",
                &self.net_tag,
                "--firewall-table",
                &self.net_tag,
                "--bip",
                &format!("10.150.{}.1/24", self.net_index),
                "--default-address-pool",
                &format!("base=10.{}.0.0/16,size=24", 151 + self.net_index),
                // The embedded DNS never forwards outside the machine.
                "--dns-forward=false",
            ])
            .args(&self.extra)
            .args(if self.debug {
                &["--log-level", "debug"][..]
            } else {
                &[]
            })
            .env_remove("BERTH_ROOT")
            // No test may pull from outside the machine.
            .env("BERTH_LOOPBACK_REGISTRIES_ONLY", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // berthd answers once it has reattached to every shim and recovered
        // what a crash left (fifty containers on a loaded 2-CPU CI machine
        // took more than 10 s): allow 60.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _, _)) = self.try_http("GET", "/_ping", &[]) {
                break;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("berthd exited early ({st}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exec root.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// SIGKILLs berthd (containers and shims stay).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// `program` (a Docker client: docker, docker-compose) against this
    /// daemon, with its own empty config dir and no stdin.
    pub fn client_cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        c
    }

    /// The docker CLI against this daemon (see [`Daemon::client_cmd`]).
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.client_cmd("docker");
        c.args(args);
        c
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args).output().unwrap()
    }

    /// Runs docker, asserts success, returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{}\nberthd log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs docker, asserts failure, returns stderr.
    pub fn docker_err(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// One HTTP/1.1 request over the socket: (status, headers, body).
    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        self.try_http_within(method, path, body, Duration::from_secs(30))
    }

    /// [`Daemon::try_http`] with a read timeout of `timeout`.
    pub fn try_http_within(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        let mut s = UnixStream::connect(&self.sock)?;
        s.set_read_timeout(Some(timeout))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no header end"))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))?;
        let mut body = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Ok((status, head, body))
    }

    pub fn http(&self, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        self.try_http(method, path, &[]).unwrap()
    }

    /// Sends SIGTERM and waits (20 s at most) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.terminate_wait()
    }

    /// Waits (20 s at most) for the daemon to exit.
    pub fn terminate_wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berthd did not stop on SIGTERM: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether root-only tests run: as root with BERTH_TEST_ROOT=1; otherwise
/// says why it skips.
pub fn root() -> bool {
    if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1")
        || !nix::unistd::Uid::effective().is_root()
    {
        eprintln!("skipped: set BERTH_TEST_ROOT=1 (as root)");
        return false;
    }
    true
}

/// The bridge device of a network as `GET /networks` shows it: the name it
/// was given, else berth's `berth-<first 9 of the id>`.
pub fn user_bridge(n: &serde_json::Value) -> Option<String> {
    if n["Driver"] != "bridge" {
        return None;
    }
    match n["Options"]["com.docker.network.bridge.name"].as_str() {
        Some(b) => Some(b.to_owned()),
        None => n["Id"].as_str().map(|id| format!("berth-{}", &id[..9])),
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The bridges of this daemon's networks (asked while it runs),
        // removed after it is gone, with its nftables table.
        let mut bridges = vec![self.net_tag.clone()];
        if self.child.is_some()
            && let Ok((200, _, body)) = self.try_http("GET", "/networks", &[])
            && let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&body)
        {
            for n in list {
                if let Some(b) = user_bridge(&n)
                    && (b.starts_with("berth-") || b == self.net_tag)
                {
                    bridges.push(b);
                }
            }
        }
        // Containers first, through the daemon while it runs.
        if self.child.is_some()
            && let Ok((200, _, body)) = self.try_http("GET", "/containers/json?all=1", &[])
            && let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&body)
        {
            for c in list {
                if let Some(id) = c["Id"].as_str() {
                    let _ = self.try_http("DELETE", &format!("/containers/{id}?force=1"), &[]);
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            // Only the daemon this guard started.
            let _ = c.kill();
            let _ = c.wait();
        }
        cleanup_roots(self.dir.path(), &self.exec_root());
        bridges.sort();
        bridges.dedup();
        for b in bridges {
            let _ = Command::new("ip")
                .args(["link", "del", &b])
                .stderr(Stdio::null())
                .status();
        }
        for family in ["ip", "ip6"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, &self.net_tag])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Kills what a test's containers left (shims and inits this daemon's
/// exec root names), unmounts everything under `dir` and removes the
/// containers' cgroups.
pub fn cleanup_roots(dir: &Path, exec_root: &Path) {
    let mut ids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(exec_root.join("containers")) {
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(s) = std::fs::read_to_string(e.path().join("shim.pid"))
                && let Some(pid) = s
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
            {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains("berth-shim") {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if let Ok(s) =
                std::fs::read_to_string(exec_root.join("runtime").join(&id).join("state.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
                && let Some(pid) = v["pid"].as_i64()
                && pid > 1
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            ids.push(id);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    unmount_under(dir);
    for id in ids {
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in rd.flatten() {
                let p = c.path().join("berth").join(&id);
                if p.exists() {
                    for _ in 0..20 {
                        if std::fs::remove_dir(&p).is_ok() || !p.exists() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

/// Unmounts everything mounted under `dir`, deepest first (a few rounds:
/// unmounting may uncover mounts below).
pub fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    for _ in 0..3 {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        if mounts.is_empty() {
            break;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// berthd finds berth-shim beside itself, and the registry tests use
/// berth-registry; `cargo test -p berth-daemon` alone builds neither (or
/// leaves them stale), so they are built once per test binary.
pub fn ensure_shim() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "berth-shim", "-p", "berth-registry"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(
            st.success(),
            "could not build berth-shim and berth-registry"
        );
    });
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// A root filesystem tarball with the host's static busybox: `bin/busybox`,
/// `bin/sh` → busybox, `etc/passwd`, and a marker file.
pub fn busybox_rootfs(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    for d in ["bin/", "etc/", "tmp/"] {
        b.append_data(&mut dir.clone(), d, std::io::empty())
            .unwrap();
    }
    let bb = std::fs::read("/bin/busybox").expect("the host's static busybox (busybox-static)");
    let mut f = tar::Header::new_ustar();
    f.set_mode(0o755);
    f.set_size(bb.len() as u64);
    b.append_data(&mut f, "bin/busybox", bb.as_slice()).unwrap();
    // Every applet, as in Docker's busybox image.
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|a| !a.is_empty() && a != "busybox")
        .collect();
    if !applets.iter().any(|a| a == "sh") {
        applets.push("sh".into());
    }
    for a in applets {
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
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Labels": {"org.berth.test": marker},
            })),
            message: Some(format!("busybox for berthd tests ({marker})")),
            ..Default::default()
        },
    )
    .unwrap();
    let f = std::fs::File::create(out).unwrap();
    archive::save(&store, &[name], &Platform::host(), f).unwrap();
}

/// A berth-registry on 127.0.0.1 (free port); killed by its PID on drop.
pub struct Registry {
    pub child: Child,
    pub host: String,
}

impl Registry {
    pub fn start(root: &Path) -> Registry {
        Self::start_with(root, &[])
    }

    pub fn start_with(root: &Path, extra: &[&str]) -> Registry {
        use std::io::BufRead;
        ensure_shim();
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth-registry");
        let mut child = Command::new(bin)
            .args(["serve", "--addr", "127.0.0.1:0", "--root"])
            .arg(root)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        let host = base.split("://").nth(1).unwrap().to_owned();
        Registry { child, host }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts berthd with `config` as its daemon.json and `extra` arguments
    /// after the usual ones (socket, roots, config file); `--log-level
    /// debug` only if `debug_flag` (without it daemon.json may set the
    /// level). Waits (10 s at most) until it answers `/_ping` on the socket.
    pub fn start_args(config_json: &str, extra: &[String], debug_flag: bool) -> Daemon {
        ensure_shim();
        let dir = tempfile::Builder::new()
            .prefix("berthd-test-")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("berth.sock");
        let data_root = dir.path().join("data");
        let pidfile = dir.path().join("run").join("berthd.pid");
        std::fs::write(dir.path().join("daemon.json"), config_json).unwrap();
        std::fs::create_dir_all(dir.path().join("docker-config")).unwrap();
        let (net_tag, net_index) = net_identity();
        let mut d = Daemon {
            child: None,
            dir,
            sock,
            data_root,
            pidfile,
            extra: extra.to_vec(),
            debug: debug_flag,
            net_tag,
            net_index,
        };
        d.spawn();
        d
    }

    /// This daemon's daemon.json.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("daemon.json")
    }

    /// Sends `sig` to this daemon (only the pid this guard started).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits (10 s at most) until berthd's log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "berthd never logged {needle:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound once and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test PKI written as PEM files into `dir`: a CA, a server certificate
/// for `localhost` and 127.0.0.1 and a client certificate, both signed by
/// the CA.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("berth test CA {name}"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf = |cn: &str, usage: ExtendedKeyUsagePurpose, sans: Vec<SanType>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (scert, skey) = leaf(
        "berthd",
        ExtendedKeyUsagePurpose::ServerAuth,
        vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ],
    );
    let (ccert, ckey) = leaf(
        &format!("client {name}"),
        ExtendedKeyUsagePurpose::ClientAuth,
        Vec::new(),
    );
    let pki = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server-cert.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("cert.pem"),
        client_key: dir.join("key.pem"),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.server_cert, scert).unwrap();
    std::fs::write(&pki.server_key, skey).unwrap();
    std::fs::write(&pki.client_cert, ccert).unwrap();
    std::fs::write(&pki.client_key, ckey).unwrap();
    pki
}
