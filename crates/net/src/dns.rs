//! Embedded DNS server, one per container namespace, on 127.0.0.11:53 (UDP and TCP) like
//! Docker's. It answers A/AAAA for the names, aliases and short ids the engine knows
//! (through a [`Resolver`] callback), NXDOMAIN for other names, REFUSED for classes other
//! than IN. Forwarding unknown names upstream is an explicit option, off by default.
//!
//! The sockets are created inside the container's namespace (on a short-lived helper
//! thread) and then served by the caller's tokio runtime.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::error::{NetError, Result};
use crate::netns::NetNs;

/// Docker's embedded DNS address.
pub const EMBEDDED_DNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Looks names up for the DNS server. `name` is lower-case without the trailing dot.
/// Return `None` for a name the engine does not know (NXDOMAIN or forwarded), and
/// `Some(addresses)` for a known one (the server keeps the family that was asked for;
/// an empty answer is NOERROR/NODATA).
pub trait Resolver: Send + Sync + 'static {
    fn resolve(&self, name: &str) -> Option<Vec<IpAddr>>;
}

impl<F> Resolver for F
where
    F: Fn(&str) -> Option<Vec<IpAddr>> + Send + Sync + 'static,
{
    fn resolve(&self, name: &str) -> Option<Vec<IpAddr>> {
        self(name)
    }
}

/// Server options.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen inside the namespace; default 127.0.0.11:53.
    pub listen: SocketAddr,
    /// TTL of the answers.
    pub ttl: u32,
    /// Upstream servers for unknown names. Empty (the default) = never forward.
    /// Forwarded queries leave from the caller's namespace (the host), like Docker's.
    pub forward: Vec<SocketAddr>,
    /// Timeout per upstream.
    pub forward_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::new(IpAddr::V4(EMBEDDED_DNS_IP), 53),
            ttl: 600,
            forward: Vec::new(),
            forward_timeout: Duration::from_secs(2),
        }
    }
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
    udp: SocketAddr,
    tcp: SocketAddr,
    /// The UDP socket, shared with the queries being answered: closed when this no longer
    /// upgrades.
    udp_socket: std::sync::Weak<UdpSocket>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Shared {
    resolver: Box<dyn Resolver>,
    cfg: DnsConfig,
}

impl DnsServer {
    /// Binds UDP and TCP on `cfg.listen` inside `ns` (lo must be up) and serves.
    /// Pass `None` as `ns` to serve in the caller's namespace (tests, host use).
    pub async fn start(
        ns: Option<&NetNs>,
        cfg: DnsConfig,
        resolver: impl Resolver,
    ) -> Result<DnsServer> {
        let where_ = ns.map_or_else(
            || "host namespace".to_string(),
            |n| format!("netns {}", n.name()),
        );
        let err = |op, source| NetError::Dns {
            netns: where_.clone(),
            op,
            source,
        };
        let listen = cfg.listen;
        let bind = move || -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
            let udp = std::net::UdpSocket::bind(listen)?;
            udp.set_nonblocking(true)?;
            let tcp = std::net::TcpListener::bind(listen)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        };
        let (udp, tcp) = match ns {
            Some(ns) => ns.run(bind)?,
            None => bind(),
        }
        .map_err(|e| err("bind", e))?;
        let udp = Arc::new(UdpSocket::from_std(udp).map_err(|e| err("register UDP socket", e))?);
        let tcp = TcpListener::from_std(tcp).map_err(|e| err("register TCP socket", e))?;
        let udp_addr = udp.local_addr().map_err(|e| err("local address", e))?;
        let tcp_addr = tcp.local_addr().map_err(|e| err("local address", e))?;
        let shared = Arc::new(Shared {
            resolver: Box::new(resolver),
            cfg,
        });
        let udp_socket = Arc::downgrade(&udp);
        let tasks = vec![
            tokio::spawn(serve_udp(udp, Arc::clone(&shared))),
            tokio::spawn(serve_tcp(tcp, shared)),
        ];
        Ok(DnsServer {
            tasks,
            udp: udp_addr,
            tcp: tcp_addr,
            udp_socket,
        })
    }

    /// Stops the server and waits until its sockets are closed (so the address can be
    /// bound again at once). Dropping also stops it, without waiting.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // The queries still being answered hold the UDP socket until their abort lands.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.udp_socket.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    // The queries being answered: aborted with this task (dropping the set).
    let mut queries = tokio::task::JoinSet::new();
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        while queries.try_join_next().is_some() {}
        let query = buf[..n].to_vec();
        let shared = Arc::clone(&shared);
        let socket = Arc::clone(&socket);
        queries.spawn(async move {
            if let Some(reply) = answer(&shared, &query).await {
                let reply = truncate_for_udp(reply);
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
}

fn truncate_for_udp(reply: Vec<u8>) -> Vec<u8> {
    if reply.len() <= 512 {
        return reply;
    }
    match Message::from_vec(&reply) {
        Ok(msg) => msg.truncate().to_vec().unwrap_or(reply),
        Err(_) => reply,
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let len =
                    match tokio::time::timeout(Duration::from_secs(10), stream.read_u16()).await {
                        Ok(Ok(len)) => usize::from(len),
                        _ => return,
                    };
                let mut query = vec![0u8; len];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&shared, &query).await else {
                    return;
                };
                let Ok(len) = u16::try_from(reply.len()) else {
                    return;
                };
                if stream.write_u16(len).await.is_err() || stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Builds the wire reply for one wire query (`None`: not even a header to answer).
async fn answer(shared: &Shared, query: &[u8]) -> Option<Vec<u8>> {
    let request = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            // Answer FORMERR if at least the id is there.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = !shared.cfg.forward.is_empty();
    if request.metadata.op_code != OpCode::Query {
        reply.metadata.response_code = ResponseCode::NotImp;
        return reply.to_vec().ok();
    }
    let Some(q) = request.queries.first().cloned() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    reply.add_query(q.clone());
    if request.queries.len() != 1 {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    }
    if q.query_class() != DNSClass::IN {
        reply.metadata.response_code = ResponseCode::Refused;
        return reply.to_vec().ok();
    }
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match shared.resolver.resolve(&name) {
        Some(addrs) => {
            reply.metadata.authoritative = true;
            for record in records(&q, &addrs, shared.cfg.ttl) {
                reply.add_answer(record);
            }
            reply.to_vec().ok()
        }
        None => {
            if !shared.cfg.forward.is_empty()
                && let Some(upstream) = forward(&shared.cfg, query).await
            {
                return Some(upstream);
            }
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.to_vec().ok()
        }
    }
}

fn records(q: &Query, addrs: &[IpAddr], ttl: u32) -> Vec<Record> {
    let name: Name = q.name().clone();
    addrs
        .iter()
        .filter_map(|ip| match (q.query_type(), ip) {
            (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(*v4))),
            (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(name.clone(), ttl, rdata))
        .collect()
}

async fn forward(cfg: &DnsConfig, query: &[u8]) -> Option<Vec<u8>> {
    for upstream in &cfg.forward {
        let bind: SocketAddr = if upstream.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(upstream).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(cfg.forward_timeout, sock.recv(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// Options for the container's `/etc/resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// The embedded server (`nameserver 127.0.0.11`) with the host's search domains and
    /// options unless `search`/`options` are given (`--dns-search`, `--dns-option`).
    /// Like Docker, `ndots:0` is added when no `ndots` option is present.
    pub fn embedded(host: Option<&str>, search: &[String], options: &[String]) -> ResolvConf {
        let parsed = host.map(ResolvConf::parse).unwrap_or_default();
        let mut options = if options.is_empty() {
            parsed.options
        } else {
            options.to_vec()
        };
        if !options.iter().any(|o| o.starts_with("ndots:")) {
            options.push("ndots:0".to_string());
        }
        ResolvConf {
            nameservers: vec![IpAddr::V4(EMBEDDED_DNS_IP)],
            search: if search.is_empty() {
                parsed.search
            } else {
                search.to_vec()
            },
            options,
        }
    }

    /// Reads `nameserver`, `search`/`domain` and `options` lines.
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        out.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    out.search = words.map(str::to_string).collect();
                }
                Some("options") => out.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        out
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from("# Generated by berth.\n");
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_keeps_host_search_and_options() {
        let host = "nameserver 192.0.2.1\nsearch example.org corp\noptions edns0 # x\n";
        let rc = ResolvConf::embedded(Some(host), &[], &[]);
        assert_eq!(
            rc.render(),
            "# Generated by berth.\nnameserver 127.0.0.11\nsearch example.org corp\noptions edns0 ndots:0\n"
        );
        let rc = ResolvConf::embedded(Some(host), &["a.b".to_string()], &["ndots:2".to_string()]);
        assert_eq!(rc.search, vec!["a.b"]);
        assert_eq!(rc.options, vec!["ndots:2"]);
    }

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), ty));
        m.to_vec().expect("encode")
    }

    fn shared() -> Shared {
        Shared {
            resolver: Box::new(|n: &str| match n {
                "web" | "alias" => Some(vec![
                    "10.88.0.5".parse().expect("ip"),
                    "fd88:b3::5".parse().expect("ip"),
                ]),
                _ => None,
            }),
            cfg: DnsConfig::default(),
        }
    }

    #[tokio::test]
    async fn answers_known_names_by_family() {
        let s = shared();
        let r = Message::from_vec(
            &answer(&s, &query("WEB.", RecordType::A))
                .await
                .expect("reply"),
        )
        .expect("decode");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.answers[0].data,
            RData::A(A("10.88.0.5".parse().expect("ip")))
        );
        let r = Message::from_vec(
            &answer(&s, &query("alias.", RecordType::AAAA))
                .await
                .expect("reply"),
        )
        .expect("decode");
        assert_eq!(r.answers.len(), 1);
        let r = Message::from_vec(
            &answer(&s, &query("alias.", RecordType::MX))
                .await
                .expect("reply"),
        )
        .expect("decode");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        let r = Message::from_vec(
            &answer(&s, &query("nope.example.", RecordType::A))
                .await
                .expect("reply"),
        )
        .expect("decode");
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer(&s, &[1]).await.is_none());
        let r = Message::from_vec(&answer(&s, &[0, 7, 1]).await.expect("formerr")).expect("decode");
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }
}
