//! Fixtures for the OCI runtime conformance suite.
//!
//! Every scenario runs against each runtime returned by [`runtimes`]: runc (the reference) and
//! berth-runtime. A container is represented by [`Ct`], which owns a temp dir holding the
//! runtime's `--root` state dir, the bundle (busybox rootfs + `config.json`) and the files used as
//! the container's stdio. Dropping a `Ct` force-deletes the container and then checks that the
//! runtime left nothing behind (state entry, processes, cgroup dirs, mounts).

#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where Debian installs runc.
pub const RUNC: &str = "/usr/sbin/runc";
/// The host's static busybox; the rootfs is built from it.
pub const BUSYBOX: &str = "/bin/busybox";
/// Upper bound for any single runtime invocation.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for waiting on asynchronous state changes.
pub const WAIT: Duration = Duration::from_secs(20);

/// One OCI runtime binary under test.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Short name used in ids and failure messages (`runc`, `berth`, or the file name).
    pub name: String,
    pub bin: PathBuf,
}

fn berth_bin() -> Option<PathBuf> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_berth-runtime") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("BERTH_RUNTIME_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn runc_rt() -> Runtime {
    Runtime {
        name: "runc".into(),
        bin: RUNC.into(),
    }
}

/// The runtimes every test runs against.
///
/// Default: runc (if installed) and berth-runtime (from `CARGO_BIN_EXE_berth-runtime` at compile
/// time or `BERTH_RUNTIME_BIN` at run time). `BERTH_CONFORMANCE_RUNTIMES=runc,berth,/path/to/x`
/// overrides the list.
pub fn runtimes() -> Vec<Runtime> {
    let list: Vec<Runtime> = match std::env::var("BERTH_CONFORMANCE_RUNTIMES") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "runc" => runc_rt(),
                "berth" => Runtime {
                    name: "berth".into(),
                    bin: berth_bin().expect(
                        "BERTH_CONFORMANCE_RUNTIMES lists `berth` but no berth-runtime binary is known \
                         (set BERTH_RUNTIME_BIN)",
                    ),
                },
                path => {
                    let p = PathBuf::from(path);
                    let name: String = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "custom".into())
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .collect();
                    Runtime { name, bin: p }
                }
            })
            .collect(),
        _ => {
            let mut v = Vec::new();
            if Path::new(RUNC).exists() {
                v.push(runc_rt());
            }
            if let Some(b) = berth_bin() {
                v.push(Runtime {
                    name: "berth".into(),
                    bin: b,
                });
            }
            v
        }
    };
    assert!(
        !list.is_empty(),
        "no OCI runtime to test (runc missing and no berth-runtime)"
    );
    for rt in &list {
        assert!(
            rt.bin.exists(),
            "runtime {} binary {} does not exist",
            rt.name,
            rt.bin.display()
        );
    }
    list
}

/// Returns true when root-only tests should run. Skips (false) unless `BERTH_TEST_ROOT=1`;
/// panics if that is set but we are not root.
pub fn require_root() -> bool {
    if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
        eprintln!("skipped: set BERTH_TEST_ROOT=1 (as root) to run the OCI conformance suite");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "BERTH_TEST_ROOT=1 but the tests are not running as root"
    );
    true
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "<non-string panic>".into()
    }
}

/// Runs `f` once per runtime; collects failures and panics naming every runtime that failed.
pub fn each_runtime(test: &str, f: impl Fn(&Runtime)) {
    let mut failures = Vec::new();
    for rt in runtimes() {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(&rt))) {
            failures.push(format!(
                "  runtime `{}` ({}): {}",
                rt.name,
                rt.bin.display(),
                panic_text(&*e)
            ));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{test} failed for {} runtime(s):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A container id unique across parallel tests and test processes.
pub fn unique_id(rt: &Runtime) -> String {
    format!(
        "conf-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        rt.name
    )
}

/// Result of one command.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Out {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "`{}` failed (exit {}):\nstdout: {}\nstderr: {}",
            self.what, self.code, self.stdout, self.stderr
        );
        self
    }
    pub fn failed(&self) -> &Self {
        assert_ne!(
            self.code, 0,
            "`{}` unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`{}` did not print JSON ({e}): {:?}",
                self.what, self.stdout
            )
        })
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    s.push_str(&String::from_utf8_lossy(&buf));
    s
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Waits for `child` with a deadline; kills it on timeout and panics.
pub fn wait_child(child: &mut Child, what: &str, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured in anonymous files (never
/// pipes: a container that inherits them would keep a pipe open).
pub fn run_cmd(cmd: &mut Command) -> Out {
    let mut so = tempfile::tempfile().unwrap();
    let mut se = tempfile::tempfile().unwrap();
    let what = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(so.try_clone().unwrap())
        .stderr(se.try_clone().unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
    let code = wait_child(&mut child, &what, CMD_TIMEOUT);
    Out {
        code,
        stdout: read_all(&mut so),
        stderr: read_all(&mut se),
        what,
    }
}

/// `config.json` as written by `runc spec` (or the first runtime's `spec` if runc is absent).
pub fn base_spec() -> Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bin = if Path::new(RUNC).exists() {
            PathBuf::from(RUNC)
        } else {
            runtimes()[0].bin.clone()
        };
        run_cmd(
            Command::new(&bin)
                .arg("spec")
                .arg("--bundle")
                .arg(dir.path()),
        )
        .ok();
        let text = fs::read_to_string(dir.path().join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
    .clone()
}

/// Builds a busybox rootfs at `rootfs`.
pub fn make_rootfs(rootfs: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "mnt"] {
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
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// Every cgroup dir `/sys/fs/cgroup/<hierarchy>/<rel>` that exists.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let rel = rel.trim_start_matches('/');
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(rel);
            if p.is_dir() {
                v.push(p);
            }
        }
    }
    // A plain cgroup2 mount at /sys/fs/cgroup itself.
    let p = Path::new("/sys/fs/cgroup").join(rel);
    if p.is_dir() && !v.contains(&p) {
        v.push(p);
    }
    v
}

/// Path of the cgroup `rel` in the v1 hierarchy for `controller`.
pub fn v1_cgroup(controller: &str, rel: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(rel.trim_start_matches('/'))
}

pub fn read_trim(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the parenthesised comm; zombies count as dead.
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn kill_pid(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Polls `f` until it returns true or `timeout` elapses.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts-and-cleans: returns a description of every cgroup dir for `rel` still present,
/// after killing anything inside and removing it.
pub fn reap_cgroups(rel: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    for dir in cgroup_dirs(rel) {
        leaks.push(dir.display().to_string());
        // Deepest first.
        let mut dirs = Vec::new();
        collect_dirs(&dir, &mut dirs);
        dirs.reverse();
        for d in dirs {
            let _ = fs::write(d.join("freezer.state"), "THAWED");
            let _ = fs::write(d.join("cgroup.freeze"), "0");
            if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
                for p in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                    kill_pid(p, libc::SIGKILL);
                }
            }
            wait_until(Duration::from_secs(5), || {
                fs::remove_dir(&d).is_ok() || !d.exists()
            });
        }
    }
    leaks
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Lazily unmount `mounts` (from [`mounts_under`]), deepest first.
pub fn detach_mounts(mounts: &[String]) {
    for mp in mounts.iter().rev() {
        let c = std::ffi::CString::new(mp.as_str()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// Mount points (host mount namespace) at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect()
}

/// A container under test, plus everything it needs; cleans up on drop.
#[derive(Debug)]
pub struct Ct {
    pub rt: Runtime,
    pub id: String,
    /// `linux.cgroupsPath` (absolute, under `/berth`).
    pub cgroup: String,
    pub spec: Value,
    pub tmp: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Files the container's stdout/stderr go to (for `create` and `run`).
    pub out_path: PathBuf,
    pub err_path: PathBuf,
    /// Container pids seen in `state`, checked to be gone after delete.
    pub seen_pids: Vec<i32>,
    /// Extra cgroup paths (relative) this test created that must be removed at the end.
    pub extra_cgroups: Vec<String>,
    /// Other ids created in the same root (deleted on drop too).
    pub extra_ids: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Ct {
    /// A fresh bundle: runc's default spec with `terminal: false`, `args: ["true"]`,
    /// a unique id and `cgroupsPath = /berth/<id>`.
    pub fn new(rt: &Runtime) -> Ct {
        let td = tempfile::Builder::new()
            .prefix("berth-conf-")
            .tempdir()
            .unwrap();
        let tmp = td.path().to_path_buf();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.join("state");
        let bundle = tmp.join("bundle");
        let rootfs = bundle.join("rootfs");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&rootfs).unwrap();
        fs::set_permissions(&bundle, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755)).unwrap();
        make_rootfs(&rootfs);
        let id = unique_id(rt);
        let cgroup = format!("/berth/{id}");
        let mut spec = base_spec();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["true"]);
        spec["linux"]["cgroupsPath"] = json!(cgroup);
        let ct = Ct {
            rt: rt.clone(),
            id,
            cgroup,
            spec,
            out_path: tmp.join("ct.stdout"),
            err_path: tmp.join("ct.stderr"),
            tmp,
            root,
            bundle,
            rootfs,
            seen_pids: Vec::new(),
            extra_cgroups: Vec::new(),
            extra_ids: Vec::new(),
            _tmp: Some(td),
        };
        ct.write_spec();
        ct
    }

    pub fn tag(&self) -> String {
        format!("[{} {}]", self.rt.name, self.id)
    }

    pub fn write_spec(&self) {
        fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.spec["process"]["args"] = json!(args);
        self
    }

    /// `sh -c script` as the container process.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// `<runtime> --root <state dir>`.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.rt.bin);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Runs `<runtime> --root R <args...>`, capturing its output.
    pub fn rt(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        run_cmd(&mut c)
    }

    fn with_ct_stdio(&self, mut c: Command) -> Out {
        let so = File::create(&self.out_path).unwrap();
        let se = File::create(&self.err_path).unwrap();
        let what = describe(&c);
        c.stdin(Stdio::null()).stdout(so).stderr(se);
        let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
        let code = wait_child(&mut child, &what, CMD_TIMEOUT);
        Out {
            code,
            stdout: fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err_path).unwrap_or_default(),
            what,
        }
    }

    /// `create --bundle B <id>` (spec written first); the container's stdio are files
    /// (see [`Ct::stdout`]).
    pub fn create(&self) -> Out {
        self.create_with(&[])
    }

    pub fn create_with(&self, extra: &[&str]) -> Out {
        self.write_spec();
        let mut c = self.cmd();
        c.arg("create")
            .arg("--bundle")
            .arg(&self.bundle)
            .args(extra)
            .arg(&self.id);
        self.with_ct_stdio(c)
    }

    /// `run --bundle B <id>`: waits for the container; `code` is the container's exit code.
    pub fn run(&self) -> Out {
        self.write_spec();
        let mut c = self.cmd();
        c.arg("run").arg("--bundle").arg(&self.bundle).arg(&self.id);
        self.with_ct_stdio(c)
    }

    /// `run` that must exit 0; returns the container's stdout.
    pub fn run_ok(&self) -> String {
        let o = self.run();
        assert_eq!(
            o.code,
            0,
            "{} run failed (exit {}):\nstdout: {}\nstderr: {}",
            self.tag(),
            o.code,
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out_path).unwrap_or_default()
    }

    pub fn start(&self) -> Out {
        self.rt(&["start", &self.id])
    }

    pub fn kill(&self, sig: &str) -> Out {
        self.rt(&["kill", &self.id, sig])
    }

    pub fn delete(&self) -> Out {
        self.rt(&["delete", &self.id])
    }

    /// `state <id>` parsed; panics if it fails.
    pub fn state(&mut self) -> Value {
        let o = self.rt(&["state", &self.id]);
        o.ok();
        let v = o.json();
        if let Some(p) = v["pid"].as_i64().filter(|p| *p > 0) {
            let p = p as i32;
            if !self.seen_pids.contains(&p) {
                self.seen_pids.push(p);
            }
        }
        v
    }

    pub fn status(&mut self) -> String {
        self.state()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn pid(&mut self) -> i32 {
        let p = self.state()["pid"].as_i64().unwrap_or(0) as i32;
        assert!(p > 0, "{} state has no pid", self.tag());
        p
    }

    /// Polls `state` until the status is `want`.
    pub fn wait_status(&mut self, want: &str) {
        let mut last = String::new();
        let ok = wait_until(WAIT, || {
            last = self.status();
            last == want
        });
        assert!(
            ok,
            "{} status stayed {last:?}, expected {want:?}",
            self.tag()
        );
    }

    /// Polls the container's stdout file until it contains `needle`.
    pub fn wait_stdout(&self, needle: &str) -> String {
        let mut s = String::new();
        let ok = wait_until(WAIT, || {
            s = self.stdout();
            s.contains(needle)
        });
        assert!(
            ok,
            "{} stdout never contained {needle:?}; got {s:?}",
            self.tag()
        );
        s
    }

    /// create + start of a long-running container that prints `ready` once up.
    pub fn start_running(&mut self, script: &str) {
        let full = format!("echo ready; {script}");
        self.sh(&full);
        self.create().ok();
        self.start().ok();
        self.wait_stdout("ready");
        let st = self.status();
        assert_eq!(st, "running", "{} not running after start", self.tag());
    }

    /// The container's cgroup dir in v1 hierarchy `controller`.
    pub fn cg(&self, controller: &str) -> PathBuf {
        v1_cgroup(controller, &self.cgroup)
    }

    /// Host namespace inode string for `/proc/self/ns/<ns>`.
    pub fn host_ns(ns: &str) -> String {
        fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Runs the final leak checks; returns problems found (and cleans them up).
    pub fn leak_check(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut ids = vec![self.id.clone()];
        ids.extend(self.extra_ids.iter().cloned());
        for id in &ids {
            let _ = run_cmd(self.cmd().args(["delete", "--force", id]));
            if self.root.join(id).exists() {
                problems.push(format!("state entry {} left after delete --force", id));
            }
        }
        for &pid in &self.seen_pids {
            if !wait_until(Duration::from_secs(5), || !pid_alive(pid)) {
                problems.push(format!("container process {pid} still alive after delete"));
                kill_pid(pid, libc::SIGKILL);
            }
        }
        let mut cgs = vec![self.cgroup.clone()];
        cgs.extend(self.extra_cgroups.iter().cloned());
        for (i, cg) in cgs.iter().enumerate() {
            let leaks = reap_cgroups(cg);
            if i == 0 && !leaks.is_empty() {
                problems.push(format!("cgroup dirs left after delete: {leaks:?}"));
            }
        }
        let m = mounts_under(&self.tmp);
        if !m.is_empty() {
            problems.push(format!("mounts left on the host: {m:?}"));
            detach_mounts(&m);
        }
        problems
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        let problems = self.leak_check();
        if let Some(td) = self._tmp.take() {
            if mounts_under(&self.tmp).is_empty() {
                drop(td);
            } else {
                // Never recurse into something still mounted.
                let _ = td.keep();
            }
        }
        if !problems.is_empty() && !std::thread::panicking() {
            panic!(
                "{} left resources behind:\n  {}",
                self.tag(),
                problems.join("\n  ")
            );
        }
    }
}

/// A process holding fresh namespaces (util-linux `unshare --fork`), for path-joining tests.
#[derive(Debug)]
pub struct NsHolder {
    child: Child,
    /// Pid of the process inside the new namespaces.
    pub pid: i32,
}

impl NsHolder {
    /// `flags` are unshare(1) options such as `--net`, `--pid`.
    pub fn new(flags: &[&str]) -> NsHolder {
        let mut cmd = Command::new("unshare");
        cmd.args(flags)
            .args(["--fork", "--kill-child"])
            .args([BUSYBOX, "sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn unshare (util-linux)");
        let outer = child.id() as i32;
        let mut holder = NsHolder { child, pid: 0 };
        let mut inner = 0;
        let ok = wait_until(WAIT, || {
            let kids = fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .unwrap_or_default();
            if let Some(p) = kids
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
            {
                // The child has exec'd busybox (comm is the executable's name) once this holds.
                let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                if cmdline.starts_with(format!("{BUSYBOX}\0sleep\0").as_bytes()) {
                    inner = p;
                    return true;
                }
            }
            false
        });
        assert!(ok, "unshare {flags:?} did not start its child");
        holder.pid = inner;
        holder
    }

    pub fn ns_path(&self, ns: &str) -> String {
        format!("/proc/{}/ns/{}", self.pid, ns)
    }

    pub fn ns_link(&self, ns: &str) -> String {
        fs::read_link(self.ns_path(ns))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        kill_pid(self.pid, libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `/proc/<pid>/status`-style `Key:\tvalue` text.
pub fn status_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Linux capability numbers by OCI name.
pub fn cap_number(name: &str) -> u32 {
    berth_image::spec::caps::ALL_CAPABILITIES
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("unknown capability {name}")) as u32
}

pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0u64, |m, n| m | (1u64 << cap_number(n)))
}

/// Asserts a runtime error is reported as exactly one non-empty line on stderr.
pub fn assert_one_line_error(o: &Out, tag: &str) {
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{tag} `{}` should print exactly one error line on stderr, got {:?}",
        o.what,
        o.stderr
    );
}

/// Entries in a runtime state dir (ignoring hidden files).
pub fn state_entries(root: &Path) -> Vec<String> {
    fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}
