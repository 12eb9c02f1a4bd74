//! Attach and logs.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_shim::proto::{LogLine, Request};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::ContainerService;
use super::record::Status;
use super::shim::Shim;
use crate::error::EngineError;

/// An attach made before start: start connects it.
#[derive(Debug)]
pub(crate) struct PendingAttach {
    req: Request,
    tx: oneshot::Sender<Result<UnixStream, EngineError>>,
}

impl PendingAttach {
    pub(crate) async fn connect(self, shim: &Shim) {
        let _ = self.tx.send(shim.call_ok(&self.req).await);
    }
}

/// Where an attach's stream comes from.
#[derive(Debug)]
pub enum AttachStream {
    /// Connected to a running container's shim: shim frames out, raw
    /// stdin in.
    Live(UnixStream),
    /// Connected when the container starts.
    Pending(oneshot::Receiver<Result<UnixStream, EngineError>>),
    /// The container is not running and will not be: nothing to stream.
    Ended,
}

/// Which stream a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// stdout (all output of a TTY container).
    Stdout,
    /// stderr.
    Stderr,
}

/// `/logs` parameters.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
    /// Only entries at or after this Unix time (seconds, fractional).
    pub since: Option<f64>,
    /// Only entries before this Unix time.
    pub until: Option<f64>,
    /// Only the last N entries.
    pub tail: Option<usize>,
    /// Keep streaming until the container stops.
    pub follow: bool,
}

/// One log entry.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Its stream.
    pub stream: StreamKind,
    /// RFC 3339 nanoseconds.
    pub time: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl ContainerService {
    /// `POST /containers/{id}/attach`: a stream of the container's stdio.
    pub async fn attach(
        self: &Arc<Self>,
        name_or_id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(AttachStream, bool, String), EngineError> {
        let r = self.get(name_or_id)?;
        let req = Request::Attach {
            stdin,
            stdout,
            stderr,
        };
        let tty = r.config.tty;
        let waits = |s: Status| matches!(s, Status::Created | Status::Restarting | Status::Exited);
        let mut status = r.state.status;
        if waits(status) {
            // Queued for the next start, unless it runs already: read again
            // under the queue's lock, which a start takes (for the last
            // time) only once its record says it runs, so the request is
            // either taken by that start or sees it running.
            let (tx, rx) = oneshot::channel();
            let slot = self.slot(&r.id);
            let mut pending = slot.pending.lock().unwrap_or_else(|p| p.into_inner());
            status = self
                .records
                .get(&r.id)?
                .map_or(Status::Dead, |now| now.state.status);
            if waits(status) {
                pending.push(PendingAttach { req, tx });
                drop(pending);
                self.event(&r, "attach", &[]);
                return Ok((AttachStream::Pending(rx), tty, r.id));
            }
        }
        let stream = match status {
            Status::Running | Status::Paused => {
                let shim = Shim::new(self.paths.bundle(&r.id));
                AttachStream::Live(shim.call_ok(&req).await?)
            }
            _ => AttachStream::Ended,
        };
        self.event(&r, "attach", &[]);
        Ok((stream, tty, r.id))
    }

    /// Drops attach requests still waiting for a start of `id` (the client left).
    pub fn cancel_pending_attach(&self, id: &str) {
        let slot = self.slot(id);
        slot.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| !p.tx.is_closed());
    }

    /// Resizes the container's terminal.
    pub async fn resize(
        &self,
        name_or_id: &str,
        height: u16,
        width: u16,
    ) -> Result<(), EngineError> {
        let r = self.get(name_or_id)?;
        if !r.state.status.is_live() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        Shim::new(self.paths.bundle(&r.id))
            .call_ok(&Request::Resize {
                exec_id: None,
                height,
                width,
            })
            .await
            .map(drop)
    }

    /// `GET /containers/{id}/logs`: the entries, then (with `follow`) new
    /// ones until the container stops. Returns whether it has a TTY.
    pub fn logs(
        self: &Arc<Self>,
        name_or_id: &str,
        opts: LogOptions,
    ) -> Result<(mpsc::Receiver<LogEntry>, bool), EngineError> {
        let r = self.get(name_or_id)?;
        if r.host_config.log_config.kind == "none" {
            return Err(EngineError::InvalidArgument(
                "configured logging driver does not support reading".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(256);
        let svc = self.clone();
        let path = PathBuf::from(&r.log_path);
        let id = r.id.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = read_logs(&svc, &id, &path, &opts, &tx) {
                tracing::debug!(container = %id, error = %e, "logs ended");
            }
        });
        Ok((rx, r.config.tty))
    }
}

fn parse_time(s: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
}

fn entry(line: &str, opts: &LogOptions) -> Option<LogEntry> {
    let l: LogLine = serde_json::from_str(line).ok()?;
    let stream = match l.stream.as_str() {
        "stderr" => StreamKind::Stderr,
        _ => StreamKind::Stdout,
    };
    if (stream == StreamKind::Stdout && !opts.stdout)
        || (stream == StreamKind::Stderr && !opts.stderr)
    {
        return None;
    }
    if opts.since.is_some() || opts.until.is_some() {
        let t = parse_time(&l.time)?;
        if opts.since.is_some_and(|s| t < s) || opts.until.is_some_and(|u| t >= u) {
            return None;
        }
    }
    Some(LogEntry {
        stream,
        time: l.time,
        bytes: l.log.into_bytes(),
    })
}

/// The log files, oldest first.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for n in (1..100).rev() {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if p.exists() {
            v.push(p);
        }
    }
    v.push(path.to_path_buf());
    v
}

fn read_logs(
    svc: &ContainerService,
    id: &str,
    path: &Path,
    opts: &LogOptions,
    tx: &mpsc::Sender<LogEntry>,
) -> Result<(), String> {
    let send = |e: LogEntry| tx.blocking_send(e).map_err(|_| "client gone".to_string());
    // Everything so far (the current file stays open to follow it).
    let mut entries: Vec<LogEntry> = Vec::new();
    let files = log_files(path);
    let mut current: Option<(BufReader<std::fs::File>, u64)> = None;
    for f in &files {
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        let ino = std::os::unix::fs::MetadataExt::ino(&file.metadata().map_err(|e| e.to_string())?);
        let mut rd = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            match rd.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) if line.ends_with('\n') => {
                    if let Some(e) = entry(&line, opts) {
                        entries.push(e);
                    }
                }
                Ok(n) => {
                    // A line being written: read it again later.
                    let back = i64::try_from(n).unwrap_or(0);
                    let _ = rd.seek(SeekFrom::Current(-back));
                    break;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if f == path {
            current = Some((rd, ino));
        }
    }
    let skip = match opts.tail {
        Some(n) => entries.len().saturating_sub(n),
        None => 0,
    };
    for e in entries.into_iter().skip(skip) {
        send(e)?;
    }
    if !opts.follow || opts.until.is_some() {
        return Ok(());
    }
    let live = || match svc.records.get(id) {
        Ok(Some(r)) => r.state.status.is_live() || r.state.status == Status::Restarting,
        _ => false,
    };
    let mut line = String::new();
    let mut last_pass = false;
    loop {
        let mut got = false;
        if let Some((rd, ino)) = &mut current {
            loop {
                line.clear();
                match rd.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) if line.ends_with('\n') => {
                        got = true;
                        if let Some(e) = entry(&line, opts) {
                            send(e)?;
                        }
                    }
                    Ok(n) => {
                        let back = i64::try_from(n).unwrap_or(0);
                        let _ = rd.seek(SeekFrom::Current(-back));
                        break;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            // Rotated: go on with the new file.
            if let Ok(m) = std::fs::metadata(path)
                && std::os::unix::fs::MetadataExt::ino(&m) != *ino
                && let Ok(f) = std::fs::File::open(path)
            {
                *ino = std::os::unix::fs::MetadataExt::ino(&m);
                *rd = BufReader::new(f);
                continue;
            }
        } else if let Ok(f) = std::fs::File::open(path) {
            let ino = f
                .metadata()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap_or(0);
            current = Some((BufReader::new(f), ino));
            continue;
        }
        if tx.is_closed() {
            return Ok(());
        }
        if last_pass {
            return Ok(());
        }
        if !got {
            if !live() {
                // One more pass for what the shim wrote before the exit.
                last_pass = true;
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
