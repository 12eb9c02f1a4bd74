use std::collections::HashSet;

use anyhow::Context;
use berth_runtime::container::{self, Container, ExecOptions, ExecOutcome};
use oci_spec::runtime::{Capabilities, Capability, Process};

use super::create::supervise;
use super::tty::ConsoleSocket;
use crate::Globals;
use crate::args::ExecArgs;

/// The process to run: --process FILE, or the container's own process with
/// the command line's overrides.
fn build_process(g: &Globals, a: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(path) = &a.process {
        let data =
            std::fs::read(path).with_context(|| format!("read --process {}", path.display()))?;
        let mut v: serde_json::Value = serde_json::from_slice(&data)
            .with_context(|| format!("--process {}: not valid JSON", path.display()))?;
        // runc takes a process without "user" as uid 0, gid 0.
        if let Some(obj) = v.as_object_mut() {
            obj.entry("user")
                .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
        }
        let p: Process = serde_json::from_value(v)
            .with_context(|| format!("--process {}: not a valid OCI process", path.display()))?;
        return Ok(p);
    }
    if a.command.is_empty() {
        anyhow::bail!("exec needs a command (or --process FILE)");
    }
    let c = Container::load(&g.root, &a.id)?;
    let mut p = c.record.spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse::<u32>()?, Some(g.parse::<u32>()?)),
            None => (
                u.parse::<u32>()
                    .with_context(|| format!("--user {u:?}: expected UID[:GID]"))?,
                None,
            ),
        };
        let mut user = p.user().clone();
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let mut add: HashSet<Capability> = HashSet::new();
        for c in &a.cap {
            let name = c.strip_prefix("CAP_").unwrap_or(c);
            add.insert(
                name.parse()
                    .with_context(|| format!("--cap {c}: unknown capability"))?,
            );
        }
        let merge = |set: &Option<Capabilities>| -> Option<Capabilities> {
            let mut s = set.clone().unwrap_or_default();
            s.extend(add.iter().copied());
            Some(s)
        };
        caps.set_bounding(merge(caps.bounding()));
        caps.set_effective(merge(caps.effective()));
        caps.set_permitted(merge(caps.permitted()));
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    Ok(p)
}

pub fn exec(g: &Globals, a: &ExecArgs) -> anyhow::Result<u8> {
    let process = build_process(g, a)?;
    let terminal = process.terminal().unwrap_or(false);
    let mut opts = ExecOptions {
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        seccomp_cache: None,
    };
    // A terminal in the foreground without --console-socket: we hold the
    // pty and connect it to our stdin/stdout, as runc does.
    let console = if terminal && opts.console_socket.is_none() {
        if a.detach {
            anyhow::bail!("--tty with --detach needs --console-socket to receive the terminal");
        }
        let sock = ConsoleSocket::new(&g.root, &format!("{}-exec-{}", a.id, std::process::id()))?;
        opts.console_socket = Some(sock.path().to_path_buf());
        opts.detach = true;
        Some(sock)
    } else {
        None
    };
    let outcome = container::exec(&g.root, &a.id, &opts)?;
    match (outcome, console) {
        (ExecOutcome::Detached(pid), Some(sock)) => {
            let master = sock.receive()?;
            drop(sock);
            let code = supervise(nix::unistd::Pid::from_raw(pid), Some(&master), || 0)?;
            Ok(u8::try_from(code & 0xff).unwrap_or(1))
        }
        (ExecOutcome::Detached(_), None) => Ok(0),
        (ExecOutcome::Exited(code), _) => Ok(u8::try_from(code & 0xff).unwrap_or(1)),
    }
}
