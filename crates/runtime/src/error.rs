use std::io;
use std::path::PathBuf;

use crate::cgroups::CgroupError;
use crate::seccomp::SeccompError;

/// Every error the runtime library returns. Messages are lowercase and name
/// what failed (the container, the config.json field, the path).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The id cannot be used as a container id.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: String },
    /// A container with this id already exists under the state root.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// No container with this id under the state root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The operation is not possible in the container's current status.
    #[error("cannot {op} container {id}: it is {status}")]
    InvalidState {
        id: String,
        op: &'static str,
        status: String,
    },
    /// config.json asks for something invalid, or something this host or
    /// berth cannot do. `field` is the JSON path, e.g. `linux.namespaces[2].type`.
    #[error("config.json: {field}: {reason}")]
    Spec { field: String, reason: String },
    /// The bundle or its config.json cannot be read.
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    /// A file operation failed. The OS error is part of the message:
    /// these errors often cross a process boundary as text (from the
    /// container's init to the runtime), where a source chain would be lost.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// A system call failed (the errno is part of the message, as for `Io`).
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
    /// Setting up the container process failed; the message comes from the
    /// container's init (or exec'd) process.
    #[error("{0}")]
    Child(String),
    /// A hook failed or timed out.
    #[error("{0}")]
    Hook(String),
    /// The signal name or number is not known.
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    /// Bad argument to an operation (for example `update` values).
    #[error("{0}")]
    InvalidArgument(String),
    /// cgroup management failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// seccomp filter compilation or installation failed.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

impl RuntimeError {
    /// A file-operation error with a context line.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }

    /// A syscall error with a context line.
    pub fn sys(context: impl Into<String>, source: nix::Error) -> Self {
        RuntimeError::Sys {
            context: context.into(),
            source,
        }
    }

    /// A config.json error naming the field.
    pub fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RuntimeError::Spec {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl RuntimeError {
    /// The message with every cause, on one line (for errors that cross a
    /// process boundary as text).
    pub fn full(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            let s = e.to_string();
            if !out.contains(&s) {
                out.push_str(": ");
                out.push_str(&s);
            }
            cur = e.source();
        }
        out
    }
}

/// Shorthand for the library's results.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Attach a context line to io and nix results.
pub trait Context<T> {
    /// Wrap the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wrap the error with a lazily built context.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| RuntimeError::io(context, e))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| RuntimeError::io(f(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| RuntimeError::sys(context, e))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| RuntimeError::sys(f(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, rustix::io::Errno> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| RuntimeError::io(context, e.into()))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| RuntimeError::io(f(), e.into()))
    }
}
