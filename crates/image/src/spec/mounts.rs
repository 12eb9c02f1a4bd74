//! Docker's default mounts, masked and read-only paths, `--tmpfs`, bind
//! mounts and the /etc/hostname, /etc/hosts and /etc/resolv.conf files.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};

use super::error::{Result, SpecError};
use super::{BindMount, Propagation, RunOptions};

/// Docker's default /dev/shm size: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Paths a container cannot read (Docker's defaults).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths a container can read but not write (Docker's defaults).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| SpecError::invalid(format!("mount {dest}: {e}")))
}

/// The mounts every container gets: /proc, /dev (tmpfs), /dev/pts,
/// /sys, /sys/fs/cgroup, /dev/mqueue and /dev/shm. A privileged container
/// gets /sys and the cgroup tree writable.
pub fn defaults(shm_size: u64, privileged: bool) -> Result<Vec<Mount>> {
    let sys_ro = if privileged { "rw" } else { "ro" };
    let shm = format!("size={shm_size}");
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_ro],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", sys_ro],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        )?,
    ])
}

/// A container path from a request: absolute, cleaned (`/a/./b/` → `/a/b`),
/// never `/`.
pub fn clean_dest(dest: &str, what: &str) -> Result<PathBuf> {
    let p = Path::new(dest);
    if !p.is_absolute() {
        return Err(SpecError::invalid(format!(
            "invalid mount config for {what}: mount path must be absolute: {dest:?}"
        )));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    if out == Path::new("/") {
        return Err(SpecError::invalid(format!(
            "invalid mount config for {what}: destination can't be '/'"
        )));
    }
    Ok(out)
}

/// `--tmpfs dest:options`: Docker's defaults (noexec, nosuid, nodev) with
/// the request's options merged over them.
pub fn tmpfs(dest: &str, data: &str) -> Result<Mount> {
    let dest = clean_dest(dest, "tmpfs")?;
    let mut opts: Vec<String> = ["noexec", "nosuid", "nodev"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for o in data.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let key = o.split_once('=').map_or(o, |(k, _)| k);
        let opposite = match key {
            "exec" => Some("noexec"),
            "noexec" => Some("exec"),
            "suid" => Some("nosuid"),
            "nosuid" => Some("suid"),
            "dev" => Some("nodev"),
            "nodev" => Some("dev"),
            "ro" => Some("rw"),
            "rw" => Some("ro"),
            _ => None,
        };
        opts.retain(|x| {
            let xk = x.split_once('=').map_or(x.as_str(), |(k, _)| k);
            xk != key && Some(xk) != opposite
        });
        opts.push(o.to_string());
    }
    MountBuilder::default()
        .destination(dest)
        .typ("tmpfs")
        .source("tmpfs")
        .options(opts)
        .build()
        .map_err(|e| SpecError::invalid(format!("tmpfs mount: {e}")))
}

/// A bind mount: `rbind`, `ro`/`rw`, propagation (`rprivate` by default).
pub fn bind(b: &BindMount) -> Result<Mount> {
    let dest = clean_dest(&b.destination.to_string_lossy(), "bind")?;
    if !b.source.is_absolute() {
        return Err(SpecError::invalid(format!(
            "invalid mount config for type \"bind\": invalid mount path: {:?} mount path must be absolute",
            b.source.display().to_string()
        )));
    }
    let prop = b.propagation.unwrap_or(Propagation::RPrivate);
    bind_mount(&b.source, &dest, !b.read_only, prop)
}

fn bind_mount(source: &Path, dest: &Path, writable: bool, prop: Propagation) -> Result<Mount> {
    let opts = vec![
        "rbind".to_string(),
        if writable { "rw" } else { "ro" }.to_string(),
        prop.as_str().to_string(),
    ];
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(opts)
        .build()
        .map_err(|e| SpecError::invalid(format!("bind mount {}: {e}", dest.display())))
}

/// All mounts of a container, Docker-style: the defaults (minus those a
/// request mount replaces), then /etc/hostname, /etc/hosts and
/// /etc/resolv.conf (unless bound by the request), then the request's
/// tmpfs and bind mounts, parents before children.
pub fn all(opts: &RunOptions) -> Result<Vec<Mount>> {
    let mut user: Vec<Mount> = Vec::new();
    for (dest, data) in &opts.tmpfs {
        user.push(tmpfs(dest, data)?);
    }
    for b in &opts.binds {
        user.push(bind(b)?);
    }
    let mut seen = std::collections::HashSet::new();
    for m in &user {
        if !seen.insert(m.destination().clone()) {
            return Err(SpecError::invalid(format!(
                "Duplicate mount point: {}",
                m.destination().display()
            )));
        }
    }
    let user_dev = seen.contains(Path::new("/dev"));
    let shm = opts.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
    if shm == 0 {
        return Err(SpecError::invalid("SHM size can not be less than 0"));
    }
    let mut out: Vec<Mount> = defaults(shm, opts.privileged)?
        .into_iter()
        .filter(|m| !seen.contains(m.destination()))
        .filter(|m| !(user_dev && m.destination().starts_with("/dev")))
        .collect();
    let writable = !opts.readonly_rootfs;
    for (path, dest) in [
        (&opts.hostname_path, "/etc/hostname"),
        (&opts.hosts_path, "/etc/hosts"),
        (&opts.resolv_conf_path, "/etc/resolv.conf"),
    ] {
        if let Some(src) = path
            && !seen.contains(Path::new(dest))
        {
            out.push(bind_mount(
                src,
                Path::new(dest),
                writable,
                Propagation::RPrivate,
            )?);
        }
    }
    user.sort_by_key(|m| m.destination().components().count());
    out.extend(user);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts_of(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn default_mounts() {
        let m = all(&RunOptions::default()).expect("mounts");
        let dests: Vec<_> = m
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm"
            ]
        );
        let pts = opts_of(&m[2]);
        for o in ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] {
            assert!(pts.contains(&o.to_string()), "{o}");
        }
        assert!(opts_of(&m[3]).contains(&"ro".into()));
        assert!(opts_of(&m[4]).contains(&"ro".into()));
        assert!(opts_of(&m[6]).contains(&"size=67108864".into()));
        let p = RunOptions {
            privileged: true,
            shm_size: Some(1 << 20),
            ..RunOptions::default()
        };
        let m = all(&p).expect("mounts");
        assert!(opts_of(&m[3]).contains(&"rw".into()));
        assert!(opts_of(&m[4]).contains(&"rw".into()));
        assert!(opts_of(&m[6]).contains(&"size=1048576".into()));
    }

    #[test]
    fn request_mounts_replace_defaults_and_sort() {
        let mut o = RunOptions::default();
        o.tmpfs.insert("/dev/shm".into(), "size=1m,exec".into());
        o.tmpfs.insert("/run/x/".into(), String::new());
        o.binds.push(BindMount {
            source: "/srv/data".into(),
            destination: "/run".into(),
            read_only: true,
            propagation: Some(Propagation::RSlave),
        });
        o.hostname_path = Some("/tmp/h".into());
        o.readonly_rootfs = true;
        let m = all(&o).expect("mounts");
        let shm: Vec<_> = m
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(opts_of(shm[0]), ["nosuid", "nodev", "size=1m", "exec"]);
        let run = m.iter().position(|m| m.destination() == Path::new("/run"));
        let runx = m
            .iter()
            .position(|m| m.destination() == Path::new("/run/x"));
        assert!(run < runx, "parents first");
        let b = &m[run.expect("run")];
        assert_eq!(opts_of(b), ["rbind", "ro", "rslave"]);
        let h = m
            .iter()
            .find(|m| m.destination() == Path::new("/etc/hostname"))
            .expect("hostname");
        assert_eq!(
            opts_of(h),
            ["rbind", "ro", "rprivate"],
            "ro with a read-only rootfs"
        );
    }

    #[test]
    fn bad_mounts() {
        let mut o = RunOptions::default();
        o.tmpfs.insert("relative".into(), String::new());
        assert!(
            all(&o)
                .expect_err("relative")
                .to_string()
                .contains("must be absolute")
        );
        let mut o = RunOptions::default();
        o.tmpfs.insert("/".into(), String::new());
        assert!(all(&o).is_err());
        let mut o = RunOptions::default();
        o.tmpfs.insert("/a".into(), String::new());
        o.binds.push(BindMount {
            source: "/x".into(),
            destination: "/a/".into(),
            read_only: false,
            propagation: None,
        });
        assert_eq!(
            all(&o).expect_err("dup").to_string(),
            "Duplicate mount point: /a"
        );
        let mut o = RunOptions::default();
        o.binds.push(BindMount {
            source: "x".into(),
            destination: "/a".into(),
            read_only: false,
            propagation: None,
        });
        assert!(all(&o).is_err());
    }
}
