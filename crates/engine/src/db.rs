//! What the engine's redb tables share: errors, and reading a whole table
//! of JSON values.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use crate::error::EngineError;

/// A redb error, with what was being done.
pub(crate) fn db_err(context: &str, e: impl Into<redb::Error>) -> EngineError {
    EngineError::Db {
        context: context.to_owned(),
        source: e.into(),
    }
}

/// Every value of `table` (JSON, keyed by name or id), in key order. A
/// value that does not parse is skipped with a warning naming its key:
/// one bad `what` record does not hide the others.
pub(crate) fn read_all<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    what: &str,
) -> Result<Vec<T>, EngineError> {
    let tx = db.begin_read().map_err(|e| db_err("begin", e))?;
    let t = tx
        .open_table(table)
        .map_err(|e| db_err(&format!("open {what}s"), e))?;
    let mut out = Vec::new();
    for item in t.iter().map_err(|e| db_err(&format!("list {what}s"), e))? {
        let (k, v) = item.map_err(|e| db_err(&format!("read {what}"), e))?;
        match serde_json::from_slice::<T>(v.value()) {
            Ok(x) => out.push(x),
            Err(e) => tracing::warn!(key = k.value(), error = %e, "unreadable {what} record"),
        }
    }
    Ok(out)
}
