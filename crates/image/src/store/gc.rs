//! Mark and sweep: what no image and no live lease reaches is removed.

use std::collections::BTreeSet;

use super::{ImageStore, Resource, StoreError};
use crate::content::{ContentError, Digest, Manager};

/// How to collect.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report what would be removed without removing it.
    pub dry_run: bool,
}

/// What a collection removed (or would remove, on a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Their total size.
    pub bytes: u64,
    /// Ingests aborted (refs).
    pub ingests: Vec<String>,
    /// Dead leases deleted.
    pub leases: Vec<String>,
    /// Every blob that is still referenced (the mark set).
    pub kept: BTreeSet<Digest>,
    /// Snapshot keys a live lease holds.
    pub leased_snapshots: BTreeSet<String>,
}

impl ImageStore {
    /// Collects garbage in the content store: deletes dead leases (their
    /// process is gone or they expired), marks every blob reachable from an
    /// image record or a live lease, and removes the rest, together with
    /// ingests no live lease holds. Snapshots are the snapshotter's to
    /// collect; the report says which chain ids the kept images need
    /// ([`GcReport::kept`] + [`ImageStore::snapshot_roots`]).
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let mut leased_ingests = BTreeSet::new();
        let mut marked: BTreeSet<Digest> = BTreeSet::new();
        let mut todo: Vec<(Digest, String)> = Vec::new();

        for (lease, resources) in self.leases()? {
            if !lease.alive() {
                if !opts.dry_run {
                    self.lease_delete(&lease.id)?;
                }
                report.leases.push(lease.id);
                continue;
            }
            for r in resources {
                match r {
                    Resource::Content(d) => todo.push((d, String::new())),
                    Resource::Ingest(i) => {
                        leased_ingests.insert(i);
                    }
                    Resource::Snapshot(k) => {
                        report.leased_snapshots.insert(k);
                    }
                }
            }
        }
        for img in self.list()? {
            todo.push((img.target.digest()?, img.target.media_type.clone()));
        }
        while let Some((d, mt)) = todo.pop() {
            if !marked.insert(d.clone()) {
                continue;
            }
            todo.extend(self.children(&mt, &d)?);
        }

        for info in self.content.list()? {
            if marked.contains(&info.digest) {
                continue;
            }
            if !opts.dry_run {
                match self.content.delete(&info.digest) {
                    Ok(()) | Err(ContentError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            report.bytes += info.size;
            report.blobs.push(info.digest);
        }
        for r in self.content.ingests()? {
            if leased_ingests.contains(&r) {
                continue;
            }
            if !opts.dry_run {
                match self.content.abort(&r) {
                    Ok(()) => {}
                    // A writer holds it right now: not garbage.
                    Err(ContentError::Locked(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            report.ingests.push(r);
        }
        if !opts.dry_run {
            self.content.remove_orphans()?;
        }
        report.kept = marked;
        Ok(report)
    }

    /// The chain ids (snapshot names) of every layer stack that an image
    /// record reaches for `platform`, and the parents of each: the snapshots
    /// that gc must keep. Images that do not resolve (an index without that
    /// platform, a half-pulled index) contribute nothing.
    pub fn snapshot_roots(
        &self,
        platform: &super::Platform,
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut out = BTreeSet::new();
        for img in self.list()? {
            if let Ok(r) = self.resolve(&img.target, platform) {
                out.extend(r.chain_ids());
            }
        }
        Ok(out)
    }
}
