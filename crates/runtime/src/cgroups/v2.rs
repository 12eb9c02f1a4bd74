//! cgroup v2 manager (one unified tree).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::{CgroupError, CgroupManager, Stats, fs, stats_read, v2_apply};

/// How long freeze/thaw wait for `cgroup.events` to settle.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// Manager for a pure cgroup v2 host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Cgroups {
    mount: PathBuf,
    dir: PathBuf,
    rel: PathBuf,
}

/// Converts v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000)
/// with runc's current formula (opencontainers/runc#4785): a quadratic in
/// log2(shares) through (2, 1), (1024, 100) and (262144, 10000). 0 stays 0
/// ("unset"). The older linear formula mapped 1024 to 39.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    #[allow(clippy::cast_precision_loss)]
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    let w = 10f64.powf(exponent);
    // Round away float noise before ceil so 1024 gives exactly 100.
    let rounded = (w * 1e9).round() / 1e9;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let out = rounded.ceil() as u64;
    out.clamp(1, 10_000)
}

/// Converts a v1 blkio weight (10..=1000) to v2 `io.weight` (1..=10000),
/// as runc does. 0 stays 0.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10)) * 9999 / 990
}

/// Converts the OCI memory+swap value to v2 `memory.swap.max` (swap only),
/// as runc does: -1 is "max", 0 is "unset" (returned as 0).
pub fn memory_swap_to_v2(swap: i64, limit: i64) -> Result<i64, String> {
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if limit == 0 || limit == -1 {
        return Err("swap limit requires a memory limit".into());
    }
    if limit < 0 {
        return Err(format!("memory limit {limit} is negative"));
    }
    if swap < limit {
        return Err(format!(
            "memory+swap {swap} is below the memory limit {limit}"
        ));
    }
    Ok(swap - limit)
}

/// `mkdir -p mount/rel`, enabling every controller of each ancestor's
/// `cgroup.controllers` in its `cgroup.subtree_control`, from the root down
/// to the parent of the leaf (the leaf holds processes, so it must not
/// enable any). Already enabled controllers are left alone. `only` limits
/// the controllers enabled (the hybrid host's unified mount enables nothing
/// at create time, and hugetlb only when a limit is asked for, so the host's
/// root `cgroup.subtree_control` is not changed needlessly).
pub(crate) fn create_tree(
    mount: &Path,
    rel: &Path,
    only: Option<&[&str]>,
) -> Result<(), CgroupError> {
    let mut cur = mount.to_path_buf();
    for comp in rel.components() {
        enable_controllers(&cur, only)?;
        cur.push(comp);
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::CreateDir { path: cur, source }),
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path, only: Option<&[&str]>) -> Result<(), CgroupError> {
    let avail = fs::read_opt(dir, "cgroup.controllers")?.unwrap_or_default();
    let enabled = fs::read_opt(dir, "cgroup.subtree_control")?.unwrap_or_default();
    let enabled: Vec<&str> = enabled
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    let missing: Vec<&str> = avail
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .filter(|c| only.is_none_or(|o| o.contains(c)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if fs::write(dir, "cgroup.subtree_control", &all).is_ok() {
        return Ok(());
    }
    // one at a time: a controller that cannot be enabled (e.g. cpu with
    // realtime tasks around) must not block the others
    for c in missing {
        if let Err(e) = fs::write(dir, "cgroup.subtree_control", &format!("+{c}")) {
            tracing::warn!(error = %e, controller = c, "cannot enable cgroup controller");
        }
    }
    Ok(())
}

impl V2Cgroups {
    /// Builds the manager for `mount/rel`.
    pub(crate) fn new(mount: &Path, rel: &Path) -> Self {
        V2Cgroups {
            mount: mount.to_path_buf(),
            dir: mount.join(rel),
            rel: rel.to_path_buf(),
        }
    }

    /// The container's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup2 mount point.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The one directory of the container's cgroup.
    pub fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    /// Whether we can write (or create) the directory.
    pub fn can_manage(&self) -> bool {
        fs::writable(&self.dir)
    }

    /// Controllers available in the container's cgroup.
    pub(crate) fn controllers(&self) -> Result<Vec<String>, CgroupError> {
        let s = fs::read_opt(&self.dir, "cgroup.controllers")?.unwrap_or_default();
        Ok(s.split_whitespace().map(str::to_string).collect())
    }

    fn frozen_event(&self) -> Result<Option<bool>, CgroupError> {
        let Some(events) = fs::read_opt(&self.dir, "cgroup.events")? else {
            return Ok(None);
        };
        Ok(fs::parse_flat_keyed(&events)
            .into_iter()
            .find(|(k, _)| k == "frozen")
            .map(|(_, v)| v == 1))
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let op = if frozen { "freeze" } else { "thaw" };
        if !fs::exists(&self.dir, "cgroup.freeze") {
            return Err(CgroupError::unsupported(
                op,
                format!("cgroup.freeze does not exist in {}", self.dir.display()),
            ));
        }
        fs::write(&self.dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let start = Instant::now();
        loop {
            match self.frozen_event()? {
                Some(f) if f == frozen => return Ok(()),
                // no cgroup.events: trust cgroup.freeze
                None => return Ok(()),
                Some(_) => {}
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(CgroupError::Timeout {
                    path: self.dir.clone(),
                    file: "cgroup.events".into(),
                    expected: format!("frozen {}", u8::from(frozen)),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl CgroupManager for V2Cgroups {
    type Error = CgroupError;

    fn create(&self) -> Result<(), CgroupError> {
        create_tree(&self.mount, &self.rel, None)
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        v2_apply::apply(self, resources)
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        fs::write_pid(&self.dir, pid)
    }

    fn processes(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        fs::collect_pids(&self.dir, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let result = self.set_frozen(true);
        if result.is_err() {
            let _ = fs::write(&self.dir, "cgroup.freeze", "0");
        }
        result
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        if let Some(f) = self.frozen_event()? {
            return Ok(f);
        }
        Ok(fs::read(&self.dir, "cgroup.freeze")?.trim() == "1")
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats::default();
        stats_read::v2_all(&self.dir, &mut s)?;
        Ok(s)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        fs::remove_cgroup_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 100);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(1_000_000), 10_000);
        let mut last = 0;
        for s in [3, 10, 100, 512, 1024, 2048, 10_000, 100_000, 262_143] {
            let w = cpu_shares_to_weight(s);
            assert!(w >= last && (1..=10_000).contains(&w), "{s} -> {w}");
            last = w;
        }
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(memory_swap_to_v2(0, -1), Ok(-1));
        assert_eq!(memory_swap_to_v2(-1, 100), Ok(-1));
        assert_eq!(memory_swap_to_v2(0, 100), Ok(0));
        assert_eq!(memory_swap_to_v2(300, 100), Ok(200));
        assert!(memory_swap_to_v2(50, 100).is_err());
        assert!(memory_swap_to_v2(50, 0).is_err());
    }
}
