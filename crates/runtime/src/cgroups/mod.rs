//! Cgroup management for containers: v1, hybrid (v1 plus a cgroup2 mount
//! holding some controllers) and pure v2 hosts.
//!
//! The lifecycle, as the runtime drives it:
//!
//! 1. [`AnyCgroups::open`] reads mountinfo and works out the directories of
//!    the container's cgroup (`linux.cgroupsPath`, or `/berth/<id>`). It
//!    creates nothing, so it is also how `state`, `kill` and `delete` find
//!    an existing container's cgroup.
//! 2. [`CgroupManager::create`] makes the directories, then
//!    [`CgroupManager::apply`] writes `linux.resources` (also used by
//!    `update`), then [`CgroupManager::add_process`] moves the init process
//!    in before it execs.
//! 3. `pause`/`resume` use [`CgroupManager::freeze`]/[`CgroupManager::thaw`],
//!    `events --stats` uses [`CgroupManager::stats`], `ps` and `kill --all`
//!    use [`CgroupManager::processes`].
//! 4. After the caller killed every process, [`CgroupManager::destroy`]
//!    removes the directories.
//!
//! Anything the spec asks for that the host cannot do is an error naming
//! the spec field, never silently dropped.

pub mod fake;
mod fs;
pub mod mountinfo;
mod stats;
mod stats_read;
mod v1;
mod v1_apply;
mod v2;
mod v2_apply;
pub mod v2_devices;

#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod test_util;

use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;

pub use fake::{FakeCall, FakeCgroups};
pub use mountinfo::{CgroupMounts, V1Hierarchy};
pub use stats::{
    Blkio, BlkioEntry, CpuSet, CpuStats, CpuUsage, Hugetlb, IntelRdt, Memory, MemoryEntry,
    NetworkInterface, Pids, PsiData, PsiStats, Stats, Throttling,
};
pub use v1::V1Cgroups;
pub use v2::{V2Cgroups, blkio_weight_to_io_weight, cpu_shares_to_weight, memory_swap_to_v2};

/// Errors of the cgroups module.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `linux.cgroupsPath` is empty or climbs out of the hierarchy.
    #[error("invalid linux.cgroupsPath {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: PathBuf,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The mountinfo file could not be read.
    #[error("read mountinfo {path}")]
    Mountinfo {
        /// The mountinfo file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Neither a v1 controller hierarchy nor a cgroup2 mount was found.
    #[error("no cgroup hierarchy is mounted according to {path}")]
    NoHierarchy {
        /// The mountinfo file.
        path: PathBuf,
    },
    /// mkdir of a cgroup directory failed.
    #[error("create cgroup directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// rmdir of a cgroup directory failed.
    #[error("remove cgroup directory {path}")]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a cgroup file failed.
    #[error("write {value:?} to {file} in {path}")]
    Write {
        /// The cgroup directory.
        path: PathBuf,
        /// The file inside it.
        file: String,
        /// What was written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a cgroup file failed.
    #[error("read {file} in {path}")]
    Read {
        /// The cgroup directory.
        path: PathBuf,
        /// The file inside it.
        file: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup file held something unexpected.
    #[error("parse {file} in {path}: unexpected content {content:?}")]
    Parse {
        /// The cgroup directory.
        path: PathBuf,
        /// The file inside it.
        file: String,
        /// What it held.
        content: String,
    },
    /// The spec asks for something this host cannot do.
    #[error("{field}: {reason}")]
    Unsupported {
        /// The spec field (`linux.resources.network.classID`) or operation.
        field: String,
        /// Why it cannot be done.
        reason: String,
    },
    /// The spec holds a value that cannot be applied.
    #[error("{field}: invalid value: {reason}")]
    InvalidValue {
        /// The spec field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Freezing or thawing did not settle in time.
    #[error("timed out waiting for {file} in {path} to report {expected}")]
    Timeout {
        /// The cgroup directory.
        path: PathBuf,
        /// The file polled.
        file: String,
        /// The state waited for.
        expected: String,
    },
    /// Loading or attaching the v2 device filter failed.
    #[error("{op} device filter program for {path}{log}")]
    Bpf {
        /// The cgroup directory.
        path: PathBuf,
        /// `load`, `attach`, `query` or `detach`.
        op: &'static str,
        /// The verifier log (with a leading ": "), or empty.
        log: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::InvalidValue {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Where to look for the host's cgroup mounts; injected so tests can fake a
/// layout in a temp dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoots {
    /// mountinfo file, `/proc/self/mountinfo` by default. Mount points in it
    /// may point anywhere (a temp dir in tests).
    pub mountinfo: PathBuf,
    /// `/proc/self/cgroup` by default: relative cgroupsPaths are taken
    /// under our own cgroup in each hierarchy, as runc does.
    pub proc_cgroup: PathBuf,
}

/// Test seam: a mountinfo file to read instead of /proc/self/mountinfo, so
/// that the integration tests can run whole containers on a second mount
/// of the host's cgroup2 hierarchy, as on a pure cgroup v2 host.
pub const MOUNTINFO_ENV: &str = "BERTH_TEST_CGROUP_MOUNTINFO";

impl Default for CgroupRoots {
    fn default() -> Self {
        let mountinfo = std::env::var_os(MOUNTINFO_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/proc/self/mountinfo"), PathBuf::from);
        CgroupRoots {
            mountinfo,
            proc_cgroup: PathBuf::from("/proc/self/cgroup"),
        }
    }
}

impl CgroupRoots {
    /// Our own cgroups as `(controllers, path)` pairs from `proc_cgroup`
    /// (`("memory", "/process_api/x")`, `("", "/")` for cgroup2).
    pub fn own_cgroups(&self) -> Result<Vec<(String, PathBuf)>, CgroupError> {
        let dir = self.proc_cgroup.parent().unwrap_or(Path::new("/"));
        let file = self
            .proc_cgroup
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let content = fs::read(dir, &file)?;
        Ok(content
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ':');
                let _id = it.next()?;
                let controllers = it.next()?;
                let path = it.next()?;
                Some((controllers.to_string(), PathBuf::from(path)))
            })
            .collect())
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus a cgroup2 mount (`/sys/fs/cgroup/unified`).
    Hybrid,
    /// One cgroup2 tree.
    V2,
}

/// What the runtime does with a container's cgroup. All methods act on the
/// container's directories only; see the module docs for the lifecycle.
pub trait CgroupManager {
    /// The error type.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Creates the container's cgroup in every hierarchy (idempotent).
    fn create(&self) -> Result<(), Self::Error>;
    /// Writes every present field of `resources`; errors naming the field
    /// for anything the host cannot do. Also used by `update`.
    fn apply(&self, resources: &LinuxResources) -> Result<(), Self::Error>;
    /// Moves `pid` into the cgroup in every hierarchy.
    fn add_process(&self, pid: i32) -> Result<(), Self::Error>;
    /// Pids in the cgroup and its descendants, sorted, no duplicates.
    fn processes(&self) -> Result<Vec<i32>, Self::Error>;
    /// Freezes every task; returns once the kernel reports frozen.
    fn freeze(&self) -> Result<(), Self::Error>;
    /// Thaws every task.
    fn thaw(&self) -> Result<(), Self::Error>;
    /// Whether the cgroup is frozen.
    fn is_frozen(&self) -> Result<bool, Self::Error>;
    /// Resource usage, as `runc events --stats` reports it.
    fn stats(&self) -> Result<Stats, Self::Error>;
    /// Removes the container's directories (idempotent). Kills nothing.
    fn destroy(&self) -> Result<(), Self::Error>;
}

/// A v1/hybrid or v2 manager, chosen by [`AnyCgroups::open`].
#[derive(Debug, Clone)]
pub enum AnyCgroups {
    /// v1 or hybrid host.
    V1(V1Cgroups),
    /// Pure v2 host.
    V2(V2Cgroups),
}

/// Checks `linux.cgroupsPath` and returns it relative to a hierarchy root.
pub fn validate_cgroups_path(path: &Path) -> Result<PathBuf, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(invalid("\"..\" is not allowed")),
            Component::Prefix(_) => return Err(invalid("prefix is not allowed")),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(invalid("path is empty or the hierarchy root"));
    }
    Ok(rel)
}

impl AnyCgroups {
    /// `path` is the spec's `linux.cgroupsPath`, or `/berth/<id>` when
    /// absent. An absolute path is taken relative to each hierarchy's root,
    /// a relative one relative to our own cgroup there (runc's rule). Reads
    /// mountinfo and /proc/self/cgroup only; creates nothing.
    pub fn open(path: &Path, roots: &CgroupRoots) -> Result<AnyCgroups, CgroupError> {
        let rel = validate_cgroups_path(path)?;
        let mounts = mountinfo::read(&roots.mountinfo)?;
        let has_v1_controllers = mounts.v1.iter().any(|h| !h.controllers.is_empty());
        // runc's rule: a relative cgroupsPath is relative to the runtime's
        // own cgroup in each hierarchy; an absolute one to the root.
        let own = if path.is_absolute() {
            Vec::new()
        } else {
            roots.own_cgroups()?
        };
        let prefix = |controllers: &[String]| -> PathBuf {
            own.iter()
                .find(|(list, _)| {
                    if controllers.is_empty() {
                        list.is_empty()
                    } else {
                        list.split(',').any(|c| controllers.iter().any(|x| x == c))
                    }
                })
                .map(|(_, p)| p.strip_prefix("/").unwrap_or(p).to_path_buf())
                .unwrap_or_default()
        };
        if has_v1_controllers {
            Ok(AnyCgroups::V1(V1Cgroups::new(&mounts, &rel, &prefix)))
        } else if let Some(mount) = mounts.v2 {
            Ok(AnyCgroups::V2(V2Cgroups::new(
                &mount,
                &prefix(&[]).join(&rel),
            )))
        } else {
            Err(CgroupError::NoHierarchy {
                path: roots.mountinfo.clone(),
            })
        }
    }

    /// The host layout.
    pub fn layout(&self) -> Layout {
        match self {
            AnyCgroups::V1(v) if v.unified_dir().is_some() => Layout::Hybrid,
            AnyCgroups::V1(_) => Layout::V1,
            AnyCgroups::V2(_) => Layout::V2,
        }
    }

    /// Every directory of this container's cgroup, one per hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            AnyCgroups::V1(v) => v.paths(),
            AnyCgroups::V2(v) => v.paths(),
        }
    }

    /// v1 and hybrid: the `tasks` files the container's init writes "0"
    /// into to join its cgroups itself (see [`V1Cgroups::task_files`]);
    /// `None` on v2, where the parent moves it (or clone3 places it).
    pub fn self_attach_files(&self) -> Option<Vec<PathBuf>> {
        match self {
            AnyCgroups::V1(v) => Some(v.task_files()),
            AnyCgroups::V2(_) => None,
        }
    }

    /// What the parent still does after the child attached itself through
    /// [`AnyCgroups::self_attach_files`]: the hybrid cgroup2 side, if used.
    pub fn add_process_after_self_attach(&self, pid: i32) -> Result<(), CgroupError> {
        match self {
            AnyCgroups::V1(v) => v.add_to_unified(pid),
            AnyCgroups::V2(v) => v.add_process(pid),
        }
    }

    /// Whether we can write the container's directories (or create them);
    /// an unprivileged caller skips cgroups when this is false, as
    /// `runc --rootless` does.
    pub fn can_manage(&self) -> bool {
        match self {
            AnyCgroups::V1(v) => v.can_manage(),
            AnyCgroups::V2(v) => v.can_manage(),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $v:ident => $e:expr) => {
        match $self {
            AnyCgroups::V1($v) => $e,
            AnyCgroups::V2($v) => $e,
        }
    };
}

impl CgroupManager for AnyCgroups {
    type Error = CgroupError;
    fn create(&self) -> Result<(), CgroupError> {
        dispatch!(self, v => v.create())
    }
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        dispatch!(self, v => v.apply(resources))
    }
    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        dispatch!(self, v => v.add_process(pid))
    }
    fn processes(&self) -> Result<Vec<i32>, CgroupError> {
        dispatch!(self, v => v.processes())
    }
    fn freeze(&self) -> Result<(), CgroupError> {
        dispatch!(self, v => v.freeze())
    }
    fn thaw(&self) -> Result<(), CgroupError> {
        dispatch!(self, v => v.thaw())
    }
    fn is_frozen(&self) -> Result<bool, CgroupError> {
        dispatch!(self, v => v.is_frozen())
    }
    fn stats(&self) -> Result<Stats, CgroupError> {
        dispatch!(self, v => v.stats())
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        dispatch!(self, v => v.destroy())
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::FakeHost;
    use super::*;

    #[test]
    fn path_validation() {
        let ok = |p: &str| validate_cgroups_path(Path::new(p)).map_err(|e| e.to_string());
        assert_eq!(ok("/berth/abc"), Ok(PathBuf::from("berth/abc")));
        assert_eq!(ok("berth/abc"), Ok(PathBuf::from("berth/abc")));
        assert_eq!(ok("./a/./b"), Ok(PathBuf::from("a/b")));
        assert_eq!(
            ok("/berth/../etc"),
            Err("invalid linux.cgroupsPath \"/berth/../etc\": \"..\" is not allowed".into())
        );
        let empty = ok("").err().unwrap_or_default();
        assert!(empty.contains("linux.cgroupsPath"), "{empty}");
        assert!(ok("/").is_err());
    }

    #[test]
    fn open_detects_layouts() -> Result<(), Box<dyn std::error::Error>> {
        for (layout, want) in [
            ("v1", Layout::V1),
            ("hybrid", Layout::Hybrid),
            ("v2", Layout::V2),
        ] {
            let host = FakeHost::new(layout)?;
            let cg = AnyCgroups::open(Path::new("/berth/c1"), &host.roots())?;
            assert_eq!(cg.layout(), want, "{layout}");
            let paths = cg.paths();
            assert!(!paths.is_empty());
            for p in &paths {
                assert!(p.starts_with(host.root()), "{p:?}");
                assert!(p.ends_with("berth/c1"), "{p:?}");
            }
            if want == Layout::Hybrid {
                // The cgroup2 side only counts once it exists (it is made
                // on demand, for hugetlb limits).
                assert!(
                    !paths
                        .iter()
                        .any(|p| p.starts_with(host.root().join("unified")))
                );
                std::fs::create_dir_all(host.root().join("unified/berth/c1"))?;
                assert!(
                    cg.paths()
                        .iter()
                        .any(|p| p.starts_with(host.root().join("unified")))
                );
            }
            if want == Layout::V2 {
                assert_eq!(paths, vec![host.root().join("berth/c1")]);
            }
        }
        Ok(())
    }

    #[test]
    fn open_without_cgroups_fails() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mi = tmp.path().join("mountinfo");
        std::fs::write(&mi, "1 0 0:1 / / rw - ext4 /dev/vda rw\n")?;
        let roots = CgroupRoots {
            mountinfo: mi,
            proc_cgroup: tmp.path().join("cgroup"),
        };
        let err = AnyCgroups::open(Path::new("/berth/x"), &roots).err();
        assert!(matches!(err, Some(CgroupError::NoHierarchy { .. })));
        Ok(())
    }

    #[test]
    fn own_cgroups_parses_proc_cgroup() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let pc = tmp.path().join("cgroup");
        std::fs::write(&pc, "4:memory:/process_api/x\n0::/\n")?;
        let roots = CgroupRoots {
            mountinfo: tmp.path().join("mountinfo"),
            proc_cgroup: pc,
        };
        let own = roots.own_cgroups()?;
        assert_eq!(
            own,
            vec![
                ("memory".to_string(), PathBuf::from("/process_api/x")),
                (String::new(), PathBuf::from("/")),
            ]
        );
        Ok(())
    }
}
