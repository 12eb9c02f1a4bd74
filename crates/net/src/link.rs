//! Links, addresses and routes over rtnetlink, in the host or inside a [`NetNs`].
//!
//! A [`Netlink`] owns one rtnetlink socket. The socket belongs to the namespace it was
//! created in, so [`Netlink::in_netns`] creates it on a thread that joined the target
//! namespace and then drives it from the caller's tokio runtime: every request on that
//! handle acts inside the namespace, with no `setns` on runtime threads.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::task::JoinHandle;

use crate::error::{NetError, Result};
use crate::netns::NetNs;

const EEXIST: i32 = libc::EEXIST;
const ENODEV: i32 = libc::ENODEV;
const ENOENT: i32 = libc::ENOENT;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;

const RT_TABLE_MAIN: u8 = 254;

/// Maximum interface name length (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// An rtnetlink connection bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    handle: Handle,
    conn: JoinHandle<()>,
    ns: String,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// The positive errno inside a netlink error, if it is one.
pub fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

/// Checks a Linux interface name (1..=15 bytes, no `/`, whitespace or `:`).
pub fn check_ifname(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_IFNAME {
        Some("longer than 15 bytes")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        Some("contains '/', ':' or whitespace")
    } else if name == "." || name == ".." {
        Some("reserved")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(NetError::BadName {
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// A MAC address derived from an IP like Docker does: `02:42` followed by the four bytes
/// of an IPv4 address; for IPv6, `02:42` followed by the last four bytes.
pub fn mac_from_ip(ip: IpAddr) -> [u8; 6] {
    let tail: [u8; 4] = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0x42, tail[0], tail[1], tail[2], tail[3]]
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Netlink {
    /// A connection in the namespace of the calling thread (the host's, for berthd).
    /// Must be called inside a tokio runtime.
    pub fn new() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::NetlinkSocket)?;
        Ok(Netlink {
            handle,
            conn: tokio::spawn(conn),
            ns: "host".to_string(),
        })
    }

    /// A connection whose socket lives in `ns`: requests configure that namespace.
    /// Must be called inside a tokio runtime.
    pub fn in_netns(ns: &NetNs) -> Result<Netlink> {
        Self::in_netns_after(ns, || Ok(()))
    }

    /// [`Netlink::in_netns`], running `first` in `ns` (on the thread that makes the
    /// socket) before: for what only a thread inside can do, such as a sysctl.
    pub fn in_netns_after(
        ns: &NetNs,
        first: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<Netlink> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns.run(move || {
            first()?;
            // Registering the socket with the reactor needs the runtime's context.
            let _guard = rt.enter();
            rtnetlink::new_connection().map_err(NetError::NetlinkSocket)
        })??;
        Ok(Netlink {
            handle,
            conn: tokio::spawn(conn),
            ns: ns.name().to_string(),
        })
    }

    /// A new namespace pinned at `dir/name` ([`NetNs::create_then`]) and a connection in
    /// it, made on the one thread that created it, after `first` ran there.
    pub fn in_new_netns(
        dir: &std::path::Path,
        name: &str,
        first: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<(NetNs, Netlink)> {
        let rt = tokio::runtime::Handle::current();
        let (ns, made) = NetNs::create_then(dir, name, move || {
            first()?;
            let _guard = rt.enter();
            rtnetlink::new_connection().map_err(NetError::NetlinkSocket)
        })?;
        match made {
            Ok((conn, handle, _)) => {
                let nl = Netlink {
                    handle,
                    conn: tokio::spawn(conn),
                    ns: ns.name().to_string(),
                };
                Ok((ns, nl))
            }
            Err(e) => {
                let _ = ns.delete();
                Err(e)
            }
        }
    }

    /// The raw rtnetlink handle, for requests this type does not wrap.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    fn obj(&self, name: &str) -> String {
        if self.ns == "host" {
            name.to_string()
        } else {
            format!("{name} (netns {})", self.ns)
        }
    }

    /// The link called `name`, if there is one.
    pub async fn get_link(&self, name: &str) -> Result<Option<LinkMessage>> {
        check_ifname(name)?;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if matches!(errno_of(&e), Some(ENODEV) | Some(ENOENT)) => Ok(None),
            Err(e) => Err(NetError::link(&self.obj(name), "get", e)),
        }
    }

    /// The index of link `name`, if it exists.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(name).await?.map(|l| l.header.index))
    }

    /// The index of link `name`, or [`NetError::LinkNotFound`].
    pub async fn require_link(&self, name: &str) -> Result<u32> {
        self.link_index(name)
            .await?
            .ok_or_else(|| NetError::LinkNotFound {
                name: self.obj(name),
            })
    }

    /// Names of all links whose controller (master) is link `index`.
    pub async fn ports_of(&self, index: u32) -> Result<Vec<String>> {
        let mut links = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|e| NetError::link(&self.obj("*"), "list", e))?
        {
            let mut name = None;
            let mut controller = None;
            for attr in &link.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Controller(c) => controller = Some(*c),
                    _ => {}
                }
            }
            if let (Some(name), Some(c)) = (name, controller)
                && c == index
            {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Sets link `name` up.
    pub async fn set_up(&self, name: &str) -> Result<()> {
        let index = self.require_link(name).await?;
        self.set_up_at(index, name).await
    }

    /// [`Netlink::set_up`] of the link of index `index` (named `name` in errors).
    pub async fn set_up_at(&self, index: u32, name: &str) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetError::link(&self.obj(name), "set up", e))
    }

    /// Gives the link of index `index` (down: some drivers refuse a change while up) MAC address
    /// `mac` and sets it up, in one request.
    pub async fn set_mac_up_at(&self, index: u32, name: &str, mac: [u8; 6]) -> Result<()> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .address(mac.to_vec())
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| NetError::link(&self.obj(name), "set MAC address and up", e))
    }

    /// Makes link `name` a port of the bridge of index `controller` and sets it up, in
    /// one request.
    pub async fn set_controller_up(&self, name: &str, controller: u32) -> Result<()> {
        check_ifname(name)?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_name(name)
                    .controller(controller)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| NetError::link(&self.obj(name), "add to bridge and set up", e))
    }

    /// Brings `lo` up (a new namespace starts with it down).
    pub async fn loopback_up(&self) -> Result<()> {
        // The kernel gives `lo` this index in every namespace.
        const LOOPBACK_INDEX: u32 = 1;
        self.set_up_at(LOOPBACK_INDEX, "lo").await
    }

    /// Creates bridge `name` (up) unless it exists; returns its index.
    pub async fn ensure_bridge(&self, name: &str, mtu: Option<u32>) -> Result<u32> {
        check_ifname(name)?;
        if let Some(index) = self.link_index(name).await? {
            return Ok(index);
        }
        let mut builder = LinkBridge::new(name);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        match self.handle.link().add(builder.build()).execute().await {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(EEXIST) => {}
            Err(e) => return Err(NetError::link(&self.obj(name), "create bridge", e)),
        }
        self.require_link(name).await
    }

    /// Adds `addr` (address and prefix) to link `name`; an address already there is fine.
    pub async fn add_address(&self, name: &str, addr: IpNet) -> Result<()> {
        let index = self.require_link(name).await?;
        self.add_address_at(index, name, addr).await
    }

    /// [`Netlink::add_address`] on the link of index `index` (named `name` in errors).
    pub async fn add_address_at(&self, index: u32, name: &str, addr: IpNet) -> Result<()> {
        match self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(EEXIST) => Ok(()),
            Err(e) => Err(NetError::Addr {
                object: format!("address {addr}"),
                link: self.obj(name),
                op: "add",
                source: Box::new(e),
            }),
        }
    }

    /// Creates a veth pair: `name` in this namespace, its peer `peer` (with MAC `mac`)
    /// directly in namespace `ns`. Made there rather than moved there afterwards: moving
    /// a link between namespaces waits for an RCU grace period in the kernel (20-30 ms
    /// per link on a 2-CPU VM), creating it in place does not. With `controller`, `name`
    /// is made a port of that bridge (by index) at once. Both ends are left down.
    pub async fn create_veth_into(
        &self,
        name: &str,
        peer: &str,
        ns: &NetNs,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
        controller: Option<u32>,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        check_ifname(name)?;
        check_ifname(peer)?;
        let file = ns.open_file()?;
        let mut peer_msg = LinkUnspec::new_with_name(peer).setns_by_fd(file.as_raw_fd());
        if let Some(mac) = mac {
            peer_msg = peer_msg.address(mac.to_vec());
        }
        let mut builder = LinkVeth::new(name, peer);
        if let Some(index) = controller {
            builder = builder.controller(index);
        }
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
            peer_msg = peer_msg.mtu(mtu);
        }
        let builder = builder.set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())));
        self.handle
            .link()
            .add(builder.build())
            .execute()
            .await
            .map_err(|e| NetError::link(&self.obj(name), "create veth pair", e))
    }

    /// Sets link `name` up, found by name by the kernel (one request, no lookup first).
    pub async fn set_up_by_name(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_name(name).up().build())
            .execute()
            .await
            .map_err(|e| NetError::link(&self.obj(name), "set up", e))
    }

    /// Takes link `name` off its bridge (`ip link set NAME nomaster`). Idempotent: a
    /// missing link is fine. Much cheaper than deleting a veth, which waits for an RCU
    /// grace period (15–25 ms here).
    pub async fn detach_from_bridge(&self, name: &str) -> Result<()> {
        check_ifname(name)?;
        // By name: one request, no lookup first.
        match self
            .handle
            .link()
            .set(LinkUnspec::new_with_name(name).nocontroller().build())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(ENODEV) => Ok(()),
            Err(e) => Err(NetError::link(&self.obj(name), "detach from bridge", e)),
        }
    }

    /// Sets the bridge-port `isolated` flag: isolated ports cannot talk to each other,
    /// only to non-isolated ports and the bridge itself (used for `icc=false`).
    pub async fn set_port_isolated(&self, name: &str, isolated: bool) -> Result<()> {
        let index = self.require_link(name).await?;
        self.handle
            .link()
            .set_port(LinkBridgePort::new(index).isolated(isolated).build())
            .execute()
            .await
            .map_err(|e| NetError::link(&self.obj(name), "set bridge port isolated", e))
    }

    /// Adds a default route via `gateway` out of link `name`.
    pub async fn add_default_route(&self, name: &str, gateway: IpAddr) -> Result<()> {
        let index = self.require_link(name).await?;
        self.add_default_route_at(index, name, gateway).await
    }

    /// [`Netlink::add_default_route`] out of the link of index `index` (named `name`
    /// in errors).
    pub async fn add_default_route_at(
        &self,
        index: u32,
        name: &str,
        gateway: IpAddr,
    ) -> Result<()> {
        let route = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        match self.handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(EEXIST) => Ok(()),
            Err(e) => Err(NetError::Addr {
                object: format!("default route via {gateway}"),
                link: self.obj(name),
                op: "add",
                source: Box::new(e),
            }),
        }
    }

    /// Destination prefixes of the main table's unicast routes (default routes left out),
    /// IPv4 and IPv6: pass them to [`crate::ipam::Ipam::add_network`] as `reserved` so
    /// automatic subnets never shadow a network the host already reaches.
    pub async fn route_prefixes(&self) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        let requests = [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ];
        for request in requests {
            let mut routes = self.handle.route().get(request).execute();
            while let Some(route) = routes.try_next().await.map_err(|e| NetError::Addr {
                object: "routes".to_string(),
                link: self.obj("*"),
                op: "list",
                source: Box::new(e),
            })? {
                let len = route.header.destination_prefix_length;
                if len == 0
                    || route.header.table != RT_TABLE_MAIN
                    || route.header.kind != RouteType::Unicast
                {
                    continue;
                }
                let dest = route.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                    RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                    _ => None,
                });
                if let Some(net) = dest.and_then(|ip| IpNet::new(ip, len).ok()) {
                    out.push(net.trunc());
                }
            }
        }
        Ok(out)
    }

    /// Deletes link `name`; returns false if it did not exist (idempotent).
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno_of(&e), Some(ENODEV) | Some(EADDRNOTAVAIL)) => Ok(false),
            Err(e) => Err(NetError::link(&self.obj(name), "delete", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_like_docker() {
        let ip: IpAddr = "172.17.0.2".parse().expect("ip");
        assert_eq!(format_mac(&mac_from_ip(ip)), "02:42:ac:11:00:02");
        let ip: IpAddr = "fd00::a:b0c:d".parse().expect("ip");
        assert_eq!(format_mac(&mac_from_ip(ip)), "02:42:0b:0c:00:0d");
    }

    #[test]
    fn ifnames() {
        assert!(check_ifname("berth0").is_ok());
        assert!(check_ifname("a-very-long-name0").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a b").is_err());
    }
}
