//! Userland port proxy (like `docker-proxy`): listens on the host port and copies bytes to
//! the container, for TCP (a task per connection) and UDP (a flow per client address).
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
use tokio::task::JoinHandle;

use crate::error::{NetError, Result};
use crate::ports::{PortMapping, Protocol};

/// How long a UDP flow without traffic is kept.
pub const UDP_IDLE: Duration = Duration::from_secs(60);

/// Running proxies for one [`PortMapping`]; stopped when dropped.
#[derive(Debug)]
pub struct UserlandProxy {
    tasks: Vec<JoinHandle<()>>,
    local: Vec<SocketAddr>,
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
        let mut proxy = UserlandProxy {
            tasks: Vec::new(),
            local: Vec::new(),
        };
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
                    proxy
                        .tasks
                        .push(tokio::spawn(udp_loop(Arc::new(socket), target)));
                }
            }
        }
        Ok(proxy)
    }

    /// The bound host addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Stops every listener and waits until the ports are free again.
    /// (Dropping also stops them, without waiting.) Open TCP connections are not cut.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn tcp_loop(listener: TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            match TcpStream::connect(target).await {
                Ok(mut upstream) => {
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(%peer, %target, "proxy connection ended: {e}");
                    }
                }
                Err(e) => tracing::debug!(%peer, %target, "proxy cannot reach container: {e}"),
            }
        });
    }
}

async fn udp_loop(socket: Arc<UdpSocket>, target: SocketAddr) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
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
                tokio::spawn(udp_replies(
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
    flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
) {
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        let _ = socket.send_to(&buf[..n], client).await;
    }
    flows.lock().await.remove(&client);
}
