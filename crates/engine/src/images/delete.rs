//! `docker rmi` and `docker image prune`, with Docker's untag/delete rules.

use std::collections::BTreeSet;

use berth_image::store::GcOptions;

use super::list::{Filters, bool_filter, check_keys, labels_match};
use super::{ImageEntry, ImageName, ImageService, Matched};
use crate::error::EngineError;

/// One line of a delete's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteItem {
    /// A name removed (`busybox:latest`, `busybox@sha256:…`).
    Untagged(String),
    /// An image removed (`sha256:<id>`).
    Deleted(String),
}

/// `POST /images/prune`.
#[derive(Debug, Clone, Default)]
pub struct PruneRequest {
    /// `dangling` (default true), `label`, `label!`, `until`.
    pub filters: Filters,
}

/// What a prune removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Names and images removed.
    pub deleted: Vec<DeleteItem>,
    /// Bytes of content freed.
    pub space_reclaimed: u64,
}

impl ImageService {
    /// `DELETE /images/{name}`. A tag or digest reference is untagged; the
    /// image goes with its last name. An id removes every name and the
    /// image, but only with `force` when the names span several
    /// repositories (Docker's rule).
    pub fn delete(&self, name: &str, force: bool) -> Result<Vec<DeleteItem>, EngineError> {
        let _g = self.lock();
        let entries = self.entries()?;
        let (entry, how) = self.find(&entries, name)?;
        let users = self.users_of(&entry.id);
        let mut out = Vec::new();
        match how {
            Matched::Record(rec) => {
                let left = entry
                    .records
                    .iter()
                    .any(|(r, n)| *r != rec && *n != ImageName::Id);
                if !left && let Some((cid, _)) = users.first() {
                    if !force {
                        return Err(EngineError::Conflict(format!(
                            "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                            &cid[..cid.len().min(12)],
                            short_id(&entry.id)
                        )));
                    }
                    // Forced: the name goes, the image stays for its container.
                    self.ensure_id_record(entry)?;
                }
                self.store.delete(&rec)?;
                out.push(DeleteItem::Untagged(familiar(&rec)));
                if !left && users.is_empty() {
                    self.remove_image(entry, &mut out)?;
                }
            }
            Matched::Id if !users.is_empty() => {
                let (cid, running) = &users[0];
                let cid = &cid[..cid.len().min(12)];
                if *running {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to delete {} (cannot be forced) - image is being used by running container {cid}",
                        short_id(&entry.id)
                    )));
                }
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is being used by stopped container {cid}",
                    short_id(&entry.id)
                )));
            }
            Matched::Id => {
                let repos: BTreeSet<String> = entry
                    .records
                    .iter()
                    .filter_map(|(_, n)| n.reference().map(|r| r.name()))
                    .collect();
                if repos.len() > 1 && !force {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        short_id(&entry.id)
                    )));
                }
                self.remove_image(entry, &mut out)?;
            }
        }
        if let Err(e) = self.store.gc(&GcOptions::default()) {
            tracing::warn!(error = %e, "garbage collection after image delete failed");
        }
        Ok(out)
    }

    /// Removes every record of `entry`: names first (reported as
    /// untagged), then the id record.
    fn remove_image(
        &self,
        entry: &ImageEntry,
        out: &mut Vec<DeleteItem>,
    ) -> Result<(), EngineError> {
        for (rec, n) in &entry.records {
            if *n == ImageName::Id {
                continue;
            }
            match self.store.delete(rec) {
                Ok(_) => {
                    let item = DeleteItem::Untagged(familiar(rec));
                    if !out.contains(&item) {
                        out.push(item);
                    }
                }
                Err(berth_image::store::StoreError::NoSuchImage(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (rec, n) in &entry.records {
            if *n == ImageName::Id {
                match self.store.delete(rec) {
                    Ok(_) | Err(berth_image::store::StoreError::NoSuchImage(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        out.push(DeleteItem::Deleted(entry.id.clone()));
        Ok(())
    }

    /// `POST /images/prune`: removes dangling images (every image with
    /// `dangling=false`), then collects garbage.
    pub fn prune(&self, req: &PruneRequest) -> Result<PruneReport, EngineError> {
        check_keys(&req.filters, &["dangling", "label", "label!", "until"])?;
        let only_dangling = bool_filter(&req.filters, "dangling")?.unwrap_or(true);
        let labels = req.filters.get("label").cloned().unwrap_or_default();
        let not_labels = req.filters.get("label!").cloned().unwrap_or_default();
        let until = match req.filters.get("until").and_then(|v| v.last()) {
            Some(u) => Some(parse_until(u)?),
            None => None,
        };
        let _g = self.lock();
        let entries = self.entries()?;
        let mut report = PruneReport::default();
        for e in &entries {
            if only_dangling && !e.dangling() {
                continue;
            }
            if !self.users_of(&e.id).is_empty() {
                continue;
            }
            let l = e.labels();
            if !labels_match(&l, &labels) {
                continue;
            }
            if !not_labels.is_empty()
                && not_labels
                    .iter()
                    .any(|n| labels_match(&l, std::slice::from_ref(n)))
            {
                continue;
            }
            if let Some(u) = until
                && e.created_unix() >= u
            {
                continue;
            }
            self.remove_image(e, &mut report.deleted)?;
        }
        let gc = self.store.gc(&GcOptions::default())?;
        report.space_reclaimed = gc.bytes;
        Ok(report)
    }
}

/// The familiar form of a record name.
fn familiar(rec: &str) -> String {
    berth_image::reference::Reference::parse_normalized(rec)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| rec.to_owned())
}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub(crate) fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

/// `until` as Docker takes it: a Unix timestamp, an RFC 3339 time, or a
/// duration before now (`24h`, `90m`, `10s`).
fn parse_until(s: &str) -> Result<i64, EngineError> {
    let now = chrono::Utc::now().timestamp();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(f) = s.parse::<f64>() {
        // Seconds, possibly with a fraction; truncation is intended.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(f as i64);
    }
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| EngineError::InvalidArgument(format!("invalid until filter {s:?}")))?;
        num.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid until filter {s:?}"
                )));
            }
        };
    }
    if !num.is_empty() {
        return Err(EngineError::InvalidArgument(format!(
            "invalid until filter {s:?}"
        )));
    }
    Ok(now - total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_forms() {
        assert_eq!(parse_until("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_until("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        let now = chrono::Utc::now().timestamp();
        let t = parse_until("1h30m").unwrap();
        assert!((now - 5400 - t).abs() <= 2);
        assert!(parse_until("1x").is_err());
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
