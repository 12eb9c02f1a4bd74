//! Loading config.json and refusing what berth cannot honour.
//!
//! Every Linux field of the OCI runtime spec is either applied by the runtime
//! or refused here, at `create` time, with an error that names the field.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Result, RuntimeError};
use crate::namespaces::Namespaces;

/// Read and parse `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| RuntimeError::Bundle {
        path: bundle.to_path_buf(),
        reason: format!("cannot read config.json: {e}"),
    })?;
    serde_json::from_slice(&data).map_err(|e| RuntimeError::Bundle {
        path: bundle.to_path_buf(),
        reason: format!("config.json is not a valid OCI runtime spec: {e}"),
    })
}

/// The root filesystem directory of a bundle, absolute.
pub fn rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RuntimeError::spec("root", "missing"))?;
    let path = bundle.join(root.path());
    // As runc: the rootfs itself must not be a symlink (it would be
    // resolved on the host, outside the bundle's control).
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(RuntimeError::spec(
            "root.path",
            format!("{} is a symlink; give the real directory", path.display()),
        ));
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(RuntimeError::spec(
            "root.path",
            format!("{} is not a directory", path.display()),
        )),
        Err(e) => Err(RuntimeError::spec(
            "root.path",
            format!("rootfs {} does not exist: {e}", path.display()),
        )),
    }
}

/// Check everything that can be checked before any process or mount exists.
pub fn validate(spec: &Spec) -> Result<()> {
    let major = spec.version().split('.').next().unwrap_or("");
    if major != "1" {
        return Err(RuntimeError::spec(
            "ociVersion",
            format!("{:?} is not a 1.x runtime spec version", spec.version()),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::spec("process", "missing: a container needs a process"))?;
    validate_process(process)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| RuntimeError::spec("linux", "missing: berth runs Linux containers"))?;
    let ns = Namespaces::from_spec(linux)?;
    if !ns.has_new_or_joined(LinuxNamespaceType::Mount) {
        return Err(RuntimeError::spec(
            "linux.namespaces",
            "a mount namespace is required (berth never pivots the host's root)",
        ));
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        && !ns.has_new_or_joined(LinuxNamespaceType::Uts)
    {
        return Err(RuntimeError::spec(
            "hostname",
            "setting the hostname needs a uts namespace",
        ));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty())
        && !ns.has_new_or_joined(LinuxNamespaceType::Uts)
    {
        return Err(RuntimeError::spec(
            "domainname",
            "setting the domainname needs a uts namespace",
        ));
    }
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if ns.creates(LinuxNamespaceType::User) {
        if !has_maps {
            return Err(RuntimeError::spec(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
    } else if has_maps && !ns.has_new_or_joined(LinuxNamespaceType::User) {
        return Err(RuntimeError::spec(
            "linux.uidMappings",
            "mappings are given but no new user namespace is requested",
        ));
    }
    if let Some(offsets) = linux.time_offsets() {
        if !offsets.is_empty() && !ns.creates(LinuxNamespaceType::Time) {
            return Err(RuntimeError::spec(
                "linux.timeOffsets",
                "time offsets need a new time namespace",
            ));
        }
        for clock in offsets.keys() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(RuntimeError::spec(
                    format!("linux.timeOffsets.{clock}"),
                    "only monotonic and boottime clocks can be offset",
                ));
            }
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            validate_sysctl(key, &ns)?;
        }
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(RuntimeError::spec(
            "linux.netDevices",
            "moving host network devices into a container is not supported by berth",
        ));
    }
    if linux.memory_policy().is_some() {
        return Err(RuntimeError::spec(
            "linux.memoryPolicy",
            "NUMA memory policies are not supported by berth",
        ));
    }
    if linux.intel_rdt().is_some() && !Path::new("/sys/fs/resctrl/info").exists() {
        return Err(RuntimeError::spec(
            "linux.intelRdt",
            "the resctrl filesystem is not mounted at /sys/fs/resctrl on this host",
        ));
    }
    if linux.intel_rdt().is_some() {
        return Err(RuntimeError::spec(
            "linux.intelRdt",
            "Intel RDT is not supported by berth yet",
        ));
    }
    if let Some(p) = linux.personality()
        && p.flags().as_ref().is_some_and(|f| !f.is_empty())
    {
        return Err(RuntimeError::spec(
            "linux.personality.flags",
            "personality flags are not supported",
        ));
    }
    if linux
        .mount_label()
        .as_deref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(RuntimeError::spec("linux.mountLabel", selinux_refusal()));
    }
    if let Some(devices) = linux.devices() {
        for (i, d) in devices.iter().enumerate() {
            let dotdot = d
                .path()
                .components()
                .any(|c| c == std::path::Component::ParentDir);
            if !d.path().is_absolute() || !d.path().starts_with("/dev") || dotdot {
                return Err(RuntimeError::spec(
                    format!("linux.devices[{i}].path"),
                    format!(
                        "{} must be an absolute path under /dev, without ..",
                        d.path().display()
                    ),
                ));
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(RuntimeError::spec(
                format!("mounts[{i}].destination"),
                format!("{} is not an absolute path", m.destination().display()),
            ));
        }
    }
    if let Some(hooks) = spec.hooks() {
        crate::hooks::validate(hooks)?;
    }
    Ok(())
}

/// Check a process (the container's, or one to `exec`).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(RuntimeError::spec("process.args", "must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(RuntimeError::spec(
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    if let Some(rlimits) = process.rlimits() {
        let mut seen = HashSet::new();
        for (i, r) in rlimits.iter().enumerate() {
            if !seen.insert(format!("{:?}", r.typ())) {
                return Err(RuntimeError::spec(
                    format!("process.rlimits[{i}]"),
                    format!("{:?} is given twice", r.typ()),
                ));
            }
            if r.soft() > r.hard() {
                return Err(RuntimeError::spec(
                    format!("process.rlimits[{i}]"),
                    "soft limit is above the hard limit",
                ));
            }
        }
    }
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
        && !apparmor_enabled()
    {
        return Err(RuntimeError::spec(
            "process.apparmorProfile",
            "AppArmor is not enabled on this host",
        ));
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(RuntimeError::spec(
            "process.selinuxLabel",
            selinux_refusal(),
        ));
    }
    if process.scheduler().is_some() {
        return Err(RuntimeError::spec(
            "process.scheduler",
            "scheduler policies are not supported by berth yet",
        ));
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(RuntimeError::spec(
            "process.execCPUAffinity",
            "exec CPU affinity is not supported by berth yet",
        ));
    }
    Ok(())
}

/// Which namespace a sysctl belongs to, as runc checks it: a container may
/// only set sysctls of namespaces it owns.
fn validate_sysctl(key: &str, ns: &Namespaces) -> Result<()> {
    let field = || format!("linux.sysctl.{key}");
    if key.contains("..") || key.starts_with('/') || key.starts_with('.') {
        return Err(RuntimeError::spec(field(), "not a valid sysctl name"));
    }
    let needs = if key.starts_with("net.") {
        Some((LinuxNamespaceType::Network, "network"))
    } else if key.starts_with("fs.mqueue.")
        || matches!(
            key,
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        )
    {
        Some((LinuxNamespaceType::Ipc, "ipc"))
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some((LinuxNamespaceType::Uts, "uts"))
    } else {
        None
    };
    match needs {
        Some((t, _)) if ns.creates(t) => Ok(()),
        Some((_, name)) => Err(RuntimeError::spec(
            field(),
            format!("this sysctl needs a new {name} namespace"),
        )),
        None => Err(RuntimeError::spec(
            field(),
            "this sysctl is not namespaced; a container may not set it",
        )),
    }
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// SELinux labels are refused: berth does not apply them yet.
fn selinux_refusal() -> &'static str {
    if Path::new("/sys/fs/selinux/enforce").exists() {
        "SELinux labels are not supported by berth yet"
    } else {
        "SELinux is not enabled on this host"
    }
}

/// The default config.json of `berth-runtime spec`, like runc's: busybox
/// style `sh` with a terminal, a read-only root, the usual mounts,
/// namespaces, masked and read-only paths. `rootless` adds a user
/// namespace mapping the caller to root and drops the network namespace.
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("berth".to_string()));
    if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let mut linux = oci_spec::runtime::Linux::rootless(uid, gid);
        if let Some(d) = Spec::default().linux() {
            linux.set_masked_paths(d.masked_paths().clone());
            linux.set_readonly_paths(d.readonly_paths().clone());
        }
        spec.set_linux(Some(linux));
        // A user namespace cannot mount sysfs without a network namespace
        // of its own: bind the host's read-only instead, and no cgroup mount.
        if let Some(mounts) = spec.mounts().clone() {
            let mounts = mounts
                .into_iter()
                .filter(|m| m.typ().as_deref() != Some("cgroup"))
                .map(|mut m| {
                    if m.typ().as_deref() == Some("sysfs") {
                        m.set_typ(Some("none".into()));
                        m.set_source(Some("/sys".into()));
                        m.set_options(Some(
                            ["rbind", "nosuid", "noexec", "nodev", "ro"]
                                .iter()
                                .map(|s| s.to_string())
                                .collect(),
                        ));
                    }
                    if m.destination() == Path::new("/dev/pts")
                        && let Some(opts) = m.options().clone()
                    {
                        m.set_options(Some(opts.into_iter().filter(|o| o != "gid=5").collect()));
                    }
                    m
                })
                .collect();
            spec.set_mounts(Some(mounts));
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<()> {
        let spec: Spec = serde_json::from_value(v).expect("parses");
        validate(&spec)
    }

    #[test]
    fn minimal_spec_is_valid() {
        check(base()).expect("valid");
    }

    #[test]
    fn errors_name_the_field() {
        type Mutate = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("ociVersion", Box::new(|v| v["ociVersion"] = "2.0.0".into())),
            (
                "process.args",
                Box::new(|v| v["process"]["args"] = serde_json::json!([])),
            ),
            (
                "process.cwd",
                Box::new(|v| v["process"]["cwd"] = "rel".into()),
            ),
            ("hostname", Box::new(|v| v["hostname"] = "h".into())),
            (
                "linux.namespaces",
                Box::new(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}])),
            ),
            (
                "linux.sysctl.net.ipv4.ip_forward",
                Box::new(|v| {
                    v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"})
                }),
            ),
            (
                "linux.sysctl.vm.swappiness",
                Box::new(|v| v["linux"]["sysctl"] = serde_json::json!({"vm.swappiness": "1"})),
            ),
            (
                "linux.uidMappings",
                Box::new(|v| {
                    v["linux"]["uidMappings"] =
                        serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}])
                }),
            ),
            (
                "linux.netDevices",
                Box::new(|v| v["linux"]["netDevices"] = serde_json::json!({"eth9": {}})),
            ),
        ];
        for (field, mutate) in cases {
            let mut v = base();
            mutate(&mut v);
            let err = check(v).expect_err(field).to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
