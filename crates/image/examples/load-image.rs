//! `docker load` as berth does it, without the daemon: load a docker-archive
//! or OCI layout tarball into an image store and unpack every image it
//! holds into snapshots (what dockerd does at load time), then print how
//! long it took and the process's peak RSS.
//!
//! ```sh
//! cargo build --release --example load-image -p berth-image
//! target/release/examples/load-image ARCHIVE STORE_DIR
//! ```
//!
//! STORE_DIR is created if missing (`content/`, `state.redb`, `snapshots/`).
//! The output is one `key=value` line, read by `bench/layer-apply.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use berth_image::archive::{LoadOptions, load};
use berth_image::layer::ApplyOptions;
use berth_image::snapshot::Snapshotter;
use berth_image::store::{ImageStore, Platform};

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to a writable rusage; getrusage only fills it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return -1;
    }
    // SAFETY: zero-initialised and, on success, filled by the kernel.
    let usage = unsafe { usage.assume_init() };
    usage.ru_maxrss
}

fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: load-image ARCHIVE STORE_DIR";
    let archive = PathBuf::from(args.next().ok_or(usage)?);
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    if args.next().is_some() {
        return Err(usage.into());
    }
    let file =
        std::fs::File::open(&archive).map_err(|e| format!("open {}: {e}", archive.display()))?;
    let start = Instant::now();
    let store = ImageStore::open(&dir).map_err(|e| format!("open store: {e}"))?;
    let snaps = Snapshotter::open(&dir.join("snapshots"), store.db().clone(), None)
        .map_err(|e| format!("open snapshotter: {e}"))?;
    let report = load(
        &store,
        std::io::BufReader::with_capacity(1 << 20, file),
        &LoadOptions::default(),
    )
    .map_err(|e| format!("load: {e}"))?;
    let loaded = start.elapsed().as_secs_f64();
    let host = Platform::host();
    let mut tops = Vec::new();
    for image in &report.images {
        let top = store
            .unpack(&snaps, &image.target, &host, &ApplyOptions::default())
            .map_err(|e| format!("unpack {}: {e}", image.name))?;
        tops.push(top.unwrap_or_else(|| "-".into()));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "images={} top={} load_seconds={:.3} seconds={:.3} peak_rss_kib={}",
        report.images.len(),
        tops.join(","),
        loaded,
        secs,
        peak_rss_kib(),
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load-image: {e}");
            ExitCode::FAILURE
        }
    }
}
