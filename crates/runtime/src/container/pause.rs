use std::path::Path;

use crate::cgroups::CgroupManager;
use crate::container::Container;
use crate::error::{Result, RuntimeError};
use crate::state::Status;

fn cgroups_of(c: &Container, op: &'static str) -> Result<crate::cgroups::AnyCgroups> {
    c.cgroups()?.ok_or_else(|| RuntimeError::InvalidState {
        id: c.record.id.clone(),
        op,
        status: "without managed cgroups (rootless)".into(),
    })
}

/// Freeze every process of a running container.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Running && status != Status::Created {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            op: "pause",
            status: status.to_string(),
        });
    }
    Ok(cgroups_of(&c, "pause")?.freeze()?)
}

/// Thaw a paused container.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Paused {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            op: "resume",
            status: status.to_string(),
        });
    }
    Ok(cgroups_of(&c, "resume")?.thaw()?)
}
