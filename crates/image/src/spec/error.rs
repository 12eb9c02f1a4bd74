//! Errors of [`prepare`](super::prepare): what a `docker create` request or
//! an image config asks for that cannot be honoured.

/// Why a container spec could not be prepared. Messages use Docker's own
/// wording where Docker has one, so the API can pass them through.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A request or image field is invalid (a 400 in the API).
    #[error("{0}")]
    Invalid(String),
    /// `User` names someone the image's /etc/passwd does not know.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    /// `User`'s group part names a group the image's /etc/group does not know.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    /// A capability name that is not a Linux capability.
    #[error("unknown capability: {0:?}")]
    UnknownCapability(String),
    /// A seccomp profile (Docker's format) that cannot be used; `field` is a
    /// JSON path inside the profile.
    #[error("seccomp profile: {field}: {reason}")]
    Seccomp {
        /// JSON path in the profile, e.g. `syscalls[3].names`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A seccomp profile that is not valid JSON for Docker's format.
    #[error("decoding seccomp profile failed: {0}")]
    SeccompJson(#[from] serde_json::Error),
    /// Reading the image's files (passwd, group) or the host's failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read, naming the file.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The spec we built is refused by berth-runtime's checks.
    #[error("the generated runtime spec is invalid: {0}")]
    Runtime(#[from] berth_runtime::RuntimeError),
}

impl SpecError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        SpecError::Invalid(msg.into())
    }

    pub(crate) fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        SpecError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Result of this module.
pub type Result<T, E = SpecError> = std::result::Result<T, E>;
