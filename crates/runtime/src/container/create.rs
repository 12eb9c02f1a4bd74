use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{
    Linux, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespaceType, LinuxResources,
};

use crate::cgroups::{AnyCgroups, CgroupManager, CgroupRoots, Layout};
use crate::container::Container;
use crate::error::{Context, Result, RuntimeError};
use crate::hooks::{self, HookKind};
use crate::namespaces::Namespaces;
use crate::process::caps::CapSets;
use crate::process::channel::{self, Msg};
use crate::process::clone::{self, Forked};
use crate::process::init::{self, InitConfig};
use crate::process::setup;
use crate::state::{EXEC_FIFO, Record};

/// How to create a container (the flags of `create`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container id.
    pub id: String,
    /// Bundle directory (holds config.json).
    pub bundle: PathBuf,
    /// State root (`--root`).
    pub root: PathBuf,
    /// Write the init's host pid here.
    pub pid_file: Option<PathBuf>,
    /// Send the pty master to this UNIX socket (process.terminal).
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Do not create a session keyring.
    pub no_new_keyring: bool,
    /// Pass fds 3..3+N to the container.
    pub preserve_fds: u32,
    /// Created by an unprivileged user.
    pub rootless: bool,
    /// Keep compiled seccomp programs in this directory and reuse them
    /// (see [`crate::seccomp::compile_cached`]); `None` compiles each time.
    pub seccomp_cache: Option<PathBuf>,
}

/// Undo a half-made container when creation fails.
struct Cleanup {
    dir: PathBuf,
    pids: Vec<Pid>,
    cgroups: Option<AnyCgroups>,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for pid in &self.pids {
            let _ = kill(*pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(*pid, None);
        }
        if let Some(cg) = &self.cgroups
            && let Err(e) = cg.destroy()
        {
            tracing::warn!("clean up cgroups: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Create a container from a bundle: everything but executing the user
/// program, which waits for [`crate::container::start`].
///
/// Must be called from a single-threaded process (it forks).
pub fn create(opts: &CreateOptions) -> Result<Container> {
    crate::id::validate(&opts.id)?;
    check_preserve_fds(opts.preserve_fds)?;
    if !clone::single_threaded() {
        return Err(RuntimeError::InvalidArgument(
            "create must be called from a single-threaded process".into(),
        ));
    }
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|e| RuntimeError::Bundle {
        path: opts.bundle.clone(),
        reason: format!("cannot open the bundle directory: {e}"),
    })?;
    let spec = crate::spec::load(&bundle)?;
    crate::spec::validate(&spec)?;
    let rootfs = crate::spec::rootfs(&spec, &bundle)?;
    let rootfs =
        std::fs::canonicalize(&rootfs).with_context(|| format!("resolve {}", rootfs.display()))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let process = spec.process().clone().unwrap_or_default();
    let ns = Namespaces::from_spec(&linux)?;
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|s| crate::seccomp::compile_with(s, opts.seccomp_cache.as_deref()))
        .transpose()?;
    let caps = CapSets::from_spec(process.capabilities().as_ref())?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&opts.root)
        .with_context(|| format!("create state root {}", opts.root.display()))?;
    let dir = opts.root.join(&opts.id);
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::Exists(opts.id.clone()));
        }
        Err(e) => return Err(RuntimeError::io(format!("create {}", dir.display()), e)),
    }
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        pids: Vec::new(),
        cgroups: None,
        armed: true,
    };

    // cgroups
    let cgroup_path = linux
        .cgroups_path()
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/berth/{}", opts.id)));
    let cg = AnyCgroups::open(&cgroup_path, &CgroupRoots::default())?;
    let managed = !opts.rootless || cg.can_manage();
    let fast = ns.fast_path();
    let resources = resources_with_default_devices(&linux);
    // The common case (v1 or hybrid, no user namespace, no hugetlb): the
    // init starts on its root filesystem right away and the cgroups are
    // made meanwhile; it joins them (through `tasks`) once told they exist,
    // before mounting any cgroup filesystem. Elsewhere cgroups come first.
    let late_cgroups = managed
        && fast
        && cg.layout() != Layout::V2
        && !ns.has_new_or_joined(LinuxNamespaceType::User)
        && resources
            .hugepage_limits()
            .as_ref()
            .is_none_or(|h| h.is_empty())
        && resources.unified().as_ref().is_none_or(|u| u.is_empty());
    let setup_cgroups = |cleanup: &mut Cleanup| -> Result<()> {
        // Armed before create: a half-made tree is removed too.
        cleanup.cgroups = Some(cg.clone());
        cg.create()?;
        cg.apply(&resources)?;
        Ok(())
    };
    if managed && !late_cgroups {
        setup_cgroups(&mut cleanup)?;
    }
    let cgroup_dirs = cgroup_mount_dirs(&cg, &cgroup_path);
    // v1: the init joins its cgroups itself (fast, see V1Cgroups::task_files),
    // unless a user namespace stops it from writing the host's files.
    let cgroup_tasks = if managed && !ns.has_new_or_joined(LinuxNamespaceType::User) {
        cg.self_attach_files().unwrap_or_default()
    } else {
        Vec::new()
    };
    // v2: clone3 places the init in its cgroup directly.
    let cgroup_dir_fd: Option<OwnedFd> = match &cg {
        AnyCgroups::V2(v) if managed => std::fs::File::open(v.dir()).ok().map(OwnedFd::from),
        _ => None,
    };
    let fresh_cgroup2 = cg.layout() == Layout::V2 && ns.creates(LinuxNamespaceType::Cgroup);

    // The exec FIFO: init keeps it open read-write (so its open never
    // blocks) and waits for the byte `start` writes.
    let fifo_path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600))
        .with_context(|| format!("mkfifo {}", fifo_path.display()))?;
    let fifo: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&fifo_path)
        .with_context(|| format!("open {}", fifo_path.display()))?
        .into();

    let console_socket = opts
        .console_socket
        .as_deref()
        .map(crate::process::console::connect)
        .transpose()?;
    let seccomp_listener = setup::connect_seccomp_listener(&linux, seccomp.as_ref())?;
    let joined = ns.open_joined()?;
    let (parent_ch, child_ch) = channel::pair()?;
    let flags = if fast {
        ns.clone_flags()
    } else {
        nix::sched::CloneFlags::empty()
    };

    if !fast {
        clone::become_subreaper()?;
    }
    let into = if fast {
        cgroup_dir_fd.as_ref().map(|f| f.as_fd())
    } else {
        None
    };
    // Joined namespaces in the fast path: entered here for the clone (the
    // init is born in them) and left right after.
    let entered = if fast && !joined.is_empty() {
        Some(crate::namespaces::enter(&joined)?)
    } else {
        None
    };
    let (forked, placed) = match clone::fork_into(flags, into) {
        Ok(f) => (f, into.is_some()),
        // Older kernels or a cgroup that refuses CLONE_INTO_CGROUP: migrate later.
        Err(_) if into.is_some() => (clone::fork(flags)?, false),
        Err(e) => return Err(e),
    };
    let child = match forked {
        Forked::Child => {
            drop(parent_ch);
            let cfg = InitConfig {
                id: &opts.id,
                spec: &spec,
                rootfs: &rootfs,
                bundle: &bundle,
                namespaces: &ns,
                joined,
                fast,
                fifo,
                console_socket,
                seccomp,
                no_pivot: opts.no_pivot,
                no_new_keyring: opts.no_new_keyring,
                preserve_fds: opts.preserve_fds,
                cgroup_dirs,
                fresh_cgroup2,
                caps,
                seccomp_listener,
                cgroup_tasks: cgroup_tasks.clone(),
                late_go: late_cgroups,
            };
            init::run(cfg, &child_ch)
        }
        Forked::Parent(pid) => pid,
    };
    cleanup.pids.push(child);
    if let Some(entered) = entered {
        entered.leave()?;
    }
    drop(child_ch);
    drop(fifo);
    drop(joined);
    if late_cgroups {
        setup_cgroups(&mut cleanup)?;
    }

    if fast && ns.creates(LinuxNamespaceType::User) {
        write_id_maps(child, &linux, opts.rootless)?;
    }
    // Idmapped mounts are made here, on the host, and handed to the init.
    let idmap_userns = |pid: Pid| -> Result<Vec<OwnedFd>> {
        if !crate::rootfs::has_idmapped(&spec) {
            return Ok(Vec::new());
        }
        let path = match ns.joins(LinuxNamespaceType::User) {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(format!("/proc/{pid}/ns/user")),
        };
        let userns =
            std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        crate::rootfs::idmapped_trees(&spec, &bundle, userns.as_fd())
    };
    let go_fds = if fast || ns.joins(LinuxNamespaceType::User).is_some() {
        idmap_userns(child)?
    } else {
        Vec::new()
    };
    if managed && !placed {
        if cgroup_tasks.is_empty() {
            cg.add_process(child.as_raw())?;
        } else {
            cg.add_process_after_self_attach(child.as_raw())?;
        }
    }
    {
        use std::os::fd::AsRawFd;
        let raw: Vec<i32> = go_fds.iter().map(|f| f.as_raw_fd()).collect();
        parent_ch.send_to_child(&Msg::Go, &raw)?;
    }
    drop(go_fds);
    let mut init_pid = child;
    loop {
        match parent_ch.recv()? {
            Some(Msg::MapIds) => {
                write_id_maps(child, &linux, opts.rootless)?;
                let trees = idmap_userns(child)?;
                use std::os::fd::AsRawFd;
                let raw: Vec<i32> = trees.iter().map(|f| f.as_raw_fd()).collect();
                parent_ch.send_to_child(&Msg::MapsDone, &raw)?;
            }
            Some(Msg::Pid(p)) => {
                init_pid = Pid::from_raw(p);
                cleanup.pids.push(init_pid);
                if init_pid != child {
                    // The intermediate exits right after; reap it, and
                    // forget its pid (it may be reused).
                    let _ = nix::sys::wait::waitpid(child, None);
                    cleanup.pids.retain(|p| *p != child);
                }
            }
            Some(Msg::RunCreateRuntimeHooks) => {
                let state =
                    hooks::state_json(&opts.id, init_pid.as_raw(), &bundle, &spec, "creating");
                let res =
                    hooks::run(spec.hooks().as_ref(), HookKind::Prestart, &state).and_then(|()| {
                        hooks::run(spec.hooks().as_ref(), HookKind::CreateRuntime, &state)
                    });
                res?;
                parent_ch.send_to_child(&Msg::HooksDone, &[])?;
            }
            Some(Msg::Ready) => break,
            Some(Msg::Error(e)) => return Err(RuntimeError::Child(e)),
            None => {
                return Err(RuntimeError::Child(
                    "the container's init exited during setup".into(),
                ));
            }
            Some(other) => {
                return Err(RuntimeError::Child(format!(
                    "protocol error: unexpected {other:?}"
                )));
            }
        }
    }

    let pid_start = crate::state::proc_stat(init_pid.as_raw())
        .map(|(_, start)| start)
        .ok_or_else(|| RuntimeError::Child("the container's init died right after setup".into()))?;
    let record = Record {
        id: opts.id.clone(),
        pid: init_pid.as_raw(),
        pid_start,
        bundle: bundle.clone(),
        rootfs,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup_path,
        cgroups_managed: managed,
        cgroup_mountinfo: std::env::var_os(crate::cgroups::MOUNTINFO_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        rootless: opts.rootless,
        spec,
    };
    record.save(&dir)?;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, init_pid.as_raw())?;
    }
    cleanup.armed = false;
    Ok(Container {
        dir,
        record,
        cgroups: Some(cg),
    })
}

/// The most fds `--preserve-fds` may pass (fds 3..3+N must stay countable).
const MAX_PRESERVE_FDS: u32 = 1 << 20;

/// Refuse a `--preserve-fds` count that could not be real.
pub(crate) fn check_preserve_fds(n: u32) -> Result<()> {
    if n > MAX_PRESERVE_FDS {
        return Err(RuntimeError::InvalidArgument(format!(
            "--preserve-fds {n}: at most {MAX_PRESERVE_FDS} file descriptors can be passed"
        )));
    }
    Ok(())
}

/// Write a pid file atomically, as runc does.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write pid file {}", path.display()))
}

/// The device cgroup rules: the spec's, then allow rules for the devices
/// every container gets and those listed in linux.devices (as runc does).
fn resources_with_default_devices(linux: &Linux) -> LinuxResources {
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    let allow = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(allow(C, Some(major), Some(minor), "rwm"));
    }
    rules.push(allow(C, Some(136), None, "rwm"));
    rules.push(allow(C, None, None, "m"));
    rules.push(allow(B, None, None, "m"));
    for d in linux.devices().iter().flatten() {
        let typ = match d.typ() {
            LinuxDeviceType::B => B,
            _ => C,
        };
        rules.push(allow(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    res.set_devices(Some(rules));
    res
}

/// (name under /sys/fs/cgroup, host dir) of each hierarchy, for the
/// container's cgroup mount.
fn cgroup_mount_dirs(cg: &AnyCgroups, cgroup_path: &Path) -> Vec<(String, PathBuf)> {
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    cg.paths()
        .into_iter()
        .map(|p| {
            let mut mountpoint = p.clone();
            for _ in rel.components() {
                mountpoint.pop();
            }
            let name = if cg.layout() == Layout::V2 {
                String::new()
            } else {
                mountpoint
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            (name, p)
        })
        .collect()
}

/// Write the uid/gid maps of a process in a new user namespace: directly as
/// root, through newuidmap/newgidmap otherwise (rootless), or directly for
/// the single own-id mapping (with setgroups denied).
fn write_id_maps(pid: Pid, linux: &Linux, rootless: bool) -> Result<()> {
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<(u32, u32, u32)> {
        maps.iter()
            .flatten()
            .map(|m| (m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let uids = fmt(linux.uid_mappings());
    let gids = fmt(linux.gid_mappings());
    let text = |m: &[(u32, u32, u32)]| {
        m.iter()
            .map(|(c, h, s)| format!("{c} {h} {s}\n"))
            .collect::<String>()
    };
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let only_self = |m: &[(u32, u32, u32)], own: u32| m.len() == 1 && m[0].1 == own && m[0].2 == 1;
    if euid == 0 && !rootless {
        std::fs::write(format!("/proc/{pid}/uid_map"), text(&uids))
            .map_err(|e| RuntimeError::spec("linux.uidMappings", format!("write uid_map: {e}")))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), text(&gids))
            .map_err(|e| RuntimeError::spec("linux.gidMappings", format!("write gid_map: {e}")))?;
        return Ok(());
    }
    if only_self(&uids, euid) && only_self(&gids, egid) {
        std::fs::write(format!("/proc/{pid}/uid_map"), text(&uids))
            .map_err(|e| RuntimeError::spec("linux.uidMappings", format!("write uid_map: {e}")))?;
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
            .map_err(|e| RuntimeError::spec("linux.gidMappings", format!("deny setgroups: {e}")))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), text(&gids))
            .map_err(|e| RuntimeError::spec("linux.gidMappings", format!("write gid_map: {e}")))?;
        return Ok(());
    }
    for (tool, maps, field) in [
        ("newuidmap", &uids, "linux.uidMappings"),
        ("newgidmap", &gids, "linux.gidMappings"),
    ] {
        let mut cmd = std::process::Command::new(tool);
        cmd.arg(pid.to_string());
        for (c, h, s) in maps.iter() {
            cmd.args([c.to_string(), h.to_string(), s.to_string()]);
        }
        let out = cmd.output().map_err(|e| {
            RuntimeError::spec(
                field,
                format!("run {tool} (install the uidmap package): {e}"),
            )
        })?;
        if !out.status.success() {
            return Err(RuntimeError::spec(
                field,
                format!(
                    "{tool} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
    }
    Ok(())
}
