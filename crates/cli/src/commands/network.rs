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
    /// Auxiliary IPv4 or IPv6 addresses used by the network driver (name=address)
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// IP address management driver (only "default")
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// Set IPAM driver specific options (key=value)
    #[arg(long = "ipam-opt")]
    pub ipam_opt: Vec<String>,
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
    /// Add link to another container (name:alias)
    #[arg(long)]
    pub link: Vec<String>,
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

/// `addr/len` or `addr`: the address and, for a CIDR, its prefix length.
fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, Option<u8>)> {
    match s.split_once('/') {
        Some((a, l)) => {
            let ip: std::net::IpAddr = a.parse().ok()?;
            let len: u8 = l.parse().ok()?;
            (len <= if ip.is_ipv4() { 32 } else { 128 }).then_some((ip, Some(len)))
        }
        None => Some((s.parse().ok()?, None)),
    }
}

/// Whether subnet `subnet` holds `data` (an address or a CIDR's address), as
/// the docker CLI decides which subnet an `--ip-range`, `--gateway` or
/// `--aux-address` belongs to.
fn subnet_matches(subnet: &str, data: &str) -> Result<bool> {
    let Some((net, Some(len))) = parse_cidr(subnet) else {
        bail!("invalid subnet: invalid CIDR address: {subnet}");
    };
    let Some((ip, _)) = parse_cidr(data) else {
        if data.contains('/') {
            bail!("invalid CIDR address: {data}");
        }
        return Ok(false);
    };
    let bits = |a: std::net::IpAddr| -> u128 {
        match a {
            std::net::IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
            std::net::IpAddr::V6(v) => u128::from(v),
        }
    };
    if net.is_ipv4() != ip.is_ipv4() {
        return Ok(false);
    }
    // IPv4 addresses sit in the top 32 bits: the mask is the same.
    let shift = 128 - u32::from(len);
    let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
    Ok(bits(net) & mask == bits(ip) & mask)
}

/// One subnet's config being built: subnet, ip-range, gateway, aux addresses.
type SubnetCfg = (String, String, String, serde_json::Map<String, Value>);

/// Puts `value` in the `slot` of the subnet that holds it, with the docker
/// CLI's errors for a second value on one subnet or none that matches.
fn assign(
    cfg: &mut [SubnetCfg],
    value: &str,
    slot: impl Fn(&mut SubnetCfg) -> &mut String,
    plural: &str,
    prep: &str,
    what: &str,
) -> Result<()> {
    let mut matched = false;
    for c in cfg.iter_mut() {
        if !subnet_matches(&c.0, value)? {
            continue;
        }
        let s = c.0.clone();
        let v = slot(c);
        if !v.is_empty() {
            bail!("cannot configure multiple {plural} ({value}, {v}) {prep} the same subnet ({s})");
        }
        *v = value.to_owned();
        matched = true;
    }
    if !matched {
        bail!("no matching subnet for {what} {value}");
    }
    Ok(())
}

/// The docker CLI's IPAM config from the flags: each `--ip-range`,
/// `--gateway` and `--aux-address` goes to the `--subnet` that holds it.
fn ipam_config(a: &CreateArgs) -> Result<Vec<Value>> {
    if a.subnet.len() < a.ip_range.len() || a.subnet.len() < a.gateway.len() {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let mut cfg: Vec<SubnetCfg> = Vec::new();
    for s in &a.subnet {
        for (k, ..) in &cfg {
            if subnet_matches(s, k)? || subnet_matches(k, s)? {
                bail!("multiple overlapping subnet configuration is not supported");
            }
        }
        cfg.push((
            s.clone(),
            String::new(),
            String::new(),
            serde_json::Map::new(),
        ));
    }
    for r in &a.ip_range {
        if parse_cidr(r).is_none_or(|(_, l)| l.is_none()) {
            bail!("invalid CIDR address: {r}");
        }
        assign(&mut cfg, r, |c| &mut c.1, "ranges", "on", "range")?;
    }
    for g in &a.gateway {
        assign(&mut cfg, g, |c| &mut c.2, "gateways", "for", "gateway")?;
    }
    for kv in &a.aux_address {
        let Some((name, addr)) = kv.split_once('=') else {
            bail!(
                "invalid argument {kv:?} for \"--aux-address\" flag: bad format for aux-address (name=address)"
            );
        };
        if addr.is_empty() {
            continue;
        }
        if addr.parse::<std::net::IpAddr>().is_err() {
            bail!(
                "invalid argument {kv:?} for \"--aux-address\" flag: {addr:?} is not an IP address"
            );
        }
        let mut matched = false;
        for (s, _, _, aux) in cfg.iter_mut() {
            if subnet_matches(s, addr)? {
                aux.insert(name.to_owned(), json!(addr));
                matched = true;
            }
        }
        if !matched {
            bail!("no matching subnet for aux-address {addr}");
        }
    }
    Ok(cfg
        .into_iter()
        .map(|(s, r, g, aux)| {
            let mut v = json!({"Subnet": s, "AuxiliaryAddresses": aux});
            if !r.is_empty() {
                v["IPRange"] = json!(r);
            }
            if !g.is_empty() {
                v["Gateway"] = json!(g);
            }
            v
        })
        .collect())
}

async fn create(c: &Client, a: CreateArgs) -> Result<i32> {
    let config = ipam_config(&a)?;
    let body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "EnableIPv6": a.ipv6,
        "IPAM": {
            "Driver": a.ipam_driver,
            "Config": config,
            "Options": key_values(&a.ipam_opt, "IPAM option")?,
        },
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
        "EndpointConfig": {"Aliases": a.alias, "IPAMConfig": ipam, "Links": a.link},
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CreateArgs,
    }

    fn cfg(args: &[&str]) -> Result<Vec<Value>> {
        let t = T::try_parse_from(std::iter::once("create").chain(args.iter().copied()))?;
        ipam_config(&t.a)
    }

    #[test]
    fn flags_go_to_their_subnet() {
        let c = cfg(&[
            "--subnet=10.1.0.0/24",
            "--subnet=fd00:1::/64",
            "--gateway=fd00:1::1",
            "--gateway=10.1.0.254",
            "--ip-range=10.1.0.128/25",
            "--aux-address=r=10.1.0.5",
            "--aux-address=s=fd00:1::5",
            "n",
        ])
        .unwrap();
        assert_eq!(c[0]["Gateway"], "10.1.0.254");
        assert_eq!(c[0]["IPRange"], "10.1.0.128/25");
        assert_eq!(c[0]["AuxiliaryAddresses"]["r"], "10.1.0.5");
        assert_eq!(c[1]["Gateway"], "fd00:1::1");
        assert_eq!(c[1]["AuxiliaryAddresses"]["s"], "fd00:1::5");
        let e = |a: &[&str]| cfg(a).unwrap_err().to_string();
        assert_eq!(
            e(&["--subnet=10.1.0.0/24", "--aux-address=r=10.2.0.5", "n"]),
            "no matching subnet for aux-address 10.2.0.5"
        );
        assert_eq!(
            e(&["--subnet=10.1.0.0/24", "--gateway=10.2.0.1", "n"]),
            "no matching subnet for gateway 10.2.0.1"
        );
        assert_eq!(
            e(&["--subnet=10.1.0.0/24", "--ip-range=10.2.0.0/25", "n"]),
            "no matching subnet for range 10.2.0.0/25"
        );
        assert_eq!(
            e(&[
                "--subnet=10.1.0.0/24",
                "--subnet=10.2.0.0/24",
                "--ip-range=10.1.0.0/25",
                "--ip-range=10.1.0.128/25",
                "n"
            ]),
            "cannot configure multiple ranges (10.1.0.128/25, 10.1.0.0/25) on the same subnet (10.1.0.0/24)"
        );
        assert_eq!(
            e(&[
                "--subnet=10.1.0.0/24",
                "--subnet=10.2.0.0/24",
                "--gateway=10.1.0.1",
                "--gateway=10.1.0.2",
                "n"
            ]),
            "cannot configure multiple gateways (10.1.0.2, 10.1.0.1) for the same subnet (10.1.0.0/24)"
        );
        assert_eq!(
            e(&["--gateway=10.2.0.1", "n"]),
            "every ip-range or gateway must have a corresponding subnet"
        );
        assert_eq!(
            e(&["--subnet=10.1.0.0/16", "--subnet=10.1.2.0/24", "n"]),
            "multiple overlapping subnet configuration is not supported"
        );
        assert!(cfg(&["--subnet=0.0.0.0/0", "--gateway=10.0.0.1", "n"]).is_ok());
    }
}
