//! Snapshot records in the shared redb database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, TableDefinition};

use super::{Backend, Info, Kind, Labels, SnapshotError};

/// key → JSON [`Record`].
pub(super) const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot_records");
/// `next_id` → u64; `backend` → 0 (overlay) / 1 (copy).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("snapshot_meta");

/// A snapshot as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Record {
    /// Directory `<root>/snapshots/<id>`.
    pub id: u64,
    pub kind: Kind,
    pub parent: Option<String>,
    pub labels: Labels,
    /// Nanoseconds since the epoch.
    pub created: u64,
}

impl Record {
    pub fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_string(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created: UNIX_EPOCH + Duration::from_nanos(self.created),
        }
    }
}

pub(super) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<Record, SnapshotError> {
    serde_json::from_slice(bytes).map_err(|source| SnapshotError::Record {
        key: key.to_string(),
        source,
    })
}

pub(super) fn encode(key: &str, r: &Record) -> Result<Vec<u8>, SnapshotError> {
    serde_json::to_vec(r).map_err(|source| SnapshotError::Record {
        key: key.to_string(),
        source,
    })
}

/// The record of `key` in an open table.
pub(super) fn get(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Record>, SnapshotError> {
    match table
        .get(key)
        .map_err(|e| SnapshotError::db(format!("read {key}"), e))?
    {
        Some(v) => Ok(Some(decode(key, v.value())?)),
        None => Ok(None),
    }
}

/// Every record, by key.
pub(super) fn all(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, Record)>, SnapshotError> {
    let mut out = Vec::new();
    for item in table
        .iter()
        .map_err(|e| SnapshotError::db("list records", e))?
    {
        let (k, v) = item.map_err(|e| SnapshotError::db("list records", e))?;
        let key = k.value().to_string();
        let rec = decode(&key, v.value())?;
        out.push((key, rec));
    }
    Ok(out)
}

pub(super) fn backend_code(b: Backend) -> u64 {
    match b {
        Backend::Overlay => 0,
        Backend::Copy => 1,
    }
}

pub(super) fn backend_of(code: u64) -> Option<Backend> {
    match code {
        0 => Some(Backend::Overlay),
        1 => Some(Backend::Copy),
        _ => None,
    }
}
