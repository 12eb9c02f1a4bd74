//! IP address management: subnets (IPv4 and IPv6), ip-range, gateway, static and dynamic
//! allocation, release, overlap detection, default address pools.
//!
//! Pure logic and serde-serialisable: the engine keeps one [`Ipam`] (or its JSON) in its
//! store and saves it after every change. No syscalls in here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Why the address manager refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error(
        "network {network}: subnet {subnet} overlaps subnet {other} of network {other_network}"
    )]
    SubnetOverlap {
        network: String,
        subnet: IpNet,
        other: IpNet,
        other_network: String,
    },
    #[error("network {network}: subnet {subnet} has host bits set (did you mean {trunc}?)")]
    HostBitsSet {
        network: String,
        subnet: IpNet,
        trunc: IpNet,
    },
    #[error("network {network}: subnet {subnet} is too small to hold a gateway and containers")]
    SubnetTooSmall { network: String, subnet: IpNet },
    #[error("network {network}: ip-range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet {
        network: String,
        range: IpNet,
        subnet: IpNet,
    },
    #[error("network {network}: gateway {gateway} is not a usable address of subnet {subnet}")]
    GatewayOutsideSubnet {
        network: String,
        gateway: IpAddr,
        subnet: IpNet,
    },
    #[error("network {network}: address {ip} is not in any of its subnets ({subnets})")]
    IpOutsideSubnet {
        network: String,
        ip: IpAddr,
        subnets: String,
    },
    #[error("network {network}: address {ip} is the network or broadcast address of {subnet}")]
    IpReserved {
        network: String,
        ip: IpAddr,
        subnet: IpNet,
    },
    #[error("network {network}: address {ip} is already in use")]
    IpInUse { network: String, ip: IpAddr },
    #[error("network {network}: no free address left in {range}")]
    Exhausted { network: String, range: IpNet },
    #[error("network {network}: has no {family} subnet")]
    NoSubnet {
        network: String,
        family: &'static str,
    },
    #[error("network {network}: no free {family} subnet left in the default address pools")]
    PoolsExhausted {
        network: String,
        family: &'static str,
    },
    #[error("network {network}: already exists")]
    NetworkExists { network: String },
    #[error("network {network}: not found")]
    NetworkNotFound { network: String },
    #[error("network {network}: a subnet request mixes IPv4 and IPv6 ({detail})")]
    FamilyMismatch { network: String, detail: String },
}

/// One default address pool: carve `/size` subnets out of `base`
/// (Docker's `default-address-pools` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    pub base: IpNet,
    pub size: u8,
}

/// Configuration of the address manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConfig {
    /// Pools for networks created without a subnet, tried in order (IPv4 and IPv6 mixed;
    /// the family asked for picks the entries).
    pub default_pools: Vec<AddressPool>,
}

/// berth's default subnet for its default bridge (`berth0`): distinct from Docker's
/// 172.17.0.0/16 so both can run on one host.
pub const DEFAULT_BRIDGE_SUBNET: &str = "10.88.0.0/16";

impl Default for IpamConfig {
    fn default() -> Self {
        // 10.88.0.0/16 … 10.95.0.0/16, then 172.18-31 (skipping Docker's 172.17), then ULA /64s.
        let pools = [
            ("10.88.0.0/13", 16),
            ("172.18.0.0/15", 16),
            ("172.20.0.0/14", 16),
            ("172.24.0.0/13", 16),
            ("fd88:b3::/48", 64),
        ];
        IpamConfig {
            default_pools: pools
                .iter()
                .filter_map(|(base, size)| {
                    base.parse()
                        .ok()
                        .map(|base| AddressPool { base, size: *size })
                })
                .collect(),
        }
    }
}

/// IP family selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// What a network asks for, per subnet (`docker network create --subnet --ip-range --gateway`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRequest {
    /// The subnet; `None` picks one from the default pools (of `family`).
    pub subnet: Option<IpNet>,
    /// Dynamic addresses come from here (defaults to the whole subnet).
    pub ip_range: Option<IpNet>,
    /// Defaults to the first usable address of the subnet.
    pub gateway: Option<IpAddr>,
    /// Only used when `subnet` is `None`; defaults to IPv4.
    pub family: Option<Family>,
}

/// The state of one subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetState {
    pub subnet: IpNet,
    pub ip_range: Option<IpNet>,
    pub gateway: IpAddr,
    /// Addresses handed out (the gateway included).
    pub allocated: BTreeSet<IpAddr>,
    /// The last dynamically allocated address: the next search starts after it, so a
    /// released address is not reused at once (like Docker).
    pub last: Option<IpAddr>,
}

impl SubnetState {
    /// The gateway with the subnet's prefix, for the bridge (`10.88.0.1/16`).
    pub fn gateway_cidr(&self) -> IpNet {
        // The prefix is valid: it comes from a parsed subnet.
        IpNet::new(self.gateway, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }

    /// `ip` with this subnet's prefix, for an endpoint (`10.88.0.2/16`).
    pub fn cidr_of(&self, ip: IpAddr) -> IpNet {
        IpNet::new(ip, self.subnet.prefix_len()).unwrap_or(IpNet::from(ip))
    }

    fn family(&self) -> Family {
        Family::of(self.subnet.addr())
    }

    /// First and last usable address of the subnet (v4 excludes network and broadcast).
    fn usable(&self) -> (u128, u128) {
        usable_bounds(&self.subnet)
    }
}

/// All subnets of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkIpam {
    pub subnets: Vec<SubnetState>,
}

/// The address manager: every network's subnets and allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ipam {
    pub config: IpamConfig,
    pub networks: BTreeMap<String, NetworkIpam>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v: u128, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

fn usable_bounds(net: &IpNet) -> (u128, u128) {
    let lo = to_u128(net.network());
    let hi = to_u128(net.broadcast());
    match net {
        // /31 and /32 have no network/broadcast address to skip (RFC 3021).
        IpNet::V4(n) if n.prefix_len() >= 31 => (lo, hi),
        IpNet::V4(_) => (lo + 1, hi - 1),
        // The subnet-router anycast address (all zeros) is skipped for IPv6.
        IpNet::V6(n) if n.prefix_len() >= 127 => (lo, hi),
        IpNet::V6(_) => (lo + 1, hi),
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Ipam {
    /// An empty address manager with `config`.
    pub fn new(config: IpamConfig) -> Ipam {
        Ipam {
            config,
            networks: BTreeMap::new(),
        }
    }

    /// The state of `network`, if it is known.
    pub fn network(&self, network: &str) -> Option<&NetworkIpam> {
        self.networks.get(network)
    }

    /// Every subnet in use, with its network.
    pub fn subnets_in_use(&self) -> impl Iterator<Item = (&str, &IpNet)> {
        self.networks
            .iter()
            .flat_map(|(id, n)| n.subnets.iter().map(move |s| (id.as_str(), &s.subnet)))
    }

    fn check_overlap(
        &self,
        network: &str,
        subnet: &IpNet,
        also: &[IpNet],
    ) -> Result<(), IpamError> {
        if let Some((other_network, other)) = self
            .subnets_in_use()
            .find(|(_, other)| overlaps(subnet, other))
        {
            return Err(IpamError::SubnetOverlap {
                network: network.to_string(),
                subnet: *subnet,
                other: *other,
                other_network: other_network.to_string(),
            });
        }
        if let Some(other) = also.iter().find(|other| overlaps(subnet, other)) {
            return Err(IpamError::SubnetOverlap {
                network: network.to_string(),
                subnet: *subnet,
                other: *other,
                other_network: "(host route)".to_string(),
            });
        }
        Ok(())
    }

    /// Picks the first subnet of the default pools (of `family`) that overlaps neither a
    /// known network nor any of `reserved` (e.g. the host's routes).
    pub fn pick_default_subnet(
        &self,
        network: &str,
        family: Family,
        reserved: &[IpNet],
    ) -> Result<IpNet, IpamError> {
        for pool in &self.config.default_pools {
            if Family::of(pool.base.addr()) != family || pool.size < pool.base.prefix_len() {
                continue;
            }
            let Ok(candidates) = pool.base.subnets(pool.size) else {
                continue;
            };
            for candidate in candidates {
                if self.check_overlap(network, &candidate, reserved).is_ok() {
                    return Ok(candidate);
                }
            }
        }
        Err(IpamError::PoolsExhausted {
            network: network.to_string(),
            family: family.name(),
        })
    }

    /// Registers `network` with its subnets (validated, checked against every other
    /// network and `reserved`), and reserves the gateways. All or nothing.
    pub fn add_network(
        &mut self,
        network: &str,
        requests: &[SubnetRequest],
        reserved: &[IpNet],
    ) -> Result<&NetworkIpam, IpamError> {
        if self.networks.contains_key(network) {
            return Err(IpamError::NetworkExists {
                network: network.to_string(),
            });
        }
        let mut subnets: Vec<SubnetState> = Vec::new();
        let default_request = [SubnetRequest::default()];
        let requests = if requests.is_empty() {
            &default_request[..]
        } else {
            requests
        };
        for req in requests {
            let state = self.validate(network, req, reserved, &subnets)?;
            subnets.push(state);
        }
        self.networks
            .insert(network.to_string(), NetworkIpam { subnets });
        Ok(&self.networks[network])
    }

    fn validate(
        &self,
        network: &str,
        req: &SubnetRequest,
        reserved: &[IpNet],
        siblings: &[SubnetState],
    ) -> Result<SubnetState, IpamError> {
        let mismatch = |detail: String| IpamError::FamilyMismatch {
            network: network.to_string(),
            detail,
        };
        let subnet = match req.subnet {
            Some(subnet) => {
                if subnet.trunc() != subnet {
                    return Err(IpamError::HostBitsSet {
                        network: network.to_string(),
                        subnet,
                        trunc: subnet.trunc(),
                    });
                }
                // Reserved ranges (host routes) only guard automatic picks; an explicit
                // subnet is the user's decision, as with Docker. Other networks always count.
                self.check_overlap(network, &subnet, &[])?;
                subnet
            }
            None => {
                let mut taken: Vec<IpNet> = reserved.to_vec();
                taken.extend(siblings.iter().map(|s| s.subnet));
                self.pick_default_subnet(network, req.family.unwrap_or(Family::V4), &taken)?
            }
        };
        if let Some(sib) = siblings.iter().find(|s| overlaps(&s.subnet, &subnet)) {
            return Err(IpamError::SubnetOverlap {
                network: network.to_string(),
                subnet,
                other: sib.subnet,
                other_network: network.to_string(),
            });
        }
        let family = Family::of(subnet.addr());
        let (lo, hi) = usable_bounds(&subnet);
        // A gateway plus at least one container.
        if hi <= lo {
            return Err(IpamError::SubnetTooSmall {
                network: network.to_string(),
                subnet,
            });
        }
        if let Some(range) = req.ip_range {
            if Family::of(range.addr()) != family {
                return Err(mismatch(format!("ip-range {range} in subnet {subnet}")));
            }
            if !subnet.contains(&range) {
                return Err(IpamError::RangeOutsideSubnet {
                    network: network.to_string(),
                    range,
                    subnet,
                });
            }
        }
        let gateway = match req.gateway {
            Some(gw) => {
                if Family::of(gw) != family {
                    return Err(mismatch(format!("gateway {gw} in subnet {subnet}")));
                }
                let v = to_u128(gw);
                if !subnet.contains(&gw) || v < lo || v > hi {
                    return Err(IpamError::GatewayOutsideSubnet {
                        network: network.to_string(),
                        gateway: gw,
                        subnet,
                    });
                }
                gw
            }
            None => from_u128(lo, family),
        };
        Ok(SubnetState {
            subnet,
            ip_range: req.ip_range.map(|r| r.trunc()),
            gateway,
            allocated: BTreeSet::from([gateway]),
            last: None,
        })
    }

    /// Forgets `network` and every address it handed out. Idempotent.
    pub fn remove_network(&mut self, network: &str) -> bool {
        self.networks.remove(network).is_some()
    }

    /// Allocates an address in `network`: `requested` if given (must be a free, usable
    /// address of one of its subnets; ip-range does not apply), else the next free address
    /// of the ip-range (or subnet) of the first subnet of `family`.
    pub fn allocate(
        &mut self,
        network: &str,
        family: Family,
        requested: Option<IpAddr>,
    ) -> Result<IpAddr, IpamError> {
        let net = self
            .networks
            .get_mut(network)
            .ok_or_else(|| IpamError::NetworkNotFound {
                network: network.to_string(),
            })?;
        if let Some(ip) = requested {
            let list = net
                .subnets
                .iter()
                .map(|s| s.subnet.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let Some(state) = net.subnets.iter_mut().find(|s| s.subnet.contains(&ip)) else {
                return Err(IpamError::IpOutsideSubnet {
                    network: network.to_string(),
                    ip,
                    subnets: list,
                });
            };
            let (lo, hi) = state.usable();
            let v = to_u128(ip);
            if v < lo || v > hi {
                return Err(IpamError::IpReserved {
                    network: network.to_string(),
                    ip,
                    subnet: state.subnet,
                });
            }
            if !state.allocated.insert(ip) {
                return Err(IpamError::IpInUse {
                    network: network.to_string(),
                    ip,
                });
            }
            return Ok(ip);
        }
        let state = net
            .subnets
            .iter_mut()
            .find(|s| s.family() == family)
            .ok_or_else(|| IpamError::NoSubnet {
                network: network.to_string(),
                family: family.name(),
            })?;
        let range = state.ip_range.unwrap_or(state.subnet);
        let (slo, shi) = state.usable();
        // Like Docker, the range's own first (and IPv4 last) address is not handed out.
        let (rlo, rhi) = usable_bounds(&range);
        let lo = rlo.max(slo);
        let hi = rhi.min(shi);
        let exhausted = || IpamError::Exhausted {
            network: network.to_string(),
            range,
        };
        if hi < lo {
            return Err(exhausted());
        }
        let start = match state.last.map(to_u128) {
            Some(last) if last >= lo && last < hi => last + 1,
            _ => lo,
        };
        // Each probe either finds a free address or hits a distinct allocated one, so the
        // walk is bounded by the number of allocations (cheap even for a /64).
        let mut candidate = start;
        let mut probes: u128 = 0;
        let limit = (state.allocated.len() as u128).saturating_add(1);
        let span = hi - lo;
        while probes <= limit && probes <= span {
            let ip = from_u128(candidate, family);
            if !state.allocated.contains(&ip) {
                state.allocated.insert(ip);
                state.last = Some(ip);
                return Ok(ip);
            }
            candidate = if candidate >= hi { lo } else { candidate + 1 };
            probes += 1;
        }
        Err(exhausted())
    }

    /// Returns `ip` to `network`'s pool. Releasing the gateway or an unknown address is a
    /// no-op that returns false.
    pub fn release(&mut self, network: &str, ip: IpAddr) -> bool {
        let Some(net) = self.networks.get_mut(network) else {
            return false;
        };
        net.subnets
            .iter_mut()
            .find(|s| s.subnet.contains(&ip) && s.gateway != ip)
            .is_some_and(|s| s.allocated.remove(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }
    fn req(subnet: &str) -> SubnetRequest {
        SubnetRequest {
            subnet: Some(net(subnet)),
            ..Default::default()
        }
    }

    #[test]
    fn default_network_gets_berth_subnet_not_dockers() {
        let mut ipam = Ipam::default();
        let n = ipam.add_network("bridge", &[], &[]).expect("add");
        assert_eq!(n.subnets[0].subnet, net(DEFAULT_BRIDGE_SUBNET));
        assert_eq!(n.subnets[0].gateway, ip("10.88.0.1"));
        assert_eq!(n.subnets[0].gateway_cidr(), net("10.88.0.1/16"));
        let n2 = ipam.add_network("second", &[], &[]).expect("add");
        assert_eq!(n2.subnets[0].subnet, net("10.89.0.0/16"));
        // A host route on 10.90/16 is skipped.
        let n3 = ipam
            .add_network("third", &[], &[net("10.90.0.0/24")])
            .expect("add");
        assert_eq!(n3.subnets[0].subnet, net("10.91.0.0/16"));
        for (_, s) in ipam.subnets_in_use() {
            assert!(!overlaps(s, &net("172.17.0.0/16")));
        }
    }

    #[test]
    fn pools_exhaust() {
        let mut ipam = Ipam::new(IpamConfig {
            default_pools: vec![AddressPool {
                base: net("10.200.0.0/23"),
                size: 24,
            }],
        });
        ipam.add_network("a", &[], &[]).expect("a");
        ipam.add_network("b", &[], &[]).expect("b");
        let err = ipam.add_network("c", &[], &[]).expect_err("c");
        assert!(matches!(err, IpamError::PoolsExhausted { .. }), "{err}");
        assert!(err.to_string().contains("network c"));
    }

    #[test]
    fn overlap_is_refused_and_names_the_other_network() {
        let mut ipam = Ipam::default();
        ipam.add_network("one", &[req("192.168.10.0/24")], &[])
            .expect("one");
        let err = ipam
            .add_network("two", &[req("192.168.0.0/16")], &[])
            .expect_err("overlap");
        assert_eq!(
            err.to_string(),
            "network two: subnet 192.168.0.0/16 overlaps subnet 192.168.10.0/24 of network one"
        );
        assert!(ipam.network("two").is_none());
        ipam.add_network("three", &[req("192.168.11.0/24")], &[])
            .expect("adjacent is fine");
        let err = ipam
            .add_network("four", &[req("192.168.11.5/24")], &[])
            .expect_err("host bits");
        assert!(matches!(err, IpamError::HostBitsSet { .. }));
    }

    #[test]
    fn sequential_allocation_release_and_exhaustion() {
        let mut ipam = Ipam::default();
        ipam.add_network("n", &[req("10.10.0.0/29")], &[])
            .expect("add");
        // .0 network, .1 gateway, .7 broadcast: .2-.6 are free.
        let got: Vec<IpAddr> = (0..5)
            .map(|_| ipam.allocate("n", Family::V4, None).expect("alloc"))
            .collect();
        assert_eq!(got.first(), Some(&ip("10.10.0.2")));
        assert_eq!(got.last(), Some(&ip("10.10.0.6")));
        let err = ipam.allocate("n", Family::V4, None).expect_err("exhausted");
        assert_eq!(
            err.to_string(),
            "network n: no free address left in 10.10.0.0/29"
        );
        assert!(ipam.release("n", ip("10.10.0.4")));
        assert!(!ipam.release("n", ip("10.10.0.4")));
        assert!(!ipam.release("n", ip("10.10.0.1")), "gateway stays");
        assert_eq!(
            ipam.allocate("n", Family::V4, None).expect("again"),
            ip("10.10.0.4")
        );
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut ipam = Ipam::default();
        ipam.add_network("n", &[req("10.10.0.0/24")], &[])
            .expect("add");
        let a = ipam.allocate("n", Family::V4, None).expect("a");
        ipam.release("n", a);
        let b = ipam.allocate("n", Family::V4, None).expect("b");
        assert_ne!(a, b);
    }

    #[test]
    fn static_ips() {
        let mut ipam = Ipam::default();
        let r = SubnetRequest {
            subnet: Some(net("10.20.0.0/16")),
            ip_range: Some(net("10.20.5.0/24")),
            gateway: Some(ip("10.20.0.254")),
            family: None,
        };
        ipam.add_network("n", &[r], &[]).expect("add");
        assert_eq!(
            ipam.allocate("n", Family::V4, None).expect("dyn"),
            ip("10.20.5.1")
        );
        // Static outside the range but inside the subnet is fine.
        assert_eq!(
            ipam.allocate("n", Family::V4, Some(ip("10.20.9.9")))
                .expect("static"),
            ip("10.20.9.9")
        );
        let err = ipam
            .allocate("n", Family::V4, Some(ip("10.21.0.5")))
            .expect_err("outside");
        assert_eq!(
            err.to_string(),
            "network n: address 10.21.0.5 is not in any of its subnets (10.20.0.0/16)"
        );
        let err = ipam
            .allocate("n", Family::V4, Some(ip("10.20.0.254")))
            .expect_err("gateway");
        assert!(matches!(err, IpamError::IpInUse { .. }));
        let err = ipam
            .allocate("n", Family::V4, Some(ip("10.20.255.255")))
            .expect_err("broadcast");
        assert!(matches!(err, IpamError::IpReserved { .. }));
        let err = ipam
            .allocate("n", Family::V4, Some(ip("10.20.9.9")))
            .expect_err("dup");
        assert!(matches!(err, IpamError::IpInUse { .. }));
    }

    #[test]
    fn bad_requests() {
        let mut ipam = Ipam::default();
        let r = SubnetRequest {
            subnet: Some(net("10.30.0.0/24")),
            ip_range: Some(net("10.31.0.0/25")),
            ..Default::default()
        };
        assert!(matches!(
            ipam.add_network("n", &[r], &[]),
            Err(IpamError::RangeOutsideSubnet { .. })
        ));
        let r = SubnetRequest {
            subnet: Some(net("10.30.0.0/24")),
            gateway: Some(ip("10.30.1.1")),
            ..Default::default()
        };
        assert!(matches!(
            ipam.add_network("n", &[r], &[]),
            Err(IpamError::GatewayOutsideSubnet { .. })
        ));
        assert!(matches!(
            ipam.add_network("n", &[req("10.30.0.0/32")], &[]),
            Err(IpamError::SubnetTooSmall { .. })
        ));
        assert!(matches!(
            ipam.allocate("missing", Family::V4, None),
            Err(IpamError::NetworkNotFound { .. })
        ));
    }

    #[test]
    fn ipv6_dual_stack_and_serde_round_trip() {
        let mut ipam = Ipam::default();
        ipam.add_network(
            "dual",
            &[
                req("10.40.0.0/24"),
                SubnetRequest {
                    family: Some(Family::V6),
                    ..Default::default()
                },
            ],
            &[],
        )
        .expect("add");
        let n = ipam.network("dual").expect("n");
        assert_eq!(n.subnets[1].subnet, net("fd88:b3::/64"));
        assert_eq!(n.subnets[1].gateway, ip("fd88:b3::1"));
        let v6 = ipam.allocate("dual", Family::V6, None).expect("v6");
        assert_eq!(v6, ip("fd88:b3::2"));
        let v4 = ipam.allocate("dual", Family::V4, None).expect("v4");
        assert_eq!(v4, ip("10.40.0.2"));
        let json = serde_json::to_string(&ipam).expect("ser");
        let back: Ipam = serde_json::from_str(&json).expect("de");
        assert_eq!(back, ipam);
        let mut ipam = back;
        assert!(ipam.remove_network("dual"));
        assert!(!ipam.remove_network("dual"));
        let err = ipam.allocate("dual", Family::V4, None).expect_err("gone");
        assert!(matches!(err, IpamError::NetworkNotFound { .. }));
    }

    #[test]
    fn v6_family_mismatch() {
        let mut ipam = Ipam::default();
        let r = SubnetRequest {
            subnet: Some(net("fd00:1::/64")),
            gateway: Some(ip("10.0.0.1")),
            ..Default::default()
        };
        assert!(matches!(
            ipam.add_network("n", &[r], &[]),
            Err(IpamError::FamilyMismatch { .. })
        ));
    }
}
