//! Integration tests for berth-net. Run as root (`cargo test -p berth-net`).
//!
//! Every test uses its own bridge names (`bt<random>`), its own nftables table
//! (`bt<random>`), namespaces under its own temp dir, and its own 10.213.<n>.0/24 subnets;
//! an [`Env`] guard removes all of it on drop, also when the test fails. Traffic goes only
//! to 127.0.0.0/8 and to addresses inside the namespaces the test made.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_net::NetError;
use berth_net::bridge::{BridgeDriver, BridgeNetwork, Endpoint, EndpointRequest};
use berth_net::dns::{DnsConfig, DnsServer, ResolvConf};
use berth_net::firewall::{FirewallConfig, PublishRules};
use berth_net::ipam::{Family, Ipam, IpamError, SubnetRequest};
use berth_net::ipnet::IpNet;
use berth_net::link::{Netlink, format_mac};
use berth_net::netns::NetNs;
use berth_net::ports::{PortMapping, Protocol};
use berth_net::proxy::UserlandProxy;

/// Root tests run with `BERTH_TEST_ROOT=1` (as `make test` does) and skip otherwise.
fn root_ok() -> bool {
    if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
        eprintln!("skipped: set BERTH_TEST_ROOT=1 (as root)");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "BERTH_TEST_ROOT=1 needs root"
    );
    true
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mix = (std::process::id() << 16)
        ^ nanos
        ^ N.fetch_add(1, Ordering::SeqCst).wrapping_mul(0x9e37_79b9);
    format!("{prefix}{:06x}", mix & 0xff_ffff)
}

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Everything one test made, removed on drop.
struct Env {
    dir: tempfile::TempDir,
    table: String,
    driver: BridgeDriver,
    networks: Vec<BridgeNetwork>,
    namespaces: Vec<NetNs>,
}

impl Env {
    fn new() -> Env {
        let table = unique("bt");
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            driver: BridgeDriver::new(FirewallConfig {
                table: table.clone(),
                ..FirewallConfig::default()
            })
            .expect("driver"),
            table,
            networks: Vec::new(),
            namespaces: Vec::new(),
        }
    }

    /// A bridge network on 10.213.<octet>.0/24 (gateway .1).
    async fn network(&mut self, octet: u8, icc: bool, internal: bool) -> BridgeNetwork {
        let bridge = unique("bt");
        let mut n = BridgeNetwork::new(
            &format!("net-{bridge}"),
            &bridge,
            vec![net(&format!("10.213.{octet}.1/24"))],
        );
        n.icc = icc;
        n.internal = internal;
        // Registered before creation so a half-made network is cleaned up too.
        self.networks.push(n.clone());
        self.driver
            .create_network(&n)
            .await
            .expect("create network");
        n
    }

    /// A namespace as berthd makes it for IPv4-only networks (attach turns IPv6 on for
    /// an endpoint that has an IPv6 address), without keeping its connection.
    async fn netns(&mut self) -> NetNs {
        self.new_netns().await.0
    }

    /// A namespace as berthd makes it: created, prepared and connected to by one thread.
    async fn new_netns(&mut self) -> (NetNs, Netlink) {
        let made = self
            .driver
            .new_netns(self.dir.path(), &unique("ns"), false)
            .await
            .expect("new netns");
        self.namespaces.push(made.0.clone());
        made
    }

    async fn attach(&self, n: &BridgeNetwork, ns: &NetNs, addr: &str) -> Endpoint {
        self.attach_with(n, ns, addr, None).await
    }

    async fn attach_with(
        &self,
        n: &BridgeNetwork,
        ns: &NetNs,
        addr: &str,
        inner: Option<&Netlink>,
    ) -> Endpoint {
        self.driver
            .attach_with(
                n,
                ns,
                &EndpointRequest {
                    id: format!("{}/{}", ns.name(), n.id),
                    addresses: vec![net(addr)],
                    ifname: "eth0".to_string(),
                    mac: None,
                },
                inner,
                None,
            )
            .await
            .expect("attach")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let networks = std::mem::take(&mut self.networks);
        let namespaces = std::mem::take(&mut self.namespaces);
        let table = self.table.clone();
        // A fresh runtime on a fresh thread: works from inside the test's runtime and
        // while unwinding from a failed assertion.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async {
                let driver = BridgeDriver::new(FirewallConfig {
                    table,
                    ..FirewallConfig::default()
                })
                .expect("cleanup driver");
                for n in &networks {
                    if let Err(e) = driver.remove_network(n).await {
                        eprintln!("cleanup of {}: {e}", n.bridge);
                    }
                }
                if let Err(e) = driver.firewall().delete_tables() {
                    eprintln!("cleanup of nft table: {e}");
                }
            });
            for ns in &namespaces {
                if let Err(e) = ns.delete() {
                    eprintln!("cleanup of {}: {e}", ns.name());
                }
            }
        })
        .join();
        if done.is_err() {
            eprintln!("cleanup thread panicked");
        }
    }
}

/// The MAC address of link `name` as the kernel has it (`aa:bb:…`).
async fn mac_of(nl: &Netlink, name: &str) -> String {
    let link = nl.get_link(name).await.expect("get").expect("link exists");
    let mac = link.attributes.iter().find_map(|attr| match attr {
        netlink_packet_route::link::LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    });
    format_mac(&mac.expect("link has a MAC"))
}

/// A TCP server inside `ns` on `port`: greets each client with `greeting`, then echoes.
/// It stops by itself after `life`.
fn tcp_server(ns: &NetNs, port: u16, greeting: &'static [u8], life: Duration) {
    let listener = ns
        .run(move || TcpListener::bind(("0.0.0.0", port)))
        .expect("run in netns")
        .expect("bind in netns");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = Instant::now() + life;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    std::thread::spawn(move || {
                        let _ = s.write_all(greeting);
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// A UDP echo server inside `ns` on `port`, for `life`.
fn udp_server(ns: &NetNs, port: u16, life: Duration) {
    let sock = ns
        .run(move || UdpSocket::bind(("0.0.0.0", port)))
        .expect("run in netns")
        .expect("bind udp in netns");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    std::thread::spawn(move || {
        let deadline = Instant::now() + life;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], peer);
            }
        }
    });
}

/// Connects to `target` (from the current namespace), reads the greeting, echoes `msg`.
fn fetch(target: SocketAddr, greeting_len: usize, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_millis(1500))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = vec![0u8; greeting_len + msg.len()];
    s.read_exact(&mut out[..greeting_len])?;
    s.write_all(msg)?;
    s.read_exact(&mut out[greeting_len..])?;
    Ok(out)
}

/// Binds with `bind` until it works, for up to two seconds: a stopped proxy's socket can
/// outlive it by the time another test's `nft` child takes to exec (a fork copies every
/// descriptor; close-on-exec closes them only at the exec).
fn bound_soon<T>(bind: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match bind() {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if std::time::Instant::now() > deadline {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            got => return got,
        }
    }
}

/// [`fetch`] from inside `ns`.
fn fetch_in(
    ns: &NetNs,
    target: SocketAddr,
    greeting_len: usize,
    msg: &'static [u8],
) -> std::io::Result<Vec<u8>> {
    ns.run(move || fetch(target, greeting_len, msg))
        .expect("run in netns")
}

/// A port free for TCP and UDP, below the ephemeral range (32768 on): the
/// tests here bind port 0 in parallel, and a port they could be given might be
/// taken between a test's stop and its "port free again" check. Read from the socket
/// tables, not probed with a bind: a probe's socket would live on in the child of another
/// test's fork until that child execs, and the test's own bind could meet it.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = std::process::id() % 6_000;
    let mut used = std::collections::HashSet::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/thread-self/net/{table}"))
            .expect("socket table");
        // "  sl  local_address ...", then "   0: 0100007F:1F90 ...": the port is hex.
        for line in text.lines().skip(1) {
            let local = line.split_whitespace().nth(1).expect("local address");
            let port = local.rsplit(':').next().expect("port");
            used.insert(u16::from_str_radix(port, 16).expect("hex port"));
        }
    }
    (0..12_000)
        .map(|_| NEXT.fetch_add(7, std::sync::atomic::Ordering::Relaxed))
        .map(|n| 20_000 + ((base + n) % 12_000) as u16)
        .find(|p| !used.contains(p))
        .expect("a free port in 20000..32000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_on_one_bridge_talk() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(11, true, false).await;
    let a = env.netns().await;
    // b's connection is reused for its endpoint, as berthd does; a's endpoint makes its own.
    let (b, b_inner) = env.new_netns().await;
    let ep_a = env.attach(&n, &a, "10.213.11.2/24").await;
    env.attach_with(&n, &b, "10.213.11.3/24", Some(&b_inner))
        .await;
    drop(b_inner);
    assert_eq!(format_mac(&ep_a.mac), "02:42:0a:d5:0b:02");
    let b_loopback = b
        .run(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            std::net::TcpStream::connect(l.local_addr()?).map(drop)
        })
        .expect("run in b");
    assert!(b_loopback.is_ok(), "lo is up in b: {b_loopback:?}");
    let b_eth0 = b
        .run(|| berth_net::sysctl::read("ipv6/conf/eth0/disable_ipv6"))
        .expect("run in b")
        .expect("read sysctl");
    assert_eq!(b_eth0, "1");

    // eth0 inside a: right name, MAC, up.
    let inner = Netlink::in_netns(&a).expect("netlink in a");
    assert_eq!(mac_of(&inner, "eth0").await, "02:42:0a:d5:0b:02");
    drop(inner);
    // IPv6 is off on an IPv4-only endpoint, both ends (as Docker has it inside); lo
    // keeps ::1.
    let inside = |key: &'static str| {
        a.run(move || berth_net::sysctl::read(key))
            .expect("run")
            .expect("read sysctl")
    };
    assert_eq!(inside("ipv6/conf/eth0/disable_ipv6"), "1");
    assert_eq!(inside("ipv6/conf/lo/disable_ipv6"), "0");
    let host_veth = berth_net::bridge::host_veth_name(&format!("{}/{}", a.name(), n.id));
    assert_eq!(
        berth_net::sysctl::read(&format!("ipv6/conf/{host_veth}/disable_ipv6")).expect("read"),
        "1"
    );

    tcp_server(&b, 7000, b"hi ", Duration::from_secs(10));
    let got = fetch_in(&a, "10.213.11.3:7000".parse().expect("addr"), 3, b"ping").expect("a -> b");
    assert_eq!(got, b"hi ping");
    // The host reaches a container through the bridge (gateway address).
    let got = fetch("10.213.11.3:7000".parse().expect("addr"), 3, b"host").expect("host -> b");
    assert_eq!(got, b"hi host");

    // ping from busybox, exec'd into namespace a with the setns helper.
    let mut cmd = std::process::Command::new("busybox");
    cmd.args(["ping", "-c", "1", "-W", "2", "10.213.11.3"]);
    a.command(&mut cmd).expect("command in netns");
    let out = cmd.output().expect("busybox ping");
    assert!(
        out.status.success(),
        "ping failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icc_false_blocks_containers_but_not_the_host() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(12, false, false).await;
    let a = env.netns().await;
    let b = env.netns().await;
    env.attach(&n, &a, "10.213.12.2/24").await;
    env.attach(&n, &b, "10.213.12.3/24").await;
    tcp_server(&b, 7000, b"hi ", Duration::from_secs(10));
    let err =
        fetch_in(&a, "10.213.12.3:7000".parse().expect("addr"), 3, b"x").expect_err("icc off");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::HostUnreachable
        ),
        "unexpected error {err:?}"
    );
    let got = fetch("10.213.12.3:7000".parse().expect("addr"), 3, b"host").expect("host -> b");
    assert_eq!(got, b"hi host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_are_isolated_from_each_other() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n1 = env.network(13, true, false).await;
    let n2 = env.network(14, true, false).await;
    let a = env.netns().await;
    let b = env.netns().await;
    env.attach(&n1, &a, "10.213.13.2/24").await;
    env.attach(&n2, &b, "10.213.14.2/24").await;
    tcp_server(&b, 7000, b"hi ", Duration::from_secs(15));
    let target: SocketAddr = "10.213.14.2:7000".parse().expect("addr");
    assert!(
        fetch_in(&a, target, 3, b"x").is_err(),
        "isolation rules must drop n1 -> n2"
    );

    // Without the isolation rules the host routes between the bridges: the rules did it.
    let fw = env.driver.firewall().clone();
    let (id1, id2) = (n1.id.clone(), n2.id.clone());
    tokio::task::spawn_blocking(move || {
        fw.remove_network(&id1)?;
        fw.remove_network(&id2)
    })
    .await
    .expect("join")
    .expect("remove rules");
    let got = fetch_in(&a, target, 3, b"routed").expect("routed once rules are gone");
    assert_eq!(got, b"hi routed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_network_has_no_way_out() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(15, true, true).await;
    let a = env.netns().await;
    let b = env.netns().await;
    env.attach(&n, &a, "10.213.15.2/24").await;
    env.attach(&n, &b, "10.213.15.3/24").await;
    tcp_server(&b, 7000, b"hi ", Duration::from_secs(10));
    let got = fetch_in(&a, "10.213.15.3:7000".parse().expect("addr"), 3, b"in").expect("inside");
    assert_eq!(got, b"hi in");
    // No default route: another of the test's subnets is unreachable at once.
    let err =
        fetch_in(&a, "10.213.16.2:7000".parse().expect("addr"), 3, b"x").expect_err("no route");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::NetworkUnreachable,
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnat_from_localhost_reaches_the_container() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(17, true, false).await;
    let a = env.netns().await;
    env.attach(&n, &a, "10.213.17.2/24").await;
    tcp_server(&a, 7000, b"from netns ", Duration::from_secs(15));
    udp_server(&a, 7001, Duration::from_secs(15));
    let port = free_port();
    let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let rules = PublishRules {
        owner: "ctr-dnat".to_string(),
        container_ip: ip("10.213.17.2"),
        mappings: vec![
            PortMapping::tcp(lo, port, 7000),
            PortMapping::udp(lo, port, 7001),
        ],
    };
    let held = env.driver.publish(rules.clone()).await.expect("publish");
    assert_eq!(held.local_addrs().len(), 2);
    let dump = env.driver.firewall().dump().expect("dump");
    assert!(dump.contains("dnat to 10.213.17.2:7000"), "{dump}");
    // route_localnet is on for the bridge, so loopback addresses from it are dropped.
    assert!(dump.contains("jump net-prerouting"), "{dump}");
    if std::env::var_os("BERTH_NET_SHOW_RULES").is_some() {
        eprintln!("{dump}");
    }
    assert!(
        dump.contains(&format!(
            "iifname \"{}\" ip daddr 127.0.0.0/8 drop",
            n.bridge
        )),
        "{dump}"
    );

    let got = fetch(
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        11,
        b"bytes",
    )
    .expect("through DNAT");
    assert_eq!(got, b"from netns bytes");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    udp.send_to(b"dgram", ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 64];
    let (len, _) = udp.recv_from(&mut buf).expect("udp echo through DNAT");
    assert_eq!(&buf[..len], b"dgram");

    // The port is held: publishing it again (another container) is a conflict.
    let err = env
        .driver
        .publish(PublishRules {
            owner: "ctr-other".to_string(),
            ..rules
        })
        .await
        .expect_err("conflict");
    assert!(
        matches!(err, NetError::PortInUse { port: p, .. } if p == port),
        "{err}"
    );

    env.driver.unpublish("ctr-dnat").await.expect("unpublish");
    env.driver
        .unpublish("ctr-dnat")
        .await
        .expect("unpublish is idempotent");
    held.stop().await;
    let dump = env.driver.firewall().dump().expect("dump");
    assert!(!dump.contains("dnat to"), "{dump}");
    assert!(fetch(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port), 11, b"x").is_err());
}

/// Runs `fetch` inside `ns` off the runtime's threads (the relay runs on them).
async fn fetch_in_blocking(
    ns: &NetNs,
    target: SocketAddr,
    greeting_len: usize,
    msg: &'static [u8],
) -> std::io::Result<Vec<u8>> {
    let ns = ns.clone();
    tokio::task::spawn_blocking(move || fetch_in(&ns, target, greeting_len, msg))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_reach_published_ports_through_the_relay() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(20, true, false).await;
    let other = env.network(26, true, false).await;
    let a = env.netns().await;
    let b = env.netns().await;
    env.attach(&n, &a, "10.213.20.2/24").await;
    env.attach(&other, &b, "10.213.26.2/24").await;
    let sealed = env.network(27, true, true).await;
    let c = env.netns().await;
    env.attach(&sealed, &c, "10.213.27.2/24").await;
    tcp_server(&a, 7000, b"from netns ", Duration::from_secs(15));
    udp_server(&a, 7001, Duration::from_secs(15));
    // Bound to the gateway address, not every address: nothing opens on the host's other
    // interfaces during the test.
    let gw = ip("10.213.20.1");
    let port = free_port();
    let relay = env
        .driver
        .publish(PublishRules {
            owner: "ctr-hairpin".to_string(),
            container_ip: ip("10.213.20.2"),
            mappings: vec![
                PortMapping::tcp(Some(gw), port, 7000),
                // On every address: the relay replies from the address written to.
                PortMapping::udp(None, port, 7001),
                // Where the internal network's container could reach it.
                PortMapping::tcp(Some(ip("10.213.27.1")), port, 7000),
            ],
        })
        .await
        .expect("publish");
    let dump = env.driver.firewall().dump().expect("dump");
    assert!(
        dump.contains(&format!("iifname \"{}\" accept", n.bridge)),
        "{dump}"
    );
    let target = SocketAddr::new(gw, port);
    // The container reaches its own published port (DNAT would send it back to itself,
    // source = destination, and the kernel drops that) ...
    let got = fetch_in_blocking(&a, target, 11, b"self")
        .await
        .expect("own published port");
    assert_eq!(got, b"from netns self");
    // ... and so does a container on another (isolated) network, through the host.
    let got = fetch_in_blocking(&b, target, 11, b"other")
        .await
        .expect("published port from another network");
    assert_eq!(got, b"from netns other");
    let b2 = b.clone();
    let echoed = tokio::task::spawn_blocking(move || {
        b2.run(move || {
            // Connected: a reply from another address (b's own gateway, the kernel's
            // choice on the way back) would be dropped.
            let udp = UdpSocket::bind("0.0.0.0:0")?;
            udp.set_read_timeout(Some(Duration::from_secs(2)))?;
            udp.connect(target)?;
            udp.send(b"dgram")?;
            let mut buf = [0u8; 64];
            let len = udp.recv(&mut buf)?;
            Ok::<_, std::io::Error>(buf[..len].to_vec())
        })
        .expect("run in netns")
    })
    .await
    .expect("join")
    .expect("udp through the relay");
    assert_eq!(echoed, b"dgram");
    // A container on an internal network does not get out through the relay: its packets
    // are DNATed and dropped in forward. (A short timeout: success would be at once.)
    let sealed_target = SocketAddr::new(ip("10.213.27.1"), port);
    let from_internal = tokio::task::spawn_blocking(move || {
        c.run(move || TcpStream::connect_timeout(&sealed_target, Duration::from_millis(500)))
            .expect("run in netns")
    })
    .await
    .expect("join");
    assert!(from_internal.is_err(), "{from_internal:?}");

    // An open relayed connection is cut when the relay stops, and the port is free.
    let a2 = a.clone();
    let open = tokio::task::spawn_blocking(move || {
        a2.run(move || -> std::io::Result<TcpStream> {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_millis(1500))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut greeting = [0u8; 11];
            s.read_exact(&mut greeting)?;
            Ok(s)
        })
        .expect("run in netns")
    })
    .await
    .expect("join")
    .expect("open a relayed connection");
    env.driver
        .unpublish("ctr-hairpin")
        .await
        .expect("unpublish");
    relay.stop().await;
    let mut open = open;
    let mut rest = Vec::new();
    let cut = tokio::task::spawn_blocking(move || open.read_to_end(&mut rest))
        .await
        .expect("join");
    // Closed (or reset), not left hanging until the read timeout.
    assert!(
        matches!(&cut, Ok(0))
            || cut
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{cut:?}"
    );
    let again = bound_soon(|| TcpListener::bind(target)).expect("port free after stop");
    drop(again);
    let again =
        bound_soon(|| UdpSocket::bind(("0.0.0.0", port))).expect("udp port free after stop");
    drop(again);
    let dump = env.driver.firewall().dump().expect("dump");
    assert!(!dump.contains("dnat to"), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userland_proxy_reaches_the_container() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(18, true, false).await;
    let a = env.netns().await;
    env.attach(&n, &a, "10.213.18.2/24").await;
    tcp_server(&a, 7000, b"from netns ", Duration::from_secs(15));
    udp_server(&a, 7001, Duration::from_secs(15));
    let port = free_port();
    let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let tcp = UserlandProxy::start(&PortMapping::tcp(lo, port, 7000), ip("10.213.18.2"))
        .await
        .expect("tcp proxy");
    let udp_proxy = UserlandProxy::start(&PortMapping::udp(lo, port, 7001), ip("10.213.18.2"))
        .await
        .expect("udp proxy");
    let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let got = tokio::task::spawn_blocking(move || fetch(target, 11, b"proxied"))
        .await
        .expect("join")
        .expect("through proxy");
    assert_eq!(got, b"from netns proxied");
    let echoed = tokio::task::spawn_blocking(move || {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        udp.set_read_timeout(Some(Duration::from_secs(2)))?;
        udp.send_to(b"dgram", target)?;
        let mut buf = [0u8; 64];
        let (len, _) = udp.recv_from(&mut buf)?;
        Ok::<_, std::io::Error>(buf[..len].to_vec())
    })
    .await
    .expect("join")
    .expect("udp through proxy");
    assert_eq!(echoed, b"dgram");

    // A second proxy on the same port is a conflict that names the port.
    let err = UserlandProxy::start(&PortMapping::tcp(lo, port, 7000), ip("10.213.18.2"))
        .await
        .expect_err("conflict");
    assert!(
        err.to_string()
            .contains(&format!("tcp port {port} on 127.0.0.1")),
        "{err}"
    );
    tcp.stop().await;
    udp_proxy.stop().await;
    // Stopped proxies free their ports at once. (With SO_REUSEADDR, as a proxy binds: if
    // the proxy's side of the relayed connection closed first, its TIME_WAIT holds the
    // port for a socket without it.)
    let again = bound_soon(|| {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.set_reuseaddr(true)?;
        s.bind(target)?;
        s.listen(8)
    })
    .expect("tcp port is free after stop");
    drop(again);
    bound_soon(|| UdpSocket::bind(target)).expect("udp port is free after stop");
    let again = UserlandProxy::start(&PortMapping::tcp(lo, port, 7000), ip("10.213.18.2"))
        .await
        .expect("a new proxy on the port");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_a_busy_port_names_it() {
    if !root_ok() {
        return;
    }
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let err = env
        .driver
        .publish(PublishRules {
            owner: "ctr-busy".to_string(),
            container_ip: ip("10.213.19.2"),
            mappings: vec![PortMapping::tcp(Some(ip("127.0.0.1")), port, 80)],
        })
        .await
        .expect_err("busy");
    let text = err.to_string();
    assert!(matches!(
        err,
        NetError::PortInUse {
            proto: Protocol::Tcp,
            ..
        }
    ));
    assert!(
        text.contains(&format!("port {port}")) && text.contains("already allocated"),
        "{text}"
    );
    // Nothing was installed.
    assert!(!env.driver.firewall().dump().expect("dump").contains("dnat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_names_and_aliases_inside_the_namespace() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let a = env.netns().await;
    let server = DnsServer::start(Some(&a), DnsConfig::default(), |name: &str| match name {
        "web" | "web-alias" | "0123456789ab" => Some(vec![ip("10.213.20.2")]),
        _ => None,
    })
    .await
    .expect("dns server");
    assert_eq!(server.udp_addr(), "127.0.0.11:53".parse().expect("addr"));

    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    fn ask(name: &str, tcp: bool) -> std::io::Result<Message> {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        let wire = q.to_vec().expect("encode");
        let reply = if tcp {
            let mut s = TcpStream::connect_timeout(
                &"127.0.0.11:53".parse().expect("a"),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(&(wire.len() as u16).to_be_bytes())?;
            s.write_all(&wire)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf)?;
            buf
        } else {
            let u = UdpSocket::bind("127.0.0.1:0")?;
            u.set_read_timeout(Some(Duration::from_secs(2)))?;
            u.send_to(&wire, "127.0.0.11:53")?;
            let mut buf = vec![0u8; 1500];
            let (n, _) = u.recv_from(&mut buf)?;
            buf.truncate(n);
            buf
        };
        Message::from_vec(&reply).map_err(|e| std::io::Error::other(e.to_string()))
    }
    let replies = a
        .run(|| {
            [
                "web.",
                "web-alias.",
                "0123456789ab.",
                "unknown.example.com.",
            ]
            .iter()
            .map(|n| ask(n, false))
            .chain(std::iter::once(ask("web.", true)))
            .collect::<Vec<_>>()
        })
        .expect("run in netns");
    let want = RData::A(hickory_proto::rr::rdata::A(
        "10.213.20.2".parse().expect("ip"),
    ));
    for (i, r) in replies.iter().enumerate() {
        let r = r.as_ref().expect("reply");
        if i == 3 {
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            assert!(r.answers.is_empty());
        } else {
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "query {i}");
            assert_eq!(r.answers.len(), 1, "query {i}");
            assert_eq!(r.answers[0].data, want);
        }
    }
    // The server is only inside the namespace: nothing listens on the host's 127.0.0.11:53
    // (unless something else on this host does; then it is not ours either way).
    let rc = ResolvConf::embedded(Some("search corp\n"), &[], &[]).render();
    assert!(rc.contains("nameserver 127.0.0.11\n") && rc.contains("search corp\n"));
    drop(server);
}

/// What berthd does when a container goes: the veth comes off the bridge at once and the
/// pair disappears with the namespace, without waiting for an explicit delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_veth_goes_with_its_namespace() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(25, true, false).await;
    let a = env.netns().await;
    let ep = env.attach(&n, &a, "10.213.25.2/24").await;
    let nl = env.driver.netlink();
    let bridge = nl.require_link(&n.bridge).await.expect("bridge");
    assert_eq!(
        nl.ports_of(bridge).await.expect("ports"),
        vec![ep.host_veth.clone()]
    );
    env.driver.release(&ep.host_veth).await.expect("release");
    env.driver
        .release(&ep.host_veth)
        .await
        .expect("release again");
    assert!(nl.ports_of(bridge).await.expect("ports").is_empty());
    assert!(nl.link_index(&ep.host_veth).await.expect("query").is_some());
    a.delete().expect("delete netns");
    let deadline = Instant::now() + Duration::from_secs(20);
    while nl.link_index(&ep.host_veth).await.expect("query").is_some() {
        assert!(
            Instant::now() < deadline,
            "{} outlived its namespace",
            ep.host_veth
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.driver
        .release(&ep.host_veth)
        .await
        .expect("release when gone");
}

/// berthd makes the next container's namespace and veth pair ahead; a start pins the
/// namespace under the container's name and attaches through the pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_namespace_joins_like_a_new_one() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(27, true, false).await;
    let other = env.netns().await;
    let spare_dir = env.dir.path().join("spare");
    let spare = env
        .driver
        .new_spare(&spare_dir, &unique("sp"))
        .await
        .expect("new spare");
    env.namespaces.push(spare.ns.clone());
    let nl = env.driver.netlink();
    let bridge = nl.require_link(&n.bridge).await.expect("bridge");
    assert!(nl.ports_of(bridge).await.expect("ports").is_empty());
    assert_eq!(
        berth_net::sysctl::read(&format!("ipv6/conf/{}/disable_ipv6", spare.host_veth))
            .expect("read"),
        "1"
    );
    let in_spare = |key: &'static str| {
        spare
            .ns
            .run(move || berth_net::sysctl::read(key))
            .expect("run")
            .expect("read sysctl")
    };
    assert_eq!(in_spare("ipv6/conf/eth0/disable_ipv6"), "1");

    // What a start does: pin it under the container's name, drop the spare's pin.
    let pinned = spare.ns.pin_at(env.dir.path(), &unique("ct")).expect("pin");
    env.namespaces.push(pinned.clone());
    spare.ns.delete().expect("unpin the spare");
    assert!(!spare.ns.path().exists());
    let req = EndpointRequest {
        id: format!("{}/{}", pinned.name(), n.id),
        addresses: vec![net("10.213.27.2/24")],
        ifname: "eth0".to_string(),
        mac: None,
    };
    let ep = env
        .driver
        .attach_with(
            &n,
            &pinned,
            &req,
            Some(&spare.inner),
            Some(&spare.host_veth),
        )
        .await
        .expect("attach through the spare's pair");
    assert_eq!(ep.host_veth, spare.host_veth);
    assert_eq!(format_mac(&ep.mac), "02:42:0a:d5:1b:02");
    assert_eq!(
        nl.ports_of(bridge).await.expect("ports"),
        vec![ep.host_veth.clone()]
    );
    assert_eq!(mac_of(&spare.inner, "eth0").await, "02:42:0a:d5:1b:02");
    // Reachable from the host and from a container made the usual way.
    tcp_server(&pinned, 7003, b"spare ", Duration::from_secs(10));
    let got = fetch(SocketAddr::new(ip("10.213.27.2"), 7003), 6, b"host").expect("host -> it");
    assert_eq!(got, b"spare host");
    env.attach(&n, &other, "10.213.27.3/24").await;
    let got =
        fetch_in(&other, SocketAddr::new(ip("10.213.27.2"), 7003), 6, b"peer").expect("peer -> it");
    assert_eq!(got, b"spare peer");

    // A spare's pair is only eth0 with the default MTU.
    let unused = env
        .driver
        .new_spare(&spare_dir, &unique("sp"))
        .await
        .expect("new spare");
    env.namespaces.push(unused.ns.clone());
    let mut eth1 = req.clone();
    eth1.ifname = "eth1".into();
    let refused = env
        .driver
        .attach_with(
            &n,
            &unused.ns,
            &eth1,
            Some(&unused.inner),
            Some(&unused.host_veth),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // One never used goes, pair and all, with its namespace.
    let veth = unused.host_veth.clone();
    drop(unused.inner);
    unused.ns.delete().expect("delete spare");
    let deadline = Instant::now() + Duration::from_secs(20);
    while nl.link_index(&veth).await.expect("query").is_some() {
        assert!(Instant::now() < deadline, "{veth} outlived its namespace");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A restart right after a stop attaches the same endpoint (same veth name) while the
/// previous run's pair may still exist: it goes with the old namespace only some ms after
/// `release`. Here the old namespace is kept, so the old pair is certainly there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_replaces_the_veth_of_a_previous_run() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(26, true, false).await;
    let old = env.netns().await;
    let new = env.netns().await;
    let req = EndpointRequest {
        id: format!("restarted/{}", n.id),
        addresses: vec![net("10.213.26.2/24")],
        ifname: "eth0".to_string(),
        mac: None,
    };
    let first = env.driver.attach(&n, &old, &req).await.expect("attach");
    env.driver.release(&first.host_veth).await.expect("release");
    let second = env
        .driver
        .attach(&n, &new, &req)
        .await
        .expect("attach again while the old pair exists");
    assert_eq!(second.host_veth, first.host_veth);
    let nl = env.driver.netlink();
    let bridge = nl.require_link(&n.bridge).await.expect("bridge");
    assert_eq!(
        nl.ports_of(bridge).await.expect("ports"),
        vec![second.host_veth.clone()]
    );
    tcp_server(&new, 7002, b"new run ", Duration::from_secs(10));
    let got = fetch(SocketAddr::new(ip("10.213.26.2"), 7002), 8, b"ok").expect("reach it");
    assert_eq!(got, b"new run ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_is_idempotent() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let n = env.network(21, true, false).await;
    // The host's routes include the new bridge's subnet (for IPAM's `reserved`).
    let routes = env.driver.netlink().route_prefixes().await.expect("routes");
    assert!(routes.contains(&net("10.213.21.0/24")), "{routes:?}");
    let a = env.netns().await;
    let ep = env.attach(&n, &a, "10.213.21.2/24").await;
    // Creating the same network again is fine (bridge exists, address exists).
    env.driver.create_network(&n).await.expect("create again");
    env.driver.detach(&ep.host_veth).await.expect("detach");
    env.driver
        .detach(&ep.host_veth)
        .await
        .expect("detach again");
    env.attach(&n, &a, "10.213.21.2/24").await;
    env.driver
        .remove_network(&n)
        .await
        .expect("remove with a veth attached");
    env.driver.remove_network(&n).await.expect("remove again");
    let nl = env.driver.netlink();
    assert!(nl.link_index(&n.bridge).await.expect("query").is_none());
    assert!(nl.link_index(&ep.host_veth).await.expect("query").is_none());
    let ns_path: PathBuf = a.path().to_path_buf();
    a.delete().expect("delete netns");
    a.delete().expect("delete netns again");
    assert!(!ns_path.exists());
    env.driver
        .firewall()
        .delete_tables()
        .expect("delete tables");
    env.driver
        .firewall()
        .delete_tables()
        .expect("delete tables again");
}

#[test]
fn ipam_errors_for_exhaustion_overlap_and_static_ips() {
    let mut ipam = Ipam::default();
    let req = |s: &str| SubnetRequest {
        subnet: Some(net(s)),
        ..Default::default()
    };
    ipam.add_network("small", &[req("10.213.30.0/30")], &[])
        .expect("small");
    assert_eq!(
        ipam.allocate("small", Family::V4, None).expect("one"),
        ip("10.213.30.2")
    );
    assert!(matches!(
        ipam.allocate("small", Family::V4, None),
        Err(IpamError::Exhausted { .. })
    ));
    assert!(matches!(
        ipam.add_network("big", &[req("10.213.0.0/16")], &[]),
        Err(IpamError::SubnetOverlap { .. })
    ));
    let err = ipam
        .allocate("small", Family::V4, Some(ip("10.213.31.9")))
        .expect_err("outside");
    assert!(
        err.to_string()
            .contains("10.213.31.9 is not in any of its subnets"),
        "{err}"
    );
    let err: NetError = err.into();
    assert!(err.to_string().starts_with("network small:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_endpoints_talk_over_ipv6() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let bridge = unique("bt");
    let mut n = BridgeNetwork::new(
        &format!("net-{bridge}"),
        &bridge,
        vec![net("10.213.22.1/24"), net("fd88:213:22::1/64")],
    );
    n.icc = true;
    env.networks.push(n.clone());
    env.driver.create_network(&n).await.expect("create");
    let a = env.netns().await;
    let b = env.netns().await;
    for (ns, v4, v6) in [
        (&a, "10.213.22.2/24", "fd88:213:22::2/64"),
        (&b, "10.213.22.3/24", "fd88:213:22::3/64"),
    ] {
        env.driver
            .attach(
                &n,
                ns,
                &EndpointRequest {
                    id: format!("{}/{}", ns.name(), n.id),
                    addresses: vec![net(v4), net(v6)],
                    ifname: "eth0".to_string(),
                    mac: None,
                },
            )
            .await
            .expect("attach");
    }
    let listener = b
        .run(|| TcpListener::bind("[::]:7000"))
        .expect("run")
        .expect("bind v6");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok((mut s, peer)) = listener.accept() {
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(peer.ip().to_string().as_bytes());
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let seen = a
        .run(|| {
            let mut s = TcpStream::connect_timeout(
                &"[fd88:213:22::3]:7000".parse().expect("addr"),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok::<_, std::io::Error>(text)
        })
        .expect("run")
        .expect("v6 connection");
    assert_eq!(seen, "fd88:213:22::2");
    // On, for this endpoint, in a namespace prepared without IPv6.
    let on = a
        .run(|| berth_net::sysctl::read("ipv6/conf/eth0/disable_ipv6"))
        .expect("run")
        .expect("read");
    assert_eq!(on, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_forwarding_is_explicit_and_off_by_default() {
    if !root_ok() {
        return;
    }
    let mut env = Env::new();
    let a = env.netns().await;
    // An "upstream" on the host's loopback, knowing one name.
    let upstream = DnsServer::start(
        None,
        DnsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..DnsConfig::default()
        },
        |name: &str| (name == "upstream.test").then(|| vec![ip("10.213.23.9")]),
    )
    .await
    .expect("upstream");
    let resolver = |name: &str| (name == "local").then(|| vec![ip("10.213.23.2")]);
    let query = |name: &'static str| {
        move || -> std::io::Result<hickory_proto::op::Message> {
            use hickory_proto::op::{Message, Query};
            use hickory_proto::rr::{Name, RecordType};
            let mut q = Message::query();
            q.add_query(Query::query(
                Name::from_ascii(name).expect("name"),
                RecordType::A,
            ));
            let u = UdpSocket::bind("127.0.0.1:0")?;
            u.set_read_timeout(Some(Duration::from_secs(3)))?;
            u.send_to(&q.to_vec().expect("encode"), "127.0.0.11:53")?;
            let mut buf = vec![0u8; 1500];
            let (n, _) = u.recv_from(&mut buf)?;
            Message::from_vec(&buf[..n]).map_err(|e| std::io::Error::other(e.to_string()))
        }
    };
    use hickory_proto::op::ResponseCode;
    let off = DnsServer::start(Some(&a), DnsConfig::default(), resolver)
        .await
        .expect("server");
    let r = a.run(query("upstream.test.")).expect("run").expect("reply");
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    off.stop().await;
    let _on = DnsServer::start(
        Some(&a),
        DnsConfig {
            forward: vec![upstream.udp_addr()],
            ..DnsConfig::default()
        },
        resolver,
    )
    .await
    .expect("server with forwarding");
    let r = a.run(query("upstream.test.")).expect("run").expect("reply");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    let r = a.run(query("local.")).expect("run").expect("reply");
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn guard_cleans_up_after_a_failed_test() {
    if !root_ok() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut env = Env::new();
            let n = env.network(24, true, false).await;
            let ns = env.netns().await;
            env.attach(&n, &ns, "10.213.24.2/24").await;
            tx.send((n.bridge.clone(), ns.path().to_path_buf(), env.table.clone()))
                .expect("send");
            panic!("deliberate failure with a network, a namespace and an endpoint alive");
        })
    })
    .join();
    assert!(failed.is_err(), "the inner test must fail");
    let (bridge, ns_path, table) = rx.recv().expect("names");
    assert!(!ns_path.exists(), "netns file left: {}", ns_path.display());
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(&format!(": {bridge}:")), "{links}");
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.contains(&table), "{tables}");
}
