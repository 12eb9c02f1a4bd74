//! Userland port proxy (like `docker-proxy`): listens on the host port and copies bytes to
//! the container, for TCP (a task per connection) and UDP (a flow per client address).
//! [`UserlandProxy::relay`] runs it on the sockets of a [`PortReservation`]: that is how
//! containers reach published ports (the DNAT rules leave traffic from bridges alone).
//!
//! Slower than the DNAT rules of [`crate::firewall`] (every byte crosses user space twice)
//! but needs no nftables, works for 127.0.0.1 and `::1` without `route_localnet`, and the
//! container sees the proxy's address as the source instead of the client's.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage,
    recvmsg, sendmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Mutex, watch};
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
    /// Tells the relay loops to end their connections and flows and return
    /// ([`UserlandProxy::stop`]).
    stopping: watch::Sender<bool>,
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
                    proxy.spawn_tcp(listener, target);
                }
                Protocol::Udp => {
                    let socket = UdpSocket::bind(listen).await.map_err(in_use)?;
                    proxy.local.push(socket.local_addr().unwrap_or(listen));
                    proxy.spawn_udp(socket, target);
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
                    proxy.spawn_tcp(listener, target);
                }
                Protocol::Udp => {
                    let std = std::net::UdpSocket::from(held.socket);
                    std.set_nonblocking(true)
                        .map_err(|e| err("set non-blocking", e))?;
                    let socket = UdpSocket::from_std(std).map_err(|e| err("register socket", e))?;
                    proxy.local.push(socket.local_addr().unwrap_or(held.host));
                    proxy.spawn_udp(socket, target);
                }
            }
        }
        Ok(proxy)
    }

    /// Keeps the ports of `reservation` without relaying anything (no container address to
    /// relay to): connections to them are accepted by nobody.
    pub fn hold(reservation: PortReservation) -> UserlandProxy {
        let mut proxy = UserlandProxy::default();
        proxy.local = reservation.ports().iter().map(|p| p.host).collect();
        proxy.idle = Some(reservation);
        proxy
    }

    fn spawn_tcp(&mut self, listener: TcpListener, target: SocketAddr) {
        let stop = self.stopping.subscribe();
        self.tasks
            .push(tokio::spawn(tcp_loop(listener, target, stop)));
    }

    fn spawn_udp(&mut self, socket: UdpSocket, target: SocketAddr) {
        let stop = self.stopping.subscribe();
        self.tasks
            .push(tokio::spawn(udp_loop(socket, target, stop)));
    }

    /// The bound host addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Stops every listener and relayed connection and waits until the sockets are closed
    /// and the ports free again. (Dropping also stops them, without waiting: an aborted
    /// loop's connections and UDP flows are aborted too but end later, and a UDP flow
    /// holds the listening socket until it does.)
    pub async fn stop(mut self) {
        self.idle = None;
        self.stopping.send_replace(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

/// Accepts and relays connections until `stop` changes (or its sender goes); then ends them
/// and returns. Dropping it (abort) drops the `JoinSet`, which aborts every relayed connection.
async fn tcp_loop(listener: TcpListener, target: SocketAddr, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => {
                conns.shutdown().await;
                return;
            }
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
/// On a wildcard address the socket learns each datagram's destination (`IP_PKTINFO`) and
/// replies from it: the kernel's own choice of source (the address on the route back) would
/// make a connected client drop the reply when it wrote to another host address.
/// Returns when `stop` changes (or its sender goes), after every flow has ended (each holds
/// the socket).
async fn udp_loop(socket: UdpSocket, target: SocketAddr, mut stop: watch::Receiver<bool>) {
    let pktinfo = match enable_pktinfo(&socket) {
        Ok(on) => on,
        Err(e) => {
            tracing::debug!(%target, "proxy: IP_PKTINFO: {e}");
            false
        }
    };
    let socket = Arc::new(socket);
    let flows: Flows = Arc::default();
    let mut replies = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, client, local) = tokio::select! {
            _ = stop.changed() => {
                replies.shutdown().await;
                return;
            }
            got = recv_to(&socket, &mut buf, pktinfo) => match got {
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
                    (client, local),
                    Arc::clone(&flows),
                ));
                up
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Relays the container's replies to `client` (from `local`, the address it wrote to,
/// when known) until the flow is idle for [`UDP_IDLE`].
async fn udp_replies(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    (client, local): (SocketAddr, Option<IpAddr>),
    flows: Flows,
) {
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        let data = &buf[..n];
        let sent = match local {
            Some(local) => {
                socket
                    .async_io(Interest::WRITABLE, || {
                        send_from(socket.as_raw_fd(), data, client, local)
                    })
                    .await
            }
            None => socket.send_to(data, client).await,
        };
        if let Err(e) = sent {
            tracing::debug!(%client, "proxy reply: {e}");
        }
    }
    flows.lock().await.remove(&client);
}

/// Turns on `IP_PKTINFO` / `IPV6_RECVPKTINFO` when `socket` is bound to a wildcard
/// address; whether it did.
fn enable_pktinfo(socket: &UdpSocket) -> std::io::Result<bool> {
    match socket.local_addr()? {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?;
            Ok(true)
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// One datagram: its length, sender and (with `pktinfo`) the local address it was sent to.
async fn recv_to(
    socket: &UdpSocket,
    buf: &mut [u8],
    pktinfo: bool,
) -> std::io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    if !pktinfo {
        let (n, from) = socket.recv_from(buf).await?;
        return Ok((n, from, None));
    }
    socket
        .async_io(Interest::READABLE, || recvmsg_to(socket.as_raw_fd(), buf))
        .await
}

fn recvmsg_to(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)?;
    let mut local = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                local = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                local = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    let from = msg
        .address
        .as_ref()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::V4((*v4).into()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
        })
        .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
    Ok((msg.bytes, from, local))
}

/// `sendto(client)` with the source address set to `local` (a pktinfo control message).
fn send_from(fd: RawFd, data: &[u8], client: SocketAddr, local: IpAddr) -> std::io::Result<usize> {
    let iov = [IoSlice::new(data)];
    let sent = match (client, local) {
        (SocketAddr::V4(to), IpAddr::V4(src)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::MSG_DONTWAIT,
                Some(&SockaddrIn::from(to)),
            )
        }
        (SocketAddr::V6(to), IpAddr::V6(src)) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: 0,
            };
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&info)],
                MsgFlags::MSG_DONTWAIT,
                Some(&SockaddrIn6::from(to)),
            )
        }
        // A socket of one family never hears of the other's addresses.
        _ => Err(nix::errno::Errno::EAFNOSUPPORT),
    };
    Ok(sent?)
}
