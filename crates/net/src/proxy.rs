//! Userland port proxy (like `docker-proxy`): listens on the host port and copies bytes to
//! the container, for TCP (a task per connection) and UDP (a flow per client address).
//! [`UserlandProxy::relay`] runs it on the sockets of a [`PortReservation`]: that is how
//! containers reach published ports (the DNAT rules leave traffic from bridges alone).
//!
//! Slower than the DNAT rules of [`crate::firewall`] (every byte crosses user space twice)
//! but needs no nftables, works for 127.0.0.1 and `::1` without `route_localnet`, and the
//! container sees the proxy's address as the source instead of the client's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{NetError, Result};
use crate::ports::{PortMapping, PortReservation, Protocol};

/// How long a UDP flow without traffic is kept.
pub const UDP_IDLE: Duration = Duration::from_secs(60);

/// Running relays for one [`PortMapping`] or one [`PortReservation`]; stopped when dropped
/// (listeners, UDP flows and open TCP connections go with it).
#[derive(Debug, Default)]
pub struct UserlandProxy {
    tasks: Vec<JoinHandle<()>>,
    local: Vec<SocketAddr>,
    /// Ports held without relaying ([`UserlandProxy::hold`]).
    idle: Option<PortReservation>,
}

impl Drop for UserlandProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl UserlandProxy {
    /// Binds every host port of `mapping` and forwards it to `container_ip`.
    /// A taken port fails with [`NetError::PortInUse`].
    pub async fn start(mapping: &PortMapping, container_ip: IpAddr) -> Result<UserlandProxy> {
        mapping.validate()?;
        let mut proxy = UserlandProxy::default();
        for (host_port, container_port) in mapping.pairs() {
            let listen = SocketAddr::new(mapping.bind_ip(), host_port);
            let target = SocketAddr::new(container_ip, container_port);
            let in_use = |source| NetError::PortInUse {
                proto: mapping.protocol,
                host_ip: mapping.bind_ip(),
                port: host_port,
                source,
            };
            match mapping.protocol {
                Protocol::Tcp => {
                    let listener = TcpListener::bind(listen).await.map_err(in_use)?;
                    proxy.local.push(listener.local_addr().unwrap_or(listen));
                    proxy.tasks.push(tokio::spawn(tcp_loop(listener, target)));
                }
                Protocol::Udp => {
                    let socket = UdpSocket::bind(listen).await.map_err(in_use)?;
                    proxy.local.push(socket.local_addr().unwrap_or(listen));
                    proxy.tasks.push(tokio::spawn(udp_loop(socket, target)));
                }
            }
        }
        Ok(proxy)
    }

    /// Relays what arrives on the held sockets of `reservation` (TCP connections and UDP
    /// datagrams) to the same ports' container side on `container_ip`. This is how
    /// published ports are reached from containers: the DNAT rules skip traffic that comes
    /// in through a bridge, so it lands on these sockets. Needs a tokio runtime.
    pub fn relay(reservation: PortReservation, container_ip: IpAddr) -> Result<UserlandProxy> {
        let mut proxy = UserlandProxy::default();
        for held in reservation.into_ports() {
            let target = SocketAddr::new(container_ip, held.container_port);
            let err = |op, source| NetError::Proxy {
                proto: held.protocol,
                listen: held.host.to_string(),
                op,
                source,
            };
            match held.protocol {
                Protocol::Tcp => {
                    let std = std::net::TcpListener::from(held.socket);
                    std.set_nonblocking(true)
                        .map_err(|e| err("set non-blocking", e))?;
                    let listener =
                        TcpListener::from_std(std).map_err(|e| err("register listener", e))?;
                    proxy.local.push(listener.local_addr().unwrap_or(held.host));
                    proxy.tasks.push(tokio::spawn(tcp_loop(listener, target)));
                }
                Protocol::Udp => {
                    let std = std::net::UdpSocket::from(held.socket);
                    std.set_nonblocking(true)
                        .map_err(|e| err("set non-blocking", e))?;
                    let socket = UdpSocket::from_std(std).map_err(|e| err("register socket", e))?;
                    proxy.local.push(socket.local_addr().unwrap_or(held.host));
                    proxy.tasks.push(tokio::spawn(udp_loop(socket, target)));
                }
            }
        }
        Ok(proxy)
    }

    /// Keeps the ports of `reservation` without relaying anything (no container address to
    /// relay to): connections to them are accepted by nobody.
    pub fn hold(reservation: PortReservation) -> UserlandProxy {
        UserlandProxy {
            local: reservation.ports().iter().map(|p| p.host).collect(),
            idle: Some(reservation),
            tasks: Vec::new(),
        }
    }

    /// The bound host addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Stops every listener and relayed connection and waits until the sockets are closed
    /// and the ports free again. (Dropping also stops them, without waiting.)
    pub async fn stop(mut self) {
        self.idle = None;
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Accepts and relays connections; dropping it (abort) drops the `JoinSet`, which aborts
/// every relayed connection.
async fn tcp_loop(listener: TcpListener, target: SocketAddr) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    conns.spawn(tcp_relay(client, peer, target));
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::debug!(%target, "proxy accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn tcp_relay(mut client: TcpStream, peer: SocketAddr, target: SocketAddr) {
    match TcpStream::connect(target).await {
        Ok(mut upstream) => {
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%peer, %target, "proxy connection ended: {e}");
            }
        }
        Err(e) => tracing::debug!(%peer, %target, "proxy cannot reach container: {e}"),
    }
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// Relays datagrams, one upstream socket per client address; dropping it aborts the flows.
async fn udp_loop(socket: UdpSocket, target: SocketAddr) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::default();
    let mut replies = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, client) = tokio::select! {
            got = socket.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!(%target, "proxy receive: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = replies.join_next(), if !replies.is_empty() => continue,
        };
        let upstream = {
            let mut map = flows.lock().await;
            if let Some(up) = map.get(&client) {
                Arc::clone(up)
            } else {
                let bind: SocketAddr = if target.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from(([0u16; 8], 0))
                };
                let Ok(up) = UdpSocket::bind(bind).await else {
                    continue;
                };
                if up.connect(target).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                map.insert(client, Arc::clone(&up));
                replies.spawn(udp_replies(
                    Arc::clone(&up),
                    Arc::clone(&socket),
                    client,
                    Arc::clone(&flows),
                ));
                up
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

async fn udp_replies(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Flows,
) {
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        let _ = socket.send_to(&buf[..n], client).await;
    }
    flows.lock().await.remove(&client);
}
