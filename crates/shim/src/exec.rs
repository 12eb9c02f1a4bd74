//! `berth-shim --exec <job>`: one exec for the monitor, which has no
//! runtime library. The process gets this program's fds 0-2; fd 3 takes
//! the report. The process outlives this program: the monitor, the
//! subreaper above it, inherits it and reaps it.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;

use berth_runtime::container::{ExecOptions, ExecOutcome};
use berth_shim::proto::{self, ExecJob};

/// The report pipe the monitor opens on fd 3.
const REPORT_FD: i32 = 3;

/// Runs the job; 0 when the process runs.
pub fn run(job: &Path) -> i32 {
    // SAFETY: fcntl on a plain integer: fails unless fd 3 is open.
    if unsafe { libc::fcntl(REPORT_FD, libc::F_GETFD) } < 0 {
        eprintln!("berth-shim --exec: no report pipe on fd {REPORT_FD} (it is run by the monitor)");
        return 2;
    }
    // SAFETY: fd 3 is open (checked) and is the report pipe the monitor
    // put there for this program; nothing else in it owns fd 3.
    let mut report = unsafe { std::fs::File::from_raw_fd(REPORT_FD) };
    let (line, code) = match exec(job) {
        Ok(pid) => (proto::ready_line(std::process::id() as i32, pid), 0),
        Err(e) => (proto::error_line(&e), 1),
    };
    let _ = report.write_all(line.as_bytes());
    code
}

fn exec(path: &Path) -> Result<i32, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let job: ExecJob =
        serde_json::from_slice(&bytes).map_err(|e| format!("bad {}: {e}", path.display()))?;
    let process: oci_spec::runtime::Process =
        serde_json::from_value(job.process).map_err(|e| format!("bad exec process: {e}"))?;
    let opts = ExecOptions {
        process,
        detach: true,
        pid_file: None,
        console_socket: job.console_socket,
        preserve_fds: 0,
        ignore_paused: false,
        seccomp_cache: job.seccomp_cache,
    };
    match berth_runtime::container::exec(&job.root, &job.id, &opts) {
        Ok(ExecOutcome::Detached(pid)) => Ok(pid),
        Ok(ExecOutcome::Exited(code)) => Err(format!("exec exited at once with {code}")),
        Err(e) => Err(e.to_string()),
    }
}
