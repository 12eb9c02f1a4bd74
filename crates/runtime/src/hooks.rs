use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

use crate::error::{Result, RuntimeError};

/// The hook kinds, named as in config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Deprecated; runs with createRuntime.
    Prestart,
    /// In the runtime namespace, after the container's namespaces exist.
    CreateRuntime,
    /// In the container namespaces, before pivot_root.
    CreateContainer,
    /// In the container, before the user process is executed.
    StartContainer,
    /// In the runtime namespace, after the user process started.
    Poststart,
    /// In the runtime namespace, after the container is deleted.
    Poststop,
}

impl HookKind {
    fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in `hooks`.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            #[allow(deprecated)]
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

const ALL: [HookKind; 6] = [
    HookKind::Prestart,
    HookKind::CreateRuntime,
    HookKind::CreateContainer,
    HookKind::StartContainer,
    HookKind::Poststart,
    HookKind::Poststop,
];

/// The container state hooks get on their stdin (OCI `State`).
pub fn state_json(
    id: &str,
    pid: i32,
    bundle: &std::path::Path,
    spec: &oci_spec::runtime::Spec,
    status: &str,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    }))
    .unwrap_or_default()
}

/// Check hook paths and timeouts.
pub fn validate(hooks: &Hooks) -> Result<()> {
    for kind in ALL {
        for (i, h) in kind.of(hooks).iter().enumerate() {
            let field = format!("hooks.{}[{i}]", kind.name());
            if !h.path().is_absolute() {
                return Err(RuntimeError::spec(
                    format!("{field}.path"),
                    format!("{} is not an absolute path", h.path().display()),
                ));
            }
            if h.timeout().is_some_and(|t| t <= 0) {
                return Err(RuntimeError::spec(
                    format!("{field}.timeout"),
                    "must be a positive number of seconds",
                ));
            }
        }
    }
    Ok(())
}

/// Run every hook of `kind` in order, each with the container state JSON on
/// its stdin. The first failing hook stops the sequence and is returned as
/// an error (callers ignore poststart/poststop errors after logging them,
/// as the spec says).
pub fn run(hooks: Option<&Hooks>, kind: HookKind, state_json: &[u8]) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    for (i, hook) in kind.of(hooks).iter().enumerate() {
        run_one(hook, state_json).map_err(|why| {
            RuntimeError::Hook(format!(
                "{} hook {i} ({}) failed: {why}",
                kind.name(),
                hook.path().display()
            ))
        })?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state_json: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args()
        && let Some((first, rest)) = args.split_first()
    {
        cmd.arg0(first);
        cmd.args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
    let mut stdin = child.stdin.take();
    let mut written = 0;
    if deadline.is_none() {
        // No timeout: write the state (a hook that does not read it is fine:
        // EPIPE) and wait as long as the hook runs.
        if let Some(mut s) = stdin.take() {
            let _ = s.write_all(state_json);
        }
        return match child.wait() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("exited with {status}")),
            Err(e) => Err(format!("wait: {e}")),
        };
    }
    // With a timeout the state is written without blocking, so a hook that
    // neither reads its stdin nor exits is still killed on time.
    if let Some(s) = &stdin {
        let _ = rustix::fs::fcntl_setfl(s, rustix::fs::OFlags::NONBLOCK);
    }
    let deadline = deadline.unwrap_or_else(Instant::now);
    loop {
        if let Some(s) = stdin.as_mut() {
            match s.write(&state_json[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => written = state_json.len(),
            }
            if written >= state_json.len() {
                stdin = None; // EOF for the hook
            }
        }
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("exited with {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {} s",
                hook.timeout().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
