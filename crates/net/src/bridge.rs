//! The bridge driver: a network is a Linux bridge holding the gateway address(es); a
//! container joins through a veth pair whose inner end becomes `eth0` in its namespace.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};
use crate::firewall::{Firewall, FirewallConfig, NetworkRules, PublishRules};
use crate::link::{Netlink, check_ifname, mac_from_ip};
use crate::netns::NetNs;
use crate::ports::PortReservation;
use crate::proxy::UserlandProxy;
use crate::sysctl;

/// berth's default bridge name (never `docker0`).
pub const DEFAULT_BRIDGE: &str = "berth0";

/// A bridge network as the kernel should see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    /// Network id (tags firewall rules).
    pub id: String,
    /// Bridge device name (≤ 15 bytes).
    pub bridge: String,
    /// Gateway address with the subnet's prefix, one per subnet (`10.88.0.1/16`).
    /// See [`crate::ipam::SubnetState::gateway_cidr`].
    pub gateways: Vec<IpNet>,
    /// Inter-container communication on this bridge (`com.docker.network.bridge.enable_icc`).
    pub icc: bool,
    /// No route in or out: containers only reach each other.
    pub internal: bool,
    /// Source-NAT outbound traffic (engine's choice; off in tests).
    pub masquerade: bool,
    pub mtu: Option<u32>,
}

impl BridgeNetwork {
    /// A network with defaults: icc on, not internal, no masquerade.
    pub fn new(id: &str, bridge: &str, gateways: Vec<IpNet>) -> BridgeNetwork {
        BridgeNetwork {
            id: id.to_string(),
            bridge: bridge.to_string(),
            gateways,
            icc: true,
            internal: false,
            masquerade: false,
            mtu: None,
        }
    }

    fn rules(&self) -> NetworkRules {
        NetworkRules {
            id: self.id.clone(),
            bridge: self.bridge.clone(),
            subnets: self.gateways.iter().map(|g| g.trunc()).collect(),
            internal: self.internal,
            masquerade: self.masquerade,
        }
    }
}

/// What a container asks for when it joins a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRequest {
    /// Endpoint id (container id + network id, say): names the veth pair.
    pub id: String,
    /// The container's addresses with the subnet prefix (`10.88.0.2/16`), from IPAM.
    pub addresses: Vec<IpNet>,
    /// Interface name inside the container (`eth0`).
    pub ifname: String,
    /// MAC address; default derived from the first IPv4 address (`02:42:…`).
    pub mac: Option<[u8; 6]>,
}

/// A joined endpoint: what detach needs and what `docker inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host_veth: String,
    pub ifname: String,
    pub mac: [u8; 6],
    pub addresses: Vec<IpNet>,
}

/// What a container namespace's thread does first: without `ipv6`, turn IPv6 off for
/// the interfaces made in it later.
fn namespace_default(ipv6: bool) -> impl FnOnce() -> Result<()> + Send + 'static {
    move || {
        if ipv6 {
            Ok(())
        } else {
            disable_ipv6("default")
        }
    }
}

/// Turns IPv6 off on interface `ifname` of the calling thread's namespace (`default`:
/// on those made from now on). A kernel without IPv6 has nothing to turn off.
fn disable_ipv6(ifname: &str) -> Result<()> {
    match sysctl::set_ipv6_conf(ifname, "disable_ipv6", "1") {
        Err(NetError::Sysctl { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

/// Host-side veth name for an endpoint: `vb` + 13 hex digits of a hash of its id.
pub fn host_veth_name(endpoint_id: &str) -> String {
    format!("vb{:013x}", fnv1a(endpoint_id) & 0x000f_ffff_ffff_ffff)
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A container namespace made before a container needs it ([`BridgeDriver::new_spare`]):
/// `lo` up, IPv6 off, and a veth pair, down and on no bridge, whose inner end is
/// `eth0` and whose host end is [`SpareNetns::host_veth`]. Give its parts to
/// [`BridgeDriver::attach_with`] for a container's first network. Dropped unused, delete
/// `ns` (the pair goes with it).
#[derive(Debug)]
pub struct SpareNetns {
    pub ns: NetNs,
    /// A connection inside `ns`.
    pub inner: Netlink,
    /// The host end of the pair.
    pub host_veth: String,
}

/// Creates and removes bridge networks and their endpoints, and publishes ports.
#[derive(Debug)]
pub struct BridgeDriver {
    host: Netlink,
    firewall: Arc<Firewall>,
}

impl BridgeDriver {
    /// A driver acting on the caller's (host) namespace. Needs a tokio runtime.
    pub fn new(firewall: FirewallConfig) -> Result<BridgeDriver> {
        Ok(BridgeDriver {
            host: Netlink::new()?,
            firewall: Arc::new(Firewall::new(firewall)),
        })
    }

    /// The host netlink connection.
    pub fn netlink(&self) -> &Netlink {
        &self.host
    }

    /// The firewall (nftables) side.
    pub fn firewall(&self) -> &Arc<Firewall> {
        &self.firewall
    }

    async fn fw<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Firewall) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let fw = Arc::clone(&self.firewall);
        tokio::task::spawn_blocking(move || f(&fw))
            .await
            .map_err(|_| NetError::ThreadPanicked {
                what: "nftables call".to_string(),
            })?
    }

    /// Creates the bridge (idempotent), gives it the gateway addresses, sets it up,
    /// enables `route_localnet` (DNAT from 127.0.0.1) and, unless internal, forwarding on
    /// the bridge only; then installs the network's firewall rules.
    pub async fn create_network(&self, net: &BridgeNetwork) -> Result<()> {
        check_ifname(&net.bridge)?;
        self.host.ensure_bridge(&net.bridge, net.mtu).await?;
        for gw in &net.gateways {
            self.host.add_address(&net.bridge, *gw).await?;
        }
        self.host.set_up(&net.bridge).await?;
        if net.gateways.iter().any(|g| g.addr().is_ipv4()) {
            sysctl::set_ipv4_conf(&net.bridge, "route_localnet", "1")?;
            sysctl::set_ipv4_conf(
                &net.bridge,
                "forwarding",
                if net.internal { "0" } else { "1" },
            )?;
        }
        let rules = net.rules();
        self.fw(move |fw| fw.add_network(&rules)).await?;
        tracing::debug!(network = %net.id, bridge = %net.bridge, "bridge network created");
        Ok(())
    }

    /// Removes everything the network made: veths on the bridge, the bridge, its firewall
    /// rules. Idempotent: safe on a half-created or already removed network.
    pub async fn remove_network(&self, net: &BridgeNetwork) -> Result<()> {
        let mut first_err = None;
        if let Some(index) = self.host.link_index(&net.bridge).await? {
            for port in self.host.ports_of(index).await? {
                if let Err(e) = self.host.delete_link(&port).await {
                    first_err.get_or_insert(e);
                }
            }
            if let Err(e) = self.host.delete_link(&net.bridge).await {
                first_err.get_or_insert(e);
            }
        }
        let id = net.id.clone();
        if let Err(e) = self.fw(move |fw| fw.remove_network(&id)).await {
            first_err.get_or_insert(e);
        }
        tracing::debug!(network = %net.id, bridge = %net.bridge, "bridge network removed");
        first_err.map_or(Ok(()), Err)
    }

    /// A new container namespace pinned at `dir/name`, with `lo` up. Without `ipv6` (none
    /// of the container's networks has IPv6) the interfaces made in it later have IPv6
    /// disabled, as Docker does: no link-local address, duplicate address detection or
    /// multicast listener reports for nothing. One thread creates, configures and connects
    /// to it; the connection is returned, for [`BridgeDriver::attach_with`]. Deleted again
    /// on failure.
    pub async fn new_netns(&self, dir: &Path, name: &str, ipv6: bool) -> Result<(NetNs, Netlink)> {
        let (ns, inner) = Netlink::in_new_netns(dir, name, namespace_default(ipv6))?;
        if let Err(e) = inner.loopback_up().await {
            drop(inner);
            let _ = ns.delete();
            return Err(e);
        }
        Ok((ns, inner))
    }

    /// A [`SpareNetns`] pinned at `dir/name`, its host veth named after `name`. Deleted
    /// again on failure.
    pub async fn new_spare(&self, dir: &Path, name: &str) -> Result<SpareNetns> {
        let (ns, inner) = self.new_netns(dir, name, false).await?;
        let host_veth = host_veth_name(name);
        let made = async {
            self.host
                .create_veth_into(&host_veth, "eth0", &ns, None, None, None)
                .await?;
            // A bridge port needs no address of its own: no IPv6 work on it either.
            disable_ipv6(&host_veth)
        };
        if let Err(e) = made.await {
            // The namespace's deletion takes the pair along.
            drop(inner);
            let _ = ns.delete();
            return Err(e);
        }
        Ok(SpareNetns {
            ns,
            inner,
            host_veth,
        })
    }

    /// Joins namespace `ns` to `net`: veth pair with the host end on the bridge (isolated
    /// when icc is off) and the other end made in `ns` under its final name and MAC;
    /// addresses, up, default route via the gateway (not for internal networks). Undone
    /// on failure.
    pub async fn attach(
        &self,
        net: &BridgeNetwork,
        ns: &NetNs,
        req: &EndpointRequest,
    ) -> Result<Endpoint> {
        self.attach_with(net, ns, req, None, None).await
    }

    /// [`BridgeDriver::attach`] through `inner`, a connection already made in `ns` (by
    /// [`BridgeDriver::new_netns`]), when there is one; with `spare_veth`, the host end
    /// of a [`SpareNetns`]'s pair, whose `eth0` in `ns` is `req.ifname` (the pair is used,
    /// not made; `net` must have no MTU of its own).
    pub async fn attach_with(
        &self,
        net: &BridgeNetwork,
        ns: &NetNs,
        req: &EndpointRequest,
        inner: Option<&Netlink>,
        spare_veth: Option<&str>,
    ) -> Result<Endpoint> {
        check_ifname(&req.ifname)?;
        let bridge = self.host.require_link(&net.bridge).await?;
        let mac = req.mac.unwrap_or_else(|| {
            let ip = req
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(IpAddr::is_ipv4)
                .or_else(|| req.addresses.first().map(|a| a.addr()));
            ip.map_or([0x02, 0x42, 0, 0, 0, 1], mac_from_ip)
        });
        let host_veth = match spare_veth {
            Some(spare) => {
                if req.ifname != "eth0" || net.mtu.is_some() {
                    return Err(NetError::BadName {
                        name: req.ifname.clone(),
                        problem: "a spare veth pair is eth0 with the default MTU",
                    });
                }
                spare.to_string()
            }
            None => {
                let host_veth = host_veth_name(&req.id);
                self.create_veth(net, ns, req, &host_veth, mac, bridge)
                    .await?;
                host_veth
            }
        };
        let res = async {
            if spare_veth.is_some() {
                self.host.set_controller_up(&host_veth, bridge).await?;
            } else {
                // A bridge port needs no address of its own: no IPv6 work on it either
                // (a spare's host end has it off already).
                disable_ipv6(&host_veth)?;
                self.host.set_up_by_name(&host_veth).await?;
            }
            self.attach_inner(net, ns, req, &host_veth, mac, spare_veth.is_some(), inner)
                .await
        };
        match res.await {
            Ok(ep) => Ok(ep),
            Err(e) => {
                let _ = self.host.delete_link(&host_veth).await;
                Err(e)
            }
        }
    }

    /// The pair `host_veth` (made a port of the bridge of index `bridge`) and
    /// `req.ifname` in `ns` with MAC `mac`, both down.
    async fn create_veth(
        &self,
        net: &BridgeNetwork,
        ns: &NetNs,
        req: &EndpointRequest,
        host_veth: &str,
        mac: [u8; 6],
        bridge: u32,
    ) -> Result<()> {
        let create = || {
            self.host
                .create_veth_into(host_veth, &req.ifname, ns, Some(mac), net.mtu, Some(bridge))
        };
        if let Err(e) = create().await {
            // The name is this endpoint's: a pair that has it is the one of the endpoint's
            // previous run (a restart right after a stop), which the kernel deletes with the
            // old namespace only some ms after `release`. Delete it now and make the new one.
            let stale = matches!(&e, NetError::Link { source, .. }
                if crate::link::errno_of(source) == Some(libc::EEXIST));
            if !stale {
                return Err(e);
            }
            tracing::debug!(veth = %host_veth, "replacing the veth of a previous run");
            self.host.delete_link(host_veth).await?;
            create().await?;
        }
        Ok(())
    }

    /// The rest of an attach once the pair is there, its host end up on the bridge:
    /// isolation, and inside: the addresses, MAC `mac` if `set_mac` (a spare's pair was
    /// made without it), up, the default routes.
    #[allow(clippy::too_many_arguments)]
    async fn attach_inner(
        &self,
        net: &BridgeNetwork,
        ns: &NetNs,
        req: &EndpointRequest,
        host_veth: &str,
        mac: [u8; 6],
        set_mac: bool,
        given: Option<&Netlink>,
    ) -> Result<Endpoint> {
        if !net.icc {
            self.host.set_port_isolated(host_veth, true).await?;
        }
        let ifname = req.ifname.clone();
        let made;
        let inner = if req.addresses.iter().any(|a| a.addr().is_ipv6()) {
            // On in this interface even where the namespace's default is off (a
            // network with IPv6 connected later): set from a thread inside.
            made = Netlink::in_netns_after(ns, move || {
                sysctl::set_ipv6_conf(&ifname, "disable_ipv6", "0")?;
                sysctl::set_ipv6_conf(&ifname, "accept_dad", "0")
            })?;
            &made
        } else if let Some(given) = given {
            given
        } else {
            made = Netlink::in_netns(ns)?;
            &made
        };
        let index = inner.require_link(&req.ifname).await?;
        for addr in &req.addresses {
            inner.add_address_at(index, &req.ifname, *addr).await?;
        }
        if set_mac {
            inner.set_mac_up_at(index, &req.ifname, mac).await?;
        } else {
            inner.set_up_at(index, &req.ifname).await?;
        }
        if !net.internal {
            for gw in &net.gateways {
                if req
                    .addresses
                    .iter()
                    .any(|a| a.addr().is_ipv4() == gw.addr().is_ipv4())
                {
                    inner
                        .add_default_route_at(index, &req.ifname, gw.addr())
                        .await?;
                }
            }
        }
        Ok(Endpoint {
            host_veth: host_veth.to_string(),
            ifname: req.ifname.clone(),
            mac,
            addresses: req.addresses.clone(),
        })
    }

    /// Removes an endpoint's veth pair (both ends go). Idempotent.
    pub async fn detach(&self, host_veth: &str) -> Result<()> {
        self.host.delete_link(host_veth).await.map(|_| ())
    }

    /// Takes an endpoint's veth off its bridge when the container's network namespace is
    /// about to go: the kernel then deletes the pair with the namespace, off the caller's
    /// path (a few ms later). The caller must drop its last reference to the namespace
    /// (its bind mount, open fds) or the veth stays. Idempotent.
    pub async fn release(&self, host_veth: &str) -> Result<()> {
        self.host.detach_from_bridge(host_veth).await
    }

    /// Reserves the host ports, relays what containers send to them (TCP connections and
    /// UDP datagrams coming in through a bridge, which the DNAT rules leave alone) to the
    /// container, and installs the DNAT rules for everything else. Keep the returned proxy
    /// as long as the ports are published and stop it on unpublish. `rules.owner` keys the
    /// rules: publishing again for the same owner replaces them (stop the old proxy first),
    /// so use one owner per (container, network) pair. Needs a tokio runtime.
    pub async fn publish(&self, rules: PublishRules) -> Result<UserlandProxy> {
        let held = PortReservation::reserve(&rules.mappings)?;
        let proxy = UserlandProxy::relay(held, rules.container_ip)?;
        self.fw(move |fw| fw.publish(&rules)).await?;
        Ok(proxy)
    }

    /// Removes a container's DNAT rules (stop its proxy too). Idempotent.
    pub async fn unpublish(&self, owner: &str) -> Result<()> {
        let owner = owner.to_string();
        self.fw(move |fw| fw.unpublish(&owner)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz_and_differ() {
        let a = host_veth_name("container-a/net-1");
        let b = host_veth_name("container-b/net-1");
        assert_eq!(a.len(), 15);
        assert_ne!(a, b);
        assert!(check_ifname(&a).is_ok());
    }
}
