//! The content store's error type.

use std::io;

use super::Digest;

/// Why a content store operation failed. Messages name what failed and the
/// non-source fields; an I/O cause is the error's source, not in the text.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// No committed blob has this digest.
    #[error("content {0} not found")]
    NotFound(Digest),
    /// The bytes written hash to something else than expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// More or fewer bytes than expected.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The size the caller announced.
        expected: u64,
        /// The size received (for a write past the end: the size it would reach).
        actual: u64,
    },
    /// A string that is not a valid, supported digest.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest {
        /// The input, as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An ingest ref the store does not accept (empty or too long).
    #[error("invalid ingest ref {0:?}")]
    InvalidRef(String),
    /// Another writer holds the ingest ref.
    #[error("ingest ref {0:?} is locked by another writer")]
    Locked(String),
    /// A filesystem operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ContentError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ContentError::Io {
            context: context.into(),
            source,
        }
    }
}
