//! berth-image: what images are made of.
//!
//! This crate is being built up (see the images issue); so far it has:

/// Image archives: docker save/load, OCI layouts, import of a rootfs tarball.
pub mod archive;
/// Content-addressed blob storage with verified, crash-safe writes.
pub mod content;
/// Layer application: untar (gzip/zstd/plain) OCI layers fd-relative inside a root.
pub mod layer;
/// Media types of image content and what they name.
pub mod media;
/// Image references (`busybox` → `docker.io/library/busybox:latest`).
pub mod reference;
/// Snapshots: overlayfs (or copied) trees that containers run on.
pub mod snapshot;
/// Image config → OCI runtime spec, with Docker's semantics and defaults.
pub mod spec;
/// Images: names → manifests in redb, leases, garbage collection.
pub mod store;
