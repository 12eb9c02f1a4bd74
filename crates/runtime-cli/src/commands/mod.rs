//! One module per group of verbs; each function only calls the library.

mod create;
mod exec;
mod info;
mod lifecycle;
mod tty;
mod update;

use crate::Globals;
use crate::args::Command;

/// Run a verb; the result is the process exit code.
pub fn dispatch(g: &Globals, cmd: Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Create(a) => create::create(g, &a).map(|()| 0),
        Command::Start(a) => lifecycle::start(g, &a.id).map(|()| 0),
        Command::Run(a) => create::run(g, &a),
        Command::State(a) => info::state(g, &a.id).map(|()| 0),
        Command::Kill(a) => lifecycle::kill(g, &a).map(|()| 0),
        Command::Delete(a) => lifecycle::delete(g, &a).map(|()| 0),
        Command::Exec(a) => exec::exec(g, &a),
        Command::Ps(a) => info::ps(g, &a).map(|()| 0),
        Command::List(a) => info::list(g, &a).map(|()| 0),
        Command::Spec(a) => info::spec(&a).map(|()| 0),
        Command::Features => info::features().map(|()| 0),
        Command::Pause(a) => lifecycle::pause(g, &a.id).map(|()| 0),
        Command::Resume(a) => lifecycle::resume(g, &a.id).map(|()| 0),
        Command::Update(a) => update::update(g, &a).map(|()| 0),
        Command::Events(a) => update::events(g, &a).map(|()| 0),
        Command::Checkpoint(_) | Command::Restore(_) => {
            anyhow::bail!("checkpoint/restore is not supported by berth-runtime")
        }
    }
}
