//! The `filters` query parameter: `{"k":{"v":true}}` (the docker CLI) and
//! `{"k":["v"]}` (docker-py, bollard) both decode to key → values.

use std::collections::BTreeMap;

use crate::error::ApiError;

/// Filters by key.
pub type Filters = BTreeMap<String, Vec<String>>;

/// Parses a filters parameter; "" is no filter.
pub fn parse(raw: &str) -> Result<Filters, ApiError> {
    let mut out = Filters::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    let bad = |why: String| ApiError::bad_request(format!("invalid filter: {why}"));
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad(format!("{raw} is not a JSON object")))?;
    for (k, vals) in obj {
        let list = out.entry(k.clone()).or_default();
        match vals {
            serde_json::Value::Object(m) => {
                for (val, on) in m {
                    if on.as_bool() != Some(false) {
                        list.push(val.clone());
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for val in a {
                    match val.as_str() {
                        Some(s) => list.push(s.to_owned()),
                        None => return Err(bad(format!("{k}: {val} is not a string"))),
                    }
                }
            }
            serde_json::Value::String(s) => list.push(s.clone()),
            other => return Err(bad(format!("{k}: unexpected {other}"))),
        }
    }
    Ok(out)
}

/// The filters of the prune endpoints: `until`, `label`, `label!`.
#[derive(Debug, Clone, Default)]
pub struct PruneFilters {
    until: Option<f64>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl PruneFilters {
    /// Checks the keys (only those three) and reads the values.
    pub fn parse(f: &Filters) -> Result<PruneFilters, ApiError> {
        for k in f.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "until") {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
        }
        Ok(PruneFilters {
            until: f
                .get("until")
                .and_then(|v| v.first())
                .map(|u| crate::routes::containers::parse_time(u))
                .transpose()?,
            labels: f.get("label").cloned().unwrap_or_default(),
            not_labels: f.get("label!").cloned().unwrap_or_default(),
        })
    }

    /// Whether an object created at `created` (Unix seconds) with `labels`
    /// is kept out of the prune.
    pub fn keeps(&self, created: f64, labels: &BTreeMap<String, String>) -> bool {
        let has = |v: &String| match v.split_once('=') {
            Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
            None => labels.contains_key(v),
        };
        self.until.is_some_and(|u| created >= u)
            || !self.labels.iter().all(has)
            || self.not_labels.iter().any(has)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings() {
        let a = parse(r#"{"dangling":{"true":true},"label":{"a=1":true}}"#).unwrap();
        let b = parse(r#"{"dangling":["true"],"label":["a=1"]}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["dangling"], vec!["true"]);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("[1]").is_err());
        assert!(parse("{").is_err());
    }

    #[test]
    fn prune_filters_keep_by_label_and_time() {
        let f =
            PruneFilters::parse(&parse(r#"{"label":["a=1"],"until":["100"]}"#).unwrap()).unwrap();
        let mut l = BTreeMap::new();
        l.insert("a".to_owned(), "1".to_owned());
        assert!(!f.keeps(50.0, &l));
        assert!(f.keeps(150.0, &l), "newer than until");
        assert!(f.keeps(50.0, &BTreeMap::new()), "label missing");
        assert!(PruneFilters::parse(&parse(r#"{"dangling":["1"]}"#).unwrap()).is_err());
    }
}
