//! berth-shim: one small, single-threaded, synchronous process per
//! container. berthd's zygote forks it; it creates the container through the
//! runtime library, becomes its parent (child subreaper), keeps its stdio,
//! writes its json-file log and keeps its exit status, so the container
//! outlives a daemon that stops or crashes.
//!
//! Two programs share this crate: `berth-shim` creates the container and
//! runs execs (it links the runtime library), and `berth-shim-monitor`,
//! which the first one becomes once the container exists, serves it until
//! it exits without the runtime library's code or memory.
//!
//! This library is the contract between berthd and the shim ([`proto`]);
//! it has no async runtime in it, so berthd speaks it over tokio sockets and
//! the shim over blocking ones.

/// Files, requests, replies and stream frames.
pub mod proto;

/// Starting shims through the zygote (berthd's side).
pub mod launch;

#[doc(hidden)]
pub mod monitor;
#[doc(hidden)]
pub mod stdio;
