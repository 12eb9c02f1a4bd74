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
