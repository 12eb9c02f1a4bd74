//! The command line: docker's verbs and flags (clap derive).

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::container_opts::ContainerOpts;

/// berth: a docker-compatible client for berthd (or any Docker Engine API daemon).
///
/// The daemon is found from -H/--host, else $BERTH_HOST, else $DOCKER_HOST,
/// else unix:///run/berth/berth.sock.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Daemon socket to connect to (unix:///path or tcp://host:port)
    #[arg(short = 'H', long, global = true, value_name = "HOST")]
    pub host: Option<String>,
    /// Print each API request on stderr
    #[arg(short = 'D', long, global = true)]
    pub debug: bool,
    /// Print version information and quit
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create and run a new container from an image
    ///
    /// Pulls the image if it is missing, attaches to the container's output
    /// (and input with -i), starts it, and exits with its exit code. With -d
    /// prints the container id and returns at once.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container (without starting it); prints its id
    #[command(disable_help_flag = true)]
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers (SIGTERM, then SIGKILL after the timeout)
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers (SIGKILL unless -s)
    Kill(KillArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers (running only, unless -a)
    #[command(alias = "ls")]
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    #[command(disable_help_flag = true)]
    Exec(ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Return low-level information on containers or images (JSON)
    Inspect(InspectArgs),
    /// List images
    Images(ImagesArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Copy files/folders between a container and the local filesystem
    ///
    /// Use '-' as the source to read a tar archive from stdin and extract it
    /// to a directory destination in a container, or as the destination to
    /// write a tar archive of the container source to stdout.
    Cp(CpArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Update configuration (resources, restart policy) of one or more containers
    Update(UpdateArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(OneArg),
    /// Manage berth: disk usage, pruning
    #[command(subcommand)]
    System(SystemCmd),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(crate::commands::network::NetworkCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(crate::commands::volume::VolumeCmd),
    /// Show the client and server version information
    Version(FormatArg),
    /// Display system-wide information
    Info(FormatArg),
    /// Generate the autocompletion script for the specified shell
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Proxy received signals to the process (non-TTY mode only)
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub opts: ContainerOpts,
    /// The image to run
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOpts,
    /// The image to create the container from
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "timeout",
        alias = "time",
        allow_hyphen_values = true
    )]
    pub timeout: Option<i64>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args, Default)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", allow_hyphen_values = true)]
    pub last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    /// Filter output based on conditions provided (KEY=VALUE)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    pub until: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Print the help for this command
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    pub container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct OneArg {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only inspect objects of the given type (container or image)
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args, Default)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Only images matching this reference ([REPOSITORY[:TAG]])
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Push all tags of the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// A tar file, '-' for STDIN, or a URL
    pub source: String,
    /// REPOSITORY[:TAG] for the new image
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json' or a Go template)
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
    /// ps options (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or a local path ('-' for a tar on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH or a local path ('-' for a tar on stdout)
    pub dest: String,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

#[derive(Debug, Args)]
pub struct FormatArg {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to generate the script for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>')
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub prune: PruneArgs,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    #[command(flatten)]
    pub prune: PruneArgs,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Show berth disk usage
    Df(DfArgs),
    /// Remove unused data: stopped containers, unused networks, dangling images, build cache
    Prune(SystemPruneArgs),
    /// Display system-wide information
    Info(FormatArg),
    /// Get real time events from the server
    Events(EventsArgs),
}

#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(PsArgs),
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Remove unused images
    Prune(ImagePruneArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
}
