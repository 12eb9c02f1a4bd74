//! berth-runtime: a runc-compatible OCI runtime over the berth-runtime library.

mod args;
mod commands;
mod log;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Global settings every verb needs.
#[derive(Debug)]
pub struct Globals {
    /// State root.
    pub root: PathBuf,
    /// Rootless mode.
    pub rootless: bool,
}

/// Whether the command line names a verb that starts container processes.
fn starts_processes() -> bool {
    std::env::args_os()
        .skip(1)
        .any(|a| a == "create" || a == "run" || a == "exec")
}

fn main() -> ExitCode {
    // Verbs that start container processes run from a read-only view of
    // this binary (CVE-2019-5736, see berth_runtime::exe). Done first,
    // before any other work, as the process is executed again.
    let sealed = if starts_processes() {
        berth_runtime::exe::ensure_protected()
    } else {
        Ok(())
    };
    let cli = Cli::parse();
    let logger = log::Logger::init(cli.log.as_deref(), &cli.log_format, cli.debug);
    if let Err(e) = sealed {
        logger.error(&format!("{e}"));
        return ExitCode::from(1);
    }
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) && !berth_runtime::exe::is_protected()
    {
        logger.error(
            "refusing to start a container: not running from a read-only view of the binary",
        );
        return ExitCode::from(1);
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            logger.error(&chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line.
fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    if cli.systemd_cgroup {
        anyhow::bail!(
            "--systemd-cgroup: berth-runtime manages cgroups through cgroupfs and does not use systemd{}",
            if std::path::Path::new("/run/systemd/system").exists() {
                ""
            } else {
                " (and this host does not run systemd)"
            }
        );
    }
    let euid = nix::unistd::geteuid();
    let rootless = match cli.rootless.as_str() {
        "true" => true,
        "false" => false,
        "auto" => !euid.is_root(),
        other => anyhow::bail!("--rootless: {other:?} is not true, false or auto"),
    };
    let root = match cli.root {
        Some(r) => r,
        None if euid.is_root() => PathBuf::from("/run/berth-runtime"),
        None => {
            let base = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/berth-runtime-{euid}")));
            base.join("berth-runtime")
        }
    };
    let g = Globals { root, rootless };
    commands::dispatch(&g, cli.command)
}
