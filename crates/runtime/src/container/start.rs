use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::container::Container;
use crate::error::{Context, Result, RuntimeError};
use crate::hooks::{self, HookKind};
use crate::state::{EXEC_FIFO, Status};

/// Start a created container: release its init from the exec FIFO, then
/// run the poststart hooks (a failing poststart hook is logged, as the
/// spec says, and does not stop the container).
pub fn start(root: &Path, id: &str) -> Result<()> {
    start_loaded(&Container::load(root, id)?)
}

/// [`start`] for a container already loaded (or just created).
pub fn start_loaded(c: &Container) -> Result<()> {
    let id = c.record.id.as_str();
    let status = c.status();
    if status != Status::Created {
        return Err(RuntimeError::InvalidState {
            id: id.to_string(),
            op: "start",
            status: status.to_string(),
        });
    }
    let fifo_path = c.dir.join(EXEC_FIFO);
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo_path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                RuntimeError::InvalidState {
                    id: id.to_string(),
                    op: "start",
                    status: "stopped (its init exited)".into(),
                }
            } else {
                RuntimeError::io(format!("open {}", fifo_path.display()), e)
            }
        })?;
    fifo.write_all(&[0])
        .context("release the container's init")?;
    drop(fifo);
    // Released: the container runs. A process that exits at once may have
    // had its state deleted already by whoever handles its exit.
    match std::fs::remove_file(&fifo_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(RuntimeError::io(
                format!("remove {}", fifo_path.display()),
                e,
            ));
        }
        _ => {}
    }
    let hooks = c.record.spec.hooks().as_ref();
    if hooks.is_some_and(|h| !HookKind::Poststart.of(h).is_empty()) {
        let state = serde_json::to_vec(&c.record.view(Status::Running)).unwrap_or_default();
        if let Err(e) = hooks::run(hooks, HookKind::Poststart, &state) {
            tracing::warn!("{e}");
        }
    }
    Ok(())
}
