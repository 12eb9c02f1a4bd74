//! Writes `linux.resources` to cgroup v2 files.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxRdma, LinuxResources,
};

use super::v1_apply::set;
use super::v2::{V2Cgroups, blkio_weight_to_io_weight, cpu_shares_to_weight, memory_swap_to_v2};
use super::{CgroupError, fs, v2_devices};

const R: &str = "linux.resources";

/// Checks the controller is enabled for the container's cgroup.
fn need(ctrls: &[String], controller: &str, field: &str) -> Result<(), CgroupError> {
    if ctrls.iter().any(|c| c == controller) {
        Ok(())
    } else {
        Err(CgroupError::unsupported(
            field,
            format!("{controller} controller is not available on this host"),
        ))
    }
}

/// Rejects page sizes that could escape the file name (`2MB` is fine).
pub(crate) fn check_page_size(size: &str, field: &str) -> Result<(), CgroupError> {
    if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CgroupError::invalid(
            format!("{field}.pageSize"),
            format!("{size:?} is not a page size such as 2MB"),
        ));
    }
    Ok(())
}

/// Rejects `linux.resources.unified` keys that are not a plain file name.
pub(crate) fn check_unified_key(key: &str, field: &str) -> Result<(), CgroupError> {
    if key.is_empty() || key.contains('/') || key.contains("..") {
        return Err(CgroupError::invalid(
            field,
            "key must be a cgroup file name without '/' or '..'",
        ));
    }
    Ok(())
}

/// Writes `hugetlb.<size>.max` (and `.rsvd.max` when the kernel has it).
pub(crate) fn hugepage_limit(
    dir: &Path,
    l: &LinuxHugepageLimit,
    field: &str,
) -> Result<(), CgroupError> {
    check_page_size(l.page_size(), field)?;
    let v = l.limit().to_string();
    set(dir, &format!("hugetlb.{}.max", l.page_size()), &v, field)?;
    let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
    if fs::exists(dir, &rsvd) {
        fs::write(dir, &rsvd, &v)?;
    }
    Ok(())
}

/// `rdma.max` lines, one per device, sorted by device name.
pub(crate) fn rdma_lines(rdma: &HashMap<String, LinuxRdma>) -> Vec<String> {
    let mut devs: Vec<_> = rdma.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    devs.into_iter()
        .filter_map(|(name, r)| {
            let mut parts = vec![name.clone()];
            if let Some(h) = r.hca_handles() {
                parts.push(format!("hca_handle={h}"));
            }
            if let Some(o) = r.hca_objects() {
                parts.push(format!("hca_object={o}"));
            }
            (parts.len() > 1).then(|| parts.join(" "))
        })
        .collect()
}

/// Applies every present field of `r`.
pub(crate) fn apply(cg: &V2Cgroups, r: &LinuxResources) -> Result<(), CgroupError> {
    let dir = cg.dir();
    let ctrls = cg.controllers()?;
    if let Some(m) = r.memory() {
        memory(dir, &ctrls, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dir, &ctrls, c)?;
    }
    if let Some(p) = r.pids() {
        let field = format!("{R}.pids.limit");
        need(&ctrls, "pids", &field)?;
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        set(dir, "pids.max", &v, &field)?;
    }
    if let Some(b) = r.block_io() {
        io(dir, &ctrls, b)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        for (i, l) in limits.iter().enumerate() {
            let field = format!("{R}.hugepageLimits[{i}]");
            need(&ctrls, "hugetlb", &field)?;
            hugepage_limit(dir, l, &field)?;
        }
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() {
            return Err(CgroupError::unsupported(
                format!("{R}.network.classID"),
                "net_cls controller is not available on this host (cgroup v2)",
            ));
        }
        if n.priorities().is_some() {
            return Err(CgroupError::unsupported(
                format!("{R}.network.priorities"),
                "net_prio controller is not available on this host (cgroup v2)",
            ));
        }
    }
    if let Some(rdma) = r.rdma() {
        let field = format!("{R}.rdma");
        need(&ctrls, "rdma", &field)?;
        for line in rdma_lines(rdma) {
            set(dir, "rdma.max", &line, &field)?;
        }
    }
    if let Some(unified) = r.unified() {
        let mut keys: Vec<_> = unified.keys().collect();
        keys.sort();
        for key in keys {
            let field = format!("{R}.unified.{key}");
            check_unified_key(key, &field)?;
            set(dir, key, &unified[key], &field)?;
        }
    }
    if let Some(devs) = r.devices() {
        v2_devices::apply(dir, devs)?;
    }
    Ok(())
}

fn memory(dir: &Path, ctrls: &[String], m: &LinuxMemory) -> Result<(), CgroupError> {
    let f = |name: &str| format!("{R}.memory.{name}");
    if m.kernel().is_some() {
        return Err(CgroupError::unsupported(
            f("kernel"),
            "not supported by cgroup v2",
        ));
    }
    if m.kernel_tcp().is_some() {
        return Err(CgroupError::unsupported(
            f("kernelTCP"),
            "not supported by cgroup v2",
        ));
    }
    if m.swappiness().is_some() {
        return Err(CgroupError::unsupported(
            f("swappiness"),
            "not supported by cgroup v2",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(CgroupError::unsupported(
            f("disableOOMKiller"),
            "not supported by cgroup v2",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(CgroupError::unsupported(
            f("useHierarchy"),
            "cgroup v2 is always hierarchical",
        ));
    }
    let limit = m.limit().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    if limit == 0 && swap == 0 && m.reservation().is_none() {
        return Ok(());
    }
    need(ctrls, "memory", &f("limit"))?;
    let swap_v2 = memory_swap_to_v2(swap, limit).map_err(|e| CgroupError::invalid(f("swap"), e))?;
    let fmt = |v: i64| {
        if v < 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if swap_v2 != 0 {
        // swap.max is absent without swap accounting; only "max" may be skipped
        if fs::exists(dir, "memory.swap.max") || swap_v2 != -1 || m.swap().is_some() {
            set(dir, "memory.swap.max", &fmt(swap_v2), &f("swap"))?;
        }
    }
    if limit != 0 {
        if m.check_before_update() == Some(true) && limit > 0 {
            let cur = fs::read_u64_or_zero(dir, "memory.current")?;
            if cur > limit as u64 {
                return Err(CgroupError::invalid(
                    f("limit"),
                    format!("{limit} is below the current usage {cur} (checkBeforeUpdate)"),
                ));
            }
        }
        set(dir, "memory.max", &fmt(limit), &f("limit"))?;
    }
    if let Some(v) = m.reservation() {
        set(dir, "memory.low", &fmt(v), &f("reservation"))?;
    }
    Ok(())
}

fn cpu(dir: &Path, ctrls: &[String], c: &LinuxCpu) -> Result<(), CgroupError> {
    let f = |name: &str| format!("{R}.cpu.{name}");
    if c.realtime_runtime().is_some_and(|v| v != 0) {
        return Err(CgroupError::unsupported(
            f("realtimeRuntime"),
            "not supported by cgroup v2",
        ));
    }
    if c.realtime_period().is_some_and(|v| v != 0) {
        return Err(CgroupError::unsupported(
            f("realtimePeriod"),
            "not supported by cgroup v2",
        ));
    }
    if let Some(s) = c.shares().filter(|v| *v != 0) {
        need(ctrls, "cpu", &f("shares"))?;
        set(
            dir,
            "cpu.weight",
            &cpu_shares_to_weight(s).to_string(),
            &f("shares"),
        )?;
    }
    let quota = c.quota().filter(|v| *v != 0);
    let period = c.period().filter(|v| *v != 0);
    if quota.is_some() || period.is_some() {
        let field = f(if quota.is_some() { "quota" } else { "period" });
        need(ctrls, "cpu", &field)?;
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_string(),
            // period only: keep the current quota
            None => fs::read(dir, "cpu.max")?
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_string(),
        };
        let v = match period {
            Some(p) => format!("{q} {p}"),
            None => q,
        };
        set(dir, "cpu.max", &v, &field)?;
    }
    if let Some(b) = c.burst() {
        need(ctrls, "cpu", &f("burst"))?;
        set(dir, "cpu.max.burst", &b.to_string(), &f("burst"))?;
    }
    if let Some(i) = c.idle() {
        need(ctrls, "cpu", &f("idle"))?;
        set(dir, "cpu.idle", &i.to_string(), &f("idle"))?;
    }
    if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        need(ctrls, "cpuset", &f("cpus"))?;
        set(dir, "cpuset.cpus", v, &f("cpus"))?;
    }
    if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        need(ctrls, "cpuset", &f("mems"))?;
        set(dir, "cpuset.mems", v, &f("mems"))?;
    }
    Ok(())
}

fn io(dir: &Path, ctrls: &[String], b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let f = |name: &str| format!("{R}.blockIO.{name}");
    let bfq = fs::exists(dir, "io.bfq.weight");
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(CgroupError::unsupported(
            f("leafWeight"),
            "not supported by cgroup v2",
        ));
    }
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        need(ctrls, "io", &f("weight"))?;
        if bfq {
            set(dir, "io.bfq.weight", &w.to_string(), &f("weight"))?;
        } else {
            set(
                dir,
                "io.weight",
                &blkio_weight_to_io_weight(w).to_string(),
                &f("weight"),
            )?;
        }
    }
    if let Some(devs) = b.weight_device() {
        need(ctrls, "io", &f("weightDevice"))?;
        for (i, wd) in devs.iter().enumerate() {
            let field = format!("{}[{i}]", f("weightDevice"));
            if wd.leaf_weight().is_some() {
                return Err(CgroupError::unsupported(
                    format!("{field}.leafWeight"),
                    "not supported by cgroup v2",
                ));
            }
            let Some(w) = wd.weight() else { continue };
            let (file, v) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_weight_to_io_weight(w))
            };
            set(
                dir,
                file,
                &format!("{}:{} {v}", wd.major(), wd.minor()),
                &field,
            )?;
        }
    }
    let throttles = [
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device(),
            "rbps",
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device(),
            "wbps",
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device(),
            "riops",
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device(),
            "wiops",
        ),
    ];
    for (name, devs, key) in throttles {
        let Some(devs) = devs else { continue };
        need(ctrls, "io", &f(name))?;
        for t in devs {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            set(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", t.major(), t.minor()),
                &f(name),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::test_util::{FakeHost, resources};
    use super::super::{AnyCgroups, CgroupManager};

    fn open(host: &FakeHost) -> Result<AnyCgroups, Box<dyn std::error::Error>> {
        host.populate("berth/c1")?;
        Ok(AnyCgroups::open(Path::new("/berth/c1"), &host.roots())?)
    }

    #[test]
    fn writes_v2_files() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("v2")?;
        let cg = open(&host)?;
        cg.apply(&resources(serde_json::json!({
            "memory": {"limit": 1048576, "swap": 3145728, "reservation": 1024},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0", "burst": 10, "idle": 1},
            "pids": {"limit": 64},
            "blockIO": {"weight": 1000, "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
            "unified": {"memory.high": "4194304"}
        }))?)?;
        let c = |f: &str| host.read(&format!("berth/c1/{f}"));
        assert_eq!(c("memory.max")?, "1048576");
        assert_eq!(c("memory.swap.max")?, "2097152");
        assert_eq!(c("memory.low")?, "1024");
        assert_eq!(c("cpu.weight")?, "100");
        assert_eq!(c("cpu.max")?, "50000 100000");
        assert_eq!(c("cpu.max.burst")?, "10");
        assert_eq!(c("cpu.idle")?, "1");
        assert_eq!(c("cpuset.cpus")?, "0-1");
        assert_eq!(c("pids.max")?, "64");
        assert_eq!(c("io.weight")?, "10000");
        assert_eq!(c("io.max")?, "8:0 wiops=30");
        assert_eq!(c("hugetlb.2MB.max")?, "2097152");
        assert_eq!(c("memory.high")?, "4194304");
        // update with period only keeps the quota
        cg.apply(&resources(serde_json::json!({"cpu": {"period": 200000}}))?)?;
        assert_eq!(c("cpu.max")?, "50000 200000");
        cg.apply(&resources(serde_json::json!({"cpu": {"quota": -1}}))?)?;
        assert_eq!(c("cpu.max")?, "max");
        cg.apply(&resources(serde_json::json!({"memory": {"limit": -1}}))?)?;
        assert_eq!(
            (c("memory.max")?, c("memory.swap.max")?),
            ("max".into(), "max".into())
        );
        Ok(())
    }

    #[test]
    fn v2_errors_name_fields() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("v2")?;
        let cg = open(&host)?;
        let cases = [
            (
                serde_json::json!({"network": {"classID": 1}}),
                "linux.resources.network.classID: net_cls controller is not available on this host (cgroup v2)",
            ),
            (
                serde_json::json!({"unified": {"../x": "1"}}),
                "linux.resources.unified.../x: invalid value: key must be a cgroup file name without '/' or '..'",
            ),
            (
                serde_json::json!({"unified": {"a/b": "1"}}),
                "linux.resources.unified.a/b: invalid value: key must be a cgroup file name without '/' or '..'",
            ),
            (
                serde_json::json!({"memory": {"kernel": 1}}),
                "linux.resources.memory.kernel: not supported by cgroup v2",
            ),
            (
                serde_json::json!({"memory": {"limit": 100, "swap": 50}}),
                "linux.resources.memory.swap: invalid value: memory+swap 50 is below the memory limit 100",
            ),
            (
                serde_json::json!({"cpu": {"realtimeRuntime": 5}}),
                "linux.resources.cpu.realtimeRuntime: not supported by cgroup v2",
            ),
            (
                serde_json::json!({"rdma": {"mlx": {"hcaHandles": 1}}}),
                "linux.resources.rdma: rdma controller is not available on this host",
            ),
            (
                serde_json::json!({"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}),
                "linux.resources.hugepageLimits[0].pageSize: invalid value: \"../2MB\" is not a page size such as 2MB",
            ),
        ];
        for (json, want) in cases {
            let err = cg.apply(&resources(json)?).err().map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(want));
        }
        let err = cg
            .apply(&resources(
                serde_json::json!({"unified": {"nosuch.file": "1"}}),
            )?)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("linux.resources.unified.nosuch.file: nosuch.file does not exist in "),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn v2_freeze_waits_for_events() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("v2")?;
        let cg = open(&host)?;
        host.write("berth/c1/cgroup.events", "populated 1\nfrozen 1\n")?;
        cg.freeze()?;
        assert_eq!(host.read("berth/c1/cgroup.freeze")?, "1");
        assert!(cg.is_frozen()?);
        // events never says frozen 0: thaw times out, bounded
        let err = cg.thaw().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.starts_with("timed out waiting for cgroup.events in "),
            "{err}"
        );
        Ok(())
    }
}
