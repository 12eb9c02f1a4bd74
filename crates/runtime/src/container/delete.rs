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
    let hooks = c.record.spec.hooks().as_ref();
    if hooks.is_some_and(|h| !HookKind::Poststop.of(h).is_empty()) {
        let state = serde_json::to_vec(&c.record.view(Status::Stopped)).unwrap_or_default();
        if let Err(e) = hooks::run(hooks, HookKind::Poststop, &state) {
            tracing::warn!("{e}");
        }
    }
    Ok(())
}

/// Remove what a `create` that never finished (the runtime was killed)
/// left under `root/id`: the state directory without a record, and the
/// default cgroup `/berth/<id>` with anything running in it. Returns
/// whether there was anything to remove. (A custom cgroupsPath is not
/// known without the record; those cgroups are left.)
pub fn delete_incomplete(root: &Path, id: &str) -> Result<bool> {
    crate::id::validate(id)?;
    let dir = root.join(id);
    if !dir.is_dir() || dir.join(crate::state::STATE_FILE).exists() {
        return Ok(false);
    }
    let cgroup = std::path::PathBuf::from(format!("/berth/{id}"));
    if let Ok(cg) =
        crate::cgroups::AnyCgroups::open(&cgroup, &crate::cgroups::CgroupRoots::default())
        && cg.paths().iter().any(|p| p.is_dir())
    {
        let _ = cg.thaw();
        for _ in 0..200 {
            let pids = cg.processes().unwrap_or_default();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) with plain integers, on processes in this
                // container's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        cg.destroy()?;
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    Ok(true)
}
