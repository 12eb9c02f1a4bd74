//! Snapshot errors.

use std::io;
use std::path::PathBuf;

use crate::layer::LayerError;

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot has this key.
    #[error("snapshot {0}: not found")]
    NotFound(String),
    /// A snapshot with this key already exists.
    #[error("snapshot {0}: already exists")]
    Exists(String),
    /// The snapshot cannot be used this way (wrong kind, bad key...).
    #[error("snapshot {key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The snapshot is the parent of others.
    #[error("snapshot {key}: in use as the parent of {}", children.join(", "))]
    HasChildren {
        /// The key.
        key: String,
        /// Its children's keys.
        children: Vec<String>,
    },
    /// The metadata store failed.
    #[error("snapshot store: {what}: {source}")]
    Db {
        /// The operation.
        what: String,
        /// The cause.
        source: redb::Error,
    },
    /// A stored record cannot be decoded.
    #[error("snapshot {key}: bad record: {source}")]
    Record {
        /// The key.
        key: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The operation.
        what: String,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Applying a layer into a snapshot failed.
    #[error("unpack {chain_id}: {source}")]
    Layer {
        /// The chain ID being unpacked.
        chain_id: String,
        /// The cause.
        source: LayerError,
    },
    /// The store was made with another backend.
    #[error("snapshot root {path}: made with the {stored:?} backend, {asked:?} asked for")]
    BackendMismatch {
        /// The snapshot root.
        path: PathBuf,
        /// The backend recorded in the store.
        stored: crate::snapshot::Backend,
        /// The backend asked for.
        asked: crate::snapshot::Backend,
    },
}

impl SnapshotError {
    pub(super) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        SnapshotError::Io {
            what: what.into(),
            path: path.into(),
            source: source.into(),
        }
    }

    pub(super) fn db(what: impl Into<String>, source: impl Into<redb::Error>) -> Self {
        SnapshotError::Db {
            what: what.into(),
            source: source.into(),
        }
    }
}
