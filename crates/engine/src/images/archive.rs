//! `docker load`, `docker save` and `docker import` over the image
//! library's archives, keeping the id-record rule.

use std::collections::HashMap;
use std::io::{Read, Write};

use berth_image::archive::{self, ImportOptions, LoadOptions};
use berth_image::store::Platform;

use super::{ImageName, ImageService, Matched, apply_changes, tag_name};
use crate::error::EngineError;

/// What a load did, one line per event, as dockerd words them.
#[derive(Debug, Clone, Default)]
pub struct LoadOutcome {
    /// `Loaded image: busybox:latest`, `Loaded image ID: sha256:…`, …
    pub messages: Vec<String>,
}

/// `POST /images/create?fromSrc=-`.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    /// Repository, possibly with a tag (`me/app:1`); empty for untagged.
    pub repo: String,
    /// Tag, replacing one in `repo`.
    pub tag: String,
    /// History comment.
    pub message: Option<String>,
    /// Dockerfile instructions (`CMD …`, `ENV …`).
    pub changes: Vec<String>,
    /// `os/arch[/variant]` to record; the host's if None.
    pub platform: Option<String>,
}

impl ImageService {
    /// Loads a `docker save` or OCI archive from `reader`.
    pub fn load(&self, reader: impl Read) -> Result<LoadOutcome, EngineError> {
        // Which image each tag named before, to report tags that move.
        let before: HashMap<String, String> = self
            .entries()?
            .into_iter()
            .flat_map(|e| {
                let id = e.id.clone();
                e.records
                    .into_iter()
                    .filter(|(_, n)| matches!(n, ImageName::Tag(_)))
                    .map(move |(r, _)| (r, id.clone()))
            })
            .collect();
        let report = archive::load(&self.store, reader, &LoadOptions::default())?;
        let _g = self.lock();
        let mut out = LoadOutcome::default();
        for img in &report.images {
            let resolved = self.resolve(&img.target)?;
            let id = resolved.config_digest.to_string();
            if self.store.get(&id).is_err() {
                self.store.put(&id, img.target.clone())?;
            }
            match ImageName::of(&img.name) {
                ImageName::Tag(r) | ImageName::Digest(r) => {
                    if let Some(old) = before.get(&img.name).filter(|o| **o != id) {
                        out.messages.push(format!(
                            "The image {} already exists, renaming the old one with ID {old} to empty string",
                            r.familiar()
                        ));
                    }
                    out.messages.push(format!("Loaded image: {}", r.familiar()));
                }
                ImageName::Id => out.messages.push(format!("Loaded image ID: {id}")),
            }
        }
        Ok(out)
    }

    /// Checks the names for a save and returns the store records to write:
    /// a tag as given, an id as the id record (so the archive has no tag
    /// for it, as with Docker).
    pub fn save_records(&self, names: &[String]) -> Result<Vec<String>, EngineError> {
        if names.is_empty() {
            return Err(EngineError::InvalidArgument(
                "no image names given to save".into(),
            ));
        }
        let _g = self.lock();
        let entries = self.entries()?;
        let mut out = Vec::new();
        for n in names {
            let (e, how) = self.find(&entries, n)?;
            let rec = match how {
                Matched::Record(r) => r,
                Matched::Id => {
                    self.ensure_id_record(e)?;
                    e.id.clone()
                }
            };
            if !out.contains(&rec) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Writes the records (from [`save_records`](Self::save_records)) as
    /// one archive.
    pub fn save(&self, records: &[String], out: impl Write) -> Result<(), EngineError> {
        let names: Vec<&str> = records.iter().map(String::as_str).collect();
        archive::save(&self.store, &names, &self.platform, out)?;
        Ok(())
    }

    /// Imports a root filesystem tarball as a one-layer image; returns its
    /// id.
    pub fn import(&self, req: &ImportRequest, reader: impl Read) -> Result<String, EngineError> {
        let name = if req.repo.is_empty() {
            if !req.tag.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "a tag needs a repository".into(),
                ));
            }
            None
        } else {
            Some(tag_name(&req.repo, &req.tag)?.to_string())
        };
        let mut config = serde_json::Value::Null;
        apply_changes(&mut config, &req.changes)?;
        let platform = match req.platform.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(Platform::parse(p).ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "invalid platform {p:?}: want os/arch[/variant]"
                ))
            })?),
            None => None,
        };
        let opts = ImportOptions {
            name,
            platform,
            config: Some(config),
            message: req.message.clone().filter(|m| !m.is_empty()),
        };
        let img = archive::import(&self.store, reader, &opts)?;
        let _g = self.lock();
        let resolved = self.resolve(&img.target)?;
        let id = resolved.config_digest.to_string();
        if self.store.get(&id).is_err() {
            self.store.put(&id, img.target.clone())?;
        }
        Ok(id)
    }
}
