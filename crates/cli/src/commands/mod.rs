//! The verbs, grouped by what they act on.

pub mod container;
pub mod cp;
pub mod image;
pub mod network;
pub mod run;
pub mod stats;
pub mod system;
pub mod volume;

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use crate::StatusError;
use crate::format::render_rows;

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Writes to stdout (a closed pipe ends quietly).
pub fn out(s: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Prints rows with a `--format` value (see [`render_rows`]).
pub fn print_rows(format: &str, rows: &[Value], header: &Value) -> Result<()> {
    out(&render_rows(format, rows, header)?)
}

/// Runs `f` for each name the way docker's multi-target verbs do: print
/// what succeeded on stdout, collect the errors, exit 1 if any failed.
pub async fn for_each<F, Fut>(names: &[String], mut f: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let mut errs = Vec::new();
    for n in names {
        match f(n.clone()).await {
            Ok(Some(line)) => out(&format!("{line}\n"))?,
            Ok(None) => {}
            Err(e) => errs.push(error_text(&e)),
        }
    }
    if errs.is_empty() {
        Ok(0)
    } else {
        Err(StatusError {
            code: 1,
            message: Some(errs.join("\n")),
        }
        .into())
    }
}

/// The one-line text of an error, as docker prints it.
pub fn error_text(e: &anyhow::Error) -> String {
    if let Some(api) = e.downcast_ref::<crate::client::ApiError>() {
        api.to_string()
    } else {
        format!("Error: {e:#}")
    }
}

/// Asks "[y/N]" on the terminal; anything but y/yes is no.
pub fn confirm(warning: &str) -> Result<bool> {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let a = line.trim().to_ascii_lowercase();
    Ok(a == "y" || a == "yes")
}

/// A container or image name as a path segment.
pub fn seg(name: &str) -> String {
    crate::units::pct_path(name)
}
