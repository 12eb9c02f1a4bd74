//! `--insecure-registry` and `--registry-mirror`, checked like dockerd
//! (`registry.LoadInsecureRegistries`, `ValidateMirror`), and their
//! `RegistryConfig` for `/info`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, bail};
use berth_api::models::system::RegistryConfig;

/// Registries reached over plain HTTP (or TLS without verification), and
/// mirrors of Docker Hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registries {
    /// CIDRs (normalized, `10.0.0.0/8`) and `host[:port]` names.
    pub insecure: Vec<String>,
    /// Mirror URLs, normalized to `scheme://host[:port]/`.
    pub mirrors: Vec<String>,
}

/// Loopback is always insecure, as in dockerd.
const LOOPBACK_CIDRS: [&str; 2] = ["::1/128", "127.0.0.0/8"];

impl Registries {
    /// Checks and normalizes the entries; duplicates are dropped.
    pub fn new(insecure: &[String], mirrors: &[String]) -> anyhow::Result<Registries> {
        let mut r = Registries::default();
        for i in insecure {
            let n = insecure_entry(i)?;
            if !r.insecure.contains(&n) {
                r.insecure.push(n);
            }
        }
        for m in mirrors {
            let n = mirror(m)?;
            if !r.mirrors.contains(&n) {
                r.mirrors.push(n);
            }
        }
        Ok(r)
    }

    /// `/info`'s `RegistryConfig`, shaped like dockerd's: loopback and the
    /// CIDRs in `InsecureRegistryCIDRs`, `docker.io` and each insecure name
    /// in `IndexConfigs`, the mirrors in `Mirrors`.
    pub fn info(&self) -> RegistryConfig {
        let mut cidrs: Vec<String> = LOOPBACK_CIDRS.iter().map(|s| (*s).to_owned()).collect();
        let mut index = BTreeMap::new();
        index.insert(
            "docker.io".to_owned(),
            serde_json::json!({
                "Name": "docker.io",
                "Mirrors": self.mirrors,
                "Secure": true,
                "Official": true,
            }),
        );
        for i in &self.insecure {
            if parse_cidr(i).is_some() {
                if !cidrs.contains(i) {
                    cidrs.push(i.clone());
                }
            } else {
                index.insert(
                    i.clone(),
                    serde_json::json!({
                        "Name": i,
                        "Mirrors": [],
                        "Secure": false,
                        "Official": false,
                    }),
                );
            }
        }
        RegistryConfig {
            insecure_registry_cidrs: cidrs,
            index_configs: index,
            mirrors: self.mirrors.clone(),
        }
    }
}

/// An `--insecure-registry`: a CIDR (returned normalized) or `host[:port]`.
pub fn insecure_entry(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    if s.contains("://") {
        bail!("insecure registry {s:?} should not contain '://': give host[:port] or a CIDR");
    }
    if let Some((ip, bits)) = parse_cidr(s) {
        return Ok(format!("{}/{bits}", mask(ip, bits)));
    }
    if s.contains('/') {
        bail!("insecure registry {s:?} is neither a CIDR nor host[:port]");
    }
    host_port(s).with_context(|| format!("insecure registry {s:?}"))?;
    Ok(s.to_owned())
}

/// A `--registry-mirror`: an `http://` or `https://` URL with nothing after
/// the host but `/`; returned as `scheme://host[:port]/`.
pub fn mirror(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    let Some((scheme, rest)) = s.split_once("://") else {
        bail!("invalid mirror {s:?}: expected an http:// or https:// URL");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        bail!("invalid mirror {s:?}: unsupported scheme {scheme:?} (http or https)");
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        bail!("invalid mirror {s:?}: unsupported path/query/fragment at the end of the URI");
    }
    if authority.contains('@') {
        bail!("invalid mirror {s:?}: credentials are not supported in a mirror URL");
    }
    host_port(authority).with_context(|| format!("invalid mirror {s:?}"))?;
    Ok(format!("{scheme}://{authority}/"))
}

/// `10.1.0.0/16`, `fd00::/8` → (address, prefix length).
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// `host`, `host:port`, `1.2.3.4:5000`, `[::1]:5000`.
fn host_port(s: &str) -> anyhow::Result<()> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            bail!("unclosed '[' in {s:?}");
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            bail!("{h:?} is not an IPv6 address");
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => bail!("unexpected {p:?} after the address"),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    if let Some(h) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
            bail!("{h:?} is not a valid host name");
        }
    }
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |n| n == 0)
    {
        bail!("invalid port {p:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_entries() {
        assert_eq!(insecure_entry("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(insecure_entry("fd00:1::5/16").unwrap(), "fd00::/16");
        assert_eq!(insecure_entry("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        for ok in [
            "myreg:5000",
            "registry.example.com",
            "10.0.0.1:5000",
            "[::1]:5000",
        ] {
            assert_eq!(insecure_entry(ok).unwrap(), ok);
        }
        for bad in [
            "http://myreg:5000",
            "myreg:port",
            "myreg:0",
            "my_reg",
            "10.0.0.0/33",
            "a/b",
            "",
            "-x.com",
        ] {
            assert!(insecure_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mirrors() {
        assert_eq!(
            mirror("https://mirror.example.com").unwrap(),
            "https://mirror.example.com/"
        );
        assert_eq!(
            mirror("http://127.0.0.1:5000/").unwrap(),
            "http://127.0.0.1:5000/"
        );
        for bad in [
            "mirror.example.com",
            "ftp://m.example.com",
            "https://m.example.com/v2",
            "https://u:p@m.example.com",
            "https://",
            "https://m.example.com?x=1",
        ] {
            assert!(mirror(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn info_shape() {
        let r = Registries::new(
            &[
                "10.1.0.0/16".into(),
                "myreg:5000".into(),
                "127.0.0.0/8".into(),
                "myreg:5000".into(),
            ],
            &["https://m.example.com".into()],
        )
        .unwrap();
        let i = r.info();
        assert_eq!(
            i.insecure_registry_cidrs,
            vec!["::1/128", "127.0.0.0/8", "10.1.0.0/16"]
        );
        assert_eq!(i.index_configs["myreg:5000"]["Secure"], false);
        assert_eq!(
            i.index_configs["docker.io"]["Mirrors"][0],
            "https://m.example.com/"
        );
        assert_eq!(i.mirrors, vec!["https://m.example.com/"]);
    }
}
