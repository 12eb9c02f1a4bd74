//! Changes between a snapshot and its parent, with `docker diff` semantics.
//!
//! - Paths are absolute from `/`, sorted component-wise (a directory before
//!   its entries); the root itself is never listed.
//! - An entry the parent lacks is `A`; one it has is `C` when it differs
//!   (overlay: whenever it was copied up into the upper dir, as Docker's
//!   overlay driver says; copy: type, mode, owner, device, link target,
//!   xattrs, and for non-directories size and mtime). A directory whose own
//!   metadata is unchanged is still `C` when something under it changed,
//!   unless it is itself `A`.
//! - A deletion is one `D` for the top entry removed, never its children.
//!   Overlay whiteouts (character device 0/0) are deletions; an opaque
//!   directory (`trusted.overlay.opaque` or `user.overlay.opaque` = `y`)
//!   hides the parent's entries: the directory is `C`, every parent entry
//!   it no longer has is `D`, and entries it has again are `C`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::copy::{get_xattr, names, xattrs};
use super::snapshotter::Layout;
use super::{Backend, Change, ChangeKind, Kind, SnapshotError};

/// A change with what [`super::diff`] needs to know.
#[derive(Debug, Clone)]
pub(super) struct RawChange {
    /// Path relative to the root.
    pub rel: PathBuf,
    pub kind: ChangeKind,
    /// An overlay opaque directory over a parent directory: the diff writes
    /// an opaque marker in it.
    pub opaque: bool,
    /// A deletion implied by an opaque directory above (the marker covers
    /// it).
    pub hidden: bool,
}

impl RawChange {
    pub fn change(&self) -> Change {
        Change {
            kind: self.kind,
            path: Path::new("/").join(&self.rel),
        }
    }

    fn new(rel: PathBuf, kind: ChangeKind) -> Self {
        RawChange {
            rel,
            kind,
            opaque: false,
            hidden: false,
        }
    }
}

pub(super) fn compute(backend: Backend, l: &Layout) -> Result<Vec<RawChange>, SnapshotError> {
    if l.record.kind == Kind::View {
        return Err(SnapshotError::Invalid {
            key: l.key.clone(),
            reason: "a view has no changes".into(),
        });
    }
    let mut out = Vec::new();
    let result = match backend {
        Backend::Overlay => {
            let lowers = Lowers { layers: &l.parents };
            walk_overlay(&lowers, &l.fs, Path::new(""), false, &mut out)
        }
        Backend::Copy => {
            let old = l.parents.first();
            walk_copy(
                old.map(PathBuf::as_path),
                &l.fs,
                Path::new(""),
                old.is_some(),
                &mut out,
            )
        }
    };
    result.map_err(|e| SnapshotError::io("compare", &l.fs, e))?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn lstat_opt(p: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An overlay whiteout: a character device 0/0.
pub(super) fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// An overlay opaque directory.
pub(super) fn is_opaque(p: &Path) -> io::Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if get_xattr(p, name.as_ref())?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The parents' layers of an overlay snapshot, nearest first.
struct Lowers<'a> {
    layers: &'a [PathBuf],
}

impl Lowers<'_> {
    /// `rel` in the merged view of the layers: its metadata, and the
    /// layers' directories at `rel` that contribute entries (nearest first).
    fn probe(&self, rel: &Path) -> io::Result<(Option<Metadata>, Vec<PathBuf>)> {
        let comps: Vec<_> = rel.components().collect();
        let ancestors = &comps[..comps.len().saturating_sub(1)];
        let mut found: Option<Metadata> = None;
        let mut dirs = Vec::new();
        'layers: for layer in self.layers {
            let mut stop_after = false;
            let mut cur = layer.clone();
            for c in ancestors {
                cur.push(c);
                match lstat_opt(&cur)? {
                    None if stop_after => break 'layers,
                    None => continue 'layers,
                    // A whiteout or a non-directory hides what is below.
                    Some(m) if !m.is_dir() => break 'layers,
                    Some(_) => {
                        if is_opaque(&cur)? {
                            stop_after = true;
                        }
                    }
                }
            }
            let p = layer.join(rel);
            match lstat_opt(&p)? {
                None => {}
                Some(m) if is_whiteout(&m) => break,
                Some(m) if !m.is_dir() => {
                    if found.is_none() {
                        found = Some(m);
                    }
                    break;
                }
                Some(m) => {
                    if found.is_none() {
                        found = Some(m);
                    }
                    let opaque = is_opaque(&p)?;
                    dirs.push(p);
                    if opaque {
                        break;
                    }
                }
            }
            if stop_after {
                break;
            }
        }
        Ok((found, dirs))
    }

    /// Names in the merged directory `rel`.
    fn listing(&self, rel: &Path) -> io::Result<Vec<OsString>> {
        let (_, dirs) = self.probe(rel)?;
        let mut seen: HashMap<OsString, bool> = HashMap::new();
        for d in dirs {
            for name in names(&d)? {
                if seen.contains_key(&name) {
                    continue;
                }
                let m = fs::symlink_metadata(d.join(&name))?;
                seen.insert(name, !is_whiteout(&m));
            }
        }
        let mut out: Vec<OsString> = seen
            .into_iter()
            .filter_map(|(n, present)| present.then_some(n))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Directory metadata Docker compares (size and mtime are no measure).
fn dir_differs(a: &Metadata, b: &Metadata) -> bool {
    a.mode() != b.mode() || a.uid() != b.uid() || a.gid() != b.gid()
}

fn walk_overlay(
    lowers: &Lowers<'_>,
    upper: &Path,
    rel: &Path,
    hidden: bool,
    out: &mut Vec<RawChange>,
) -> io::Result<()> {
    let mut present = HashSet::new();
    for name in names(&upper.join(rel))? {
        let child = rel.join(&name);
        let p = upper.join(&child);
        let m = fs::symlink_metadata(&p)?;
        if is_whiteout(&m) {
            if !hidden && lowers.probe(&child)?.0.is_some() {
                out.push(RawChange::new(child, ChangeKind::Deleted));
            }
            continue;
        }
        present.insert(name);
        let (lower, _) = lowers.probe(&child)?;
        if !m.is_dir() {
            let kind = if lower.is_some() {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            out.push(RawChange::new(child, kind));
            continue;
        }
        let opaque = is_opaque(&p)?;
        let lower_dir = lower.as_ref().is_some_and(Metadata::is_dir);
        let kind = match &lower {
            None => Some(ChangeKind::Added),
            Some(l) if !l.is_dir() => Some(ChangeKind::Modified),
            Some(l) if opaque || dir_differs(l, &m) => Some(ChangeKind::Modified),
            Some(_) => None,
        };
        let start = out.len();
        if let Some(k) = kind {
            out.push(RawChange {
                rel: child.clone(),
                kind: k,
                opaque: opaque && lower_dir,
                hidden: false,
            });
        }
        walk_overlay(lowers, upper, &child, (hidden || opaque) && lower_dir, out)?;
        if kind.is_none() && out.len() > start {
            out.push(RawChange::new(child, ChangeKind::Modified));
        }
    }
    if hidden {
        for name in lowers.listing(rel)? {
            if !present.contains(&name) {
                out.push(RawChange {
                    rel: rel.join(name),
                    kind: ChangeKind::Deleted,
                    opaque: false,
                    hidden: true,
                });
            }
        }
    }
    Ok(())
}

/// What the copy backend compares.
fn differs(old: &Metadata, new: &Metadata, op: &Path, np: &Path) -> io::Result<bool> {
    if old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || old.rdev() != new.rdev()
    {
        return Ok(true);
    }
    if !new.is_dir()
        && (old.mtime() != new.mtime()
            || old.mtime_nsec() != new.mtime_nsec()
            || old.size() != new.size())
    {
        return Ok(true);
    }
    if new.file_type().is_symlink() && fs::read_link(op)? != fs::read_link(np)? {
        return Ok(true);
    }
    Ok(xattrs(op)? != xattrs(np)?)
}

fn walk_copy(
    old_root: Option<&Path>,
    new_root: &Path,
    rel: &Path,
    old_is_dir: bool,
    out: &mut Vec<RawChange>,
) -> io::Result<()> {
    let mut present = HashSet::new();
    for name in names(&new_root.join(rel))? {
        let child = rel.join(&name);
        let np = new_root.join(&child);
        let n = fs::symlink_metadata(&np)?;
        present.insert(name);
        let (old, op) = match old_root {
            Some(r) if old_is_dir => {
                let op = r.join(&child);
                (lstat_opt(&op)?, op)
            }
            _ => (None, PathBuf::new()),
        };
        let kind = match &old {
            None => Some(ChangeKind::Added),
            Some(o) if differs(o, &n, &op, &np)? => Some(ChangeKind::Modified),
            Some(_) => None,
        };
        let start = out.len();
        if let Some(k) = kind {
            out.push(RawChange::new(child.clone(), k));
        }
        if n.is_dir() {
            let sub_old = old.as_ref().is_some_and(Metadata::is_dir);
            walk_copy(old_root, new_root, &child, sub_old, out)?;
            if kind.is_none() && out.len() > start {
                out.push(RawChange::new(child, ChangeKind::Modified));
            }
        }
    }
    if let (Some(r), true) = (old_root, old_is_dir) {
        for name in names(&r.join(rel))? {
            if !present.contains(&name) {
                out.push(RawChange::new(rel.join(name), ChangeKind::Deleted));
            }
        }
    }
    Ok(())
}
