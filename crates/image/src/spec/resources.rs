//! `docker create` resource limits → `linux.resources` and `process.rlimits`,
//! with Docker's checks and defaults.

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxPids, LinuxResources, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType,
};

use super::error::{Result, SpecError};

/// Resource limits of a container (Docker's HostConfig fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes (`--memory`); at least 6 MiB.
    pub memory: Option<i64>,
    /// Memory + swap limit in bytes (`--memory-swap`); -1 is unlimited.
    /// Defaults to twice `memory` when only `memory` is set.
    pub memory_swap: Option<i64>,
    /// Relative CPU weight (`--cpu-shares`).
    pub cpu_shares: Option<u64>,
    /// CFS period in µs (`--cpu-period`).
    pub cpu_period: Option<u64>,
    /// CFS quota in µs (`--cpu-quota`).
    pub cpu_quota: Option<i64>,
    /// CPUs in units of 1e-9 (`--cpus`).
    pub nano_cpus: Option<i64>,
    /// CPUs to run on (`--cpuset-cpus`, e.g. `0-1`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes (`--cpuset-mems`).
    pub cpuset_mems: Option<String>,
    /// Max number of processes (`--pids-limit`); 0 or -1 is unlimited.
    pub pids_limit: Option<i64>,
    /// `--ulimit name=soft[:hard]`.
    pub ulimits: Vec<Ulimit>,
}

/// One `--ulimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name: `nofile`, `nproc`, `core`, …
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// Docker's minimum memory limit.
const MIN_MEMORY: i64 = 6 << 20;
/// CFS period Docker uses for `--cpus`.
const NANO_PERIOD: u64 = 100_000;

fn rlimit_type(name: &str) -> Option<(PosixRlimitType, rustix::process::Resource)> {
    use PosixRlimitType as T;
    use rustix::process::Resource as R;
    Some(match name {
        "as" => (T::RlimitAs, R::As),
        "core" => (T::RlimitCore, R::Core),
        "cpu" => (T::RlimitCpu, R::Cpu),
        "data" => (T::RlimitData, R::Data),
        "fsize" => (T::RlimitFsize, R::Fsize),
        "locks" => (T::RlimitLocks, R::Locks),
        "memlock" => (T::RlimitMemlock, R::Memlock),
        "msgqueue" => (T::RlimitMsgqueue, R::Msgqueue),
        "nice" => (T::RlimitNice, R::Nice),
        "nofile" => (T::RlimitNofile, R::Nofile),
        "nproc" => (T::RlimitNproc, R::Nproc),
        "rss" => (T::RlimitRss, R::Rss),
        "rtprio" => (T::RlimitRtprio, R::Rtprio),
        "rttime" => (T::RlimitRttime, R::Rttime),
        "sigpending" => (T::RlimitSigpending, R::Sigpending),
        "stack" => (T::RlimitStack, R::Stack),
        _ => return None,
    })
}

/// The hard limit this process has for `r` (`u64::MAX` = unlimited).
fn inherited_hard(r: rustix::process::Resource) -> u64 {
    rustix::process::getrlimit(r).maximum.unwrap_or(u64::MAX)
}

/// `process.rlimits` for the requested ulimits. A hard limit above the one
/// this process has is refused: without CAP_SYS_RESOURCE nothing may raise
/// it, and the container would fail to start.
pub fn rlimits(ulimits: &[Ulimit]) -> Result<Vec<PosixRlimit>> {
    rlimits_with(ulimits, inherited_hard)
}

fn rlimits_with(
    ulimits: &[Ulimit],
    hard_of: impl Fn(rustix::process::Resource) -> u64,
) -> Result<Vec<PosixRlimit>> {
    let mut out: Vec<PosixRlimit> = Vec::new();
    for u in ulimits {
        let (typ, res) = rlimit_type(&u.name)
            .ok_or_else(|| SpecError::invalid(format!("invalid ulimit type: {}", u.name)))?;
        if u.soft > u.hard {
            return Err(SpecError::invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
        // -1 is unlimited, as Docker passes it through.
        let conv = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
        let (soft, hard) = (conv(u.soft), conv(u.hard));
        let max = hard_of(res);
        if hard > max {
            return Err(SpecError::invalid(format!(
                "ulimit {}: hard limit {} is above the limit berth runs with ({max})",
                u.name, u.hard
            )));
        }
        let r = PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .map_err(|e| SpecError::invalid(format!("ulimit {}: {e}", u.name)))?;
        // The last one of a type wins, as Docker's map does.
        out.retain(|x| x.typ() != typ);
        out.push(r);
    }
    Ok(out)
}

/// `linux.resources` with Docker's checks: memory ≥ 6 MiB, swap ≥ memory
/// and only with memory, `--cpus` exclusive with period and quota; swap
/// defaults to twice the memory. `privileged` allows every device.
pub fn linux_resources(r: &Resources, privileged: bool) -> Result<LinuxResources> {
    let mut out = LinuxResources::default();
    let mut dev = LinuxDeviceCgroup::default();
    dev.set_allow(privileged);
    dev.set_access(Some("rwm".into()));
    out.set_devices(Some(vec![dev]));

    if r.memory.is_some_and(|m| m != 0 && m < MIN_MEMORY) {
        return Err(SpecError::invalid("Minimum memory limit allowed is 6MB"));
    }
    let memory = r.memory.filter(|m| *m > 0);
    let swap = match (memory, r.memory_swap.filter(|s| *s != 0)) {
        (None, Some(s)) if s > 0 => {
            return Err(SpecError::invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ));
        }
        (Some(m), Some(s)) if s > 0 && s < m => {
            return Err(SpecError::invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
        (Some(m), None) => Some(m.saturating_mul(2)),
        (_, s) => s,
    };
    if memory.is_some() || swap.is_some() {
        let mut mem = LinuxMemory::default();
        mem.set_limit(memory);
        mem.set_swap(swap);
        out.set_memory(Some(mem));
    }

    if let Some(n) = r.nano_cpus.filter(|n| *n != 0) {
        if r.cpu_period.is_some_and(|p| p != 0) {
            return Err(SpecError::invalid(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if r.cpu_quota.is_some_and(|q| q != 0) {
            return Err(SpecError::invalid(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ));
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        if n < 10_000_000 || n > ncpu * 1_000_000_000 {
            return Err(SpecError::invalid(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
    }
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if let Some(s) = r.cpu_shares.filter(|s| *s != 0) {
        cpu.set_shares(Some(s));
        any_cpu = true;
    }
    if let Some(n) = r.nano_cpus.filter(|n| *n != 0) {
        cpu.set_period(Some(NANO_PERIOD));
        cpu.set_quota(Some(n * NANO_PERIOD as i64 / 1_000_000_000));
        any_cpu = true;
    }
    if let Some(p) = r.cpu_period.filter(|p| *p != 0) {
        cpu.set_period(Some(p));
        any_cpu = true;
    }
    if let Some(q) = r.cpu_quota.filter(|q| *q != 0) {
        cpu.set_quota(Some(q));
        any_cpu = true;
    }
    if let Some(c) = r.cpuset_cpus.as_ref().filter(|c| !c.is_empty()) {
        cpu.set_cpus(Some(c.clone()));
        any_cpu = true;
    }
    if let Some(m) = r.cpuset_mems.as_ref().filter(|m| !m.is_empty()) {
        cpu.set_mems(Some(m.clone()));
        any_cpu = true;
    }
    if any_cpu {
        out.set_cpu(Some(cpu));
    }
    if let Some(n) = r.pids_limit.filter(|n| *n > 0) {
        let mut p = LinuxPids::default();
        p.set_limit(n);
        out.set_pids(Some(p));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_rules() {
        let r = Resources {
            memory: Some(64 << 20),
            ..Resources::default()
        };
        let m = linux_resources(&r, false)
            .expect("ok")
            .memory()
            .to_owned()
            .expect("memory");
        assert_eq!((m.limit(), m.swap()), (Some(64 << 20), Some(128 << 20)));
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            ..Resources::default()
        };
        let m = linux_resources(&r, false)
            .expect("ok")
            .memory()
            .to_owned()
            .expect("memory");
        assert_eq!(m.swap(), Some(-1));
        for (mem, swap, msg) in [
            (Some(1 << 20), None, "Minimum memory limit allowed is 6MB"),
            (
                None,
                Some(64 << 20),
                "You should always set the Memory limit",
            ),
            (
                Some(64 << 20),
                Some(32 << 20),
                "Minimum memoryswap limit should be larger",
            ),
        ] {
            let r = Resources {
                memory: mem,
                memory_swap: swap,
                ..Resources::default()
            };
            let e = linux_resources(&r, false).expect_err(msg).to_string();
            assert!(e.starts_with(msg), "{e}");
        }
    }

    #[test]
    fn cpu_rules() {
        let r = Resources {
            nano_cpus: Some(500_000_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(100),
            ..Resources::default()
        };
        let res = linux_resources(&r, false).expect("ok");
        let c = res.cpu().clone().expect("cpu");
        assert_eq!(
            (c.period(), c.quota(), c.shares()),
            (Some(100_000), Some(50_000), Some(512))
        );
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(res.pids().as_ref().map(|p| p.limit()), Some(100));
        let r = Resources {
            nano_cpus: Some(500_000_000),
            cpu_quota: Some(1000),
            ..Resources::default()
        };
        assert!(linux_resources(&r, false).is_err());
        let r = Resources {
            nano_cpus: Some(1_000_000_000_000),
            ..Resources::default()
        };
        let e = linux_resources(&r, false)
            .expect_err("too many")
            .to_string();
        assert!(e.starts_with("Range of CPUs is from 0.01 to"), "{e}");
        let r = Resources {
            pids_limit: Some(-1),
            ..Resources::default()
        };
        assert!(linux_resources(&r, false).expect("ok").pids().is_none());
    }

    #[test]
    fn devices_cgroup() {
        let d = linux_resources(&Resources::default(), false).expect("ok");
        let d = d.devices().clone().expect("devices");
        assert_eq!((d.len(), d[0].allow()), (1, false));
        let p = linux_resources(&Resources::default(), true).expect("ok");
        assert!(p.devices().clone().expect("devices")[0].allow());
    }

    #[test]
    fn ulimits() {
        let u = |name: &str, soft, hard| Ulimit {
            name: name.into(),
            soft,
            hard,
        };
        let hard = |_| 20000;
        let r = rlimits_with(&[u("nofile", 1024, 2048), u("nofile", 100, 200)], hard).expect("ok");
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].soft(), r[0].hard()), (100, 200));
        let e = rlimits_with(&[u("nofile", 1024, 30000)], hard).expect_err("above");
        assert!(e.to_string().contains("above the limit"), "{e}");
        let e = rlimits_with(&[u("nope", 1, 1)], hard).expect_err("type");
        assert_eq!(e.to_string(), "invalid ulimit type: nope");
        let e = rlimits_with(&[u("core", 2, 1)], hard).expect_err("soft > hard");
        assert!(
            e.to_string().starts_with("ulimit soft limit must be less"),
            "{e}"
        );
        // The real inherited limit: asking for exactly it works.
        let nofile = inherited_hard(rustix::process::Resource::Nofile);
        let n = i64::try_from(nofile).unwrap_or(-1);
        rlimits(&[u("nofile", 0, n)]).expect("inherited hard limit");
    }
}
