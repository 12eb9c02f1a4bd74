use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, RuntimeError};

/// Name of the file that holds a container's record in its state directory.
pub const STATE_FILE: &str = "state.json";
/// The FIFO the container's init blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

/// A container's status, as the OCI runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created (never persisted: the record is written when ready).
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime keeps about a container in `<root>/<id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Container id.
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of that pid (field 22 of /proc/pid/stat), to detect reuse.
    pub pid_start: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// User that created the container ("" for root, as runc).
    pub owner: String,
    /// The spec's annotations.
    pub annotations: HashMap<String, String>,
    /// The cgroup path used (spec's cgroupsPath or the default).
    pub cgroup_path: PathBuf,
    /// Whether cgroups are managed (false for rootless without access).
    pub cgroups_managed: bool,
    /// The mountinfo the cgroups were found through, when not the real one
    /// (the tests' seam, see [`crate::cgroups::MOUNTINFO_ENV`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_mountinfo: Option<PathBuf>,
    /// Whether the container was created rootless.
    pub rootless: bool,
    /// The whole spec, for exec defaults and poststop hooks.
    pub spec: oci_spec::runtime::Spec,
}

/// The runc-compatible view of a container (`berth-runtime state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    /// OCI runtime spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Init pid (0 once stopped, as runc).
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Rootfs path.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner.
    pub owner: String,
    /// Annotations, omitted when empty.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// The OCI runtime spec version berth implements.
pub const OCI_VERSION: &str = "1.2.0";

impl Record {
    /// Write the record atomically (temp file, rename). No fsync: the state
    /// root is runtime state (tmpfs /run by default) that does not outlive a
    /// reboot, and its containers do not either; a crash leaves either the
    /// old or the new file, never a torn one.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(self)
            .map_err(|e| RuntimeError::InvalidArgument(format!("serialise state: {e}")))?;
        let mut f = fs::File::create(&tmp).with_context(|| format!("write {}", tmp.display()))?;
        f.write_all(&data)
            .with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, dir.join(STATE_FILE))
            .with_context(|| format!("rename state file in {}", dir.display()))
    }

    /// Read the record of container `id` under `root`.
    pub fn load(root: &Path, id: &str) -> Result<Record> {
        crate::id::validate(id)?;
        let path = root.join(id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound(id.to_string()));
            }
            Err(e) => return Err(RuntimeError::io(format!("read {}", path.display()), e)),
        };
        serde_json::from_slice(&data).map_err(|e| {
            RuntimeError::InvalidArgument(format!("corrupt state file {}: {e}", path.display()))
        })
    }

    /// Current status, from the process, the exec FIFO and the freezer.
    pub fn status(&self, dir: &Path, frozen: impl FnOnce() -> bool) -> Status {
        if !self.alive() {
            return Status::Stopped;
        }
        if dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    /// Whether the init process still exists (and is not a zombie, and is
    /// the same process: same start time).
    pub fn alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start)) => state != 'Z' && state != 'X' && start == self.pid_start,
            None => false,
        }
    }

    /// The runc-style view with the given status.
    pub fn view(&self, status: Status) -> StateView {
        StateView {
            oci_version: OCI_VERSION.to_string(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// State letter and start time of a process, from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let data = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after
    // the last ')'.
    let rest = &data[data.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Ids of all containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(RuntimeError::io(format!("read {}", root.display()), e)),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("read {}", root.display()))?;
        if entry.path().join(STATE_FILE).exists()
            && let Some(name) = entry.file_name().to_str()
        {
            ids.push(name.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_of_self() {
        let (state, start) = proc_stat(std::process::id() as i32).expect("own stat");
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
        assert!(proc_stat(0).is_none());
    }

    #[test]
    fn view_matches_runc_fields() {
        let rec = Record {
            id: "c1".into(),
            pid: 42,
            pid_start: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-01-01T00:00:00Z".into(),
            owner: String::new(),
            annotations: HashMap::new(),
            cgroup_path: "/berth/c1".into(),
            cgroups_managed: true,
            cgroup_mountinfo: None,
            rootless: false,
            spec: oci_spec::runtime::Spec::default(),
        };
        let v = serde_json::to_value(rec.view(Status::Running)).expect("json");
        let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "bundle",
                "created",
                "id",
                "ociVersion",
                "owner",
                "pid",
                "rootfs",
                "status"
            ]
        );
        assert_eq!(v["status"], "running");
        assert_eq!(rec.view(Status::Stopped).pid, 0);
    }
}
