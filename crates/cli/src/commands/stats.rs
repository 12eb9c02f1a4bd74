//! `berth stats`: one `GET /containers/{id}/stats?stream=0` per container
//! per refresh, computed the way docker's stats formatter does.

use std::io::IsTerminal;

use anyhow::Result;
use serde_json::{Value, json};

use super::{out, seg};
use crate::cli::StatsArgs;
use crate::format::{bytes_size, human_size, render_rows, short_id};
use crate::units::query;

/// One stats answer → the row fields docker's `--format` offers.
pub fn stats_row(s: &Value, id: &str, trunc: bool) -> Value {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let cpu = &s["cpu_stats"];
    let pre = &s["precpu_stats"];
    let cpu_delta = f(&cpu["cpu_usage"]["total_usage"]) - f(&pre["cpu_usage"]["total_usage"]);
    let sys_delta = f(&cpu["system_cpu_usage"]) - f(&pre["system_cpu_usage"]);
    let mut online = f(&cpu["online_cpus"]);
    if online == 0.0 {
        online = cpu["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(0.0);
    }
    let cpu_pct = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    let usage = f(&mem["usage"]);
    // v1 counts page cache: docker subtracts total_inactive_file; v2 inactive_file.
    let cache = mem["stats"]["total_inactive_file"]
        .as_f64()
        .or_else(|| mem["stats"]["inactive_file"].as_f64())
        .unwrap_or(0.0);
    let used = if cache < usage { usage - cache } else { usage };
    let limit = f(&mem["limit"]);
    let mem_pct = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += f(&n["rx_bytes"]);
        tx += f(&n["tx_bytes"]);
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += f(&e["value"]),
            Some("write") => wr += f(&e["value"]),
            _ => {}
        }
    }
    let name = s["name"].as_str().unwrap_or("").trim_start_matches('/');
    let full_id = s["id"].as_str().unwrap_or(id);
    json!({
        "ID": if trunc { short_id(full_id) } else { full_id.to_owned() },
        "Container": id,
        "Name": if name.is_empty() { "--" } else { name },
        "CPUPerc": format!("{cpu_pct:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(used), bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "BlockIO": format!("{} / {}", human_size(rd), human_size(wr)),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

fn header() -> Value {
    json!({
        "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    })
}

pub async fn stats(c: &crate::client::Client, a: StatsArgs) -> Result<i32> {
    let fmt = match a.format.as_deref() {
        None | Some("table") => {
            "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
        }
        Some(f) => f,
    };
    let clear = !a.no_stream && std::io::stdout().is_terminal();
    loop {
        let ids: Vec<String> = if a.containers.is_empty() {
            let q = if a.all {
                query(&[("all", "1".into())])
            } else {
                String::new()
            };
            let l = c.get_json(&format!("/containers/json{q}")).await?;
            l.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["Id"].as_str().map(str::to_owned))
                .collect()
        } else {
            a.containers.clone()
        };
        let fetches = ids.iter().map(|id| async move {
            let path = format!(
                "/containers/{}/stats{}",
                seg(id),
                query(&[("stream", "0".into())])
            );
            (id.clone(), c.get_json(&path).await)
        });
        let results = futures_util::future::join_all(fetches).await;
        let mut rows = Vec::new();
        for (id, r) in results {
            match r {
                Ok(s) => rows.push(stats_row(&s, &id, !a.no_trunc)),
                // Named containers must exist; listed ones may go away.
                Err(e) if !a.containers.is_empty() => return Err(e),
                Err(_) => {}
            }
        }
        let text = render_rows(fmt, &rows, &header())?;
        if clear {
            out(&format!("\x1b[2J\x1b[H{text}"))?;
        } else {
            out(&text)?;
        }
        if a.no_stream {
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_stats_math() {
        let s = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 400}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 200}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 3_145_728, "limit": 67_108_864, "stats": {"total_inactive_file": 1_048_576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 0}]},
            "pids_stats": {"current": 3},
        });
        let r = stats_row(&s, "web", true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "2MiB / 64MiB");
        assert_eq!(r["MemPerc"], "3.12%");
        assert_eq!(r["NetIO"], "1.5kB / 0B");
        assert_eq!(r["BlockIO"], "4.1kB / 0B");
        assert_eq!(r["PIDs"], "3");
    }
}
