//! The crate's error type: every variant names the object it is about and what went wrong.

use std::net::IpAddr;

use crate::ipam::IpamError;
use crate::ports::Protocol;

/// Result alias for this crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Everything that can go wrong while setting up or tearing down container networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A network namespace operation failed (create, bind mount, setns, delete…).
    #[error("network namespace {name}: {op}: {source}")]
    Netns {
        name: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A netlink request about a link (interface) failed.
    #[error("link {name}: {op}: {source}")]
    Link {
        name: String,
        op: &'static str,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// A link that must exist does not.
    #[error("link {name}: not found")]
    LinkNotFound { name: String },
    /// A netlink request about an address or a route failed.
    #[error("{object} on link {link}: {op}: {source}")]
    Addr {
        object: String,
        link: String,
        op: &'static str,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// Opening the netlink socket failed.
    #[error("netlink socket: {0}")]
    NetlinkSocket(#[source] std::io::Error),
    /// An interface or network name is not acceptable to the kernel.
    #[error("interface name {name:?}: {problem}")]
    BadName { name: String, problem: &'static str },
    /// Writing a sysctl failed.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused a batch or could not be run.
    #[error("nftables table {table}: {op}: {detail}")]
    Nft {
        table: String,
        op: String,
        detail: String,
    },
    /// A host port to publish is already taken by another socket.
    #[error(
        "cannot publish {proto} port {port} on {host_ip}: port is already allocated (something is listening on it): {source}"
    )]
    PortInUse {
        proto: Protocol,
        host_ip: IpAddr,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// A port mapping makes no sense (empty range, mismatched family…).
    #[error("port mapping {mapping}: {problem}")]
    BadPortMapping { mapping: String, problem: String },
    /// The userland proxy could not bind or run.
    #[error("userland proxy for {proto} {listen}: {op}: {source}")]
    Proxy {
        proto: Protocol,
        listen: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The embedded DNS server could not bind or run.
    #[error("embedded DNS server in {netns}: {op}: {source}")]
    Dns {
        netns: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Address management refused a request.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A helper thread (running inside a namespace) panicked.
    #[error("helper thread for {what} panicked")]
    ThreadPanicked { what: String },
}

impl NetError {
    pub(crate) fn netns(name: &str, op: &'static str, source: impl Into<std::io::Error>) -> Self {
        NetError::Netns {
            name: name.to_string(),
            op,
            source: source.into(),
        }
    }

    pub(crate) fn link(name: &str, op: &'static str, source: rtnetlink::Error) -> Self {
        NetError::Link {
            name: name.to_string(),
            op,
            source: Box::new(source),
        }
    }
}
