use berth_runtime::container;

use crate::Globals;
use crate::args::{DeleteArgs, KillArgs};

pub fn start(g: &Globals, id: &str) -> anyhow::Result<()> {
    Ok(container::start(&g.root, id)?)
}

pub fn kill(g: &Globals, a: &KillArgs) -> anyhow::Result<()> {
    let sig = berth_runtime::signal::parse(&a.signal)?;
    Ok(container::kill(&g.root, &a.id, sig, a.all)?)
}

pub fn delete(g: &Globals, a: &DeleteArgs) -> anyhow::Result<()> {
    match container::delete(&g.root, &a.id, a.force) {
        // runc treats deleting a missing container with --force as success;
        // what an interrupted create left behind goes too.
        Err(berth_runtime::RuntimeError::NotFound(_)) if a.force => {
            container::delete_incomplete(&g.root, &a.id)?;
            Ok(())
        }
        other => Ok(other?),
    }
}

pub fn pause(g: &Globals, id: &str) -> anyhow::Result<()> {
    Ok(container::pause(&g.root, id)?)
}

pub fn resume(g: &Globals, id: &str) -> anyhow::Result<()> {
    Ok(container::resume(&g.root, id)?)
}
