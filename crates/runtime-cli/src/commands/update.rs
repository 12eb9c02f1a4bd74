use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use berth_runtime::container;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxPids, LinuxResources};

use crate::Globals;
use crate::args::{EventsArgs, UpdateArgs};

/// Parse a byte size as runc does: a number with an optional k/m/g/t suffix
/// (binary units, optional trailing "b"), or -1.
fn bytes(s: &str, flag: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{flag} {s:?}: not a size"))?;
    if n < 0.0 {
        anyhow::bail!("{flag} {s:?}: must not be negative");
    }
    Ok((n * mult as f64) as i64)
}

pub fn update(g: &Globals, a: &UpdateArgs) -> anyhow::Result<()> {
    let mut res: LinuxResources = match &a.resources {
        Some(p) => {
            let mut data = Vec::new();
            if p.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut data)?;
            } else {
                data = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            }
            serde_json::from_slice(&data)
                .context("--resources: not a valid linux.resources object")?
        }
        None => LinuxResources::default(),
    };
    let mut mem = (*res.memory()).unwrap_or_default();
    let mut mem_set = res.memory().is_some();
    if let Some(m) = &a.memory {
        mem.set_limit(Some(bytes(m, "--memory")?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_reservation {
        mem.set_reservation(Some(bytes(m, "--memory-reservation")?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_swap {
        mem.set_swap(Some(bytes(m, "--memory-swap")?));
        mem_set = true;
    }
    if mem_set {
        res.set_memory(Some(mem));
    }
    let mut cpu: LinuxCpu = res.cpu().clone().unwrap_or_default();
    let mut cpu_set = res.cpu().is_some();
    if let Some(v) = a.cpu_period {
        cpu.set_period(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_quota {
        cpu.set_quota(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_share {
        cpu.set_shares(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
        cpu_set = true;
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
        cpu_set = true;
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
        cpu_set = true;
    }
    if cpu_set {
        res.set_cpu(Some(cpu));
    }
    if let Some(v) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        res.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b: LinuxBlockIo = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    Ok(container::update(&g.root, &a.id, &res)?)
}

fn interval(s: &str) -> anyhow::Result<Duration> {
    let d = if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse()?)
    } else if let Some(sec) = s.strip_suffix('s') {
        Duration::from_secs_f64(sec.parse()?)
    } else if let Some(m) = s.strip_suffix('m') {
        Duration::from_secs_f64(m.parse::<f64>()? * 60.0)
    } else {
        anyhow::bail!("--interval {s:?}: use a duration like 5s or 500ms");
    };
    if d.is_zero() {
        anyhow::bail!("--interval must be positive");
    }
    Ok(d)
}

/// `events`: with --stats one statistics event; otherwise a statistics
/// event every --interval and an `oom` event whenever the OOM killer hit
/// the container, until it stops (as runc).
pub fn events(g: &Globals, a: &EventsArgs) -> anyhow::Result<()> {
    let every = interval(&a.interval)?;
    let mut out = std::io::stdout().lock();
    let mut ooms = container::oom_kills(&g.root, &a.id)?;
    // Writes one event; false when the reader went away.
    let mut emit = |ev: serde_json::Value| writeln!(out, "{ev}").and_then(|()| out.flush()).is_ok();
    let oom = serde_json::json!({"type": "oom", "id": a.id});
    loop {
        let stats = match container::stats(&g.root, &a.id) {
            Ok(s) => s,
            // The container stopped: the stream ends, with the OOM kill that
            // stopped it when there was one (the OOM killer may pick the
            // init itself, between two polls).
            Err(berth_runtime::RuntimeError::InvalidState { .. }) if !a.stats => {
                if container::oom_kills(&g.root, &a.id).unwrap_or(ooms) > ooms {
                    emit(oom);
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if !emit(serde_json::json!({"type": "stats", "id": a.id, "data": stats})) || a.stats {
            return Ok(());
        }
        let now = container::oom_kills(&g.root, &a.id).unwrap_or(ooms);
        if now > ooms {
            if !emit(oom.clone()) {
                return Ok(());
            }
            ooms = now;
        }
        std::thread::sleep(every);
    }
}
