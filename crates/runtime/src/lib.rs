//! berth-runtime: the OCI runtime library.
//!
//! It turns an OCI bundle (a `config.json` and a root filesystem) into an
//! isolated process, and manages that container's life afterwards. The
//! `berth-runtime` binary (a runc-compatible CLI) and `berth-shim` are thin
//! layers over [`container`].
//!
//! The functions that start processes ([`container::create`],
//! [`container::exec`]) fork; call them from a single-threaded process.

/// cgroups v1, v2 and hybrid behind one trait.
pub mod cgroups;
/// Container lifecycle: create, start, state, kill, delete, exec, pause, resume, update, stats.
pub mod container;
/// Errors of the library, one enum per concern gathered in [`RuntimeError`].
pub mod error;
/// Running from a read-only view of the binary (CVE-2019-5736).
pub mod exe;
/// The OCI features document (`berth-runtime features`).
pub mod features;
/// Hooks: prestart, createRuntime, createContainer, startContainer, poststart, poststop.
pub mod hooks;
/// Container id rules.
pub mod id;
/// Namespaces: which to create, which to join.
pub mod namespaces;
/// The processes the runtime creates: the container's init and exec'd tenants.
pub mod process;
/// Root filesystem: mounts, devices, pivot_root, masked and read-only paths.
pub mod rootfs;
/// seccomp filters from config.json, installed with the raw syscall.
pub mod seccomp;
/// Signal names and numbers.
pub mod signal;
/// Loading and checking config.json.
pub mod spec;
/// Persisted container state and its runc-compatible view.
pub mod state;

pub use error::RuntimeError;
