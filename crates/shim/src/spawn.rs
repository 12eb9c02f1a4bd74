//! A shim's start-up, in the child the zygote forked: create the container,
//! report to berthd, then execute the monitor.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_runtime::container::{CreateOptions, create};
use berth_shim::proto::{self, Handoff, ShimConfig};
use berth_shim::stdio::{self, Ends};

/// A created container, about to be handed to the monitor.
struct Created {
    monitor: PathBuf,
    init_pid: i32,
    ends: Ends,
    listener: std::os::unix::net::UnixListener,
    log: Option<std::fs::File>,
    exec_fifo: PathBuf,
    oom_file: Option<PathBuf>,
    oom_base: u64,
}

/// The shim, in a child of the zygote: reads `<dir>/shim.json`, creates
/// the container (once a byte comes on `go`, if given: berthd writes the
/// bundle meanwhile), reports on `report` and becomes the monitor. On
/// failure the error goes to `report` and the process exits.
pub fn serve(dir: &Path, report: std::fs::File, go: Option<OwnedFd>) -> ! {
    let mut wr = report;
    let cfg: ShimConfig = match std::fs::read(dir.join(proto::CONFIG))
        .map_err(|e| format!("read {}: {e}", dir.join(proto::CONFIG).display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("bad {}: {e}", proto::CONFIG)))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = wr.write_all(proto::error_line(&e).as_bytes());
            std::process::exit(1)
        }
    };
    match setup(dir, cfg.clone(), go) {
        Ok(created) => {
            let init = created.init_pid;
            let e = become_monitor(dir, created, &mut wr);
            // Nobody would serve the container: end it, and say why (in
            // the report if it is not written yet; the shim's log has it
            // in any case). A start already under way then fails, or
            // finds the shim gone.
            // SAFETY: kill(2) on this process's own child, not reaped.
            unsafe { libc::kill(init, libc::SIGKILL) };
            let _ = berth_runtime::container::delete(&cfg.runtime_root, &cfg.id, true);
            eprintln!("berth-shim: {e}");
            let _ = wr.write_all(proto::error_line(&e).as_bytes());
            std::process::exit(1)
        }
        Err(e) => {
            for f in [proto::SOCKET, proto::PID_FILE, "console.sock"] {
                let _ = std::fs::remove_file(dir.join(f));
            }
            let _ = wr.write_all(proto::error_line(&e).as_bytes());
            std::process::exit(1)
        }
    }
}

/// Reports the container to berthd on `report` and executes the monitor in
/// this process (still the init's parent, still the subreaper); returns
/// only on failure. berthd goes on with the start during the exec.
fn become_monitor(dir: &Path, c: Created, report: &mut std::fs::File) -> String {
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map(|f| f.as_raw_fd());
    let handoff = Handoff {
        init_pid: c.init_pid,
        exec_fifo: c.exec_fifo,
        listener: c.listener.as_raw_fd(),
        out: [raw(&c.ends.out[0]), raw(&c.ends.out[1])],
        stdin: raw(&c.ends.stdin),
        master: raw(&c.ends.master),
        oom_file: c.oom_file,
        oom_base: c.oom_base,
        log: c.log.as_ref().map(|f| f.as_raw_fd()),
    };
    let fds = [Some(handoff.listener)]
        .into_iter()
        .chain(handoff.out)
        .chain([handoff.stdin, handoff.master, handoff.log]);
    for fd in fds.flatten() {
        // SAFETY: fcntl(F_SETFD) on descriptors this process owns (kept
        // alive by `c` until the exec).
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return format!("keep fd {fd} open: {}", std::io::Error::last_os_error());
        }
    }
    let json = serde_json::to_string(&handoff).unwrap_or_default();
    let (Ok(prog), Ok(dir), Ok(json)) = (
        CString::new(c.monitor.as_os_str().as_bytes()),
        CString::new(dir.as_os_str().as_bytes()),
        CString::new(json),
    ) else {
        return "a path with a NUL byte".into();
    };
    let argv0 = CString::from(c"berth-shim-monitor");
    // The same pid serves once the exec is done.
    let line = proto::ready_line(std::process::id() as i32, c.init_pid);
    if let Err(e) = report.write_all(line.as_bytes()) {
        return format!("report: {e}");
    }
    match nix::unistd::execv(&prog, &[argv0, dir, json]) {
        Ok(never) => match never {},
        Err(e) => format!("execute {}: {e}", c.monitor.display()),
    }
}

/// The child's set-up: its own session and stdio, the container created,
/// the socket bound.
fn setup(dir: &Path, cfg: ShimConfig, go: Option<OwnedFd>) -> Result<Created, String> {
    // The monitor is looked for before anything is created.
    let monitor = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(proto::MONITOR)))
        .filter(|m| m.is_file())
        .ok_or_else(|| format!("{} is missing beside berth-shim", proto::MONITOR))?;
    let _ = nix::unistd::setsid();
    // Sockets are bound by relative name in the state directory: its full
    // path can be longer than a socket address allows.
    std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
    let log: OwnedFd = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(proto::SHIM_LOG))
        .map_err(|e| format!("open {}: {e}", proto::SHIM_LOG))?
        .into();
    stdio::restore(&log).map_err(|e| format!("stdio: {e}"))?;
    berth_runtime::process::clone::become_subreaper().map_err(|e| e.to_string())?;
    let pid = std::process::id();
    let start = berth_runtime::state::proc_stat(pid as i32).map_or(0, |(_, s)| s);
    std::fs::write(dir.join(proto::PID_FILE), format!("{pid} {start}\n"))
        .map_err(|e| format!("write {}: {e}", proto::PID_FILE))?;
    // SIGCHLD stays blocked (across the exec too) for the monitor's
    // signalfd; the runtime unblocks every signal in the container's
    // processes before they exec.
    berth_shim::monitor::block_child_signals().map_err(|e| format!("sigprocmask: {e}"))?;

    let prepared = if cfg.tty {
        stdio::console(Path::new("console.sock"))
    } else {
        stdio::pipes(cfg.open_stdin).and_then(|(prepared, child)| {
            stdio::install(&child)?;
            Ok(prepared)
        })
    }
    .map_err(|e| format!("container stdio: {e}"))?;
    // The monitor's json-file log: a log that cannot be written fails here.
    let json_log = match &cfg.log {
        Some(l) => Some(
            berth_shim::monitor::open_log(l)
                .map_err(|e| format!("open the log {}: {e}", l.path.display()))?,
        ),
        None => None,
    };
    if let Some(go) = go {
        wait_for_go(go)?;
    }
    let opts = CreateOptions {
        id: cfg.id.clone(),
        bundle: cfg.bundle.clone(),
        root: cfg.runtime_root.clone(),
        console_socket: stdio::console_path(&prepared),
        seccomp_cache: cfg.seccomp_cache.clone(),
        ..Default::default()
    };
    let created = create(&opts);
    stdio::restore(&log).map_err(|e| format!("stdio: {e}"))?;
    let container = created.map_err(|e| e.to_string())?;
    let ends = match stdio::finish(prepared, cfg.console_size) {
        Ok(e) => e,
        Err(e) => {
            let _ = berth_runtime::container::delete(&cfg.runtime_root, &cfg.id, true);
            return Err(format!("container stdio: {e}"));
        }
    };
    let sock: PathBuf = PathBuf::from(proto::SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = match std::os::unix::net::UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            let _ = berth_runtime::container::delete(&cfg.runtime_root, &cfg.id, true);
            return Err(format!("listen on {}: {e}", sock.display()));
        }
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    let oom_file = berth_runtime::container::oom_kill_file_of(&container)
        .ok()
        .flatten();
    let oom_base = oom_file
        .as_deref()
        .and_then(berth_runtime::container::read_oom_kills)
        .unwrap_or(0);
    Ok(Created {
        monitor,
        exec_fifo: container.dir.join(berth_runtime::state::EXEC_FIFO),
        init_pid: container.record.pid,
        ends,
        listener,
        log: json_log,
        oom_file,
        oom_base,
    })
}

/// Waits for berthd's byte on `go`: the bundle is written. End of file (or
/// an error) means berthd gave the start up.
fn wait_for_go(go: OwnedFd) -> Result<(), String> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&go, &mut byte) {
            Ok(1) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => return Err("berthd gave the start up before the bundle was ready".into()),
            Err(e) => return Err(format!("wait for the bundle: {e}")),
        }
    }
}
