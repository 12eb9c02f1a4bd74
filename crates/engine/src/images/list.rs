//! `docker images`: filters over the image list.

use std::collections::BTreeMap;

use super::{ImageEntry, ImageService};
use crate::error::EngineError;

/// Filters as Docker sends them: key → values (both of Docker's JSON
/// encodings decode to this).
pub type Filters = BTreeMap<String, Vec<String>>;

/// `GET /images/json`.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Show intermediate images too (berth has none).
    pub all: bool,
    /// `dangling`, `reference`, `label`, `before`, `since`.
    pub filters: Filters,
}

const LIST_FILTERS: [&str; 5] = ["dangling", "reference", "label", "before", "since"];

impl ImageService {
    /// The images `req` selects, newest first. With a `reference` filter
    /// only the matching tags are kept in each entry.
    pub fn list(&self, req: &ListRequest) -> Result<Vec<ImageEntry>, EngineError> {
        check_keys(&req.filters, &LIST_FILTERS)?;
        let entries = self.entries()?;
        let dangling = bool_filter(&req.filters, "dangling")?;
        let before = self.time_bound(&entries, &req.filters, "before")?;
        let since = self.time_bound(&entries, &req.filters, "since")?;
        let refs = req.filters.get("reference").cloned().unwrap_or_default();
        let labels = req.filters.get("label").cloned().unwrap_or_default();
        let mut out = Vec::new();
        for mut e in entries.iter().cloned() {
            if let Some(d) = dangling
                && e.dangling() != d
            {
                continue;
            }
            if let Some(b) = before
                && e.created_unix() >= b
            {
                continue;
            }
            if let Some(s) = since
                && e.created_unix() <= s
            {
                continue;
            }
            if !labels_match(&e.labels(), &labels) {
                continue;
            }
            if !refs.is_empty() {
                e.records.retain(|(_, n)| match n.reference() {
                    Some(r) => refs.iter().any(|p| reference_matches(p, r)),
                    None => false,
                });
                if e.records.is_empty() {
                    continue;
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    fn time_bound(
        &self,
        entries: &[ImageEntry],
        filters: &Filters,
        key: &str,
    ) -> Result<Option<i64>, EngineError> {
        let Some(values) = filters.get(key) else {
            return Ok(None);
        };
        let mut bound = None;
        for v in values {
            let (e, _) = self.find(entries, v)?;
            bound = Some(e.created_unix());
        }
        Ok(bound)
    }
}

/// Refuses filter keys not in `allowed`, with Docker's text.
pub(crate) fn check_keys(filters: &Filters, allowed: &[&str]) -> Result<(), EngineError> {
    for k in filters.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid filter '{k}'"
            )));
        }
    }
    Ok(())
}

/// A boolean filter (`dangling=true`); None when absent.
pub(crate) fn bool_filter(filters: &Filters, key: &str) -> Result<Option<bool>, EngineError> {
    let Some(values) = filters.get(key) else {
        return Ok(None);
    };
    let mut out = None;
    for v in values {
        let b = match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter '{key}={v}'"
                )));
            }
        };
        out = Some(b);
    }
    Ok(out)
}

/// `label=key` or `label=key=value` filters: all must hold.
pub(crate) fn labels_match(labels: &BTreeMap<String, String>, wanted: &[String]) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(w.as_str()),
    })
}

/// Docker's `reference` filter: the pattern is matched (as a path glob)
/// against the familiar name with and without the tag, and the full name.
fn reference_matches(pattern: &str, r: &berth_image::reference::Reference) -> bool {
    let fam = r.familiar();
    let repo = match (fam.rsplit_once(':'), r.tag()) {
        (Some((n, t)), Some(tag)) if t == tag && r.digest().is_none() => n.to_owned(),
        _ => fam.split('@').next().unwrap_or(&fam).to_owned(),
    };
    [
        fam.as_str(),
        repo.as_str(),
        r.name().as_str(),
        r.to_string().as_str(),
    ]
    .iter()
    .any(|c| glob(pattern.as_bytes(), c.as_bytes()))
}

/// `path.Match`-style glob: `*` and `?` do not cross `/`; `[...]` classes
/// are not supported (taken literally).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(b'*'), _) => {
            if glob(&p[1..], s) {
                return true;
            }
            match s.first() {
                Some(c) if *c != b'/' => glob(p, &s[1..]),
                _ => false,
            }
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"busy*", b"busybox:latest"));
        assert!(glob(b"busybox", b"busybox"));
        assert!(!glob(b"busy*", b"me/busybox"));
        assert!(glob(b"*/app:?", b"me/app:1"));
        assert!(!glob(b"*", b"a/b"));
    }

    #[test]
    fn references() {
        let r = berth_image::reference::Reference::parse_normalized("busybox:1.36").unwrap();
        assert!(reference_matches("busybox", &r));
        assert!(reference_matches("busybox:1.*", &r));
        assert!(!reference_matches("alpine", &r));
        let r = berth_image::reference::Reference::parse_normalized("me/app").unwrap();
        assert!(reference_matches("me/*", &r));
    }

    #[test]
    fn label_filters() {
        let l = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        assert!(labels_match(&l, &["a".into()]));
        assert!(labels_match(&l, &["a=1".into()]));
        assert!(!labels_match(&l, &["a=2".into()]));
        assert!(!labels_match(&l, &["b".into()]));
    }
}
