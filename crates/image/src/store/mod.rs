//! The image store: names → manifests in redb, blobs in the content store.
//!
//! An image is a *name* (a normalised reference such as
//! `docker.io/library/busybox:latest`, or for an untagged image its id
//! `sha256:<config digest hex>`) pointing at a *target* descriptor: a
//! manifest, or an index of manifests. Everything else — configs, layers,
//! platform manifests — is reached from the target through the content store,
//! so an image record is only written once every blob it reaches is
//! committed: a visible image is always whole.
//!
//! Work in progress (a pull, a load, a commit) holds a [`Lease`] on what it
//! has written so far, so that [`ImageStore::gc`] does not take it away
//! before the image record exists. A lease belongs to the process that took
//! it: once that process is gone (it finished, or it was killed), the lease
//! is dead and what only it held is garbage. Reference counts are not stored:
//! they are derived by the garbage collector's mark phase, which walks from
//! image records and live leases, so a crash can never leave a count wrong.
//!
//! Tables (in the shared `state.redb`):
//!
//! ```text
//! image_records     name → JSON Image
//! image_leases      lease id → JSON Lease
//! image_lease_refs  (lease id, resource) → ()
//! ```

mod error;
mod gc;
mod lease;
mod unpack;
mod walk;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::content::{Digest, LocalStore, Provider};
use crate::reference::Reference;

pub use error::StoreError;
pub use gc::{GcOptions, GcReport};
pub use lease::{Lease, LeaseGuard, Resource};
pub use unpack::{CommitOptions, LayerEvent};
pub use walk::{Platform, Resolved, chain_ids};

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("image_records");
pub(crate) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("image_leases");
pub(crate) const LEASE_REFS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("image_lease_refs");

/// A descriptor as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Media type of the blob (a manifest or an index).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Target {
    /// The target's digest, parsed.
    pub fn digest(&self) -> Result<Digest, StoreError> {
        Ok(self.digest.parse::<Digest>()?)
    }
}

/// An image record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Normalised reference, or `sha256:<hex>` for an untagged image.
    pub name: String,
    /// The manifest or index it points at.
    pub target: Target,
    /// When the record was first written, in nanoseconds since the epoch.
    pub created: i64,
    /// When it last changed.
    pub updated: i64,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Images (names and manifests) over a content store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    content: LocalStore,
    db: Arc<Database>,
}

impl ImageStore {
    /// An image store over `content`, keeping its records in `db` (shared
    /// with the rest of berth's state). Creates its tables.
    pub fn new(content: LocalStore, db: Arc<Database>) -> Result<Self, StoreError> {
        let txn = db
            .begin_write()
            .map_err(|e| StoreError::db("begin write", e))?;
        {
            txn.open_table(IMAGES)
                .map_err(|e| StoreError::db("open image_records", e))?;
            txn.open_table(LEASES)
                .map_err(|e| StoreError::db("open image_leases", e))?;
            txn.open_table(LEASE_REFS)
                .map_err(|e| StoreError::db("open image_lease_refs", e))?;
        }
        txn.commit().map_err(|e| StoreError::db("commit", e))?;
        Ok(ImageStore { content, db })
    }

    /// Opens (or creates) a store laid out under `root` as berthd does:
    /// `root/content/` and `root/state.redb`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root)
            .map_err(|e| StoreError::io(format!("create {}", root.display()), e))?;
        let content = LocalStore::new(root.join("content"))?;
        let path = root.join("state.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::db(format!("open {}", path.display()), e))?;
        Self::new(content, Arc::new(db))
    }

    /// The content store.
    pub fn content(&self) -> &LocalStore {
        &self.content
    }

    /// The shared database.
    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// Creates or moves the image `name` to `target`, after checking that
    /// every blob the target reaches (for the host platform, for an index)
    /// is in the content store. `name` is normalised as Docker does; an id
    /// (`sha256:<hex>`) is kept as is.
    pub fn put(&self, name: &str, target: Target) -> Result<Image, StoreError> {
        self.put_many(&[(name.to_owned(), target)], &BTreeMap::new())
            .map(|mut v| v.remove(0))
    }

    /// Like [`put`](Self::put) for several names at once, in one transaction
    /// (an archive with several tags becomes visible whole or not at all).
    pub fn put_many(
        &self,
        images: &[(String, Target)],
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Image>, StoreError> {
        let mut named = Vec::with_capacity(images.len());
        for (name, target) in images {
            let name = normalize_name(name)?;
            self.check_complete(target)?;
            named.push((name, target.clone()));
        }
        let now = now_nanos();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db("begin write", e))?;
        let mut out = Vec::with_capacity(named.len());
        {
            let mut table = txn
                .open_table(IMAGES)
                .map_err(|e| StoreError::db("open image_records", e))?;
            for (name, target) in named {
                let created = match table
                    .get(name.as_str())
                    .map_err(|e| StoreError::db(format!("read image {name}"), e))?
                {
                    Some(old) => decode_image(&name, old.value())?.created,
                    None => now,
                };
                let img = Image {
                    name: name.clone(),
                    target,
                    created,
                    updated: now,
                    labels: labels.clone(),
                };
                let bytes = encode(&img);
                table
                    .insert(name.as_str(), bytes.as_slice())
                    .map_err(|e| StoreError::db(format!("write image {name}"), e))?;
                out.push(img);
            }
        }
        txn.commit().map_err(|e| StoreError::db("commit", e))?;
        Ok(out)
    }

    /// The image named `name` (normalised first), or an id `sha256:<hex>`.
    pub fn get(&self, name: &str) -> Result<Image, StoreError> {
        let key = normalize_name(name)?;
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db("begin read", e))?;
        let table = txn
            .open_table(IMAGES)
            .map_err(|e| StoreError::db("open image_records", e))?;
        match table
            .get(key.as_str())
            .map_err(|e| StoreError::db(format!("read image {key}"), e))?
        {
            Some(v) => decode_image(&key, v.value()),
            None => Err(StoreError::NoSuchImage(name.to_owned())),
        }
    }

    /// Every image record, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db("begin read", e))?;
        let table = txn
            .open_table(IMAGES)
            .map_err(|e| StoreError::db("open image_records", e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| StoreError::db("list images", e))? {
            let (k, v) = row.map_err(|e| StoreError::db("list images", e))?;
            out.push(decode_image(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Removes the record `name`. Blobs stay until [`gc`](Self::gc).
    pub fn delete(&self, name: &str) -> Result<Image, StoreError> {
        let key = normalize_name(name)?;
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db("begin write", e))?;
        let img = {
            let mut table = txn
                .open_table(IMAGES)
                .map_err(|e| StoreError::db("open image_records", e))?;
            let old = table
                .remove(key.as_str())
                .map_err(|e| StoreError::db(format!("remove image {key}"), e))?;
            match old {
                Some(v) => decode_image(&key, v.value())?,
                None => return Err(StoreError::NoSuchImage(name.to_owned())),
            }
        };
        txn.commit().map_err(|e| StoreError::db("commit", e))?;
        Ok(img)
    }

    /// Reads a whole blob (manifests, indexes, configs: small JSON). Refuses
    /// blobs over 16 MiB, which no such document needs.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        use std::io::Read;
        const MAX: u64 = 16 << 20;
        let info = self.content.info(digest)?;
        if info.size > MAX {
            return Err(StoreError::Invalid {
                what: "json blob",
                digest: digest.clone(),
                reason: format!("{} bytes, more than the {MAX} allowed", info.size),
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0));
        self.content
            .open(digest)?
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io(format!("read blob {digest}"), e))?;
        Ok(buf)
    }
}

/// Normalises an image name: ids (`sha256:<hex>`) as they are, everything
/// else through Docker's reference rules (`busybox` →
/// `docker.io/library/busybox:latest`).
pub fn normalize_name(name: &str) -> Result<String, StoreError> {
    if let Some(hex) = name.strip_prefix("sha256:") {
        let d = Digest::new(crate::content::Algorithm::Sha256, hex)?;
        return Ok(d.to_string());
    }
    Ok(Reference::parse_normalized(name)?.to_string())
}

pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: no maps with non-string
    // keys, no custom serialisers.
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode_image(name: &str, bytes: &[u8]) -> Result<Image, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: "image record",
        key: name.to_owned(),
        reason: e.to_string(),
    })
}
