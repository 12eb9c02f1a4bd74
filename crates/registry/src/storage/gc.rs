//! Garbage collection: mark what tags, manifests and referrers reach, sweep
//! the rest.
//!
//! Roots are every manifest a repository holds (or, with `delete_untagged`,
//! every tagged one). From a root, an index reaches its manifests, a manifest
//! its config and layers, and a manifest is reached too when its subject is
//! (a referrer: signature, SBOM, attestation). Blobs no root reaches are
//! deleted from the shared store, with their links. The collector takes the
//! storage lock, so it refuses to run beside a writable server: a blob whose
//! manifest is still being pushed would look unreferenced.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::time::Duration;

use berth_image::content::{Algorithm, Digest, Info, Manager};

use super::{IoContext, ManifestRef, Storage, StorageError, durable, parse_manifest};
use crate::name::RepoName;

/// How to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report only; remove nothing.
    pub dry_run: bool,
    /// Also remove manifests no tag (or referrer chain from a tag) reaches.
    pub delete_untagged: bool,
    /// Upload sessions idle for longer are removed.
    pub upload_ttl: Duration,
}

/// What a collection freed (or, dry, would free).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Blobs removed from the shared store.
    pub blobs: Vec<Info>,
    /// Their total size.
    pub bytes: u64,
    /// Manifests unlinked from repositories (`delete_untagged`).
    pub manifests: Vec<(String, Digest)>,
    /// Upload sessions and stale ingests dropped.
    pub uploads: Vec<String>,
    /// Blobs kept.
    pub kept: usize,
    /// Blobs a kept manifest references (or kept manifests) that the store
    /// does not hold: damage from outside, which gc cannot repair.
    pub missing: Vec<Digest>,
}

impl Storage {
    /// Takes the storage's exclusive lock (held while the file is open):
    /// writable servers and gc each hold it, so they never run together.
    pub fn lock_exclusive(&self) -> Result<File, StorageError> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open", &path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(StorageError::Locked(self.root.clone())),
            Err(e) => Err(StorageError::io(
                format!("lock {}", path.display()),
                e.into(),
            )),
        }
    }

    fn revisions(&self, repo: &RepoName) -> Result<Vec<Digest>, StorageError> {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            let dir = self
                .repo_dir(repo)
                .join("_manifests/revisions")
                .join(alg.as_str());
            for hex in durable::list_names(&dir).ctx("read", &dir)? {
                if let Ok(d) = Digest::new(alg, &hex) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Collects garbage; see the module docs.
    pub fn collect_garbage(&self, opts: &GcOptions) -> Result<GcReport, StorageError> {
        let _lock = if opts.dry_run {
            None
        } else {
            Some(self.lock_exclusive()?)
        };
        let mut report = GcReport::default();
        let mut marked_blobs: BTreeSet<Digest> = BTreeSet::new();
        // Per repository: the manifests kept, and every manifest's subject.
        let mut unmarked: BTreeMap<String, Vec<Digest>> = BTreeMap::new();
        for name in self.repositories()? {
            let Ok(repo) = RepoName::new(&name) else {
                continue;
            };
            let revisions = self.revisions(&repo)?;
            let mut subjects = BTreeMap::new();
            let mut parsed = BTreeMap::new();
            for rev in &revisions {
                let Ok((_, media_type, bytes)) =
                    self.get_manifest(&repo, &ManifestRef::Digest(rev.clone()))
                else {
                    continue;
                };
                if let Ok(m) = parse_manifest(Some(&media_type), &bytes) {
                    if let Some(s) = &m.subject {
                        subjects.insert(rev.clone(), s.clone());
                    }
                    parsed.insert(rev.clone(), m);
                }
            }
            let mut work: Vec<Digest> = if opts.delete_untagged {
                let mut roots = Vec::new();
                for tag in self.tags(&repo)? {
                    if let Ok((d, _)) = self.resolve_manifest(&repo, &ManifestRef::Tag(tag)) {
                        roots.push(d);
                    }
                }
                roots
            } else {
                revisions.clone()
            };
            let mut kept: BTreeSet<Digest> = BTreeSet::new();
            loop {
                while let Some(d) = work.pop() {
                    if !kept.insert(d.clone()) {
                        continue;
                    }
                    if let Some(m) = parsed.get(&d) {
                        marked_blobs.extend(m.blobs.iter().map(|(b, _)| b.clone()));
                        work.extend(m.children.iter().cloned());
                    }
                }
                // Referrers of what is kept are kept.
                work.extend(
                    subjects
                        .iter()
                        .filter(|(r, s)| kept.contains(*s) && !kept.contains(*r))
                        .map(|(r, _)| r.clone()),
                );
                if work.is_empty() {
                    break;
                }
            }
            marked_blobs.extend(kept.iter().cloned());
            let dropped: Vec<Digest> = revisions
                .into_iter()
                .filter(|r| !kept.contains(r))
                .collect();
            unmarked.insert(name, dropped);
        }

        for (name, dropped) in &unmarked {
            let Ok(repo) = RepoName::new(name) else {
                continue;
            };
            for d in dropped {
                if !opts.dry_run {
                    self.delete_manifest(&repo, &ManifestRef::Digest(d.clone()))?;
                }
                report.manifests.push((name.clone(), d.clone()));
            }
        }

        let stored = self.content.list()?;
        let present: BTreeSet<&Digest> = stored.iter().map(|i| &i.digest).collect();
        report.missing = marked_blobs
            .iter()
            .filter(|d| !present.contains(d))
            .cloned()
            .collect();
        for info in stored {
            if marked_blobs.contains(&info.digest) {
                report.kept += 1;
                continue;
            }
            if !opts.dry_run {
                self.content.delete(&info.digest)?;
            }
            report.bytes += info.size;
            report.blobs.push(info);
        }
        if !opts.dry_run {
            let gone: BTreeSet<&Digest> = report.blobs.iter().map(|i| &i.digest).collect();
            for name in unmarked.keys() {
                let Ok(repo) = RepoName::new(name) else {
                    continue;
                };
                for d in &gone {
                    let path = self.layer_link(&repo, d);
                    durable::remove_file(&path).ctx("remove", &path)?;
                }
            }
            report.uploads = self.purge_uploads(opts.upload_ttl)?;
        }
        Ok(report)
    }
}
