//! Port mappings (`-p [ip:]host[-end]:container[-end][/proto]`) and host-port reservations.
//!
//! Publishing a port first *reserves* it: berth binds the host address and port itself and
//! holds the socket for as long as the mapping lives (as Docker does), so a port already in
//! use fails with [`NetError::PortInUse`] naming it, and nothing else can take it later.
//! The held sockets are also where traffic that the DNAT rules leave alone (from
//! containers, through a bridge) arrives: [`crate::proxy::UserlandProxy::relay`] relays it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, sockopt,
};
use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};

/// Transport protocol of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `"tcp"` / `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port or range of ports: host `host_port..host_port+count` maps one to one
/// onto container `container_port..container_port+count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    /// Host address to listen on; `None` means every address (0.0.0.0).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    /// Number of consecutive ports (1 for a single port).
    pub count: u16,
}

impl PortMapping {
    /// A single TCP port.
    pub fn tcp(host_ip: Option<IpAddr>, host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            host_ip,
            host_port,
            container_port,
            count: 1,
        }
    }

    /// A single UDP port.
    pub fn udp(host_ip: Option<IpAddr>, host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            protocol: Protocol::Udp,
            ..PortMapping::tcp(host_ip, host_port, container_port)
        }
    }

    /// The host address to bind (the wildcard when none was given).
    pub fn bind_ip(&self) -> IpAddr {
        self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// Checks ports are non-zero and ranges stay below 65536.
    pub fn validate(&self) -> Result<()> {
        let bad = |problem: &str| NetError::BadPortMapping {
            mapping: self.to_string(),
            problem: problem.to_string(),
        };
        if self.count == 0 {
            return Err(bad("empty port range"));
        }
        if self.host_port == 0 || self.container_port == 0 {
            return Err(bad("port 0 cannot be published"));
        }
        let last = u32::from(self.count) - 1;
        if u32::from(self.host_port) + last > 65535 || u32::from(self.container_port) + last > 65535
        {
            return Err(bad("port range goes past 65535"));
        }
        Ok(())
    }

    /// `(host_port, container_port)` for every port of the range.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.count).map(move |i| {
            (
                self.host_port.saturating_add(i),
                self.container_port.saturating_add(i),
            )
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.bind_ip();
        let ip = if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        if self.count <= 1 {
            write!(
                f,
                "{ip}:{}:{}/{}",
                self.host_port, self.container_port, self.protocol
            )
        } else {
            let last = self.count.saturating_sub(1);
            write!(
                f,
                "{ip}:{}-{}:{}-{}/{}",
                self.host_port,
                self.host_port.saturating_add(last),
                self.container_port,
                self.container_port.saturating_add(last),
                self.protocol
            )
        }
    }
}

/// One reserved host port: the bound socket and where it maps to in the container.
#[derive(Debug)]
pub struct HeldPort {
    pub protocol: Protocol,
    /// The bound host address and port.
    pub host: SocketAddr,
    /// The port in the container.
    pub container_port: u16,
    /// The bound socket (TCP: listening).
    pub socket: OwnedFd,
}

/// Host ports held by berth so nobody else can take them: UDP sockets bound, TCP sockets
/// bound and listening (nothing is accepted until
/// [`crate::proxy::UserlandProxy::relay`] takes them over and relays what comes in).
#[derive(Debug, Default)]
pub struct PortReservation {
    held: Vec<HeldPort>,
}

impl PortReservation {
    /// Binds every host port of `mappings`; the first one in use fails the whole call
    /// with [`NetError::PortInUse`].
    pub fn reserve(mappings: &[PortMapping]) -> Result<PortReservation> {
        let mut reservation = PortReservation::default();
        for m in mappings {
            m.validate()?;
            for (host_port, container_port) in m.pairs() {
                reservation.held.push(HeldPort {
                    protocol: m.protocol,
                    host: SocketAddr::new(m.bind_ip(), host_port),
                    container_port,
                    socket: reserve_one(m.protocol, m.bind_ip(), host_port)
                        .and_then(|fd| listen_tcp(m.protocol, m.bind_ip(), host_port, fd))?,
                });
            }
        }
        Ok(reservation)
    }

    /// How many ports are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The held ports.
    pub fn ports(&self) -> &[HeldPort] {
        &self.held
    }

    /// The held ports, to hand over to a proxy.
    pub fn into_ports(self) -> Vec<HeldPort> {
        self.held
    }
}

/// TCP: `listen()` on a socket from [`reserve_one`].
fn listen_tcp(proto: Protocol, ip: IpAddr, port: u16, fd: OwnedFd) -> Result<OwnedFd> {
    if proto == Protocol::Tcp {
        listen(&fd, Backlog::MAXCONN).map_err(|e| NetError::PortInUse {
            proto,
            host_ip: ip,
            port,
            source: e.into(),
        })?;
    }
    Ok(fd)
}

/// Binds (without listening) `ip:port`. TCP sockets get `SO_REUSEADDR`, which on Linux
/// still fails next to a listening socket or a socket bound without it, but not next to
/// the `TIME_WAIT` leftovers of connections relayed by an earlier listener on the port
/// (a restarted daemon re-reserves it at once). UDP sockets do not: there it would let two
/// sockets share the port.
pub fn reserve_one(proto: Protocol, ip: IpAddr, port: u16) -> Result<OwnedFd> {
    let in_use = |source: std::io::Error| NetError::PortInUse {
        proto,
        host_ip: ip,
        port,
        source,
    };
    let family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let ty = match proto {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, None).map_err(|e| in_use(e.into()))?;
    if proto == Protocol::Tcp {
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| in_use(e.into()))?;
    }
    use std::os::fd::AsRawFd;
    let bound = match SocketAddr::new(ip, port) {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    bound.map_err(|e| in_use(e.into()))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_validate() {
        let m = PortMapping {
            protocol: Protocol::Udp,
            host_ip: None,
            host_port: 8000,
            container_port: 80,
            count: 3,
        };
        assert_eq!(m.to_string(), "0.0.0.0:8000-8002:80-82/udp");
        assert_eq!(
            m.pairs().collect::<Vec<_>>(),
            vec![(8000, 80), (8001, 81), (8002, 82)]
        );
        assert!(m.validate().is_ok());
        let bad = PortMapping {
            host_port: 65535,
            ..m.clone()
        };
        assert!(bad.validate().is_err());
        let bad = PortMapping { count: 0, ..m };
        assert!(bad.validate().is_err());
    }

    /// A listener on a port below the ephemeral range (32768 on), which
    /// parallel tests binding port 0 never get; each call starts looking
    /// somewhere else.
    fn listener_outside_ephemeral_range() -> (std::net::TcpListener, u16) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let start = std::process::id() % 12_000
            + NEXT.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed);
        (0..2_000)
            .map(|i| 20_000 + ((start + i) % 12_000) as u16)
            .find_map(|p| {
                std::net::TcpListener::bind(("127.0.0.1", p))
                    .ok()
                    .map(|l| (l, p))
            })
            .expect("a free port in 20000..32000")
    }

    #[test]
    fn reservation_detects_a_listener() {
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        // Once (CI, 2026-11-27) another process had the port between the
        // drop and the second reservation: a port taken by someone else is
        // not the code's fault, so that part may try other ports.
        let mut taken = Vec::new();
        for _ in 0..5 {
            let (l, port) = listener_outside_ephemeral_range();
            let err =
                PortReservation::reserve(&[PortMapping::tcp(lo, port, 80)]).expect_err("in use");
            let text = err.to_string();
            assert!(
                text.contains(&format!("tcp port {port} on 127.0.0.1")),
                "{text}"
            );
            drop(l);
            match PortReservation::reserve(&[PortMapping::tcp(lo, port, 80)]) {
                Ok(held) => {
                    assert_eq!(held.len(), 1);
                    // While held, another bind fails.
                    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
                    return;
                }
                Err(e) => taken.push(e.to_string()),
            }
        }
        panic!("no port was free again after its listener went: {taken:?}");
    }
}
