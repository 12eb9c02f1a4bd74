use std::path::Path;

use crate::cgroups::CgroupManager;
use crate::container::Container;
use crate::container::kill::kill_all_and_wait;
use crate::error::{Context, Result, RuntimeError};
use crate::hooks::{self, HookKind};
use crate::state::Status;

/// Delete a container: its processes (created containers always, running
/// ones only with `force`), its cgroups and its state, then run the
/// poststop hooks.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    delete_loaded(&Container::load(root, id)?, force)
}

/// [`delete`] for a container already loaded.
pub fn delete_loaded(c: &Container, force: bool) -> Result<()> {
    let id = c.record.id.as_str();
    let status = c.status();
    match status {
        Status::Stopped => {}
        Status::Created => kill_all_and_wait(c)?,
        Status::Running | Status::Paused | Status::Creating if force => kill_all_and_wait(c)?,
        _ => {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                op: "delete",
                status: format!("{status} (stop it first, or use --force)"),
            });
        }
    }
    // Anything left in the cgroup (processes that outlived init) goes too.
    if let Some(cg) = c.cgroups()? {
        if !cg.processes().unwrap_or_default().is_empty() {
            kill_all_and_wait(c)?;
        }
        cg.destroy()?;
    }
    std::fs::remove_dir_all(&c.dir).with_context(|| format!("remove {}", c.dir.display()))?;
    let state = serde_json::to_vec(&c.record.view(Status::Stopped)).unwrap_or_default();
    if let Err(e) = hooks::run(c.record.spec.hooks().as_ref(), HookKind::Poststop, &state) {
        tracing::warn!("{e}");
    }
    Ok(())
}
