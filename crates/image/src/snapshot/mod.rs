//! Snapshots: overlayfs (or copied) directory trees that containers run on.
//!
//! Modelled on containerd's snapshotter. A snapshot is a directory tree
//! under `<root>/snapshots/<id>/fs` and a record in the shared redb store
//! (tables prefixed `snapshot_`), named by a caller-chosen key:
//!
//! - [`Kind::Committed`]: read-only, may be the parent of others (an image
//!   layer, named by its chain ID, or a `docker commit` result).
//! - [`Kind::Active`]: writable: a container's rootfs or an unpack in
//!   progress. [`Snapshotter::commit`] turns it into a committed one under a
//!   new name, in place.
//! - [`Kind::View`]: a read-only view of a committed snapshot.
//!
//! Two backends ([`Backend`]): with **overlay** a snapshot's `fs` holds only
//! its own changes and the mounts stack the parents' `fs` dirs as overlay
//! lower dirs (newest first) under the active one's upper dir; with **copy**
//! (where overlayfs is unavailable) `fs` holds a full copy of the parent
//! tree and the mounts are bind mounts.
//!
//! ```text
//! <root>/snapshots/<id>/fs     the tree (overlay: the upper dir)
//! <root>/snapshots/<id>/work   overlay work dir (active snapshots)
//! <root>/snapshots/new-*       being created (no record yet)
//! <root>/mnt/*                 temporary mount points (unpack)
//! ```
//!
//! # Crash consistency
//!
//! A snapshot's directory is made under a temporary name (`new-*`), then a
//! write transaction inserts the record, the directory is renamed to its id
//! and the parent directory fsynced, and only then the transaction commits.
//! Removal commits the record's deletion first and deletes the directory
//! afterwards. So the store never names a directory that does not exist;
//! the only debris a crash can leave is a directory no committed record
//! owns, and [`Snapshotter::open`] deletes those (after detaching leftover
//! mounts under `<root>/mnt`). Unpacks use keys containing `unpack-` and the
//! label [`UNPACK_LABEL`]; an interrupted one stays an active snapshot that
//! `open` or [`Snapshotter::cleanup`] removes.

mod changes;
mod copy;
mod diff;
mod error;
mod mount;
mod snapshotter;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

pub use copy::{copy_tree, usage as disk_usage};
pub use error::SnapshotError;
pub use mount::{is_mountpoint, mount_all, unmount};
pub use snapshotter::Snapshotter;

/// Label put on the active snapshots [`Snapshotter::unpack_layer`] makes;
/// its value is the chain ID being unpacked.
pub const UNPACK_LABEL: &str = "berth.snapshot/unpack";

/// Labels: free-form key/value pairs kept with a snapshot.
pub type Labels = BTreeMap<String, String>;

/// How snapshots are stored and mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Backend {
    /// overlayfs: each snapshot holds its own changes; parents stack as
    /// lower dirs.
    Overlay,
    /// Full copies of the parent tree, bind-mounted.
    Copy,
}

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Read-only, may be a parent.
    Committed,
    /// Writable.
    Active,
    /// Read-only view of a committed snapshot.
    View,
}

/// What [`Snapshotter::stat`] says about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key.
    pub name: String,
    /// The committed snapshot it is based on.
    pub parent: Option<String>,
    /// Its kind.
    pub kind: Kind,
    /// Its labels.
    pub labels: Labels,
    /// When it was created (prepared; commit keeps the time).
    pub created: SystemTime,
}

/// Disk usage of a snapshot's own directory (for overlay: its own layer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated (blocks × 512), each inode counted once.
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// One mount, as containerd describes it: `mount -t <kind> -o <options>
/// <source> <target>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Filesystem type: `overlay` or `bind`.
    pub kind: String,
    /// Source: a directory for `bind`, `overlay` for overlay.
    pub source: String,
    /// Options: `rbind`, `ro`/`rw`, `lowerdir=a:b`, `upperdir=`, `workdir=`.
    pub options: Vec<String>,
}

/// The kind of a change, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// `A`: added.
    Added,
    /// `C`: changed.
    Modified,
    /// `D`: deleted.
    Deleted,
}

/// One change between a snapshot and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// Absolute path inside the rootfs (`/etc/passwd`).
    pub path: PathBuf,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Added => "A",
            ChangeKind::Modified => "C",
            ChangeKind::Deleted => "D",
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path.display())
    }
}

/// What [`Snapshotter::write_diff`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// `sha256:<hex>` of the uncompressed tar (the layer's diffID).
    pub diff_id: String,
    /// Bytes of tar written.
    pub size: u64,
}
