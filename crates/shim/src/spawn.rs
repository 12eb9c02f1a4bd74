//! Start-up: fork once, create the container in the child, report to the
//! parent (which prints the report for berthd and exits).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_runtime::container::{CreateOptions, create};
use berth_shim::proto::{self, ShimConfig};
use nix::unistd::{ForkResult, fork};

use crate::server::Shim;
use crate::stdio;

/// Runs the shim; returns the parent's exit code (the child never returns).
pub fn run(dir: &Path) -> i32 {
    let report = |line: &str| {
        let mut out = std::io::stdout();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    };
    let cfg: ShimConfig = match std::fs::read(dir.join(proto::CONFIG))
        .map_err(|e| format!("read {}: {e}", dir.join(proto::CONFIG).display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("bad {}: {e}", proto::CONFIG)))
    {
        Ok(c) => c,
        Err(e) => {
            report(&proto::error_line(&e));
            return 1;
        }
    };
    let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            report(&proto::error_line(&format!("pipe: {e}")));
            return 1;
        }
    };
    // SAFETY: the shim is single-threaded here (nothing has spawned a
    // thread), so the child may go on running Rust code after fork.
    match unsafe { fork() } {
        Err(e) => {
            report(&proto::error_line(&format!("fork: {e}")));
            1
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(wr);
            // One line: the container's init keeps a copy of the pipe
            // until it starts, so EOF does not come.
            let mut f = std::fs::File::from(rd);
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while let Ok(1) = f.read(&mut b) {
                line.push(b[0]);
                if b[0] == b'\n' {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            match proto::parse_spawn_line(&line) {
                proto::Spawned::Ready { .. } => {
                    report(&line);
                    0
                }
                proto::Spawned::Failed(m) => {
                    report(&proto::error_line(&m));
                    1
                }
            }
        }
        Ok(ForkResult::Child) => {
            drop(rd);
            let mut wr = std::fs::File::from(wr);
            match setup(dir, cfg) {
                Ok(shim) => {
                    // Creating the container parsed the whole spec; give
                    // that memory back before settling down for the
                    // container's life.
                    // SAFETY: malloc_trim only releases free heap pages.
                    unsafe { libc::malloc_trim(0) };
                    let line = proto::ready_line(std::process::id() as i32, shim.init_pid());
                    let _ = wr.write_all(line.as_bytes());
                    drop(wr);
                    shim.serve()
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
    }
}

/// The child's set-up: its own session and stdio, the container created,
/// the socket bound.
fn setup(dir: &Path, cfg: ShimConfig) -> Result<Shim, String> {
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
    // SIGCHLD arrives through a signalfd; the runtime unblocks every
    // signal in the container's processes before they exec.
    let sigfd = crate::server::child_signals().map_err(|e| format!("signalfd: {e}"))?;

    let prepared = if cfg.tty {
        stdio::console(Path::new("console.sock"))
    } else {
        stdio::pipes(cfg.open_stdin)
    }
    .map_err(|e| format!("container stdio: {e}"))?;
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
    let _ = log.as_raw_fd();
    Shim::new(dir, cfg, container.record.pid, ends, listener, sigfd, log)
}
