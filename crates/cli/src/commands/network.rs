//! `berth network create|ls|inspect|rm|connect|disconnect|prune`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{confirm, for_each, out, print_rows, seg};
use crate::client::Client;
use crate::format::short_id;
use crate::template::Template;
use crate::units::{filters_json, query};

/// Manage networks.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the network (only "bridge")
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Allocate container IPs from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// IPv4 or IPv6 gateway for the subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Enable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set driver specific options (key=value)
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Set metadata on a network (key=value)
    #[arg(long)]
    pub label: Vec<String>,
    /// Network name
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'json' or a Go template)
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template ('json' or a Go template)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Networks
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Networks
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    /// Network
    pub network: String,
    /// Container
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Network
    pub network: String,
    /// Container
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

fn key_values(list: &[String], what: &str) -> Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    for kv in list {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        if k.is_empty() {
            bail!("invalid {what} {kv:?}: expected key=value");
        }
        m.insert(k.to_owned(), json!(v));
    }
    Ok(m)
}

/// Runs `f` over the verb.
pub async fn run(c: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(c, a).await,
        NetworkCmd::Ls(a) => ls(c, a).await,
        NetworkCmd::Inspect(a) => inspect(c, a).await,
        NetworkCmd::Rm(a) => rm(c, a).await,
        NetworkCmd::Connect(a) => connect(c, a).await,
        NetworkCmd::Disconnect(a) => disconnect(c, a).await,
        NetworkCmd::Prune(a) => prune(c, a).await,
    }
}

async fn create(c: &Client, a: CreateArgs) -> Result<i32> {
    if a.ip_range.len() > a.subnet.len() || a.gateway.len() > a.subnet.len() {
        bail!("every --ip-range and --gateway needs a --subnet (one per subnet, in order)");
    }
    let config: Vec<Value> = a
        .subnet
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = json!({"Subnet": s});
            if let Some(r) = a.ip_range.get(i) {
                v["IPRange"] = json!(r);
            }
            if let Some(g) = a.gateway.get(i) {
                v["Gateway"] = json!(g);
            }
            v
        })
        .collect();
    let body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "EnableIPv6": a.ipv6,
        "IPAM": {"Driver": "default", "Config": config},
        "Options": key_values(&a.opt, "option")?,
        "Labels": key_values(&a.label, "label")?,
    });
    let r = c.post_json("/networks/create", Some(&body)).await?;
    out(&format!("{}\n", r["Id"].as_str().unwrap_or_default()))?;
    Ok(0)
}

async fn ls(c: &Client, a: LsArgs) -> Result<i32> {
    let mut q = Vec::new();
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let list = c.get_json(&format!("/networks{}", query(&q))).await?;
    let mut list = list.as_array().cloned().unwrap_or_default();
    list.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let id = |n: &Value| {
        let id = n["Id"].as_str().unwrap_or("");
        if a.no_trunc {
            id.to_owned()
        } else {
            short_id(id)
        }
    };
    if a.quiet {
        let s: String = list.iter().map(|n| format!("{}\n", id(n))).collect();
        return out(&s).map(|_| 0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|n| {
            let labels = n["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            json!({
                "ID": id(n),
                "Name": n["Name"],
                "Driver": n["Driver"],
                "Scope": n["Scope"],
                "IPv6": n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                "Labels": labels,
                "CreatedAt": n["Created"],
            })
        })
        .collect();
    let format = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "table")
        .unwrap_or("table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}");
    let header = json!({
        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
        "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT",
    });
    print_rows(format, &rows, &header)?;
    Ok(0)
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut errs = Vec::new();
    for n in &a.networks {
        match c.get_json(&format!("/networks/{}", seg(n))).await {
            Ok(v) => found.push(v),
            Err(e) => errs.push(format!("Error: {}", super::error_text(&e))),
        }
    }
    match a.format.as_deref() {
        None | Some("") => out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&Value::Array(found))?
        ))?,
        Some(f) => {
            let f = if f == "json" { "{{json .}}" } else { f };
            let t = Template::parse(f)?;
            for v in &found {
                out(&format!("{}\n", t.render(v)?))?;
            }
        }
    }
    if errs.is_empty() {
        Ok(0)
    } else {
        eprintln!("{}", errs.join("\n"));
        Ok(1)
    }
}

async fn rm(c: &Client, a: RmArgs) -> Result<i32> {
    let force = a.force;
    for_each(&a.networks, |n| async move {
        let res = match c.delete(&format!("/networks/{}", seg(&n))).await {
            Ok(resp) => crate::client::check(resp).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(_) => Ok(Some(n)),
            Err(e) if force && super::error_text(&e).contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

async fn connect(c: &Client, a: ConnectArgs) -> Result<i32> {
    let mut ipam = serde_json::Map::new();
    if let Some(ip) = &a.ip {
        ipam.insert("IPv4Address".into(), json!(ip));
    }
    if let Some(ip) = &a.ip6 {
        ipam.insert("IPv6Address".into(), json!(ip));
    }
    let body = json!({
        "Container": a.container,
        "EndpointConfig": {"Aliases": a.alias, "IPAMConfig": ipam},
    });
    c.post_json(
        &format!("/networks/{}/connect", seg(&a.network)),
        Some(&body),
    )
    .await?;
    Ok(0)
}

async fn disconnect(c: &Client, a: DisconnectArgs) -> Result<i32> {
    let body = json!({"Container": a.container, "Force": a.force});
    c.post_json(
        &format!("/networks/{}/disconnect", seg(&a.network)),
        Some(&body),
    )
    .await?;
    Ok(0)
}

async fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )?
    {
        return Ok(0);
    }
    let mut q = Vec::new();
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let r = c
        .post_json(&format!("/networks/prune{}", query(&q)), None)
        .await?;
    let names: Vec<String> = r["NetworksDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    if !names.is_empty() {
        out(&format!("Deleted Networks:\n{}\n", names.join("\n")))?;
    }
    Ok(0)
}
