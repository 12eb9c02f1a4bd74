//! Image config → OCI runtime spec, with Docker's semantics and defaults.
//!
//! [`prepare`] merges a `docker create` request ([`RunOptions`]) over an
//! image's config the way dockerd does and builds the `config.json` that
//! berth-runtime runs: Entrypoint/Cmd, Env, WorkingDir, User (resolved in
//! the image's own /etc/passwd and /etc/group, fd-relative), Docker's
//! default capabilities, seccomp profile, masked and read-only paths,
//! mounts, namespaces and resources. The metadata that is not part of the
//! runtime spec (stop signal, health check, ports, volumes, labels) comes
//! back in [`Prepared`] for the engine.

/// Capability names, Docker's defaults, `--cap-add`/`--cap-drop`.
pub mod caps;
/// Docker's merge rules for Entrypoint/Cmd, Env, Labels, ports, volumes, health checks.
pub mod config;
mod error;
/// Default mounts, masked and read-only paths, tmpfs and bind mounts.
pub mod mounts;
/// Resource limits and ulimits.
pub mod resources;
/// Docker-format seccomp profiles and Docker's default profile.
pub mod seccomp;
/// `User` resolution inside the image.
pub mod user;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilities, LinuxDevice, LinuxDeviceType, LinuxNamespace,
    LinuxNamespaceType, Process, Root, Spec, User,
};

pub use config::Healthcheck;
pub use error::{Result, SpecError};
pub use resources::{Resources, Ulimit};
pub use seccomp::SeccompProfile;
pub use user::ExecUser;

/// How a container gets a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// A new namespace of its own (Docker's default).
    #[default]
    Private,
    /// The host's: the namespace is left out of the spec.
    Host,
    /// Join an existing namespace (`container:<id>`, a prepared netns).
    Path(PathBuf),
}

/// Mount propagation of a bind mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// `private`
    Private,
    /// `rprivate` (Docker's default)
    #[default]
    RPrivate,
    /// `shared`
    Shared,
    /// `rshared`
    RShared,
    /// `slave`
    Slave,
    /// `rslave`
    RSlave,
}

impl Propagation {
    /// The mount option.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Private => "private",
            Propagation::RPrivate => "rprivate",
            Propagation::Shared => "shared",
            Propagation::RShared => "rshared",
            Propagation::Slave => "slave",
            Propagation::RSlave => "rslave",
        }
    }
}

/// A bind mount from the host (`-v /src:/dst:ro`, `--mount type=bind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub destination: PathBuf,
    /// Read-only.
    pub read_only: bool,
    /// Propagation; `rprivate` when `None`.
    pub propagation: Option<Propagation>,
}

/// What a `docker create` request sets; every field unset keeps the
/// image's value or Docker's default.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Container id; its first 12 characters are the default hostname.
    pub id: Option<String>,
    /// `Cmd`; `None` or empty: the image's (unless `entrypoint` is set).
    pub cmd: Option<Vec<String>>,
    /// `Entrypoint`; `None`: the image's; `Some(vec![])`: none.
    pub entrypoint: Option<Vec<String>>,
    /// `Env` (`KEY=value`; `KEY` alone removes the key).
    pub env: Vec<String>,
    /// `WorkingDir` (absolute).
    pub working_dir: Option<String>,
    /// `User`: `name`, `uid`, `name:group`, `uid:gid`, `uid:group`.
    pub user: Option<String>,
    /// `GroupAdd`: extra groups, names or gids.
    pub group_add: Vec<String>,
    /// `Hostname`.
    pub hostname: Option<String>,
    /// `Domainname`.
    pub domainname: Option<String>,
    /// `Tty`.
    pub tty: bool,
    /// `OpenStdin`.
    pub open_stdin: bool,
    /// `Labels` (merged over the image's).
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
    /// `Healthcheck` (merged over the image's).
    pub healthcheck: Option<Healthcheck>,
    /// The image's health check, which oci-spec's `ImageConfiguration`
    /// does not carry: read it with [`Healthcheck::from_image_config`].
    pub image_healthcheck: Option<Healthcheck>,
    /// `ExposedPorts` (`80`, `53/udp`).
    pub exposed_ports: Vec<String>,
    /// `Volumes` (container paths).
    pub volumes: Vec<String>,
    /// `CapAdd`.
    pub cap_add: Vec<String>,
    /// `CapDrop`.
    pub cap_drop: Vec<String>,
    /// `Privileged`.
    pub privileged: bool,
    /// `ReadonlyRootfs`.
    pub readonly_rootfs: bool,
    /// `SecurityOpt`: `seccomp=unconfined|builtin|<profile JSON>`,
    /// `no-new-privileges[:true|false]`, `apparmor=unconfined`,
    /// `label=disable`.
    pub security_opt: Vec<String>,
    /// `Sysctls`.
    pub sysctls: BTreeMap<String, String>,
    /// `ShmSize` in bytes (64 MiB when unset).
    pub shm_size: Option<u64>,
    /// `Tmpfs`: container path → mount options.
    pub tmpfs: BTreeMap<String, String>,
    /// Bind mounts.
    pub binds: Vec<BindMount>,
    /// Host file bound at /etc/hostname.
    pub hostname_path: Option<PathBuf>,
    /// Host file bound at /etc/hosts.
    pub hosts_path: Option<PathBuf>,
    /// Host file bound at /etc/resolv.conf.
    pub resolv_conf_path: Option<PathBuf>,
    /// Resource limits.
    pub resources: Resources,
    /// Network namespace.
    pub network: NamespaceMode,
    /// PID namespace.
    pub pid: NamespaceMode,
    /// IPC namespace.
    pub ipc: NamespaceMode,
    /// UTS namespace.
    pub uts: NamespaceMode,
    /// cgroup namespace; `None`: Docker's default for this host (private
    /// on a cgroup v2 host, the host's on v1).
    pub cgroupns: Option<NamespaceMode>,
    /// `linux.cgroupsPath`.
    pub cgroups_path: Option<String>,
}

/// A container ready to be written as a bundle, plus what the engine keeps.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The runtime spec (`root.path` is the rootfs given to [`prepare`]).
    pub spec: Spec,
    /// The identity the process runs as.
    pub user: ExecUser,
    /// The hostname (also in `HOSTNAME`).
    pub hostname: String,
    /// Signal number that stops the container (SIGTERM by default).
    pub stop_signal: i32,
    /// `StopSignal` as merged (image or request), `None` = default.
    pub stop_signal_name: Option<String>,
    /// Merged health check (`["NONE"]` when disabled).
    pub healthcheck: Option<Healthcheck>,
    /// Exposed ports, normalised (`80/tcp`).
    pub exposed_ports: BTreeSet<String>,
    /// Anonymous volumes to create (image's and request's).
    pub volumes: BTreeSet<String>,
    /// Merged labels.
    pub labels: BTreeMap<String, String>,
    /// Whether stdin stays open.
    pub open_stdin: bool,
    /// Whether the process has a terminal.
    pub tty: bool,
}

/// What `SecurityOpt` asks for.
#[derive(Debug, Default)]
struct Security {
    seccomp: Option<SeccompChoice>,
    no_new_privileges: bool,
}

#[derive(Debug)]
enum SeccompChoice {
    Unconfined,
    Builtin,
    Profile(Box<SeccompProfile>),
}

/// Docker's `parseSecurityOpt`, minus what berth does not apply: AppArmor
/// profiles and SELinux labels are refused rather than ignored.
fn security_opts(opts: &[String]) -> Result<Security> {
    let mut s = Security::default();
    for opt in opts {
        if opt == "no-new-privileges" {
            s.no_new_privileges = true;
            continue;
        }
        let (k, v) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .ok_or_else(|| SpecError::invalid(format!("invalid --security-opt 1: {opt:?}")))?;
        match k {
            "seccomp" => {
                s.seccomp = Some(match v {
                    "unconfined" => SeccompChoice::Unconfined,
                    "builtin" | "" => SeccompChoice::Builtin,
                    text => SeccompChoice::Profile(Box::new(SeccompProfile::from_json(text)?)),
                })
            }
            "no-new-privileges" => {
                s.no_new_privileges = match v {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => {
                        return Err(SpecError::invalid(format!(
                            "invalid --security-opt 2: {opt:?}"
                        )));
                    }
                }
            }
            "apparmor" if v == "unconfined" => {}
            "apparmor" => {
                return Err(SpecError::invalid(format!(
                    "apparmor profile {v:?}: AppArmor profiles are not supported by berth"
                )));
            }
            "label" if v == "disable" => {}
            "label" => {
                return Err(SpecError::invalid(format!(
                    "label {v:?}: SELinux labels are not supported by berth"
                )));
            }
            _ => {
                return Err(SpecError::invalid(format!(
                    "invalid --security-opt 2: {opt:?}"
                )));
            }
        }
    }
    Ok(s)
}

/// True when /sys/fs/cgroup is a cgroup2 mount (a v2-only host).
fn cgroup_v2_host() -> bool {
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    rustix::fs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| u64::try_from(s.f_type).is_ok_and(|t| t == CGROUP2_SUPER_MAGIC))
}

fn namespaces(opts: &RunOptions) -> Vec<LinuxNamespace> {
    let cgroupns = opts.cgroupns.clone().unwrap_or(if cgroup_v2_host() {
        NamespaceMode::Private
    } else {
        NamespaceMode::Host
    });
    let mut out = Vec::new();
    for (typ, mode) in [
        (LinuxNamespaceType::Mount, &NamespaceMode::Private),
        (LinuxNamespaceType::Network, &opts.network),
        (LinuxNamespaceType::Uts, &opts.uts),
        (LinuxNamespaceType::Pid, &opts.pid),
        (LinuxNamespaceType::Ipc, &opts.ipc),
        (LinuxNamespaceType::Cgroup, &cgroupns),
    ] {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        match mode {
            NamespaceMode::Host => continue,
            NamespaceMode::Private => {}
            NamespaceMode::Path(p) => {
                ns.set_path(Some(p.clone()));
            }
        }
        out.push(ns);
    }
    out
}

/// Every device node of the host's /dev, for a privileged container
/// (those the runtime always creates, /dev/console and /dev/ptmx, and the
/// pts, shm, mqueue and fd directories are left out).
fn host_devices() -> Result<Vec<LinuxDevice>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    const SKIP_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
    const SKIP: [&str; 8] = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/console",
        "/dev/ptmx",
    ];
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SpecError::io(format!("read {}", dir.display()), e)),
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                let name = entry.file_name();
                if !SKIP_DIRS.iter().any(|s| name == *s) {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if SKIP.iter().any(|s| path == Path::new(s)) {
                continue;
            }
            let rdev = md.rdev();
            let mut d = LinuxDevice::default();
            d.set_path(path);
            d.set_typ(typ);
            d.set_major(i64::from(rustix::fs::major(rdev)));
            d.set_minor(i64::from(rustix::fs::minor(rdev)));
            d.set_file_mode(Some(md.mode() & 0o7777));
            d.set_uid(Some(md.uid()));
            d.set_gid(Some(md.gid()));
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

/// Create the working directory inside the rootfs (fd-relative), as Docker
/// does at start; an existing non-directory is Docker's error.
fn make_workdir(root: impl AsFd, cwd: &str) -> Result<()> {
    match berth_runtime::rootfs::resolve::mkdir_all(root.as_fd(), Path::new(cwd)) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("Not a directory") => Err(SpecError::invalid(format!(
            "Cannot mkdir: {cwd} is not a directory"
        ))),
        Err(e) => Err(SpecError::Runtime(e)),
    }
}

/// The hostname: the request's, else the id's first 12 characters, else
/// the host's (uts=host, or no id).
fn hostname(opts: &RunOptions) -> Result<String> {
    let host_name = || {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    };
    if opts.uts == NamespaceMode::Host {
        if opts.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
            return Err(SpecError::invalid(
                "conflicting options: hostname and the UTS mode",
            ));
        }
        return Ok(host_name());
    }
    if let Some(h) = opts.hostname.as_ref().filter(|h| !h.is_empty()) {
        return Ok(h.clone());
    }
    if let Some(id) = opts.id.as_ref().filter(|i| !i.is_empty()) {
        return Ok(id.chars().take(12).collect());
    }
    Ok(host_name())
}

/// Merge `opts` over `image`, resolve the user in `rootfs` and build the
/// runtime spec Docker would, checked by berth-runtime's own validation.
/// Creates the working directory inside `rootfs` when missing.
pub fn prepare(image: &ImageConfiguration, rootfs: &Path, opts: &RunOptions) -> Result<Prepared> {
    let root = std::fs::File::open(rootfs)
        .map_err(|e| SpecError::io(format!("open rootfs {}", rootfs.display()), e))?;
    let empty = oci_spec::image::Config::default();
    let ic = image.config().as_ref().unwrap_or(&empty);

    let args = config::args(
        ic.entrypoint().as_deref(),
        ic.cmd().as_deref(),
        opts.entrypoint.as_deref(),
        opts.cmd.as_deref(),
    )?;
    let user_spec = opts
        .user
        .clone()
        .or_else(|| ic.user().clone())
        .unwrap_or_default();
    let user = user::resolve_user(&root, &user_spec, &opts.group_add)?;

    let cwd = match opts.working_dir.as_ref().filter(|w| !w.is_empty()) {
        Some(w) if !w.starts_with('/') => {
            return Err(SpecError::invalid(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
        Some(w) => w.clone(),
        None => ic
            .working_dir()
            .clone()
            .filter(|w| w.starts_with('/'))
            .unwrap_or_else(|| "/".into()),
    };
    let cwd = mounts::clean_dest(&cwd, "working directory")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/".into());
    make_workdir(&root, &cwd)?;

    let hostname = hostname(opts)?;
    let merged_env = config::merge_env(ic.env().as_deref().unwrap_or_default(), &opts.env);
    let env = config::environment(&merged_env, &hostname, opts.tty, &user.home);

    let security = security_opts(&opts.security_opt)?;
    let all_caps = caps::bounding_set()?;
    let cap_list = caps::tweak(&opts.cap_add, &opts.cap_drop, opts.privileged, &all_caps)?;
    let cap_set: oci_spec::runtime::Capabilities = cap_list
        .iter()
        .filter_map(|c| c.strip_prefix("CAP_"))
        .filter_map(|c| c.parse().ok())
        .collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(cap_set.clone()));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    if user.uid == 0 {
        capabilities.set_effective(Some(cap_set.clone()));
        capabilities.set_permitted(Some(cap_set));
    } else {
        // As execve would: a non-root user starts without capabilities.
        capabilities.set_effective(None);
        capabilities.set_permitted(None);
    }

    let mut process = Process::default();
    process.set_terminal(Some(opts.tty));
    let mut u = User::default();
    u.set_uid(user.uid);
    u.set_gid(user.gid);
    u.set_additional_gids((!user.additional_gids.is_empty()).then(|| user.additional_gids.clone()));
    process.set_user(u);
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(&cwd));
    process.set_capabilities(Some(capabilities));
    process.set_no_new_privileges(Some(security.no_new_privileges));
    let rlimits = resources::rlimits(&opts.resources.ulimits)?;
    process.set_rlimits((!rlimits.is_empty()).then_some(rlimits));
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(None);

    let seccomp = if opts.privileged {
        None
    } else {
        let target = seccomp::Target::host(&cap_list);
        match security.seccomp {
            Some(SeccompChoice::Unconfined) => None,
            Some(SeccompChoice::Profile(p)) => p.to_oci(&target)?,
            Some(SeccompChoice::Builtin) | None => seccomp::docker_default_for(&target)?,
        }
    };

    let mut sysctl: HashMap<String, String> = opts
        .sysctls
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if opts.network == NamespaceMode::Private {
        sysctl
            .entry("net.ipv4.ip_unprivileged_port_start".into())
            .or_insert_with(|| "0".into());
        sysctl
            .entry("net.ipv4.ping_group_range".into())
            .or_insert_with(|| "0 2147483647".into());
    }

    let (masked, readonly) = if opts.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            mounts::MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            mounts::READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    };
    let devices = if opts.privileged {
        host_devices()?
    } else {
        Vec::new()
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(opts))
        .masked_paths(masked)
        .readonly_paths(readonly)
        .devices(devices)
        .resources(resources::linux_resources(
            &opts.resources,
            opts.privileged,
        )?)
        .sysctl(sysctl)
        .build()
        .map_err(|e| SpecError::invalid(format!("linux: {e}")))?;
    linux.set_seccomp(seccomp);
    linux.set_cgroups_path(opts.cgroups_path.as_ref().map(PathBuf::from));

    let mut root_cfg = Root::default();
    root_cfg.set_path(rootfs.to_path_buf());
    root_cfg.set_readonly(Some(opts.readonly_rootfs));

    let mut spec = Spec::default();
    spec.set_version("1.2.0".into());
    spec.set_process(Some(process));
    spec.set_root(Some(root_cfg));
    spec.set_hostname((opts.uts != NamespaceMode::Host).then(|| hostname.clone()));
    spec.set_domainname(
        opts.domainname
            .clone()
            .filter(|d| !d.is_empty() && opts.uts != NamespaceMode::Host),
    );
    spec.set_mounts(Some(mounts::all(opts)?));
    spec.set_linux(Some(linux));
    spec.set_annotations(None);
    berth_runtime::spec::validate(&spec)?;

    let stop_signal_name = opts
        .stop_signal
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| ic.stop_signal().clone().filter(|s| !s.is_empty()));
    let stop_signal = match &stop_signal_name {
        Some(s) => berth_runtime::signal::parse(s)
            .map_err(|_| SpecError::invalid(format!("Invalid signal: {s}")))?,
        None => libc::SIGTERM,
    };
    Ok(Prepared {
        spec,
        user,
        hostname,
        stop_signal,
        stop_signal_name,
        healthcheck: config::merge_healthcheck(
            opts.image_healthcheck.as_ref(),
            opts.healthcheck.as_ref(),
        )?,
        exposed_ports: config::merge_ports(
            ic.exposed_ports().as_deref().unwrap_or_default(),
            &opts.exposed_ports,
        )?,
        volumes: config::merge_volumes(ic.volumes().as_deref().unwrap_or_default(), &opts.volumes)?,
        labels: config::merge_labels(ic.labels().as_ref(), &opts.labels),
        open_stdin: opts.open_stdin,
        tty: opts.tty,
    })
}

#[cfg(test)]
mod tests;
