//! Writes `linux.resources` to cgroup v1 files (and, on a hybrid host, the
//! hugetlb files of the cgroup2 mount).

use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
};

use super::v1::V1Cgroups;
use super::{CgroupError, fs, v2_apply};

const R: &str = "linux.resources";

/// The container's directory for `controller`, or an error naming `field`.
fn need<'a>(cg: &'a V1Cgroups, controller: &str, field: &str) -> Result<&'a Path, CgroupError> {
    cg.dir(controller).ok_or_else(|| {
        CgroupError::unsupported(
            field,
            format!("{controller} controller is not available on this host"),
        )
    })
}

/// Writes `dir/file` after checking it exists, so a missing knob is
/// reported against the spec field rather than as a bare ENOENT.
pub(crate) fn set(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    if !fs::exists(dir, file) {
        return Err(CgroupError::unsupported(
            field,
            format!("{file} does not exist in {}", dir.display()),
        ));
    }
    fs::write(dir, file, value)
}

/// Applies every present field of `r`.
pub(crate) fn apply(cg: &V1Cgroups, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        memory(cg, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(cg, c)?;
    }
    if let Some(p) = r.pids() {
        let dir = need(cg, "pids", &format!("{R}.pids.limit"))?;
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        set(dir, "pids.max", &v, &format!("{R}.pids.limit"))?;
    }
    if let Some(b) = r.block_io() {
        blkio(cg, b)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        for (i, l) in limits.iter().enumerate() {
            let field = format!("{R}.hugepageLimits[{i}]");
            v2_apply::check_page_size(l.page_size(), &field)?;
            if let Some(dir) = cg.dir("hugetlb") {
                let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
                set(dir, &file, &l.limit().to_string(), &field)?;
                let rsvd = format!("hugetlb.{}.rsvd.limit_in_bytes", l.page_size());
                if fs::exists(dir, &rsvd) {
                    fs::write(dir, &rsvd, &l.limit().to_string())?;
                }
            } else if let Some(dir) = cg.unified_dir_with("hugetlb") {
                v2_apply::hugepage_limit(dir, l, &field)?;
            } else {
                return Err(CgroupError::unsupported(
                    field,
                    "hugetlb controller is not available on this host",
                ));
            }
        }
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            let field = format!("{R}.network.classID");
            let dir = need(cg, "net_cls", &field)?;
            set(dir, "net_cls.classid", &id.to_string(), &field)?;
        }
        if let Some(prios) = n.priorities() {
            let field = format!("{R}.network.priorities");
            let dir = need(cg, "net_prio", &field)?;
            for p in prios {
                set(
                    dir,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                    &field,
                )?;
            }
        }
    }
    if let Some(rdma) = r.rdma() {
        let field = format!("{R}.rdma");
        let dir = need(cg, "rdma", &field)?;
        for line in v2_apply::rdma_lines(rdma) {
            set(dir, "rdma.max", &line, &field)?;
        }
    }
    if let Some(unified) = r.unified() {
        unified_hybrid(cg, unified)?;
    }
    if let Some(devs) = r.devices() {
        let field = format!("{R}.devices");
        let dir = need(cg, "devices", &field)?;
        for (i, d) in devs.iter().enumerate() {
            let line = device_rule(d, &format!("{field}[{i}]"))?;
            let file = if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            set(dir, file, &line, &field)?;
        }
    }
    Ok(())
}

/// `linux.resources.unified` on v1: only hybrid hugetlb keys can be honoured.
fn unified_hybrid(
    cg: &V1Cgroups,
    unified: &std::collections::HashMap<String, String>,
) -> Result<(), CgroupError> {
    let mut keys: Vec<_> = unified.keys().collect();
    keys.sort();
    for key in keys {
        let field = format!("{R}.unified.{key}");
        v2_apply::check_unified_key(key, &field)?;
        let dir = if key.starts_with("hugetlb.") {
            cg.unified_dir_with("hugetlb")
        } else {
            None
        };
        let Some(dir) = dir else {
            let reason = if cg.unified_dir().is_some() {
                "only hugetlb.* keys can be set on this hybrid cgroup v1 host"
            } else {
                "requires cgroup v2, this host has cgroup v1"
            };
            return Err(CgroupError::unsupported(field, reason));
        };
        set(dir, key, &unified[key], &field)?;
    }
    Ok(())
}

/// `type major:minor access` as devices.allow/deny expect it.
pub(crate) fn device_rule(d: &LinuxDeviceCgroup, field: &str) -> Result<String, CgroupError> {
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => {
            return Err(CgroupError::unsupported(
                format!("{field}.type"),
                "fifo (\"p\") rules cannot be expressed by the device cgroup",
            ));
        }
    };
    let num = |n: Option<i64>| {
        n.filter(|v| *v >= 0)
            .map_or("*".to_string(), |v| v.to_string())
    };
    let access = d.access().as_deref().unwrap_or("rwm");
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::invalid(
            format!("{field}.access"),
            format!("{access:?} is not a combination of r, w and m"),
        ));
    }
    Ok(format!(
        "{typ} {}:{} {access}",
        num(d.major()),
        num(d.minor())
    ))
}

fn memory(cg: &V1Cgroups, m: &LinuxMemory) -> Result<(), CgroupError> {
    let f = |name: &str| format!("{R}.memory.{name}");
    let any = m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some();
    if !any {
        return Ok(());
    }
    let dir = need(cg, "memory", &f("limit"))?;
    // 0 means "unset", as in runc
    let limit = m.limit().filter(|v| *v != 0);
    let mut swap = m.swap().filter(|v| *v != 0);
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    if let Some(l) = limit.and_then(|l| u64::try_from(l).ok())
        && m.check_before_update() == Some(true)
    {
        let usage = fs::read_u64_or_zero(dir, "memory.usage_in_bytes")?;
        if usage > l {
            return Err(CgroupError::invalid(
                f("limit"),
                format!("{l} is below the current usage {usage} (checkBeforeUpdate)"),
            ));
        }
    }
    let write_limit = |l: i64| set(dir, "memory.limit_in_bytes", &l.to_string(), &f("limit"));
    let write_swap = |s: i64| {
        set(
            dir,
            "memory.memsw.limit_in_bytes",
            &s.to_string(),
            &f("swap"),
        )
    };
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // the kernel requires limit <= memsw at every step: raise memsw
            // first when growing, lower the limit first when shrinking
            let cur = fs::read_u64_or_zero(dir, "memory.limit_in_bytes")?;
            if s == -1 || cur < s as u64 {
                write_swap(s)?;
                write_limit(l)?;
            } else {
                write_limit(l)?;
                write_swap(s)?;
            }
        }
        (Some(l), None) => write_limit(l)?,
        (None, Some(s)) => write_swap(s)?,
        (None, None) => {}
    }
    if let Some(v) = m.reservation() {
        set(
            dir,
            "memory.soft_limit_in_bytes",
            &v.to_string(),
            &f("reservation"),
        )?;
    }
    if let Some(v) = m.kernel() {
        set(
            dir,
            "memory.kmem.limit_in_bytes",
            &v.to_string(),
            &f("kernel"),
        )?;
    }
    if let Some(v) = m.kernel_tcp() {
        set(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            &v.to_string(),
            &f("kernelTCP"),
        )?;
    }
    if let Some(v) = m.swappiness() {
        if v > 100 {
            return Err(CgroupError::invalid(
                f("swappiness"),
                format!("{v} is above 100"),
            ));
        }
        set(dir, "memory.swappiness", &v.to_string(), &f("swappiness"))?;
    }
    if let Some(v) = m.disable_oom_killer() {
        set(
            dir,
            "memory.oom_control",
            if v { "1" } else { "0" },
            &f("disableOOMKiller"),
        )?;
    }
    if let Some(v) = m.use_hierarchy() {
        set(
            dir,
            "memory.use_hierarchy",
            if v { "1" } else { "0" },
            &f("useHierarchy"),
        )?;
    }
    Ok(())
}

fn cpu(cg: &V1Cgroups, c: &LinuxCpu) -> Result<(), CgroupError> {
    let f = |name: &str| format!("{R}.cpu.{name}");
    let cpu_dir = |name: &str| need(cg, "cpu", &f(name));
    if let Some(v) = c.shares().filter(|v| *v != 0) {
        set(
            cpu_dir("shares")?,
            "cpu.shares",
            &v.to_string(),
            &f("shares"),
        )?;
    }
    let period = c.period().filter(|v| *v != 0);
    let quota = c.quota().filter(|v| *v != 0);
    match (period, quota) {
        (Some(p), q) => {
            let dir = cpu_dir("period")?;
            // a new period may be rejected until the quota fits it
            if let Err(e) = set(dir, "cpu.cfs_period_us", &p.to_string(), &f("period")) {
                let Some(q) = q else { return Err(e) };
                set(dir, "cpu.cfs_quota_us", &q.to_string(), &f("quota"))?;
                set(dir, "cpu.cfs_period_us", &p.to_string(), &f("period"))?;
            }
            if let Some(q) = q {
                set(dir, "cpu.cfs_quota_us", &q.to_string(), &f("quota"))?;
            }
        }
        (None, Some(q)) => set(
            cpu_dir("quota")?,
            "cpu.cfs_quota_us",
            &q.to_string(),
            &f("quota"),
        )?,
        (None, None) => {}
    }
    if let Some(v) = c.burst() {
        set(
            cpu_dir("burst")?,
            "cpu.cfs_burst_us",
            &v.to_string(),
            &f("burst"),
        )?;
    }
    if let Some(v) = c.realtime_period().filter(|v| *v != 0) {
        let dir = cpu_dir("realtimePeriod")?;
        set(
            dir,
            "cpu.rt_period_us",
            &v.to_string(),
            &f("realtimePeriod"),
        )?;
    }
    if let Some(v) = c.realtime_runtime().filter(|v| *v != 0) {
        let dir = cpu_dir("realtimeRuntime")?;
        set(
            dir,
            "cpu.rt_runtime_us",
            &v.to_string(),
            &f("realtimeRuntime"),
        )?;
    }
    if let Some(v) = c.idle() {
        set(cpu_dir("idle")?, "cpu.idle", &v.to_string(), &f("idle"))?;
    }
    if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        set(
            need(cg, "cpuset", &f("cpus"))?,
            "cpuset.cpus",
            v,
            &f("cpus"),
        )?;
    }
    if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        set(
            need(cg, "cpuset", &f("mems"))?,
            "cpuset.mems",
            v,
            &f("mems"),
        )?;
    }
    Ok(())
}

fn blkio(cg: &V1Cgroups, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let f = |name: &str| format!("{R}.blockIO.{name}");
    let dir = |name: &str| need(cg, "blkio", &f(name));
    // CFQ-era files first, then their BFQ equivalents
    let pick = |d: &Path, plain: &'static str, bfq: &'static str| {
        if fs::exists(d, plain) || !fs::exists(d, bfq) {
            plain
        } else {
            bfq
        }
    };
    // 0 means "not set", as in runc (dockerd always sends weight 0).
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let d = dir("weight")?;
        set(
            d,
            pick(d, "blkio.weight", "blkio.bfq.weight"),
            &w.to_string(),
            &f("weight"),
        )?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        set(
            dir("leafWeight")?,
            "blkio.leaf_weight",
            &w.to_string(),
            &f("leafWeight"),
        )?;
    }
    if let Some(devs) = b.weight_device() {
        let d = dir("weightDevice")?;
        for (i, wd) in devs.iter().enumerate() {
            let field = format!("{}[{i}]", f("weightDevice"));
            if let Some(w) = wd.weight() {
                let file = pick(d, "blkio.weight_device", "blkio.bfq.weight_device");
                let line = format!("{}:{} {w}", wd.major(), wd.minor());
                set(d, file, &line, &field)?;
            }
            if let Some(w) = wd.leaf_weight() {
                let line = format!("{}:{} {w}", wd.major(), wd.minor());
                set(d, "blkio.leaf_weight_device", &line, &field)?;
            }
        }
    }
    let throttles = [
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (name, devs, file) in throttles {
        let Some(devs) = devs else { continue };
        let d = dir(name)?;
        for t in devs {
            set(
                d,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
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
    fn writes_memory_cpu_pids_blkio() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("v1")?;
        let cg = open(&host)?;
        cg.apply(&resources(serde_json::json!({
            "memory": {"limit": 1048576, "swap": 2097152, "reservation": 524288,
                       "swappiness": 10, "disableOOMKiller": true},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0",
                    "idle": 0, "burst": 1000, "realtimePeriod": 1000000, "realtimeRuntime": 950000},
            "pids": {"limit": 0},
            "blockIO": {"weight": 300, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
            "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
        }))?)?;
        let c = |f: &str| host.read(f);
        assert_eq!(c("memory/berth/c1/memory.limit_in_bytes")?, "1048576");
        assert_eq!(c("memory/berth/c1/memory.memsw.limit_in_bytes")?, "2097152");
        assert_eq!(c("memory/berth/c1/memory.soft_limit_in_bytes")?, "524288");
        assert_eq!(c("memory/berth/c1/memory.swappiness")?, "10");
        assert_eq!(c("memory/berth/c1/memory.oom_control")?, "1");
        assert_eq!(c("cpu/berth/c1/cpu.shares")?, "512");
        assert_eq!(c("cpu/berth/c1/cpu.cfs_quota_us")?, "50000");
        assert_eq!(c("cpu/berth/c1/cpu.cfs_period_us")?, "100000");
        assert_eq!(c("cpu/berth/c1/cpu.cfs_burst_us")?, "1000");
        assert_eq!(c("cpu/berth/c1/cpu.rt_runtime_us")?, "950000");
        assert_eq!(c("cpu/berth/c1/cpu.idle")?, "0");
        assert_eq!(c("cpuset/berth/c1/cpuset.cpus")?, "0");
        assert_eq!(c("pids/berth/c1/pids.max")?, "max");
        assert_eq!(c("blkio/berth/c1/blkio.weight")?, "300");
        assert_eq!(
            c("blkio/berth/c1/blkio.throttle.read_bps_device")?,
            "8:0 1000"
        );
        // plain files keep the last write only
        assert_eq!(c("devices/berth/c1/devices.deny")?, "a *:* rwm");
        assert_eq!(c("devices/berth/c1/devices.allow")?, "c 1:3 rw");
        Ok(())
    }

    #[test]
    fn unavailable_features_name_the_spec_field() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("v1")?;
        let cg = open(&host)?;
        let cases = [
            (
                serde_json::json!({"network": {"classID": 1}}),
                "linux.resources.network.classID: net_cls controller is not available on this host",
            ),
            (
                serde_json::json!({"network": {"priorities": [{"name": "eth0", "priority": 1}]}}),
                "linux.resources.network.priorities: net_prio controller is not available on this host",
            ),
            (
                serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}),
                "linux.resources.hugepageLimits[0]: hugetlb controller is not available on this host",
            ),
            (
                serde_json::json!({"unified": {"memory.high": "1"}}),
                "linux.resources.unified.memory.high: requires cgroup v2, this host has cgroup v1",
            ),
            (
                serde_json::json!({"rdma": {"mlx": {"hcaHandles": 1}}}),
                "linux.resources.rdma: rdma controller is not available on this host",
            ),
            (
                serde_json::json!({"devices": [{"allow": true, "type": "p"}]}),
                "linux.resources.devices[0].type: fifo (\"p\") rules cannot be expressed by the device cgroup",
            ),
            (
                serde_json::json!({"memory": {"swappiness": 101}}),
                "linux.resources.memory.swappiness: invalid value: 101 is above 100",
            ),
        ];
        for (json, want) in cases {
            let err = cg.apply(&resources(json)?).err().map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(want));
        }
        // a missing knob inside an available controller names field, file and dir
        let err = cg
            .apply(&resources(serde_json::json!({"memory": {"kernel": 1}}))?)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(
                "linux.resources.memory.kernel: memory.kmem.limit_in_bytes does not exist in "
            ),
            "{err}"
        );
        assert!(err.ends_with("memory/berth/c1"), "{err}");
        Ok(())
    }

    #[test]
    fn memory_swap_order_follows_direction() -> Result<(), Box<dyn std::error::Error>> {
        // shrinking: limit first (memsw still big), then memsw. Plain files
        // cannot show order, so check values for both directions.
        let host = FakeHost::new("v1")?;
        let cg = open(&host)?;
        let mem = "memory/berth/c1/memory.limit_in_bytes";
        let sw = "memory/berth/c1/memory.memsw.limit_in_bytes";
        host.write(mem, "4194304")?;
        cg.apply(&resources(
            serde_json::json!({"memory": {"limit": 1048576, "swap": 2097152}}),
        )?)?;
        assert_eq!(
            (host.read(mem)?, host.read(sw)?),
            ("1048576".into(), "2097152".into())
        );
        cg.apply(&resources(serde_json::json!({"memory": {"limit": -1}}))?)?;
        assert_eq!(
            (host.read(mem)?, host.read(sw)?),
            ("-1".into(), "-1".into())
        );
        Ok(())
    }

    #[test]
    fn hybrid_hugetlb_and_unified_keys() -> Result<(), Box<dyn std::error::Error>> {
        let host = FakeHost::new("hybrid")?;
        let cg = open(&host)?;
        cg.apply(&resources(serde_json::json!({
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "unified": {"hugetlb.2MB.max": "2097152"}
        }))?)?;
        assert_eq!(host.read("unified/berth/c1/hugetlb.2MB.max")?, "2097152");
        let err = cg
            .apply(&resources(
                serde_json::json!({"unified": {"memory.max": "1"}}),
            )?)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "linux.resources.unified.memory.max: only hugetlb.* keys can be set on this hybrid cgroup v1 host"
            )
        );
        let err = cg
            .apply(&resources(
                serde_json::json!({"hugepageLimits": [{"pageSize": "1GB", "limit": 1}]}),
            )?)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("linux.resources.hugepageLimits[0]: hugetlb.1GB.max does not exist"),
            "{err}"
        );
        Ok(())
    }
}
