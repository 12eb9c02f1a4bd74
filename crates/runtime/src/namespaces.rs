use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::error::{Context, Result, RuntimeError};

/// The namespaces of a container: which are new, which are joined by path.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    entries: Vec<(LinuxNamespaceType, Option<PathBuf>)>,
}

/// Every namespace type, in the order they are joined: user first (it
/// decides what the others may do), mount last but one, pid and time last
/// (they only take effect for children).
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
];

/// The name of a namespace under `/proc/<pid>/ns/`.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The clone/unshare flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(t as i32)
}

impl Namespaces {
    /// Read `linux.namespaces`, refusing duplicates and missing paths.
    pub fn from_spec(linux: &Linux) -> Result<Self> {
        let mut entries: Vec<(LinuxNamespaceType, Option<PathBuf>)> = Vec::new();
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            if entries.iter().any(|(t, _)| *t == ns.typ()) {
                return Err(RuntimeError::spec(
                    format!("linux.namespaces[{i}].type"),
                    format!("namespace {} is listed twice", proc_name(ns.typ())),
                ));
            }
            let path = ns.path().clone().filter(|p| !p.as_os_str().is_empty());
            if let Some(p) = &path
                && !p.exists()
            {
                return Err(RuntimeError::spec(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} does not exist", p.display()),
                ));
            }
            if ns.typ() == LinuxNamespaceType::Time && !Path::new("/proc/self/ns/time").exists() {
                return Err(RuntimeError::spec(
                    format!("linux.namespaces[{i}].type"),
                    "this kernel has no time namespaces",
                ));
            }
            entries.push((ns.typ(), path));
        }
        Ok(Namespaces { entries })
    }

    /// Whether a new namespace of this type is created.
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, p)| *x == t && p.is_none())
    }

    /// The path of a namespace of this type to join, if any.
    pub fn joins(&self, t: LinuxNamespaceType) -> Option<&Path> {
        self.entries
            .iter()
            .find(|(x, _)| *x == t)
            .and_then(|(_, p)| p.as_deref())
    }

    /// Whether the container has its own namespace of this type (new or joined).
    pub fn has_new_or_joined(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, _)| *x == t)
    }

    /// Whether any namespace is joined by path.
    pub fn joins_any(&self) -> bool {
        self.entries.iter().any(|(_, p)| p.is_some())
    }

    /// Flags for namespaces created at clone time in the fast path. The
    /// cgroup namespace is left out: it must be created after the process
    /// has moved into its cgroup, so that the namespace is rooted there.
    pub fn clone_flags(&self) -> CloneFlags {
        let mut flags = CloneFlags::empty();
        for (t, p) in &self.entries {
            if p.is_none() && *t != LinuxNamespaceType::Cgroup {
                flags |= flag(*t);
            }
        }
        flags
    }

    /// Flags of the namespaces created with unshare in the general path
    /// (everything new except user, pid-related ordering handled by caller).
    pub fn unshare_flags(&self) -> CloneFlags {
        let mut flags = CloneFlags::empty();
        for (t, p) in &self.entries {
            if p.is_none() && *t != LinuxNamespaceType::User && *t != LinuxNamespaceType::Cgroup {
                flags |= flag(*t);
            }
        }
        flags
    }

    /// Whether everything can be created by one clone3 call: nothing joined
    /// and no time namespace (whose offsets must be written before its first
    /// process exists).
    pub fn fast_path(&self) -> bool {
        !self.joins_any() && !self.creates(LinuxNamespaceType::Time)
    }

    /// Open the namespace files to join, in [`JOIN_ORDER`].
    pub fn open_joined(&self) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
        let mut out = Vec::new();
        for t in JOIN_ORDER {
            if let Some(p) = self.joins(t) {
                let fd = std::fs::File::open(p)
                    .with_context(|| format!("open namespace {}", p.display()))?;
                out.push((t, OwnedFd::from(fd)));
            }
        }
        Ok(out)
    }
}

/// Join the namespace behind `fd`.
pub fn join(t: LinuxNamespaceType, fd: impl AsFd) -> Result<()> {
    nix::sched::setns(fd, flag(t)).with_context(|| format!("join {} namespace", proc_name(t)))
}

/// The namespaces of a running process, as open files, for `exec`: every
/// namespace of `pid` that differs from ours, in [`JOIN_ORDER`].
pub fn of_process(pid: i32) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = Vec::new();
    for t in JOIN_ORDER {
        let name = proc_name(t);
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = std::fs::File::open(&theirs).with_context(|| format!("open {theirs}"))?;
        out.push((t, OwnedFd::from(fd)));
    }
    Ok(out)
}
