//! The snapshotter: records, directories and mounts.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable};

use super::store::{self, META, RECORDS, Record};
use super::{
    Backend, Change, DiffStats, Info, Kind, Labels, Mount, SnapshotError, UNPACK_LABEL, Usage,
    changes, copy, diff, mount,
};
use crate::layer::{ApplyOptions, ApplyStats, apply_layer};

/// Overlay (or copy) snapshots of directory trees, recorded in redb.
///
/// See the [module documentation](super) for the layout and the crash
/// rules.
pub struct Snapshotter {
    root: PathBuf,
    db: Arc<Database>,
    backend: Backend,
    /// Temporary `new-*` directories being created by this process.
    creating: Mutex<HashSet<String>>,
    /// Unpack keys in progress in this process ([`Snapshotter::cleanup`]
    /// leaves them alone).
    unpacking: Mutex<HashSet<String>>,
}

impl fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshotter")
            .field("root", &self.root)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A name no other call of this process (or an earlier one) uses.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        store::now_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn mkdir(path: &Path, mode: u32) -> Result<(), SnapshotError> {
    DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| SnapshotError::io("mkdir", path, e))
}

fn mkdir_all(path: &Path) -> Result<(), SnapshotError> {
    DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(|e| SnapshotError::io("mkdir", path, e))
}

fn fsync_dir(path: &Path) -> Result<(), SnapshotError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| SnapshotError::io("fsync", path, e))
}

fn check_key(key: &str) -> Result<(), SnapshotError> {
    if key.is_empty() || key.contains('\0') {
        return Err(SnapshotError::Invalid {
            key: key.to_string(),
            reason: "a key must be non-empty and without NUL".into(),
        });
    }
    Ok(())
}

/// Mount points (from `/proc/self/mountinfo`) at or under `dir`, deepest
/// first.
pub(super) fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let info = "/proc/self/mountinfo";
    let text = fs::read_to_string(info).map_err(|e| SnapshotError::io("read", info, e))?;
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    Ok(out)
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let code = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = code {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Removes a name from an in-progress set when dropped.
struct Registered<'a> {
    set: &'a Mutex<HashSet<String>>,
    name: String,
}

impl<'a> Registered<'a> {
    fn new(set: &'a Mutex<HashSet<String>>, name: String) -> Self {
        set.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone());
        Registered { set, name }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
    }
}

/// Unmounts and removes a temporary mount point when dropped.
struct TempMount {
    path: PathBuf,
    mounted: bool,
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = mount::unmount(&self.path);
        }
        let _ = fs::remove_dir(&self.path);
    }
}

/// Where one snapshot lives, with its parents' directories.
pub(super) struct Layout {
    pub key: String,
    pub record: Record,
    /// `<root>/snapshots/<id>/fs`.
    pub fs: PathBuf,
    /// The parents' `fs` dirs, nearest first.
    pub parents: Vec<PathBuf>,
}

impl Snapshotter {
    /// Open (or create) the snapshots under `root`, recorded in `db`.
    ///
    /// `backend` None detects: an overlay mount is tried inside `root` and
    /// the copy backend used if it fails. A store keeps the backend it was
    /// made with; asking for the other one is an error. Leftovers of a
    /// crash are removed (see [`Snapshotter::cleanup`]).
    pub fn open(
        root: &Path,
        db: Arc<Database>,
        backend: Option<Backend>,
    ) -> Result<Self, SnapshotError> {
        // Overlay option strings separate paths with ',' and ':'.
        if root
            .as_os_str()
            .as_bytes()
            .iter()
            .any(|b| matches!(b, b',' | b':'))
        {
            return Err(SnapshotError::io(
                "snapshot root may not contain ',' or ':':",
                root,
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        }
        mkdir_all(&root.join("snapshots"))?;
        mkdir_all(&root.join("mnt"))?;
        let tx = db
            .begin_write()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let stored = {
            tx.open_table(RECORDS)
                .map_err(|e| SnapshotError::db("open records", e))?;
            let meta = tx
                .open_table(META)
                .map_err(|e| SnapshotError::db("open meta", e))?;
            meta.get("backend")
                .map_err(|e| SnapshotError::db("read backend", e))?
                .map(|v| v.value())
        };
        let stored = stored.and_then(store::backend_of);
        let chosen = match (stored, backend) {
            (Some(s), Some(a)) if s != a => {
                return Err(SnapshotError::BackendMismatch {
                    path: root.to_path_buf(),
                    stored: s,
                    asked: a,
                });
            }
            (Some(s), _) => s,
            (None, Some(a)) => a,
            (None, None) => detect(root),
        };
        if stored.is_none() {
            let mut meta = tx
                .open_table(META)
                .map_err(|e| SnapshotError::db("open meta", e))?;
            meta.insert("backend", store::backend_code(chosen))
                .map_err(|e| SnapshotError::db("write backend", e))?;
        }
        tx.commit().map_err(|e| SnapshotError::db("commit", e))?;
        let s = Snapshotter {
            root: root.to_path_buf(),
            db,
            backend: chosen,
            creating: Mutex::new(HashSet::new()),
            unpacking: Mutex::new(HashSet::new()),
        };
        s.cleanup()?;
        Ok(s)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The snapshot root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    fn dir_of(&self, id: u64) -> PathBuf {
        self.snapshots_dir().join(id.to_string())
    }

    /// Remove what a crash or an interrupted unpack left: mounts and
    /// directories under `<root>/mnt`, active unpack snapshots (label
    /// [`UNPACK_LABEL`]) not in progress in this process, and directories
    /// under `<root>/snapshots` that no committed record owns. Returns the
    /// keys of the snapshots removed.
    pub fn cleanup(&self) -> Result<Vec<String>, SnapshotError> {
        // Temporary mounts (unpacks of this process are in `unpacking`; their
        // mount points are left alone while any is running).
        let busy = !self
            .unpacking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        let mnt = self.root.join("mnt");
        if !busy {
            for m in mounts_under(&mnt)? {
                if m != mnt {
                    let _ = mount::unmount(&m);
                }
            }
            let still = mounts_under(&mnt)?;
            for name in copy::names(&mnt).map_err(|e| SnapshotError::io("read", &mnt, e))? {
                let p = mnt.join(name);
                if !still.iter().any(|m| m.starts_with(&p)) {
                    copy::remove_tree(&p)?;
                }
            }
        }

        // Interrupted unpacks.
        let mut removed = Vec::new();
        for info in self.list()? {
            if info.kind != Kind::Active || !info.labels.contains_key(UNPACK_LABEL) {
                continue;
            }
            let running = self
                .unpacking
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&info.name);
            if !running {
                match self.remove(&info.name) {
                    Ok(()) | Err(SnapshotError::NotFound(_)) => removed.push(info.name),
                    Err(e) => return Err(e),
                }
            }
        }

        // Orphan directories. A write transaction excludes a concurrent
        // create between its rename and its commit.
        let dir = self.snapshots_dir();
        let tx = self
            .db
            .begin_write()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let ids: HashSet<String> = {
            let table = tx
                .open_table(RECORDS)
                .map_err(|e| SnapshotError::db("open records", e))?;
            store::all(&table)?
                .into_iter()
                .map(|(_, r)| r.id.to_string())
                .collect()
        };
        let creating = self
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mounted = mounts_under(&dir)?;
        for name in copy::names(&dir).map_err(|e| SnapshotError::io("read", &dir, e))? {
            let name_s = name.to_string_lossy().into_owned();
            if ids.contains(&name_s) || creating.contains(&name_s) {
                continue;
            }
            let p = dir.join(&name);
            if mounted.iter().any(|m| m.starts_with(&p)) {
                continue;
            }
            copy::remove_tree(&p)?;
        }
        tx.abort().map_err(|e| SnapshotError::db("abort", e))?;
        Ok(removed)
    }

    /// Create an active (writable) snapshot `key` on top of the committed
    /// `parent`, and return the mounts for it.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// Create a read-only view `key` of the committed `parent`, and return
    /// the mounts for it.
    pub fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(Kind::View, key, parent, labels)
    }

    fn check_parent(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(), SnapshotError> {
        if store::get(table, key)?.is_some() {
            return Err(SnapshotError::Exists(key.to_string()));
        }
        if let Some(p) = parent {
            match store::get(table, p)? {
                None => return Err(SnapshotError::NotFound(p.to_string())),
                Some(r) if r.kind != Kind::Committed => {
                    return Err(SnapshotError::Invalid {
                        key: p.to_string(),
                        reason: format!("cannot be the parent of {key}: it is not committed"),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        check_key(key)?;
        let parent_fs = {
            let tx = self
                .db
                .begin_read()
                .map_err(|e| SnapshotError::db("begin", e))?;
            let table = tx
                .open_table(RECORDS)
                .map_err(|e| SnapshotError::db("open records", e))?;
            Self::check_parent(&table, key, parent)?;
            match parent {
                Some(p) => store::get(&table, p)?.map(|r| self.dir_of(r.id).join("fs")),
                None => None,
            }
        };

        let tmp_name = format!("new-{}", unique());
        let _reg = Registered::new(&self.creating, tmp_name.clone());
        let tmp = self.snapshots_dir().join(&tmp_name);
        let result = (|| {
            mkdir(&tmp, 0o700)?;
            mkdir(&tmp.join("fs"), 0o755)?;
            if kind == Kind::Active {
                match (self.backend, &parent_fs) {
                    (Backend::Overlay, _) => mkdir(&tmp.join("work"), 0o700)?,
                    (Backend::Copy, Some(pfs)) => copy::copy_tree(pfs, &tmp.join("fs"))?,
                    (Backend::Copy, None) => {}
                }
            }
            fsync_dir(&tmp)?;

            let tx = self
                .db
                .begin_write()
                .map_err(|e| SnapshotError::db("begin", e))?;
            let id = {
                let mut table = tx
                    .open_table(RECORDS)
                    .map_err(|e| SnapshotError::db("open records", e))?;
                Self::check_parent(&table, key, parent)?;
                let mut meta = tx
                    .open_table(META)
                    .map_err(|e| SnapshotError::db("open meta", e))?;
                let id = meta
                    .get("next_id")
                    .map_err(|e| SnapshotError::db("read next id", e))?
                    .map_or(1, |v| v.value());
                meta.insert("next_id", id + 1)
                    .map_err(|e| SnapshotError::db("write next id", e))?;
                let rec = Record {
                    id,
                    kind,
                    parent: parent.map(str::to_string),
                    labels,
                    created: store::now_nanos(),
                };
                table
                    .insert(key, store::encode(key, &rec)?.as_slice())
                    .map_err(|e| SnapshotError::db(format!("write {key}"), e))?;
                id
            };
            let dst = self.dir_of(id);
            fs::rename(&tmp, &dst).map_err(|e| SnapshotError::io("rename to", &dst, e))?;
            fsync_dir(&self.snapshots_dir())?;
            if let Err(e) = tx.commit() {
                let _ = copy::remove_tree(&dst);
                return Err(SnapshotError::db(format!("commit {key}"), e));
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = copy::remove_tree(&tmp);
            return Err(e);
        }
        self.mounts(key)
    }

    pub(super) fn layout(&self, key: &str) -> Result<Layout, SnapshotError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let table = tx
            .open_table(RECORDS)
            .map_err(|e| SnapshotError::db("open records", e))?;
        let record =
            store::get(&table, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        let mut parents = Vec::new();
        let mut next = record.parent.clone();
        while let Some(p) = next {
            let r = store::get(&table, &p)?.ok_or_else(|| SnapshotError::Invalid {
                key: key.to_string(),
                reason: format!("parent {p} is missing"),
            })?;
            parents.push(self.dir_of(r.id).join("fs"));
            next = r.parent;
            if parents.len() > 10_000 {
                return Err(SnapshotError::Invalid {
                    key: key.to_string(),
                    reason: "parent chain loops".into(),
                });
            }
        }
        Ok(Layout {
            key: key.to_string(),
            fs: self.dir_of(record.id).join("fs"),
            record,
            parents,
        })
    }

    /// The mounts that make up snapshot `key`'s tree.
    ///
    /// Overlay: an active snapshot with parents is an overlay (lower dirs
    /// nearest parent first, its own upper and work dir); one without is a
    /// bind of its directory; a view or a committed snapshot is a read-only
    /// bind when there is one layer, a read-only overlay of the layers
    /// otherwise. Copy: read-only or read-write binds.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let l = self.layout(key)?;
        let bind = |p: &Path, ro: bool| Mount {
            kind: "bind".into(),
            source: p.to_string_lossy().into_owned(),
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        };
        let lowerdir = |dirs: &[PathBuf]| {
            let v: Vec<String> = dirs
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            format!("lowerdir={}", v.join(":"))
        };
        let ro_stack = |layers: &[PathBuf], own: &Path| match layers {
            [] => bind(own, true),
            [one] => bind(one, true),
            many => Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec!["ro".into(), lowerdir(many)],
            },
        };
        let m = match (self.backend, l.record.kind) {
            (Backend::Overlay, Kind::Active) if l.parents.is_empty() => bind(&l.fs, false),
            (Backend::Overlay, Kind::Active) => {
                let work = l.fs.with_file_name("work");
                Mount {
                    kind: "overlay".into(),
                    source: "overlay".into(),
                    options: vec![
                        lowerdir(&l.parents),
                        format!("upperdir={}", l.fs.display()),
                        format!("workdir={}", work.display()),
                    ],
                }
            }
            (Backend::Overlay, Kind::View) => ro_stack(&l.parents, &l.fs),
            (Backend::Overlay, Kind::Committed) => {
                let mut layers = vec![l.fs.clone()];
                layers.extend(l.parents.iter().cloned());
                ro_stack(&layers, &l.fs)
            }
            (Backend::Copy, Kind::Active) => bind(&l.fs, false),
            (Backend::Copy, Kind::View) => bind(l.parents.first().unwrap_or(&l.fs), true),
            (Backend::Copy, Kind::Committed) => bind(&l.fs, true),
        };
        Ok(vec![m])
    }

    /// Turn the active snapshot `key` into the committed snapshot `name`
    /// (same directory, the creation time kept, `labels` replacing its
    /// labels). Unmount it first. Refused if `name` exists or `key` is not
    /// active.
    pub fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<(), SnapshotError> {
        check_key(name)?;
        let tx = self
            .db
            .begin_write()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let id = {
            let mut table = tx
                .open_table(RECORDS)
                .map_err(|e| SnapshotError::db("open records", e))?;
            let rec =
                store::get(&table, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            if rec.kind != Kind::Active {
                return Err(SnapshotError::Invalid {
                    key: key.to_string(),
                    reason: format!("cannot commit a {:?} snapshot", rec.kind).to_lowercase(),
                });
            }
            if store::get(&table, name)?.is_some() {
                return Err(SnapshotError::Exists(name.to_string()));
            }
            let id = rec.id;
            let new = Record {
                kind: Kind::Committed,
                labels,
                ..rec
            };
            table
                .remove(key)
                .map_err(|e| SnapshotError::db(format!("remove {key}"), e))?;
            table
                .insert(name, store::encode(name, &new)?.as_slice())
                .map_err(|e| SnapshotError::db(format!("write {name}"), e))?;
            id
        };
        tx.commit()
            .map_err(|e| SnapshotError::db(format!("commit {name}"), e))?;
        // The work dir is only needed while the snapshot is writable.
        let _ = copy::remove_tree(&self.dir_of(id).join("work"));
        Ok(())
    }

    /// Remove snapshot `key` and its directory. Refused while it is the
    /// parent of another snapshot. Unmount it first.
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let id = {
            let mut table = tx
                .open_table(RECORDS)
                .map_err(|e| SnapshotError::db("open records", e))?;
            let rec =
                store::get(&table, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            let children: Vec<String> = store::all(&table)?
                .into_iter()
                .filter(|(_, r)| r.parent.as_deref() == Some(key))
                .map(|(k, _)| k)
                .collect();
            if !children.is_empty() {
                return Err(SnapshotError::HasChildren {
                    key: key.to_string(),
                    children,
                });
            }
            table
                .remove(key)
                .map_err(|e| SnapshotError::db(format!("remove {key}"), e))?;
            rec.id
        };
        tx.commit()
            .map_err(|e| SnapshotError::db(format!("commit removal of {key}"), e))?;
        // A crash here leaves an orphan directory: `cleanup` removes it.
        copy::remove_tree(&self.dir_of(id))
    }

    /// What is recorded about `key`.
    pub fn stat(&self, key: &str) -> Result<Info, SnapshotError> {
        Ok(self.layout_record(key)?.info(key))
    }

    fn layout_record(&self, key: &str) -> Result<Record, SnapshotError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let table = tx
            .open_table(RECORDS)
            .map_err(|e| SnapshotError::db("open records", e))?;
        store::get(&table, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    /// Every snapshot, sorted by key.
    pub fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let table = tx
            .open_table(RECORDS)
            .map_err(|e| SnapshotError::db("open records", e))?;
        Ok(store::all(&table)?
            .into_iter()
            .map(|(k, r)| r.info(&k))
            .collect())
    }

    /// Replace the labels of `key`.
    pub fn update_labels(&self, key: &str, labels: Labels) -> Result<Info, SnapshotError> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| SnapshotError::db("begin", e))?;
        let rec = {
            let mut table = tx
                .open_table(RECORDS)
                .map_err(|e| SnapshotError::db("open records", e))?;
            let mut rec =
                store::get(&table, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            rec.labels = labels;
            table
                .insert(key, store::encode(key, &rec)?.as_slice())
                .map_err(|e| SnapshotError::db(format!("write {key}"), e))?;
            rec
        };
        tx.commit()
            .map_err(|e| SnapshotError::db(format!("commit labels of {key}"), e))?;
        Ok(rec.info(key))
    }

    /// Disk usage of `key`'s own directory (overlay: its own layer; copy:
    /// the whole tree).
    pub fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        let l = self.layout(key)?;
        let (bytes, inodes) = copy::usage(&l.fs)?;
        Ok(Usage { bytes, inodes })
    }

    /// Changes of `key` against its parent, `docker diff` style.
    pub fn changes(&self, key: &str) -> Result<Vec<Change>, SnapshotError> {
        let l = self.layout(key)?;
        let raw = changes::compute(self.backend, &l)?;
        Ok(raw.into_iter().map(|r| r.change()).collect())
    }

    /// Write the changes of `key` against its parent as an uncompressed
    /// OCI layer tar (whiteouts for deletions) to `out`.
    pub fn write_diff(&self, key: &str, out: impl Write) -> Result<DiffStats, SnapshotError> {
        let l = self.layout(key)?;
        let raw = changes::compute(self.backend, &l)?;
        diff::write(&l, &raw, out)
    }

    /// Apply a layer as the committed snapshot `chain_id` on top of
    /// `parent`: an active snapshot `<key_prefix>unpack-<chain_id>-<n>`
    /// (labelled [`UNPACK_LABEL`]) is prepared, the layer applied (straight
    /// into the directory for the copy backend and a parentless overlay
    /// snapshot, through a temporary mount otherwise, so removals become
    /// overlay whiteouts), and committed as `chain_id`. If `chain_id` is
    /// already committed nothing is done and default (empty) stats are
    /// returned. With `expected_diff_id`, a layer whose uncompressed stream
    /// hashes to something else is refused before it is committed.
    pub fn unpack_layer(
        &self,
        key_prefix: &str,
        parent: Option<&str>,
        chain_id: &str,
        layer: impl Read,
        opts: &ApplyOptions,
        expected_diff_id: Option<&str>,
    ) -> Result<ApplyStats, SnapshotError> {
        match self.stat(chain_id) {
            Ok(info) if info.kind == Kind::Committed => return Ok(ApplyStats::default()),
            Ok(_) => {
                return Err(SnapshotError::Invalid {
                    key: chain_id.to_string(),
                    reason: "exists and is not committed".into(),
                });
            }
            Err(SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let key = format!("{key_prefix}unpack-{chain_id}-{}", unique());
        let _reg = Registered::new(&self.unpacking, key.clone());
        let mut labels = Labels::new();
        labels.insert(UNPACK_LABEL.to_string(), chain_id.to_string());
        let mounts = self.prepare(&key, parent, labels)?;
        let result = (|| {
            let l = self.layout(&key)?;
            let layer_err = |source| SnapshotError::Layer {
                chain_id: chain_id.to_string(),
                source,
            };
            let stats = if self.backend == Backend::Copy || parent.is_none() {
                apply_layer(layer, &l.fs, opts).map_err(layer_err)?
            } else {
                let mut tm = TempMount {
                    path: self.root.join("mnt").join(format!("unpack-{}", unique())),
                    mounted: false,
                };
                mkdir(&tm.path, 0o700)?;
                mount::mount_all(&mounts, &tm.path)?;
                tm.mounted = true;
                let stats = apply_layer(layer, &tm.path, opts).map_err(layer_err)?;
                mount::unmount(&tm.path)?;
                tm.mounted = false;
                stats
            };
            if let Some(want) = expected_diff_id.filter(|w| stats.diff_id.as_deref() != Some(*w)) {
                return Err(SnapshotError::Invalid {
                    key: chain_id.to_string(),
                    reason: format!(
                        "layer content hashes to {}, but the image config's diff_id is {want}",
                        stats
                            .diff_id
                            .as_deref()
                            .unwrap_or("nothing (diffID not computed)")
                    ),
                });
            }
            match self.commit(chain_id, &key, Labels::new()) {
                Ok(()) => Ok(stats),
                // Another unpack of the same layer won.
                Err(SnapshotError::Exists(_)) => {
                    self.remove(&key)?;
                    Ok(stats)
                }
                Err(e) => Err(e),
            }
        })();
        if result.is_err() {
            let _ = self.remove(&key);
        }
        result
    }
}

/// Try an overlay mount (two lower dirs, an upper, a write) inside `root`.
fn detect(root: &Path) -> Backend {
    let dir = root.join("mnt").join(format!("detect-{}", unique()));
    let ok = (|| -> Result<(), SnapshotError> {
        for d in ["", "l1", "l2", "u", "w", "m"] {
            mkdir(&dir.join(d), 0o700)?;
        }
        let p = |d: &str| dir.join(d).to_string_lossy().into_owned();
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={}:{}", p("l1"), p("l2")),
                format!("upperdir={}", p("u")),
                format!("workdir={}", p("w")),
            ],
        };
        let target = dir.join("m");
        mount::mount_all(&[m], &target)?;
        let wrote = fs::write(target.join("probe"), b"x");
        mount::unmount(&target)?;
        wrote.map_err(|e| SnapshotError::io("write", target.join("probe"), e))
    })();
    let _ = copy::remove_tree(&dir);
    if ok.is_ok() {
        Backend::Overlay
    } else {
        Backend::Copy
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b\011c"), PathBuf::from("/a b\tc"));
        assert_eq!(unescape(r"/x\\"), PathBuf::from(r"/x\\"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("").is_err());
        assert!(check_key("a\0b").is_err());
        assert!(check_key("sha256:abc").is_ok());
    }
}
