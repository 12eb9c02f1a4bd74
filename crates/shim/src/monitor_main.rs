//! berth-shim-monitor: `berth-shim-monitor <state-dir> <handoff>`, executed
//! by berth-shim once the container exists. See `berth_shim::proto`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || args[1] == "--help" || args[1] == "-h" {
        eprintln!(
            "usage: berth-shim-monitor <state-dir> <handoff>\n\n\
             Serves one container for berthd: its stdio, json-file log, attach,\n\
             exec and exit status. berth-shim executes it after creating the\n\
             container, with the descriptors named in <handoff> (JSON) open;\n\
             it is not run by hand."
        );
        std::process::exit(2);
    }
    let code = match berth_shim::monitor::run(std::path::Path::new(&args[1]), &args[2]) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("berth-shim-monitor: {e}");
            1
        }
    };
    std::process::exit(code);
}
