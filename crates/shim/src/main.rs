//! berth-shim: `berth-shim <state-dir>`, or `berth-shim --exec <job>` for
//! the monitor. See the crate documentation and `berth_shim::proto` for
//! what it does and how berthd talks to it.

mod exec;
mod spawn;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "--exec" {
        std::process::exit(exec::run(std::path::Path::new(&args[2])));
    }
    if args.len() != 2 || args[1] == "--help" || args[1] == "-h" {
        eprintln!(
            "usage: berth-shim <state-dir>\n\n\
             Runs one container for berthd: reads <state-dir>/shim.json, creates the\n\
             container through the runtime library, reports `ok <shim pid> <init pid>`\n\
             (or `error <message>`) on stdout, and then, as berth-shim-monitor (found\n\
             beside berth-shim), serves <state-dir>/shim.sock from the background\n\
             until the container has exited. It is started by berthd, not by hand.\n\
             (`berth-shim --exec <job>` runs an exec for the monitor.)"
        );
        std::process::exit(2);
    }
    std::process::exit(spawn::run(std::path::Path::new(&args[1])));
}
