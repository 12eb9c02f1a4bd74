//! `berth volume create|ls|inspect|rm|prune`, as docker's.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{confirm, for_each, out, print_rows, seg};
use crate::client::Client;
use crate::format::human_size;
use crate::template::{Template, to_text};
use crate::units::{filters_json, query};

/// `berth volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes (a volume in use by a container cannot be removed)
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes (anonymous ones, or all with -a)
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume (KEY=VALUE)
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Set driver specific options (type=tmpfs, device=tmpfs, o=size=100m, …)
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    /// The volume's name (a random one when left out)
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values (e.g. 'dangling=true')
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. 'label=<label>')
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Runs a `volume` verb.
pub async fn run(c: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => create(c, a).await,
        VolumeCmd::Ls(a) => ls(c, a).await,
        VolumeCmd::Inspect(a) => inspect(c, a).await,
        VolumeCmd::Rm(a) => rm(c, a).await,
        VolumeCmd::Prune(a) => prune(c, a).await,
    }
}

fn key_values(list: &[String], what: &str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for kv in list {
        let (k, v) = match kv.split_once('=') {
            Some(p) => p,
            None if what == "label" => (kv.as_str(), ""),
            None => bail!("invalid key/value pair format in driver options: {kv}"),
        };
        m.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(m)
}

async fn create(c: &Client, a: CreateArgs) -> Result<i32> {
    let name = match (a.name_flag, a.name) {
        (Some(f), Some(p)) if f != p => {
            bail!(
                "conflicting options: cannot specify a volume-name through both --name and as a positional arg"
            )
        }
        (f, p) => f.or(p).unwrap_or_default(),
    };
    let body = json!({
        "Name": name,
        "Driver": a.driver,
        "DriverOpts": key_values(&a.opt, "opt")?,
        "Labels": key_values(&a.label, "label")?,
    });
    let v = c.post_json("/volumes/create", Some(&body)).await?;
    out(&format!("{}\n", to_text(&v["Name"])))?;
    Ok(0)
}

/// A volume as `volume ls` templates see it.
fn row(v: &Value) -> Value {
    let labels: Vec<String> = v["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, val)| format!("{k}={}", to_text(val)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "Name": v["Name"], "Driver": v["Driver"], "Scope": v["Scope"],
        "Mountpoint": v["Mountpoint"], "Labels": labels.join(","),
        "CreatedAt": v["CreatedAt"], "Links": "N/A", "Size": "N/A",
        "Group": "", "Availability": "N/A", "Status": "N/A",
    })
}

async fn ls(c: &Client, a: LsArgs) -> Result<i32> {
    let mut q = Vec::new();
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let r = c.get_json(&format!("/volumes{}", query(&q))).await?;
    let mut list: Vec<Value> = r["Volumes"].as_array().cloned().unwrap_or_default();
    list.sort_by_key(|v| to_text(&v["Name"]));
    if a.quiet {
        let names: String = list
            .iter()
            .map(|v| format!("{}\n", to_text(&v["Name"])))
            .collect();
        return out(&names).map(|_| 0);
    }
    let rows: Vec<Value> = list.iter().map(row).collect();
    let header = json!({
        "Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS", "CreatedAt": "CREATED", "Links": "LINKS", "Size": "SIZE",
        "Group": "GROUP", "Availability": "AVAILABILITY", "Status": "STATUS",
    });
    let fmt = match a.format.as_deref() {
        None | Some("") | Some("table") => "table {{.Driver}}\t{{.Name}}",
        Some(f) => f,
    };
    print_rows(fmt, &rows, &header)?;
    Ok(0)
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut errs = Vec::new();
    for n in &a.volumes {
        match c.get_json(&format!("/volumes/{}", seg(n))).await {
            Ok(v) => found.push(v),
            Err(e) => errs.push(super::error_text(&e)),
        }
    }
    match a.format.as_deref() {
        None | Some("") => out(&format!(
            "{}\n",
            super::container::pretty_json(&Value::Array(found))?
        ))?,
        Some(f) => {
            let t = Template::parse(if f == "json" { "{{json .}}" } else { f })?;
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
        Err(crate::StatusError {
            code: 1,
            message: Some(errs.join("\n")),
        }
        .into())
    }
}

async fn rm(c: &Client, a: RmArgs) -> Result<i32> {
    let q = if a.force { "?force=1" } else { "" };
    for_each(&a.volumes, |name| async move {
        let r = c.delete(&format!("/volumes/{}{q}", seg(&name))).await?;
        crate::client::check(r).await?;
        Ok(Some(name))
    })
    .await
}

async fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force {
        let w = if a.all {
            "WARNING! This will remove all local volumes not used by at least one container."
        } else {
            "WARNING! This will remove anonymous local volumes not used by at least one container."
        };
        if !confirm(w)? {
            return Ok(0);
        }
    }
    let mut filters: Map<String, Value> = filters_json(&a.filter)?
        .and_then(|f| serde_json::from_str(&f).ok())
        .unwrap_or_default();
    if a.all {
        filters.insert("all".into(), json!({"true": true}));
    }
    let r = c
        .post_json(
            &format!(
                "/volumes/prune{}",
                query(&[("filters", Value::Object(filters).to_string())])
            ),
            None,
        )
        .await?;
    let mut s = crate::commands::system::prune_report(&r);
    s.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    ));
    out(&s)?;
    Ok(0)
}

/// `--mount type=…,src=…,dst=…,…` → a `HostConfig.Mounts` entry, as the
/// docker CLI builds it.
pub fn parse_mount(spec: &str) -> Result<Value> {
    let mut kind = "volume".to_owned();
    let mut m = Map::new();
    let (mut bind, mut vol, mut tmpfs) = (Map::new(), Map::new(), Map::new());
    let mut driver = Map::new();
    let (mut labels, mut opts) = (Map::new(), Map::new());
    let truth = |k: &str, v: Option<&str>| -> Result<bool> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(other) => bail!("invalid value for {k}: {other}"),
        }
    };
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need =
            || v.ok_or_else(|| anyhow::anyhow!("invalid field '{field}' must be a key=value pair"));
        match k.as_str() {
            "type" => kind = need()?.to_owned(),
            "source" | "src" => {
                m.insert("Source".into(), json!(need()?));
            }
            "target" | "destination" | "dst" => {
                m.insert("Target".into(), json!(need()?));
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(truth(&k, v)?));
            }
            "consistency" => {
                m.insert("Consistency".into(), json!(need()?));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(need()?));
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), json!(truth(&k, v)?));
            }
            "bind-recursive" => match need()? {
                "enabled" => {}
                "disabled" => {
                    bind.insert("NonRecursive".into(), json!(true));
                }
                "writable" => {
                    bind.insert("ReadOnlyNonRecursive".into(), json!(true));
                }
                "readonly" => {
                    bind.insert("ReadOnlyForceRecursive".into(), json!(true));
                }
                other => bail!("invalid value for {k}: {other}"),
            },
            "bind-create-mountpoint" => {
                bind.insert("CreateMountpoint".into(), json!(truth(&k, v)?));
            }
            "volume-nocopy" => {
                vol.insert("NoCopy".into(), json!(truth(&k, v)?));
            }
            "volume-subpath" => {
                vol.insert("Subpath".into(), json!(need()?));
            }
            "volume-driver" => {
                driver.insert("Name".into(), json!(need()?));
            }
            "volume-label" => {
                let (lk, lv) = need()?.split_once('=').unwrap_or((need()?, ""));
                labels.insert(lk.into(), json!(lv));
            }
            "volume-opt" => {
                let (ok, ov) = need()?.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!(
                        "invalid volume-opt '{}': expected key=value",
                        need().unwrap_or_default()
                    )
                })?;
                opts.insert(ok.into(), json!(ov));
            }
            "tmpfs-size" => {
                tmpfs.insert("SizeBytes".into(), json!(crate::units::ram_bytes(need()?)?));
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(need()?, 8).map_err(|_| {
                    anyhow::anyhow!("invalid value for {k}: {}", need().unwrap_or_default())
                })?;
                tmpfs.insert("Mode".into(), json!(mode));
            }
            _ => bail!("unexpected key '{k}' in '{field}'"),
        }
    }
    if !m.contains_key("Target") {
        bail!("target is required");
    }
    if !driver.is_empty() || !opts.is_empty() {
        if !opts.is_empty() {
            driver.insert("Options".into(), Value::Object(opts));
        }
        vol.insert("DriverConfig".into(), Value::Object(driver));
    }
    if !labels.is_empty() {
        vol.insert("Labels".into(), Value::Object(labels));
    }
    let mix =
        |what: &str| anyhow::anyhow!("cannot mix '{what}-*' options with mount type '{kind}'");
    if !bind.is_empty() {
        if kind != "bind" {
            return Err(mix("bind"));
        }
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !vol.is_empty() {
        if kind != "volume" {
            return Err(mix("volume"));
        }
        m.insert("VolumeOptions".into(), Value::Object(vol));
    }
    if !tmpfs.is_empty() {
        if kind != "tmpfs" {
            return Err(mix("tmpfs"));
        }
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    m.insert("Type".into(), json!(kind));
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_join_labels() {
        let r = row(&json!({"Name": "v", "Driver": "local", "Labels": {"a": "1", "b": ""}}));
        assert_eq!(r["Labels"], "a=1,b=");
        assert_eq!(r["Name"], "v");
    }

    #[test]
    fn mounts_parse_like_docker() {
        let m = parse_mount("type=bind,src=/a,dst=/b,readonly,bind-propagation=rshared").unwrap();
        assert_eq!(
            m,
            json!({"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": true,
                   "BindOptions": {"Propagation": "rshared"}})
        );
        let m = parse_mount("src=v,dst=/d,volume-nocopy,volume-opt=type=tmpfs").unwrap();
        assert_eq!(m["Type"], "volume");
        assert_eq!(m["VolumeOptions"]["NoCopy"], true);
        assert_eq!(
            m["VolumeOptions"]["DriverConfig"]["Options"]["type"],
            "tmpfs"
        );
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            m["TmpfsOptions"],
            json!({"SizeBytes": 1048576, "Mode": 0o1770})
        );
        assert!(parse_mount("type=bind,src=/a").is_err());
        assert!(parse_mount("type=bind,dst=/a,volume-nocopy").is_err());
        assert!(parse_mount("dst=/a,bogus=1").is_err());
    }

    #[test]
    fn options_need_values() {
        assert!(key_values(&["type".into()], "opt").is_err());
        let m = key_values(&["flag".into()], "label").unwrap_or_default();
        assert_eq!(m["flag"], "");
    }
}
