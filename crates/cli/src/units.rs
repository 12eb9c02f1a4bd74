//! Parsing the values docker's flags take: memory sizes (`64m`), CPU counts
//! (`1.5`), Go durations (`1m30s`), `--since`/`--until` times, filters.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

/// go-units' RAMInBytes: `64m`, `1.5g`, `512k`, `100`, `2GiB`; binary multiples.
pub fn ram_bytes(s: &str) -> Result<i64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid size: '{s}'"))?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mul: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("invalid size: '{s}'"),
    };
    Ok((n * mul) as i64)
}

/// `--cpus 1.5` → NanoCpus 1500000000, computed in decimal (no float error).
pub fn nano_cpus(s: &str) -> Result<i64> {
    let bad = || anyhow::anyhow!("failed to parse {s} as a rational number");
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > 9 && frac[9..].chars().any(|c| c != '0') {
        bail!("value is too precise");
    }
    let i: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut f = frac.chars().take(9).collect::<String>();
    while f.len() < 9 {
        f.push('0');
    }
    let f: i64 = f.parse().map_err(|_| bad())?;
    i.checked_mul(1_000_000_000)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(bad)
}

/// Go's time.ParseDuration, in nanoseconds: `300ms`, `1m30s`, `2h`, `1.5s`.
pub fn go_duration_ns(s: &str) -> Result<i64> {
    let orig = s;
    let mut s = s.trim();
    let neg = s.starts_with('-');
    s = s.trim_start_matches(['-', '+']);
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        bail!("invalid duration \"{orig}\"");
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let n_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| anyhow::anyhow!("missing unit in duration \"{orig}\""))?;
        let n: f64 = s[..n_end]
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid duration \"{orig}\""))?;
        s = &s[n_end..];
        let u_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let mul = match &s[..u_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => bail!("unknown unit \"{u}\" in duration \"{orig}\""),
        };
        total += n * mul;
        s = &s[u_end..];
    }
    let v = total.round() as i64;
    Ok(if neg { -v } else { v })
}

/// `--since`/`--until` as the API wants them (`seconds[.nanos]`): an RFC
/// 3339 time, a date, a unix timestamp, or a duration back from `now`.
pub fn api_timestamp(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if let Ok(d) = go_duration_ns(s) {
        let t = now - chrono::Duration::nanoseconds(d);
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Ok(s.to_owned());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            let t = t.and_utc();
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(format!("{}.000000000", t.and_utc().timestamp()));
    }
    bail!("failed to parse value as time or duration: \"{s}\"")
}

/// `-f key=value` flags → the API's `{"key":{"value":true}}`, as a string.
pub fn filters_json(filters: &[String]) -> Result<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut m: Map<String, Value> = Map::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        let entry = m
            .entry(k.trim().to_lowercase())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(inner) = entry {
            inner.insert(v.to_owned(), Value::Bool(true));
        }
    }
    Ok(Some(Value::Object(m).to_string()))
}

/// A query string from pairs, percent-encoded.
pub fn query(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded_lite(pairs);
    if !s.is_empty() {
        s.insert(0, '?');
    }
    s
}

fn form_urlencoded_lite(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but unreserved characters.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a path segment (container names, image references keep `/` and `:`).
pub fn pct_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b':' | b'@')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(ram_bytes("64m").unwrap(), 67_108_864);
        assert_eq!(ram_bytes("64M").unwrap(), 67_108_864);
        assert_eq!(ram_bytes("64MiB").unwrap(), 67_108_864);
        assert_eq!(ram_bytes("64mb").unwrap(), 67_108_864);
        assert_eq!(ram_bytes("1.5g").unwrap(), 1_610_612_736);
        assert_eq!(ram_bytes("512k").unwrap(), 524_288);
        assert_eq!(ram_bytes("100").unwrap(), 100);
        assert!(ram_bytes("lots").is_err());
        assert!(ram_bytes("5x").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(nano_cpus("1.5").unwrap(), 1_500_000_000);
        assert_eq!(nano_cpus("2").unwrap(), 2_000_000_000);
        assert_eq!(nano_cpus("0.001").unwrap(), 1_000_000);
        assert_eq!(nano_cpus(".5").unwrap(), 500_000_000);
        assert!(nano_cpus("one").is_err());
        assert!(nano_cpus("0.0000000001").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration_ns("30s").unwrap(), 30_000_000_000);
        assert_eq!(go_duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration_ns("500ms").unwrap(), 500_000_000);
        assert_eq!(go_duration_ns("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(go_duration_ns("0").unwrap(), 0);
        assert!(go_duration_ns("10").is_err());
        assert!(go_duration_ns("10d").is_err());
    }

    #[test]
    fn timestamps() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(api_timestamp("10m", now).unwrap(), "1704067200.000000000");
        assert_eq!(api_timestamp("1704067200", now).unwrap(), "1704067200");
        assert_eq!(
            api_timestamp("2024-01-01T00:00:00Z", now).unwrap(),
            "1704067200.000000000"
        );
        assert_eq!(
            api_timestamp("2024-01-01", now).unwrap(),
            "1704067200.000000000"
        );
        assert!(api_timestamp("yesterday", now).is_err());
    }

    #[test]
    fn filters_and_queries() {
        let f = filters_json(&[
            "status=exited".into(),
            "label=a=b".into(),
            "status=created".into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            f,
            r#"{"label":{"a=b":true},"status":{"created":true,"exited":true}}"#
        );
        assert!(filters_json(&["nope".into()]).is_err());
        assert_eq!(
            query(&[("a", "x y".into()), ("b", "1".into())]),
            "?a=x%20y&b=1"
        );
        assert_eq!(query(&[]), "");
        assert_eq!(pct_path("localhost:5000/bb:v1"), "localhost:5000/bb:v1");
    }
}
