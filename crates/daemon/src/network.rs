//! Network settings of berthd: dockerd's `--bridge`, `--bip`,
//! `--default-address-pool`, `--icc`, `--ip-masq`, and berth's
//! `--firewall-table` and `--dns-forward`, from flags or daemon.json.

use anyhow::{Context, bail};
use berth_engine::networks::{AddressPool, IpNet, NetworkConfig};
use serde_json::{Map, Value};

use crate::config::Flags;

/// `base=10.10.0.0/16,size=24`.
pub fn parse_pool(s: &str) -> anyhow::Result<AddressPool> {
    let mut base = None;
    let mut size = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("base", v)) => {
                base = Some(v.parse::<IpNet>().with_context(|| {
                    format!("default address pool {s:?}: base {v:?} is not a CIDR")
                })?);
            }
            Some(("size", v)) => {
                size = Some(v.parse::<u8>().with_context(|| {
                    format!("default address pool {s:?}: size {v:?} is not a prefix length")
                })?);
            }
            _ => bail!("default address pool {s:?}: expected base=CIDR,size=N"),
        }
    }
    pool(s, base, size)
}

fn pool(what: &str, base: Option<IpNet>, size: Option<u8>) -> anyhow::Result<AddressPool> {
    let (Some(base), Some(size)) = (base, size) else {
        bail!("default address pool {what:?}: needs both base and size");
    };
    if size < base.prefix_len() || size > base.max_prefix_len() {
        bail!(
            "default address pool {what:?}: size /{size} does not fit in {base} (between /{} and /{})",
            base.prefix_len(),
            base.max_prefix_len()
        );
    }
    Ok(AddressPool {
        base: base.trunc(),
        size,
    })
}

fn conflict(file: &Map<String, Value>, given: bool, key: &str, both: &mut Vec<String>) {
    if given && file.contains_key(key) {
        both.push(key.to_owned());
    }
}

fn file_bool(file: &Map<String, Value>, key: &str) -> anyhow::Result<Option<bool>> {
    match file.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => bail!("daemon.json: {key:?} must be a boolean, not {v}"),
    }
}

fn file_string(file: &Map<String, Value>, key: &str) -> anyhow::Result<Option<String>> {
    match file.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => bail!("daemon.json: {key:?} must be a string, not {v}"),
    }
}

/// The network settings from the flags and daemon.json; keys given both
/// ways are added to `both`.
pub fn from_flags(
    flags: &Flags,
    file: &Map<String, Value>,
    both: &mut Vec<String>,
) -> anyhow::Result<NetworkConfig> {
    conflict(file, flags.bridge.is_some(), "bridge", both);
    conflict(file, flags.bip.is_some(), "bip", both);
    conflict(
        file,
        !flags.default_address_pools.is_empty(),
        "default-address-pools",
        both,
    );
    conflict(file, flags.icc.is_some(), "icc", both);
    conflict(file, flags.ip_masq.is_some(), "ip-masq", both);
    conflict(file, flags.firewall_table.is_some(), "firewall-table", both);
    conflict(file, flags.dns_forward.is_some(), "dns-forward", both);
    let mut cfg = NetworkConfig::default();
    if let Some(b) = flags.bridge.clone().or(file_string(file, "bridge")?) {
        if b.is_empty() || b.len() > 15 || b.contains(['/', ' ']) {
            bail!("bridge {b:?}: an interface name is 1 to 15 characters without '/' or spaces");
        }
        if b == "none" {
            bail!("--bridge=none is not supported by berthd: use --network none per container");
        }
        cfg.bridge = b;
    }
    if let Some(bip) = flags.bip.clone().or(file_string(file, "bip")?) {
        let net: IpNet = bip.parse().with_context(|| {
            format!(
                "bip {bip:?}: expected the bridge's address with a prefix, such as 10.213.0.1/24"
            )
        })?;
        if !net.addr().is_ipv4() || net.addr() == net.network() {
            bail!(
                "bip {bip:?}: expected an IPv4 gateway address inside its subnet, such as 10.213.0.1/24"
            );
        }
        cfg.bip = Some(net);
    }
    if !flags.default_address_pools.is_empty() {
        cfg.default_pools = flags
            .default_address_pools
            .iter()
            .map(|p| parse_pool(p))
            .collect::<anyhow::Result<_>>()?;
    } else if let Some(v) = file.get("default-address-pools") {
        let list = v
            .as_array()
            .context("daemon.json: \"default-address-pools\" must be a list of {\"base\": CIDR, \"size\": N}")?;
        for p in list {
            let base = p
                .get("base")
                .and_then(Value::as_str)
                .map(|b| {
                    b.parse::<IpNet>()
                        .with_context(|| format!("default-address-pools: base {b:?} is not a CIDR"))
                })
                .transpose()?;
            let size = p
                .get("size")
                .and_then(Value::as_u64)
                .and_then(|s| u8::try_from(s).ok());
            cfg.default_pools.push(pool(&p.to_string(), base, size)?);
        }
    }
    if let Some(icc) = flags.icc.or(file_bool(file, "icc")?) {
        cfg.icc = icc;
    }
    if let Some(m) = flags.ip_masq.or(file_bool(file, "ip-masq")?) {
        cfg.ip_masq = m;
    }
    if let Some(t) = flags
        .firewall_table
        .clone()
        .or(file_string(file, "firewall-table")?)
    {
        if t.is_empty()
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            bail!("firewall table {t:?}: use letters, digits, '-' and '_'");
        }
        cfg.firewall_table = t;
    }
    if let Some(f) = flags.dns_forward.or(file_bool(file, "dns-forward")?) {
        cfg.dns_forward = f;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse() {
        let p = parse_pool("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!(p.base.to_string(), "10.10.0.0/16");
        assert_eq!(p.size, 24);
        assert!(parse_pool("base=10.10.0.0/16").is_err());
        assert!(parse_pool("base=10.10.0.0/16,size=8").is_err());
        assert!(parse_pool("size=24,base=nope").is_err());
    }
}
