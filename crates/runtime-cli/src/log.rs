//! Logging as runc does it: text or JSON lines to --log (or stderr), so
//! containerd's shim can read the last error from the log file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Where the final error goes.
#[derive(Debug)]
pub struct Logger {
    file: Option<Mutex<File>>,
    json: bool,
}

impl Logger {
    /// Set up tracing for the library's warnings and remember the log file.
    pub fn init(path: Option<&Path>, format: &str, debug: bool) -> Logger {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        let level = if debug {
            tracing::Level::DEBUG
        } else {
            tracing::Level::WARN
        };
        let json = format == "json";
        let builder = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_target(false)
            .without_time();
        match file.as_ref().and_then(|f| f.try_clone().ok()) {
            Some(f) if json => {
                let _ = builder.json().with_writer(Mutex::new(f)).try_init();
            }
            Some(f) => {
                let _ = builder.with_writer(Mutex::new(f)).try_init();
            }
            None => {
                let _ = builder.with_writer(std::io::stderr).try_init();
            }
        }
        Logger {
            file: file.map(Mutex::new),
            json,
        }
    }

    /// Report the error that ends the command: one line on stderr, and in
    /// the log file when there is one.
    pub fn error(&self, msg: &str) {
        eprintln!("berth-runtime: {msg}");
        let Some(file) = &self.file else { return };
        let Ok(mut f) = file.lock() else { return };
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        } else {
            format!("time=\"{time}\" level=error msg={msg:?}")
        };
        let _ = writeln!(f, "{line}");
    }
}
