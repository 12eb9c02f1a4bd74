//! Networks as Docker has them: the predefined `bridge` (berth's own bridge
//! device and subnet), `host` and `none`, and user-defined bridge networks
//! with IPAM, embedded DNS, aliases and `--internal`. The kernel side
//! (bridges, veths, nftables, namespaces, the DNS server) is `berth_net`;
//! this module keeps the state in redb and decides what to ask of it.
//!
//! A container on a bridge network gets a network namespace pinned at
//! `<exec-root>/netns/<id>` when it starts (so it outlives berthd, as the
//! container does), one veth per network, an address from IPAM, DNAT rules
//! for its published ports (berth's own nftables table) with a relay in
//! berthd for connections from containers to those ports (hairpin), and, on
//! user-defined networks, an embedded DNS server at 127.0.0.11 that answers
//! the names, aliases and short ids of the containers it shares a network
//! with. All of it goes when the container stops. The namespace and the
//! first veth pair are usually made before the start asks (a spare, see
//! `Spare`), off the start's path.

/// Published ports.
pub mod ports;
/// Network records and IPAM state in redb.
pub mod record;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use berth_net::bridge::{BridgeDriver, BridgeNetwork, EndpointRequest, SpareNetns, host_veth_name};
use berth_net::dns::{DnsConfig, DnsServer};
use berth_net::firewall::{FirewallConfig, PublishRules};
use berth_net::ipam::{Family, Ipam, IpamConfig, SubnetRequest};
use berth_net::netns::NetNs;
use berth_net::ports::PortReservation;
use berth_net::proxy::UserlandProxy;
use serde::{Deserialize, Serialize};

pub use berth_net::ipam::AddressPool;
pub use ipnet::IpNet;
pub use record::{Network, SubnetConfig};

use crate::error::EngineError;

/// How berthd sets networks up (daemon flags and daemon.json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The default bridge's device (`--bridge`; default `berth0`).
    pub bridge: String,
    /// The default bridge's gateway address and prefix (`--bip`; default
    /// `10.88.0.1/16`).
    pub bip: Option<IpNet>,
    /// Where user networks without a subnet get theirs
    /// (`--default-address-pool`); empty: berth's defaults.
    pub default_pools: Vec<AddressPool>,
    /// Containers on the default bridge may talk to each other (`--icc`).
    pub icc: bool,
    /// berth's nftables table (both `ip` and `ip6` families).
    pub firewall_table: String,
    /// Masquerade traffic from bridges to other interfaces (`--ip-masq`);
    /// off unless asked for.
    pub ip_masq: bool,
    /// The embedded DNS server forwards names it does not know to the
    /// host's resolvers (or `--dns`); off on machines that must not reach out.
    pub dns_forward: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: berth_net::bridge::DEFAULT_BRIDGE.to_owned(),
            bip: None,
            default_pools: Vec::new(),
            icc: true,
            firewall_table: "berth".to_owned(),
            ip_masq: false,
            dns_forward: true,
        }
    }
}

/// What a container asks of one network (`NetworkingConfig.EndpointsConfig`)
/// and, while it runs, what it got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The network's id.
    pub network_id: String,
    /// `--network-alias`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`.
    #[serde(default)]
    pub ipv4_address: String,
    /// `--ip6`.
    #[serde(default)]
    pub ipv6_address: String,
    /// `--mac-address`.
    #[serde(default)]
    pub mac_address: String,
    /// `--link-local-ip` (kept and shown; berth assigns no link-local
    /// addresses of its own).
    #[serde(default)]
    pub link_local_ips: Vec<String>,
    /// `--driver-opt` (kept and shown).
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    /// `--link name:alias` on a user-defined network: `alias` resolves,
    /// for this container only, to container `name` (embedded DNS).
    #[serde(default)]
    pub links: Vec<String>,
    /// While running: the endpoint id (64 hex).
    #[serde(default)]
    pub endpoint_id: String,
    /// While running: the IPv4 address.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// Its prefix length.
    #[serde(default)]
    pub prefix_len: u8,
    /// The IPv4 gateway.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// While running: the IPv6 address.
    #[serde(default)]
    pub ipv6: Option<IpAddr>,
    /// Its prefix length.
    #[serde(default)]
    pub ipv6_prefix_len: u8,
    /// The IPv6 gateway.
    #[serde(default)]
    pub ipv6_gateway: Option<IpAddr>,
    /// While running: the MAC address in use.
    #[serde(default)]
    pub mac: String,
    /// While running: the interface in the container (`eth0`).
    #[serde(default)]
    pub ifname: String,
    /// While running: the veth's host end; empty: named after `endpoint_id`
    /// (what berthd before spare namespaces recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_veth: String,
}

impl Endpoint {
    /// The veth's host end, while running.
    pub fn host_veth(&self) -> String {
        if self.host_veth.is_empty() {
            host_veth_name(&self.endpoint_id)
        } else {
            self.host_veth.clone()
        }
    }

    /// Forgets what the last run got.
    pub fn clear_runtime(&mut self) {
        let keep = Endpoint {
            network_id: std::mem::take(&mut self.network_id),
            aliases: std::mem::take(&mut self.aliases),
            ipv4_address: std::mem::take(&mut self.ipv4_address),
            ipv6_address: std::mem::take(&mut self.ipv6_address),
            mac_address: std::mem::take(&mut self.mac_address),
            link_local_ips: std::mem::take(&mut self.link_local_ips),
            driver_opts: std::mem::take(&mut self.driver_opts),
            links: std::mem::take(&mut self.links),
            ..Default::default()
        };
        *self = keep;
    }
}

/// The create body's `NetworkingConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkingConfig {
    /// Network name or id → what the container asks of it.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub endpoints_config: BTreeMap<String, Option<EndpointConfig>>,
}

/// One entry of `EndpointsConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfig {
    /// Static addresses.
    #[serde(default, rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    /// Aliases.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub aliases: Vec<String>,
    /// MAC address.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub mac_address: String,
    /// Driver options.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub driver_opts: BTreeMap<String, String>,
    /// Links (`name:alias`), used on user-defined networks.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub links: Vec<String>,
}

/// `IPAMConfig` of an endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EndpointIpam {
    /// `--ip`.
    #[serde(
        default,
        rename = "IPv4Address",
        deserialize_with = "crate::containers::config::nd"
    )]
    pub ipv4_address: String,
    /// `--ip6`.
    #[serde(
        default,
        rename = "IPv6Address",
        deserialize_with = "crate::containers::config::nd"
    )]
    pub ipv6_address: String,
    /// `--link-local-ip`.
    #[serde(
        default,
        rename = "LinkLocalIPs",
        deserialize_with = "crate::containers::config::nd"
    )]
    pub link_local_ips: Vec<String>,
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetwork {
    /// Name.
    pub name: String,
    /// `bridge` (default).
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub driver: String,
    /// `--internal`.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub internal: bool,
    /// `--attachable`.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub attachable: bool,
    /// `--ipv6`.
    #[serde(default, rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    /// `--subnet`, `--ip-range`, `--gateway`.
    #[serde(default, rename = "IPAM")]
    pub ipam: Option<IpamRequest>,
    /// `-o`.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub options: BTreeMap<String, String>,
    /// `--label`.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub labels: BTreeMap<String, String>,
}

/// The `IPAM` of a create request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamRequest {
    /// Only `default`.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub driver: String,
    /// One per subnet.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub config: Vec<IpamPool>,
    /// Kept.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub options: BTreeMap<String, String>,
}

/// One `IPAM.Config` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamPool {
    /// `10.1.0.0/24`.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub subnet: String,
    /// `10.1.0.128/25`.
    #[serde(
        default,
        rename = "IPRange",
        deserialize_with = "crate::containers::config::nd"
    )]
    pub ip_range: String,
    /// `10.1.0.1`.
    #[serde(default, deserialize_with = "crate::containers::config::nd")]
    pub gateway: String,
    /// `--aux-address`: names → addresses the network must not hand out.
    #[serde(
        default,
        rename = "AuxiliaryAddresses",
        deserialize_with = "crate::containers::config::nd"
    )]
    pub aux_addresses: BTreeMap<String, String>,
}

/// A container's namespace made for its start, its endpoints still to
/// attach ([`NetworkService::join_netns`]).
pub struct Joining {
    /// The pinned network namespace.
    pub netns: PathBuf,
    /// The container will use the embedded DNS server.
    pub embedded_dns: bool,
    /// One of the networks is the default `bridge`.
    pub on_default_bridge: bool,
    ns: NetNs,
    inner: berth_net::link::Netlink,
    spare_veth: Option<String>,
    nets: Vec<(Network, Endpoint)>,
}

impl std::fmt::Debug for Joining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joining")
            .field("netns", &self.netns)
            .field("spare_veth", &self.spare_veth)
            .finish_non_exhaustive()
    }
}

/// What a started container got: the namespace to run in and its
/// endpoints and ports, to record.
#[derive(Debug, Default)]
pub struct Joined {
    /// The pinned network namespace.
    pub netns: PathBuf,
    /// Network name → endpoint with its addresses.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Published ports.
    pub ports: Vec<ports::PublishedPort>,
}

/// A container that still runs after a daemon restart, for
/// [`NetworkService::recover`].
#[derive(Debug, Clone)]
pub struct Running {
    /// Its id.
    pub id: String,
    /// Its name (without `/`).
    pub name: String,
    /// Its endpoints, with their addresses.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Its published ports.
    pub ports: Vec<ports::PublishedPort>,
}

/// What lives only in berthd for a running container.
#[derive(Debug, Default)]
struct Live {
    dns: Option<DnsServer>,
    /// The published ports' reservations, relaying what containers send to them.
    ports: Option<UserlandProxy>,
}

/// Names a container answers to on one network, and its addresses there.
#[derive(Debug, Clone, Default)]
struct DnsEntry {
    names: Vec<String>,
    ips: Vec<IpAddr>,
    /// This container's links on the network: alias → container name.
    links: Vec<(String, String)>,
}

/// Network name → container id → entry.
type DnsIndex = HashMap<String, HashMap<String, DnsEntry>>;

/// The engine's networks.
#[derive(Debug)]
pub struct NetworkService {
    cfg: NetworkConfig,
    records: record::Networks,
    /// The address manager, saved to redb after every change. Keyed by
    /// network name.
    ipam: Mutex<Ipam>,
    netns_dir: PathBuf,
    driver: tokio::sync::OnceCell<BridgeDriver>,
    /// Networks whose bridge this daemon has made sure of.
    ready: tokio::sync::Mutex<HashSet<String>>,
    live: Mutex<HashMap<String, Live>>,
    index: Arc<RwLock<DnsIndex>>,
    /// A namespace made ahead for the next container (see [`Spare`]).
    spare: Mutex<Spare>,
    spare_dir: PathBuf,
}

/// The next container's network namespace and veth pair, made while nothing
/// waits for them: making them is most of a start's network set-up (~1.5 ms
/// here), which a `docker run` would otherwise wait for. Made when a
/// container on a bridge network is created (while the client sends its
/// attach, wait and start) or exits, not at a start, where the work would
/// compete with the container's own. It is fresh (no container ever ran in
/// it), has IPv6 off and `lo` up, and is pinned in its own directory until a
/// start pins it at `netns/<id>` too. Only one at a time; deleted when
/// berthd stops (and, after a crash, at the next start).
#[derive(Debug, Default)]
struct Spare {
    ready: Option<SpareNetns>,
    /// The spare's own pin of the one a start took (pinned at `netns/<id>`
    /// too): unmounted by the next refill, off the start's path.
    taken: Option<NetNs>,
    /// A task is making one.
    filling: bool,
    /// berthd is stopping: make no more.
    closed: bool,
}

impl Spare {
    /// Unpins what is here (a spare's veth pair goes with its namespace).
    fn clear(&mut self) {
        if let Some(sp) = self.ready.take() {
            let _ = sp.ns.delete();
        }
        if let Some(ns) = self.taken.take() {
            let _ = ns.delete();
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        self.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 64 random hex digits.
fn new_id() -> Result<String, EngineError> {
    crate::containers::names::new_id()
}

impl NetworkService {
    /// Opens the networks over `db`, making the predefined ones if missing.
    pub fn new(
        db: Arc<redb::Database>,
        cfg: NetworkConfig,
        exec_root: &Path,
    ) -> Result<Arc<Self>, EngineError> {
        let records = record::Networks::new(db)?;
        let mut ipam = records.load_ipam()?.unwrap_or_default();
        ipam.config = if cfg.default_pools.is_empty() {
            IpamConfig::default()
        } else {
            // Pools given for one family only: berth's own for the other.
            let mut pools = cfg.default_pools.clone();
            for family_v6 in [false, true] {
                if !pools.iter().any(|p| p.base.addr().is_ipv6() == family_v6) {
                    pools.extend(
                        IpamConfig::default()
                            .default_pools
                            .into_iter()
                            .filter(|p| p.base.addr().is_ipv6() == family_v6),
                    );
                }
            }
            IpamConfig {
                default_pools: pools,
            }
        };
        let svc = NetworkService {
            records,
            ipam: Mutex::new(ipam),
            netns_dir: exec_root.join("netns"),
            driver: tokio::sync::OnceCell::new(),
            ready: tokio::sync::Mutex::new(HashSet::new()),
            live: Mutex::new(HashMap::new()),
            index: Arc::new(RwLock::new(HashMap::new())),
            spare: Mutex::new(Spare::default()),
            spare_dir: exec_root.join("netns-spare"),
            cfg,
        };
        // Spares a killed berthd left: never used, nothing to keep.
        if let Ok(rd) = std::fs::read_dir(&svc.spare_dir) {
            for e in rd.flatten() {
                let _ = NetNs::delete_named(&svc.spare_dir, &e.file_name().to_string_lossy());
            }
        }
        svc.ensure_predefined()?;
        Ok(Arc::new(svc))
    }

    /// The configuration in force.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// Where container namespaces are pinned.
    pub fn netns_dir(&self) -> &Path {
        &self.netns_dir
    }

    fn ensure_predefined(&self) -> Result<(), EngineError> {
        let all = self.records.all()?;
        let now = crate::containers::now();
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            let existing = all.iter().find(|n| n.name == name);
            if name != "bridge" {
                if existing.is_none() {
                    let n = Network {
                        id: new_id()?,
                        name: name.into(),
                        driver: driver.into(),
                        created: now.clone(),
                        internal: false,
                        attachable: false,
                        enable_ipv6: false,
                        labels: BTreeMap::new(),
                        options: BTreeMap::new(),
                        ipam_options: BTreeMap::new(),
                        subnets: Vec::new(),
                        user_subnets: false,
                        bridge: String::new(),
                        icc: true,
                        mtu: None,
                    };
                    let ipam = lock(&self.ipam).clone();
                    self.records.save(Some(&n), None, &ipam)?;
                }
                continue;
            }
            // The default bridge follows the daemon's configuration: made
            // again when --bridge, --bip or --icc changed.
            let (subnet, gateway) = match self.cfg.bip {
                Some(bip) => (bip.trunc(), bip.addr()),
                None => {
                    let s: IpNet = berth_net::ipam::DEFAULT_BRIDGE_SUBNET
                        .parse()
                        .map_err(|e| EngineError::Internal(format!("default subnet: {e}")))?;
                    let gw = s.hosts().next().unwrap_or(s.addr());
                    (s, gw)
                }
            };
            let wanted = SubnetConfig {
                subnet: subnet.to_string(),
                ip_range: String::new(),
                gateway: gateway.to_string(),
                aux_addresses: BTreeMap::new(),
            };
            let mut ipam = lock(&self.ipam);
            if let Some(n) = existing
                && n.bridge == self.cfg.bridge
                && n.subnets == [wanted.clone()]
                && n.icc == self.cfg.icc
                && ipam.network("bridge").is_some()
            {
                continue;
            }
            let mut options = BTreeMap::new();
            options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
            options.insert(
                "com.docker.network.bridge.enable_icc".into(),
                self.cfg.icc.to_string(),
            );
            options.insert(
                "com.docker.network.bridge.name".into(),
                self.cfg.bridge.clone(),
            );
            let n = Network {
                id: existing.map_or_else(new_id, |n| Ok(n.id.clone()))?,
                name: "bridge".into(),
                driver: "bridge".into(),
                created: existing.map_or(now.clone(), |n| n.created.clone()),
                internal: false,
                attachable: false,
                enable_ipv6: false,
                labels: BTreeMap::new(),
                options,
                ipam_options: BTreeMap::new(),
                subnets: vec![wanted],
                user_subnets: self.cfg.bip.is_some(),
                bridge: self.cfg.bridge.clone(),
                icc: self.cfg.icc,
                mtu: None,
            };
            ipam.remove_network("bridge");
            ipam.add_network(
                "bridge",
                &[SubnetRequest {
                    subnet: Some(subnet),
                    ip_range: None,
                    gateway: Some(gateway),
                    family: None,
                }],
                &[],
            )?;
            self.records.save(Some(&n), None, &ipam)?;
        }
        Ok(())
    }

    async fn driver(&self) -> Result<&BridgeDriver, EngineError> {
        self.driver
            .get_or_try_init(|| async {
                BridgeDriver::new(FirewallConfig {
                    table: self.cfg.firewall_table.clone(),
                    ..Default::default()
                })
                .map_err(EngineError::from)
            })
            .await
    }

    fn bridge_of(&self, n: &Network) -> BridgeNetwork {
        let ipam = lock(&self.ipam);
        let gateways = ipam
            .network(&n.name)
            .map(|s| s.subnets.iter().map(|s| s.gateway_cidr()).collect())
            .unwrap_or_default();
        BridgeNetwork {
            id: n.id.clone(),
            bridge: n.bridge.clone(),
            gateways,
            icc: n.icc,
            internal: n.internal,
            masquerade: self.cfg.ip_masq && !n.internal,
            mtu: n.mtu,
        }
    }

    /// Makes sure the bridge of `n` exists (once per daemon run).
    async fn ensure_ready(&self, n: &Network) -> Result<(), EngineError> {
        let mut ready = self.ready.lock().await;
        if ready.contains(&n.id) {
            return Ok(());
        }
        let bridge = self.bridge_of(n);
        self.driver().await?.create_network(&bridge).await?;
        ready.insert(n.id.clone());
        Ok(())
    }

    /// Every network.
    pub fn list(&self) -> Result<Vec<Network>, EngineError> {
        let mut v = self.records.all()?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// The network `name_or_id` names: a full id, a name, or a unique id
    /// prefix (Docker's order).
    pub fn get(&self, name_or_id: &str) -> Result<Network, EngineError> {
        let all = self.records.all()?;
        if let Some(n) = all.iter().find(|n| n.id == name_or_id) {
            return Ok(n.clone());
        }
        if let Some(n) = all.iter().find(|n| n.name == name_or_id) {
            return Ok(n.clone());
        }
        let mut hits = all
            .iter()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id));
        match (hits.next(), hits.next()) {
            (Some(n), None) => Ok(n.clone()),
            (None, _) => Err(EngineError::NoSuchNetwork(name_or_id.to_owned())),
            (Some(_), Some(_)) => Err(EngineError::InvalidArgument(format!(
                "network {name_or_id} is ambiguous ({} matches found based on ID prefix)",
                all.iter().filter(|n| n.id.starts_with(name_or_id)).count()
            ))),
        }
    }

    /// `docker network create`.
    pub async fn create(&self, req: CreateNetwork) -> Result<Network, EngineError> {
        // dockerd takes any name (spaces included); berth refuses only what
        // cannot be shown or typed back.
        if req.name.trim().is_empty() || req.name.chars().any(char::is_control) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid network name {:?}: it must not be empty or hold control characters",
                req.name
            )));
        }
        let driver = match req.driver.as_str() {
            "" | "bridge" => "bridge",
            "host" | "null" | "none" => {
                return Err(EngineError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    req.driver
                )));
            }
            other => {
                return Err(EngineError::NotFoundPath(format!(
                    "plugin \"{other}\" not found (berthd has only the bridge driver)"
                )));
            }
        };
        if let Some(ipam) = &req.ipam
            && !matches!(ipam.driver.as_str(), "" | "default")
        {
            return Err(EngineError::NotFoundPath(format!(
                "plugin \"{}\" not found",
                ipam.driver
            )));
        }
        let mut icc = true;
        let mut mtu = None;
        let mut bridge_name = None;
        for (k, v) in &req.options {
            match k.as_str() {
                "com.docker.network.bridge.enable_icc" => {
                    icc = v.parse().map_err(|_| {
                        EngineError::InvalidArgument(format!("invalid value {v:?} for option {k}"))
                    })?;
                }
                "com.docker.network.driver.mtu" => {
                    mtu = Some(v.parse::<u32>().map_err(|_| {
                        EngineError::InvalidArgument(format!("invalid value {v:?} for option {k}"))
                    })?);
                }
                "com.docker.network.bridge.name" => {
                    berth_net::link::check_ifname(v)?;
                    bridge_name = Some(v.clone());
                }
                _ => {}
            }
        }
        let mut requests = Vec::new();
        let pools = req
            .ipam
            .as_ref()
            .map(|i| i.config.clone())
            .unwrap_or_default();
        let parse_net = |what: &str, s: &str| -> Result<Option<IpNet>, EngineError> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<IpNet>().map(Some).map_err(|_| {
                EngineError::InvalidArgument(format!("invalid {what}: {s:?} is not a CIDR address"))
            })
        };
        for p in &pools {
            let subnet = parse_net("subnet", &p.subnet)?;
            let ip_range = parse_net("ip-range", &p.ip_range)?;
            let gateway = match p.gateway.as_str() {
                "" => None,
                g => Some(g.parse::<IpAddr>().map_err(|_| {
                    EngineError::InvalidArgument(format!(
                        "invalid gateway: {g:?} is not an IP address"
                    ))
                })?),
            };
            if subnet.is_none() && (ip_range.is_some() || gateway.is_some()) {
                return Err(EngineError::InvalidArgument(
                    "an ip-range or a gateway needs a subnet (--subnet)".into(),
                ));
            }
            requests.push(SubnetRequest {
                subnet,
                ip_range,
                gateway,
                family: None,
            });
        }
        let enable_ipv6 = req.enable_ipv6.unwrap_or(false);
        if enable_ipv6
            && !requests
                .iter()
                .any(|r| r.subnet.is_some_and(|s| s.addr().is_ipv6()))
        {
            if requests.is_empty() {
                requests.push(SubnetRequest::default());
            }
            requests.push(SubnetRequest {
                family: Some(Family::V6),
                ..Default::default()
            });
        }
        let user_subnets = requests.iter().any(|r| r.subnet.is_some());
        let id = new_id()?;
        let routes = self.driver().await?.netlink().route_prefixes().await?;
        let network = {
            let mut ipam = lock(&self.ipam);
            if self.records.all()?.iter().any(|n| n.name == req.name) {
                return Err(EngineError::Conflict(format!(
                    "network with name {} already exists",
                    req.name
                )));
            }
            // Routes of berth's own bridges are known to IPAM already.
            let own: Vec<IpNet> = ipam.subnets_in_use().map(|(_, s)| *s).collect();
            let reserved: Vec<IpNet> = routes
                .into_iter()
                .filter(|r| !own.contains(r) && r.prefix_len() > 0)
                .collect();
            let mut aux: Vec<(String, String, IpAddr)> = Vec::new();
            for p in &pools {
                for (k, v) in &p.aux_addresses {
                    let ip = v.parse::<IpAddr>().map_err(|_| {
                        EngineError::InvalidArgument(format!(
                            "invalid auxiliary address {k}={v}: not an IP address"
                        ))
                    })?;
                    aux.push((p.subnet.clone(), k.clone(), ip));
                }
            }
            let state = ipam
                .add_network(&req.name, &requests, &reserved)
                .map_err(|e| match e {
                    berth_net::ipam::IpamError::SubnetOverlap { .. } => EngineError::Forbidden(
                        format!("Pool overlaps with other one on this address space: {e}"),
                    ),
                    e => e.into(),
                })?
                .clone();
            for (_, k, ip) in &aux {
                let family = if ip.is_ipv6() { Family::V6 } else { Family::V4 };
                if let Err(e) = ipam.allocate(&req.name, family, Some(*ip)) {
                    ipam.remove_network(&req.name);
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid auxiliary address {k}={ip}: {e}"
                    )));
                }
            }
            let n = Network {
                bridge: bridge_name.unwrap_or_else(|| format!("berth-{}", &id[..9])),
                id: id.clone(),
                name: req.name.clone(),
                driver: driver.into(),
                created: crate::containers::now(),
                internal: req.internal,
                attachable: req.attachable,
                enable_ipv6,
                labels: req.labels.clone(),
                options: req.options.clone(),
                ipam_options: req
                    .ipam
                    .as_ref()
                    .map(|i| i.options.clone())
                    .unwrap_or_default(),
                subnets: state
                    .subnets
                    .iter()
                    .map(|s| SubnetConfig {
                        subnet: s.subnet.to_string(),
                        ip_range: s.ip_range.map(|r| r.to_string()).unwrap_or_default(),
                        gateway: s.gateway.to_string(),
                        aux_addresses: aux
                            .iter()
                            .filter(|(_, _, ip)| s.subnet.contains(ip))
                            .map(|(_, k, ip)| (k.clone(), ip.to_string()))
                            .collect(),
                    })
                    .collect(),
                user_subnets,
                icc,
                mtu,
            };
            if let Err(e) = self.records.save(Some(&n), None, &ipam) {
                ipam.remove_network(&req.name);
                return Err(e);
            }
            n
        };
        if let Err(e) = self.ensure_ready(&network).await {
            let _ = self.remove_unused(&network).await;
            return Err(e);
        }
        Ok(network)
    }

    /// Removes a network no container uses (the caller checked).
    pub async fn remove_unused(&self, n: &Network) -> Result<(), EngineError> {
        if n.is_predefined() {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let bridge = self.bridge_of(n);
        self.driver().await?.remove_network(&bridge).await?;
        self.ready.lock().await.remove(&n.id);
        let mut ipam = lock(&self.ipam);
        ipam.remove_network(&n.name);
        self.records.save(None, Some(&n.id), &ipam)?;
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&n.name);
        Ok(())
    }

    /// Checks what a container asks of its networks at create, and gives
    /// the endpoints to record (network name → endpoint). `mode` is the
    /// host config's NetworkMode.
    pub fn endpoints_for_create(
        &self,
        mode: &str,
        config: &NetworkingConfig,
    ) -> Result<BTreeMap<String, Endpoint>, EngineError> {
        let mut out = BTreeMap::new();
        let primary = match mode {
            "" | "default" => Some("bridge"),
            m if m.starts_with("container:") => None,
            m => Some(m),
        };
        // "default" is the docker CLI's name for the default network.
        let named = |k: &str| if k == "default" { "bridge" } else { k }.to_owned();
        let mut wanted: Vec<(String, Option<EndpointConfig>)> = Vec::new();
        if let Some(p) = primary {
            let given = config
                .endpoints_config
                .iter()
                .find(|(k, _)| named(k) == p)
                .and_then(|(_, v)| v.clone());
            wanted.push((p.to_owned(), given));
        }
        for (k, v) in &config.endpoints_config {
            if Some(named(k).as_str()) != primary {
                wanted.push((named(k), v.clone()));
            }
        }
        for (name, ep) in wanted {
            let n = self.get(&name)?;
            if primary.is_none() {
                return Err(EngineError::InvalidArgument(
                    "conflicting options: container cannot join a network while sharing the network namespace of another container".into(),
                ));
            }
            if (n.driver == "host" || n.driver == "null") && out.len() + 1 > 1 {
                return Err(EngineError::InvalidArgument(format!(
                    "container cannot be connected to network \"{}\" and to other networks",
                    n.name
                )));
            }
            let ep = ep.unwrap_or_default();
            let ipam = ep.ipam_config.clone().unwrap_or_default();
            let e = self.check_endpoint(&n, &ep.aliases, &ipam.ipv4_address, &ipam.ipv6_address)?;
            for l in &ep.links {
                crate::containers::parse_link(l)?;
            }
            let e = Endpoint {
                mac_address: ep.mac_address.clone(),
                driver_opts: ep.driver_opts.clone(),
                link_local_ips: ipam.link_local_ips.clone(),
                // Legacy links of the default bridge are the host config's.
                links: if n.is_user_defined() {
                    ep.links.clone()
                } else {
                    Vec::new()
                },
                ..e
            };
            if out.contains_key(&n.name) {
                continue;
            }
            out.insert(n.name.clone(), e);
        }
        if out.len() > 1
            && out
                .keys()
                .any(|k| self.get(k).is_ok_and(|n| n.driver != "bridge"))
        {
            return Err(EngineError::InvalidArgument(
                "container cannot be connected to host or none networks and to other networks"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// Docker's checks of one endpoint request.
    pub fn check_endpoint(
        &self,
        n: &Network,
        aliases: &[String],
        ipv4: &str,
        ipv6: &str,
    ) -> Result<Endpoint, EngineError> {
        if !aliases.is_empty() && !n.is_user_defined() {
            return Err(EngineError::InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
        for (ip, v6) in [(ipv4, false), (ipv6, true)] {
            if ip.is_empty() {
                continue;
            }
            let parsed: IpAddr = ip
                .parse()
                .map_err(|_| EngineError::InvalidArgument(format!("invalid IP address: {ip:?}")))?;
            if parsed.is_ipv6() != v6 {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid IP{} address: {ip}",
                    if v6 { "v6" } else { "v4" }
                )));
            }
            if !n.is_user_defined() {
                return Err(EngineError::InvalidArgument(
                    "user specified IP address is supported on user defined networks only".into(),
                ));
            }
            if !n.user_subnets {
                return Err(EngineError::InvalidArgument(
                    "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
                ));
            }
            let inside = n
                .subnets
                .iter()
                .filter_map(|s| s.subnet.parse::<IpNet>().ok())
                .any(|s| s.contains(&parsed));
            if !inside {
                return Err(EngineError::InvalidArgument(format!(
                    "no configured subnet or ip-range contain the IP address {ip}"
                )));
            }
        }
        Ok(Endpoint {
            network_id: n.id.clone(),
            aliases: aliases.to_vec(),
            ipv4_address: ipv4.to_owned(),
            ipv6_address: ipv6.to_owned(),
            ..Default::default()
        })
    }

    /// The first half of setting up the namespace of container `id` before
    /// its start: the namespace, pinned (the spare one when it fits), for
    /// the runtime to create the container in. [`Self::finish_join`] adds
    /// the endpoints, ports and DNS server; the two may overlap the
    /// container's creation, which does not look at the network. `None`
    /// when the container is on no bridge network.
    pub async fn join_netns(
        &self,
        id: &str,
        endpoints: &BTreeMap<String, Endpoint>,
    ) -> Result<Option<Joining>, EngineError> {
        let mut nets = Vec::new();
        for (net_name, ep) in endpoints {
            let n = self.get(&ep.network_id).or_else(|_| self.get(net_name))?;
            if n.driver == "bridge" {
                nets.push((n, ep.clone()));
            }
        }
        if nets.is_empty() {
            return Ok(None);
        }
        let driver = self.driver().await?;
        // IPv6 stays on in the namespace only for a network that has it.
        let ipv6 = {
            let ipam = lock(&self.ipam);
            nets.iter().any(|(n, _)| {
                ipam.network(&n.name)
                    .is_some_and(|st| st.subnets.iter().any(|s| s.subnet.addr().is_ipv6()))
            })
        };
        // The spare has IPv6 off and a pair with the default MTU for eth0.
        let spare = match nets.first() {
            Some((n, _)) if !ipv6 && n.mtu.is_none() => self.take_spare(id),
            _ => None,
        };
        let (ns, inner, spare_veth) = match spare {
            Some(sp) => (sp.ns, sp.inner, Some(sp.host_veth)),
            None => match driver.new_netns(&self.netns_dir, id, ipv6).await {
                Ok((ns, inner)) => (ns, inner, None),
                Err(_) => {
                    // A leftover of a crash: start afresh.
                    let _ = NetNs::delete_named(&self.netns_dir, id);
                    let (ns, inner) = driver.new_netns(&self.netns_dir, id, ipv6).await?;
                    (ns, inner, None)
                }
            },
        };
        Ok(Some(Joining {
            netns: ns.path().to_path_buf(),
            embedded_dns: nets.iter().any(|(n, _)| n.is_user_defined()),
            on_default_bridge: nets.iter().any(|(n, _)| n.name == "bridge"),
            ns,
            inner,
            spare_veth,
            nets,
        }))
    }

    /// The second half of [`Self::join_netns`]: an endpoint on each bridge
    /// network, the published ports and, on user-defined networks, the
    /// embedded DNS server. On failure everything is undone, the namespace
    /// too.
    pub async fn finish_join(
        &self,
        j: &Joining,
        id: &str,
        name: &str,
        port_requests: &[ports::PortRequest],
        dns_servers: &[String],
    ) -> Result<Joined, EngineError> {
        let mut joined = Joined {
            netns: j.netns.clone(),
            ..Joined::default()
        };
        let res = self
            .join_inner(id, name, j, port_requests, dns_servers, &mut joined)
            .await;
        if let Err(e) = res {
            self.leave(id, &joined.endpoints, !joined.ports.is_empty())
                .await;
            return Err(e);
        }
        Ok(joined)
    }

    /// The spare namespace, pinned at `netns/<id>`, if there is one.
    fn take_spare(&self, id: &str) -> Option<SpareNetns> {
        let mut sp = lock(&self.spare);
        let spare = sp.ready.take()?;
        match spare.ns.pin_at(&self.netns_dir, id) {
            Ok(pinned) => {
                if let Some(old) = sp.taken.replace(spare.ns) {
                    // Off this start's path: an unmount waits for the kernel
                    // (~0.5 ms).
                    tokio::task::spawn_blocking(move || old.delete());
                }
                Some(SpareNetns {
                    ns: pinned,
                    ..spare
                })
            }
            Err(e) => {
                // Still good for the next start.
                sp.ready = Some(spare);
                tracing::debug!(container = %id, error = %e, "spare namespace not used");
                None
            }
        }
    }

    /// Makes the next spare namespace in the background, unless there is
    /// one or it is being made (see [`Spare`] for when).
    pub(crate) fn refill_spare(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // not from berthd's runtime (a test): no spares
        };
        {
            let mut sp = lock(&self.spare);
            if sp.closed || sp.filling || sp.ready.is_some() {
                return;
            }
            sp.filling = true;
        }
        let svc = Arc::clone(self);
        rt.spawn(async move {
            let taken = lock(&svc.spare).taken.take();
            if let Some(ns) = taken {
                let _ = tokio::task::spawn_blocking(move || ns.delete()).await;
            }
            let made = match (svc.driver().await, crate::containers::names::new_id()) {
                (Ok(driver), Ok(id)) => driver
                    .new_spare(&svc.spare_dir, &id[..16])
                    .await
                    .map_err(EngineError::from),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            let mut sp = lock(&svc.spare);
            sp.filling = false;
            match made {
                Ok(m) if !sp.closed => sp.ready = Some(m),
                Ok(m) => {
                    let _ = m.ns.delete();
                }
                Err(e) => tracing::debug!(error = %e, "spare network namespace"),
            }
        });
    }

    /// berthd is stopping: the spare namespace goes, none is made again.
    pub fn shutdown(&self) {
        let mut sp = lock(&self.spare);
        sp.closed = true;
        sp.clear();
        drop(sp);
        // The allocations themselves are the running containers' (see
        // recover); what this keeps is where each subnet's next search
        // starts, so that a freed address is not handed out again at once.
        if let Err(e) = self.records.save(None, None, &lock(&self.ipam)) {
            tracing::warn!(error = %e, "could not save the address manager");
        }
    }

    async fn join_inner(
        &self,
        id: &str,
        name: &str,
        j: &Joining,
        port_requests: &[ports::PortRequest],
        dns_servers: &[String],
        joined: &mut Joined,
    ) -> Result<(), EngineError> {
        let driver = self.driver().await?;
        let spare_veth = j.spare_veth.as_deref();
        for (i, (n, ep)) in j.nets.iter().enumerate() {
            let ep = self
                .attach(
                    id,
                    &j.ns,
                    n,
                    ep,
                    i,
                    Some(&j.inner),
                    spare_veth.filter(|_| i == 0),
                )
                .await
                .inspect_err(|_| {
                    // Not recorded in `joined` yet: its address goes back here.
                })?;
            joined.endpoints.insert(n.name.clone(), ep.clone());
        }
        if !port_requests.is_empty() {
            let (n, _) = &j.nets[0];
            let ip = joined
                .endpoints
                .get(&n.name)
                .and_then(|e| e.ip.or(e.ipv6))
                .ok_or_else(|| EngineError::Internal("published ports need an address".into()))?;
            let mappings = ports::choose(port_requests)?;
            joined.ports = mappings.iter().map(ports::published).collect();
            let held = driver
                .publish(PublishRules {
                    owner: id.to_owned(),
                    container_ip: ip,
                    mappings,
                })
                .await
                .map_err(|e| match e {
                    berth_net::NetError::PortInUse { host_ip, port, .. } => {
                        EngineError::Internal(format!(
                            "driver failed programming external connectivity on endpoint {name} ({}): Bind for {host_ip}:{port} failed: port is already allocated",
                            &id[..12.min(id.len())]
                        ))
                    }
                    e => e.into(),
                })?;
            lock(&self.live).entry(id.to_owned()).or_default().ports = Some(held);
        }
        if j.embedded_dns {
            self.start_dns(id, &j.ns, dns_servers).await?;
        }
        Ok(())
    }

    /// One endpoint, `eth<index>`: an address from IPAM, then the veth
    /// (configured inside through `inner` when given: a connection made in
    /// `ns` already; `spare_veth`: the pair of a spare namespace).
    #[allow(clippy::too_many_arguments)]
    async fn attach(
        &self,
        id: &str,
        ns: &NetNs,
        n: &Network,
        ep: &Endpoint,
        index: usize,
        inner: Option<&berth_net::link::Netlink>,
        spare_veth: Option<&str>,
    ) -> Result<Endpoint, EngineError> {
        let ifname = &format!("eth{index}");
        self.ensure_ready(n).await?;
        let mut got = ep.clone();
        got.clear_runtime();
        got.network_id = n.id.clone();
        got.endpoint_id = endpoint_id(id, &n.id);
        got.ifname = ifname.to_owned();
        let mut addresses = Vec::new();
        {
            let mut ipam = lock(&self.ipam);
            let state = ipam
                .network(&n.name)
                .cloned()
                .ok_or_else(|| EngineError::NoSuchNetwork(n.name.clone()))?;
            let want4 = ep.ipv4_address.parse::<IpAddr>().ok();
            let want6 = ep.ipv6_address.parse::<IpAddr>().ok();
            let mut taken = Vec::new();
            let res = (|| -> Result<(), EngineError> {
                for s in &state.subnets {
                    let v6 = s.subnet.addr().is_ipv6();
                    if v6 && got.ipv6.is_some() || !v6 && got.ip.is_some() {
                        continue;
                    }
                    let family = if v6 { Family::V6 } else { Family::V4 };
                    let want = if v6 { want6 } else { want4 };
                    let ip = ipam.allocate(&n.name, family, want)?;
                    taken.push(ip);
                    addresses.push(s.cidr_of(ip));
                    if v6 {
                        got.ipv6 = Some(ip);
                        got.ipv6_prefix_len = s.subnet.prefix_len();
                        got.ipv6_gateway = Some(s.gateway);
                    } else {
                        got.ip = Some(ip);
                        got.prefix_len = s.subnet.prefix_len();
                        got.gateway = Some(s.gateway);
                    }
                }
                Ok(())
            })();
            if let Err(e) = res {
                for ip in taken {
                    ipam.release(&n.name, ip);
                }
                return Err(e);
            }
        }
        let mac = parse_mac(&ep.mac_address)?;
        let req = EndpointRequest {
            id: got.endpoint_id.clone(),
            addresses,
            ifname: ifname.to_owned(),
            mac,
        };
        match self
            .driver()
            .await?
            .attach_with(&self.bridge_of(n), ns, &req, inner, spare_veth)
            .await
        {
            Ok(e) => {
                got.mac = berth_net::link::format_mac(&e.mac);
                got.host_veth = e.host_veth;
                Ok(got)
            }
            Err(e) => {
                self.release(&n.name, &got);
                Err(e.into())
            }
        }
    }

    fn release(&self, network: &str, ep: &Endpoint) {
        let mut ipam = lock(&self.ipam);
        for ip in [ep.ip, ep.ipv6].into_iter().flatten() {
            ipam.release(network, ip);
        }
    }

    async fn start_dns(
        &self,
        id: &str,
        ns: &NetNs,
        dns_servers: &[String],
    ) -> Result<(), EngineError> {
        let mut cfg = DnsConfig::default();
        if self.cfg.dns_forward {
            let servers: Vec<IpAddr> = if dns_servers.is_empty() {
                std::fs::read_to_string("/etc/resolv.conf")
                    .map(|t| berth_net::dns::ResolvConf::parse(&t).nameservers)
                    .unwrap_or_default()
            } else {
                dns_servers.iter().filter_map(|s| s.parse().ok()).collect()
            };
            cfg.forward = servers
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 53))
                .collect();
        }
        let index = self.index.clone();
        let me = id.to_owned();
        let resolver = move |q: &str| -> Option<Vec<IpAddr>> {
            let idx = index.read().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            for (net, members) in idx.iter() {
                let Some(mine) = members.get(&me) else {
                    continue;
                };
                let q = q
                    .strip_suffix(net.as_str())
                    .and_then(|s| s.strip_suffix('.'))
                    .unwrap_or(q);
                // A link's alias stands for the linked container's name.
                let q = mine
                    .links
                    .iter()
                    .find(|(alias, _)| alias.eq_ignore_ascii_case(q))
                    .map_or(q, |(_, name)| name.as_str());
                for e in members.values() {
                    if e.names.iter().any(|n| n.eq_ignore_ascii_case(q)) {
                        out.extend(e.ips.iter().copied());
                    }
                }
            }
            (!out.is_empty()).then_some(out)
        };
        let server = DnsServer::start(Some(ns), cfg, resolver).await?;
        lock(&self.live).entry(id.to_owned()).or_default().dns = Some(server);
        Ok(())
    }

    /// Container `id` (`name`) answers by name, short id and aliases on
    /// the networks it joined: once it runs, not while it is made.
    pub fn announce(&self, id: &str, name: &str, joined: &Joined) {
        for (net, ep) in &joined.endpoints {
            self.index_add(net, id, name, ep);
        }
    }

    fn index_add(&self, network: &str, id: &str, name: &str, ep: &Endpoint) {
        let mut names = vec![name.to_owned(), id[..12.min(id.len())].to_owned()];
        names.extend(ep.aliases.iter().cloned());
        let entry = DnsEntry {
            names,
            ips: [ep.ip, ep.ipv6].into_iter().flatten().collect(),
            links: ep
                .links
                .iter()
                .filter_map(|l| crate::containers::parse_link(l).ok())
                .map(|(name, alias)| (alias, name))
                .collect(),
        };
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(network.to_owned())
            .or_default()
            .insert(id.to_owned(), entry);
    }

    fn index_remove(&self, id: &str) {
        let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
        for members in idx.values_mut() {
            members.remove(id);
        }
    }

    /// Renames container `id` in the DNS answers.
    pub fn renamed(&self, id: &str, old: &str, new: &str) {
        let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
        for members in idx.values_mut() {
            if let Some(e) = members.get_mut(id) {
                for n in &mut e.names {
                    if n == old {
                        *n = new.to_owned();
                    }
                }
            }
        }
    }

    /// [`Self::leave`] of what a start's [`Self::finish_join`] gave.
    pub async fn leave_joined(&self, id: &str, joined: &Joined) {
        self.leave(id, &joined.endpoints, !joined.ports.is_empty())
            .await;
    }

    /// Undoes [`NetworkService::join`] (idempotent): DNS server, ports,
    /// veths, addresses, namespace.
    pub async fn leave(&self, id: &str, endpoints: &BTreeMap<String, Endpoint>, had_ports: bool) {
        let live = lock(&self.live).remove(id);
        self.index_remove(id);
        if let Some(live) = live {
            if let Some(dns) = live.dns {
                dns.stop().await;
            }
            if let Some(ports) = live.ports {
                // Closes the listeners and the relayed connections before returning: the
                // host ports are free once the container is gone.
                ports.stop().await;
            }
        }
        let pinned = self.netns_dir.join(id).exists();
        if !pinned && endpoints.values().all(|e| e.endpoint_id.is_empty()) {
            return;
        }
        if let Ok(driver) = self.driver().await {
            if had_ports && let Err(e) = driver.unpublish(id).await {
                tracing::warn!(container = %id, error = %e, "unpublish ports");
            }
            for ep in endpoints.values().filter(|e| !e.endpoint_id.is_empty()) {
                let veth = ep.host_veth();
                // With the namespace deleted below the pair goes with it; deleting
                // it here would wait an RCU grace period (~20 ms) on every exit.
                let r = if pinned {
                    driver.release(&veth).await
                } else {
                    driver.detach(&veth).await
                };
                if let Err(e) = r {
                    tracing::warn!(container = %id, veth = %veth, error = %e, "remove veth");
                }
            }
        }
        for (net, ep) in endpoints {
            self.release(net, ep);
        }
        if pinned && let Err(e) = NetNs::delete_named(&self.netns_dir, id) {
            tracing::warn!(container = %id, error = %e, "delete network namespace");
        }
    }

    /// `docker network connect` of a running container: one more endpoint
    /// in its namespace.
    pub async fn connect_running(
        &self,
        id: &str,
        name: &str,
        n: &Network,
        ep: &Endpoint,
        index: usize,
    ) -> Result<Endpoint, EngineError> {
        if n.driver != "bridge" {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        let ns = NetNs::open(&self.netns_dir, id)?;
        let got = self.attach(id, &ns, n, ep, index, None, None).await?;
        self.index_add(&n.name, id, name, &got);
        if n.is_user_defined()
            && lock(&self.live).get(id).is_none_or(|l| l.dns.is_none())
            && let Err(e) = self.start_dns(id, &ns, &[]).await
        {
            tracing::warn!(container = %id, error = %e, "embedded DNS");
        }
        Ok(got)
    }

    /// `docker network disconnect` of a running container.
    pub async fn disconnect_running(&self, id: &str, network: &str, ep: &Endpoint) {
        if let Ok(driver) = self.driver().await
            && !ep.endpoint_id.is_empty()
        {
            let _ = driver.detach(&ep.host_veth()).await;
        }
        let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = idx.get_mut(network) {
            m.remove(id);
        }
        drop(idx);
        self.release(network, ep);
    }

    /// After a daemon start: `running` are the containers still running
    /// (id, name, endpoints, ports, whether they use the embedded DNS).
    /// Their addresses stay allocated and everything else is given back;
    /// their ports are reserved and their DNS servers started again;
    /// namespaces of containers that are gone are removed.
    pub async fn recover(&self, running: &[Running]) {
        {
            let mut ipam = lock(&self.ipam);
            let held: HashSet<(String, IpAddr)> = running
                .iter()
                .flat_map(|r| {
                    r.endpoints.iter().flat_map(|(net, e)| {
                        [e.ip, e.ipv6]
                            .into_iter()
                            .flatten()
                            .map(move |ip| (net.clone(), ip))
                    })
                })
                .collect();
            let mut changed = false;
            let nets: Vec<String> = ipam.networks.keys().cloned().collect();
            for net in nets {
                let allocated: Vec<IpAddr> = ipam
                    .network(&net)
                    .map(|s| {
                        s.subnets
                            .iter()
                            .flat_map(|s| {
                                s.allocated
                                    .iter()
                                    .copied()
                                    .filter(move |ip| *ip != s.gateway)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for ip in allocated {
                    if !held.contains(&(net.clone(), ip)) {
                        changed |= ipam.release(&net, ip);
                    }
                }
            }
            for (n, ip) in &held {
                if ipam.network(n).is_some() {
                    let family = if ip.is_ipv6() { Family::V6 } else { Family::V4 };
                    changed |= ipam.allocate(n, family, Some(*ip)).is_ok();
                }
            }
            if changed && let Err(e) = self.records.save(None, None, &ipam) {
                tracing::warn!(error = %e, "could not save recovered addresses");
            }
        }
        let mut alive = HashSet::new();
        for Running {
            id,
            name,
            endpoints: eps,
            ports: published,
        } in running
        {
            if !self.netns_dir.join(id).exists() {
                continue;
            }
            alive.insert(id.clone());
            let mut dns = false;
            for (net, ep) in eps {
                self.index_add(net, id, name, ep);
                dns |= self.get(&ep.network_id).is_ok_and(|n| n.is_user_defined());
            }
            if !published.is_empty() {
                let mappings: Vec<_> = published.iter().map(ports::mapping).collect();
                // The address join published them to: the first bridge endpoint's.
                let target = eps
                    .iter()
                    .filter(|(net, ep)| {
                        self.get(&ep.network_id)
                            .or_else(|_| self.get(net))
                            .is_ok_and(|n| n.driver == "bridge")
                    })
                    .find_map(|(_, ep)| ep.ip.or(ep.ipv6));
                let relayed = PortReservation::reserve(&mappings).and_then(|held| match target {
                    Some(ip) => UserlandProxy::relay(held, ip),
                    // Nothing to relay to: hold the ports all the same.
                    None => Ok(UserlandProxy::hold(held)),
                });
                match relayed {
                    Ok(relay) => {
                        lock(&self.live).entry(id.clone()).or_default().ports = Some(relay);
                    }
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "reserve published ports again")
                    }
                }
            }
            if dns {
                let ns = NetNs::from_path(self.netns_dir.join(id));
                if let Err(e) = self.start_dns(id, &ns, &[]).await {
                    tracing::warn!(container = %id, error = %e, "embedded DNS");
                }
            }
        }
        // Namespaces nobody runs in any more.
        if let Ok(rd) = std::fs::read_dir(&self.netns_dir) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if alive.contains(&id) {
                    continue;
                }
                if let Ok(driver) = self.driver().await {
                    let _ = driver.unpublish(&id).await;
                }
                let _ = NetNs::delete_named(&self.netns_dir, &id);
            }
        }
    }
}

/// The endpoint id of container `id` on network `net`: stable, so that a
/// restarted berthd finds the veth again.
fn endpoint_id(id: &str, net: &str) -> String {
    berth_image::content::Digest::of(
        berth_image::content::Algorithm::Sha256,
        format!("{id}/{net}").as_bytes(),
    )
    .hex()
    .to_owned()
}

fn parse_mac(s: &str) -> Result<Option<[u8; 6]>, EngineError> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || EngineError::InvalidArgument(format!("invalid MAC address: {s}"));
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    <[u8; 6]>::try_from(parts).map(Some).map_err(|_| bad())
}

/// The `Networks` of `docker inspect` for one endpoint.
pub fn endpoint_json(id: &str, name: &str, ep: &Endpoint, running: bool) -> serde_json::Value {
    let ipam =
        if ep.ipv4_address.is_empty() && ep.ipv6_address.is_empty() && ep.link_local_ips.is_empty()
        {
            serde_json::Value::Null
        } else {
            let mut v =
                serde_json::json!({"IPv4Address": ep.ipv4_address, "IPv6Address": ep.ipv6_address});
            if !ep.link_local_ips.is_empty() {
                v["LinkLocalIPs"] = serde_json::json!(ep.link_local_ips);
            }
            v
        };
    let s = |ip: Option<IpAddr>| ip.map(|i| i.to_string()).unwrap_or_default();
    let mut dns = vec![name.to_owned(), id[..12.min(id.len())].to_owned()];
    dns.extend(ep.aliases.iter().cloned());
    serde_json::json!({
        "IPAMConfig": ipam,
        "Links": if ep.links.is_empty() { serde_json::Value::Null } else { serde_json::json!(ep.links) },
        "Aliases": if ep.aliases.is_empty() { serde_json::Value::Null } else { serde_json::json!(ep.aliases) },
        "MacAddress": if running { ep.mac.clone() } else { ep.mac_address.clone() },
        "DriverOpts": if ep.driver_opts.is_empty() { serde_json::Value::Null } else { serde_json::json!(ep.driver_opts) },
        "NetworkID": ep.network_id,
        "EndpointID": if running { ep.endpoint_id.clone() } else { String::new() },
        "Gateway": s(ep.gateway),
        "IPAddress": s(ep.ip),
        "IPPrefixLen": ep.prefix_len,
        "IPv6Gateway": s(ep.ipv6_gateway),
        "GlobalIPv6Address": s(ep.ipv6),
        "GlobalIPv6PrefixLen": ep.ipv6_prefix_len,
        "DNSNames": if ep.network_id.is_empty() { serde_json::Value::Null } else { serde_json::json!(dns) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:42:0a:00:00:05").unwrap(),
            Some([2, 0x42, 10, 0, 0, 5])
        );
        assert!(parse_mac("02:42").is_err());
        assert!(parse_mac("zz:42:0a:00:00:05").is_err());
        assert_eq!(parse_mac("").unwrap(), None);
    }

    #[test]
    fn endpoint_ids_are_stable_and_distinct() {
        assert_eq!(endpoint_id("a", "n"), endpoint_id("a", "n"));
        assert_ne!(endpoint_id("a", "n"), endpoint_id("b", "n"));
        assert_eq!(endpoint_id("a", "n").len(), 64);
    }

    #[test]
    fn create_bodies_parse() {
        let c: CreateNetwork = serde_json::from_str(
            r#"{"Name":"n","Driver":"bridge","IPAM":{"Driver":"default","Config":[{"Subnet":"10.9.0.0/24","Gateway":"10.9.0.1"}]},"Options":null,"Labels":{"a":"b"},"Internal":true,"EnableIPv6":null}"#,
        )
        .unwrap();
        assert!(c.internal);
        assert_eq!(c.ipam.unwrap().config[0].subnet, "10.9.0.0/24");
        let n: NetworkingConfig = serde_json::from_str(
            r#"{"EndpointsConfig":{"n":{"IPAMConfig":{"IPv4Address":"10.9.0.5"},"Aliases":["web"]},"m":null}}"#,
        )
        .unwrap();
        assert_eq!(n.endpoints_config.len(), 2);
    }
}
