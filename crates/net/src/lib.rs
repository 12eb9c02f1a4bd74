//! berth-net: container networking for berthd.
//!
//! One module per concern:
//! - [`netns`]: named network namespaces pinned under a run dir (`/run/berth/netns/<id>`),
//!   run code or a command inside one, delete.
//! - [`link`]: rtnetlink links, addresses and routes, in the host or inside a namespace.
//! - [`bridge`]: the bridge driver: bridge with gateway addresses, veth pairs into
//!   container namespaces (`eth0`, Docker-style MAC, default route), icc off through
//!   bridge-port isolation, idempotent cleanup of everything a network made.
//! - [`ipam`]: pure, serde-serialisable address management (subnets, ip-range, gateway,
//!   static/dynamic addresses, overlap detection, default pools starting at 10.88.0.0/16).
//! - [`ports`]: port mappings and host-port reservations (conflict detection); the
//!   reserved sockets also take what containers send to published ports.
//! - [`firewall`]: nftables rules in berth's own `ip`/`ip6` tables: DNAT for published
//!   ports (also from 127.0.0.1; not for traffic from bridges), isolation between bridges,
//!   internal networks.
//! - [`proxy`]: the userland TCP/UDP proxy: relays containers' connections to published
//!   ports (hairpin), and is the alternative to DNAT.
//! - [`dns`]: the embedded DNS server at 127.0.0.11:53 and `/etc/resolv.conf` content.
//! - [`sysctl`]: the per-interface sysctls used above.
//!
//! Typical engine flow (all async calls need a tokio runtime; the process runs as root):
//! ```no_run
//! # async fn flow() -> Result<(), berth_net::NetError> {
//! use berth_net::{bridge::*, firewall::*, ipam::*, netns::NetNs, ports::PortMapping};
//! let mut ipam = Ipam::default();                       // persisted as JSON by the engine
//! let subnet = ipam.add_network("net1", &[], &[])?.subnets[0].clone();
//! let driver = BridgeDriver::new(FirewallConfig::default())?;
//! let net = BridgeNetwork::new("net1", DEFAULT_BRIDGE, vec![subnet.gateway_cidr()]);
//! driver.create_network(&net).await?;
//! let dir = std::path::Path::new("/run/berth/netns");
//! // Made ahead of need (new_netns makes just the namespace, attach_with the pair):
//! let spare = driver.new_spare(std::path::Path::new("/run/berth/spare"), "s1").await?;
//! let ns = spare.ns.pin_at(dir, "ctr1")?;                // lo up, IPv4 only
//! spare.ns.delete()?;
//! let ip = ipam.allocate("net1", Family::V4, None)?;
//! let ep = driver.attach_with(&net, &ns, &EndpointRequest {
//!     id: "ctr1/net1".into(),
//!     addresses: vec![subnet.cidr_of(ip)],
//!     ifname: "eth0".into(),
//!     mac: None,
//! }, Some(&spare.inner), Some(&spare.host_veth)).await?;
//! let relay = driver.publish(PublishRules {
//!     owner: "ctr1".into(), container_ip: ip,
//!     mappings: vec![PortMapping::tcp(None, 8080, 80)],
//! }).await?;
//! // … container runs with ns.path() as its network namespace …
//! driver.unpublish("ctr1").await?;
//! relay.stop().await;
//! driver.detach(&ep.host_veth).await?;
//! ipam.release("net1", ip);
//! ns.delete()?;
//! driver.remove_network(&net).await?;
//! # Ok(()) }
//! ```

pub mod bridge;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
mod nfnl;
pub mod ports;
pub mod proxy;
pub mod sysctl;

pub use error::{NetError, Result};
pub use ipnet;
