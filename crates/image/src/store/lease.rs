//! Leases: what in-flight work (a pull, a load, a commit) protects from gc.

use std::fmt;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::{ImageStore, LEASE_REFS, LEASES, StoreError, encode, now_nanos};
use crate::content::Digest;

/// A lease record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Unique id.
    pub id: String,
    /// Creation time, nanoseconds since the epoch.
    pub created: i64,
    /// The process that holds it, as (pid, start time in clock ticks since
    /// boot, from `/proc/<pid>/stat`): the lease dies with that process.
    pub owner: Option<(i32, u64)>,
    /// Expiry, nanoseconds since the epoch.
    pub expires: Option<i64>,
}

impl Lease {
    /// Whether the lease still protects its resources: not expired, and its
    /// owner process (if it has one) is still the same running process.
    pub fn alive(&self) -> bool {
        if self.expires.is_some_and(|t| t <= now_nanos()) {
            return false;
        }
        match self.owner {
            None => true,
            Some((pid, start)) => process_start(pid) == Some(start),
        }
    }
}

/// Something a lease protects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// A committed blob.
    Content(Digest),
    /// An ingest in progress, by ref.
    Ingest(String),
    /// A snapshot, by key.
    Snapshot(String),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Content(d) => write!(f, "content/{d}"),
            Resource::Ingest(r) => write!(f, "ingest/{r}"),
            Resource::Snapshot(k) => write!(f, "snapshot/{k}"),
        }
    }
}

impl Resource {
    fn parse(s: &str) -> Option<Resource> {
        let (kind, rest) = s.split_once('/')?;
        match kind {
            "content" => rest.parse().ok().map(Resource::Content),
            "ingest" => Some(Resource::Ingest(rest.to_owned())),
            "snapshot" => Some(Resource::Snapshot(rest.to_owned())),
            _ => None,
        }
    }
}

/// A lease taken by this process; released (deleted with its references)
/// when dropped. A process killed before that leaves a dead lease, which
/// [`ImageStore::gc`] removes.
#[derive(Debug)]
pub struct LeaseGuard {
    store: ImageStore,
    lease: Lease,
    released: bool,
}

impl LeaseGuard {
    /// The lease id.
    pub fn id(&self) -> &str {
        &self.lease.id
    }

    /// Adds `resource` to the lease. Call this *before* the resource can be
    /// seen by gc: before committing a blob, before creating a snapshot.
    pub fn add(&self, resource: &Resource) -> Result<(), StoreError> {
        self.store.lease_add(&self.lease.id, resource)
    }

    /// Stores a small blob (a config, a manifest) under this lease.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        use crate::content::{Ingester, Provider};
        let digest = Digest::of(crate::content::Algorithm::Sha256, bytes);
        let size = bytes.len() as u64;
        self.add(&Resource::Content(digest.clone()))?;
        if self.store.content().exists(&digest)? {
            return Ok(digest);
        }
        let wref = format!("put-{}-{digest}", self.lease.id);
        let mut w = self.store.content().writer(&wref, Some((&digest, size)))?;
        std::io::Write::write_all(&mut w, bytes)
            .map_err(|e| StoreError::io(format!("write blob {digest}"), e))?;
        w.commit(&digest, size)?;
        Ok(digest)
    }

    /// Writes an OCI manifest for a config and layers `(digest, size,
    /// media type)` under this lease.
    pub fn write_manifest(
        &self,
        config: &Digest,
        config_size: u64,
        layers: &[(Digest, u64, &str)],
    ) -> Result<super::Target, StoreError> {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::media::OCI_MANIFEST,
            "config": {"mediaType": crate::media::OCI_CONFIG, "digest": config.to_string(), "size": config_size},
            "layers": layers.iter().map(|(d, s, mt)| serde_json::json!({
                "mediaType": mt, "digest": d.to_string(), "size": s,
            })).collect::<Vec<_>>(),
        });
        let bytes = encode(&manifest);
        let digest = self.put_bytes(&bytes)?;
        Ok(super::Target {
            media_type: crate::media::OCI_MANIFEST.into(),
            digest: digest.to_string(),
            size: bytes.len() as u64,
        })
    }

    /// Deletes the lease now, reporting errors that `drop` would swallow.
    pub fn release(mut self) -> Result<(), StoreError> {
        self.released = true;
        self.store.lease_delete(&self.lease.id)
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.released {
            // Best effort: a lease left behind is dead once this process
            // exits, and gc removes it then.
            let _ = self.store.lease_delete(&self.lease.id);
        }
    }
}

impl ImageStore {
    /// Takes a lease owned by this process, expiring after `ttl` if given.
    pub fn lease(&self, ttl: Option<Duration>) -> Result<LeaseGuard, StoreError> {
        let pid = std::process::id();
        let pid = i32::try_from(pid).unwrap_or(i32::MAX);
        let start = process_start(pid).ok_or_else(|| {
            StoreError::io(
                "read /proc/self/stat",
                std::io::Error::other("no process start time"),
            )
        })?;
        let now = now_nanos();
        let lease = Lease {
            id: format!("{pid}-{now:x}"),
            created: now,
            owner: Some((pid, start)),
            expires: ttl
                .map(|d| now.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))),
        };
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db("begin write", e))?;
        {
            let mut t = txn
                .open_table(LEASES)
                .map_err(|e| StoreError::db("open image_leases", e))?;
            t.insert(lease.id.as_str(), encode(&lease).as_slice())
                .map_err(|e| StoreError::db(format!("write lease {}", lease.id), e))?;
        }
        txn.commit().map_err(|e| StoreError::db("commit", e))?;
        Ok(LeaseGuard {
            store: self.clone(),
            lease,
            released: false,
        })
    }

    /// Adds a resource to lease `id`.
    pub fn lease_add(&self, id: &str, resource: &Resource) -> Result<(), StoreError> {
        let res = resource.to_string();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db("begin write", e))?;
        {
            let leases = txn
                .open_table(LEASES)
                .map_err(|e| StoreError::db("open image_leases", e))?;
            if leases
                .get(id)
                .map_err(|e| StoreError::db(format!("read lease {id}"), e))?
                .is_none()
            {
                return Err(StoreError::NoSuchLease(id.to_owned()));
            }
            let mut refs = txn
                .open_table(LEASE_REFS)
                .map_err(|e| StoreError::db("open image_lease_refs", e))?;
            refs.insert((id, res.as_str()), ())
                .map_err(|e| StoreError::db(format!("add {res} to lease {id}"), e))?;
        }
        txn.commit().map_err(|e| StoreError::db("commit", e))?;
        Ok(())
    }

    /// Deletes lease `id` and its references (nothing if it does not exist).
    pub fn lease_delete(&self, id: &str) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db("begin write", e))?;
        {
            let mut leases = txn
                .open_table(LEASES)
                .map_err(|e| StoreError::db("open image_leases", e))?;
            leases
                .remove(id)
                .map_err(|e| StoreError::db(format!("remove lease {id}"), e))?;
            let mut refs = txn
                .open_table(LEASE_REFS)
                .map_err(|e| StoreError::db("open image_lease_refs", e))?;
            refs.retain_in((id, "")..=(id, "\u{10ffff}"), |_, _| false)
                .map_err(|e| StoreError::db(format!("remove lease {id} refs"), e))?;
        }
        txn.commit().map_err(|e| StoreError::db("commit", e))?;
        Ok(())
    }

    /// Every lease with the resources it holds.
    pub fn leases(&self) -> Result<Vec<(Lease, Vec<Resource>)>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db("begin read", e))?;
        let leases = txn
            .open_table(LEASES)
            .map_err(|e| StoreError::db("open image_leases", e))?;
        let refs = txn
            .open_table(LEASE_REFS)
            .map_err(|e| StoreError::db("open image_lease_refs", e))?;
        let mut out = Vec::new();
        for row in leases
            .iter()
            .map_err(|e| StoreError::db("list leases", e))?
        {
            let (k, v) = row.map_err(|e| StoreError::db("list leases", e))?;
            let id = k.value();
            let lease: Lease =
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    what: "lease",
                    key: id.to_owned(),
                    reason: e.to_string(),
                })?;
            let mut res = Vec::new();
            for r in refs
                .range((id, "")..=(id, "\u{10ffff}"))
                .map_err(|e| StoreError::db(format!("read lease {id}"), e))?
            {
                let (k, _) = r.map_err(|e| StoreError::db(format!("read lease {id}"), e))?;
                if let Some(parsed) = Resource::parse(k.value().1) {
                    res.push(parsed);
                }
            }
            out.push((lease, res));
        }
        Ok(out)
    }
}

/// Start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), or None if there is no such process.
fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read() {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        assert!(process_start(me).is_some());
        assert!(process_start(i32::MAX).is_none());
    }

    #[test]
    fn resource_names_round_trip() {
        let d = Digest::of(crate::content::Algorithm::Sha256, b"x");
        for r in [
            Resource::Content(d),
            Resource::Ingest("load-1/layer".into()),
            Resource::Snapshot("unpack-sha256:ab".into()),
        ] {
            assert_eq!(Resource::parse(&r.to_string()), Some(r));
        }
    }
}
