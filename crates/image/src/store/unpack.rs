//! Images ↔ snapshots: unpacking layers into snapshots, committing a
//! container's changes as a new image, and collecting unused snapshots.

use std::collections::BTreeSet;
use std::io::{BufReader, Read};

use super::{Image, ImageStore, Platform, Resource, StoreError, Target};
use crate::content::{Ingester, Provider};
use crate::layer::ApplyOptions;
use crate::snapshot::{Kind, Snapshotter};

/// What `docker commit` sets on the new image.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Name to tag the new image with; untagged (named by its id) if None.
    pub name: Option<String>,
    /// Replaces the config's `config` object (Cmd, Env, … after `--change`);
    /// the base image's is kept if None.
    pub config: Option<serde_json::Value>,
    /// History comment (`--message`).
    pub comment: Option<String>,
    /// Author (`--author`).
    pub author: Option<String>,
    /// The committed container's id and config, kept in the image config
    /// as Docker's legacy `container` and `container_config` (what image
    /// inspect shows as Container and ContainerConfig before API 1.45).
    pub container: Option<(String, serde_json::Value)>,
}

/// What [`ImageStore::unpack_reporting`] tells about one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerEvent {
    /// Extraction is under way: `done` of the layer blob's `total` bytes
    /// (as stored, i.e. compressed) have been read. Sent once with
    /// `done == 0` before the first byte, then every 2.5 % of the blob (at
    /// least 256 KiB apart), and once with `done == total`.
    Extracting { done: u64, total: u64 },
    /// The layer's snapshot is committed.
    Done,
}

/// A reader that reports how much of a layer blob has been read.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    step: u64,
    last: u64,
    report: &'a mut dyn FnMut(u64, u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        let at_end = n == 0 || self.done == self.total;
        if self.done > self.last && (self.done - self.last >= self.step || at_end) {
            self.last = self.done;
            (self.report)(self.done, self.total.max(self.done));
        }
        Ok(n)
    }
}

impl ImageStore {
    /// Unpacks every layer of `target` (resolved for `platform`) into a
    /// committed snapshot named by its chain id, checking each layer's
    /// diffID against the config, and returns the top chain id: the parent
    /// of a container's snapshot (None for an image without layers). Layers
    /// already unpacked are skipped.
    pub fn unpack(
        &self,
        snapshotter: &Snapshotter,
        target: &Target,
        platform: &Platform,
        opts: &ApplyOptions,
    ) -> Result<Option<String>, StoreError> {
        self.unpack_reporting(snapshotter, target, platform, opts, &mut |_, _| {})
    }

    /// [`Self::unpack`], calling `on_layer(layer digest, event)` while a
    /// layer is extracted ([`LayerEvent::Extracting`] with byte counts) and
    /// once its snapshot is committed ([`LayerEvent::Done`]); layers already
    /// unpacked are not reported.
    pub fn unpack_reporting(
        &self,
        snapshotter: &Snapshotter,
        target: &Target,
        platform: &Platform,
        opts: &ApplyOptions,
        on_layer: &mut dyn FnMut(&str, LayerEvent),
    ) -> Result<Option<String>, StoreError> {
        let resolved = self.resolve(target, platform)?;
        let chain = resolved.chain_ids();
        let lease = self.lease(None)?;
        let mut parent: Option<String> = None;
        for ((desc, diff_id), chain_id) in resolved.layers.iter().zip(&chain) {
            lease.add(&Resource::Snapshot(chain_id.clone()))?;
            let committed =
                matches!(snapshotter.stat(chain_id), Ok(i) if i.kind == Kind::Committed);
            if !committed {
                let digest = desc.digest().to_string().parse()?;
                let blob = self.content.open(&digest).map_err(|e| match e {
                    crate::content::ContentError::NotFound(_) => StoreError::MissingBlob {
                        what: "layer",
                        digest: digest.to_string(),
                        parent: resolved.manifest_desc.digest.clone(),
                    },
                    e => e.into(),
                })?;
                let name = digest.to_string();
                let total = desc.size();
                on_layer(&name, LayerEvent::Extracting { done: 0, total });
                let mut report =
                    |done, total| on_layer(&name, LayerEvent::Extracting { done, total });
                let counted = Counting {
                    inner: blob,
                    done: 0,
                    total,
                    step: (total / 40).max(256 << 10),
                    last: 0,
                    report: &mut report,
                };
                snapshotter.unpack_layer(
                    "",
                    parent.as_deref(),
                    chain_id,
                    BufReader::with_capacity(1 << 20, counted),
                    &ApplyOptions {
                        compute_diff_id: true,
                        ..opts.clone()
                    },
                    Some(diff_id),
                )?;
                on_layer(&name, LayerEvent::Done);
            }
            parent = Some(chain_id.clone());
        }
        lease.release()?;
        Ok(parent)
    }

    /// `docker commit`: writes the changes of the active snapshot `key`
    /// (a container made from `base`) as a new uncompressed layer on top of
    /// `base`'s layers, with `base`'s config extended by that layer and a
    /// history entry, and records it as a new image.
    pub fn commit_container(
        &self,
        snapshotter: &Snapshotter,
        key: &str,
        base: &Target,
        platform: &Platform,
        opts: &CommitOptions,
    ) -> Result<Image, StoreError> {
        let resolved = self.resolve(base, platform)?;
        let lease = self.lease(None)?;
        let wref = format!("commit-{}", lease.id());
        let mut w = self.content.writer(&wref, None)?;
        let diff = snapshotter.write_diff(key, &mut w)?;
        let digest = w.digest();
        let size = w.offset();
        lease.add(&Resource::Content(digest.clone()))?;
        w.commit(&digest, size)?;
        if digest.to_string() != diff.diff_id {
            return Err(StoreError::Invalid {
                what: "committed layer",
                digest,
                reason: format!("the snapshotter reported diff_id {}", diff.diff_id),
            });
        }

        let mut config: serde_json::Value =
            serde_json::from_slice(&resolved.config_raw).map_err(|e| StoreError::Invalid {
                what: "image config",
                digest: resolved.config_digest.clone(),
                reason: e.to_string(),
            })?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        config["created"] = now.clone().into();
        if let Some(c) = &opts.config {
            config["config"] = c.clone();
        }
        if let Some((id, cc)) = &opts.container {
            config["container"] = id.clone().into();
            config["container_config"] = cc.clone();
        }
        if let Some(a) = &opts.author {
            config["author"] = a.clone().into();
        }
        let diff_ids = config
            .pointer_mut("/rootfs/diff_ids")
            .and_then(|v| v.as_array_mut())
            .ok_or_else(|| StoreError::Invalid {
                what: "image config",
                digest: resolved.config_digest.clone(),
                reason: "no rootfs.diff_ids".into(),
            })?;
        diff_ids.push(diff.diff_id.clone().into());
        let mut entry = serde_json::json!({"created": now, "created_by": "berth commit"});
        if let Some(c) = &opts.comment {
            entry["comment"] = c.clone().into();
        }
        if let Some(a) = &opts.author {
            entry["author"] = a.clone().into();
        }
        match config.get_mut("history").and_then(|h| h.as_array_mut()) {
            Some(h) => h.push(entry),
            None => config["history"] = serde_json::json!([entry]),
        }
        let config_bytes = super::encode(&config);
        let config_digest = lease.put_bytes(&config_bytes)?;
        let mut layers: Vec<(crate::content::Digest, u64, &str)> = Vec::new();
        for (d, _) in &resolved.layers {
            layers.push((
                d.digest().to_string().parse()?,
                d.size(),
                d.media_type().as_ref(),
            ));
        }
        layers.push((digest, size, crate::media::OCI_LAYER));
        let target = lease.write_manifest(&config_digest, config_bytes.len() as u64, &layers)?;
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| config_digest.to_string());
        let img = self.put(&name, target)?;
        lease.release()?;
        Ok(img)
    }

    /// Removes committed snapshots that no image (for `platform`) needs, no
    /// live lease holds, and that are not the parent of a snapshot kept
    /// (containers' active snapshots and views are always kept). Returns the
    /// keys removed, or that would be removed on a dry run.
    pub fn gc_snapshots(
        &self,
        snapshotter: &Snapshotter,
        platform: &Platform,
        dry_run: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut keep: BTreeSet<String> = self.snapshot_roots(platform)?;
        for (lease, res) in self.leases()? {
            if lease.alive() {
                keep.extend(res.into_iter().filter_map(|r| match r {
                    Resource::Snapshot(k) => Some(k),
                    _ => None,
                }));
            }
        }
        let all = snapshotter.list()?;
        for s in &all {
            if s.kind != Kind::Committed {
                keep.insert(s.name.clone());
            }
        }
        // Parents of what is kept are kept.
        let parent_of: std::collections::BTreeMap<&str, Option<&str>> = all
            .iter()
            .map(|s| (s.name.as_str(), s.parent.as_deref()))
            .collect();
        let mut todo: Vec<String> = keep.iter().cloned().collect();
        while let Some(k) = todo.pop() {
            if let Some(Some(p)) = parent_of.get(k.as_str())
                && keep.insert((*p).to_owned())
            {
                todo.push((*p).to_owned());
            }
        }
        // Remove children before parents: repeat until nothing more goes.
        let mut removed = Vec::new();
        let mut left: Vec<&crate::snapshot::Info> =
            all.iter().filter(|s| !keep.contains(&s.name)).collect();
        if dry_run {
            return Ok(left.iter().map(|s| s.name.clone()).collect());
        }
        loop {
            let before = left.len();
            let names: BTreeSet<&str> = left.iter().map(|s| s.name.as_str()).collect();
            let (leaves, rest): (Vec<_>, Vec<_>) = left.into_iter().partition(|s| {
                !all.iter().any(|c| {
                    c.parent.as_deref() == Some(s.name.as_str()) && names.contains(c.name.as_str())
                })
            });
            for s in leaves {
                snapshotter.remove(&s.name)?;
                removed.push(s.name.clone());
            }
            left = rest;
            if left.is_empty() || left.len() == before {
                break;
            }
        }
        Ok(removed)
    }
}
