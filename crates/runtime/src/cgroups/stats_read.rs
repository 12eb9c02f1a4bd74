//! Fills [`Stats`] from the v1 and v2 cgroup files.

use std::collections::BTreeMap;
use std::path::Path;

use super::stats::{BlkioEntry, Hugetlb, MemoryEntry, PsiStats, Stats};
use super::{CgroupError, fs};

fn keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(fs::read_opt(dir, file)?
        .map(|s| fs::parse_flat_keyed(&s).into_iter().collect())
        .unwrap_or_default())
}

fn u64_list(dir: &Path, file: &str) -> Result<Vec<u64>, CgroupError> {
    let Some(s) = fs::read_opt(dir, file)? else {
        return Ok(Vec::new());
    };
    s.split_whitespace()
        .map(|v| fs::parse_u64(dir, file, v))
        .collect()
}

/// Parses a cpu/node list such as `0-3,5`.
pub(crate) fn parse_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

/// v1 `cpu.stat` throttling.
pub(crate) fn v1_cpu(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let st = keyed(dir, "cpu.stat")?;
    let t = &mut s.cpu.throttling;
    t.periods = st.get("nr_periods").copied().unwrap_or(0);
    t.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
    t.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
    Ok(())
}

/// v1 cpuacct usage.
pub(crate) fn v1_cpuacct(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let u = &mut s.cpu.usage;
    u.total = fs::read_u64_or_zero(dir, "cpuacct.usage")?;
    u.percpu = u64_list(dir, "cpuacct.usage_percpu")?;
    u.percpu_kernel = u64_list(dir, "cpuacct.usage_percpu_sys")?;
    u.percpu_user = u64_list(dir, "cpuacct.usage_percpu_user")?;
    let st = keyed(dir, "cpuacct.stat")?;
    // cpuacct.stat is in USER_HZ ticks
    let tick_ns = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => 1_000_000_000 / u64::try_from(hz).unwrap_or(100),
        _ => 10_000_000,
    };
    u.user = st.get("user").copied().unwrap_or(0) * tick_ns;
    u.kernel = st.get("system").copied().unwrap_or(0) * tick_ns;
    Ok(())
}

/// cpuset files (same names on v1 and v2, v2 has fewer).
pub(crate) fn cpuset(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let c = &mut s.cpuset;
    let list = |f: &str| -> Result<Vec<u16>, CgroupError> {
        Ok(fs::read_opt(dir, f)?
            .map(|v| parse_list(&v))
            .unwrap_or_default())
    };
    c.cpus = list("cpuset.cpus")?;
    if c.cpus.is_empty() {
        c.cpus = list("cpuset.cpus.effective")?;
    }
    c.mems = list("cpuset.mems")?;
    if c.mems.is_empty() {
        c.mems = list("cpuset.mems.effective")?;
    }
    let num = |f: &str| fs::read_u64_or_zero(dir, f);
    c.cpu_exclusive = num("cpuset.cpu_exclusive")?;
    c.mem_hardwall = num("cpuset.mem_hardwall")?;
    c.mem_exclusive = num("cpuset.mem_exclusive")?;
    c.memory_migrate = num("cpuset.memory_migrate")?;
    c.memory_spread_page = num("cpuset.memory_spread_page")?;
    c.memory_spread_slab = num("cpuset.memory_spread_slab")?;
    c.memory_pressure = num("cpuset.memory_pressure")?;
    c.sched_load_balance = num("cpuset.sched_load_balance")?;
    c.sched_relax_domain_level = fs::read_opt(dir, "cpuset.sched_relax_domain_level")?
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(())
}

fn v1_mem_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let f = |suffix: &str| fs::read_u64_or_zero(dir, &format!("{prefix}.{suffix}"));
    Ok(MemoryEntry {
        limit: f("limit_in_bytes")?,
        usage: f("usage_in_bytes")?,
        max: f("max_usage_in_bytes")?,
        failcnt: f("failcnt")?,
    })
}

/// v1 memory usage, memsw, kmem and memory.stat.
pub(crate) fn v1_memory(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let m = &mut s.memory;
    m.raw = keyed(dir, "memory.stat")?;
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    m.usage = v1_mem_entry(dir, "memory")?;
    m.swap = v1_mem_entry(dir, "memory.memsw")?;
    m.kernel = v1_mem_entry(dir, "memory.kmem")?;
    m.kernel_tcp = v1_mem_entry(dir, "memory.kmem.tcp")?;
    Ok(())
}

/// pids.current / pids.max (v1 and v2).
pub(crate) fn pids(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    s.pids.current = fs::read_u64_or_zero(dir, "pids.current")?;
    s.pids.limit = fs::read_u64_or_zero(dir, "pids.max")?;
    Ok(())
}

/// Parses v1 blkio lines: `8:0 Read 4096` (and a final `Total 4096`).
fn v1_blkio_entries(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>, CgroupError> {
    let Some(content) = fs::read_opt(dir, file)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in content.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match f.as_slice() {
            [dev, op, value] => (*dev, *op, *value),
            [dev, value] if dev.contains(':') => (*dev, "", *value),
            _ => continue,
        };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let parse = |v: &str| v.parse::<u64>().ok();
        let (Some(major), Some(minor), Some(value)) = (parse(major), parse(minor), parse(value))
        else {
            continue;
        };
        out.push(BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        });
    }
    Ok(out)
}

/// v1 blkio: CFQ files when present, else BFQ, else throttle counters.
pub(crate) fn v1_blkio(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let b = &mut s.blkio;
    let prefix = if fs::exists(dir, "blkio.io_service_bytes_recursive") {
        "blkio"
    } else if fs::exists(dir, "blkio.bfq.io_service_bytes_recursive") {
        "blkio.bfq"
    } else {
        "blkio.throttle"
    };
    b.io_service_bytes_recursive =
        v1_blkio_entries(dir, &format!("{prefix}.io_service_bytes_recursive"))?;
    b.io_serviced_recursive = v1_blkio_entries(dir, &format!("{prefix}.io_serviced_recursive"))?;
    if prefix == "blkio" {
        b.io_queued_recursive = v1_blkio_entries(dir, "blkio.io_queued_recursive")?;
        b.io_service_time_recursive = v1_blkio_entries(dir, "blkio.io_service_time_recursive")?;
        b.io_wait_time_recursive = v1_blkio_entries(dir, "blkio.io_wait_time_recursive")?;
        b.io_merged_recursive = v1_blkio_entries(dir, "blkio.io_merged_recursive")?;
        b.io_time_recursive = v1_blkio_entries(dir, "blkio.time_recursive")?;
        b.sectors_recursive = v1_blkio_entries(dir, "blkio.sectors_recursive")?;
    }
    Ok(())
}

/// Page sizes for which `dir` has `hugetlb.<size>.<suffix>`.
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
                    (!size.contains('.')).then(|| size.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    sizes
}

/// v1 hugetlb counters.
pub(crate) fn v1_hugetlb(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    for size in hugetlb_sizes(dir, ".usage_in_bytes") {
        let f = |suffix: &str| fs::read_u64_or_zero(dir, &format!("hugetlb.{size}.{suffix}"));
        let h = Hugetlb {
            usage: f("usage_in_bytes")?,
            max: f("max_usage_in_bytes")?,
            failcnt: f("failcnt")?,
        };
        s.hugetlb.insert(size, h);
    }
    Ok(())
}

/// v2 hugetlb counters (also the unified mount of a hybrid host).
pub(crate) fn v2_hugetlb(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    for size in hugetlb_sizes(dir, ".current") {
        let usage = fs::read_u64_or_zero(dir, &format!("hugetlb.{size}.current"))?;
        let events = keyed(dir, &format!("hugetlb.{size}.events"))?;
        let h = Hugetlb {
            usage,
            max: 0,
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        s.hugetlb.insert(size, h);
    }
    Ok(())
}

/// Parses a `*.pressure` file.
fn psi(dir: &Path, file: &str) -> Result<Option<PsiStats>, CgroupError> {
    let Some(content) = fs::read_opt(dir, file)? else {
        return Ok(None);
    };
    let mut out = PsiStats::default();
    for line in content.lines() {
        let mut it = line.split_whitespace();
        let target = match it.next() {
            Some("some") => &mut out.some,
            Some("full") => &mut out.full,
            _ => continue,
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "avg10" => target.avg10 = v.parse().unwrap_or(0.0),
                "avg60" => target.avg60 = v.parse().unwrap_or(0.0),
                "avg300" => target.avg300 = v.parse().unwrap_or(0.0),
                "total" => target.total = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    Ok(Some(out))
}

/// Every v2 stat, from the container's directory.
pub(crate) fn v2_all(dir: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    let cpu = keyed(dir, "cpu.stat")?;
    let g = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = g(&cpu, "usage_usec") * 1000;
    s.cpu.usage.user = g(&cpu, "user_usec") * 1000;
    s.cpu.usage.kernel = g(&cpu, "system_usec") * 1000;
    s.cpu.throttling.periods = g(&cpu, "nr_periods");
    s.cpu.throttling.throttled_periods = g(&cpu, "nr_throttled");
    s.cpu.throttling.throttled_time = g(&cpu, "throttled_usec") * 1000;
    s.cpu.psi = psi(dir, "cpu.pressure")?;
    cpuset(dir, s)?;

    let m = &mut s.memory;
    m.raw = keyed(dir, "memory.stat")?;
    m.cache = g(&m.raw, "file");
    let events = keyed(dir, "memory.events")?;
    m.usage = MemoryEntry {
        limit: fs::read_u64_or_zero(dir, "memory.max")?,
        usage: fs::read_u64_or_zero(dir, "memory.current")?,
        max: fs::read_u64_or_zero(dir, "memory.peak")?,
        failcnt: g(&events, "max"),
    };
    // runc reports swap as memory+swap, as v1's memsw
    if fs::exists(dir, "memory.swap.current") {
        let swap = fs::read_u64_or_zero(dir, "memory.swap.current")?;
        let swap_max = fs::read_u64_or_zero(dir, "memory.swap.max")?;
        m.swap = MemoryEntry {
            limit: swap_max.saturating_add(m.usage.limit),
            usage: swap.saturating_add(m.usage.usage),
            max: 0,
            failcnt: 0,
        };
    }
    m.psi = psi(dir, "memory.pressure")?;
    pids(dir, s)?;

    if let Some(io) = fs::read_opt(dir, "io.stat")? {
        for line in io.lines() {
            let mut it = line.split_whitespace();
            let Some((major, minor)) = it.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
                continue;
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse::<u64>() else {
                    continue;
                };
                let (list, op) = match k {
                    "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
    s.blkio.psi = psi(dir, "io.pressure")?;
    v2_hugetlb(dir, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_blkio() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(parse_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(parse_list(""), Vec::<u16>::new());
        let tmp = tempfile::tempdir()?;
        std::fs::write(
            tmp.path().join("blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
        )?;
        let mut s = Stats::default();
        v1_blkio(tmp.path(), &mut s)?;
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 4096);
        std::fs::write(
            tmp.path().join("io.stat"),
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0\n",
        )?;
        std::fs::write(
            tmp.path().join("cpu.stat"),
            "usage_usec 3\nuser_usec 2\nsystem_usec 1\n",
        )?;
        std::fs::write(
            tmp.path().join("cpu.pressure"),
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=9\n",
        )?;
        let mut s = Stats::default();
        v2_all(tmp.path(), &mut s)?;
        assert_eq!(s.cpu.usage.total, 3000);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.blkio.io_serviced_recursive[1].op, "Write");
        assert_eq!(s.cpu.psi.as_ref().map(|p| p.some.total), Some(9));
        Ok(())
    }
}
