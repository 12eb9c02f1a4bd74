//! The few per-interface sysctls berth sets. `/proc/sys/net` shows the namespace of the
//! thread that opens it, so writes for a container go through [`crate::netns::NetNs::run`].

use crate::error::{NetError, Result};
use crate::link::check_ifname;

/// Writes `value` to `/proc/sys/net/<path>` (`path` like `ipv4/conf/berth0/route_localnet`).
pub fn write(path: &str, value: &str) -> Result<()> {
    let full = format!("/proc/sys/net/{path}");
    std::fs::write(&full, value).map_err(|source| NetError::Sysctl { path: full, source })
}

/// Reads `/proc/sys/net/<path>`, trimmed.
pub fn read(path: &str) -> Result<String> {
    let full = format!("/proc/sys/net/{path}");
    std::fs::read_to_string(&full)
        .map(|s| s.trim().to_string())
        .map_err(|source| NetError::Sysctl { path: full, source })
}

/// Sets `net.ipv4.conf.<ifname>.<key>`.
pub fn set_ipv4_conf(ifname: &str, key: &str, value: &str) -> Result<()> {
    check_ifname(ifname)?;
    write(&format!("ipv4/conf/{ifname}/{key}"), value)
}

/// Sets `net.ipv6.conf.<ifname>.<key>`.
pub fn set_ipv6_conf(ifname: &str, key: &str, value: &str) -> Result<()> {
    check_ifname(ifname)?;
    write(&format!("ipv6/conf/{ifname}/{key}"), value)
}

/// Turns on IPv4 forwarding for the whole host (`net.ipv4.ip_forward=1`), which published
/// ports reached from other machines need. Never called by this crate itself: the bridges
/// only get per-interface forwarding.
pub fn enable_ip_forward() -> Result<()> {
    write("ipv4/ip_forward", "1")
}
