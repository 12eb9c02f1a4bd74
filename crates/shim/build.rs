//! Links berth-shim-monitor with the code it never runs set apart, so that
//! it stays out of every monitor's resident memory (monitor-cold.ld says
//! how and why).

fn main() {
    println!("cargo:rerun-if-changed=monitor-cold.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let script = std::path::Path::new(&dir).join("monitor-cold.ld");
    // -Xlinker pairs, not -Wl: a comma in the path must not split it.
    for arg in ["-Xlinker", "-T", "-Xlinker"] {
        println!("cargo:rustc-link-arg-bin=berth-shim-monitor={arg}");
    }
    println!(
        "cargo:rustc-link-arg-bin=berth-shim-monitor={}",
        script.display()
    );
}
