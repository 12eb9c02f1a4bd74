//! berth-shim: `berth-shim <state-dir>`. See the crate documentation and
//! `berth_shim::proto` for what it does and how berthd talks to it.

mod logs;
mod server;
mod spawn;
mod stdio;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() != 2 || args[1] == "--help" || args[1] == "-h" {
        eprintln!(
            "usage: berth-shim <state-dir>\n\n\
             Runs one container for berthd: reads <state-dir>/shim.json, creates the\n\
             container through the runtime library, reports `ok <shim pid> <init pid>`\n\
             (or `error <message>`) on stdout, and then serves <state-dir>/shim.sock\n\
             from the background until the container has exited. It is started by\n\
             berthd, not by hand."
        );
        std::process::exit(2);
    }
    std::process::exit(spawn::run(std::path::Path::new(&args[1])));
}
