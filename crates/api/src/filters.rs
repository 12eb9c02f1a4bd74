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
}
