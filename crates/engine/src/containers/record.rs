//! What berth keeps about a container, in redb: table `containers` (id →
//! JSON record) and `container_names` (name → id). Every change is one
//! write transaction, committed before the API answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::config::{ContainerConfig, HostConfig};
use crate::db::db_err;
use crate::error::EngineError;

const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("container_names");

/// Docker's container states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started (or started and failed to).
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Waiting to be restarted by its policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Its process ended.
    Exited,
    /// Could not be cleaned up.
    Dead,
}

impl Status {
    /// The word Docker uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Running or paused: a shim and a process exist.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// The `State` of inspect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The state.
    pub status: Status,
    /// Init's host pid while live.
    pub pid: i32,
    /// Last exit code.
    pub exit_code: i32,
    /// Why the last start failed.
    pub error: String,
    /// The kernel OOM killer struck during the last run.
    pub oom_killed: bool,
    /// RFC 3339 (nanoseconds) of the last start, or Go's zero time.
    pub started_at: Option<String>,
    /// RFC 3339 of the last exit.
    pub finished_at: Option<String>,
    /// The shim's pid and start time while live.
    pub shim: Option<(i32, u64)>,
    /// Health, when a health check is configured.
    pub health: Option<Health>,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    /// Consecutive failures.
    pub failing_streak: i64,
    /// The last few probes.
    pub log: Vec<HealthProbe>,
}

/// One health probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProbe {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// 0 healthy, 1 unhealthy, else error.
    pub exit_code: i32,
    /// The probe's output (truncated).
    pub output: String,
}

/// A container as berth records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex.
    pub id: String,
    /// `/name`.
    pub name: String,
    /// RFC 3339 (nanoseconds).
    pub created: String,
    /// The request's config, with the image's values merged in (as inspect shows it).
    pub config: ContainerConfig,
    /// The request's host config.
    pub host_config: HostConfig,
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// The image config as it was at create (a container outlives its image's name).
    pub image_config: String,
    /// The snapshot the container's layer sits on (the image's top chain id).
    pub parent_snapshot: Option<String>,
    /// `Path` of inspect: the program.
    pub path: String,
    /// `Args` of inspect.
    pub args: Vec<String>,
    /// Life state.
    pub state: State,
    /// Restarts done by the restart policy.
    pub restart_count: i64,
    /// Stopped by the user (`unless-stopped` does not restart it).
    pub manually_stopped: bool,
    /// The container was started at least once.
    pub has_been_started: bool,
    /// json-file path.
    pub log_path: String,
    /// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` on the host.
    pub hostname_path: String,
    /// See `hostname_path`.
    pub hosts_path: String,
    /// See `hostname_path`.
    pub resolv_conf_path: String,
    /// The hostname.
    pub hostname: String,
    /// Network name → endpoint (what was asked; while running, what it got).
    #[serde(default)]
    pub networks: BTreeMap<String, crate::networks::Endpoint>,
    /// Ports published while running.
    #[serde(default)]
    pub ports: Vec<crate::networks::ports::PublishedPort>,
    /// The pinned network namespace while running (`SandboxKey`).
    #[serde(default)]
    pub sandbox_key: String,
    /// Binds, volumes and tmpfs mounts, as decided at create.
    #[serde(default)]
    pub mount_points: Vec<crate::volumes::MountPoint>,
    /// Legacy links on the default bridge (`--link`), as resolved at create.
    #[serde(default)]
    pub links: Vec<Link>,
}

/// One legacy link: this container reaches container `id` as `alias`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The alias (`db` of `--link other:db`).
    pub alias: String,
    /// The linked container's id.
    pub id: String,
}

impl Record {
    /// `name` without its `/`.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }
}

/// The records, over the engine's database, and all of them in memory as
/// well (loaded at start, then kept as they are written): reading a record
/// does not parse it from the database each time, as a container's start,
/// exit and removal do many times over.
#[derive(Debug, Clone)]
pub struct Records {
    db: Arc<Database>,
    /// What the database holds. Changed only after a commit and only with
    /// `writing` held, so an update never starts from a stale record.
    cache: Arc<std::sync::RwLock<BTreeMap<String, Record>>>,
    writing: Arc<std::sync::Mutex<()>>,
}

impl Records {
    /// Opens (creates) the tables.
    pub fn new(db: Arc<Database>) -> Result<Self, EngineError> {
        let tx = db.begin_write().map_err(|e| db_err("begin", e))?;
        tx.open_table(CONTAINERS)
            .map_err(|e| db_err("open containers", e))?;
        tx.open_table(NAMES).map_err(|e| db_err("open names", e))?;
        tx.commit().map_err(|e| db_err("commit", e))?;
        let cache = Arc::new(std::sync::RwLock::new(read_all(&db)?));
        Ok(Records {
            db,
            cache,
            writing: Default::default(),
        })
    }

    fn cached(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Record>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Record>> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every record, by id.
    pub fn all(&self) -> Result<Vec<Record>, EngineError> {
        Ok(self.cached().values().cloned().collect())
    }

    /// The record of `id` (a full id).
    pub fn get(&self, id: &str) -> Result<Option<Record>, EngineError> {
        Ok(self.cached().get(id).cloned())
    }

    /// The id a name (without `/`) belongs to.
    pub fn id_of_name(&self, name: &str) -> Result<Option<String>, EngineError> {
        let tx = self.db.begin_read().map_err(|e| db_err("begin", e))?;
        let t = tx.open_table(NAMES).map_err(|e| db_err("open names", e))?;
        Ok(t.get(name)
            .map_err(|e| db_err("read name", e))?
            .map(|v| v.value().to_owned()))
    }

    /// Writes a new record and claims its name; a taken name is Docker's 409.
    pub fn insert(&self, r: &Record) -> Result<(), EngineError> {
        let _w = self.write_lock();
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut names = tx.open_table(NAMES).map_err(|e| db_err("open names", e))?;
            let short = r.short_name();
            if let Some(other) = names.get(short).map_err(|e| db_err("read name", e))? {
                return Err(name_conflict(short, other.value()));
            }
            names
                .insert(short, r.id.as_str())
                .map_err(|e| db_err("write name", e))?;
            let mut t = tx
                .open_table(CONTAINERS)
                .map_err(|e| db_err("open containers", e))?;
            let bytes = serde_json::to_vec(r)
                .map_err(|e| EngineError::Internal(format!("encode container: {e}")))?;
            t.insert(r.id.as_str(), bytes.as_slice())
                .map_err(|e| db_err("write container", e))?;
        }
        tx.commit().map_err(|e| db_err("commit", e))?;
        self.cache_mut().insert(r.id.clone(), r.clone());
        Ok(())
    }

    /// Changes the record of `id` with `f` in one transaction and returns
    /// the new record. `f` may refuse with an error.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Record) -> Result<(), EngineError>,
    ) -> Result<Record, EngineError> {
        let _w = self.write_lock();
        let mut rec = self
            .get(id)?
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        let rec = {
            let mut t = tx
                .open_table(CONTAINERS)
                .map_err(|e| db_err("open containers", e))?;
            let old_name = rec.name.clone();
            f(&mut rec)?;
            if rec.name != old_name {
                let mut names = tx.open_table(NAMES).map_err(|e| db_err("open names", e))?;
                let new = rec.short_name();
                if let Some(other) = names.get(new).map_err(|e| db_err("read name", e))? {
                    return Err(name_conflict(new, other.value()));
                }
                names
                    .remove(old_name.trim_start_matches('/'))
                    .map_err(|e| db_err("remove name", e))?;
                names.insert(new, id).map_err(|e| db_err("write name", e))?;
            }
            let bytes = serde_json::to_vec(&rec)
                .map_err(|e| EngineError::Internal(format!("encode container: {e}")))?;
            t.insert(id, bytes.as_slice())
                .map_err(|e| db_err("write container", e))?;
            rec
        };
        tx.commit().map_err(|e| db_err("commit", e))?;
        self.cache_mut().insert(id.to_owned(), rec.clone());
        Ok(rec)
    }

    /// Removes the record of `id` and frees its name.
    pub fn remove(&self, id: &str) -> Result<(), EngineError> {
        let _w = self.write_lock();
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut t = tx
                .open_table(CONTAINERS)
                .map_err(|e| db_err("open containers", e))?;
            let name = t
                .remove(id)
                .map_err(|e| db_err("remove container", e))?
                .and_then(|v| serde_json::from_slice::<Record>(v.value()).ok())
                .map(|r| r.short_name().to_owned());
            let mut names = tx.open_table(NAMES).map_err(|e| db_err("open names", e))?;
            if let Some(n) = name {
                names
                    .remove(n.as_str())
                    .map_err(|e| db_err("remove name", e))?;
            }
        }
        tx.commit().map_err(|e| db_err("commit", e))?;
        self.cache_mut().remove(id);
        Ok(())
    }
}

/// Every record the database holds, by id.
fn read_all(db: &Database) -> Result<BTreeMap<String, Record>, EngineError> {
    Ok(crate::db::read_all::<Record>(db, CONTAINERS, "container")?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect())
}

fn name_conflict(name: &str, id: &str) -> EngineError {
    EngineError::Conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> Record {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": format!("/{name}"), "created": "", "config": {},
            "host_config": {}, "image_id": "", "image_config": "", "parent_snapshot": null,
            "path": "", "args": [], "restart_count": 0,
            "state": { "status": "created", "pid": 0, "exit_code": 0, "error": "", "oom_killed": false,
                       "started_at": null, "finished_at": null, "shim": null, "health": null },
            "manually_stopped": false, "has_been_started": false, "log_path": "",
            "hostname_path": "", "hosts_path": "", "resolv_conf_path": "", "hostname": ""
        }))
        .expect("a record")
    }

    /// What is read comes from memory; what is written reaches the database
    /// (a second Records over it, as after a daemon restart, sees it all).
    #[test]
    fn records_in_memory_match_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Database::create(dir.path().join("state.redb")).expect("db"));
        let rs = Records::new(db.clone()).expect("records");
        rs.insert(&record("a1", "one")).expect("insert");
        rs.insert(&record("b2", "two")).expect("insert");
        let dup = rs.insert(&record("c3", "one"));
        assert!(matches!(dup, Err(EngineError::Conflict(_))), "{dup:?}");
        assert!(rs.get("c3").expect("get").is_none());
        let up = rs
            .update("a1", |r| {
                r.restart_count = 7;
                r.name = "/uno".into();
                Ok(())
            })
            .expect("update");
        assert_eq!(up.restart_count, 7);
        assert_eq!(rs.get("a1").expect("get"), Some(up.clone()));
        // A refused update changes nothing.
        let refused = rs.update("b2", |r| {
            r.restart_count = 9;
            Err(EngineError::Conflict("no".into()))
        });
        assert!(refused.is_err());
        assert_eq!(rs.get("b2").expect("get").map(|r| r.restart_count), Some(0));
        assert!(matches!(
            rs.update("zz", |_| Ok(())),
            Err(EngineError::NoSuchContainer(_))
        ));
        rs.remove("b2").expect("remove");
        assert_eq!(rs.id_of_name("uno").expect("name").as_deref(), Some("a1"));
        assert_eq!(rs.id_of_name("one").expect("name"), None);
        let again = Records::new(db).expect("records");
        let ids: Vec<String> = again
            .all()
            .expect("all")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a1"]);
        assert_eq!(again.get("a1").expect("get"), Some(up));
    }
}
