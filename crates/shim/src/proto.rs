//! The shim's contract with berthd.
//!
//! **Files** in the shim's state directory (one per container, made by
//! berthd): [`CONFIG`] (a [`ShimConfig`], written by berthd before the
//! spawn), [`SOCKET`] (the shim listens there), [`PID_FILE`] (the shim's
//! pid and start time), [`EXIT_FILE`] (an [`ExitStatus`], written atomically
//! once the container has exited, before the shim goes away) and
//! [`SHIM_LOG`] (the shim's own diagnostics).
//!
//! **Spawn**: berthd asks its zygote (`berth-shim --zygote`, see
//! [`crate::launch`]) for a shim on the state directory. The zygote forks
//! a child that becomes the shim (new session, subreaper), creates the
//! container through the runtime library (its init waits for `start`) and
//! binds the socket. It then writes the one line berthd reads on the
//! report pipe it sent, [`ready_line`] or [`error_line`], and executes
//! [`MONITOR`] (a small program without the runtime library in it) with a
//! [`Handoff`]: the same process, still the init's parent, serves the
//! container for the rest of its life. berthd goes on with the start
//! during the exec: requests wait in the bound socket's backlog, and an
//! exit before the monitor runs waits as a pending SIGCHLD. The shim is
//! not berthd's child.
//!
//! **Lifecycle** is berthd's, through the runtime library: it starts the
//! container, signals it, and deletes the runtime's state once the shim
//! has reported the exit. The shim keeps the init's stdio, the log and the
//! exit status; it runs execs through `berth-shim --exec` ([`ExecJob`]).
//!
//! **Socket**: each connection sends one [`Request`] as a JSON line and gets
//! one [`Reply`] as a JSON line. After `Reply::Ok` to [`Request::Attach`] or
//! [`Request::Exec`] the connection becomes a stream: the shim sends
//! [`Frame`]s (stdout, stderr, and a last [`Frame::Exit`]), the client sends
//! raw stdin bytes, and a client half-close (shutdown of its write side)
//! is stdin's EOF.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The shim's configuration, `<state-dir>/shim.json`.
pub const CONFIG: &str = "shim.json";
/// The shim's socket, `<state-dir>/shim.sock`.
pub const SOCKET: &str = "shim.sock";
/// `<pid> <start time in clock ticks>` of the shim.
pub const PID_FILE: &str = "shim.pid";
/// The container's [`ExitStatus`], written when it has exited.
pub const EXIT_FILE: &str = "exit.json";
/// The shim's own log.
pub const SHIM_LOG: &str = "shim.log";

/// What the shim runs and how (written by berthd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The runtime container id (berth uses the full 64-hex container id).
    pub id: String,
    /// The OCI bundle: `config.json` and the mounted root filesystem.
    pub bundle: PathBuf,
    /// The runtime's state root (`--root` of berth-runtime).
    pub runtime_root: PathBuf,
    /// Where the container's output goes; `None` discards it (log driver `none`).
    pub log: Option<LogConfig>,
    /// The container has a pseudo-terminal (`process.terminal` in the spec).
    pub tty: bool,
    /// Keep stdin open (`-i`); otherwise the container's stdin is /dev/null.
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client's stdin ends.
    pub stdin_once: bool,
    /// Initial terminal size (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// Where compiled seccomp programs are kept for the next container
    /// (nearly all share Docker's default profile); `None`: not kept.
    #[serde(default)]
    pub seccomp_cache: Option<PathBuf>,
}

/// The json-file log driver's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// The current log file; rotated files are `<path>.1`, `<path>.2`, ….
    pub path: PathBuf,
    /// Rotate when the file would exceed this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// How many files to keep in all, the current one included (≥ 1).
    pub max_file: u32,
}

/// One line of a json-file log, as Docker writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The bytes, as a string (invalid UTF-8 replaced), newline included.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
}

/// A request to the shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Reply: `State`.
    State,
    /// Reply `Exited` once the container has exited (at once if it has).
    Wait,
    /// Attach to the container's stdio. Reply `Ok`, then a stream. Output
    /// produced before the attach is not replayed (it is in the log).
    Attach {
        /// Send the client's bytes to the container's stdin.
        stdin: bool,
        /// Send stdout frames.
        stdout: bool,
        /// Send stderr frames.
        stderr: bool,
    },
    /// Resize the container's terminal, or an exec's when `exec_id` is set.
    Resize {
        /// The exec, or the container when absent.
        exec_id: Option<String>,
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
    /// Run a process in the container. Reply `Ok` once it runs (or `Error`),
    /// then a stream that ends with its `Frame::Exit`.
    Exec {
        /// berthd's exec id (for `Resize`).
        exec_id: String,
        /// The process (args, env, cwd, user, capabilities, terminal): an
        /// OCI `process` object, passed to the runtime as it is.
        process: serde_json::Value,
        /// Connect the client's bytes to the process's stdin.
        stdin: bool,
        /// Initial terminal size (rows, columns) when `process.terminal`.
        console_size: Option<(u16, u16)>,
    },
}

/// The shim's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Ok,
    /// Failed; the message is for the user.
    Error {
        /// What went wrong.
        message: String,
    },
    /// The container's state.
    State(ShimState),
    /// The container has exited.
    Exited(ExitStatus),
}

/// The container as the shim sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    /// `running` until the init has exited, then `stopped` (whether it
    /// was started, or is paused, is the runtime's to say).
    pub status: String,
    /// The init's host pid.
    pub pid: i32,
    /// Set once the container has exited.
    pub exit: Option<ExitStatus>,
}

/// What `berth-shim` hands to `berth-shim-monitor` when it executes it
/// (the monitor's second argument, as JSON): the descriptors it keeps
/// open across the exec and what it learnt creating the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The container init's host pid (the monitor's child).
    pub init_pid: i32,
    /// The runtime's exec FIFO: while it exists the container is created,
    /// not started, and execs are refused.
    pub exec_fifo: PathBuf,
    /// The bound, listening [`SOCKET`].
    pub listener: i32,
    /// Read ends of the container's stdout and stderr (a terminal: its
    /// master, as stdout).
    pub out: [Option<i32>; 2],
    /// Write end of the container's stdin (a terminal: its master).
    pub stdin: Option<i32>,
    /// The terminal master, for resizes.
    pub master: Option<i32>,
    /// The cgroup file whose `oom_kill N` line counts OOM kills.
    pub oom_file: Option<PathBuf>,
    /// Its count when the container was created.
    pub oom_base: u64,
    /// The json-file log, opened for appending ([`ShimConfig::log`]).
    pub log: Option<i32>,
}

/// An exec for `berth-shim --exec <file>`: the monitor writes it to a file
/// in the state directory and runs berth-shim with the process's stdio on
/// fds 0-2 and a report pipe on fd 3, where it writes [`ready_line`]'s
/// `ok <helper pid> <process pid>` or an [`error_line`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecJob {
    /// The runtime's state root.
    pub root: PathBuf,
    /// The container's runtime id.
    pub id: String,
    /// The OCI process.
    pub process: serde_json::Value,
    /// Where the runtime sends the terminal master, for a terminal.
    pub console_socket: Option<PathBuf>,
    /// As [`ShimConfig::seccomp_cache`].
    pub seccomp_cache: Option<PathBuf>,
}

/// The file of the monitor's program, beside `berth-shim`.
pub const MONITOR: &str = "berth-shim-monitor";

/// How the container (or an exec'd process) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, 128+N when killed by signal N.
    pub code: i32,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// When it was seen to exit (RFC 3339, nanoseconds).
    pub finished_at: String,
}

/// A frame of an attach or exec stream, shim → client. On the wire: one
/// byte of kind, three zero bytes, a big-endian u32 length, the payload
/// (the layout of Docker's multiplexed stream, plus an exit kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes the process wrote to stdout (all output when it has a TTY).
    Stdout(Vec<u8>),
    /// Bytes the process wrote to stderr.
    Stderr(Vec<u8>),
    /// The last frame: how the process ended (payload: JSON [`ExitStatus`]).
    Exit(ExitStatus),
}

/// Frame kind bytes.
pub const KIND_STDOUT: u8 = 1;
/// See [`KIND_STDOUT`].
pub const KIND_STDERR: u8 = 2;
/// See [`KIND_STDOUT`].
pub const KIND_EXIT: u8 = 0xff;
/// The largest payload a frame may declare.
pub const MAX_FRAME: u32 = 1 << 20;

impl Frame {
    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Stdout(b) => (KIND_STDOUT, b.as_slice().into()),
            Frame::Stderr(b) => (KIND_STDERR, b.as_slice().into()),
            Frame::Exit(s) => (KIND_EXIT, serde_json::to_vec(s).unwrap_or_default().into()),
        };
        let mut out = Vec::with_capacity(8 + payload.len());
        out.extend_from_slice(&header(kind, payload.len()));
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes a frame from its header and payload.
    pub fn decode(head: [u8; 8], payload: Vec<u8>) -> Result<Frame, String> {
        match head[0] {
            KIND_STDOUT => Ok(Frame::Stdout(payload)),
            KIND_STDERR => Ok(Frame::Stderr(payload)),
            KIND_EXIT => serde_json::from_slice(&payload)
                .map(Frame::Exit)
                .map_err(|e| format!("bad exit frame: {e}")),
            k => Err(format!("unknown frame kind {k}")),
        }
    }
}

/// An 8-byte frame header.
pub fn header(kind: u8, len: usize) -> [u8; 8] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [kind, 0, 0, 0, len[0], len[1], len[2], len[3]]
}

/// The payload length a header declares, refused above [`MAX_FRAME`].
pub fn frame_len(head: &[u8; 8]) -> Result<usize, String> {
    let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if n > MAX_FRAME {
        return Err(format!("frame of {n} bytes is larger than {MAX_FRAME}"));
    }
    Ok(n as usize)
}

/// The spawn report of a shim that created its container.
pub fn ready_line(shim_pid: i32, init_pid: i32) -> String {
    format!("ok {shim_pid} {init_pid}\n")
}

/// The spawn report of a shim that failed (the message on one line).
pub fn error_line(message: &str) -> String {
    format!("error {}\n", message.replace('\n', " "))
}

/// What a spawn report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spawned {
    /// The shim runs with this pid; the container's init has this pid.
    Ready {
        /// The shim's pid.
        shim_pid: i32,
        /// The container init's host pid.
        init_pid: i32,
    },
    /// Creation failed.
    Failed(String),
}

/// Parses the line the shim's parent printed.
pub fn parse_spawn_line(line: &str) -> Spawned {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("ok ") {
        let mut it = rest.split(' ').map(str::parse::<i32>);
        if let (Some(Ok(shim_pid)), Some(Ok(init_pid))) = (it.next(), it.next()) {
            return Spawned::Ready { shim_pid, init_pid };
        }
    }
    if let Some(msg) = line.strip_prefix("error ") {
        return Spawned::Failed(msg.to_owned());
    }
    if line.is_empty() {
        return Spawned::Failed("the shim exited without a report".to_owned());
    }
    Spawned::Failed(format!("unexpected shim report: {line}"))
}

/// A JSON line for a request or reply.
pub fn to_line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(value).unwrap_or_default();
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let exit = ExitStatus {
            code: 137,
            oom_killed: true,
            finished_at: "2026-11-26T00:00:00.000000001Z".into(),
        };
        for f in [
            Frame::Stdout(b"hello\n".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Exit(exit),
        ] {
            let bytes = f.encode();
            let mut head = [0u8; 8];
            head.copy_from_slice(&bytes[..8]);
            assert_eq!(frame_len(&head), Ok(bytes.len() - 8));
            assert_eq!(Frame::decode(head, bytes[8..].to_vec()), Ok(f));
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        assert!(frame_len(&header(1, (MAX_FRAME + 1) as usize)).is_err());
    }

    #[test]
    fn requests_are_tagged_json_lines() {
        let req = Request::Resize {
            exec_id: None,
            height: 24,
            width: 80,
        };
        let line = to_line(&req);
        assert_eq!(
            line,
            b"{\"op\":\"resize\",\"exec_id\":null,\"height\":24,\"width\":80}\n"
        );
        let back: Request = serde_json::from_slice(&line).expect("parse");
        assert_eq!(back, req);
        let r: Reply = serde_json::from_str("{\"reply\":\"ok\"}").expect("parse");
        assert_eq!(r, Reply::Ok);
    }

    #[test]
    fn spawn_lines_parse() {
        assert_eq!(
            parse_spawn_line(&ready_line(10, 11)),
            Spawned::Ready {
                shim_pid: 10,
                init_pid: 11
            }
        );
        assert_eq!(
            parse_spawn_line(&error_line("exec: \"nope\": not found\nx")),
            Spawned::Failed("exec: \"nope\": not found x".into())
        );
        assert!(matches!(parse_spawn_line(""), Spawned::Failed(_)));
    }
}
