//! Applying OCI image layers to a directory.
//!
//! [`apply_layer`] streams a layer blob (gzip, zstd or plain tar, detected by
//! magic bytes) through a decompressor and, optionally, a sha256 of the
//! uncompressed stream (the layer's diffID), and extracts it in one pass:
//! the calling thread decompresses (gzip through zlib-rs) into 256 KiB
//! chunks, a scoped thread hashes them (the diffID) and passes them to
//! another that parses and writes, so inflating, hashing and file creation
//! overlap; all are joined before `apply_layer` returns.
//! Regular files cost few system calls: created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` (looked at only if something is in the way),
//! written in writes of up to 1 MiB, and chowned (only when the owner is not
//! what creation gave them), chmodded, xattr'd and timestamped through the
//! fd they were written with. The parent directory fd is reused for the
//! entries of one directory and dropped whenever anything is removed.
//!
//! Every entry is created with `*at` system calls relative to a directory fd
//! that was resolved inside the root with `openat2(RESOLVE_IN_ROOT)`, and the
//! final component is never followed when it is a symlink: `..`, absolute
//! names, symlinked parents and hardlinks all stay inside the root.

mod apply;
mod whiteout;

use std::io;
use std::path::PathBuf;

pub use apply::apply_layer;

/// How a layer is applied.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Create character and block device nodes (refused otherwise; fifos are
    /// always allowed).
    pub allow_devices: bool,
    /// Added to every entry's uid (user namespace remapping).
    pub uid_shift: Option<u32>,
    /// Added to every entry's gid.
    pub gid_shift: Option<u32>,
    /// Change owners to the (shifted) uid/gid of the entries; needs
    /// CAP_CHOWN. When false, files belong to the caller.
    pub preserve_owners: bool,
    /// Entries whose content is larger than this are refused.
    pub max_entry_size: u64,
    /// Compute the sha256 of the uncompressed stream (the diffID).
    pub compute_diff_id: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            allow_devices: false,
            uid_shift: None,
            gid_shift: None,
            preserve_owners: true,
            max_entry_size: 64 << 30,
            compute_diff_id: true,
        }
    }
}

/// Compression of a layer stream, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

/// What applying a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Compression detected on the stream.
    pub compression: Option<Compression>,
    /// `sha256:<hex>` of the uncompressed tar stream, when asked for.
    pub diff_id: Option<String>,
    /// Tar entries seen (including whiteouts and skipped ones).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Fifos and device nodes created.
    pub special: u64,
    /// Whiteouts (`.wh.<name>`) and opaque markers applied.
    pub whiteouts: u64,
    /// Entries ignored (the root directory itself, global PAX headers).
    pub skipped: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The root directory could not be opened.
    #[error("open layer root {path}: {source}")]
    Root {
        /// The root given to [`apply_layer`].
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading or decompressing the layer stream failed.
    #[error("read layer stream: {0}")]
    Read(#[source] io::Error),
    /// A filesystem operation for an entry failed.
    #[error("tar entry {path:?}: {what}: {source}")]
    Entry {
        /// The entry's path in the tar.
        path: String,
        /// The operation that failed.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The entry is not acceptable (device without permission, too large,
    /// hardlink to something that is not a regular file in the root...).
    #[error("tar entry {path:?} refused: {reason}")]
    Refused {
        /// The entry's path in the tar.
        path: String,
        /// Why.
        reason: String,
    },
}
