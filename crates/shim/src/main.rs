//! berth-shim: `berth-shim --zygote` for berthd, or `berth-shim --exec
//! <job>` for the monitor. See the crate documentation, `berth_shim::launch`
//! and `berth_shim::proto` for what it does and how berthd talks to it.

mod exec;
mod spawn;
mod zygote;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "--exec" {
        std::process::exit(exec::run(std::path::Path::new(&args[2])));
    }
    if (2..=3).contains(&args.len()) && args[1] == berth_shim::launch::ZYGOTE_ARG {
        std::process::exit(zygote::run());
    }
    eprintln!(
        "usage: berth-shim --zygote [<root>]\n\n\
         Runs containers for berthd, which starts it with a socket as stdin and\n\
         sends a container's state directory for each one (<root>, where those\n\
         are, only names the zygote's daemon in `ps`). For each, a child\n\
         reads <state-dir>/shim.json, creates the container through the runtime\n\
         library, reports `ok <shim pid> <init pid>` (or `error <message>`) to\n\
         berthd, becomes berth-shim-monitor (found beside berth-shim) and serves\n\
         <state-dir>/shim.sock until the container has exited. The zygote ends\n\
         when berthd does; the containers and their shims do not.\n\
         It is started by berthd, not by hand. (`berth-shim --exec <job>` runs\n\
         an exec for the monitor.)"
    );
    std::process::exit(2);
}
