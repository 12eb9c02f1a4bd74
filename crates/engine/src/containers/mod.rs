//! Containers: records in redb, a root filesystem on a snapshot, and one
//! berth-shim per running container (see `berth_shim::proto`).
//!
//! Layout: `<data-root>/containers/<id>/` holds what outlives a reboot
//! (the json-file log, hostname, hosts, resolv.conf);
//! `<exec-root>/containers/<id>/` is the bundle and the shim's state
//! directory (config.json, the mounted `rootfs`, shim.json, shim.sock,
//! exit.json); `<exec-root>/runtime` is the runtime library's state root.

/// `docker cp`.
pub mod archive;
mod commit;
/// The Docker create body.
pub mod config;
mod create;
mod exec;
mod io;
mod lifecycle;
mod links;
/// Names and ids.
pub mod names;
mod network;
/// The records in redb.
pub mod record;
/// berthd's side of the shim protocol.
pub mod shim;
mod update;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_image::snapshot::Snapshotter;

use crate::error::EngineError;
use crate::events::Events;
use crate::images::ImageService;
pub use commit::CommitRequest;
pub use config::{ContainerConfig, CreateBody, HostConfig};
pub use exec::{ExecClaim, ExecConfig, ExecInspect, ExecStarted};
pub use io::{AttachStream, LogEntry, LogOptions, StreamKind};
pub use lifecycle::{WaitCondition, Waiter};
pub use links::parse_link;
pub use record::{Record, Status};

/// Where containers live on disk, and the shim binary.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<data-root>/containers`.
    pub data: PathBuf,
    /// `<exec-root>/containers`.
    pub exec: PathBuf,
    /// `<exec-root>/runtime`.
    pub runtime_root: PathBuf,
    /// `<exec-root>/seccomp`: compiled seccomp programs the shims reuse.
    pub seccomp_cache: PathBuf,
    /// The berth-shim executable.
    pub shim: PathBuf,
    /// The daemon's `--default-ulimit`s.
    pub default_ulimits: Vec<config::Ulimit>,
}

impl Paths {
    fn data_dir(&self, id: &str) -> PathBuf {
        self.data.join(id)
    }
    fn bundle(&self, id: &str) -> PathBuf {
        self.exec.join(id)
    }
    fn rootfs(&self, id: &str) -> PathBuf {
        self.exec.join(id).join("rootfs")
    }
}

/// Per-container coordination that lives only as long as the daemon.
#[derive(Debug, Default)]
struct Slot {
    /// Serialises start, stop, kill, remove, restart of one container.
    op: tokio::sync::Mutex<()>,
    /// Attach requests made before start, connected by start.
    pending: Mutex<Vec<io::PendingAttach>>,
    /// A `docker restart` is under way: its stop's exit does not remove a
    /// `--rm` container (as with dockerd, which lifts AutoRemove then).
    restarting: std::sync::atomic::AtomicBool,
    /// The container made ahead of its start, if it has been.
    prepared: Mutex<Option<lifecycle::Prepared>>,
}

impl Slot {
    fn take_prepared(&self) -> Option<lifecycle::Prepared> {
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The engine's containers.
#[derive(Debug)]
pub struct ContainerService {
    records: record::Records,
    images: Arc<ImageService>,
    snapshotter: Arc<Snapshotter>,
    events: Arc<Events>,
    networks: Arc<crate::networks::NetworkService>,
    paths: Paths,
    /// Starts the shims (the zygote of `paths.shim`).
    launcher: shim::Launcher,
    volumes: Arc<crate::volumes::VolumeService>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    execs: Mutex<HashMap<String, Arc<exec::ExecState>>>,
    /// Held (write) by `recover`: the restarts of restart policies wait
    /// for it (read), since the network recovery frees the namespaces and
    /// addresses no running record holds, which a start in progress has.
    recovery: tokio::sync::RwLock<()>,
    /// Containers being made, or made, ahead of their start.
    preparing: Arc<std::sync::atomic::AtomicUsize>,
    /// berthd is stopping: nothing is made ahead of a start.
    closed: std::sync::atomic::AtomicBool,
}

impl ContainerService {
    /// The containers over `db`, with images and snapshots from the engine.
    pub fn new(
        db: Arc<redb::Database>,
        images: Arc<ImageService>,
        snapshotter: Arc<Snapshotter>,
        events: Arc<Events>,
        networks: Arc<crate::networks::NetworkService>,
        paths: Paths,
        volumes: Arc<crate::volumes::VolumeService>,
    ) -> Result<Arc<Self>, EngineError> {
        for d in [&paths.data, &paths.exec, &paths.runtime_root] {
            std::fs::create_dir_all(d)
                .map_err(|e| EngineError::io(format!("create {}", d.display()), e))?;
        }
        Ok(Arc::new(ContainerService {
            records: record::Records::new(db)?,
            images,
            snapshotter,
            events,
            networks,
            launcher: shim::Launcher::new(paths.shim.clone(), paths.exec.clone()),
            paths,
            volumes,
            slots: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            recovery: tokio::sync::RwLock::new(()),
            preparing: Default::default(),
            closed: Default::default(),
        }))
    }

    fn slot(&self, id: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn forget_slot(&self, id: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The paths in use.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The container `name_or_id` names: a full id, a name (with or without
    /// `/`), or a unique id prefix — Docker's order.
    pub fn get(&self, name_or_id: &str) -> Result<Record, EngineError> {
        let not_found = || EngineError::NoSuchContainer(name_or_id.to_owned());
        if name_or_id.is_empty() {
            return Err(not_found());
        }
        if name_or_id.len() == 64
            && let Some(r) = self.records.get(name_or_id)?
        {
            return Ok(r);
        }
        let bare = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if let Some(id) = self.records.id_of_name(bare)?
            && let Some(r) = self.records.get(&id)?
        {
            return Ok(r);
        }
        if !name_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut hits = self
            .records
            .all()?
            .into_iter()
            .filter(|r| r.id.starts_with(name_or_id));
        match (hits.next(), hits.next()) {
            (Some(r), None) => Ok(r),
            (None, _) => Err(not_found()),
            (Some(_), Some(_)) => Err(EngineError::InvalidArgument(format!(
                "multiple IDs found with provided prefix: {name_or_id}"
            ))),
        }
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Record>, EngineError> {
        let mut v = self.records.all()?;
        v.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(v)
    }

    /// Where the rootfs of `id` is mounted while it runs.
    pub fn rootfs_path(&self, id: &str) -> PathBuf {
        self.paths.rootfs(id)
    }

    /// The runtime state root.
    pub fn runtime_root(&self) -> &Path {
        &self.paths.runtime_root
    }

    /// The events bus.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Container event with Docker's attributes (name, image, labels).
    fn event(&self, r: &Record, action: &str, extra: &[(&str, String)]) {
        let mut attrs: std::collections::BTreeMap<String, String> = r.config.labels.clone();
        attrs.insert("name".into(), r.short_name().to_owned());
        attrs.insert("image".into(), r.config.image.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_owned(), v.clone());
        }
        self.events.publish("container", action, &r.id, attrs);
    }

    /// The snapshotter (for diff and commit).
    pub fn snapshotter(&self) -> &Arc<Snapshotter> {
        &self.snapshotter
    }

    /// The networks.
    pub fn networks(&self) -> &Arc<crate::networks::NetworkService> {
        &self.networks
    }

    /// The images.
    pub fn images(&self) -> &Arc<ImageService> {
        &self.images
    }
}

/// Now, as Docker writes times (RFC 3339, nanoseconds, UTC).
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
