//! The registry's storage on a local filesystem.
//!
//! Blob bytes live once, in berth-image's content store, shared by every
//! repository; a repository holds only small link files saying which blobs,
//! manifests and tags it has. Every file is written crash-safely (see
//! [`durable`]), so a crash leaves each link, tag or blob whole or absent.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                              blob bytes (LocalStore), read-only
//! <root>/ingest/<sha256 of ref>/                         uploads in progress (LocalStore)
//! <root>/repositories/<name>/_layers/<alg>/<hex>         blob linked into the repository (empty)
//! <root>/repositories/<name>/_manifests/revisions/<alg>/<hex>   manifest in the repository: its media type
//! <root>/repositories/<name>/_manifests/tags/<tag>       the tag's manifest digest
//! <root>/repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>  a manifest whose subject is <alg>:<hex>: its descriptor
//! <root>/repositories/<name>/_uploads/<uuid>/startedat   an upload session; bytes in ingest ref `upload-<uuid>`
//! ```
//!
//! Repository components never start with `_` or `.`, so these folders never
//! collide with a nested repository. Blob links are added after the blob is
//! committed; a manifest's revision link after its blobs were checked; its tag
//! last. Uploads that stop half-way keep their bytes in the ingest only, where
//! readers never see them, until [`Storage::purge_uploads`] removes them.

pub mod durable;
pub mod gc;
mod manifests;
mod uploads;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_image::content::{ContentError, Digest, LocalStore, Provider};

pub use manifests::{Manifest, ManifestRef, PutManifest, parse_manifest};
pub use uploads::UploadStatus;

use crate::name::RepoName;

/// Why a storage operation failed. Each variant names the thing.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The repository has no such blob.
    #[error("blob {0} unknown to registry")]
    BlobUnknown(Digest),
    /// The repository has no such manifest or tag.
    #[error("manifest {reference} unknown in repository {repo}")]
    ManifestUnknown {
        /// The repository.
        repo: String,
        /// The tag or digest asked for.
        reference: String,
    },
    /// The manifest does not parse or breaks a rule.
    #[error("manifest invalid in repository {repo}: {reason}")]
    ManifestInvalid {
        /// The repository.
        repo: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob or manifest the manifest references is not in the repository.
    #[error("manifest references {digest}, which repository {repo} does not have")]
    ManifestBlobUnknown {
        /// The repository.
        repo: String,
        /// The missing blob.
        digest: Digest,
    },
    /// The content hashes to another digest than the one given.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the client gave.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// A malformed or unsupported digest.
    #[error("{0}")]
    Digest(ContentError),
    /// The content has another length than announced.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The size announced.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// A manifest over the size limit.
    #[error("manifest larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No such repository.
    #[error("repository {0} not known to registry")]
    NameUnknown(String),
    /// No such upload session in the repository.
    #[error("blob upload {0} unknown to registry")]
    UploadUnknown(String),
    /// Another request is writing to the upload.
    #[error("blob upload {0} is busy with another request")]
    UploadBusy(String),
    /// A chunk that does not start where the upload ends.
    #[error("chunk for upload {upload} starts at {start}, but the upload holds {offset} bytes")]
    RangeMismatch {
        /// The upload session.
        upload: String,
        /// Bytes the upload holds.
        offset: u64,
        /// Where the chunk said it starts.
        start: u64,
    },
    /// Another process (a writable server, a gc) holds the storage lock.
    #[error("storage {0} is locked by another process")]
    Locked(PathBuf),
    /// A filesystem operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The content store failed.
    #[error("content store")]
    Content(#[source] ContentError),
}

impl StorageError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<ContentError> for StorageError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::NotFound(d) => StorageError::BlobUnknown(d),
            ContentError::DigestMismatch { expected, actual } => {
                StorageError::DigestMismatch { expected, actual }
            }
            ContentError::SizeMismatch { expected, actual } => {
                StorageError::SizeMismatch { expected, actual }
            }
            e @ ContentError::InvalidDigest { .. } => StorageError::Digest(e),
            ContentError::Locked(r) => StorageError::UploadBusy(r),
            e => StorageError::Content(e),
        }
    }
}

/// Wraps an I/O result with what was done to which path.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T, StorageError> {
        self.map_err(|e| StorageError::io(format!("{what} {}", path.display()), e))
    }
}

/// The registry's storage; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    content: LocalStore,
    /// Open upload writers between requests, so a chunk does not re-hash
    /// what came before. The ingest on disk stays the truth: a writer missing
    /// here is reopened (and re-hashed) from it.
    writers: Mutex<HashMap<String, berth_image::content::Writer>>,
}

impl Storage {
    /// Opens (creating) the storage at `root`.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        durable::create_dir_all(&root.join("repositories")).ctx("create", root)?;
        let content = LocalStore::new(root)?;
        Ok(Storage {
            root: root.to_owned(),
            content,
            writers: Mutex::new(HashMap::new()),
        })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The shared content store.
    pub fn content(&self) -> &LocalStore {
        &self.content
    }

    fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        self.root.join("repositories").join(repo.as_str())
    }

    fn layer_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_layers")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn revision_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests/revisions")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn tag_path(&self, repo: &RepoName, tag: &str) -> PathBuf {
        self.repo_dir(repo).join("_manifests/tags").join(tag)
    }

    /// Whether the repository exists (has ever had a blob, manifest or upload).
    pub fn repo_exists(&self, repo: &RepoName) -> bool {
        let dir = self.repo_dir(repo);
        ["_layers", "_manifests", "_uploads"]
            .iter()
            .any(|d| dir.join(d).is_dir())
    }

    /// Whether the repository has this blob (a linked layer or a manifest).
    pub fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError> {
        let linked =
            self.layer_link(repo, digest).exists() || self.revision_link(repo, digest).exists();
        Ok(linked && self.content.exists(digest)?)
    }

    /// The size of a blob of the repository.
    pub fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, StorageError> {
        if !self.has_blob(repo, digest)? {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        Ok(self.content.info(digest)?.size)
    }

    /// Opens a blob of the repository: the file and its size.
    pub fn open_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(File, u64), StorageError> {
        if !self.has_blob(repo, digest)? {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        let file = self.content.open(digest)?;
        let size = file
            .metadata()
            .ctx("stat", &self.content.blob_path(digest))?
            .len();
        Ok((file, size))
    }

    /// Links a committed blob into the repository.
    pub fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StorageError> {
        let path = self.layer_link(repo, digest);
        if path.exists() {
            return Ok(());
        }
        durable::write_file(&path, b"").ctx("write", &path)
    }

    /// Links a blob of `from` into `repo` (cross-repository mount); false if
    /// `from` does not have it.
    pub fn mount_blob(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<bool, StorageError> {
        if !self.has_blob(from, digest)? {
            return Ok(false);
        }
        self.link_blob(repo, digest)?;
        Ok(true)
    }

    /// Removes a blob from the repository (its bytes stay until gc).
    pub fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StorageError> {
        let path = self.layer_link(repo, digest);
        if !durable::remove_file(&path).ctx("remove", &path)? {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        Ok(())
    }

    /// The repository's tags, sorted.
    pub fn tags(&self, repo: &RepoName) -> Result<Vec<String>, StorageError> {
        if !self.repo_exists(repo) {
            return Err(StorageError::NameUnknown(repo.to_string()));
        }
        let dir = self.repo_dir(repo).join("_manifests/tags");
        durable::list_names(&dir).ctx("read", &dir)
    }

    /// Every repository name, sorted.
    pub fn repositories(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let base = self.root.join("repositories");
        walk_repos(&base, "", &mut out)?;
        out.sort();
        Ok(out)
    }
}

fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), StorageError> {
    let names = durable::list_names(dir).ctx("read", dir)?;
    if !prefix.is_empty() && names.iter().any(|n| n == "_layers" || n == "_manifests") {
        out.push(prefix.to_owned());
    }
    for name in names {
        if name.starts_with('_') || !dir.join(&name).is_dir() {
            continue;
        }
        let child = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        walk_repos(&dir.join(&name), &child, out)?;
    }
    Ok(())
}
