use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::{CgroupManager, Stats};
use crate::container::Container;
use crate::error::{Result, RuntimeError};
use crate::state::Status;

/// Change the resources of a live container (only the fields present).
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<()> {
    let c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            op: "update",
            status: "stopped".into(),
        });
    }
    let cg = c.cgroups()?.ok_or_else(|| RuntimeError::InvalidState {
        id: id.to_string(),
        op: "update",
        status: "without managed cgroups (rootless)".into(),
    })?;
    Ok(cg.apply(resources)?)
}

/// Resource usage of a container, as `runc events --stats` reports it.
pub fn stats(root: &Path, id: &str) -> Result<Stats> {
    let c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            op: "read stats of",
            status: "stopped".into(),
        });
    }
    match c.cgroups()? {
        Some(cg) => Ok(cg.stats()?),
        None => Ok(Stats::default()),
    }
}

/// How many processes of the container the OOM killer has killed so far
/// (v1 `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`),
/// for `events`; 0 when unknown.
pub fn oom_kills(root: &Path, id: &str) -> Result<u64> {
    Ok(oom_kill_file(root, id)?
        .as_deref()
        .and_then(read_oom_kills)
        .unwrap_or(0))
}

/// The cgroup file that counts the container's OOM kills (see
/// [`oom_kills`]), for a reader that does not load the container each time.
pub fn oom_kill_file(root: &Path, id: &str) -> Result<Option<std::path::PathBuf>> {
    oom_kill_file_of(&Container::load(root, id)?)
}

/// [`oom_kill_file`] of a container in hand.
pub fn oom_kill_file_of(c: &Container) -> Result<Option<std::path::PathBuf>> {
    let Some(cg) = c.cgroups()? else {
        return Ok(None);
    };
    for dir in cg.paths() {
        for file in ["memory.oom_control", "memory.events"] {
            let path = dir.join(file);
            if read_oom_kills(&path).is_some() {
                return Ok(Some(path));
            }
        }
    }
    Ok(None)
}

/// The `oom_kill` count in such a file.
pub fn read_oom_kills(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = text.lines().find_map(|l| l.strip_prefix("oom_kill "))?;
    value.trim().parse().ok()
}
