//! berth-shim: one small, single-threaded, synchronous process per
//! container. berthd spawns it; it creates the container through the
//! runtime library, becomes its parent (child subreaper), keeps its stdio,
//! writes its json-file log and keeps its exit status, so the container
//! outlives a daemon that stops or crashes.
//!
//! This library is the contract between berthd and the shim ([`proto`]);
//! it has no async runtime in it, so berthd speaks it over tokio sockets and
//! the shim over blocking ones.

/// Files, requests, replies and stream frames.
pub mod proto;
