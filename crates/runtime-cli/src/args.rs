//! Command-line arguments, flag for flag as runc 1.1 takes them (containerd,
//! dockerd and podman drive runtimes exactly this way).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// berth-runtime: an OCI runtime, a drop-in replacement for runc.
///
/// It creates and runs containers from OCI bundles (a directory with a
/// config.json and a root filesystem), with the same verbs and flags as
/// runc 1.1, so containerd, dockerd and podman can use it. State lives under
/// --root (default /run/berth-runtime for root), one directory per
/// container. Global options go before the verb:
/// `berth-runtime --root /tmp/s run -b ./bundle mycontainer`.
#[derive(Debug, Parser)]
#[command(name = "berth-runtime", version)]
pub struct Cli {
    /// Directory for container state
    #[arg(long, env = "BERTH_RUNTIME_ROOT")]
    pub root: Option<PathBuf>,
    /// Write log messages to this file instead of stderr
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Enable debug logging
    #[arg(long)]
    pub debug: bool,
    /// Use systemd to manage cgroups (refused: berth manages cgroupfs directly)
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Run without root privileges: true, false or auto (auto: when not root)
    #[arg(long, default_value = "auto", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: String,
    /// Path to criu (accepted for compatibility; checkpoint is not supported)
    #[arg(long, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; it waits for `start`
    Create(CreateArgs),
    /// Start a created container
    Start(IdArg),
    /// Create and start a container, and wait for it unless --detach
    Run(RunArgs),
    /// Print a container's state as JSON
    State(IdArg),
    /// Send a signal to a container's init (or all its processes)
    Kill(KillArgs),
    /// Delete a container and its resources
    Delete(DeleteArgs),
    /// Run a new process inside a container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps(PsArgs),
    /// List containers
    List(ListArgs),
    /// Write a default config.json into a bundle
    Spec(SpecArgs),
    /// Print the OCI features document of this runtime
    Features,
    /// Freeze every process of a container
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Change a container's resource limits
    Update(UpdateArgs),
    /// Print container events: resource statistics, and OOM kills
    Events(EventsArgs),
    /// Checkpoint a container (not supported)
    Checkpoint(PassArgs),
    /// Restore a container (not supported)
    Restore(PassArgs),
}

/// Just a container id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Container id
    pub id: String,
}

/// Arguments passed through to an unsupported verb.
#[derive(Debug, Args)]
pub struct PassArgs {
    /// Ignored
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Flags of `create` (and `run`).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container id
    pub id: String,
    /// Bundle directory (holds config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// UNIX socket that receives the pty master when process.terminal is true
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Write the container's init pid to this file
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3 .. 3+N-1) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Path of a systemd notify socket (accepted, unused)
    #[arg(long = "notify-socket", hide = true)]
    pub notify_socket: Option<PathBuf>,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container started instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
}

/// Flags of `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Container id
    pub id: String,
    /// Signal name (KILL, SIGKILL) or number (9)
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Send the signal to every process of the container
    #[arg(short, long)]
    pub all: bool,
}

/// Flags of `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Container id
    pub id: String,
    /// Kill the container first if it is running
    #[arg(short, long)]
    pub force: bool,
}

/// Flags of `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container id
    pub id: String,
    /// Command and arguments (unless --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// JSON file with the process to run (an OCI process object)
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-TTY (needs --console-socket)
    #[arg(short, long)]
    pub tty: bool,
    /// Return once the process runs
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// UNIX socket that receives the pty master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// User: UID[:GID]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_NET_ADMIN)
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// AppArmor profile
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Pass N extra file descriptors
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec even if the container is paused (the process starts frozen)
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
}

/// Flags of `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Container id
    pub id: String,
    /// table (runs ps) or json (pids)
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Options for ps(1) (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// Flags of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print ids only
    #[arg(short, long)]
    pub quiet: bool,
    /// table or json
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

/// Flags of `spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Bundle directory to write config.json into
    #[arg(short, long)]
    pub bundle: Option<PathBuf>,
    /// Write a spec for an unprivileged user (user namespace, no network namespace)
    #[arg(long = "rootless", id = "spec_rootless")]
    pub rootless: bool,
}

/// Flags of `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Container id
    pub id: String,
    /// JSON file with linux.resources ("-" for stdin)
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix)
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Memory + swap limit (-1 for unlimited)
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// CPU CFS period (µs)
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota (µs, -1 for none)
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    /// Realtime period (µs)
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime (µs)
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs allowed (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of pids (-1 or 0 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
}

/// Flags of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Container id
    pub id: String,
    /// Print one statistics event and exit
    #[arg(long)]
    pub stats: bool,
    /// Interval between statistics events (e.g. 5s, 500ms)
    #[arg(long, default_value = "5s")]
    pub interval: String,
}
