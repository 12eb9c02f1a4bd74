//! berth-shim (not yet written: see the crate's lib for its contract).

fn main() {
    eprintln!("berth-shim: not implemented yet");
    std::process::exit(1);
}
