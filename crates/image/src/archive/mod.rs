//! Image archives: `docker save` / `docker load` tarballs and OCI image
//! layouts, in both directions, and `import` of a root filesystem tarball.
//!
//! [`load`] reads one tar stream (plain, gzip or zstd) in a single pass.
//! Every file that can be a blob goes straight into the content store as it
//! streams by — `blobs/<alg>/<hex>` verified against its name, `*.tar`
//! layers and `*.json` configs hashed as they are written — and the small
//! metadata files (`manifest.json`, `index.json`, `oci-layout`,
//! `repositories`) are kept in memory. At the end the image records are
//! written in one transaction. Until then a lease protects the blobs; if the
//! load fails (or the process dies) nothing is visible, and the next
//! [`ImageStore::gc`] returns the disk space (a failed load runs it at once).
//!
//! [`save`] writes the layout Docker 25+ writes, which every loader
//! understands: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) plus `manifest.json` and `repositories` for
//! docker-archive readers (Docker 20.10, podman).

mod export;
mod import;
mod load;
mod save;

pub use export::{ExportStats, export};
pub use import::{ImportOptions, import};
pub use load::{LoadOptions, LoadReport, load};
pub use save::save;

/// Why an archive could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive stream could not be read (truncated, corrupt, not a tar).
    #[error("read archive: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the archive failed.
    #[error("write archive: {0}")]
    Write(#[source] std::io::Error),
    /// The archive is not in a format berth knows, or breaks its own rules.
    #[error("invalid archive: {0}")]
    Invalid(String),
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The content store refused a blob (digest or size mismatch…).
    #[error("archive entry {path:?}: {source}")]
    Blob {
        /// The entry.
        path: String,
        /// The cause.
        #[source]
        source: crate::content::ContentError,
    },
}

impl From<crate::content::ContentError> for ArchiveError {
    fn from(e: crate::content::ContentError) -> Self {
        ArchiveError::Store(e.into())
    }
}

/// Detects gzip or zstd by magic and returns a reader of the plain bytes.
pub(crate) fn decompressed<'a, R: std::io::BufRead + 'a>(
    mut r: R,
) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(r)?))
    } else {
        Ok(Box::new(r))
    }
}
