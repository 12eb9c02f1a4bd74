//! Published ports: `HostConfig.PortBindings` and `PublishAllPorts` as
//! requests, the host ports chosen at start, and Docker's views of them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_net::ports::{PortMapping, Protocol, reserve_one};
use serde::{Deserialize, Serialize};

use crate::containers::config::PortBinding;
use crate::error::EngineError;

/// One port a container asks to publish; host ports `host_lo..=host_hi`
/// (both 0: any free port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// tcp or udp.
    pub protocol: Protocol,
    /// In the container.
    pub container_port: u16,
    /// Host address; `None`: every address.
    pub host_ip: Option<IpAddr>,
    /// First acceptable host port.
    pub host_lo: u16,
    /// Last acceptable host port.
    pub host_hi: u16,
}

/// A port published while the container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// In the container.
    pub container_port: u16,
    /// Host address (`0.0.0.0` for every address).
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
}

/// `80/tcp`, `53/udp`, `80` → (port, protocol).
pub fn parse_port_key(key: &str) -> Result<(u16, Protocol), EngineError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" | "" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => {
            return Err(EngineError::NotImplemented(format!(
                "publishing sctp ports is not supported by berthd: {key}"
            )));
        }
        other => {
            return Err(EngineError::InvalidArgument(format!(
                "invalid proto: {other}"
            )));
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            EngineError::InvalidArgument(format!("invalid port specification: \"{key}\""))
        })?;
    Ok((port, protocol))
}

fn parse_host_ports(s: &str) -> Result<(u16, u16), EngineError> {
    let bad = || EngineError::InvalidArgument(format!("invalid hostPort: {s}"));
    if s.is_empty() {
        return Ok((0, 0));
    }
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// What the host config asks to publish; with `publish_all`, every exposed
/// port without a binding gets an ephemeral one.
pub fn requests(
    bindings: &BTreeMap<String, Option<Vec<PortBinding>>>,
    publish_all: bool,
    exposed: &[String],
) -> Result<Vec<PortRequest>, EngineError> {
    let mut out = Vec::new();
    for (key, list) in bindings {
        let (container_port, protocol) = parse_port_key(key)?;
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![PortBinding::default()]
        } else {
            list
        };
        for b in list {
            let host_ip = match b.host_ip.trim_matches(['[', ']']) {
                "" => None,
                ip => Some(ip.parse::<IpAddr>().map_err(|_| {
                    EngineError::InvalidArgument(format!("invalid host IP address: {}", b.host_ip))
                })?),
            };
            let (host_lo, host_hi) = parse_host_ports(&b.host_port)?;
            out.push(PortRequest {
                protocol,
                container_port,
                host_ip,
                host_lo,
                host_hi,
            });
        }
    }
    if publish_all {
        for key in exposed {
            let (container_port, protocol) = parse_port_key(key)?;
            if !out
                .iter()
                .any(|r| r.container_port == container_port && r.protocol == protocol)
            {
                out.push(PortRequest {
                    protocol,
                    container_port,
                    host_ip: None,
                    host_lo: 0,
                    host_hi: 0,
                });
            }
        }
    }
    Ok(out)
}

/// Picks the host port of each request: the one asked for, the first free
/// one of a range, or a free ephemeral one.
pub fn choose(requests: &[PortRequest]) -> Result<Vec<PortMapping>, EngineError> {
    let mut out: Vec<PortMapping> = Vec::new();
    for r in requests {
        let ip = r
            .host_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let taken = |p: u16| {
            out.iter()
                .any(|m| m.host_port == p && m.protocol == r.protocol && m.bind_ip() == ip)
        };
        let host_port = if r.host_lo != 0 && r.host_lo == r.host_hi {
            r.host_lo
        } else if r.host_lo == 0 {
            // The kernel's choice from its ephemeral range, as Docker does.
            let fd = reserve_one(r.protocol, ip, 0)?;
            let addr: nix::sys::socket::SockaddrStorage =
                nix::sys::socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))
                    .map_err(|e| EngineError::Internal(format!("choose a host port: {e}")))?;
            addr.as_sockaddr_in()
                .map(|a| a.port())
                .or_else(|| addr.as_sockaddr_in6().map(|a| a.port()))
                .ok_or_else(|| EngineError::Internal("choose a host port: no address".into()))?
        } else {
            (r.host_lo..=r.host_hi)
                .find(|p| !taken(*p) && reserve_one(r.protocol, ip, *p).is_ok())
                .ok_or_else(|| {
                    EngineError::Internal(format!(
                        "Bind for {ip}:{}-{} failed: port is already allocated",
                        r.host_lo, r.host_hi
                    ))
                })?
        };
        let m = PortMapping {
            protocol: r.protocol,
            host_ip: r.host_ip,
            host_port,
            container_port: r.container_port,
            count: 1,
        };
        m.validate()?;
        out.push(m);
    }
    Ok(out)
}

/// The record's form of a mapping.
pub fn published(m: &PortMapping) -> PublishedPort {
    PublishedPort {
        protocol: m.protocol.as_str().to_owned(),
        container_port: m.container_port,
        host_ip: m.bind_ip().to_string(),
        host_port: m.host_port,
    }
}

/// A recorded port as a mapping again (to reserve it after a restart).
pub fn mapping(p: &PublishedPort) -> PortMapping {
    let host_ip = p
        .host_ip
        .parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified());
    PortMapping {
        protocol: if p.protocol == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        host_ip,
        host_port: p.host_port,
        container_port: p.container_port,
        count: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, port: &str) -> PortBinding {
        PortBinding {
            host_ip: ip.into(),
            host_port: port.into(),
        }
    }

    #[test]
    fn bindings_parse() {
        let mut m = BTreeMap::new();
        m.insert("80/tcp".to_owned(), Some(vec![b("127.0.0.1", "8080")]));
        m.insert("53/udp".to_owned(), None);
        m.insert("90".to_owned(), Some(vec![b("", "9000-9010")]));
        let r = requests(&m, true, &["80/tcp".into(), "443/tcp".into()]).unwrap();
        assert_eq!(r.len(), 4);
        let p80 = r.iter().find(|x| x.container_port == 80).unwrap();
        assert_eq!(p80.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((p80.host_lo, p80.host_hi), (8080, 8080));
        let p53 = r.iter().find(|x| x.container_port == 53).unwrap();
        assert_eq!(p53.protocol, Protocol::Udp);
        assert_eq!((p53.host_lo, p53.host_hi), (0, 0));
        let p90 = r.iter().find(|x| x.container_port == 90).unwrap();
        assert_eq!((p90.host_lo, p90.host_hi), (9000, 9010));
        assert!(r.iter().any(|x| x.container_port == 443 && x.host_lo == 0));
    }

    #[test]
    fn bad_bindings_are_named() {
        let mut m = BTreeMap::new();
        m.insert("x/tcp".to_owned(), None);
        assert!(requests(&m, false, &[]).is_err());
        let mut m = BTreeMap::new();
        m.insert("80/tcp".to_owned(), Some(vec![b("nope", "1")]));
        let e = requests(&m, false, &[]).unwrap_err().to_string();
        assert!(e.contains("invalid host IP address: nope"), "{e}");
        let mut m = BTreeMap::new();
        m.insert("80/tcp".to_owned(), Some(vec![b("", "9-1")]));
        assert!(requests(&m, false, &[]).is_err());
    }

    #[test]
    fn ephemeral_ports_are_chosen() {
        let r = PortRequest {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_lo: 0,
            host_hi: 0,
        };
        let m = choose(&[r]).unwrap();
        assert_ne!(m[0].host_port, 0);
        assert_eq!(published(&m[0]).host_ip, "127.0.0.1");
        assert_eq!(mapping(&published(&m[0])), m[0]);
    }
}
