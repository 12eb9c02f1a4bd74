//! Apply one layer blob (gzip, zstd or plain tar) to a directory and print
//! what was done, how fast, and the process's peak RSS.
//!
//! ```sh
//! cargo build --release --example apply-layer -p berth-image
//! target/release/examples/apply-layer LAYER DEST [--no-diff-id] [--no-owners]
//! ```
//!
//! DEST is created if missing. The output is one `key=value` line, read by
//! `bench/layer-apply.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use berth_image::layer::{ApplyOptions, apply_layer};

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
    let usage = "usage: apply-layer LAYER DEST [--no-diff-id] [--no-owners]";
    let layer = PathBuf::from(args.next().ok_or(usage)?);
    let dest = PathBuf::from(args.next().ok_or(usage)?);
    let mut opts = ApplyOptions::default();
    for a in args {
        match a.to_str() {
            Some("--no-diff-id") => opts.compute_diff_id = false,
            Some("--no-owners") => opts.preserve_owners = false,
            _ => return Err(format!("unknown argument {a:?}; {usage}")),
        }
    }
    std::fs::create_dir_all(&dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
    let file = std::fs::File::open(&layer).map_err(|e| format!("open {}: {e}", layer.display()))?;
    let compressed = file
        .metadata()
        .map_err(|e| format!("stat {}: {e}", layer.display()))?
        .len();
    let start = Instant::now();
    let stats = apply_layer(file, &dest, &opts).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "compression={:?} diff_id={} entries={} files={} dirs={} symlinks={} hardlinks={} \
         bytes={} compressed={} seconds={:.3} MBps_compressed={:.1} MBps_content={:.1} \
         peak_rss_kib={}",
        stats.compression,
        stats.diff_id.as_deref().unwrap_or("-"),
        stats.entries,
        stats.files,
        stats.dirs,
        stats.symlinks,
        stats.hardlinks,
        stats.bytes,
        compressed,
        secs,
        mb(compressed) / secs,
        mb(stats.bytes) / secs,
        peak_rss_kib(),
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apply-layer: {e}");
            ExitCode::FAILURE
        }
    }
}
