//! Content-addressed blob storage with verified, crash-safe writes.
//!
//! Blobs (layers, configs, manifests) are stored under a root directory by
//! digest, and the store plays three roles, each a trait:
//!
//! - [`Provider`] reads: open a committed blob by digest, or get its [`Info`].
//! - [`Ingester`] writes: a [`Writer`] for a caller-chosen *ingest ref*
//!   (`"pull-docker.io/library/busybox-layer-3"`), committed against an
//!   expected digest and size.
//! - [`Manager`] administers: list and delete committed blobs.
//!
//! [`LocalStore`] implements all three on a local filesystem:
//!
//! ```text
//! <root>/blobs/sha256/<64 hex>       committed blobs, mode 0444
//! <root>/blobs/sha512/<128 hex>
//! <root>/ingest/<sha256 of ref>/data  bytes received so far
//! <root>/ingest/<sha256 of ref>/ref   the ref itself, for `ingests()`
//! ```
//!
//! # Visibility rule
//!
//! Readers never see a blob until it is committed: bytes go to the ingest's
//! `data` file, and [`Writer::commit`] checks the size and digest, fsyncs the
//! file, makes it read-only, renames it into `blobs/` in one step and fsyncs
//! that directory. Until then [`Provider::open`] says [`ContentError::NotFound`].
//! After commit the blob is complete and immutable, and the ref has left the
//! ingest listing ([`LocalStore::ingests`]).
//!
//! # Ingest lifecycle
//!
//! 1. [`Ingester::writer`] opens (or creates) the ingest for a ref and takes an
//!    exclusive, non-blocking `flock` on it: a second writer of the same ref
//!    gets [`ContentError::Locked`] at once rather than waiting. Writers of the
//!    same digest under *different* refs do not exclude each other.
//! 2. Bytes are hashed as they are written; with an expected size given up
//!    front, a write that would pass it fails before touching the file.
//! 3. A writer dropped without commit (or a crash) leaves its bytes in the
//!    ingest: opening the same ref again resumes at [`Writer::offset`], having
//!    re-hashed what is on disk. [`LocalStore::abort`] discards it instead.
//! 4. [`Writer::commit`]: a short ingest gives [`ContentError::SizeMismatch`]
//!    and stays resumable; wrong bytes give [`ContentError::DigestMismatch`] and
//!    the ingest is discarded. If the blob already exists (another ref won the
//!    race) commit succeeds and drops its own copy.
//!
//! ```
//! use std::io::{Read, Write};
//! use berth_image::content::{Algorithm, Digest, Ingester, LocalStore, Provider};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = LocalStore::new(dir.path())?;
//! let data = b"hello, berth";
//! let digest = Digest::of(Algorithm::Sha256, data);
//!
//! let mut w = store.writer("example", Some((&digest, data.len() as u64)))?;
//! w.write_all(&data[..5])?;
//! drop(w); // interrupted: nothing in blobs/, the ingest keeps 5 bytes
//! assert!(!store.exists(&digest)?);
//!
//! let mut w = store.writer("example", Some((&digest, data.len() as u64)))?;
//! assert_eq!(w.offset(), 5);
//! w.write_all(&data[5..])?;
//! w.commit(&digest, data.len() as u64)?;
//!
//! let mut back = Vec::new();
//! store.open(&digest)?.read_to_end(&mut back)?;
//! assert_eq!(back, data);
//! assert!(store.ingests()?.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! [`ContentError::DigestMismatch`]: crate::content::ContentError::DigestMismatch
//! [`ContentError::Locked`]: crate::content::ContentError::Locked
//! [`ContentError::NotFound`]: crate::content::ContentError::NotFound
//! [`ContentError::SizeMismatch`]: crate::content::ContentError::SizeMismatch
//! [`Info`]: crate::content::Info
//! [`Ingester`]: crate::content::Ingester
//! [`Ingester::writer`]: crate::content::Ingester::writer
//! [`LocalStore`]: crate::content::LocalStore
//! [`LocalStore::abort`]: crate::content::LocalStore::abort
//! [`LocalStore::ingests`]: crate::content::LocalStore::ingests
//! [`Manager`]: crate::content::Manager
//! [`Provider`]: crate::content::Provider
//! [`Provider::open`]: crate::content::Provider::open
//! [`Writer`]: crate::content::Writer
//! [`Writer::commit`]: crate::content::Writer::commit
//! [`Writer::offset`]: crate::content::Writer::offset

mod digest;
mod error;
mod store;
mod writer;

use std::fs::File;

pub use digest::{Algorithm, Digest, Digester};
pub use error::ContentError;
pub use store::LocalStore;
pub use writer::Writer;

/// What the store knows about a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Reads committed blobs by digest.
pub trait Provider {
    /// Opens a committed blob for reading; [`ContentError::NotFound`] if absent.
    fn open(&self, digest: &Digest) -> Result<File, ContentError>;

    /// The blob's size; [`ContentError::NotFound`] if absent.
    fn info(&self, digest: &Digest) -> Result<Info, ContentError>;

    /// Whether a committed blob with this digest exists.
    fn exists(&self, digest: &Digest) -> Result<bool, ContentError> {
        match self.info(digest) {
            Ok(_) => Ok(true),
            Err(ContentError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Writes blobs through named, resumable ingests.
pub trait Ingester {
    /// Opens the ingest `reference`, resuming it if it has bytes on disk.
    ///
    /// `expected`, if known, lets writes past the size fail at once and picks
    /// the hash algorithm (sha256 otherwise); [`Writer::commit`] still takes
    /// the digest and size and those are the ones checked. Fails with
    /// [`ContentError::Locked`] if another writer holds the ref, and with
    /// [`ContentError::SizeMismatch`] if the bytes on disk already exceed the
    /// expected size (abort the ingest then).
    fn writer(
        &self,
        reference: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Writer, ContentError>;
}

/// Lists and deletes committed blobs.
pub trait Manager {
    /// Every committed blob, sorted by digest.
    fn list(&self) -> Result<Vec<Info>, ContentError>;

    /// Removes a committed blob; [`ContentError::NotFound`] if absent. Readers
    /// that already opened it keep reading the old file.
    fn delete(&self, digest: &Digest) -> Result<(), ContentError>;
}
