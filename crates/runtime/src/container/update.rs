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
    let c = Container::load(root, id)?;
    let Some(cg) = c.cgroups()? else {
        return Ok(0);
    };
    for dir in cg.paths() {
        for file in ["memory.oom_control", "memory.events"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                let n = text
                    .lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok());
                if let Some(n) = n {
                    return Ok(n);
                }
            }
        }
    }
    Ok(0)
}
