//! Published-port paths side by side: direct to the container address, nftables DNAT
//! from 127.0.0.1, the userland proxy from 127.0.0.1, and berth's relay for a container
//! reaching its own published port through its gateway (hairpin). Run as root through
//! `bench/net-publish.sh`. Traffic stays on this machine (loopback and a namespace this
//! program creates); everything it makes is removed at the end, also on error.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use berth_net::bridge::{BridgeDriver, BridgeNetwork, EndpointRequest};
use berth_net::firewall::{FirewallConfig, PublishRules};
use berth_net::netns::NetNs;
use berth_net::ports::PortMapping;
use berth_net::proxy::UserlandProxy;

const MIB: usize = 1 << 20;

fn sink(listener: TcpListener) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total: u64 = 0;
                let mut first = [0u8; 1];
                // Mode byte: 'b' = bulk (count until EOF), 'p' = ping (one byte back).
                if s.read_exact(&mut first).is_err() {
                    return;
                }
                if first[0] == b'p' {
                    let _ = s.write_all(b"p");
                    return;
                }
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = s.write_all(&total.to_be_bytes());
            });
        }
    });
}

fn bulk(target: SocketAddr, bytes: usize) -> std::io::Result<f64> {
    let chunk = vec![0x5au8; MIB];
    let start = Instant::now();
    let mut s = TcpStream::connect(target)?;
    s.write_all(b"b")?;
    for _ in 0..bytes / MIB {
        s.write_all(&chunk)?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)?;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(u64::from_be_bytes(count), bytes as u64, "bytes lost");
    Ok(bytes as f64 / MIB as f64 / secs)
}

fn connects(target: SocketAddr, n: usize) -> std::io::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        let mut s = TcpStream::connect(target)?;
        s.write_all(b"p")?;
        let mut one = [0u8; 1];
        s.read_exact(&mut one)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mb: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let conns: usize = std::env::var("BENCH_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tag = format!("{:05x}", std::process::id() & 0xfffff);
    let dir = tempfile::tempdir()?;
    let fw = FirewallConfig {
        table: format!("bb{tag}"),
        ..FirewallConfig::default()
    };
    let driver = BridgeDriver::new(fw)?;
    let net = BridgeNetwork::new(
        &format!("bench-{tag}"),
        &format!("bb{tag}"),
        vec!["10.213.99.1/24".parse()?],
    );
    let ns = NetNs::create(dir.path(), &format!("bench-{tag}"))?;
    let result = run(&driver, &net, &ns, mb, conns).await;
    let _ = driver.unpublish("bench").await;
    let _ = driver.remove_network(&net).await;
    let _ = driver.firewall().delete_tables();
    let _ = ns.delete();
    result
}

async fn run(
    driver: &BridgeDriver,
    net: &BridgeNetwork,
    ns: &NetNs,
    mb: usize,
    conns: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    driver.create_network(net).await?;
    let ctr: IpAddr = "10.213.99.2".parse()?;
    driver
        .attach(
            net,
            ns,
            &EndpointRequest {
                id: "bench".into(),
                addresses: vec!["10.213.99.2/24".parse()?],
                ifname: "eth0".into(),
                mac: None,
            },
        )
        .await?;
    sink(ns.run(|| TcpListener::bind("0.0.0.0:7000"))??);
    let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let dnat_port = free_port()?;
    let gw: IpAddr = "10.213.99.1".parse()?;
    let hairpin_port = free_port()?;
    let relay = driver
        .publish(PublishRules {
            owner: "bench".into(),
            container_ip: ctr,
            mappings: vec![
                PortMapping::tcp(lo, dnat_port, 7000),
                PortMapping::tcp(Some(gw), hairpin_port, 7000),
            ],
        })
        .await?;
    let proxy_port = free_port()?;
    let proxy = UserlandProxy::start(&PortMapping::tcp(lo, proxy_port, 7000), ctr).await?;
    // (name, target, from inside the container's namespace)
    let paths = [
        ("direct (container ip)", SocketAddr::new(ctr, 7000), false),
        (
            "nftables DNAT 127.0.0.1",
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), dnat_port),
            false,
        ),
        (
            "userland proxy 127.0.0.1",
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), proxy_port),
            false,
        ),
        (
            "relay, container->gateway",
            SocketAddr::new(gw, hairpin_port),
            true,
        ),
    ];
    println!("{:<26} {:>12} {:>16}", "path", "MiB/s", "µs per connect");
    let mut rows = Vec::new();
    for (name, target, inside) in paths {
        let measure = move || -> std::io::Result<(f64, f64)> {
            let _ = bulk(target, 16 * MIB)?; // warm-up
            Ok((bulk(target, mb * MIB)?, connects(target, conns)?))
        };
        let ns = ns.clone();
        let (tp, lat) = tokio::task::spawn_blocking(move || {
            if inside {
                ns.run(measure).map_err(std::io::Error::other)?
            } else {
                measure()
            }
        })
        .await??;
        println!("{name:<26} {tp:>12.0} {lat:>16.1}");
        rows.push((tp, lat));
    }
    println!(
        "ratios: DNAT/proxy throughput {:.2}x, proxy/DNAT connect time {:.2}x",
        rows[1].0 / rows[2].0,
        rows[2].1 / rows[1].1
    );
    proxy.stop().await;
    relay.stop().await;
    Ok(())
}
