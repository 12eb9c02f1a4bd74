//! [`Writer`]: one ingest in progress.

use std::fs::{self, File, Permissions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rustix::fs::{CWD, RenameFlags};
use rustix::io::Errno;

use super::store::remove_ingest;
use super::{Algorithm, ContentError, Digest, Digester};

/// Writes one blob through an ingest; see [`Ingester`](super::Ingester).
///
/// Bytes are hashed as they arrive. Dropping a writer without committing
/// keeps the bytes for a later resume and releases the ingest lock.
#[derive(Debug)]
pub struct Writer {
    reference: String,
    dir: PathBuf,
    blobs: PathBuf,
    /// Holds the ingest's `flock` until the writer is dropped.
    lock: File,
    file: File,
    digester: Digester,
    offset: u64,
    expected_size: Option<u64>,
}

impl Writer {
    /// Resumes an ingest whose lock is held: re-hashes the bytes on disk and
    /// leaves the file positioned at their end.
    pub(crate) fn resume(
        reference: String,
        dir: PathBuf,
        blobs: PathBuf,
        lock: File,
        mut file: File,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Self, ContentError> {
        let alg = expected.map_or(Algorithm::Sha256, |(d, _)| d.algorithm());
        let data = dir.join("data");
        let (digester, offset) = hash_file(&mut file, alg)
            .map_err(|e| ContentError::io(format!("read {}", data.display()), e))?;
        let expected_size = expected.map(|(_, size)| size);
        if let Some(size) = expected_size
            && offset > size
        {
            return Err(ContentError::SizeMismatch {
                expected: size,
                actual: offset,
            });
        }
        Ok(Writer {
            reference,
            dir,
            blobs,
            lock,
            file,
            digester,
            offset,
            expected_size,
        })
    }

    /// How many bytes the ingest holds: where the next write goes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The ingest ref.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.digester.clone().finish()
    }

    /// Verifies the ingest against `expected` and `size` and moves it into
    /// `blobs/`, read-only. These arguments are the ones checked, whatever was
    /// given to [`Ingester::writer`](super::Ingester::writer).
    ///
    /// On [`ContentError::SizeMismatch`] the ingest is kept (a short one can be
    /// resumed); on [`ContentError::DigestMismatch`] it is discarded. If the blob
    /// already exists, this ingest is discarded and commit succeeds.
    pub fn commit(mut self, expected: &Digest, size: u64) -> Result<(), ContentError> {
        let data = self.dir.join("data");
        let io = |what: &str, e| ContentError::io(format!("{what} {}", data.display()), e);
        if self.offset != size {
            return Err(ContentError::SizeMismatch {
                expected: size,
                actual: self.offset,
            });
        }
        let actual = if self.digester.algorithm() == expected.algorithm() {
            self.digester.clone().finish()
        } else {
            hash_file(&mut self.file, expected.algorithm())
                .map_err(|e| io("read", e))?
                .0
                .finish()
        };
        if actual != *expected {
            remove_ingest(&self.dir, &self.lock)?;
            return Err(ContentError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }

        self.file.sync_all().map_err(|e| io("fsync", e))?;
        self.file
            .set_permissions(Permissions::from_mode(0o444))
            .map_err(|e| io("chmod", e))?;
        // Leave the ingest listing before the blob appears.
        let ref_path = self.dir.join("ref");
        match fs::remove_file(&ref_path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ContentError::io(
                    format!("remove {}", ref_path.display()),
                    e,
                ));
            }
        }
        let alg_dir = self.blobs.join(expected.algorithm().as_str());
        let target = alg_dir.join(expected.hex());
        if rename_noreplace(&data, &target).map_err(|e| io("rename", e))? {
            File::open(&alg_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ContentError::io(format!("fsync {}", alg_dir.display()), e))?;
        }
        // Drops `data` if another writer committed the blob first.
        remove_ingest(&self.dir, &self.lock)
    }
}

impl Write for Writer {
    /// Appends to the ingest. Fails with an [`ErrorKind::InvalidInput`] error
    /// wrapping [`ContentError::SizeMismatch`], writing nothing, if the bytes
    /// would pass the expected size.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.expected_size {
            let end = self.offset.saturating_add(buf.len() as u64);
            if end > size {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    ContentError::SizeMismatch {
                        expected: size,
                        actual: end,
                    },
                ));
            }
        }
        let n = self.file.write(buf)?;
        self.digester.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Hashes `file` from the start; returns the hash and length, positioned at
/// the end.
fn hash_file(file: &mut File, alg: Algorithm) -> io::Result<(Digester, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut digester = Digester::new(alg);
    let mut buf = vec![0; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        digester.update(&buf[..n]);
        len += n as u64;
    }
    Ok((digester, len))
}

/// Renames `from` to `to` unless `to` exists. Returns whether it renamed.
fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> io::Result<bool> {
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        // Filesystems without RENAME_NOREPLACE: the blob's bytes are the same
        // either way, so a plain rename racing another commit is harmless.
        Err(Errno::INVAL | Errno::NOSYS) => {
            if to.exists() {
                return Ok(false);
            }
            fs::rename(from, to)?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Ingester, LocalStore, Manager, Provider};

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        (dir, store)
    }

    fn blob(len: usize) -> (Vec<u8>, Digest) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let digest = Digest::of(Algorithm::Sha256, &data);
        (data, digest)
    }

    fn data_path(store: &LocalStore, reference: &str) -> PathBuf {
        let name = Digest::of(Algorithm::Sha256, reference.as_bytes());
        store.root().join("ingest").join(name.hex()).join("data")
    }

    #[test]
    fn write_past_expected_size_fails_at_once() {
        let (_dir, store) = store();
        let (data, digest) = blob(10);
        let mut w = store.writer("r", Some((&digest, 10))).unwrap();
        w.write_all(&data[..8]).unwrap();
        let err = w.write(&data[..3]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<ContentError>());
        assert!(
            matches!(
                inner,
                Some(ContentError::SizeMismatch {
                    expected: 10,
                    actual: 11
                })
            ),
            "{err:?}"
        );
        assert_eq!(w.offset(), 8, "nothing of the refused write is kept");
        w.write_all(&data[8..]).unwrap();
        w.commit(&digest, 10).unwrap();
        assert!(store.exists(&digest).unwrap());
    }

    #[test]
    fn dropped_writer_resumes_from_disk() {
        let (_dir, store) = store();
        let (data, digest) = blob(200_000);
        let half = data.len() / 2;
        let size = data.len() as u64;

        let mut w = store.writer("pull-layer", Some((&digest, size))).unwrap();
        w.write_all(&data[..half]).unwrap();
        drop(w);
        assert!(!store.exists(&digest).unwrap());
        assert_eq!(
            fs::read_dir(store.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0,
            "an interrupted write leaves nothing in blobs/"
        );
        assert_eq!(store.ingests().unwrap(), ["pull-layer"]);

        let mut w = store.writer("pull-layer", Some((&digest, size))).unwrap();
        assert_eq!(w.offset(), half as u64);
        assert_eq!(w.digest(), Digest::of(Algorithm::Sha256, &data[..half]));
        w.write_all(&data[half..]).unwrap();
        w.commit(&digest, size).unwrap();

        let mut back = Vec::new();
        store.open(&digest).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(store.ingests().unwrap().is_empty());
    }

    #[test]
    fn resume_rehashes_the_bytes_on_disk() {
        let (_dir, store) = store();
        let (data, digest) = blob(100);
        let mut w = store.writer("r", Some((&digest, 100))).unwrap();
        w.write_all(&data[..50]).unwrap();
        drop(w);
        // Corrupt the ingest behind the store's back.
        let mut bad = data[..50].to_vec();
        bad[0] ^= 0xff;
        fs::write(data_path(&store, "r"), &bad).unwrap();

        let mut w = store.writer("r", Some((&digest, 100))).unwrap();
        assert_eq!(w.offset(), 50);
        w.write_all(&data[50..]).unwrap();
        let err = w.commit(&digest, 100).unwrap_err();
        assert!(
            matches!(err, ContentError::DigestMismatch { .. }),
            "{err:?}"
        );
        assert!(store.list().unwrap().is_empty());
        assert!(store.ingests().unwrap().is_empty(), "bad ingest discarded");
    }

    #[test]
    fn resume_with_more_bytes_than_expected_is_refused() {
        let (_dir, store) = store();
        let (data, digest) = blob(100);
        let mut w = store.writer("r", None).unwrap();
        w.write_all(&data).unwrap();
        drop(w);
        let err = store.writer("r", Some((&digest, 60))).unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::SizeMismatch {
                    expected: 60,
                    actual: 100
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn short_commit_keeps_the_ingest_for_resume() {
        let (_dir, store) = store();
        let (data, digest) = blob(100);
        let mut w = store.writer("r", None).unwrap();
        w.write_all(&data[..40]).unwrap();
        let err = w.commit(&digest, 100).unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::SizeMismatch {
                    expected: 100,
                    actual: 40
                }
            ),
            "{err:?}"
        );
        assert!(store.list().unwrap().is_empty());
        let mut w = store.writer("r", None).unwrap();
        assert_eq!(w.offset(), 40);
        w.write_all(&data[40..]).unwrap();
        w.commit(&digest, 100).unwrap();
    }

    #[test]
    fn commit_with_another_algorithm_rehashes() {
        let (_dir, store) = store();
        let (data, _) = blob(1000);
        let digest = Digest::of(Algorithm::Sha512, &data);
        // No expectation up front: the writer hashes sha256 as it goes.
        let mut w = store.writer("r", None).unwrap();
        w.write_all(&data).unwrap();
        w.commit(&digest, 1000).unwrap();
        assert_eq!(store.info(&digest).unwrap().size, 1000);
        assert!(
            store
                .blob_path(&digest)
                .starts_with(store.root().join("blobs/sha512"))
        );
    }
}
