//! Images as Docker shows them: records of the image store grouped by
//! image id (the config digest), looked up by tag, id, short id or
//! `name@digest`.
//!
//! Every image the engine writes has an *id record* (`sha256:<config hex>`)
//! beside its tags. A tag that moves to another image (a `tag`, a `load`, an
//! `import` with the same name) therefore leaves the old image behind as
//! dangling, as Docker does, instead of handing it to the garbage collector;
//! `rmi` of an image's last tag removes the id record too.

mod archive;
pub(crate) mod changes;
mod delete;
mod list;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_image::reference::Reference;
use berth_image::store::{Image, ImageStore, Platform, Resolved, Target};

use crate::error::EngineError;

pub use archive::{ImportRequest, LoadOutcome};
pub use changes::apply_changes;
pub use delete::{DeleteItem, PruneReport, PruneRequest};
pub use list::{Filters, ListRequest};

/// What a record's name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageName {
    /// `docker.io/library/busybox:latest`.
    Tag(Reference),
    /// `docker.io/library/busybox@sha256:…`.
    Digest(Reference),
    /// `sha256:<config hex>`: the image's id record.
    Id,
}

impl ImageName {
    fn of(record: &str) -> ImageName {
        if record.starts_with("sha256:") {
            return ImageName::Id;
        }
        match Reference::parse_normalized(record) {
            Ok(r) if r.digest().is_some() => ImageName::Digest(r),
            Ok(r) => ImageName::Tag(r),
            Err(_) => ImageName::Id,
        }
    }

    fn reference(&self) -> Option<&Reference> {
        match self {
            ImageName::Tag(r) | ImageName::Digest(r) => Some(r),
            ImageName::Id => None,
        }
    }
}

/// One history entry of an image, newest last (as in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// RFC 3339 creation time, if the config has one.
    pub created: Option<String>,
    /// The command that made the step.
    pub created_by: String,
    /// The step's comment.
    pub comment: String,
    /// Whether the step made no layer.
    pub empty_layer: bool,
    /// Size of the step's layer (0 for empty steps).
    pub size: u64,
}

/// An image: a config digest and every record that leads to it.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// `sha256:<config hex>`.
    pub id: String,
    /// The store records (normalised names) that lead to this image.
    pub records: Vec<(String, ImageName)>,
    /// The target the image's records point at (the id record's if any).
    pub target: Target,
    /// The image resolved for the host platform.
    pub resolved: Arc<Resolved>,
    /// The config as JSON (for fields the typed config lacks).
    pub config_json: serde_json::Value,
    /// When the first record of this image was written (nanoseconds).
    pub record_created: i64,
    /// When a record last changed (nanoseconds).
    pub record_updated: i64,
}

impl ImageEntry {
    /// `busybox:latest`, … as Docker shows tags, sorted.
    pub fn repo_tags(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .records
            .iter()
            .filter_map(|(_, n)| match n {
                ImageName::Tag(r) => Some(r.familiar()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// `busybox@sha256:…` for every digest record, sorted.
    pub fn repo_digests(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .records
            .iter()
            .filter_map(|(_, n)| match n {
                ImageName::Digest(r) => Some(familiar_repo_digest(r)),
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether no tag or digest names the image.
    pub fn dangling(&self) -> bool {
        self.records.iter().all(|(_, n)| *n == ImageName::Id)
    }

    /// The config's `created`, parsed.
    pub fn created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.config_json
            .get("created")
            .and_then(|c| c.as_str())
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// Unix seconds of the config's `created`, 0 if it has none.
    pub fn created_unix(&self) -> i64 {
        self.created().map(|t| t.timestamp()).unwrap_or(0)
    }

    /// Sum of the layer sizes.
    pub fn size(&self) -> u64 {
        self.resolved.layers.iter().map(|(d, _)| d.size()).sum()
    }

    /// The config's `config.Labels`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config_json
            .pointer("/config/Labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default()
    }

    /// A string field of the config (`architecture`, `os`, `author`, …).
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config_json.get(key).and_then(|v| v.as_str())
    }

    /// The layers' diffIDs, bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.resolved
            .layers
            .iter()
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// The history, oldest first, with each step's layer size.
    pub fn history(&self) -> Vec<HistoryEntry> {
        let mut sizes = self.resolved.layers.iter().map(|(d, _)| d.size());
        let raw = self
            .config_json
            .get("history")
            .and_then(|h| h.as_array())
            .cloned()
            .unwrap_or_default();
        let s = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        raw.iter()
            .map(|h| {
                let empty = h
                    .get("empty_layer")
                    .and_then(|e| e.as_bool())
                    .unwrap_or(false);
                HistoryEntry {
                    created: h.get("created").and_then(|c| c.as_str()).map(str::to_owned),
                    created_by: s(h, "created_by"),
                    comment: s(h, "comment"),
                    empty_layer: empty,
                    size: if empty { 0 } else { sizes.next().unwrap_or(0) },
                }
            })
            .collect()
    }

    /// The record name to hand to the image library for this image: its id
    /// record if it has one.
    fn id_record(&self) -> Option<&str> {
        self.records
            .iter()
            .find(|(_, n)| *n == ImageName::Id)
            .map(|(r, _)| r.as_str())
    }
}

/// `busybox@sha256:…`.
fn familiar_repo_digest(r: &Reference) -> String {
    let fam = r.familiar();
    // familiar() is `name[:tag][@digest]`; keep the name and the digest.
    let name = fam.split('@').next().unwrap_or(&fam);
    let name = match (name.rsplit_once(':'), r.tag()) {
        (Some((n, t)), Some(tag)) if t == tag => n,
        _ => name,
    };
    format!("{name}@{}", r.digest().unwrap_or_default())
}

/// How a lookup matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matched {
    /// By this record name (a tag or a digest reference).
    Record(String),
    /// By id (full or short).
    Id,
}

/// The images of the engine.
#[derive(Debug)]
pub struct ImageService {
    store: ImageStore,
    platform: Platform,
    /// Resolved images by target digest: content is immutable, so this
    /// never goes stale.
    cache: Mutex<HashMap<String, Arc<Resolved>>>,
    /// Serialises changes to names (tag, delete, prune, the end of a load)
    /// so that the id-record rule holds.
    names: Mutex<()>,
    /// The containers made from an image id (`(container id, running)`),
    /// which delete and prune must respect.
    users: std::sync::OnceLock<Users>,
    /// See `EngineConfig::loopback_registries_only`.
    pub loopback_registries_only: bool,
}

/// The container lookup, wrapped so the service stays `Debug`.
struct Users(UsersFn);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Users")
    }
}

/// See [`ImageService::set_users`].
pub type UsersFn = Box<dyn Fn(&str) -> Vec<(String, bool)> + Send + Sync>;

impl ImageService {
    /// Images over `store`, resolved for the host platform.
    pub fn new(store: ImageStore) -> Self {
        ImageService {
            store,
            platform: Platform::host(),
            cache: Mutex::new(HashMap::new()),
            names: Mutex::new(()),
            users: std::sync::OnceLock::new(),
            loopback_registries_only: false,
        }
    }

    /// Tells the images which containers use an image id (set once).
    pub fn set_users(&self, f: UsersFn) {
        let _ = self.users.set(Users(f));
    }

    pub(crate) fn users_of(&self, image_id: &str) -> Vec<(String, bool)> {
        self.users
            .get()
            .map(|f| (f.0)(image_id))
            .unwrap_or_default()
    }

    /// The image store underneath.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resolve(&self, target: &Target) -> Result<Arc<Resolved>, EngineError> {
        if let Some(r) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&target.digest)
        {
            return Ok(r.clone());
        }
        let r = Arc::new(self.store.resolve(target, &self.platform)?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.digest.clone(), r.clone());
        Ok(r)
    }

    /// Every image, newest first. Records that do not resolve for this
    /// platform are left out (and logged).
    pub fn entries(&self) -> Result<Vec<ImageEntry>, EngineError> {
        let mut by_id: BTreeMap<String, ImageEntry> = BTreeMap::new();
        for img in self.store.list()? {
            let resolved = match self.resolve(&img.target) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(image = %img.name, error = %e, "image does not resolve; not listed");
                    continue;
                }
            };
            self.add_record(&mut by_id, img, resolved);
        }
        let mut v: Vec<ImageEntry> = by_id.into_values().collect();
        v.sort_by(|a, b| {
            b.created_unix()
                .cmp(&a.created_unix())
                .then(b.record_created.cmp(&a.record_created))
        });
        Ok(v)
    }

    fn add_record(
        &self,
        by_id: &mut BTreeMap<String, ImageEntry>,
        img: Image,
        resolved: Arc<Resolved>,
    ) {
        let id = resolved.config_digest.to_string();
        let name = ImageName::of(&img.name);
        let is_id = name == ImageName::Id;
        let e = by_id.entry(id.clone()).or_insert_with(|| ImageEntry {
            id,
            records: Vec::new(),
            target: img.target.clone(),
            config_json: serde_json::from_slice(&resolved.config_raw)
                .unwrap_or(serde_json::Value::Null),
            resolved: resolved.clone(),
            record_created: img.created,
            record_updated: img.updated,
        });
        if is_id {
            e.target = img.target.clone();
            e.resolved = resolved;
        }
        e.record_created = e.record_created.min(img.created);
        e.record_updated = e.record_updated.max(img.updated);
        e.records.push((img.name, name));
    }

    /// The image `name` names: a tag (`busybox`, `busybox:1`), a digest
    /// reference (`busybox@sha256:…`, matching the record or the manifest
    /// digest of any image of that repository), a full id (`sha256:…` or
    /// 64 hex) or a unique id prefix.
    pub fn lookup(&self, name: &str) -> Result<ImageEntry, EngineError> {
        let entries = self.entries()?;
        self.find(&entries, name).map(|(e, _)| e.clone())
    }

    pub(crate) fn find<'a>(
        &self,
        entries: &'a [ImageEntry],
        name: &str,
    ) -> Result<(&'a ImageEntry, Matched), EngineError> {
        let not_found = || EngineError::NoSuchImage(name.to_owned());
        if name.is_empty() {
            return Err(not_found());
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex && hex.len() == 64 {
            let id = format!("sha256:{}", hex.to_ascii_lowercase());
            return entries
                .iter()
                .find(|e| e.id == id)
                .map(|e| (e, Matched::Id))
                .ok_or_else(not_found);
        }
        if !name.starts_with("sha256:")
            && let Ok(r) = Reference::parse_normalized(name)
        {
            {
                let key = r.to_string();
                for e in entries {
                    if e.records.iter().any(|(rec, _)| *rec == key) {
                        return Ok((e, Matched::Record(key)));
                    }
                }
                if let Some(d) = r.digest() {
                    let repo = r.name();
                    for e in entries {
                        let same_repo = e
                            .records
                            .iter()
                            .any(|(_, n)| n.reference().map(|x| x.name()) == Some(repo.clone()));
                        let same_digest = e.target.digest == d
                            || e.resolved.manifest_desc.digest == d
                            || e.records.iter().any(|(rec, _)| {
                                self.store.get(rec).is_ok_and(|i| i.target.digest == d)
                            });
                        if same_repo && same_digest {
                            return Ok((e, Matched::Id));
                        }
                    }
                }
                if !is_hex {
                    return Err(EngineError::NoSuchImage(r.familiar()));
                }
            }
        }
        if is_hex {
            let prefix = format!("sha256:{}", hex.to_ascii_lowercase());
            let hits: Vec<&ImageEntry> = entries
                .iter()
                .filter(|e| e.id.starts_with(&prefix))
                .collect();
            return match hits.as_slice() {
                [one] => Ok((one, Matched::Id)),
                [] => Err(not_found()),
                _ => Err(EngineError::InvalidArgument(format!(
                    "image id prefix {name} is ambiguous"
                ))),
            };
        }
        Err(not_found())
    }

    /// Writes `entry`'s id record if it has none.
    fn ensure_id_record(&self, entry: &ImageEntry) -> Result<(), EngineError> {
        if entry.id_record().is_none() {
            self.store.put(&entry.id, entry.target.clone())?;
        }
        Ok(())
    }

    /// `docker tag`: names `source`'s image `repo:tag` (`latest` if tag is
    /// empty). The image the name pointed at before stays, dangling if that
    /// was its last name.
    pub fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<String, EngineError> {
        let _g = self.lock();
        let entries = self.entries()?;
        let (entry, _) = self.find(&entries, source)?;
        let new = tag_name(repo, tag)?;
        let key = new.to_string();
        if let Some(old) = entries
            .iter()
            .find(|e| e.records.iter().any(|(r, _)| *r == key))
            && old.id != entry.id
        {
            self.ensure_id_record(old)?;
        }
        self.ensure_id_record(entry)?;
        self.store.put(&key, entry.target.clone())?;
        Ok(new.familiar())
    }

    /// Refuses `reference`'s registry when only loopback registries may be
    /// reached.
    pub fn check_registry_allowed(&self, reference: &str) -> Result<(), EngineError> {
        self.check_registry(reference)
    }

    fn check_registry(&self, reference: &str) -> Result<(), EngineError> {
        if !self.loopback_registries_only {
            return Ok(());
        }
        let r = Reference::parse_normalized(reference)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        let host = r.domain().rsplit_once(':').map_or(r.domain(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            Ok(())
        } else {
            Err(EngineError::InvalidArgument(format!(
                "registry {} is not on this machine and this daemon only reaches loopback registries (BERTH_LOOPBACK_REGISTRIES_ONLY=1)",
                r.domain()
            )))
        }
    }

    /// `docker pull`: fetches `reference` into the store. The image the
    /// name pointed at before stays, dangling if that was its last name.
    pub fn pull(
        &self,
        client: &berth_registry::client::Client,
        reference: &str,
        opts: &berth_registry::client::PullOptions,
        progress: berth_registry::client::ProgressFn<'_>,
    ) -> Result<berth_registry::client::PullReport, EngineError> {
        self.check_registry(reference)?;
        if let Ok(name) = berth_image::store::normalize_name(reference) {
            let _g = self.lock();
            let entries = self.entries()?;
            if let Some(old) = entries
                .iter()
                .find(|e| e.records.iter().any(|(r, _)| *r == name))
            {
                self.ensure_id_record(old)?;
            }
        }
        Ok(client.pull(&self.store, reference, opts, progress)?)
    }

    /// `docker push`.
    pub fn push(
        &self,
        client: &berth_registry::client::Client,
        reference: &str,
        opts: &berth_registry::client::PushOptions,
        progress: berth_registry::client::ProgressFn<'_>,
    ) -> Result<berth_registry::client::PushReport, EngineError> {
        self.check_registry(reference)?;
        self.lookup(reference)?;
        Ok(client.push(&self.store, reference, opts, progress)?)
    }

    /// The platform images are resolved for.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }
}

/// The reference `repo[:tag]`, validated as `docker tag` wants it.
pub(crate) fn tag_name(repo: &str, tag: &str) -> Result<Reference, EngineError> {
    let invalid = |e: String| EngineError::InvalidArgument(e);
    if repo.is_empty() {
        return Err(invalid(
            "repository name must have at least one component".into(),
        ));
    }
    let parsed = Reference::parse_normalized(repo).map_err(|e| invalid(e.to_string()))?;
    if parsed.digest().is_some() {
        return Err(invalid(
            "refusing to create a tag with a digest reference".into(),
        ));
    }
    let full = if tag.is_empty() {
        repo.to_owned()
    } else {
        // A tag given separately replaces one in repo, as Docker's tag does.
        let base = parsed.name();
        format!("{base}:{tag}")
    };
    let r = Reference::parse_normalized(&full).map_err(|e| invalid(e.to_string()))?;
    let last = r.path().rsplit('/').next().unwrap_or_default();
    if last.len() == 64 && last.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!(
            "invalid repository name ({last}), cannot specify 64-byte hexadecimal strings"
        )));
    }
    Ok(r)
}
