//! Query strings as Docker clients send them: repeated keys
//! (`names=a&names=b`), booleans as `1`/`true`/`True`.

use crate::error::ApiError;
use crate::filters::{self, Filters};

/// The decoded pairs of a query string, in order.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes `raw` (without the `?`).
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key`'s value or "".
    pub fn str(&self, key: &str) -> String {
        self.get(key).unwrap_or_default().to_owned()
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean as moby's `httputils.BoolValue` reads it: anything but
    /// "", "0", "no", "false", "none" is true.
    pub fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            ),
        }
    }

    /// The `filters` parameter, in either JSON encoding.
    pub fn filters(&self) -> Result<Filters, ApiError> {
        filters::parse(self.get("filters").unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_and_bools() {
        let q = Query::parse(Some("names=a&names=b%2Fc&quiet=1&force=False&x="));
        assert_eq!(q.all("names"), vec!["a", "b/c"]);
        assert!(q.bool("quiet"));
        assert!(!q.bool("force"));
        assert!(!q.bool("x"));
        assert!(!q.bool("missing"));
    }
}
