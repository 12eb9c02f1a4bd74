//! `GET /containers/{id}/stats`: Docker's stats document from the
//! container's cgroups, one sample or one per second.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use berth_runtime::cgroups::Stats;
use bytes::Bytes;
use serde_json::{Value, json};

use super::containers::async_stream_body;
use crate::AppState;
use crate::error::ApiError;
use crate::query::Query;

/// Host CPU time in nanoseconds (the `cpu` line of /proc/stat).
fn system_cpu_usage() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    ticks * 10_000_000
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn cpu_json(s: Option<&Stats>, system: u64) -> Value {
    let Some(s) = s else {
        return json!({ "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 }, "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 } });
    };
    let u = &s.cpu.usage;
    json!({
        "cpu_usage": {
            "total_usage": u.total,
            "percpu_usage": if u.percpu.is_empty() { Value::Null } else { json!(u.percpu) },
            "usage_in_kernelmode": u.kernel,
            "usage_in_usermode": u.user,
        },
        "system_cpu_usage": system,
        "online_cpus": online_cpus(),
        "throttling_data": {
            "periods": s.cpu.throttling.periods,
            "throttled_periods": s.cpu.throttling.throttled_periods,
            "throttled_time": s.cpu.throttling.throttled_time,
        },
    })
}

fn blkio(entries: &[berth_runtime::cgroups::BlkioEntry]) -> Value {
    if entries.is_empty() {
        return Value::Null;
    }
    Value::Array(
        entries
            .iter()
            .map(|e| json!({ "major": e.major, "minor": e.minor, "op": e.op, "value": e.value }))
            .collect(),
    )
}

/// Docker's `networks`: the counters of each interface but `lo` in the
/// container's network namespace, as its init sees them.
fn networks(pid: i32) -> Option<Value> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let mut out = serde_json::Map::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let n: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if n.len() < 12 {
            continue;
        }
        out.insert(
            name.to_owned(),
            json!({
                "rx_bytes": n[0], "rx_packets": n[1], "rx_errors": n[2], "rx_dropped": n[3],
                "tx_bytes": n[8], "tx_packets": n[9], "tx_errors": n[10], "tx_dropped": n[11],
            }),
        );
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn document(
    name: &str,
    id: &str,
    cur: &Stats,
    prev: Option<&Stats>,
    prev_sys: u64,
    prev_read: &str,
) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let sys = system_cpu_usage();
    let limit = if cur.memory.usage.limit == 0 || cur.memory.usage.limit >= (1u64 << 62) {
        host_memory()
    } else {
        cur.memory.usage.limit
    };
    json!({
        "read": now,
        "preread": prev_read,
        "pids_stats": { "current": cur.pids.current, "limit": cur.pids.limit },
        "blkio_stats": {
            "io_service_bytes_recursive": blkio(&cur.blkio.io_service_bytes_recursive),
            "io_serviced_recursive": blkio(&cur.blkio.io_serviced_recursive),
            "io_queue_recursive": Value::Null,
            "io_service_time_recursive": Value::Null,
            "io_wait_time_recursive": Value::Null,
            "io_merged_recursive": Value::Null,
            "io_time_recursive": Value::Null,
            "sectors_recursive": Value::Null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(Some(cur), sys),
        "precpu_stats": cpu_json(prev, prev_sys),
        "memory_stats": {
            "usage": cur.memory.usage.usage,
            "max_usage": cur.memory.usage.max,
            "stats": cur.memory.raw,
            "failcnt": cur.memory.usage.failcnt,
            "limit": limit,
        },
        "name": name,
        "id": id,
    })
}

/// `GET /containers/{id}/stats`.
pub async fn stats(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let stream = q.get("stream").is_none_or(|_| q.bool("stream"));
    let one_shot = q.bool("one-shot");
    let c = st.engine.containers().clone();
    let r = c.get(&id)?;
    let root = c.runtime_root().to_path_buf();
    let sample = move |root: std::path::PathBuf, id: String| async move {
        tokio::task::spawn_blocking(move || berth_runtime::container::stats(&root, &id).ok())
            .await
            .ok()
            .flatten()
    };
    let (name, cid) = (r.name.clone(), r.id.clone());
    let net_pid = (!r.sandbox_key.is_empty() && r.state.pid > 0).then_some(r.state.pid);
    let body = async_stream_body(move |tx| async move {
        let zero = "0001-01-01T00:00:00Z".to_owned();
        let send = |v: Value| {
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            b.push(b'\n');
            Ok(Bytes::from(b))
        };
        let mut prev: Option<(Stats, u64, String)> = None;
        if !stream && !one_shot {
            // docker stats --no-stream wants a CPU delta: two samples.
            if let Some(s) = sample(root.clone(), cid.clone()).await {
                prev = Some((
                    s,
                    system_cpu_usage(),
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        loop {
            let cur = sample(root.clone(), cid.clone()).await.unwrap_or_default();
            let mut doc = match &prev {
                Some((p, sys, read)) => document(&name, &cid, &cur, Some(p), *sys, read),
                None => document(&name, &cid, &cur, None, 0, &zero),
            };
            if let Some(n) = net_pid.and_then(networks) {
                doc["networks"] = n;
            }
            if tx.send(send(doc)).await.is_err() || !stream {
                return;
            }
            prev = Some((
                cur,
                system_cpu_usage(),
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            ));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
