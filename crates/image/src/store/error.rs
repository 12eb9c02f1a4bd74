//! The image store's error type.

use crate::content::{ContentError, Digest};

/// Why an image store operation failed. Each message names the image,
/// blob or lease concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The metadata database failed.
    #[error("image metadata: {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The database error.
        #[source]
        source: redb::Error,
    },
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// An image name that is not a valid reference.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    /// A metadata record that does not decode (a bug or a damaged database).
    #[error("image metadata: {what} {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The kind of record.
        what: &'static str,
        /// Its key.
        key: String,
        /// The decode error.
        reason: String,
    },
    /// The snapshotter failed (unpack, diff, removal).
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// No image has this name or id.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// No lease has this id.
    #[error("lease {0:?} not found")]
    NoSuchLease(String),
    /// A blob that should be JSON of some kind is not.
    #[error("{what} {digest} is not valid: {reason}")]
    Invalid {
        /// What the blob was expected to be ("manifest", "image config").
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// The parse error or the rule broken.
        reason: String,
    },
    /// A media type berth does not handle at this place.
    #[error("{what} {digest} has unsupported media type {media_type:?}{hint}")]
    Unsupported {
        /// What the descriptor was for.
        what: &'static str,
        /// The descriptor's digest.
        digest: String,
        /// The media type.
        media_type: String,
        /// Why, when there is more to say.
        hint: &'static str,
    },
    /// A manifest or index refers to a blob that is not in the store.
    #[error("{what} {digest} referenced by {parent} is missing from the content store")]
    MissingBlob {
        /// What the missing blob is.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// The blob that refers to it.
        parent: String,
    },
    /// An index lists no manifest for the wanted platform.
    #[error("no matching manifest for {platform} in the manifest list entries")]
    NoPlatform {
        /// `os/arch[/variant]`.
        platform: String,
    },
    /// A filesystem operation outside the content store failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn db(context: impl Into<String>, source: impl Into<redb::Error>) -> Self {
        StoreError::Db {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}
