//! Snapshots: overlayfs (or copied) directory trees that containers run on.
