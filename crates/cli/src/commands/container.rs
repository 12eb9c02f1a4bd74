//! Container verbs that need no attached streams: ps, stop, restart, kill,
//! rm, logs, wait, inspect, top, commit, rename, pause, unpause, update,
//! port, diff, export, container prune.

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

use super::{confirm, for_each, now, out, print_rows, seg};
use crate::StatusError;
use crate::cli::{
    CommitArgs, InspectArgs, KillArgs, LogsArgs, NamesArgs, OneArg, PortArgs, PruneArgs, PsArgs,
    RenameArgs, RmArgs, StopArgs, TopArgs, UpdateArgs,
};
use crate::client::{BodyReader, Client, is_not_found};
use crate::format::{ago, display_ports, ellipsis, human_size, short_id, tabwrite};
use crate::stdcopy::{Demux, Stream};
use crate::template::{Template, to_text};
use crate::units::{api_timestamp, filters_json, nano_cpus, query, ram_bytes};

pub use super::cp::cp;
pub use super::stats::stats;

/// Go's default time format, in local time: `2006-01-02 15:04:05 -0700 MST`.
pub fn local_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S %z %Z")
        .to_string()
}

/// The header names of `ps --format table …` fields.
fn ps_header() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
        "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS",
        "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM",
    })
}

/// A ContainerSummary → the fields docker's ps formatter offers.
pub fn ps_row(c: &Value, trunc: bool, now: i64) -> Value {
    let id = c["Id"].as_str().unwrap_or("");
    let image = c["Image"].as_str().unwrap_or("");
    let image = if trunc && image.starts_with("sha256:") {
        short_id(image)
    } else {
        image.to_owned()
    };
    let cmd = c["Command"].as_str().unwrap_or("");
    let command = if trunc {
        format!("\"{}\"", ellipsis(cmd, 20))
    } else {
        format!("\"{cmd}\"")
    };
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/'))
        .filter(|n| !n.contains('/'))
        .map(str::to_owned)
        .collect();
    let labels = c["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", to_text(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["Name"].as_str().filter(|n| !n.is_empty());
            match name {
                Some(n) if trunc => ellipsis(n, 15),
                Some(n) => n.to_owned(),
                None => m["Source"].as_str().unwrap_or("").to_owned(),
            }
        })
        .collect();
    let networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let size = match (c["SizeRw"].as_i64(), c["SizeRootFs"].as_i64()) {
        (Some(rw), Some(root)) => format!(
            "{} (virtual {})",
            human_size(rw as f64),
            human_size(root as f64)
        ),
        (Some(rw), None) => human_size(rw as f64),
        _ => "0B".into(),
    };
    let created = c["Created"].as_i64().unwrap_or(0);
    json!({
        "ID": if trunc { short_id(id) } else { id.to_owned() },
        "Image": image,
        "Command": command,
        "CreatedAt": local_time(created),
        "RunningFor": ago(created, now),
        "Ports": display_ports(&c["Ports"]),
        "State": c["State"].as_str().unwrap_or(""),
        "Status": c["Status"].as_str().unwrap_or(""),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels,
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": c["Mounts"].as_array().map(|m| m.iter().filter(|x| x["Driver"] == "local").count()).unwrap_or(0).to_string(),
        "Platform": c["ImageManifestDescriptor"]["platform"].clone(),
    })
}

/// `berth ps`.
pub async fn ps(c: &Client, a: PsArgs) -> Result<i32> {
    let mut q = Vec::new();
    if a.all || a.last.is_some() || a.latest {
        q.push(("all", "1".to_owned()));
    }
    if let Some(n) = a.last.filter(|n| *n > 0) {
        q.push(("limit", n.to_string()));
    }
    if a.latest {
        q.push(("limit", "1".into()));
    }
    if a.size {
        q.push(("size", "1".into()));
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let list = c
        .get_json(&format!("/containers/json{}", query(&q)))
        .await?;
    let list = list.as_array().cloned().unwrap_or_default();
    let trunc = !a.no_trunc;
    if a.quiet && a.format.is_none() {
        let s: String = list
            .iter()
            .map(|x| {
                let id = x["Id"].as_str().unwrap_or("");
                format!("{}\n", if trunc { short_id(id) } else { id.to_owned() })
            })
            .collect();
        return out(&s).map(|_| 0);
    }
    let now = now();
    let rows: Vec<Value> = list.iter().map(|x| ps_row(x, trunc, now)).collect();
    let mut default =
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
            .to_owned();
    if a.size {
        default.push_str("\t{{.Size}}");
    }
    let fmt = match a.format.as_deref() {
        None | Some("table") => default.as_str(),
        Some(f) => f,
    };
    print_rows(fmt, &rows, &ps_header())?;
    Ok(0)
}

/// `berth stop` / `berth restart`.
pub async fn stop(c: &Client, a: StopArgs, restart: bool) -> Result<i32> {
    let mut q = Vec::new();
    if let Some(t) = a.timeout {
        q.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        q.push(("signal", s.clone()));
    }
    let q = query(&q);
    let verb = if restart { "restart" } else { "stop" };
    for_each(&a.containers, |name| {
        let q = q.clone();
        async move {
            c.post(&format!("/containers/{}/{verb}{q}", seg(&name)), None)
                .await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth kill`.
pub async fn kill(c: &Client, a: KillArgs) -> Result<i32> {
    let q = match &a.signal {
        Some(s) => query(&[("signal", s.clone())]),
        None => String::new(),
    };
    for_each(&a.containers, |name| {
        let q = q.clone();
        async move {
            c.post(&format!("/containers/{}/kill{q}", seg(&name)), None)
                .await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth rm`.
pub async fn rm(c: &Client, a: RmArgs) -> Result<i32> {
    let q = query(&[
        ("force", if a.force { "1" } else { "0" }.into()),
        ("v", if a.volumes { "1" } else { "0" }.into()),
        ("link", if a.link { "1" } else { "0" }.into()),
    ]);
    for_each(&a.containers, |name| {
        let q = q.clone();
        async move {
            c.delete(&format!("/containers/{}{q}", seg(&name))).await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth pause` / `berth unpause`.
pub async fn simple(c: &Client, a: NamesArgs, verb: &str) -> Result<i32> {
    for_each(&a.containers, |name| async move {
        c.post(&format!("/containers/{}/{verb}", seg(&name)), None)
            .await?;
        Ok(Some(name))
    })
    .await
}

/// `berth wait`.
pub async fn wait(c: &Client, a: NamesArgs) -> Result<i32> {
    for_each(&a.containers, |name| async move {
        let v = c
            .post_json(&format!("/containers/{}/wait", seg(&name)), None)
            .await?;
        if let Some(e) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
            bail!("{e}");
        }
        Ok(Some(to_text(&v["StatusCode"])))
    })
    .await
}

/// Copies a logs/attach body to stdout/stderr (demultiplexed unless TTY).
pub async fn copy_output(mut r: BodyReader, tty: bool) -> Result<()> {
    let mut so = tokio::io::stdout();
    let mut se = tokio::io::stderr();
    let mut d = Demux::default();
    while let Some(chunk) = r.chunk().await? {
        if tty {
            so.write_all(&chunk).await?;
            so.flush().await?;
            continue;
        }
        for (s, payload) in d.feed(&chunk).map_err(anyhow::Error::msg)? {
            match s {
                Stream::Stdout | Stream::Stdin => {
                    so.write_all(&payload).await?;
                    so.flush().await?;
                }
                Stream::Stderr => {
                    se.write_all(&payload).await?;
                    se.flush().await?;
                }
                Stream::SysErr => bail!("{}", String::from_utf8_lossy(&payload).trim_end()),
            }
        }
    }
    Ok(())
}

/// `berth logs`.
pub async fn logs(c: &Client, a: LogsArgs) -> Result<i32> {
    let info = c
        .get_json(&format!("/containers/{}/json", seg(&a.container)))
        .await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let now = chrono::Utc::now();
    let mut q = vec![("stdout", "1".to_owned()), ("stderr", "1".to_owned())];
    if a.follow {
        q.push(("follow", "1".into()));
    }
    if let Some(s) = &a.since {
        q.push(("since", api_timestamp(s, now)?));
    }
    if let Some(u) = &a.until {
        q.push(("until", api_timestamp(u, now)?));
    }
    if a.timestamps {
        q.push(("timestamps", "1".into()));
    }
    if a.details {
        q.push(("details", "1".into()));
    }
    q.push(("tail", a.tail.clone()));
    let resp = c
        .get(&format!(
            "/containers/{}/logs{}",
            seg(&a.container),
            query(&q)
        ))
        .await?;
    copy_output(BodyReader::new(resp), tty).await?;
    Ok(0)
}

/// `berth inspect`: containers first, then images (or only `--type`).
pub async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let kinds: &[&str] = match a.kind.as_deref() {
        None | Some("") => &["container", "image"],
        Some("container") => &["container"],
        Some("image") => &["image"],
        Some(k) => bail!("\"{k}\" is not a valid value for --type"),
    };
    let mut found = Vec::new();
    let mut errs = Vec::new();
    for name in &a.names {
        let mut got = None;
        for k in kinds {
            let path = match *k {
                "container" => format!(
                    "/containers/{}/json{}",
                    seg(name),
                    if a.size { "?size=1" } else { "" }
                ),
                _ => format!("/images/{}/json", seg(name)),
            };
            match c.get_json(&path).await {
                Ok(v) => {
                    got = Some(v);
                    break;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        match got {
            Some(v) => found.push(v),
            None => errs.push(format!("Error: No such object: {name}")),
        }
    }
    match a.format.as_deref() {
        None | Some("") => {
            out(&format!("{}\n", pretty_json(&Value::Array(found))?))?;
        }
        Some(f) => {
            let f = if f == "json" { "{{json .}}" } else { f };
            let t = Template::parse(f)?;
            let mut s = String::new();
            for v in &found {
                s.push_str(&t.render(v)?);
                s.push('\n');
            }
            out(&s)?;
        }
    }
    if errs.is_empty() {
        Ok(0)
    } else {
        Err(StatusError {
            code: 1,
            message: Some(errs.join("\n")),
        }
        .into())
    }
}

/// JSON indented with 4 spaces, as docker inspect prints it.
pub fn pretty_json(v: &Value) -> Result<String> {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// `berth top`.
pub async fn top(c: &Client, a: TopArgs) -> Result<i32> {
    let q = if a.ps_args.is_empty() {
        String::new()
    } else {
        query(&[("ps_args", a.ps_args.join(" "))])
    };
    let v = c
        .get_json(&format!("/containers/{}/top{q}", seg(&a.container)))
        .await?;
    let mut text = String::new();
    let titles: Vec<String> = v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(to_text)
        .collect();
    text.push_str(&titles.join("\t"));
    for p in v["Processes"].as_array().into_iter().flatten() {
        let cells: Vec<String> = p.as_array().into_iter().flatten().map(to_text).collect();
        text.push('\n');
        text.push_str(&cells.join("\t"));
    }
    out(&format!("{}\n", tabwrite(&text, 20, 3)))?;
    Ok(0)
}

/// `berth commit`.
pub async fn commit(c: &Client, a: CommitArgs) -> Result<i32> {
    let mut q = vec![
        ("container", a.container.clone()),
        ("pause", if a.pause { "1" } else { "0" }.into()),
    ];
    if let Some(r) = &a.reference {
        let (repo, tag, digest) = super::image::split_ref(r);
        if digest.is_some() {
            bail!("refusing to create a tag with a digest reference");
        }
        q.push(("repo", repo));
        q.push(("tag", tag.unwrap_or_default()));
    }
    if let Some(m) = &a.message {
        q.push(("comment", m.clone()));
    }
    if let Some(au) = &a.author {
        q.push(("author", au.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let v = c.post_json(&format!("/commit{}", query(&q)), None).await?;
    out(&format!("{}\n", to_text(&v["Id"])))?;
    Ok(0)
}

/// `berth rename`.
pub async fn rename(c: &Client, a: RenameArgs) -> Result<i32> {
    let name = a.new_name.trim();
    if name.is_empty() {
        bail!("Error: Neither old nor new names may be empty");
    }
    c.post(
        &format!(
            "/containers/{}/rename{}",
            seg(&a.container),
            query(&[("name", name.to_owned())])
        ),
        None,
    )
    .await?;
    Ok(0)
}

/// The body of `POST /containers/{id}/update` from the flags that were given.
pub fn update_body(a: &UpdateArgs) -> Result<Value> {
    let mut m = Map::new();
    if let Some(c) = &a.cpus {
        m.insert("NanoCpus".into(), json!(nano_cpus(c)?));
    }
    if let Some(s) = a.cpu_shares {
        m.insert("CpuShares".into(), json!(s));
    }
    if let Some(s) = &a.cpuset_cpus {
        m.insert("CpusetCpus".into(), json!(s));
    }
    if let Some(s) = &a.memory {
        m.insert("Memory".into(), json!(ram_bytes(s)?));
    }
    if let Some(s) = &a.memory_reservation {
        m.insert("MemoryReservation".into(), json!(ram_bytes(s)?));
    }
    if let Some(s) = &a.memory_swap {
        let v = if s == "-1" { -1 } else { ram_bytes(s)? };
        m.insert("MemorySwap".into(), json!(v));
    }
    if let Some(p) = a.pids_limit {
        m.insert("PidsLimit".into(), json!(p));
    }
    if let Some(r) = &a.restart {
        m.insert(
            "RestartPolicy".into(),
            crate::container_opts::restart_policy(r)?,
        );
    }
    if m.is_empty() {
        bail!("you must provide one or more flags when using this command");
    }
    Ok(Value::Object(m))
}

/// `berth update`.
pub async fn update(c: &Client, a: UpdateArgs) -> Result<i32> {
    let body = update_body(&a)?;
    let body = &body;
    for_each(&a.containers, |name| async move {
        let v = c
            .post_json(&format!("/containers/{}/update", seg(&name)), Some(body))
            .await?;
        for w in v["Warnings"].as_array().into_iter().flatten() {
            eprintln!("{}", to_text(w));
        }
        Ok(Some(name))
    })
    .await
}

/// `berth port`.
pub async fn port(c: &Client, a: PortArgs) -> Result<i32> {
    let v = c
        .get_json(&format!("/containers/{}/json", seg(&a.container)))
        .await?;
    let ports = v["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let addr = |b: &Value| {
        let ip = b["HostIp"].as_str().unwrap_or("");
        let ip = if ip.contains(':') {
            format!("[{ip}]")
        } else if ip.is_empty() {
            "0.0.0.0".into()
        } else {
            ip.to_owned()
        };
        format!("{ip}:{}", b["HostPort"].as_str().unwrap_or(""))
    };
    let mut s = String::new();
    match &a.port {
        Some(p) => {
            let key = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            let binds = ports.get(&key).and_then(Value::as_array);
            match binds.filter(|b| !b.is_empty()) {
                Some(b) => {
                    for x in b {
                        s.push_str(&addr(x));
                        s.push('\n');
                    }
                }
                None => bail!("No public port '{key}' published for {}", a.container),
            }
        }
        None => {
            for (k, b) in &ports {
                for x in b.as_array().into_iter().flatten() {
                    s.push_str(&format!("{k} -> {}\n", addr(x)));
                }
            }
        }
    }
    out(&s)?;
    Ok(0)
}

/// `berth diff`.
pub async fn diff(c: &Client, a: OneArg) -> Result<i32> {
    let v = c
        .get_json(&format!("/containers/{}/changes", seg(&a.container)))
        .await?;
    let mut s = String::new();
    for ch in v.as_array().into_iter().flatten() {
        let k = match ch["Kind"].as_i64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        s.push_str(&format!("{k} {}\n", to_text(&ch["Path"])));
    }
    out(&s)?;
    Ok(0)
}

/// `berth export`.
pub async fn export(c: &Client, a: crate::cli::ExportArgs) -> Result<i32> {
    if a.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = c
        .get(&format!("/containers/{}/export", seg(&a.container)))
        .await?;
    super::image::body_to_output(resp, a.output.as_deref(), "container").await?;
    Ok(0)
}

/// `berth container prune`.
pub async fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let q = match filters_json(&a.filter)? {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    };
    let r = c.post_json(&format!("/containers/prune{q}"), None).await?;
    let mut s = super::system::prune_report(&r);
    s.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    ));
    out(&s)?;
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_like_docker() {
        let c = json!({
            "Id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Names": ["/web", "/other/alias"],
            "Image": "busybox",
            "Command": "sleep 1000000000000000000",
            "Created": 1000,
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
            "Labels": {"a": "1", "b": "2"},
            "State": "running",
            "Status": "Up 2 minutes",
            "NetworkSettings": {"Networks": {"bridge": {}}},
            "Mounts": [],
        });
        let r = ps_row(&c, true, 1120);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Command"], "\"sleep 1000000000000…\"");
        assert_eq!(r["RunningFor"], "2 minutes ago");
        assert_eq!(r["Ports"], "0.0.0.0:8080->80/tcp");
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["Networks"], "bridge");
        let out = crate::format::render_rows(
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
            &[r],
            &ps_header(),
        )
        .unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS                  NAMES\n\
             0123456789ab   busybox   \"sleep 1000000000000…\"   2 minutes ago   Up 2 minutes   0.0.0.0:8080->80/tcp   web\n"
        );
        let r = ps_row(&c, false, 1120);
        assert_eq!(r["Command"], "\"sleep 1000000000000000000\"");
        assert_eq!(r["ID"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn inspect_json_indent() {
        assert_eq!(
            pretty_json(&json!([{"Id": "x", "State": {"Running": true}}])).unwrap(),
            "[\n    {\n        \"Id\": \"x\",\n        \"State\": {\n            \"Running\": true\n        }\n    }\n]"
        );
        assert_eq!(pretty_json(&json!([])).unwrap(), "[]");
    }

    #[test]
    fn update_bodies() {
        let a = UpdateArgs {
            cpus: Some("0.5".into()),
            cpu_shares: None,
            cpuset_cpus: None,
            memory: Some("128m".into()),
            memory_reservation: None,
            memory_swap: Some("-1".into()),
            pids_limit: Some(10),
            restart: Some("on-failure:2".into()),
            containers: vec!["x".into()],
        };
        assert_eq!(
            update_body(&a).unwrap(),
            json!({"NanoCpus": 500_000_000, "Memory": 134_217_728, "MemorySwap": -1, "PidsLimit": 10,
                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
        );
    }
}
