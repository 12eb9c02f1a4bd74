#![allow(clippy::unwrap_used)]
//! berth-runtime driven by the real clients that call a runc-compatible runtime: Debian's
//! dockerd (20.10, through its own containerd and the runc v2 shim), podman (through conmon) and
//! containerd's `ctr` (runc v2 shim with `--runc-binary`).
//!
//! Every client runs privately: its daemon, state, storage and sockets live in a temp dir, its
//! containers live under `/berth/<client>-test-<pid>` in each cgroup hierarchy, and nothing uses
//! a network (`--network none`, no bridge, no iptables). A guard ([`ClientEnv`]) stops the
//! daemons and removes processes, cgroups and mounts even when a check fails.
//!
//! The runtime is given to the clients as a tiny `sh` wrapper that appends its argv to
//! `invocations.log`, keeps a copy of each bundle's `config.json`, and then `exec`s
//! berth-runtime (same pid, fds and environment), so a failure report shows exactly how the
//! client called the runtime and what it asked for.
//!
//! dockerd and ctr give the runtime a `--root` inside the temp dir; podman cannot (see
//! [`podman_cli`]), so its containers' state lives in berth-runtime's default root and the test
//! checks that each entry it created there is gone at the end.
//!
//! Each client is one test; its checks are independent and all run, and the test fails listing
//! every failed check. A missing client binary skips the test, or fails it when `CI` is set
//! (`scripts/install-deps.sh test` installs `docker.io`, `podman` and `containerd`).
//! `BERTH_CLIENTS_KEEP=1` keeps each temp dir (logs, bundle configs) for inspection;
//! `BERTH_CLIENTS_RUNTIME=/usr/sbin/runc` runs the same checks against another runtime.

mod common;

use common::{
    BUSYBOX, Out, detach_mounts, make_rootfs, mounts_under, pid_alive, reap_cgroups, run_cmd,
};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const BERTH: &str = env!("CARGO_BIN_EXE_berth-runtime");

/// The runtime the clients get: berth-runtime, or `BERTH_CLIENTS_RUNTIME` (e.g.
/// `/usr/sbin/runc`, to tell a client or host problem from a berth one).
fn runtime_bin() -> PathBuf {
    std::env::var_os("BERTH_CLIENTS_RUNTIME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BERTH))
}

/// berth-runtime's state root when it is given no `--root` (podman, see [`podman_cli`]).
const DEFAULT_ROOT: &str = "/run/berth-runtime";
/// How long a daemon gets to come up.
const DAEMON_START: Duration = Duration::from_secs(40);
/// How long a daemon gets to stop after SIGTERM before it is killed.
const DAEMON_STOP: Duration = Duration::from_secs(20);

/// The clients share host paths they create on their own (`/run/containerd/s` for shim sockets,
/// …), so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Host directories a client may create outside its temp dir even when told to use private
/// paths (hard-coded in containerd 1.6, dockerd 20.10 and podman 4.3). Removed at the end when
/// they did not exist before and are empty.
const HOST_DIRS: &[&str] = &[
    DEFAULT_ROOT,
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd/runc",
    "/run/containerd",
    "/run/docker/plugins",
    "/run/docker",
    "/etc/docker",
    "/var/lib/containers/cache",
    "/var/lib/containers",
];

/// Host files a client writes regardless of its private paths: dockerd 20.10 always keeps its
/// trust key in /etc/docker (its `--deprecated-key-path` flag is not in Debian's build) and
/// podman's image import always uses the system blob-info cache. Removed at the end when they
/// did not exist before.
const HOST_FILES: &[&str] = &[
    "/etc/docker/key.json",
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
];

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "<non-string panic>".into()
    }
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `name` on `PATH` or in the usual sbin/bin dirs.
fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The client binaries `names`, or `None` (skip) when one is missing. Under `CI` a missing
/// binary fails the test: install-deps.sh installs them.
fn require_bins(test: &str, names: &[&str]) -> Option<Vec<PathBuf>> {
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find_bin(n)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Some(found.into_iter().map(Option::unwrap).collect());
    }
    let msg = format!(
        "{test}: client binaries not installed: {missing:?} (run `scripts/install-deps.sh test`)"
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Independent checks of one client: each runs even if an earlier one failed.
struct Checks {
    client: &'static str,
    failures: Vec<String>,
}

impl Checks {
    fn new(client: &'static str) -> Checks {
        Checks {
            client,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, name: &str, f: impl FnOnce()) {
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => eprintln!("[{}] ok   {name} ({:?})", self.client, t.elapsed()),
            Err(e) => {
                let msg = panic_text(&*e);
                eprintln!("[{}] FAIL {name}: {msg}", self.client);
                self.failures.push(format!("{name}: {msg}"));
            }
        }
    }

    /// Panics listing every failed check, with the client's diagnostics.
    fn finish(self, env: &ClientEnv) {
        if !self.failures.is_empty() {
            panic!(
                "{} with {}: {} check(s) failed:\n  - {}\n{}",
                self.client,
                runtime_bin().display(),
                self.failures.len(),
                self.failures.join("\n  - "),
                env.diagnostics()
            );
        }
    }
}

fn assert_code(o: &Out, code: i32) {
    assert_eq!(
        o.code, code,
        "`{}` exited {} (expected {code}):\nstdout: {}\nstderr: {}",
        o.what, o.code, o.stdout, o.stderr
    );
}

fn assert_stdout(o: &Out, want: &str) {
    o.ok();
    assert_eq!(
        o.stdout.trim(),
        want,
        "`{}` printed an unexpected stdout (stderr: {})",
        o.what,
        o.stderr
    );
}

fn kill_pid(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    common::wait_until(timeout, f)
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Processes (other than this one) whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || !pid_alive(pid) {
            continue;
        }
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            v.push((pid, cmd.trim().to_string()));
        }
    }
    v
}

fn netns_entries() -> BTreeSet<String> {
    fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Everything one client test owns: temp dir, daemon, cgroup parent, runtime wrapper.
/// Dropping it tears everything down and fails the test if something was left behind.
struct ClientEnv {
    client: &'static str,
    tmp: PathBuf,
    td: Option<tempfile::TempDir>,
    /// Absolute cgroup parent, `/berth/<client>-test-<pid>`.
    cgroup_parent: String,
    /// The runtime as given to the client (the logging wrapper around berth-runtime).
    runtime: PathBuf,
    invocations: PathBuf,
    configs: PathBuf,
    daemon: Option<Child>,
    daemon_log: PathBuf,
    /// Removes the client's containers (before the daemon is stopped).
    remove_containers: Option<Box<dyn FnOnce()>>,
    host_dirs_before: Vec<(&'static str, bool)>,
    host_files_before: Vec<(&'static str, bool)>,
    netns_before: BTreeSet<String>,
    _serial: MutexGuard<'static, ()>,
}

impl ClientEnv {
    fn new(client: &'static str) -> ClientEnv {
        let serial = serial();
        let td = tempfile::Builder::new()
            .prefix(&format!("berth-{client}-"))
            .tempdir()
            .unwrap();
        let tmp = td.path().to_path_buf();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        let invocations = tmp.join("invocations.log");
        let configs = tmp.join("configs");
        fs::create_dir_all(&configs).unwrap();
        for d in ["bin", "home/.docker", "home/.config", "home/xdg-run"] {
            fs::create_dir_all(tmp.join(d)).unwrap();
        }
        let runtime = tmp.join("bin/berth-runtime");
        let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        fs::write(
            &runtime,
            format!(
                "#!/bin/sh\n\
                 # berth-runtime as the clients see it: records the invocation, keeps the\n\
                 # bundle's config.json, then becomes berth-runtime (same pid, fds, env).\n\
                 printf '%s%s\\n' \"${{BERTH_RUNTIME_ROOT:+BERTH_RUNTIME_ROOT=$BERTH_RUNTIME_ROOT }}\" \"$*\" >> {log}\n\
                 prev=\n\
                 for a in \"$@\"; do\n\
                 \x20 case \"$prev\" in --bundle|-b) bundle=$a ;; esac\n\
                 \x20 prev=$a\n\
                 done\n\
                 if [ -n \"${{bundle:-}}\" ]; then cp \"$bundle/config.json\" {cfg}/\"$prev\".json 2>/dev/null; fi\n\
                 exec {berth} \"$@\"\n",
                log = q(&invocations),
                cfg = q(&configs),
                berth = q(&runtime_bin()),
            ),
        )
        .unwrap();
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o755)).unwrap();
        ClientEnv {
            client,
            cgroup_parent: format!("/berth/{client}-test-{}", std::process::id()),
            runtime,
            invocations,
            configs,
            daemon: None,
            daemon_log: tmp.join("daemon.log"),
            remove_containers: None,
            host_dirs_before: HOST_DIRS
                .iter()
                .map(|d| (*d, Path::new(d).exists()))
                .collect(),
            host_files_before: HOST_FILES
                .iter()
                .map(|f| (*f, Path::new(f).exists()))
                .collect(),
            netns_before: netns_entries(),
            tmp,
            td: Some(td),
            _serial: serial,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.join(rel)
    }

    /// A busybox rootfs tarball (`rootfs.tar`, entries `./bin/...`) for `import`.
    fn rootfs_tar(&self) -> PathBuf {
        let rootfs = self.path("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        make_rootfs(&rootfs);
        let tar = self.path("rootfs.tar");
        run_cmd(
            Command::new(BUSYBOX)
                .args(["tar", "-c", "-f"])
                .arg(&tar)
                .arg("-C")
                .arg(&rootfs)
                .arg("."),
        )
        .ok();
        tar
    }

    /// Starts the client's daemon with stdout/stderr in `daemon.log`, in its own process group.
    fn spawn_daemon(&mut self, cmd: &mut Command) {
        let log = fs::File::create(&self.daemon_log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        eprintln!("[{}] daemon pid {}", self.client, child.id());
        self.daemon = Some(child);
    }

    /// Polls `ready` until it succeeds; panics with the daemon's log if the daemon dies or
    /// does not come up in time.
    fn wait_daemon(&mut self, mut ready: impl FnMut() -> bool) {
        let t = Instant::now();
        let ok = wait_until(DAEMON_START, || {
            if let Some(c) = self.daemon.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "{} daemon exited ({st}) while starting:\n{}",
                    self.client,
                    tail(
                        &fs::read_to_string(&self.daemon_log).unwrap_or_default(),
                        40
                    )
                );
            }
            std::thread::sleep(Duration::from_millis(100));
            ready()
        });
        assert!(
            ok,
            "{} daemon not ready within {DAEMON_START:?}:\n{}",
            self.client,
            tail(
                &fs::read_to_string(&self.daemon_log).unwrap_or_default(),
                40
            )
        );
        eprintln!("[{}] daemon ready after {:?}", self.client, t.elapsed());
    }

    fn stop_daemon(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(mut c) = self.daemon.take() {
            kill_pid(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + DAEMON_STOP;
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!(
                        "daemon {} ignored SIGTERM for {DAEMON_STOP:?}; killed",
                        c.id()
                    ));
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        problems
    }

    /// Container ids the client passed to `create` (last argument), from the invocation log.
    fn created_ids(&self) -> BTreeSet<String> {
        fs::read_to_string(&self.invocations)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == "create"))
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect()
    }

    /// Invocation log tail, runtime error logs found under the temp dir, daemon log errors.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        let inv = fs::read_to_string(&self.invocations).unwrap_or_default();
        s.push_str(&format!(
            "--- last runtime invocations ({}):\n{}\n",
            self.invocations.display(),
            tail(&inv, 25)
        ));
        let mut logs = Vec::new();
        find_files(&self.tmp, "log.json", &mut logs);
        for l in logs.iter().take(8) {
            let text = fs::read_to_string(l).unwrap_or_default();
            if !text.trim().is_empty() {
                s.push_str(&format!("--- {}:\n{}\n", l.display(), tail(&text, 10)));
            }
        }
        let dlog = fs::read_to_string(&self.daemon_log).unwrap_or_default();
        let errs: Vec<&str> = dlog
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=warning"))
            .collect();
        s.push_str(&format!(
            "--- daemon log errors/warnings ({}):\n{}\n--- bundle configs kept in {}",
            self.daemon_log.display(),
            tail(&errs.join("\n"), 15),
            self.configs.display()
        ));
        s
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(f) = self.remove_containers.take()
            && let Err(e) = catch_unwind(AssertUnwindSafe(f))
        {
            problems.push(format!("removing containers: {}", panic_text(&*e)));
        }
        problems.extend(self.stop_daemon());
        // Whatever the daemon started (its containerd, shims, conmon) names the temp dir.
        let needle = self.tmp.to_string_lossy().into_owned();
        if !wait_until(Duration::from_secs(5), || {
            pids_mentioning(&needle).is_empty()
        }) {
            for (pid, cmd) in pids_mentioning(&needle) {
                problems.push(format!("process left running: {pid} {cmd}"));
                kill_pid(pid, libc::SIGKILL);
            }
            wait_until(Duration::from_secs(5), || {
                pids_mentioning(&needle).is_empty()
            });
        }
        // Container cgroups must be gone (berth-runtime delete); the parent and podman's
        // `conmon` cgroup are the client's and are removed here.
        for dir in common::cgroup_dirs(&self.cgroup_parent) {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() && name != "conmon" {
                    problems.push(format!("cgroup left: {}", e.path().display()));
                }
            }
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if !procs.trim().is_empty() {
                problems.push(format!(
                    "processes left in {}: {}",
                    dir.display(),
                    procs.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
        }
        reap_cgroups(&self.cgroup_parent);
        let mounts = mounts_under(&self.tmp);
        if !mounts.is_empty() {
            problems.push(format!("mounts left: {mounts:?}"));
            detach_mounts(&mounts);
        }
        let new_netns: Vec<String> = netns_entries()
            .difference(&self.netns_before)
            .cloned()
            .collect();
        if !new_netns.is_empty() {
            // Not removed: another test process may own them; reported so they are noticed.
            eprintln!(
                "[{}] note: new entries in /run/netns during the test: {new_netns:?}",
                self.client
            );
        }
        for (f, existed) in &self.host_files_before {
            if !existed {
                let _ = fs::remove_file(f);
            }
        }
        for (d, existed) in &self.host_dirs_before {
            if !existed {
                let _ = fs::remove_dir(d);
            }
        }
        problems
    }
}

fn find_files(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && !ft.is_symlink() {
            // Skip image stores and rootfs copies: big and irrelevant.
            let n = e.file_name();
            if n != "rootfs" && n != "vfs" && n != "overlay2" && n != "content" {
                find_files(&e.path(), name, out);
            }
        } else if e.file_name() == name {
            out.push(e.path());
        }
    }
}

impl Drop for ClientEnv {
    fn drop(&mut self) {
        let problems = self.teardown();
        if let Some(td) = self.td.take() {
            if std::env::var_os("BERTH_CLIENTS_KEEP").is_some() {
                eprintln!("[{}] kept {}", self.client, td.keep().display());
            } else if mounts_under(&self.tmp).is_empty() {
                drop(td);
            } else {
                let _ = td.keep();
            }
        }
        if !problems.is_empty() {
            let msg = format!(
                "{} test left resources behind:\n  {}",
                self.client,
                problems.join("\n  ")
            );
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// A client CLI with fixed leading arguments and a private environment (no ~/.docker, no
/// host defaults from `DOCKER_HOST`, `CONTAINERD_ADDRESS`, …).
#[derive(Clone)]
struct Cli {
    bin: PathBuf,
    home: PathBuf,
    pre: Vec<std::ffi::OsString>,
    envs: Vec<(String, std::ffi::OsString)>,
}

impl Cli {
    fn new(bin: &Path, env: &ClientEnv) -> Cli {
        Cli {
            bin: bin.to_path_buf(),
            home: env.path("home"),
            pre: Vec::new(),
            envs: Vec::new(),
        }
    }

    fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Cli {
        self.pre.push(a.as_ref().to_os_string());
        self
    }

    fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Cli {
        self.envs.push((k.to_string(), v.as_ref().to_os_string()));
        self
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_RUNTIME_DIR", self.home.join("xdg-run"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINER_HOST");
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c.args(&self.pre);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        run_cmd(&mut c)
    }
}

fn memory_limit_script() -> &'static str {
    // cgroup v1 (this machine) or v2 inside the container.
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
}

/// 64 MiB limit; the pipeline's `tail` buffers 200 MiB of one endless line and must be
/// OOM-killed (the shell reports 128+9). Without an enforced limit it just exits 0.
const OOM_SCRIPT: &str = "head -c 200m /dev/zero | tail >/dev/null";
const LONG_RUNNING: &str =
    "trap 'echo got-TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done";

#[test]
fn docker_with_berth_runtime() {
    if !common::require_root() {
        return;
    }
    let Some(bins) = require_bins("docker", &["dockerd", "docker"]) else {
        return;
    };
    let (dockerd, docker_bin) = (bins[0].clone(), bins[1].clone());
    let mut env = ClientEnv::new("docker");
    fs::write(env.path("daemon.json"), "{}\n").unwrap();
    let sock = env.path("docker.sock");
    let host = format!("unix://{}", sock.display());
    env.spawn_daemon(
        Command::new(&dockerd)
            .arg("--config-file")
            .arg(env.path("daemon.json"))
            .arg("--data-root")
            .arg(env.path("data"))
            .arg("--exec-root")
            .arg(env.path("exec"))
            .arg("--pidfile")
            .arg(env.path("docker.pid"))
            .args(["-H", &host])
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
            ])
            .args(["--cgroup-parent", &env.cgroup_parent])
            .arg("--add-runtime")
            .arg(format!("berth={}", env.runtime.display())),
    );
    let dcli = Cli::new(&docker_bin, &env)
        .env("DOCKER_CONFIG", env.path("home/.docker"))
        .arg("-H")
        .arg(&host);
    let docker = |args: &[&str]| dcli.run(args);
    // Containers are removed (rm -f) before dockerd is stopped, even on failure.
    {
        let dcli = dcli.clone();
        env.remove_containers = Some(Box::new(move || {
            let ids = dcli.run(&["ps", "-aq"]);
            let ids: Vec<&str> = ids.stdout.split_whitespace().collect();
            if !ids.is_empty() {
                let mut a = vec!["rm", "-f"];
                a.extend(ids);
                dcli.run(&a).ok();
            }
        }));
    }
    env.wait_daemon(|| sock.exists() && docker(&["version"]).code == 0);

    let tar = env.rootfs_tar();
    let img = "berth-busybox:test";
    docker(&["import", tar.to_str().unwrap(), img]).ok();
    let run = |extra: &[&str], cmd: &[&str]| -> Out {
        let mut a = vec!["run", "--rm", "--runtime", "berth", "--network", "none"];
        a.extend_from_slice(extra);
        a.push(img);
        a.extend_from_slice(cmd);
        docker(&a)
    };

    let mut checks = Checks::new("docker");
    checks.check("docker run prints the container's output", || {
        assert_stdout(&run(&[], &["echo", "hello from berth"]), "hello from berth");
    });
    checks.check("docker run propagates the exit code (3)", || {
        assert_code(&run(&[], &["sh", "-c", "exit 3"]), 3);
    });
    checks.check("docker run -m 64m: limit visible in the container", || {
        let o = run(
            &["-m", "64m", "--memory-swap", "64m"],
            &["sh", "-c", memory_limit_script()],
        );
        assert_stdout(&o, "67108864");
    });
    checks.check(
        "docker run -m 64m: allocation beyond it is OOM-killed (137)",
        || {
            let o = run(
                &["-m", "64m", "--memory-swap", "64m"],
                &["sh", "-c", OOM_SCRIPT],
            );
            assert_code(&o, 137);
        },
    );

    let name = format!("berth-long-{}", std::process::id());
    let mut started = false;
    checks.check("docker run -d (long-running, -m 64m)", || {
        let o = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--runtime",
            "berth",
            "--network",
            "none",
            "-m",
            "64m",
            img,
            "sh",
            "-c",
            LONG_RUNNING,
        ]);
        o.ok();
        started = true;
        let mut logs = String::new();
        let ok = wait_until(common::WAIT, || {
            logs = docker(&["logs", &name]).stdout;
            logs.contains("ready")
        });
        assert!(ok, "container never printed `ready`; logs: {logs:?}");
        let st = docker(&["inspect", "-f", "{{.State.Status}}", &name]);
        assert_stdout(&st, "running");
    });
    let id = if started {
        docker(&["inspect", "-f", "{{.Id}}", &name])
            .stdout
            .trim()
            .to_string()
    } else {
        String::new()
    };
    let host_cg = |ctl: &str| common::v1_cgroup(ctl, &format!("{}/{}", env.cgroup_parent, id));
    checks.check(
        "container cgroup under --cgroup-parent with the limit",
        || {
            assert!(started, "no container");
            let mem = host_cg("memory");
            if Path::new("/sys/fs/cgroup/memory").is_dir() {
                assert_eq!(
                    common::read_trim(mem.join("memory.limit_in_bytes")),
                    "67108864"
                );
            }
        },
    );
    checks.check("docker exec (output, exit code 5, same pid namespace)", || {
        assert!(started, "no container");
        let o = docker(&["exec", &name, "sh", "-c", "echo in-exec; exit 5"]);
        assert_code(&o, 5);
        assert_eq!(o.stdout.trim(), "in-exec");
        let o = docker(&[
            "exec",
            &name,
            "sh",
            "-c",
            "[ \"$(readlink /proc/1/ns/pid)\" = \"$(readlink /proc/self/ns/pid)\" ] && echo same",
        ]);
        assert_stdout(&o, "same");
    });
    checks.check("docker pause / unpause", || {
        assert!(started, "no container");
        docker(&["pause", &name]).ok();
        let st = docker(&["inspect", "-f", "{{.State.Status}}", &name]);
        assert_stdout(&st, "paused");
        let freezer = host_cg("freezer").join("freezer.state");
        if freezer.exists() {
            assert_eq!(common::read_trim(&freezer), "FROZEN");
        }
        docker(&["unpause", &name]).ok();
        let st = docker(&["inspect", "-f", "{{.State.Status}}", &name]);
        assert_stdout(&st, "running");
        assert_stdout(&docker(&["exec", &name, "echo", "thawed"]), "thawed");
    });
    checks.check("docker stop delivers SIGTERM (trap runs, exit 0)", || {
        assert!(started, "no container");
        let t = Instant::now();
        docker(&["stop", "-t", "30", &name]).ok();
        let took = t.elapsed();
        let st = docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ]);
        assert_stdout(&st, "exited 0");
        assert!(
            took < Duration::from_secs(20),
            "docker stop took {took:?}: SIGTERM not delivered?"
        );
        let logs = docker(&["logs", &name]).stdout;
        assert!(logs.contains("got-TERM"), "trap did not run; logs {logs:?}");
    });
    checks.check(
        "docker save → berth load → runs on berth-runtime",
        || {
            let saved = env.path("docker-saved.tar");
            docker(&["save", "-o", saved.to_str().unwrap(), img]).ok();
            let out = berth_load_and_run(&env, &saved, img, &["echo", "loaded from docker save"]);
            assert_eq!(out.trim(), "loaded from docker save");
        },
    );
    checks.check("berth save → docker load → docker run", || {
        let archive = berth_save(&env, "berth-saved:v1");
        let o = docker(&["load", "-i", archive.to_str().unwrap()]);
        o.ok();
        assert!(
            o.stdout.contains("berth-saved:v1"),
            "docker load said {:?}",
            o.stdout
        );
        let mut a = vec!["run", "--rm", "--runtime", "berth", "--network", "none"];
        a.extend(["berth-saved:v1", "echo", "saved by berth"]);
        assert_stdout(&docker(&a), "saved by berth");
    });
    checks.check("docker rm", || {
        assert!(started, "no container");
        docker(&["rm", &name]).ok();
        let st = fs::read_dir(env.path("exec/runtime-runc/moby"))
            .map(|rd| rd.count())
            .unwrap_or(0);
        assert_eq!(
            st, 0,
            "runtime state entries left in exec/runtime-runc/moby"
        );
    });
    checks.finish(&env);
}

#[test]
fn podman_with_berth_runtime() {
    if !common::require_root() {
        return;
    }
    let Some(bins) = require_bins("podman", &["podman", "conmon"]) else {
        return;
    };
    let podman_bin = bins[0].clone();
    let mut env = ClientEnv::new("podman");
    for d in ["storage", "run", "tmp"] {
        fs::create_dir_all(env.path(d)).unwrap();
    }
    // A containers.conf of our own so the host's does not apply.
    fs::write(env.path("containers.conf"), "[engine]\n").unwrap();
    let pcli = podman_cli(&podman_bin, &env);
    let podman = |args: &[&str]| pcli.run(args);
    {
        let pcli = pcli.clone();
        env.remove_containers = Some(Box::new(move || {
            pcli.run(&["rm", "--all", "--force", "--time", "0"]).ok();
        }));
    }
    let tar = env.rootfs_tar();
    let img = "localhost/berth-busybox:test";
    podman(&["import", tar.to_str().unwrap(), img]).ok();
    let parent = env.cgroup_parent.clone();
    // This machine's root has no CAP_SYS_RESOURCE and a hard RLIMIT_NOFILE of 20000, while
    // podman asks for nofile=1048576 and nproc=32768 by default: runc and crun refuse that
    // too. Lower limits are always allowed.
    let base: Vec<&str> = vec![
        "--network",
        "none",
        "--cgroup-parent",
        &parent,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    let run = |extra: &[&str], cmd: &[&str]| -> Out {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(&base);
        a.extend_from_slice(extra);
        a.push(img);
        a.extend_from_slice(cmd);
        podman(&a)
    };
    let mut checks = Checks::new("podman");
    checks.check("podman run prints hello", || {
        assert_stdout(&run(&[], &["echo", "hello"]), "hello");
    });
    checks.check("podman run propagates the exit code (3)", || {
        assert_code(&run(&[], &["sh", "-c", "exit 3"]), 3);
    });
    checks.check("podman run -m 64m: limit visible in the container", || {
        let o = run(
            &["-m", "64m", "--memory-swap", "64m"],
            &["sh", "-c", memory_limit_script()],
        );
        assert_stdout(&o, "67108864");
    });
    let name = format!("berth-long-{}", std::process::id());
    let mut started = false;
    checks.check("podman run -d + exec", || {
        let mut a = vec!["run", "-d", "--name", &name];
        a.extend_from_slice(&base);
        a.extend_from_slice(&[img, "sh", "-c", LONG_RUNNING]);
        podman(&a).ok();
        started = true;
        let mut logs = String::new();
        let ok = wait_until(common::WAIT, || {
            logs = podman(&["logs", &name]).stdout;
            logs.contains("ready")
        });
        assert!(ok, "container never printed `ready`; logs: {logs:?}");
        let o = podman(&["exec", &name, "sh", "-c", "echo in-exec; exit 5"]);
        assert_code(&o, 5);
        assert_eq!(o.stdout.trim(), "in-exec");
    });
    checks.check("podman pause / unpause", || {
        assert!(started, "no container");
        podman(&["pause", &name]).ok();
        let st = podman(&["inspect", "-f", "{{.State.Status}}", &name]);
        assert_stdout(&st, "paused");
        podman(&["unpause", &name]).ok();
        let st = podman(&["inspect", "-f", "{{.State.Status}}", &name]);
        assert_stdout(&st, "running");
    });
    checks.check("podman stop delivers SIGTERM (exit 0), rm", || {
        assert!(started, "no container");
        podman(&["stop", "-t", "30", &name]).ok();
        let st = podman(&["inspect", "-f", "{{.State.ExitCode}}", &name]);
        assert_stdout(&st, "0");
        let logs = podman(&["logs", &name]).stdout;
        assert!(logs.contains("got-TERM"), "trap did not run; logs {logs:?}");
        podman(&["rm", &name]).ok();
    });
    for format in ["docker-archive", "oci-archive"] {
        checks.check(
            &format!("podman save --format {format} → berth load → runs"),
            || {
                let saved = env.path(&format!("podman-{format}.tar"));
                podman(&[
                    "save",
                    "--format",
                    format,
                    "-o",
                    saved.to_str().unwrap(),
                    img,
                ])
                .ok();
                let out = berth_load_and_run(&env, &saved, img, &["echo", "loaded from podman"]);
                assert_eq!(out.trim(), "loaded from podman");
            },
        );
    }
    checks.check("berth save → podman load → podman run", || {
        let archive = berth_save(&env, "berth-saved:v1");
        podman(&["load", "-i", archive.to_str().unwrap()]).ok();
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(&base);
        a.extend(["docker.io/library/berth-saved:v1", "echo", "saved by berth"]);
        assert_stdout(&podman(&a), "saved by berth");
    });
    checks.check("no runtime state left in /run/berth-runtime", || {
        let created = env.created_ids();
        assert!(!created.is_empty(), "no `create` in the invocation log");
        let left: Vec<String> = common::state_entries(Path::new(DEFAULT_ROOT))
            .into_iter()
            .filter(|e| created.contains(e))
            .collect();
        assert!(left.is_empty(), "state entries left: {left:?}");
    });
    checks.finish(&env);
}

/// podman with everything under the env's temp dir and berth-runtime.
///
/// berth-runtime keeps its state in its default root, /run/berth-runtime: podman 4.3 cannot
/// move it. `--runtime-flag root=…` is not passed on by the `podman container cleanup` that
/// conmon runs when a container exits (its `delete --force` then looks in the default root and
/// the state entry is left behind), and conmon runs the runtime with a scrubbed environment (no
/// `BERTH_RUNTIME_ROOT`). The test checks that every entry it created there is gone.
fn podman_cli(bin: &Path, env: &ClientEnv) -> Cli {
    Cli::new(bin, env)
        .env("CONTAINERS_CONF", env.path("containers.conf"))
        .arg("--root")
        .arg(env.path("storage"))
        .arg("--runroot")
        .arg(env.path("run"))
        .arg("--tmpdir")
        .arg(env.path("tmp"))
        .arg("--cgroup-manager")
        .arg("cgroupfs")
        .arg("--events-backend")
        .arg("file")
        .arg("--storage-driver")
        .arg("vfs")
        .arg("--runtime")
        .arg(&env.runtime)
}

/// A docker-archive (`docker save` format) of one busybox layer, tagged `reference`, for
/// `ctr images import`.
fn docker_archive(env: &ClientEnv, reference: &str) -> PathBuf {
    let layer = env.rootfs_tar();
    let sha = |p: &Path| -> String {
        let o = run_cmd(Command::new(BUSYBOX).arg("sha256sum").arg(p));
        o.ok();
        o.stdout.split_whitespace().next().unwrap().to_string()
    };
    let dir = env.path("archive");
    let layer_sha = sha(&layer);
    fs::create_dir_all(dir.join(&layer_sha)).unwrap();
    fs::rename(&layer, dir.join(&layer_sha).join("layer.tar")).unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_sha}")]},
        "history": [{"created_by": "berth clients test"}],
    });
    let cfg_tmp = dir.join("config.tmp");
    fs::write(&cfg_tmp, serde_json::to_vec(&config).unwrap()).unwrap();
    let cfg_name = format!("{}.json", sha(&cfg_tmp));
    fs::rename(&cfg_tmp, dir.join(&cfg_name)).unwrap();
    let manifest = serde_json::json!([{
        "Config": cfg_name,
        "RepoTags": [reference],
        "Layers": [format!("{layer_sha}/layer.tar")],
    }]);
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = env.path("image.tar");
    run_cmd(
        Command::new(BUSYBOX)
            .args(["tar", "-c", "-f"])
            .arg(&out)
            .arg("-C")
            .arg(&dir)
            .args(["manifest.json", &cfg_name, &layer_sha]),
    )
    .ok();
    out
}

#[test]
fn containerd_ctr_with_berth_runtime() {
    if !common::require_root() {
        return;
    }
    let Some(bins) = require_bins("ctr", &["containerd", "ctr", "containerd-shim-runc-v2"]) else {
        return;
    };
    let (containerd, ctr_bin) = (bins[0].clone(), bins[1].clone());
    let mut env = ClientEnv::new("ctr");
    let sock = env.path("containerd.sock");
    let config = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{debug}"
[metrics]
  address = ""
[plugins."io.containerd.monitor.v1.cgroups"]
  no_prometheus = true
# Unused (tasks run on the v2 runc shim) but the tasks service needs it loaded.
[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "{v1root}"
"#,
        root = env.path("root").display(),
        state = env.path("state").display(),
        sock = sock.display(),
        debug = env.path("debug.sock").display(),
        v1root = env.path("v1-runtime-root").display(),
    );
    fs::write(env.path("config.toml"), config).unwrap();
    env.spawn_daemon(
        Command::new(&containerd)
            .arg("--config")
            .arg(env.path("config.toml")),
    );
    let fifo = env.path("fifo");
    let runc_root = env.path("runc-root");
    fs::create_dir_all(&fifo).unwrap();
    fs::create_dir_all(&runc_root).unwrap();
    let ccli = Cli::new(&ctr_bin, &env)
        .arg("-a")
        .arg(&sock)
        .arg("-n")
        .arg("berth-test");
    let ctr = |args: &[&str]| ccli.run(args);
    {
        let ccli = ccli.clone();
        // Kill and delete every task and container before containerd stops.
        env.remove_containers = Some(Box::new(move || {
            let ctr = |args: &[&str]| ccli.run(args);
            let ids = ctr(&["containers", "ls", "-q"]).stdout;
            for id in ids.split_whitespace() {
                let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
                wait_until(Duration::from_secs(10), || {
                    ctr(&["tasks", "delete", id]).code == 0
                        || !ctr(&["tasks", "ls", "-q"])
                            .stdout
                            .split_whitespace()
                            .any(|t| t == id)
                });
                ctr(&["containers", "delete", id]).ok();
            }
        }));
    }
    env.wait_daemon(|| sock.exists() && ctr(&["version"]).code == 0);

    let img = "berth.test/busybox:latest";
    let archive = docker_archive(&env, img);
    ctr(&["images", "import", archive.to_str().unwrap()]).ok();
    let rt = env.runtime.to_str().unwrap().to_string();
    let rroot = runc_root.to_str().unwrap().to_string();
    let fifo_s = fifo.to_str().unwrap().to_string();
    let cg = |id: &str| format!("{}/{id}", env.cgroup_parent);
    let run_args = |id: &str| -> Vec<String> {
        vec![
            "run".into(),
            "--runc-binary".into(),
            rt.clone(),
            "--runc-root".into(),
            rroot.clone(),
            "--fifo-dir".into(),
            fifo_s.clone(),
            "--cgroup".into(),
            cg(id),
        ]
    };
    let run_rm = |id: &str, extra: &[&str], cmd: &[&str]| -> Out {
        let mut a = run_args(id);
        a.push("--rm".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(img.into());
        a.push(id.into());
        a.extend(cmd.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ctr(&a)
    };
    let task_status = |id: &str| -> String {
        let o = ctr(&["tasks", "ls"]);
        o.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    };

    let mut checks = Checks::new("ctr");
    checks.check("ctr run --rm prints hello", || {
        assert_stdout(&run_rm("c-hello", &[], &["echo", "hello"]), "hello");
    });
    checks.check("ctr run --rm propagates the exit code (3)", || {
        assert_code(&run_rm("c-exit", &[], &["sh", "-c", "exit 3"]), 3);
    });
    checks.check("ctr run --cgroup: container in that cgroup", || {
        // ctr's default spec mounts no cgroupfs in the container (same with runc): the limit is
        // checked from the host on the long-running task below.
        let o = run_rm("c-cg", &[], &["grep", "memory", "/proc/self/cgroup"]);
        o.ok();
        assert!(
            o.stdout.contains(&cg("c-cg")),
            "container not in {}: {}",
            cg("c-cg"),
            o.stdout
        );
    });
    let id = "c-long";
    let mut started = false;
    checks.check(
        "ctr run -d --memory-limit 64MiB (task RUNNING, limit set)",
        || {
            let mut a = run_args(id);
            a.extend(["-d", "--memory-limit", "67108864"].map(String::from));
            a.push("--log-uri".into());
            a.push(format!("file://{}", env.path("c-long.log").display()));
            a.push(img.into());
            a.push(id.into());
            a.extend(["sh", "-c", LONG_RUNNING].map(String::from));
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            ctr(&a).ok();
            started = true;
            let log = env.path("c-long.log");
            let ok = wait_until(common::WAIT, || {
                fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("ready")
            });
            assert!(ok, "task never printed `ready`");
            assert_eq!(task_status(id), "RUNNING");
            let v1 = common::v1_cgroup("memory", &cg(id)).join("memory.limit_in_bytes");
            let v2 = Path::new("/sys/fs/cgroup")
                .join(cg(id).trim_start_matches('/'))
                .join("memory.max");
            let limit = if v1.exists() { v1 } else { v2 };
            assert_eq!(common::read_trim(&limit), "67108864", "{}", limit.display());
        },
    );
    checks.check("ctr task exec (output, exit code 4)", || {
        assert!(started, "no task");
        let o = ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "x1",
            "--fifo-dir",
            &fifo_s,
            id,
            "sh",
            "-c",
            "echo from-exec; exit 4",
        ]);
        assert_code(&o, 4);
        assert_eq!(o.stdout.trim(), "from-exec");
    });
    checks.check("ctr task ps / pause / resume", || {
        assert!(started, "no task");
        let ps = ctr(&["tasks", "ps", id]);
        ps.ok();
        assert!(ps.stdout.lines().count() >= 2, "no process: {}", ps.stdout);
        ctr(&["tasks", "pause", id]).ok();
        assert_eq!(task_status(id), "PAUSED");
        ctr(&["tasks", "resume", id]).ok();
        assert_eq!(task_status(id), "RUNNING");
    });
    checks.check("ctr task kill -s SIGKILL, delete", || {
        assert!(started, "no task");
        ctr(&["tasks", "kill", "-s", "SIGKILL", id]).ok();
        let mut st = String::new();
        let ok = wait_until(common::WAIT, || {
            st = task_status(id);
            st == "STOPPED"
        });
        assert!(ok, "task status {st:?} after SIGKILL");
        let o = ctr(&["tasks", "delete", id]);
        o.ok();
        ctr(&["containers", "delete", id]).ok();
        let left = common::state_entries(&runc_root.join("berth-test"));
        assert!(left.is_empty(), "runtime state entries left: {left:?}");
    });
    checks.finish(&env);
}

/// berth's image store under the env's temp dir.
fn berth_store(env: &ClientEnv) -> berth_image::store::ImageStore {
    berth_image::store::ImageStore::open(&env.path("berth-images")).unwrap()
}

/// Unmounts a container rootfs (and removes its snapshot) even when a check fails.
struct RootfsGuard<'a> {
    snapshotter: &'a berth_image::snapshot::Snapshotter,
    key: String,
    target: PathBuf,
}

impl Drop for RootfsGuard<'_> {
    fn drop(&mut self) {
        let _ = berth_image::snapshot::unmount(&self.target);
        let _ = self.snapshotter.remove(&self.key);
    }
}

/// Loads `archive` (a client's `save` output) into berth's store, unpacks
/// `name` into overlay snapshots, mounts a container snapshot on top as a
/// fresh bundle's rootfs, builds the spec from the image config with
/// Docker's defaults, and runs `cmd` with berth-runtime; returns its stdout.
fn berth_load_and_run(env: &ClientEnv, archive: &Path, name: &str, cmd: &[&str]) -> String {
    use berth_image::store::Platform;
    let store = berth_store(env);
    let file = fs::File::open(archive).unwrap();
    let report = berth_image::archive::load(
        &store,
        std::io::BufReader::new(file),
        &berth_image::archive::LoadOptions::default(),
    )
    .unwrap();
    assert!(
        report.images.iter().any(|i| i.name.ends_with(name)),
        "{name} not among the loaded images {:?}",
        report.images.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    let img = store.get(name).unwrap();
    let snapshotter = berth_image::snapshot::Snapshotter::open(
        &env.path("berth-images/snapshots"),
        store.db().clone(),
        None,
    )
    .unwrap();
    let top = store
        .unpack(
            &snapshotter,
            &img.target,
            &Platform::host(),
            &berth_image::layer::ApplyOptions::default(),
        )
        .unwrap();
    let resolved = store.resolve(&img.target, &Platform::host()).unwrap();

    let rt = common::runtimes()
        .into_iter()
        .find(|r| r.name == "berth")
        .unwrap();
    let mut ct = common::Ct::new(&rt);
    fs::remove_dir_all(&ct.rootfs).unwrap();
    fs::create_dir_all(&ct.rootfs).unwrap();
    let key = format!("container-{}", ct.id);
    let mounts = snapshotter
        .prepare(&key, top.as_deref(), Default::default())
        .unwrap();
    let _guard = RootfsGuard {
        snapshotter: &snapshotter,
        key,
        target: ct.rootfs.clone(),
    };
    berth_image::snapshot::mount_all(&mounts, &ct.rootfs).unwrap();
    let opts = berth_image::spec::RunOptions {
        id: Some(ct.id.clone()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        cgroups_path: Some(ct.cgroup.clone()),
        ..Default::default()
    };
    let prepared = berth_image::spec::prepare(&resolved.config, &ct.rootfs, &opts).unwrap();
    let mut spec = serde_json::to_value(&prepared.spec).unwrap();
    spec["root"]["path"] = "rootfs".into();
    ct.spec = spec;
    let out = ct.run_ok();
    ct.delete();
    out
}

/// Imports the env's busybox rootfs into berth's store as `name` (Cmd `sh`)
/// and saves it to a tarball; returns its path.
fn berth_save(env: &ClientEnv, name: &str) -> PathBuf {
    let store = berth_store(env);
    let tar = fs::File::open(env.rootfs_tar()).unwrap();
    berth_image::archive::import(
        &store,
        std::io::BufReader::new(tar),
        &berth_image::archive::ImportOptions {
            name: Some(name.into()),
            config: Some(serde_json::json!({
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            })),
            ..Default::default()
        },
    )
    .unwrap();
    let out = env.path("berth-saved.tar");
    let file = fs::File::create(&out).unwrap();
    berth_image::archive::save(
        &store,
        &[name],
        &berth_image::store::Platform::host(),
        std::io::BufWriter::new(file),
    )
    .unwrap();
    out
}
