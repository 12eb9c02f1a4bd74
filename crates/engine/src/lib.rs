//! berth-engine: the daemon's domain, without HTTP: images (list, inspect,
//! tag, delete, prune, load, save, import, pull, push), containers (records,
//! snapshots, one berth-shim each, logs, exec, health, restart policies),
//! events, and the host facts the system endpoints report. The engine owns
//! berth's one state database.

/// Containers: records, snapshots, shims.
pub mod containers;
mod db;
/// The engine's error type and error kinds.
pub mod error;
/// The event bus behind `/events`.
pub mod events;
/// Images as Docker shows them, over the image store.
pub mod images;
/// Networks: bridge, host, none and user-defined bridges.
pub mod networks;
/// Host facts for `/info` and `/version`.
pub mod system;
/// Volumes: the `local` driver, mount planning, copy-up.
pub mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_image::content::LocalStore;
use berth_image::snapshot::Snapshotter;
use berth_image::store::ImageStore;
use redb::Database;

pub use error::{EngineError, ErrorKind};

/// Where the engine keeps its state.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Persistent state: `content/`, `state.redb`, `engine-id`.
    pub data_root: PathBuf,
    /// Runtime state: bundles, shim sockets, the runtime's state root.
    pub exec_root: PathBuf,
    /// The berth-shim executable; `None`: `berth-shim` next to the running
    /// executable, else on `PATH`.
    pub shim: Option<PathBuf>,
    /// `--default-ulimit`s: applied to containers that do not set that
    /// limit themselves.
    pub default_ulimits: Vec<containers::config::Ulimit>,
    /// Registries reached over plain HTTP besides loopback ones
    /// (`--insecure-registry`: `host[:port]` or a CIDR).
    pub insecure_registries: Vec<String>,
    /// Refuse pulls and pushes to registries outside 127.0.0.0/8,
    /// `localhost` and `::1` (berthd sets it from the environment variable
    /// `BERTH_LOOPBACK_REGISTRIES_ONLY=1`; tests on machines that must not
    /// reach out use it).
    pub loopback_registries_only: bool,
    /// Networks: the default bridge, address pools, firewall table.
    pub network: networks::NetworkConfig,
}

/// The daemon's domain: one per process.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    db: Arc<Database>,
    images: Arc<images::ImageService>,
    containers: Arc<containers::ContainerService>,
    networks: Arc<networks::NetworkService>,
    volumes: Arc<volumes::VolumeService>,
    events: Arc<events::Events>,
    registry: berth_registry::client::Client,
    id: String,
}

impl Engine {
    /// Opens (or creates) the state under `config.data_root`.
    pub fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        for dir in [&config.data_root, &config.exec_root] {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        }
        let content = LocalStore::new(config.data_root.join("content"))
            .map_err(berth_image::store::StoreError::from)?;
        let path = config.data_root.join("state.redb");
        let db = Database::create(&path).map_err(|e| EngineError::Db {
            context: format!("open {}", path.display()),
            source: e.into(),
        })?;
        let db = Arc::new(db);
        let store = ImageStore::new(content, db.clone())?;
        let id = engine_id(&config.data_root)?;
        let mut images = images::ImageService::new(store);
        images.loopback_registries_only = config.loopback_registries_only;
        let images = Arc::new(images);
        let snapshotter = Snapshotter::open(&config.data_root.join("snapshots"), db.clone(), None)
            .map_err(berth_image::store::StoreError::from)?;
        let events = Arc::new(events::Events::new());
        let networks =
            networks::NetworkService::new(db.clone(), config.network.clone(), &config.exec_root)?;
        let volumes = Arc::new(volumes::VolumeService::new(
            db.clone(),
            config.data_root.join("volumes"),
            events.clone(),
        )?);
        let containers = containers::ContainerService::new(
            db.clone(),
            images.clone(),
            Arc::new(snapshotter),
            events.clone(),
            networks.clone(),
            containers::Paths {
                data: config.data_root.join("containers"),
                exec: config.exec_root.join("containers"),
                runtime_root: config.exec_root.join("runtime"),
                seccomp_cache: config.exec_root.join("seccomp"),
                shim: config.shim.clone().unwrap_or_else(find_shim),
                default_ulimits: config.default_ulimits.clone(),
            },
            volumes.clone(),
        )?;
        let weak = Arc::downgrade(&containers);
        images.set_users(Box::new(move |image_id| {
            weak.upgrade()
                .and_then(|c| c.list().ok())
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.image_id == image_id)
                .map(|r| (r.id, r.state.status.is_live()))
                .collect()
        }));
        let registry = berth_registry::client::Client::new(berth_registry::client::ClientOptions {
            insecure_registries: config.insecure_registries.clone(),
            ..Default::default()
        });
        Ok(Engine {
            registry,
            images,
            containers,
            networks,
            volumes,
            events,
            config,
            db,
            id,
        })
    }

    /// The containers.
    pub fn containers(&self) -> &Arc<containers::ContainerService> {
        &self.containers
    }

    /// The networks.
    pub fn networks(&self) -> &Arc<networks::NetworkService> {
        &self.networks
    }

    /// The volumes.
    pub fn volumes(&self) -> &Arc<volumes::VolumeService> {
        &self.volumes
    }

    /// The registry client (pull, push).
    pub fn registry(&self) -> &berth_registry::client::Client {
        &self.registry
    }

    /// The event bus.
    pub fn events(&self) -> &Arc<events::Events> {
        &self.events
    }

    /// The images.
    pub fn images(&self) -> &images::ImageService {
        &self.images
    }

    /// Where state lives.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The state database (shared by every store of the engine).
    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// This daemon's stable id (made once, kept in `<data-root>/engine-id`).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// `berth-shim` beside the running executable, else the bare name (PATH).
fn find_shim() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("berth-shim")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("berth-shim"))
}

/// Reads or makes the engine id: a random UUID from the kernel.
fn engine_id(root: &Path) -> Result<String, EngineError> {
    let path = root.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_owned());
        }
    }
    let id = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| EngineError::io("read /proc/sys/kernel/random/uuid", e))?
        .trim()
        .to_owned();
    let tmp = root.join("engine-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| EngineError::io(format!("write {}", path.display()), e))?;
    Ok(id)
}
