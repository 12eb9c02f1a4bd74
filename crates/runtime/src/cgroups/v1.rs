//! cgroup v1 manager; on a hybrid host it also drives the cgroup2 mount
//! (for the controllers it holds, such as hugetlb).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::mountinfo::CgroupMounts;
use super::{CgroupError, CgroupManager, Stats, fs, stats_read, v1_apply, v2};

/// The container's directory in one v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Dir {
    pub(crate) controllers: Vec<String>,
    pub(crate) mount: PathBuf,
    pub(crate) dir: PathBuf,
    /// Path relative to the hierarchy root.
    pub(crate) rel: PathBuf,
}

/// The container's directory on the cgroup2 mount of a hybrid host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnifiedDir {
    pub(crate) mount: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) rel: PathBuf,
}

/// Manager for a v1 or hybrid host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Cgroups {
    hierarchies: Vec<V1Dir>,
    unified: Option<UnifiedDir>,
    rel: PathBuf,
}

/// How long freeze/thaw wait for the kernel to settle.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

impl V1Cgroups {
    /// Builds the manager for the cgroup `rel` (relative to each hierarchy
    /// root, after `prefix(controllers)`, which is empty for absolute
    /// cgroupsPaths and our own cgroup in that hierarchy for relative ones;
    /// the unified mount is asked with no controllers). Named hierarchies
    /// (`name=systemd`) are skipped.
    pub(crate) fn new(
        mounts: &CgroupMounts,
        rel: &Path,
        prefix: &dyn Fn(&[String]) -> PathBuf,
    ) -> Self {
        let hierarchies = mounts
            .v1
            .iter()
            .filter(|h| !h.controllers.is_empty())
            .map(|h| {
                let rel = prefix(&h.controllers).join(rel);
                V1Dir {
                    controllers: h.controllers.clone(),
                    mount: h.mount_point.clone(),
                    dir: h.mount_point.join(&rel),
                    rel,
                }
            })
            .collect();
        let unified = mounts.v2.as_ref().map(|m| {
            let rel = prefix(&[]).join(rel);
            UnifiedDir {
                mount: m.clone(),
                dir: m.join(&rel),
                rel,
            }
        });
        V1Cgroups {
            hierarchies,
            unified,
            rel: rel.to_path_buf(),
        }
    }

    /// The container's directory in the hierarchy holding `controller`.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    /// The container's directory on the hybrid cgroup2 mount.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_ref().map(|u| u.dir.as_path())
    }

    /// The container's directory on the hybrid cgroup2 mount, if that mount
    /// offers `controller` (per its root's `cgroup.controllers`).
    pub(crate) fn unified_dir_with(&self, controller: &str) -> Option<&Path> {
        let u = self.unified.as_ref()?;
        let avail = fs::read_opt(&u.mount, "cgroup.controllers").ok()??;
        if !avail.split_whitespace().any(|c| c == controller) {
            return None;
        }
        // Enable it down to the container's cgroup only now that it is used.
        if let Err(e) = v2::create_tree(&u.mount, &u.rel, Some(&[controller])) {
            tracing::warn!("enable {controller} on {}: {e}", u.mount.display());
        }
        Some(u.dir.as_path())
    }

    /// The `tasks` file of every v1 hierarchy. A single-threaded process
    /// that writes "0" to them moves itself without taking the kernel's
    /// global threadgroup lock, which costs an RCU grace period (~10 ms)
    /// on every `cgroup.procs` write: this is how the container's init
    /// joins its cgroups.
    pub fn task_files(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.dir.join("tasks"))
            .collect()
    }

    /// On a hybrid host, move `pid` into the container's cgroup on the
    /// cgroup2 mount, but only when a controller is enabled there for it
    /// (hugetlb limits); otherwise the cgroup2 side is left alone.
    pub fn add_to_unified(&self, pid: i32) -> Result<(), CgroupError> {
        let Some(u) = self.unified.as_ref().filter(|u| u.dir.is_dir()) else {
            return Ok(());
        };
        let parent = u.dir.parent().unwrap_or(&u.mount);
        let enabled = fs::read_opt(parent, "cgroup.subtree_control")?.unwrap_or_default();
        if enabled.trim().is_empty() {
            return Ok(());
        }
        fs::write_pid(&u.dir, pid)
    }

    /// The cgroup path relative to each hierarchy root.
    pub fn relative_path(&self) -> &Path {
        &self.rel
    }

    /// Every directory of the container's cgroup.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.hierarchies.iter().map(|h| h.dir.clone()).collect();
        // The hybrid cgroup2 directory exists only once something used it.
        if let Some(u) = self.unified.as_ref().filter(|u| u.dir.is_dir()) {
            v.push(u.dir.clone());
        }
        v
    }

    /// Whether we can write (or create) every directory.
    pub fn can_manage(&self) -> bool {
        self.paths().iter().all(|p| fs::writable(p))
    }

    /// Creates `rel` under a cpuset hierarchy level by level, copying
    /// `cpuset.cpus`/`cpuset.mems` from the parent into any empty level.
    fn create_cpuset(mount: &Path, rel: &Path) -> Result<(), CgroupError> {
        let mut cur = mount.to_path_buf();
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            match std::fs::create_dir(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(CgroupError::CreateDir { path: cur, source }),
            }
            for file in ["cpuset.cpus", "cpuset.mems"] {
                // a missing file only happens on fake layouts
                let Some(own) = fs::read_opt(&cur, file)? else {
                    continue;
                };
                if own.trim().is_empty() {
                    let from_parent = fs::read(&parent, file)?;
                    fs::write(&cur, file, from_parent.trim())?;
                }
            }
        }
        Ok(())
    }

    fn freezer(&self, op: &str) -> Result<&Path, CgroupError> {
        self.dir("freezer").ok_or_else(|| {
            CgroupError::unsupported(op, "freezer controller is not available on this host")
        })
    }

    fn freezer_state(dir: &Path) -> Result<String, CgroupError> {
        Ok(fs::read(dir, "freezer.state")?.trim().to_string())
    }

    /// Writes `want` to freezer.state until it reads back `want`.
    fn set_freezer(dir: &Path, want: &str) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut last_write = start;
        fs::write(dir, "freezer.state", want)?;
        loop {
            if Self::freezer_state(dir)? == want {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(CgroupError::Timeout {
                    path: dir.to_path_buf(),
                    file: "freezer.state".into(),
                    expected: want.into(),
                });
            }
            thread::sleep(Duration::from_millis(10));
            // a task that forked while FREEZING can stall the transition;
            // writing again makes the kernel retry
            if last_write.elapsed() > Duration::from_millis(100) {
                fs::write(dir, "freezer.state", want)?;
                last_write = Instant::now();
            }
        }
    }
}

impl CgroupManager for V1Cgroups {
    type Error = CgroupError;

    fn create(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            if h.controllers.iter().any(|c| c == "cpuset") {
                Self::create_cpuset(&h.mount, &h.rel)?;
            } else {
                fs::create_dir_all(&h.dir)?;
            }
        }
        // The hybrid cgroup2 side is created only when a controller there is
        // used (hugetlb limits, see unified_dir_with): nothing to do now.
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        v1_apply::apply(self, resources)
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            fs::write_pid(&h.dir, pid)?;
        }
        self.add_to_unified(pid)
    }

    fn processes(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = self.dir("pids").filter(|d| d.exists()).or_else(|| {
            self.hierarchies
                .iter()
                .map(|h| h.dir.as_path())
                .find(|d| d.exists())
        });
        let mut pids = Vec::new();
        if let Some(d) = dir {
            fs::collect_pids(d, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let dir = self.freezer("freeze")?;
        let result = Self::set_freezer(dir, "FROZEN");
        if result.is_err() {
            // do not leave the container half frozen
            let _ = fs::write(dir, "freezer.state", "THAWED");
        }
        result
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        Self::set_freezer(self.freezer("thaw")?, "THAWED")
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(Self::freezer_state(self.freezer("is_frozen")?)? == "FROZEN")
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats::default();
        if let Some(d) = self.dir("cpu") {
            stats_read::v1_cpu(d, &mut s)?;
        }
        if let Some(d) = self.dir("cpuacct") {
            stats_read::v1_cpuacct(d, &mut s)?;
        }
        if let Some(d) = self.dir("cpuset") {
            stats_read::cpuset(d, &mut s)?;
        }
        if let Some(d) = self.dir("memory") {
            stats_read::v1_memory(d, &mut s)?;
        }
        if let Some(d) = self.dir("pids") {
            stats_read::pids(d, &mut s)?;
        }
        if let Some(d) = self.dir("blkio") {
            stats_read::v1_blkio(d, &mut s)?;
        }
        if let Some(d) = self.dir("hugetlb") {
            stats_read::v1_hugetlb(d, &mut s)?;
        } else if let Some(d) = self.unified_dir_with("hugetlb") {
            stats_read::v2_hugetlb(d, &mut s)?;
        }
        Ok(s)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for p in self.paths() {
            if let Err(e) = fs::remove_cgroup_dir(&p) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::test_util::FakeHost;
    use super::super::{AnyCgroups, CgroupManager};

    #[test]
    fn create_copies_cpuset_from_parent() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("hybrid")?;
        // fake "kernel": pre-create the levels with empty cpuset files
        for lvl in ["berth", "berth/c1"] {
            let d = host.root().join("cpuset").join(lvl);
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join("cpuset.cpus"), "")?;
            std::fs::write(d.join("cpuset.mems"), "")?;
        }
        let cg = AnyCgroups::open(Path::new("/berth/c1"), &host.roots())?;
        cg.create()?;
        let leaf = host.root().join("cpuset/berth/c1");
        assert_eq!(std::fs::read_to_string(leaf.join("cpuset.cpus"))?, "0-1");
        assert_eq!(std::fs::read_to_string(leaf.join("cpuset.mems"))?, "0");
        for p in cg.paths() {
            assert!(p.is_dir(), "{p:?}");
        }
        // hybrid: nothing is enabled on the cgroup2 side until a hugetlb
        // limit asks for it (see hybrid_hugetlb_and_unified_keys)
        assert_eq!(host.read("unified/cgroup.subtree_control")?, "");
        cg.create()?; // idempotent
        Ok(())
    }

    #[test]
    fn freeze_without_freezer_names_the_operation() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("v1-nofreezer")?;
        let cg = AnyCgroups::open(Path::new("/berth/c1"), &host.roots())?;
        let err = cg.freeze().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("freeze: freezer controller is not available on this host")
        );
        Ok(())
    }

    #[test]
    fn fake_freezer_and_processes() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("v1")?;
        host.populate("berth/c1")?;
        let cg = AnyCgroups::open(Path::new("/berth/c1"), &host.roots())?;
        cg.freeze()?; // plain file: reads back what was written
        assert!(cg.is_frozen()?);
        cg.thaw()?;
        assert!(!cg.is_frozen()?);
        std::fs::write(host.root().join("pids/berth/c1/cgroup.procs"), "7\n3\n7\n")?;
        assert_eq!(cg.processes()?, vec![3, 7]);
        Ok(())
    }
}
