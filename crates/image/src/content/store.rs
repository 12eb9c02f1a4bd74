//! [`LocalStore`]: the content store on a local filesystem.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use super::Digest;
use super::{Algorithm, ContentError, Info, Ingester, Manager, Provider, Writer};

/// The longest ingest ref accepted, in bytes.
pub const MAX_REF_LEN: usize = 4096;

/// A content store rooted at a directory (see the [module docs](super) for
/// the layout and the visibility rule).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens the store at `root`, creating `blobs/<alg>/` and `ingest/`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ContentError> {
        let store = LocalStore { root: root.into() };
        for alg in Algorithm::ALL {
            let dir = store.alg_dir(alg);
            fs::create_dir_all(&dir)
                .map_err(|e| ContentError::io(format!("create {}", dir.display()), e))?;
        }
        let ingest = store.root.join("ingest");
        fs::create_dir_all(&ingest)
            .map_err(|e| ContentError::io(format!("create {}", ingest.display()), e))?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives once committed.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.alg_dir(digest.algorithm()).join(digest.hex())
    }

    /// The refs of ingests in progress or interrupted, sorted.
    pub fn ingests(&self) -> Result<Vec<String>, ContentError> {
        let dir = self.root.join("ingest");
        let entries = fs::read_dir(&dir)
            .map_err(|e| ContentError::io(format!("read {}", dir.display()), e))?;
        let mut refs = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| ContentError::io(format!("read {}", dir.display()), e))?;
            // An ingest whose ref file is gone is being committed or aborted,
            // or was interrupted before its ref was written: see
            // [`LocalStore::remove_orphans`].
            match fs::read_to_string(entry.path().join("ref")) {
                Ok(r) if r.is_empty() => {}
                Ok(r) => refs.push(r),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ContentError::io(
                        format!("read {}", entry.path().join("ref").display()),
                        e,
                    ));
                }
            }
        }
        refs.sort();
        Ok(refs)
    }

    /// Discards the ingest `reference` and its bytes. Does nothing if there is
    /// no such ingest; [`ContentError::Locked`] if a writer holds it.
    pub fn abort(&self, reference: &str) -> Result<(), ContentError> {
        let dir = self.ingest_dir(reference)?;
        if let Some(lock) = lock_ingest(&dir, reference, false)? {
            remove_ingest(&dir, &lock)?;
        }
        Ok(())
    }

    /// Removes ingest directories that have no ref: left by a writer killed
    /// after it created its directory but before its ref was in place (or by
    /// an older berth that wrote the ref in place and was killed half-way).
    /// A directory whose lock a live writer holds is left alone. Returns how
    /// many were removed.
    pub fn remove_orphans(&self) -> Result<usize, ContentError> {
        let root = self.root.join("ingest");
        let entries = fs::read_dir(&root)
            .map_err(|e| ContentError::io(format!("read {}", root.display()), e))?;
        let mut removed = 0;
        for entry in entries {
            let dir = entry
                .map_err(|e| ContentError::io(format!("read {}", root.display()), e))?
                .path();
            match fs::read_to_string(dir.join("ref")) {
                Ok(r) if !r.is_empty() => continue,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ContentError::io(
                        format!("read {}", dir.join("ref").display()),
                        e,
                    ));
                }
            }
            let lock = match lock_ingest(&dir, "", false) {
                Ok(lock) => lock,
                // A writer is setting it up or committing it right now.
                Err(ContentError::Locked(_)) => continue,
                Err(e) => return Err(e),
            };
            // Re-read under the lock: a writer may have finished setting up.
            if fs::read_to_string(dir.join("ref")).is_ok_and(|r| !r.is_empty()) {
                continue;
            }
            for name in [REF_TMP, "ref", "data"] {
                let path = dir.join(name);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(ContentError::io(format!("remove {}", path.display()), e));
                    }
                }
            }
            if let Some(lock) = lock {
                remove_ingest(&dir, &lock)?;
            } else {
                let _ = fs::remove_dir(&dir);
            }
            removed += 1;
        }
        Ok(removed)
    }

    fn alg_dir(&self, alg: Algorithm) -> PathBuf {
        self.root.join("blobs").join(alg.as_str())
    }

    /// `ingest/<sha256 of ref>`: the raw ref never becomes a path.
    fn ingest_dir(&self, reference: &str) -> Result<PathBuf, ContentError> {
        if reference.is_empty() || reference.len() > MAX_REF_LEN {
            return Err(ContentError::InvalidRef(reference.to_owned()));
        }
        let name = Digest::of(Algorithm::Sha256, reference.as_bytes());
        Ok(self.root.join("ingest").join(name.hex()))
    }
}

impl Provider for LocalStore {
    fn open(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => ContentError::NotFound(digest.clone()),
            _ => ContentError::io(format!("open {}", path.display()), e),
        })
    }

    fn info(&self, digest: &Digest) -> Result<Info, ContentError> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(Info {
                digest: digest.clone(),
                size: m.len(),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(ContentError::io(format!("stat {}", path.display()), e)),
        }
    }
}

impl Ingester for LocalStore {
    fn writer(
        &self,
        reference: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Writer, ContentError> {
        let dir = self.ingest_dir(reference)?;
        let lock = lock_ingest(&dir, reference, true)?
            .ok_or_else(|| ContentError::Locked(reference.to_owned()))?;
        let ref_path = dir.join("ref");
        if fs::read_to_string(&ref_path).ok().as_deref() != Some(reference) {
            // Whole or absent, never empty: a kill between create and write
            // would otherwise leave a ref that names nothing.
            let tmp = dir.join(REF_TMP);
            fs::write(&tmp, reference)
                .and_then(|()| fs::rename(&tmp, &ref_path))
                .map_err(|e| ContentError::io(format!("write {}", ref_path.display()), e))?;
        }
        let data = dir.join("data");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&data)
            .map_err(|e| ContentError::io(format!("open {}", data.display()), e))?;
        Writer::resume(
            reference.to_owned(),
            dir,
            self.root.join("blobs"),
            lock,
            file,
            expected,
        )
    }
}

impl Manager for LocalStore {
    fn list(&self) -> Result<Vec<Info>, ContentError> {
        let mut infos = Vec::new();
        for alg in Algorithm::ALL {
            let dir = self.alg_dir(alg);
            let entries = fs::read_dir(&dir)
                .map_err(|e| ContentError::io(format!("read {}", dir.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| ContentError::io(format!("read {}", dir.display()), e))?;
                // Skip anything that is not a blob name (editor droppings, …).
                let Some(digest) = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| Digest::new(alg, name).ok())
                else {
                    continue;
                };
                let meta = entry
                    .metadata()
                    .map_err(|e| ContentError::io(format!("stat {}", entry.path().display()), e))?;
                infos.push(Info {
                    digest,
                    size: meta.len(),
                });
            }
        }
        infos.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(infos)
    }

    fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.blob_path(digest);
        fs::remove_file(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => ContentError::NotFound(digest.clone()),
            _ => ContentError::io(format!("remove {}", path.display()), e),
        })
    }
}

/// Takes the exclusive lock on the ingest in `dir`, creating it if `create`.
///
/// Returns `None` if there is no ingest and `create` is false. The lock is a
/// non-blocking `flock` on `dir/lock`; a commit or abort removes that file
/// while holding it, so after locking we check that the path still names the
/// inode we locked, and start over if not.
/// The ref is written here first, then renamed to `ref`.
const REF_TMP: &str = "ref.tmp";

pub(crate) fn lock_ingest(
    dir: &Path,
    reference: &str,
    create: bool,
) -> Result<Option<File>, ContentError> {
    let path = dir.join("lock");
    let io = |what: &str, e| ContentError::io(format!("{what} {}", path.display()), e);
    for _ in 0..64 {
        if create {
            fs::create_dir_all(dir)
                .map_err(|e| ContentError::io(format!("create {}", dir.display()), e))?;
        }
        let file = match OpenOptions::new()
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            // Removed by a concurrent commit or abort (with its directory).
            Err(e) if e.kind() == ErrorKind::NotFound && create => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("open", e)),
        };
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Err(ContentError::Locked(reference.to_owned())),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(io("lock", e.into())),
        }
        let held = file.metadata().map_err(|e| io("stat", e))?;
        match fs::metadata(&path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(Some(file)),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound && create => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("stat", e)),
        }
    }
    // Only reachable if the ref is committed and reopened over and over.
    Err(ContentError::Locked(reference.to_owned()))
}

/// Removes a locked ingest: `ref` first (it leaves the listing), then `data`,
/// then `lock`, then the directory. The directory may survive if another
/// writer has already started a fresh ingest of the same ref.
pub(crate) fn remove_ingest(dir: &Path, _lock: &File) -> Result<(), ContentError> {
    for name in ["ref", REF_TMP, "data", "lock"] {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(ContentError::io(format!("remove {}", path.display()), e)),
        }
    }
    let _ = fs::remove_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::{Arc, Barrier};
    use std::thread;

    use super::*;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        (dir, store)
    }

    fn put(store: &LocalStore, reference: &str, data: &[u8], alg: Algorithm) -> Digest {
        let digest = Digest::of(alg, data);
        let size = data.len() as u64;
        let mut w = store.writer(reference, Some((&digest, size))).unwrap();
        w.write_all(data).unwrap();
        w.commit(&digest, size).unwrap();
        digest
    }

    fn read(store: &LocalStore, digest: &Digest) -> Vec<u8> {
        let mut out = Vec::new();
        store.open(digest).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    fn blob_count(store: &LocalStore) -> usize {
        Algorithm::ALL
            .iter()
            .map(|alg| fs::read_dir(store.alg_dir(*alg)).unwrap().count())
            .sum()
    }

    #[test]
    fn round_trip() {
        let (_dir, store) = store();
        let digest = put(
            &store,
            "pull-docker.io/library/busybox-layer-3",
            b"layer",
            Algorithm::Sha256,
        );
        assert_eq!(read(&store, &digest), b"layer");
        assert_eq!(
            store.info(&digest).unwrap(),
            Info {
                digest: digest.clone(),
                size: 5
            }
        );
        assert!(store.exists(&digest).unwrap());
        assert_eq!(
            store.blob_path(&digest),
            store.root().join("blobs/sha256").join(digest.hex())
        );
        assert!(store.ingests().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(store.root().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn sha512_round_trip() {
        let (_dir, store) = store();
        let digest = put(&store, "r", b"config", Algorithm::Sha512);
        assert_eq!(digest.hex().len(), 128);
        assert_eq!(read(&store, &digest), b"config");
        assert!(
            store
                .blob_path(&digest)
                .starts_with(store.root().join("blobs/sha512"))
        );
    }

    #[test]
    fn committed_blob_is_read_only() {
        let (_dir, store) = store();
        let digest = put(&store, "r", b"immutable", Algorithm::Sha256);
        let mode = fs::metadata(store.blob_path(&digest)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o444);
    }

    #[test]
    fn digest_mismatch_leaves_nothing() {
        let (_dir, store) = store();
        let wrong = Digest::of(Algorithm::Sha256, b"something else");
        let mut w = store.writer("r", Some((&wrong, 4))).unwrap();
        w.write_all(b"data").unwrap();
        let err = w.commit(&wrong, 4).unwrap_err();
        match err {
            ContentError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, Digest::of(Algorithm::Sha256, b"data"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(blob_count(&store), 0);
        assert!(!store.exists(&wrong).unwrap());
        assert!(store.ingests().unwrap().is_empty());
    }

    #[test]
    fn size_mismatch_leaves_nothing_in_blobs() {
        let (_dir, store) = store();
        let digest = Digest::of(Algorithm::Sha256, b"data");
        let mut w = store.writer("r", None).unwrap();
        w.write_all(b"data").unwrap();
        let err = w.commit(&digest, 5).unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::SizeMismatch {
                    expected: 5,
                    actual: 4
                }
            ),
            "{err:?}"
        );
        assert_eq!(blob_count(&store), 0);
        assert_eq!(err.to_string(), "size mismatch: expected 5 bytes, got 4");
    }

    #[test]
    fn same_blob_through_two_refs_at_once() {
        let (_dir, store) = store();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let digest = Digest::of(Algorithm::Sha256, &data);
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = ["pull-a", "pull-b"]
            .into_iter()
            .map(|reference| {
                let (store, data, digest, barrier) =
                    (store.clone(), data.clone(), digest.clone(), barrier.clone());
                thread::spawn(move || {
                    let size = data.len() as u64;
                    let mut w = store.writer(reference, Some((&digest, size))).unwrap();
                    w.write_all(&data).unwrap();
                    barrier.wait();
                    w.commit(&digest, size)
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        assert_eq!(blob_count(&store), 1);
        assert_eq!(read(&store, &digest), data);
        assert!(store.ingests().unwrap().is_empty());
        // A later commit of the same blob succeeds too.
        put(&store, "pull-c", &data, Algorithm::Sha256);
        assert_eq!(blob_count(&store), 1);
    }

    #[test]
    fn same_ref_twice_is_locked_not_blocking() {
        let (_dir, store) = store();
        let mut first = store.writer("r", None).unwrap();
        first.write_all(b"abc").unwrap();
        let err = store.writer("r", None).unwrap_err();
        assert!(
            matches!(&err, ContentError::Locked(r) if r == "r"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "ingest ref \"r\" is locked by another writer"
        );
        // From another thread too (flock is per open file, not per process).
        let other = store.clone();
        let err = thread::spawn(move || other.writer("r", None).map(|_| ()))
            .join()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ContentError::Locked(_)), "{err:?}");
        assert!(matches!(store.abort("r"), Err(ContentError::Locked(_))));
        // Another ref is independent.
        drop(store.writer("other", None).unwrap());
        drop(first);
        assert_eq!(store.writer("r", None).unwrap().offset(), 3);
    }

    #[test]
    fn abort_discards_the_ingest() {
        let (_dir, store) = store();
        let mut w = store.writer("r", None).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(store.ingests().unwrap(), ["r"]);
        store.abort("r").unwrap();
        assert!(store.ingests().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(store.root().join("ingest")).unwrap().count(),
            0
        );
        store.abort("r").unwrap(); // no ingest: nothing to do
        assert_eq!(store.writer("r", None).unwrap().offset(), 0);
    }

    #[test]
    fn orphan_ingests_are_swept_but_live_ones_kept() {
        let (_dir, store) = store();
        let ingest = store.root().join("ingest");
        // What a writer killed at each step of its set-up leaves.
        for (name, files) in [
            ("a", &["lock"][..]),
            ("b", &["lock", "ref"]),
            ("c", &["lock", "ref.tmp"]),
            ("d", &[]),
        ] {
            fs::create_dir(ingest.join(name)).unwrap();
            for f in files {
                fs::write(ingest.join(name).join(f), b"").unwrap();
            }
        }
        let mut live = store.writer("live", None).unwrap();
        live.write_all(b"x").unwrap();
        // A writer that holds its lock but has not written its ref yet.
        fs::create_dir(ingest.join("e")).unwrap();
        let held = lock_ingest(&ingest.join("e"), "", true).unwrap().unwrap();
        assert_eq!(store.ingests().unwrap(), ["live"]);
        assert_eq!(store.remove_orphans().unwrap(), 4);
        let mut left: Vec<_> = fs::read_dir(&ingest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"e".to_string()));
        drop(held);
        drop(live);
        assert_eq!(store.remove_orphans().unwrap(), 1);
        assert_eq!(store.ingests().unwrap(), ["live"]);
    }

    #[test]
    fn ingest_dirs_never_contain_the_raw_ref() {
        let (_dir, store) = store();
        let reference = "../../escape/../me";
        drop(store.writer(reference, None).unwrap());
        let names: Vec<_> = fs::read_dir(store.root().join("ingest"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0].len(), 64);
        assert_eq!(store.ingests().unwrap(), [reference]);
        assert!(matches!(
            store.writer("", None),
            Err(ContentError::InvalidRef(_))
        ));
        let long = "x".repeat(MAX_REF_LEN + 1);
        assert!(matches!(
            store.writer(&long, None),
            Err(ContentError::InvalidRef(_))
        ));
    }

    #[test]
    fn list_and_delete() {
        let (_dir, store) = store();
        let a = put(&store, "a", b"aaa", Algorithm::Sha256);
        let b = put(&store, "b", b"bb", Algorithm::Sha512);
        fs::write(store.alg_dir(Algorithm::Sha256).join("not-a-blob"), b"x").unwrap();
        let mut want = vec![
            Info {
                digest: a.clone(),
                size: 3,
            },
            Info {
                digest: b.clone(),
                size: 2,
            },
        ];
        want.sort_by(|x, y| x.digest.cmp(&y.digest));
        assert_eq!(store.list().unwrap(), want);

        store.delete(&a).unwrap();
        assert!(!store.exists(&a).unwrap());
        assert!(matches!(store.open(&a), Err(ContentError::NotFound(d)) if d == a));
        assert!(matches!(store.info(&a), Err(ContentError::NotFound(_))));
        assert!(matches!(store.delete(&a), Err(ContentError::NotFound(_))));
        assert_eq!(store.list().unwrap(), [Info { digest: b, size: 2 }]);
        assert_eq!(
            ContentError::NotFound(a.clone()).to_string(),
            format!("content {a} not found")
        );
    }
}
