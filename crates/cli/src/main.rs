//! `berth`: a docker-compatible command-line client. It speaks the Docker
//! Engine API over HTTP to berthd or any dockerd, and nothing else.

mod cli;
mod client;
mod commands;
mod container_opts;
mod format;
mod progress;
mod stdcopy;
mod template;
mod tty;
mod units;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Cmd};
use crate::client::{ApiError, Client, Host};

/// An error that ends the program with a given exit code; `message` (if
/// any) is printed first.
#[derive(Debug)]
pub struct StatusError {
    pub code: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for StatusError {}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Usage errors exit 125, like docker's flag errors; help and
            // version print and succeed.
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if cli.version {
        println!(
            "berth version {}, API {}",
            env!("CARGO_PKG_VERSION"),
            client::MAX_API_VERSION
        );
        return;
    }
    let Some(cmd) = cli.cmd else {
        let _ = Cli::command().print_help();
        std::process::exit(125);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let is_run = matches!(cmd, Cmd::Run(_) | Cmd::Create(_));
    let code = rt.block_on(async move {
        let res = dispatch(cli.host.as_deref(), cli.debug, cmd).await;
        match res {
            Ok(code) => code,
            Err(e) => report(&e, is_run),
        }
    });
    // Flushes what Rust buffered; the stdin reader thread (if any) must not
    // keep the process alive, so exit explicitly.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Prints an error the way docker does and returns the exit code.
fn report(e: &anyhow::Error, is_run: bool) -> i32 {
    if let Some(s) = e.downcast_ref::<StatusError>() {
        if let Some(m) = &s.message {
            eprintln!("{m}");
        }
        return s.code;
    }
    let prefix = if is_run { "berth: " } else { "" };
    if let Some(api) = e.downcast_ref::<ApiError>() {
        eprintln!("{prefix}{api}");
    } else if e.chain().count() > 1 && e.root_cause().downcast_ref::<ApiError>().is_some() {
        eprintln!("{prefix}{e:#}");
    } else {
        eprintln!("{prefix}Error: {e:#}");
    }
    if is_run {
        eprintln!("\nRun 'berth run --help' for more information");
        125
    } else {
        1
    }
}

async fn dispatch(host: Option<&str>, debug: bool, cmd: Cmd) -> anyhow::Result<i32> {
    use commands::{container, image, run, system};
    if let Cmd::Completion(a) = &cmd {
        let mut c = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(a.shell, &mut c, "berth", &mut script);
        commands::out(&String::from_utf8_lossy(&script))?;
        return Ok(0);
    }
    if let Cmd::Version(a) = &cmd {
        // The client half prints even when the daemon is unreachable.
        return commands::system::version(Host::resolve(host)?, debug, a).await;
    }
    let client = Client::connect(Host::resolve(host)?, debug).await?;
    let c = &client;
    match cmd {
        Cmd::Run(a) => run::run(c, a).await,
        Cmd::Create(a) => run::create(c, a).await,
        Cmd::Start(a) => run::start(c, a).await,
        Cmd::Attach(a) => run::attach(c, a).await,
        Cmd::Exec(a) => run::exec(c, a).await,
        Cmd::Stop(a) => container::stop(c, a, false).await,
        Cmd::Restart(a) => container::stop(c, a, true).await,
        Cmd::Kill(a) => container::kill(c, a).await,
        Cmd::Rm(a) => container::rm(c, a).await,
        Cmd::Ps(a) | Cmd::Container(cli::ContainerCmd::Ls(a)) => container::ps(c, a).await,
        Cmd::Logs(a) => container::logs(c, a).await,
        Cmd::Wait(a) => container::wait(c, a).await,
        Cmd::Inspect(a) => container::inspect(c, a).await,
        Cmd::Top(a) => container::top(c, a).await,
        Cmd::Cp(a) => container::cp(c, a).await,
        Cmd::Commit(a) => container::commit(c, a).await,
        Cmd::Rename(a) => container::rename(c, a).await,
        Cmd::Pause(a) => container::simple(c, a, "pause").await,
        Cmd::Unpause(a) => container::simple(c, a, "unpause").await,
        Cmd::Update(a) => container::update(c, a).await,
        Cmd::Port(a) => container::port(c, a).await,
        Cmd::Network(n) => commands::network::run(c, n).await,
        Cmd::Diff(a) => container::diff(c, a).await,
        Cmd::Export(a) => container::export(c, a).await,
        Cmd::Stats(a) => container::stats(c, a).await,
        Cmd::Container(cli::ContainerCmd::Prune(a)) => container::prune(c, a).await,
        Cmd::Images(a) | Cmd::Image(cli::ImageCmd::Ls(a)) => image::images(c, a).await,
        Cmd::Image(cli::ImageCmd::Prune(a)) => image::prune(c, a).await,
        Cmd::Rmi(a) => image::rmi(c, a).await,
        Cmd::Tag(a) => image::tag(c, a).await,
        Cmd::Pull(a) => image::pull(c, a).await,
        Cmd::Push(a) => image::push(c, a).await,
        Cmd::Load(a) => image::load(c, a).await,
        Cmd::Save(a) => image::save(c, a).await,
        Cmd::Import(a) => image::import(c, a).await,
        Cmd::Info(a) | Cmd::System(cli::SystemCmd::Info(a)) => system::info(c, a).await,
        Cmd::Events(a) | Cmd::System(cli::SystemCmd::Events(a)) => system::events(c, a).await,
        Cmd::System(cli::SystemCmd::Df(a)) => system::df(c, a).await,
        Cmd::System(cli::SystemCmd::Prune(a)) => system::prune(c, a).await,
        Cmd::Volume(v) => commands::volume::run(c, v).await,
        Cmd::Completion(_) | Cmd::Version(_) => Ok(0),
    }
}
