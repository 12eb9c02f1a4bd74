//! berth-registry: an OCI Distribution 1.1 registry server, and the client
//! berthd pulls and pushes with ([`client`]).
//!
//! Storage on the local filesystem shares blobs across repositories through
//! berth-image's content store; the HTTP server speaks the distribution API
//! with basic or bearer-token auth, TLS and a read-only mode.

/// Authentication: htpasswd basic auth, bearer tokens, access rules.
pub mod auth;
/// The distribution client: pull into and push from an image store.
pub mod client;
/// Server configuration (command line and config file).
pub mod config;
/// The distribution spec's error bodies.
pub mod error;
/// Repository names and tags.
pub mod name;
/// The HTTP server.
pub mod server;
/// Storage: blobs, manifests, tags, referrers, uploads, gc.
pub mod storage;
