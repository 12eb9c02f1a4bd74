//! Volumes: the `local` driver's named and anonymous volumes, kept in redb
//! (table `volumes`: name → JSON), with the containers that reference each
//! one (`refs`: a volume in use cannot be removed) and the running ones
//! that have it mounted (`active`: a volume with mount options is mounted
//! while that set is not empty). Both sets are in the database, so a
//! daemon restart knows them; [`VolumeService::reconcile`] drops what the
//! containers no longer say after one.

/// The `local` driver.
pub mod local;
/// A container's mounts: parsing and planning at create.
pub mod mounts;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_image::snapshot::is_mountpoint;
use berth_image::spec::{BindMount, Propagation};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::db::db_err;
use crate::error::EngineError;
use crate::events::Events;
pub use mounts::MountPoint;

const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");

/// The label Docker puts on volumes made without a name.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume as berth records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its name (64 hex for anonymous volumes).
    pub name: String,
    /// `local`.
    pub driver: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Driver options (`type`, `device`, `o`).
    pub options: BTreeMap<String, String>,
    /// RFC 3339, seconds.
    pub created_at: String,
    /// Containers that reference it.
    pub refs: BTreeSet<String>,
    /// Running containers that have it mounted.
    pub active: BTreeSet<String>,
}

/// What a container's start adds to its spec.
#[derive(Debug, Default)]
pub struct StartMounts {
    /// Binds (host paths and volumes).
    pub binds: Vec<BindMount>,
    /// tmpfs mounts: destination → options.
    pub tmpfs: BTreeMap<String, String>,
}

/// A create request for a volume (`POST /volumes/create`).
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `None` or empty: an anonymous volume with a random name.
    pub name: Option<String>,
    /// `""` or `local`.
    pub driver: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The engine's volumes.
#[derive(Debug)]
pub struct VolumeService {
    db: Arc<Database>,
    root: PathBuf,
    events: Arc<Events>,
    /// Serialises create, remove and reference changes.
    lock: Mutex<()>,
}

impl VolumeService {
    /// The volumes over `db`, with their data under `root`
    /// (`<data-root>/volumes`).
    pub fn new(db: Arc<Database>, root: PathBuf, events: Arc<Events>) -> Result<Self, EngineError> {
        std::fs::create_dir_all(&root)
            .map_err(|e| EngineError::io(format!("create {}", root.display()), e))?;
        let tx = db.begin_write().map_err(|e| db_err("begin", e))?;
        tx.open_table(VOLUMES)
            .map_err(|e| db_err("open volumes", e))?;
        tx.commit().map_err(|e| db_err("commit", e))?;
        Ok(VolumeService {
            db,
            root,
            events,
            lock: Mutex::new(()),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `<root>/<name>`.
    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where a volume's data is: `<root>/<name>/_data`.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    fn read(&self, name: &str) -> Result<Option<Volume>, EngineError> {
        let tx = self.db.begin_read().map_err(|e| db_err("begin", e))?;
        let t = tx
            .open_table(VOLUMES)
            .map_err(|e| db_err("open volumes", e))?;
        let Some(v) = t.get(name).map_err(|e| db_err("read volume", e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| EngineError::Internal(format!("volume record {name}: {e}")))
    }

    /// Changes the records `f` picks in one transaction: `f` gets each
    /// record and says whether it changed it. Nothing changed, nothing is
    /// written (a container without volumes costs no commit).
    fn update_all(&self, mut f: impl FnMut(&mut Volume) -> bool) -> Result<(), EngineError> {
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        let any = {
            let mut t = tx
                .open_table(VOLUMES)
                .map_err(|e| db_err("open volumes", e))?;
            let mut changed = Vec::new();
            for item in t.iter().map_err(|e| db_err("list volumes", e))? {
                let (_, v) = item.map_err(|e| db_err("read volume", e))?;
                if let Ok(mut vol) = serde_json::from_slice::<Volume>(v.value())
                    && f(&mut vol)
                {
                    changed.push(vol);
                }
            }
            let any = !changed.is_empty();
            for vol in changed {
                write(&mut t, &vol)?;
            }
            any
        };
        if !any {
            return tx.abort().map_err(|e| db_err("abort", e));
        }
        tx.commit().map_err(|e| db_err("commit", e))
    }

    /// Changes the record of `name` with `f` in one transaction.
    fn update(
        &self,
        name: &str,
        f: impl FnOnce(&mut Volume) -> Result<(), EngineError>,
    ) -> Result<Volume, EngineError> {
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        let vol = {
            let mut t = tx
                .open_table(VOLUMES)
                .map_err(|e| db_err("open volumes", e))?;
            let mut vol: Volume = {
                let v = t
                    .get(name)
                    .map_err(|e| db_err("read volume", e))?
                    .ok_or_else(|| EngineError::NoSuchVolume(name.to_owned()))?;
                serde_json::from_slice(v.value())
                    .map_err(|e| EngineError::Internal(format!("volume record {name}: {e}")))?
            };
            f(&mut vol)?;
            write(&mut t, &vol)?;
            vol
        };
        tx.commit().map_err(|e| db_err("commit", e))?;
        Ok(vol)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, EngineError> {
        crate::db::read_all(&self.db, VOLUMES, "volume")
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume, EngineError> {
        self.read(name)?
            .ok_or_else(|| EngineError::NoSuchVolume(name.to_owned()))
    }

    /// `docker volume create`: makes the volume, or returns the one of that
    /// name (Docker ignores the request's labels and options then).
    pub fn create(&self, req: CreateRequest) -> Result<Volume, EngineError> {
        let _g = self.guard();
        self.create_locked(req, None).map(|(v, _)| v)
    }

    /// Creates (or gets) a volume, adding `reference` to its users in the
    /// same transaction. Returns it and whether it was made now.
    fn create_locked(
        &self,
        req: CreateRequest,
        reference: Option<&str>,
    ) -> Result<(Volume, bool), EngineError> {
        let mut labels = req.labels;
        let name = match req.name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => {
                labels.insert(ANONYMOUS_LABEL.into(), String::new());
                crate::containers::names::new_id()?
            }
        };
        local::validate_name(&name)?;
        local::check_driver(&name, &req.driver)?;
        if let Some(mut v) = self.read(&name)? {
            if let Some(r) = reference {
                v = self.update(&name, |v| {
                    v.refs.insert(r.to_owned());
                    Ok(())
                })?;
            }
            return Ok((v, false));
        }
        local::validate_opts(&name, &req.options)?;
        let dir = self.dir(&name);
        let data = self.mountpoint(&name);
        let made = (|| {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .mode(0o701)
                .create(&dir)
                .or_else(|e| {
                    // A leftover of a crash without a record: reuse it.
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            if !data.exists() {
                std::fs::create_dir(&data)?;
            }
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))
        })();
        made.map_err(|e| {
            EngineError::io(
                format!(
                    "create {name}: error while creating volume data path '{}'",
                    data.display()
                ),
                e,
            )
        })?;
        let vol = Volume {
            name: name.clone(),
            driver: local::DRIVER.into(),
            labels,
            options: req.options,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            refs: reference.map(|r| r.to_owned()).into_iter().collect(),
            active: BTreeSet::new(),
        };
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut t = tx
                .open_table(VOLUMES)
                .map_err(|e| db_err("open volumes", e))?;
            write(&mut t, &vol)?;
        }
        if let Err(e) = tx.commit() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(db_err("commit", e));
        }
        self.event(&vol, "create", &[]);
        Ok((vol, true))
    }

    fn event(&self, v: &Volume, action: &str, extra: &[(&str, String)]) {
        let mut attrs = BTreeMap::new();
        attrs.insert("driver".to_owned(), v.driver.clone());
        for (k, val) in extra {
            attrs.insert((*k).to_owned(), val.clone());
        }
        self.events.publish("volume", action, &v.name, attrs);
    }

    /// `docker volume rm`: refused while a container references it;
    /// `force` removes a volume whose data cannot be cleaned up and
    /// succeeds for a missing one.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), EngineError> {
        let _g = self.guard();
        self.remove_locked(name, force)
    }

    fn remove_locked(&self, name: &str, force: bool) -> Result<(), EngineError> {
        let v = match self.read(name)? {
            Some(v) => v,
            None if force => return Ok(()),
            None => return Err(EngineError::NoSuchVolume(name.to_owned())),
        };
        if !v.refs.is_empty() {
            return Err(in_use(name, &v.refs));
        }
        let cleaned = self.remove_data(&v);
        if let Err(e) = &cleaned
            && !force
        {
            return Err(EngineError::Internal(format!("remove {name}: {e}")));
        }
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut t = tx
                .open_table(VOLUMES)
                .map_err(|e| db_err("open volumes", e))?;
            t.remove(name).map_err(|e| db_err("remove volume", e))?;
        }
        tx.commit().map_err(|e| db_err("commit", e))?;
        self.event(&v, "destroy", &[]);
        Ok(())
    }

    /// Unmounts the volume and removes its directory; never crosses into
    /// a filesystem still mounted there.
    fn remove_data(&self, v: &Volume) -> Result<(), EngineError> {
        let data = self.mountpoint(&v.name);
        local::unmount(&data)?;
        if is_mountpoint(&data) {
            return Err(EngineError::Internal(format!(
                "{} is still mounted",
                data.display()
            )));
        }
        let dir = self.dir(&v.name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(
                format!("error removing volume path '{}'", dir.display()),
                e,
            )),
        }
    }

    /// `docker volume prune`: removes unused local volumes without mount
    /// options that `keep` does not keep; returns their names and the bytes
    /// freed.
    pub fn prune(&self, keep: impl Fn(&Volume) -> bool) -> Result<(Vec<String>, u64), EngineError> {
        let _g = self.guard();
        let mut names = Vec::new();
        let mut bytes = 0;
        for v in self.list()? {
            if !v.refs.is_empty() || !v.options.is_empty() || keep(&v) {
                continue;
            }
            let size = self.size(&v.name);
            match self.remove_locked(&v.name, false) {
                Ok(()) => {
                    bytes += size.max(0) as u64;
                    names.push(v.name);
                }
                Err(e) => tracing::warn!(volume = %v.name, error = %e, "could not prune volume"),
            }
        }
        let mut attrs = BTreeMap::new();
        attrs.insert("reclaimed".to_owned(), bytes.to_string());
        self.events.publish("volume", "prune", "", attrs);
        Ok((names, bytes))
    }

    /// Bytes used under the volume's data directory; -1 when unknown.
    pub fn size(&self, name: &str) -> i64 {
        berth_image::snapshot::disk_usage(&self.mountpoint(name))
            .map(|(b, _)| b as i64)
            .unwrap_or(-1)
    }

    /// At create: makes or finds the volumes of `planned` with `container`
    /// among their users; returns the mount points to record. On error,
    /// what this call made or referenced is undone.
    pub(crate) fn attach(
        &self,
        container: &str,
        planned: Vec<mounts::Planned>,
    ) -> Result<Vec<MountPoint>, EngineError> {
        let _g = self.guard();
        let mut out = Vec::new();
        let mut made: Vec<String> = Vec::new();
        let mut referenced: Vec<String> = Vec::new();
        let res = (|| {
            for p in planned {
                let mut mp = p.mp;
                if mp.kind == "volume" {
                    let (vol, new) = if p.existing {
                        let v = self.update(&mp.name, |v| {
                            v.refs.insert(container.to_owned());
                            Ok(())
                        })?;
                        (v, false)
                    } else {
                        self.create_locked(
                            CreateRequest {
                                name: Some(mp.name.clone()),
                                driver: mp.driver.clone(),
                                options: p.driver_opts,
                                labels: p.labels,
                            },
                            Some(container),
                        )?
                    };
                    if new {
                        made.push(vol.name.clone());
                    } else {
                        referenced.push(vol.name.clone());
                    }
                    mp.name = vol.name.clone();
                    mp.driver = vol.driver.clone();
                    mp.source = self.mountpoint(&vol.name).display().to_string();
                }
                out.push(mp);
            }
            Ok(())
        })();
        if let Err(e) = res {
            let _ = self.update_all(|v| {
                (referenced.contains(&v.name) || made.contains(&v.name)) && v.refs.remove(container)
            });
            for n in made {
                let _ = self.remove_locked(&n, true);
            }
            return Err(e);
        }
        out.sort_by(|a, b| a.destination.cmp(&b.destination));
        Ok(out)
    }

    /// At container removal: drops `container` from every volume's users;
    /// with `remove_anonymous` (`docker rm -v`, `--rm`), removes the
    /// anonymous volumes of `mounts` no other container uses.
    pub fn release(&self, container: &str, mounts: &[MountPoint], remove_anonymous: bool) {
        let _g = self.guard();
        if let Err(e) = self.update_all(|v| {
            let a = v.active.remove(container);
            v.refs.remove(container) || a
        }) {
            tracing::warn!(container, error = %e, "release volumes");
        }
        if !remove_anonymous {
            return;
        }
        for m in mounts {
            if m.kind == "volume" && m.anonymous {
                match self.remove_locked(&m.name, false) {
                    Ok(()) | Err(EngineError::NoSuchVolume(_)) | Err(EngineError::Conflict(_)) => {}
                    Err(e) => tracing::warn!(volume = %m.name, error = %e, "remove volume"),
                }
            }
        }
    }

    /// At start (with the container's root filesystem mounted at
    /// `rootfs`): mounts the volumes that need it, copies the image's
    /// content into empty volumes, makes missing `-v` host directories;
    /// returns what the spec gets.
    pub fn activate(
        &self,
        container: &str,
        mounts: &[MountPoint],
        rootfs: &Path,
    ) -> Result<StartMounts, EngineError> {
        let mut out = StartMounts::default();
        for m in mounts {
            match m.kind.as_str() {
                "tmpfs" => {
                    out.tmpfs
                        .insert(m.destination.clone(), m.tmpfs_options.clone());
                }
                "bind" => {
                    let src = Path::new(&m.source);
                    if !src.exists() {
                        if !m.create_source {
                            return Err(EngineError::InvalidArgument(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                m.source
                            )));
                        }
                        std::fs::create_dir_all(src).map_err(|e| {
                            EngineError::io(format!("create bind source {}", m.source), e)
                        })?;
                    }
                    out.binds.push(BindMount {
                        source: src.to_path_buf(),
                        destination: PathBuf::from(&m.destination),
                        read_only: !m.rw,
                        propagation: Some(propagation(&m.propagation)),
                    });
                }
                _ => {
                    let data = self.mount_volume(container, &m.name)?;
                    if m.copy_data {
                        copy_up(&rootfs.join(m.destination.trim_start_matches('/')), &data)?;
                    }
                    let source = if m.subpath.is_empty() {
                        data
                    } else {
                        let p = data.join(&m.subpath);
                        let real = p.canonicalize().ok().filter(|r| r.starts_with(&data));
                        match real {
                            Some(r) => r,
                            None => {
                                return Err(EngineError::InvalidArgument(format!(
                                    "cannot access path {}: the subpath must exist inside volume {}",
                                    p.display(),
                                    m.name
                                )));
                            }
                        }
                    };
                    out.binds.push(BindMount {
                        source,
                        destination: PathBuf::from(&m.destination),
                        read_only: !m.rw,
                        propagation: None,
                    });
                    if let Ok(v) = self.get(&m.name) {
                        self.event(
                            &v,
                            "mount",
                            &[
                                ("container", container.to_owned()),
                                ("destination", m.destination.clone()),
                                ("read/write", m.rw.to_string()),
                                ("propagation", m.propagation.clone()),
                            ],
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// Marks `name` active for `container` and mounts it if its options ask
    /// for a mount and it is not mounted yet. Returns its data directory.
    fn mount_volume(&self, container: &str, name: &str) -> Result<PathBuf, EngineError> {
        let _g = self.guard();
        let v = self.update(name, |v| {
            v.active.insert(container.to_owned());
            Ok(())
        })?;
        let data = self.mountpoint(name);
        // Missing after a crash inside a removal: made again.
        std::fs::create_dir_all(&data)
            .map_err(|e| EngineError::io(format!("create {}", data.display()), e))?;
        if local::needs_mount(&v.options)
            && !is_mountpoint(&data)
            && let Err(e) = local::mount(&v.options, &data)
        {
            let _ = self.update(name, |v| {
                v.active.remove(container);
                Ok(())
            });
            return Err(e);
        }
        Ok(data)
    }

    /// When `container` stops running: drops it from the volumes' active
    /// sets and unmounts those no running container uses any more.
    pub fn deactivate(&self, container: &str) {
        let _g = self.guard();
        let mut left = Vec::new();
        if let Err(e) = self.update_all(|v| {
            let changed = v.active.remove(container);
            if changed {
                left.push(v.clone());
            }
            changed
        }) {
            tracing::warn!(container, error = %e, "deactivate volumes");
        }
        for v in left {
            if v.active.is_empty() {
                self.unmount_idle(&v);
            }
            self.event(&v, "unmount", &[("container", container.to_owned())]);
        }
    }

    fn unmount_idle(&self, v: &Volume) {
        if local::needs_mount(&v.options)
            && let Err(e) = local::unmount(&self.mountpoint(&v.name))
        {
            tracing::warn!(volume = %v.name, error = %e, "unmount volume");
        }
    }

    /// After a daemon start: keeps in `refs` only containers that exist
    /// and in `active` only those that run, and unmounts volumes that no
    /// running container uses.
    pub fn reconcile(&self, existing: &HashSet<String>, running: &HashSet<String>) {
        let _g = self.guard();
        if let Err(e) = self.update_all(|v| {
            let (r, a) = (v.refs.len(), v.active.len());
            v.refs.retain(|c| existing.contains(c));
            v.active.retain(|c| running.contains(c));
            r != v.refs.len() || a != v.active.len()
        }) {
            tracing::warn!(error = %e, "reconcile volumes");
        }
        let Ok(all) = self.list() else { return };
        for v in all.iter().filter(|v| v.active.is_empty()) {
            self.unmount_idle(v);
        }
        // Directories without a record: a crash inside a create or a
        // remove (the record is written after the directory is made and
        // deleted after it is removed).
        let known: HashSet<&str> = all.iter().map(|v| v.name.as_str()).collect();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let data = self.mountpoint(&name);
            if !known.contains(name.as_str()) && !is_mountpoint(&data) {
                tracing::info!(volume = %name, "removing the leftover of an unfinished volume create or remove");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn write(t: &mut redb::Table<&str, &[u8]>, v: &Volume) -> Result<(), EngineError> {
    let bytes =
        serde_json::to_vec(v).map_err(|e| EngineError::Internal(format!("encode volume: {e}")))?;
    t.insert(v.name.as_str(), bytes.as_slice())
        .map_err(|e| db_err("write volume", e))?;
    Ok(())
}

/// Docker's `remove NAME: volume is in use - [ID, …]`.
fn in_use(name: &str, refs: &BTreeSet<String>) -> EngineError {
    EngineError::Conflict(format!(
        "remove {name}: volume is in use - [{}]",
        refs.iter().cloned().collect::<Vec<_>>().join(", ")
    ))
}

fn propagation(s: &str) -> Propagation {
    match s {
        "private" => Propagation::Private,
        "shared" => Propagation::Shared,
        "rshared" => Propagation::RShared,
        "slave" => Propagation::Slave,
        "rslave" => Propagation::RSlave,
        _ => Propagation::RPrivate,
    }
}

/// Docker's copy-up: the image's directory at the mount path into the
/// volume, when the volume is empty (ownership and modes included).
fn copy_up(src: &Path, data: &Path) -> Result<(), EngineError> {
    let is_dir = std::fs::symlink_metadata(src).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return Ok(());
    }
    let empty = std::fs::read_dir(data)
        .map_err(|e| EngineError::io(format!("read {}", data.display()), e))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    berth_image::snapshot::copy_tree(src, data).map_err(|e| {
        EngineError::Internal(format!(
            "copy the image's {} into the volume: {e}",
            src.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &Path) -> VolumeService {
        let db = Arc::new(Database::create(dir.join("state.redb")).expect("db"));
        VolumeService::new(db, dir.join("volumes"), Arc::new(Events::new())).expect("service")
    }

    #[test]
    fn create_get_remove_in_use() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = service(tmp.path());
        let v = s
            .create(CreateRequest {
                name: Some("data".into()),
                ..Default::default()
            })
            .expect("create");
        assert!(s.mountpoint("data").is_dir());
        assert_eq!(v.driver, "local");
        // Creating it again returns it.
        let again = s
            .create(CreateRequest {
                name: Some("data".into()),
                labels: [("x".to_owned(), "1".to_owned())].into(),
                ..Default::default()
            })
            .expect("again");
        assert!(again.labels.is_empty());
        let anon = s.create(CreateRequest::default()).expect("anon");
        assert_eq!(anon.name.len(), 64);
        assert!(anon.labels.contains_key(ANONYMOUS_LABEL));

        let planned = mounts::plan(
            &Default::default(),
            &crate::containers::HostConfig {
                binds: vec!["data:/d".into()],
                ..Default::default()
            },
            &[],
            &|_| Ok(Vec::new()),
        )
        .expect("plan");
        let mps = s.attach("c1", planned).expect("attach");
        assert_eq!(mps[0].source, s.mountpoint("data").display().to_string());
        let e = s.remove("data", false).unwrap_err().to_string();
        assert_eq!(e, "remove data: volume is in use - [c1]");
        s.release("c1", &mps, true);
        // Named volumes survive rm -v.
        assert!(s.get("data").is_ok());
        s.remove("data", false).expect("rm");
        assert!(!s.dir("data").exists());
        assert!(matches!(s.get("data"), Err(EngineError::NoSuchVolume(_))));
        assert!(s.remove("data", true).is_ok());

        let (gone, _) = s
            .prune(|v| !v.labels.contains_key(ANONYMOUS_LABEL))
            .expect("prune");
        assert_eq!(gone, vec![anon.name]);
    }

    #[test]
    fn bad_requests_make_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = service(tmp.path());
        for req in [
            CreateRequest {
                name: Some("bad/name".into()),
                ..Default::default()
            },
            CreateRequest {
                name: Some("v1".into()),
                driver: "nfs-plugin".into(),
                ..Default::default()
            },
            CreateRequest {
                name: Some("v2".into()),
                options: [("bogus".to_owned(), "1".to_owned())].into(),
                ..Default::default()
            },
        ] {
            assert!(s.create(req).is_err());
        }
        assert!(s.list().expect("list").is_empty());
        // A crash's leftover directory goes at the next daemon start.
        std::fs::create_dir_all(s.mountpoint("orphan")).expect("mkdir");
        s.reconcile(&HashSet::new(), &HashSet::new());
        assert_eq!(
            std::fs::read_dir(tmp.path().join("volumes"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn copy_up_fills_only_empty_volumes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("sub/f"), "seed").expect("write");
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        copy_up(&src, &data).expect("copy");
        assert_eq!(
            std::fs::read_to_string(data.join("sub/f")).expect("read"),
            "seed"
        );
        std::fs::write(src.join("new"), "x").expect("write");
        copy_up(&src, &data).expect("copy");
        assert!(!data.join("new").exists());
    }
}
