//! Blob upload sessions.
//!
//! A session is `_uploads/<uuid>/` in its repository; its bytes go to the
//! content store's ingest `upload-<uuid>`, invisible to readers until
//! [`Storage::finish_upload`] commits them with the client's digest and links
//! the blob. A session that stops (client gone, server killed) keeps its bytes
//! so it can resume, until [`Storage::purge_uploads`] drops it once idle for
//! longer than the time-to-live.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_image::content::{Algorithm, ContentError, Digest, Ingester, Writer};

use super::{IoContext, Storage, StorageError, durable};
use crate::name::RepoName;

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadStatus {
    /// Bytes received so far.
    pub offset: u64,
}

fn ingest_ref(id: &str) -> String {
    format!("upload-{id}")
}

impl Storage {
    fn upload_dir(&self, repo: &RepoName, id: &str) -> PathBuf {
        self.repo_dir(repo).join("_uploads").join(id)
    }

    fn check_upload(&self, repo: &RepoName, id: &str) -> Result<(), StorageError> {
        let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed || !self.upload_dir(repo, id).is_dir() {
            return Err(StorageError::UploadUnknown(id.to_owned()));
        }
        Ok(())
    }

    /// Starts an upload session; returns its id.
    pub fn start_upload(&self, repo: &RepoName) -> Result<String, StorageError> {
        let root = self.root.clone();
        let id = durable::random_hex(16).ctx("random id for upload in", &root)?;
        let path = self.upload_dir(repo, &id).join("startedat");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        durable::write_file(&path, now.to_string().as_bytes()).ctx("write", &path)?;
        Ok(id)
    }

    /// Takes the upload's writer, for one request to append to; give it
    /// back with [`Storage::park_writer`]. [`StorageError::UploadBusy`] if
    /// another request holds it.
    pub fn upload_writer(&self, repo: &RepoName, id: &str) -> Result<Writer, StorageError> {
        self.check_upload(repo, id)?;
        // The map's lock is held while the ingest is opened, so a status
        // request opening it at the same time cannot make this one "busy".
        let mut cache = self.cached_writers();
        if let Some(w) = cache.remove(id) {
            return Ok(w);
        }
        self.open_ingest(id)
    }

    fn open_ingest(&self, id: &str) -> Result<Writer, StorageError> {
        match self.content.writer(&ingest_ref(id), None) {
            Ok(w) => Ok(w),
            Err(ContentError::Locked(_)) => Err(StorageError::UploadBusy(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps a writer open for the upload's next request.
    pub fn park_writer(&self, id: &str, writer: Writer) {
        self.cached_writers().insert(id.to_owned(), writer);
    }

    fn cached_writers(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Writer>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes received so far by the upload.
    /// [`StorageError::UploadBusy`] while a request is appending to it. The
    /// writer stays where it is: a status request never takes it from a
    /// request about to append.
    pub fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus, StorageError> {
        self.check_upload(repo, id)?;
        let mut cache = self.cached_writers();
        if let Some(w) = cache.get(id) {
            return Ok(UploadStatus { offset: w.offset() });
        }
        let w = self.open_ingest(id)?;
        let offset = w.offset();
        cache.insert(id.to_owned(), w);
        Ok(UploadStatus { offset })
    }

    /// Commits the upload's bytes as `digest`, links the blob into the
    /// repository and ends the session. On a digest mismatch the bytes are
    /// dropped and the session ends too.
    pub fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        writer: Writer,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let size = writer.offset();
        let committed = writer.commit(digest, size);
        let dir = self.upload_dir(repo, id);
        match committed {
            Ok(()) => {
                self.link_blob(repo, digest)?;
                durable::remove_dir_all(&dir).ctx("remove", &dir)?;
                Ok(())
            }
            Err(e @ ContentError::DigestMismatch { .. }) => {
                durable::remove_dir_all(&dir).ctx("remove", &dir)?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels an upload and drops its bytes.
    pub fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), StorageError> {
        self.check_upload(repo, id)?;
        drop(self.cached_writers().remove(id));
        match self.content.abort(&ingest_ref(id)) {
            Ok(()) => {}
            Err(ContentError::Locked(_)) => return Err(StorageError::UploadBusy(id.to_owned())),
            Err(e) => return Err(e.into()),
        }
        let dir = self.upload_dir(repo, id);
        durable::remove_dir_all(&dir).ctx("remove", &dir)
    }

    /// Drops upload sessions idle for longer than `ttl`, and ingests left by
    /// an interrupted manifest put or a lost session. Returns the ingest refs
    /// dropped. Sessions a request is writing to are left alone.
    pub fn purge_uploads(&self, ttl: Duration) -> Result<Vec<String>, StorageError> {
        let now = SystemTime::now();
        // Absent counts as idle; a time after `now` (made while this runs)
        // does not.
        let idle = |path: &Path| -> bool {
            match fs::metadata(path).and_then(|m| m.modified()) {
                Err(_) => true,
                Ok(t) => now.duration_since(t).is_ok_and(|age| age > ttl),
            }
        };
        let mut sessions = Vec::new();
        find_upload_dirs(&self.root.join("repositories"), &mut sessions)?;
        let mut live = std::collections::HashSet::new();
        let mut purged = Vec::new();
        for dir in sessions {
            let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let data = self.ingest_data_path(&ingest_ref(&id));
            // A session whose `startedat` is still being written (its
            // folder is new, the file not renamed in yet) is not stale:
            // the folder's own age says so.
            if !(idle(&dir) && idle(&dir.join("startedat")) && idle(&data)) {
                live.insert(ingest_ref(&id));
                continue;
            }
            drop(self.cached_writers().remove(&id));
            match self.content.abort(&ingest_ref(&id)) {
                Ok(()) => {}
                Err(ContentError::Locked(_)) => {
                    live.insert(ingest_ref(&id));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            durable::remove_dir_all(&dir).ctx("remove", &dir)?;
            purged.push(ingest_ref(&id));
        }
        for reference in self.content.ingests()? {
            if live.contains(&reference) || !idle(&self.ingest_data_path(&reference)) {
                continue;
            }
            match self.content.abort(&reference) {
                Ok(()) => purged.push(reference),
                Err(ContentError::Locked(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(purged)
    }

    /// The ingest's data file, per LocalStore's documented layout.
    fn ingest_data_path(&self, reference: &str) -> PathBuf {
        let name = Digest::of(Algorithm::Sha256, reference.as_bytes());
        self.root.join("ingest").join(name.hex()).join("data")
    }
}

fn find_upload_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StorageError> {
    for name in durable::list_names(dir).ctx("read", dir)? {
        let path = dir.join(&name);
        if name == "_uploads" {
            for id in durable::list_names(&path).ctx("read", &path)? {
                out.push(path.join(id));
            }
        } else if !name.starts_with('_') && path.is_dir() {
            find_upload_dirs(&path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_being_started_is_not_purged() {
        let tmp = tempfile::tempdir().expect("tmp");
        let storage = Storage::open(tmp.path()).expect("open");
        let repo = RepoName::new("p").expect("name");
        // Its folder exists, `startedat` not yet: what a purge running in
        // the middle of start_upload sees.
        let dir = storage.upload_dir(&repo, "0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let purged = storage
            .purge_uploads(Duration::from_secs(3600))
            .expect("purge");
        assert!(purged.is_empty(), "{purged:?}");
        assert!(dir.is_dir());
        // Made after the purge read the clock (a time a little ahead):
        // not idle either, whatever the time-to-live.
        let ahead = SystemTime::now() + Duration::from_secs(5);
        fs::File::open(&dir)
            .and_then(|d| d.set_modified(ahead))
            .expect("set mtime");
        let purged = storage.purge_uploads(Duration::ZERO).expect("purge");
        assert!(purged.is_empty(), "{purged:?}");
        fs::File::open(&dir)
            .and_then(|d| d.set_modified(SystemTime::now()))
            .expect("set mtime");
        // Idle past the time-to-live, it goes.
        std::thread::sleep(Duration::from_millis(20));
        let purged = storage
            .purge_uploads(Duration::from_millis(10))
            .expect("purge");
        assert_eq!(purged, ["upload-0123456789abcdef0123456789abcdef"]);
        assert!(!dir.exists());
    }
}
