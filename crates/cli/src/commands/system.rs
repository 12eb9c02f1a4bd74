//! version, info, events, system df, system prune.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::{Value, json};

use super::{confirm, out, print_rows};
use crate::cli::{DfArgs, EventsArgs, FormatArg, SystemPruneArgs};
use crate::client::{Client, Host, LineReader, is_not_found};
use crate::format::human_size;
use crate::template::{Template, to_text};
use crate::units::{api_timestamp, filters_json, query};

fn client_info(version: &str) -> Value {
    json!({
        "Platform": {"Name": "berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": version,
        "DefaultAPIVersion": crate::client::MAX_API_VERSION,
        "GoVersion": "n/a (Rust)",
        "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
        "BuildTime": "",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Context": "default",
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `berth version`: the client half always, the server's when reachable.
pub async fn version(host: Host, debug: bool, a: &FormatArg) -> Result<i32> {
    let conn = Client::connect(host, debug).await;
    let (api, server) = match &conn {
        Ok(c) => (c.version().to_owned(), Some(c.get_json("/version").await)),
        Err(_) => (crate::client::MAX_API_VERSION.to_owned(), None),
    };
    let cl = client_info(&api);
    let server_val = match &server {
        Some(Ok(v)) => v.clone(),
        _ => Value::Null,
    };
    if let Some(f) = &a.format {
        let f = if f == "json" { "{{json .}}" } else { f };
        let t = Template::parse(f)?;
        out(&format!(
            "{}\n",
            t.render(&json!({"Client": cl, "Server": server_val}))?
        ))?;
    } else {
        let mut s = String::new();
        writeln!(s, "Client:")?;
        writeln!(
            s,
            " Version:           {}",
            cl["Version"].as_str().unwrap_or("")
        )?;
        writeln!(s, " API version:       {}", api)?;
        writeln!(
            s,
            " OS/Arch:           {}/{}",
            std::env::consts::OS,
            go_arch()
        )?;
        writeln!(s, " Context:           default")?;
        if let Some(Ok(v)) = &server {
            let g = |k: &str| v.get(k).map(to_text).unwrap_or_default();
            writeln!(s)?;
            let pname = v["Platform"]["Name"].as_str().unwrap_or("");
            writeln!(
                s,
                "Server:{}",
                if pname.is_empty() {
                    String::new()
                } else {
                    format!(" {pname}")
                }
            )?;
            writeln!(s, " Engine:")?;
            writeln!(s, "  Version:          {}", g("Version"))?;
            writeln!(
                s,
                "  API version:      {} (minimum version {})",
                g("ApiVersion"),
                g("MinAPIVersion")
            )?;
            writeln!(s, "  Go version:       {}", g("GoVersion"))?;
            writeln!(s, "  Git commit:       {}", g("GitCommit"))?;
            writeln!(s, "  Built:            {}", g("BuildTime"))?;
            writeln!(s, "  OS/Arch:          {}/{}", g("Os"), g("Arch"))?;
            writeln!(
                s,
                "  Experimental:     {}",
                v.get("Experimental")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            )?;
            for comp in v["Components"].as_array().into_iter().flatten() {
                let name = comp["Name"].as_str().unwrap_or("");
                if name == "Engine" {
                    continue;
                }
                writeln!(s, " {name}:")?;
                writeln!(s, "  Version:          {}", to_text(&comp["Version"]))?;
                if let Some(d) = comp["Details"].as_object() {
                    for (k, dv) in d {
                        let label = format!("{k}:");
                        writeln!(s, "  {label:<17} {}", to_text(dv))?;
                    }
                }
            }
        }
        out(&s)?;
    }
    match (conn, server) {
        (Err(e), _) => Err(e),
        (_, Some(Err(e))) => Err(e),
        _ => Ok(0),
    }
}

/// `berth info`.
pub async fn info(c: &Client, a: FormatArg) -> Result<i32> {
    let mut i = c.get_json("/info").await?;
    if let Some(f) = &a.format {
        let f = if f == "json" { "{{json .}}" } else { f };
        let t = Template::parse(f)?;
        if let Value::Object(m) = &mut i {
            m.insert("ClientInfo".into(), client_info(c.version()));
        }
        out(&format!("{}\n", t.render(&i)?))?;
        return Ok(0);
    }
    let g = |k: &str| i.get(k).map(to_text).unwrap_or_default();
    let mut s = String::new();
    writeln!(s, "Client:")?;
    writeln!(s, " Version:    {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(s, " Context:    default")?;
    writeln!(s, " Debug Mode: false")?;
    writeln!(s)?;
    writeln!(s, "Server:")?;
    writeln!(s, " Containers: {}", g("Containers"))?;
    writeln!(s, "  Running: {}", g("ContainersRunning"))?;
    writeln!(s, "  Paused: {}", g("ContainersPaused"))?;
    writeln!(s, "  Stopped: {}", g("ContainersStopped"))?;
    writeln!(s, " Images: {}", g("Images"))?;
    writeln!(s, " Server Version: {}", g("ServerVersion"))?;
    writeln!(s, " Storage Driver: {}", g("Driver"))?;
    for e in i["DriverStatus"].as_array().into_iter().flatten() {
        if let Some([k, v]) = e.as_array().map(Vec::as_slice) {
            writeln!(s, "  {}: {}", to_text(k), to_text(v))?;
        }
    }
    writeln!(s, " Logging Driver: {}", g("LoggingDriver"))?;
    writeln!(s, " Cgroup Driver: {}", g("CgroupDriver"))?;
    writeln!(s, " Cgroup Version: {}", g("CgroupVersion"))?;
    let plugins = &i["Plugins"];
    if plugins.is_object() {
        writeln!(s, " Plugins:")?;
        for k in ["Volume", "Network", "Log"] {
            let list: Vec<String> = plugins[k]
                .as_array()
                .into_iter()
                .flatten()
                .map(to_text)
                .collect();
            writeln!(s, "  {k}: {}", list.join(" "))?;
        }
    }
    writeln!(s, " Swarm: {}", to_text(&i["Swarm"]["LocalNodeState"]))?;
    if let Some(r) = i["Runtimes"].as_object() {
        let names: Vec<&str> = r.keys().map(String::as_str).collect();
        writeln!(s, " Runtimes: {}", names.join(" "))?;
    }
    writeln!(s, " Default Runtime: {}", g("DefaultRuntime"))?;
    writeln!(s, " Init Binary: {}", g("InitBinary"))?;
    if let Some(so) = i["SecurityOptions"].as_array() {
        writeln!(s, " Security Options:")?;
        for o in so {
            for part in to_text(o).split(',') {
                match part.split_once('=') {
                    Some(("name", n)) => writeln!(s, "  {n}")?,
                    Some((k, v)) => writeln!(s, "   {}: {v}", title(k))?,
                    None => writeln!(s, "  {part}")?,
                }
            }
        }
    }
    writeln!(s, " Kernel Version: {}", g("KernelVersion"))?;
    writeln!(s, " Operating System: {}", g("OperatingSystem"))?;
    writeln!(s, " OSType: {}", g("OSType"))?;
    writeln!(s, " Architecture: {}", g("Architecture"))?;
    writeln!(s, " CPUs: {}", g("NCPU"))?;
    writeln!(
        s,
        " Total Memory: {}",
        crate::format::bytes_size(i["MemTotal"].as_f64().unwrap_or(0.0))
    )?;
    writeln!(s, " Name: {}", g("Name"))?;
    writeln!(s, " ID: {}", g("ID"))?;
    writeln!(s, " Docker Root Dir: {}", g("DockerRootDir"))?;
    writeln!(s, " Debug Mode: {}", g("Debug"))?;
    writeln!(s, " Experimental: {}", g("ExperimentalBuild"))?;
    writeln!(s, " Live Restore Enabled: {}", g("LiveRestoreEnabled"))?;
    for w in i["Warnings"].as_array().into_iter().flatten() {
        eprintln!("{}", to_text(w));
    }
    out(&s)?;
    Ok(0)
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `berth events`: one line per event until interrupted (or --until).
pub async fn events(c: &Client, a: EventsArgs) -> Result<i32> {
    let now = chrono::Utc::now();
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        q.push(("since", api_timestamp(s, now)?));
    }
    if let Some(u) = &a.until {
        q.push(("until", api_timestamp(u, now)?));
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let t = match a.format.as_deref() {
        Some("json") => Some(Template::parse("{{json .}}")?),
        Some(f) => Some(Template::parse(f)?),
        None => None,
    };
    let resp = c.get(&format!("/events{}", query(&q))).await?;
    let mut lines = LineReader::new(resp);
    while let Some(l) = lines.next_line().await? {
        let ev: Value = serde_json::from_str(&l)?;
        match &t {
            Some(t) => out(&format!("{}\n", t.render(&ev)?))?,
            None => out(&pretty_event(&ev))?,
        }
    }
    Ok(0)
}

/// docker's default event line: `time type action id (k=v, …)`.
pub fn pretty_event(ev: &Value) -> String {
    let mut s = String::new();
    let nanos = ev["timeNano"]
        .as_i64()
        .or_else(|| ev["time"].as_i64().map(|t| t * 1_000_000_000));
    if let Some(n) = nanos {
        let t = chrono::DateTime::from_timestamp(n / 1_000_000_000, (n % 1_000_000_000) as u32)
            .unwrap_or_default()
            .with_timezone(&chrono::Local);
        s.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
        s.push(' ');
    }
    let typ = ev["Type"].as_str().unwrap_or("");
    let action = ev["Action"]
        .as_str()
        .or(ev["status"].as_str())
        .unwrap_or("");
    let id = ev["Actor"]["ID"]
        .as_str()
        .or(ev["id"].as_str())
        .unwrap_or("");
    s.push_str(&format!("{typ} {action} {id}"));
    if let Some(attrs) = ev["Actor"]["Attributes"].as_object()
        && !attrs.is_empty()
    {
        // serde_json's map is sorted by key, like docker's output.
        let parts: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", to_text(v)))
            .collect();
        s.push_str(&format!(" ({})", parts.join(", ")));
    }
    s.push('\n');
    s
}

fn pct(part: f64, total: f64) -> String {
    if total <= 0.0 {
        return human_size(part);
    }
    format!(
        "{} ({}%)",
        human_size(part),
        (part / total * 100.0).round() as i64
    )
}

/// `berth system df`.
pub async fn df(c: &Client, a: DfArgs) -> Result<i32> {
    let d = c.get_json("/system/df").await?;
    let arr = |k: &str| d[k].as_array().cloned().unwrap_or_default();
    let images = arr("Images");
    let ctrs = arr("Containers");
    let vols = arr("Volumes");
    let cache = arr("BuildCache");
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0).max(0.0);

    let img_size = d["LayersSize"]
        .as_f64()
        .unwrap_or_else(|| images.iter().map(|i| f(i, "Size")).sum());
    let img_active = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let img_used: f64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .map(|i| f(i, "Size") - f(i, "SharedSize"))
        .sum();
    let ctr_size: f64 = ctrs.iter().map(|x| f(x, "SizeRw")).sum();
    let ctr_active = ctrs.iter().filter(|x| x["State"] == "running").count();
    let ctr_recl: f64 = ctrs
        .iter()
        .filter(|x| x["State"] != "running")
        .map(|x| f(x, "SizeRw"))
        .sum();
    let vol_size: f64 = vols.iter().map(|v| f(&v["UsageData"], "Size")).sum();
    let vol_active = vols
        .iter()
        .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let vol_recl: f64 = vols
        .iter()
        .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(|v| f(&v["UsageData"], "Size"))
        .sum();
    let bc_size: f64 = cache.iter().map(|b| f(b, "Size")).sum();
    let bc_active = cache.iter().filter(|b| b["InUse"] == true).count();
    let bc_recl: f64 = cache
        .iter()
        .filter(|b| b["InUse"] != true && b["Shared"] != true)
        .map(|b| f(b, "Size"))
        .sum();
    let row = |typ: &str, total: usize, active: usize, size: f64, recl: f64| {
        json!({
            "Type": typ, "TotalCount": total.to_string(), "Active": active.to_string(),
            "Size": human_size(size), "Reclaimable": pct(recl.max(0.0), size),
        })
    };
    let rows = vec![
        row(
            "Images",
            images.len(),
            img_active,
            img_size,
            img_size - img_used,
        ),
        row("Containers", ctrs.len(), ctr_active, ctr_size, ctr_recl),
        row("Local Volumes", vols.len(), vol_active, vol_size, vol_recl),
        row("Build Cache", cache.len(), bc_active, bc_size, bc_recl),
    ];
    let header = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    let fmt = a
        .format
        .as_deref()
        .unwrap_or("table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}");
    print_rows(fmt, &rows, &header)?;
    if a.verbose {
        out("\nImages space usage:\n\n")?;
        for i in &images {
            let tags: Vec<String> = i["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(to_text)
                .collect();
            out(&format!(
                "{}\t{}\t{}\n",
                tags.join(","),
                crate::format::short_id(i["Id"].as_str().unwrap_or("")),
                human_size(f(i, "Size"))
            ))?;
        }
    }
    Ok(0)
}

/// `berth system prune`: containers, networks, images, build cache.
pub async fn prune(c: &Client, a: SystemPruneArgs) -> Result<i32> {
    if !a.prune.force {
        let mut w = String::from(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
        );
        if a.volumes {
            w.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        w.push_str(if a.all {
            "  - all images without at least one container associated to them\n"
        } else {
            "  - all dangling images\n"
        });
        w.push_str("  - unused build cache\n");
        if !confirm(&w)? {
            return Ok(0);
        }
    }
    let base = filters_json(&a.prune.filter)?;
    let mut total = 0.0;
    let mut text = String::new();
    let steps: Vec<(&str, Option<String>)> = {
        let mut v = vec![
            ("/containers/prune", base.clone()),
            ("/networks/prune", base.clone()),
        ];
        if a.volumes {
            v.push(("/volumes/prune", base.clone()));
        }
        let mut img_filters: serde_json::Map<String, Value> = base
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        img_filters.insert(
            "dangling".into(),
            json!({ if a.all { "false" } else { "true" }: true }),
        );
        v.push((
            "/images/prune",
            Some(Value::Object(img_filters).to_string()),
        ));
        v.push(("/build/prune", base.clone()));
        v
    };
    for (path, filters) in steps {
        let q = match &filters {
            Some(f) => query(&[("filters", f.clone())]),
            None => String::new(),
        };
        let r = match c.post_json(&format!("{path}{q}"), None).await {
            Ok(r) => r,
            // A daemon without that kind of object (no networks yet, no
            // build cache): nothing to prune there.
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        total += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
        text.push_str(&prune_report(&r));
    }
    text.push_str(&format!("Total reclaimed space: {}\n", human_size(total)));
    out(&text)?;
    Ok(0)
}

/// The "Deleted …:" sections of a prune answer.
pub fn prune_report(r: &Value) -> String {
    let mut s = String::new();
    let list =
        |k: &str| -> Vec<String> { r[k].as_array().into_iter().flatten().map(to_text).collect() };
    for (key, title) in [
        ("ContainersDeleted", "Deleted Containers:"),
        ("NetworksDeleted", "Deleted Networks:"),
        ("VolumesDeleted", "Deleted Volumes:"),
        ("CachesDeleted", "Deleted build cache objects:"),
    ] {
        let l = list(key);
        if !l.is_empty() {
            s.push_str(&format!("{title}\n{}\n\n", l.join("\n")));
        }
    }
    if let Some(imgs) = r["ImagesDeleted"].as_array().filter(|a| !a.is_empty()) {
        s.push_str("Deleted Images:\n");
        for i in imgs {
            if let Some(u) = i["Untagged"].as_str() {
                s.push_str(&format!("untagged: {u}\n"));
            }
            if let Some(d) = i["Deleted"].as_str() {
                s.push_str(&format!("deleted: {d}\n"));
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn event_lines() {
        let ev = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "bb"}}});
        assert_eq!(
            pretty_event(&ev),
            "container start abc (image=bb, name=web)\n"
        );
    }

    #[test]
    fn prune_sections() {
        let r = json!({"ContainersDeleted": ["a", "b"], "ImagesDeleted": [{"Untagged": "bb:latest"}, {"Deleted": "sha256:1"}], "SpaceReclaimed": 10});
        assert_eq!(
            prune_report(&r),
            "Deleted Containers:\na\nb\n\nDeleted Images:\nuntagged: bb:latest\ndeleted: sha256:1\n\n"
        );
    }
}
