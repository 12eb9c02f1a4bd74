//! nftables rules in berth's own tables (`table ip berth`, `table ip6 berth`): port
//! publishing (DNAT, including from 127.0.0.1), isolation between networks and `internal`
//! networks. Other tables are never touched.
//!
//! Rules are built with the `nftables` crate's typed JSON schema and applied by `nft -j -f -`
//! (Debian's `nftables` package): one atomic transaction per call, and the JSON schema is
//! nft's documented, stable interface. Each rule carries a comment (`net:<id>` or
//! `ctr:<id>`) so it can be found and removed later, by a fresh process too.
//! A container's port rules (added at its start, deleted by handle at its end) go over a
//! netlink socket that berthd keeps open instead (crate::nfnl): `nft` waits for the kernel
//! to free deleted rules as it closes its socket, 20-35 ms here; nft is the fallback.
//!
//! Layout (per family):
//! ```text
//! chain prerouting  { type nat hook prerouting priority -100; jump from-bridges;
//!                     fib daddr type local jump ports }
//! chain output      { type nat hook output priority -100;     fib daddr type local jump ports }
//! chain postrouting { type nat hook postrouting priority 100; jump net-postrouting }
//! chain raw-prerouting { type filter hook prerouting priority -300; jump net-prerouting }
//! chain forward     { type filter hook forward priority 0; policy accept;
//!                     jump isolation-1; jump net-forward }
//! chain from-bridges     # per non-internal network: iifname BR accept: no DNAT for
//!                        # containers, their connections to published ports reach berth's
//!                        # relay (crate::proxy)
//! chain ports            # per container: [ip daddr H] tcp dport P dnat to C:Q
//! chain net-prerouting   # per network: iifname BR ip daddr 127.0.0.0/8 drop (and saddr):
//!                        # route_localnet must not open the host's loopback to containers
//! chain net-postrouting  # per network: oifname BR ip saddr 127.0.0.0/8 masquerade (localhost DNAT)
//! chain isolation-1      # per network: iifname BR oifname != BR jump isolation-2
//! chain isolation-2      # per network: oifname BR drop
//! chain net-forward      # internal networks: iifname BR oifname != BR drop (and back)
//! ```
//! The calls are synchronous (they run `nft`): from async code use `spawn_blocking`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ipnet::IpNet;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix,
};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};
use crate::nfnl::{self, AddError, DnatRule, NfSocket, RuleHandle};
use crate::ports::{PortMapping, Protocol};

/// Where berth's rules go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallConfig {
    /// Table name, used in both the `ip` and `ip6` families. Default `berth`.
    pub table: String,
    /// The `nft` binary.
    pub nft: PathBuf,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            table: "berth".to_string(),
            nft: PathBuf::from("nft"),
        }
    }
}

/// The firewall side of one bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRules {
    /// Network id: rules are tagged `net:<id>`.
    pub id: String,
    /// The bridge device.
    pub bridge: String,
    /// The network's subnets (used by `masquerade`).
    pub subnets: Vec<IpNet>,
    /// No traffic in or out of the bridge (only between its containers).
    pub internal: bool,
    /// Source-NAT the subnets towards other interfaces (outbound internet access).
    /// Off by default: the engine decides; tests never turn it on.
    pub masquerade: bool,
}

/// The published ports of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRules {
    /// Owner (container id): rules are tagged `ctr:<owner>`.
    pub owner: String,
    /// Its address on that bridge.
    pub container_ip: IpAddr,
    pub mappings: Vec<PortMapping>,
}

/// berth's nftables tables.
#[derive(Debug)]
pub struct Firewall {
    cfg: FirewallConfig,
    ready: Mutex<bool>,
    /// The containers' port rules (`ctr:` tags) and their handles: filled by one listing
    /// at the first publish or unpublish, then kept from nft's echo of what publish adds,
    /// so that a publish or an unpublish needs no listing. None until that listing. Held for
    /// the whole of a publish or unpublish.
    ports: Mutex<Option<PortRules>>,
    /// berthd's own nf_tables socket, kept open: a container's port rules are added and
    /// deleted through it (see crate::nfnl for why). None when it could not be opened (or
    /// fell out of step); nft does the work then.
    netlink: Mutex<Option<NfSocket>>,
}

/// One rule in berth's table, as nft names it for a delete.
#[derive(Debug, Clone)]
struct RuleRef {
    family: NfFamily,
    chain: String,
    handle: u32,
}

/// Port rules by tag.
type PortRules = HashMap<String, Vec<RuleRef>>;

/// Prefix of the tags of containers' port rules.
const PORTS_TAG: &str = "ctr:";

/// Tag of the port rules of container (publish owner) `owner`.
fn ports_tag(owner: &str) -> String {
    format!("{PORTS_TAG}{owner}")
}

const FAMILIES: [NfFamily; 2] = [NfFamily::IP, NfFamily::IP6];

fn fam_name(f: NfFamily) -> &'static str {
    match f {
        NfFamily::IP6 => "ip6",
        _ => "ip",
    }
}

fn s(v: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(v.into())
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn jump(target: &'static str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: target.into(),
    })
}

fn addr_field(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

fn prefix(net: IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

fn local_daddr() -> Statement<'static> {
    matches(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: [FibFlag::Daddr].into_iter().collect(),
        })),
        Operator::EQ,
        s("local"),
    )
}

impl Firewall {
    /// A handle on the tables named in `cfg`; nothing is created until first use.
    pub fn new(cfg: FirewallConfig) -> Firewall {
        Firewall {
            cfg,
            ready: Mutex::new(false),
            ports: Mutex::new(None),
            // Opened here, in the namespace of the caller (the host's): nothing later
            // depends on which thread makes a call.
            netlink: Mutex::new(NfSocket::open().ok()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FirewallConfig {
        &self.cfg
    }

    fn table(&self) -> Cow<'static, str> {
        Cow::Owned(self.cfg.table.clone())
    }

    fn rule(
        &self,
        family: NfFamily,
        chain: &'static str,
        tag: Option<&str>,
        expr: Vec<Statement<'static>>,
    ) -> NfObject<'static> {
        NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(Rule {
            family,
            table: self.table(),
            chain: chain.into(),
            expr: expr.into(),
            handle: None,
            index: None,
            comment: tag.map(|t| Cow::Owned(t.to_string())),
        })))
    }

    fn chain(
        &self,
        family: NfFamily,
        name: &'static str,
        base: Option<(NfChainType, NfHook, i32)>,
    ) -> NfObject<'static> {
        let (ty, hook, prio) = match base {
            Some((t, h, p)) => (Some(t), Some(h), Some(p)),
            None => (None, None, None),
        };
        NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(Chain {
            family,
            table: self.table(),
            name: name.into(),
            newname: None,
            handle: None,
            _type: ty,
            hook,
            prio,
            dev: None,
            policy: base.map(|_| NfChainPolicy::Accept),
        })))
    }

    fn flush_chain(&self, family: NfFamily, name: &'static str) -> NfObject<'static> {
        NfObject::CmdObject(NfCmd::Flush(FlushObject::Chain(Chain {
            family,
            table: self.table(),
            name: name.into(),
            ..Chain::default()
        })))
    }

    /// Runs one nft transaction.
    fn apply(&self, op: &str, objects: Vec<NfObject<'static>>) -> Result<()> {
        let batch = Nftables {
            objects: objects.into(),
        };
        let json = serde_json::to_string(&batch).map_err(|e| self.err(op, e.to_string()))?;
        self.run_nft(op, &["-j", "-f", "-"], Some(json.as_bytes()))
            .map(|_| ())
    }

    fn err(&self, op: &str, detail: String) -> NetError {
        NetError::Nft {
            table: self.cfg.table.clone(),
            op: op.to_string(),
            detail,
        }
    }

    fn run_nft(&self, op: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let mut child = Command::new(&self.cfg.nft)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.err(op, format!("running {}: {e}", self.cfg.nft.display())))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)
                .map_err(|e| self.err(op, format!("writing to nft: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.err(op, format!("waiting for nft: {e}")))?;
        if !out.status.success() {
            return Err(self.err(
                op,
                format!(
                    "nft exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates the tables and base chains, and (re)writes the base chains' fixed rules.
    /// Atomic and idempotent; called by every other method the first time.
    pub fn ensure(&self) -> Result<()> {
        let mut ready = self
            .ready
            .lock()
            .map_err(|_| self.err("setup", "lock poisoned".to_string()))?;
        if *ready {
            return Ok(());
        }
        let mut objs = Vec::new();
        for family in FAMILIES {
            objs.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Table(
                Table {
                    family,
                    name: self.table(),
                    handle: None,
                },
            ))));
            objs.push(self.chain(
                family,
                "prerouting",
                Some((NfChainType::NAT, NfHook::Prerouting, -100)),
            ));
            objs.push(self.chain(
                family,
                "output",
                Some((NfChainType::NAT, NfHook::Output, -100)),
            ));
            objs.push(self.chain(
                family,
                "postrouting",
                Some((NfChainType::NAT, NfHook::Postrouting, 100)),
            ));
            objs.push(self.chain(
                family,
                "raw-prerouting",
                Some((NfChainType::Filter, NfHook::Prerouting, -300)),
            ));
            objs.push(self.chain(
                family,
                "forward",
                Some((NfChainType::Filter, NfHook::Forward, 0)),
            ));
            for regular in [
                "from-bridges",
                "net-prerouting",
                "ports",
                "net-postrouting",
                "isolation-1",
                "isolation-2",
                "net-forward",
            ] {
                objs.push(self.chain(family, regular, None));
            }
            for base in [
                "prerouting",
                "output",
                "postrouting",
                "forward",
                "raw-prerouting",
            ] {
                objs.push(self.flush_chain(family, base));
            }
            objs.push(self.rule(family, "prerouting", None, vec![jump("from-bridges")]));
            objs.push(self.rule(
                family,
                "prerouting",
                None,
                vec![local_daddr(), jump("ports")],
            ));
            objs.push(self.rule(family, "output", None, vec![local_daddr(), jump("ports")]));
            objs.push(self.rule(family, "postrouting", None, vec![jump("net-postrouting")]));
            objs.push(self.rule(family, "raw-prerouting", None, vec![jump("net-prerouting")]));
            objs.push(self.rule(family, "forward", None, vec![jump("isolation-1")]));
            objs.push(self.rule(family, "forward", None, vec![jump("net-forward")]));
        }
        self.apply("create tables", objs)?;
        *ready = true;
        Ok(())
    }

    /// Installs the rules of a network (replacing any it had).
    pub fn add_network(&self, net: &NetworkRules) -> Result<()> {
        self.ensure()?;
        let tag = format!("net:{}", net.id);
        self.remove_tagged(&tag)?;
        let br = || s(net.bridge.clone());
        let mut objs = Vec::new();
        for family in FAMILIES {
            // Containers reaching a published port (their own too: DNAT would send it back
            // to where it came from, source = destination, and the kernel drops that) go
            // to the port's relay instead, as with Docker's userland proxy. `accept` ends
            // the nat prerouting chain: the `ports` jump after it is not taken. Not for
            // internal networks: the relay would be their way out; their DNATed packets
            // are dropped in `net-forward` as before.
            if !net.internal {
                objs.push(self.rule(
                    family,
                    "from-bridges",
                    Some(&tag),
                    vec![
                        matches(meta(MetaKey::Iifname), Operator::EQ, br()),
                        Statement::Accept(None),
                    ],
                ));
            }
            objs.push(self.rule(
                family,
                "isolation-1",
                Some(&tag),
                vec![
                    matches(meta(MetaKey::Iifname), Operator::EQ, br()),
                    matches(meta(MetaKey::Oifname), Operator::NEQ, br()),
                    jump("isolation-2"),
                ],
            ));
            objs.push(self.rule(
                family,
                "isolation-2",
                Some(&tag),
                vec![
                    matches(meta(MetaKey::Oifname), Operator::EQ, br()),
                    Statement::Drop(None),
                ],
            ));
            if net.internal {
                objs.push(self.rule(
                    family,
                    "net-forward",
                    Some(&tag),
                    vec![
                        matches(meta(MetaKey::Iifname), Operator::EQ, br()),
                        matches(meta(MetaKey::Oifname), Operator::NEQ, br()),
                        Statement::Drop(None),
                    ],
                ));
                objs.push(self.rule(
                    family,
                    "net-forward",
                    Some(&tag),
                    vec![
                        matches(meta(MetaKey::Oifname), Operator::EQ, br()),
                        matches(meta(MetaKey::Iifname), Operator::NEQ, br()),
                        Statement::Drop(None),
                    ],
                ));
            }
        }
        let loopback = IpNet::V4(
            ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(127, 0, 0, 0), 8)
                .map_err(|e| self.err("add network", e.to_string()))?,
        );
        // route_localnet (below) would let containers reach the host's 127.0.0.0/8
        // services through the bridge: drop loopback addresses coming in on it.
        for field in ["daddr", "saddr"] {
            objs.push(self.rule(
                NfFamily::IP,
                "net-prerouting",
                Some(&tag),
                vec![
                    matches(meta(MetaKey::Iifname), Operator::EQ, br()),
                    matches(payload("ip", field), Operator::EQ, prefix(loopback)),
                    Statement::Drop(None),
                ],
            ));
        }
        // Host connections to 127.0.0.1:<published port> leave with source 127.0.0.1
        // (allowed by route_localnet on the bridge); rewrite it to the gateway address.
        if !net.internal {
            objs.push(self.rule(
                NfFamily::IP,
                "net-postrouting",
                Some(&tag),
                vec![
                    matches(meta(MetaKey::Oifname), Operator::EQ, br()),
                    matches(payload("ip", "saddr"), Operator::EQ, prefix(loopback)),
                    Statement::Masquerade(None),
                ],
            ));
        }
        if net.masquerade && !net.internal {
            for subnet in &net.subnets {
                let family = if subnet.addr().is_ipv4() {
                    NfFamily::IP
                } else {
                    NfFamily::IP6
                };
                let field = addr_field(&subnet.addr());
                objs.push(self.rule(
                    family,
                    "net-postrouting",
                    Some(&tag),
                    vec![
                        matches(payload(field, "saddr"), Operator::EQ, prefix(*subnet)),
                        matches(meta(MetaKey::Oifname), Operator::NEQ, br()),
                        Statement::Masquerade(None),
                    ],
                ));
            }
        }
        self.apply(&format!("add rules of network {}", net.id), objs)
    }

    /// Removes every rule of network `id`. Idempotent.
    pub fn remove_network(&self, id: &str) -> Result<()> {
        self.remove_tagged(&format!("net:{id}"))
    }

    /// DNATs the host ports of `rules.mappings` to the container. The caller reserves the
    /// ports first ([`crate::ports::PortReservation`]). Replaces the owner's earlier rules.
    pub fn publish(&self, rules: &PublishRules) -> Result<()> {
        self.ensure()?;
        let tag = ports_tag(&rules.owner);
        let mut known = self.ports_known()?;
        self.remove_ports(&mut known, &tag)?;
        let family = if rules.container_ip.is_ipv4() {
            NfFamily::IP
        } else {
            NfFamily::IP6
        };
        let mut objs = Vec::new();
        let mut dnat = Vec::new();
        for m in &rules.mappings {
            m.validate()?;
            if let Some(h) = m.host_ip
                && !h.is_unspecified()
                && h.is_ipv4() != rules.container_ip.is_ipv4()
            {
                return Err(NetError::BadPortMapping {
                    mapping: m.to_string(),
                    problem: format!(
                        "host address and container address {} differ in family",
                        rules.container_ip
                    ),
                });
            }
            for (host_port, container_port) in m.pairs() {
                let mut expr = Vec::new();
                if let Some(h) = m.host_ip.filter(|h| !h.is_unspecified()) {
                    expr.push(matches(
                        payload(addr_field(&h), "daddr"),
                        Operator::EQ,
                        s(h.to_string()),
                    ));
                }
                expr.push(matches(
                    payload(m.protocol.as_str(), "dport"),
                    Operator::EQ,
                    Expression::Number(u32::from(host_port)),
                ));
                expr.push(Statement::DNAT(Some(NAT {
                    addr: Some(s(rules.container_ip.to_string())),
                    family: None,
                    port: Some(Expression::Number(u32::from(container_port))),
                    flags: None,
                })));
                objs.push(self.rule(family, "ports", Some(&tag), expr));
                dnat.push(DnatRule {
                    chain: "ports",
                    host_ip: m.host_ip.filter(|h| !h.is_unspecified()),
                    l4proto: match m.protocol {
                        Protocol::Tcp => libc::IPPROTO_TCP as u8,
                        Protocol::Udp => libc::IPPROTO_UDP as u8,
                    },
                    host_port,
                    to_ip: rules.container_ip,
                    to_port: container_port,
                    comment: &tag,
                });
            }
        }
        match self.add_over_netlink(&dnat) {
            Ok(handles) => {
                let map = known.get_or_insert_with(PortRules::new);
                let entry = map.entry(tag.clone()).or_default();
                for h in &handles {
                    match h.and_then(|h| u32::try_from(h).ok()) {
                        Some(handle) => entry.push(RuleRef {
                            family,
                            chain: "ports".to_string(),
                            handle,
                        }),
                        // Added, handle unknown: list again next time.
                        None => {
                            *known = None;
                            break;
                        }
                    }
                }
                return Ok(());
            }
            Err(AddError::Unknown(e)) => {
                // Sent without an answer: whatever of it is there goes before nft adds.
                tracing::warn!(table = %self.cfg.table, error = %e, "adding rules over netlink");
                *known = Some(self.list_ports()?);
                self.remove_ports(&mut known, &tag)?;
            }
            Err(AddError::NotAdded(e)) => {
                tracing::debug!(table = %self.cfg.table, error = %e, "adding rules over netlink");
            }
        }
        let expected = objs.len();
        let added = self.apply_echo(&format!("publish ports of {}", rules.owner), objs)?;
        if added.len() != expected {
            // An nft that does not echo what it added: list again next time rather
            // than miss these rules at unpublish.
            *known = None;
        } else if let Some(map) = known.as_mut() {
            for (t, r) in added {
                map.entry(t).or_default().push(r);
            }
        }
        Ok(())
    }

    /// Removes every port rule of container `owner`. Idempotent.
    pub fn unpublish(&self, owner: &str) -> Result<()> {
        let mut known = self.ports_known()?;
        self.remove_ports(&mut known, &ports_tag(owner))
    }

    /// The port-rule cache, listed once if it is not yet.
    fn ports_known(&self) -> Result<std::sync::MutexGuard<'_, Option<PortRules>>> {
        let mut known = self
            .ports
            .lock()
            .map_err(|_| self.err("port rules", "lock poisoned".to_string()))?;
        if known.is_none() {
            *known = Some(self.list_ports()?);
        }
        Ok(known)
    }

    /// Every container's port rules, from one listing.
    fn list_ports(&self) -> Result<PortRules> {
        let mut map = PortRules::new();
        for (tag, r) in self.list_rules(|t| t.starts_with(PORTS_TAG))? {
            map.entry(tag).or_default().push(r);
        }
        Ok(map)
    }

    /// Deletes the rules of `tag` that `known` holds. A handle that is gone (the table
    /// was changed behind berth's back) makes it list the ruleset again and retry once.
    fn remove_ports(&self, known: &mut Option<PortRules>, tag: &str) -> Result<()> {
        let refs = known
            .as_mut()
            .and_then(|m| m.remove(tag))
            .unwrap_or_default();
        if refs.is_empty() {
            return Ok(());
        }
        let op = format!("remove rules tagged {tag}");
        if self.delete_rules(&op, &refs).is_ok() {
            return Ok(());
        }
        let mut map = self.list_ports()?;
        let refs = map.remove(tag).unwrap_or_default();
        *known = Some(map);
        self.delete_rules(&op, &refs)
    }

    /// Deletes berth's tables in both families (everything it ever added). Idempotent.
    pub fn delete_tables(&self) -> Result<()> {
        let mut ready = self
            .ready
            .lock()
            .map_err(|_| self.err("delete tables", "lock poisoned".to_string()))?;
        for family in FAMILIES {
            if self.list_table(family)?.is_some() {
                self.apply(
                    "delete table",
                    vec![NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
                        Table {
                            family,
                            name: self.table(),
                            handle: None,
                        },
                    )))],
                )?;
            }
        }
        *ready = false;
        if let Ok(mut known) = self.ports.lock() {
            *known = None;
        }
        Ok(())
    }

    /// `nft list table` output (text) of both families, for diagnostics and tests.
    pub fn dump(&self) -> Result<String> {
        let mut out = String::new();
        for family in FAMILIES {
            if let Ok(text) = self.run_nft(
                "list",
                &["list", "table", fam_name(family), &self.cfg.table],
                None,
            ) {
                out.push_str(&text);
            }
        }
        Ok(out)
    }

    /// The table as nft JSON, or `None` if it does not exist.
    fn list_table(&self, family: NfFamily) -> Result<Option<serde_json::Value>> {
        match self.run_nft(
            "list",
            &["-j", "list", "table", fam_name(family), &self.cfg.table],
            None,
        ) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| self.err("list table", format!("bad JSON from nft: {e}"))),
            Err(NetError::Nft { detail, .. }) if detail.contains("No such file or directory") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn remove_tagged(&self, tag: &str) -> Result<()> {
        let refs: Vec<RuleRef> = self
            .list_rules(|t| t == tag)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        self.delete_rules(&format!("remove rules tagged {tag}"), &refs)
    }

    /// The rules of berth's table whose comment passes `want`, with that comment. One
    /// listing of the whole ruleset (one nft process instead of one per family).
    fn list_rules(&self, want: impl Fn(&str) -> bool) -> Result<Vec<(String, RuleRef)>> {
        let text = self.run_nft("list", &["-j", "-a", "list", "ruleset"], None)?;
        self.rules_in(&text, "list ruleset", want)
    }

    /// The rules in nft JSON output `text` (a listing, or the echo of an add) that are in
    /// berth's table and whose comment passes `want`.
    fn rules_in(
        &self,
        text: &str,
        op: &str,
        want: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, RuleRef)>> {
        let listing: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| self.err(op, format!("bad JSON from nft: {e}")))?;
        let items = listing
            .get("nftables")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for item in items {
            // A listing has {"rule": …}; an echo {"add": {"rule": …}}.
            let Some(rule) = item
                .get("rule")
                .or_else(|| item.get("add").and_then(|a| a.get("rule")))
            else {
                continue;
            };
            if rule.get("table").and_then(|t| t.as_str()) != Some(self.cfg.table.as_str()) {
                continue;
            }
            let Some(tag) = rule.get("comment").and_then(|c| c.as_str()) else {
                continue;
            };
            if !want(tag) {
                continue;
            }
            let family = match rule.get("family").and_then(|f| f.as_str()) {
                Some("ip") => NfFamily::IP,
                Some("ip6") => NfFamily::IP6,
                _ => continue,
            };
            let (Some(chain), Some(handle)) = (
                rule.get("chain").and_then(|c| c.as_str()),
                rule.get("handle").and_then(|h| h.as_u64()),
            ) else {
                continue;
            };
            let handle = u32::try_from(handle).map_err(|e| self.err(op, e.to_string()))?;
            out.push((
                tag.to_string(),
                RuleRef {
                    family,
                    chain: chain.to_string(),
                    handle,
                },
            ));
        }
        Ok(out)
    }

    /// Deletes `refs` in one transaction (nothing to do: no nft process).
    fn delete_rules(&self, op: &str, refs: &[RuleRef]) -> Result<()> {
        if refs.is_empty() || self.delete_over_netlink(refs) {
            return Ok(());
        }
        let objs = refs
            .iter()
            .map(|r| {
                NfObject::CmdObject(NfCmd::Delete(NfListObject::Rule(Rule {
                    family: r.family,
                    table: self.table(),
                    chain: Cow::Owned(r.chain.clone()),
                    expr: Cow::Owned(Vec::new()),
                    handle: Some(r.handle),
                    index: None,
                    comment: None,
                })))
            })
            .collect();
        self.apply(op, objs)
    }

    /// Adds `rules` over the kept socket; their handles. `NotAdded` when there is no
    /// socket: nft then does it.
    fn add_over_netlink(
        &self,
        rules: &[DnatRule],
    ) -> std::result::Result<Vec<Option<u64>>, AddError> {
        self.over_netlink(|sock| {
            let res = sock.add_dnat_rules(&self.cfg.table, rules);
            let in_step = !matches!(res, Err(AddError::Unknown(_)));
            (res, in_step)
        })
        .unwrap_or_else(|| Err(AddError::NotAdded(std::io::ErrorKind::NotConnected.into())))
    }

    /// Runs `f` on the kept socket, opened again if an earlier call dropped it; None
    /// without one. `f` says whether the socket is still in step with the kernel's replies
    /// (after a timeout it is not, and the next call opens a new one).
    fn over_netlink<T>(&self, f: impl FnOnce(&mut NfSocket) -> (T, bool)) -> Option<T> {
        let mut guard = self.netlink.lock().ok()?;
        if guard.is_none() {
            *guard = NfSocket::open().ok();
        }
        let (res, in_step) = f(guard.as_mut()?);
        if !in_step {
            *guard = None;
        }
        Some(res)
    }

    /// [`Self::delete_rules`] over the kept socket. False when it could not (the
    /// socket, a family it does not know, or the kernel's refusal): nft then tries, and
    /// its error is the one reported.
    fn delete_over_netlink(&self, refs: &[RuleRef]) -> bool {
        let mut rules = Vec::with_capacity(refs.len());
        for r in refs {
            let family = match r.family {
                NfFamily::IP => nfnl::NFPROTO_IPV4,
                NfFamily::IP6 => nfnl::NFPROTO_IPV6,
                _ => return false,
            };
            rules.push(RuleHandle {
                family,
                chain: &r.chain,
                handle: u64::from(r.handle),
            });
        }
        self.over_netlink(|sock| match sock.delete_rules(&self.cfg.table, &rules) {
            Ok(()) => (true, true),
            Err(e) => {
                tracing::debug!(table = %self.cfg.table, error = %e, "rule deletion over netlink");
                (false, e.kind() != std::io::ErrorKind::WouldBlock)
            }
        })
        .unwrap_or(false)
    }

    /// [`Self::apply`], returning the `ctr:` rules it added with their handles (nft's
    /// `--echo --handle`).
    fn apply_echo(
        &self,
        op: &str,
        objects: Vec<NfObject<'static>>,
    ) -> Result<Vec<(String, RuleRef)>> {
        let batch = Nftables {
            objects: objects.into(),
        };
        let json = serde_json::to_string(&batch).map_err(|e| self.err(op, e.to_string()))?;
        let out = self.run_nft(op, &["-j", "-e", "-a", "-f", "-"], Some(json.as_bytes()))?;
        self.rules_in(&out, op, |t| t.starts_with(PORTS_TAG))
    }
}
