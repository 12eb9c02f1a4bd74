//! Container lifecycle, one file per operation.
//!
//! A container lives in `<root>/<id>/`: `state.json` (the [`Record`]) and,
//! until `start`, the `exec.fifo` its init waits on.

pub(crate) mod create;
mod delete;
mod exec;
pub use exec::wait_exit_code;
mod kill;
mod pause;
mod start;
mod update;

use std::path::{Path, PathBuf};

pub use create::{CreateOptions, create};
pub use delete::{delete, delete_incomplete, delete_loaded};
pub use exec::{ExecOptions, ExecOutcome, exec};
pub use kill::kill;
pub use pause::{pause, resume};
pub use start::{start, start_loaded};
pub use update::{oom_kill_file, oom_kill_file_of, oom_kills, read_oom_kills, stats, update};

use crate::cgroups::{AnyCgroups, CgroupManager, CgroupRoots};
use crate::error::Result;
use crate::state::{Record, StateView, Status};

/// A container found under a state root.
#[derive(Debug)]
pub struct Container {
    /// Its state directory.
    pub dir: PathBuf,
    /// What was recorded at create time.
    pub record: Record,
    /// The cgroups `create` worked out (which read mountinfo), reused by
    /// [`Container::cgroups`] for the container it returns.
    cgroups: Option<AnyCgroups>,
}

impl Container {
    /// Load container `id` from state root `root`.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        let record = Record::load(root, id)?;
        Ok(Container {
            dir: root.join(id),
            record,
            cgroups: None,
        })
    }

    /// Its cgroups, when the runtime manages them.
    pub fn cgroups(&self) -> Result<Option<AnyCgroups>> {
        if !self.record.cgroups_managed {
            return Ok(None);
        }
        if let Some(cg) = &self.cgroups {
            return Ok(Some(cg.clone()));
        }
        let mut roots = CgroupRoots::default();
        if let Some(m) = &self.record.cgroup_mountinfo {
            roots.mountinfo = m.clone();
        }
        Ok(Some(AnyCgroups::open(&self.record.cgroup_path, &roots)?))
    }

    /// Current status.
    pub fn status(&self) -> Status {
        // The freezer is only read for a live, started container.
        self.record.status(&self.dir, || {
            self.cgroups()
                .ok()
                .flatten()
                .is_some_and(|c| c.is_frozen().unwrap_or(false))
        })
    }

    /// The runc-compatible state.
    pub fn state(&self) -> StateView {
        self.record.view(self.status())
    }

    /// The host pids of every process in the container (init alone when
    /// cgroups are not managed).
    pub fn pids(&self) -> Result<Vec<i32>> {
        match self.cgroups()? {
            Some(cg) => Ok(cg.processes()?),
            None if self.record.alive() => Ok(vec![self.record.pid]),
            None => Ok(Vec::new()),
        }
    }
}

/// State of every container under `root`.
pub fn list(root: &Path) -> Result<Vec<StateView>> {
    let mut out = Vec::new();
    for id in crate::state::list_ids(root)? {
        if let Ok(c) = Container::load(root, &id) {
            out.push(c.state());
        }
    }
    Ok(out)
}

/// The state of one container.
pub fn state(root: &Path, id: &str) -> Result<StateView> {
    Ok(Container::load(root, id)?.state())
}

/// Host pids of the processes in container `id`.
pub fn ps(root: &Path, id: &str) -> Result<Vec<i32>> {
    Container::load(root, id)?.pids()
}
