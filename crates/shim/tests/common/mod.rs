//! Fixtures for the shim's tests: a busybox bundle per container, the shim
//! spawned as berthd spawns it, blocking clients of its socket, and a
//! guard that removes what a test made even when it fails.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_shim::proto::{self, ExitStatus, Frame, LogConfig, Reply, Request, ShimConfig, Spawned};
use serde_json::{Value, json};

/// The host's static busybox (Debian `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);

/// Whether root-only tests run: as root, yes; otherwise they are skipped,
/// unless `BERTH_TEST_ROOT=1` says they must run (then not being root fails).
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert_ne!(
            std::env::var("BERTH_TEST_ROOT").as_deref(),
            Ok("1"),
            "BERTH_TEST_ROOT=1 but the tests are not running as root"
        );
        eprintln!("skipped: the shim tests need root");
    }
    root
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Builds a busybox rootfs at `rootfs`.
pub fn make_rootfs(rootfs: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let _ = symlink("busybox", rootfs.join("bin").join(applet));
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A runc-like default spec running `args`.
pub fn base_spec(id: &str, args: &[&str], terminal: bool) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "shimtest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": format!("/berth/{id}"),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Every cgroup dir `/sys/fs/cgroup/<hierarchy>/berth/<id>` that exists.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join("berth").join(id);
            if p.is_dir() {
                v.push(p);
            }
        }
    }
    let p = Path::new("/sys/fs/cgroup/berth").join(id);
    if p.is_dir() && !v.contains(&p) {
        v.push(p);
    }
    v
}

/// Whether a pid runs (zombies count as gone), with this start time.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return false;
    }
    start.is_none_or(|s| fields.get(19).and_then(|f| f.parse().ok()) == Some(s))
}

/// Polls `f` until it holds or [`WAIT`] passes.
pub fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// One container and its shim.
pub struct Ct {
    pub tmp: tempfile::TempDir,
    pub id: String,
    /// The shim's state dir.
    pub state: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub cfg: ShimConfig,
    /// The shim's pid and start time, once spawned.
    pub shim: Option<(i32, u64)>,
    pub init_pid: Option<i32>,
}

impl Ct {
    /// A bundle running `args`, and the shim's config (logging to
    /// `<tmp>/ctr.log`); `tweak` adjusts both before they are written.
    pub fn new(args: &[&str], tweak: impl FnOnce(&mut ShimConfig, &mut Value)) -> Ct {
        let tmp = tempfile::tempdir().unwrap();
        let id = format!(
            "shimt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let state = tmp.path().join("state");
        let root = tmp.path().join("root");
        let bundle = tmp.path().join("bundle");
        fs::create_dir_all(&state).unwrap();
        make_rootfs(&bundle.join("rootfs"));
        let mut spec = base_spec(&id, args, false);
        let mut cfg = ShimConfig {
            id: id.clone(),
            bundle: bundle.clone(),
            runtime_root: root.clone(),
            log: Some(LogConfig {
                path: tmp.path().join("ctr.log"),
                max_size: None,
                max_file: 1,
            }),
            tty: false,
            open_stdin: false,
            stdin_once: false,
            console_size: None,
            seccomp_cache: Some(tmp.path().join("seccomp")),
        };
        tweak(&mut cfg, &mut spec);
        if cfg.tty {
            spec["process"]["terminal"] = json!(true);
        }
        fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        fs::write(state.join(proto::CONFIG), serde_json::to_vec(&cfg).unwrap()).unwrap();
        Ct {
            tmp,
            id,
            state,
            root,
            bundle,
            cfg,
            shim: None,
            init_pid: None,
        }
    }

    /// Start the shim as berthd does (through a zygote of its own, which
    /// ends once the request is in); its report.
    pub fn spawn(&mut self) -> Spawned {
        self.spawn_gated(None)
    }

    /// [`Ct::spawn`] with a go pipe, as berthd starts shims: after the
    /// request `gate` runs, then the go byte is written if it returns
    /// true, else the pipe is closed without it (berthd gave up).
    pub fn spawn_gated(&mut self, gate: Option<&dyn Fn(&Ct) -> bool>) -> Spawned {
        use std::os::fd::AsFd;
        let zygote = berth_shim::launch::Zygote::start(
            Path::new(env!("CARGO_BIN_EXE_berth-shim")),
            self.state.parent().unwrap(),
        )
        .unwrap();
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (err_rd, err_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (go_rd, go_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let go = gate.map(|_| go_rd.as_fd());
        zygote
            .request(&self.state, wr.as_fd(), err_wr.as_fd(), go)
            .unwrap();
        drop((zygote, wr, err_wr, go_rd));
        if let Some(gate) = gate
            && gate(self)
        {
            nix::unistd::write(&go_wr, b"g").unwrap();
        }
        drop(go_wr);
        // One line: the init keeps a copy of the pipe until it starts.
        let mut report = fs::File::from(rd);
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while let Ok(1) = report.read(&mut b) {
            line.push(b[0]);
            if b[0] == b'\n' {
                break;
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let spawned = proto::parse_spawn_line(&line);
        match &spawned {
            Spawned::Ready { shim_pid, init_pid } => {
                assert!(line.ends_with('\n'), "a whole line: {line:?}");
                let (pid, start) = self.pid_file();
                assert_eq!(pid, *shim_pid);
                self.shim = Some((pid, start));
                self.init_pid = Some(*init_pid);
            }
            Spawned::Failed(_) => {
                let mut said = String::new();
                let _ = fs::File::from(err_rd).read_to_string(&mut said);
                eprint!("{said}");
            }
        }
        spawned
    }

    /// Spawn and expect success.
    pub fn ready(&mut self) {
        match self.spawn() {
            Spawned::Ready { .. } => {}
            Spawned::Failed(e) => panic!("the shim failed: {e}\n{}", self.shim_log()),
        }
    }

    pub fn pid_file(&self) -> (i32, u64) {
        let text = fs::read_to_string(self.state.join(proto::PID_FILE)).unwrap();
        let mut it = text.split_whitespace();
        let pid = it.next().unwrap().parse().unwrap();
        let start = it.next().unwrap().parse().unwrap();
        (pid, start)
    }

    pub fn shim_log(&self) -> String {
        fs::read_to_string(self.state.join(proto::SHIM_LOG)).unwrap_or_default()
    }

    pub fn shim_alive(&self) -> bool {
        self.shim.is_some_and(|(p, s)| alive(p, Some(s)))
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.state.join(proto::SOCKET)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    /// One request, one reply.
    pub fn request(&self, req: &Request) -> Reply {
        let mut s = self.connect();
        s.write_all(&proto::to_line(req)).unwrap();
        let mut line = String::new();
        BufReader::new(&mut s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"))
    }

    /// Starts the container as berthd does: through the runtime library.
    pub fn start(&self) {
        berth_runtime::container::start(&self.root, &self.id).unwrap();
    }

    /// Signals the container as berthd does: through the runtime library.
    pub fn kill(&self, signal: i32, all: bool) {
        berth_runtime::container::kill(&self.root, &self.id, signal, all).unwrap();
    }

    pub fn wait(&self) -> ExitStatus {
        match self.request(&Request::Wait) {
            Reply::Exited(s) => s,
            other => panic!("wait: {other:?}"),
        }
    }

    /// Start, with a waiter connected first (a container that exits at
    /// once may take the socket with it before a later `wait` connects).
    pub fn run_to_exit(&self) -> ExitStatus {
        let mut w = self.connect();
        w.write_all(&proto::to_line(&Request::Wait)).unwrap();
        self.start();
        let mut line = String::new();
        BufReader::new(&mut w).read_line(&mut line).unwrap();
        match serde_json::from_str(&line).unwrap() {
            Reply::Exited(s) => s,
            other => panic!("wait: {other:?}"),
        }
    }

    /// A stream after `Reply::Ok` (attach or exec).
    pub fn stream(&self, req: &Request) -> Client {
        let mut s = self.connect();
        s.write_all(&proto::to_line(req)).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert_eq!(reply, Reply::Ok, "{req:?}");
        Client {
            w: s,
            r,
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    pub fn attach(&self, stdin: bool) -> Client {
        self.stream(&Request::Attach {
            stdin,
            stdout: true,
            stderr: true,
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.cfg.log.as_ref().unwrap().path.clone()
    }

    /// The log's entries, (stream, text).
    pub fn log_lines(&self, path: &Path) -> Vec<(String, String)> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let e: proto::LogLine = serde_json::from_str(l).unwrap();
                (e.stream, e.log)
            })
            .collect()
    }

    /// After the exit: the shim went away, and the runtime's delete (as
    /// berthd's) finds the container stopped and leaves nothing behind.
    pub fn assert_clean_exit(&self) -> ExitStatus {
        assert!(
            wait_until(|| !self.shim_alive()),
            "the shim did not exit\n{}",
            self.shim_log()
        );
        let exit: ExitStatus =
            serde_json::from_slice(&fs::read(self.state.join(proto::EXIT_FILE)).unwrap()).unwrap();
        berth_runtime::container::delete(&self.root, &self.id, false)
            .expect("delete after the exit");
        assert!(!self.root.join(&self.id).exists(), "runtime state left");
        assert!(cgroup_dirs(&self.id).is_empty(), "cgroups left");
        assert!(!self.state.join(proto::SOCKET).exists(), "socket left");
        exit
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        if self.shim_alive() {
            let _ = berth_runtime::container::kill(&self.root, &self.id, 9, true);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.shim_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some((pid, start)) = self.shim
                && alive(pid, Some(start))
            {
                // SAFETY: kill(2) on the shim this test spawned (start time checked).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Some(pid) = self.init_pid {
            let ours = fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(&format!("/berth/{}", self.id)));
            if ours {
                // SAFETY: kill(2) on this test's container init (its cgroup checked).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if self.root.join(&self.id).exists() {
            let _ = berth_runtime::container::delete(&self.root, &self.id, true);
        }
        for d in cgroup_dirs(&self.id) {
            let _ = fs::remove_dir(d);
        }
    }
}

/// A stream client: reads frames, writes stdin.
pub struct Client {
    pub w: UnixStream,
    pub r: BufReader<UnixStream>,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
}

impl Client {
    /// The next frame; `None` at EOF.
    pub fn frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 8];
        if self.r.read_exact(&mut head).is_err() {
            return None;
        }
        let n = proto::frame_len(&head).unwrap();
        let mut payload = vec![0u8; n];
        self.r.read_exact(&mut payload).unwrap();
        Some(Frame::decode(head, payload).unwrap())
    }

    /// Frames until stdout holds `needle` (panics at the exit or EOF).
    pub fn read_until(&mut self, needle: &str) {
        while !String::from_utf8_lossy(&self.out).contains(needle) {
            match self.frame() {
                Some(Frame::Stdout(b)) => self.out.extend_from_slice(&b),
                Some(Frame::Stderr(b)) => self.err.extend_from_slice(&b),
                other => panic!(
                    "{other:?} before {needle:?} (stdout so far {:?})",
                    String::from_utf8_lossy(&self.out)
                ),
            }
        }
    }

    /// Frames until the exit frame; then the stream ends.
    pub fn until_exit(&mut self) -> ExitStatus {
        loop {
            match self.frame() {
                Some(Frame::Stdout(b)) => self.out.extend_from_slice(&b),
                Some(Frame::Stderr(b)) => self.err.extend_from_slice(&b),
                Some(Frame::Exit(s)) => {
                    let mut rest = Vec::new();
                    let _ = self.r.read_to_end(&mut rest);
                    assert!(rest.is_empty(), "bytes after the exit frame");
                    return s;
                }
                None => panic!("stream ended without an exit frame"),
            }
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// stdin's EOF.
    pub fn close_stdin(&self) {
        self.w.shutdown(std::net::Shutdown::Write).unwrap();
    }
}

/// The VmRSS of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
