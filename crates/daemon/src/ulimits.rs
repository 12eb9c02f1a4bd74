//! `--default-ulimit name=soft[:hard]` and daemon.json's `default-ulimits`,
//! checked like dockerd (go-units' `ParseUlimit`).

use anyhow::{Context, bail};
use berth_engine::containers::config::Ulimit;

/// The limits Docker knows (`ulimit` names, without the `RLIMIT_` prefix).
pub const NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Parses `name=soft[:hard]`; without `:hard` the hard limit is the soft
/// one. `-1` means unlimited.
pub fn parse(arg: &str) -> anyhow::Result<Ulimit> {
    let Some((name, values)) = arg.split_once('=') else {
        bail!("invalid ulimit argument {arg:?}: expected name=soft[:hard]");
    };
    let parts: Vec<&str> = values.split(':').collect();
    let number = |s: &str| -> anyhow::Result<i64> {
        s.trim()
            .parse::<i64>()
            .with_context(|| format!("invalid ulimit {arg:?}: {s:?} is not a number"))
    };
    let (soft, hard) = match parts.as_slice() {
        [soft] => {
            let s = number(soft)?;
            (s, s)
        }
        [soft, hard] => (number(soft)?, number(hard)?),
        _ => bail!(
            "invalid ulimit {arg:?}: too many limit values, can only have up to two, `soft[:hard]`"
        ),
    };
    let u = Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    };
    check(&u)?;
    Ok(u)
}

/// Checks the name and that soft ≤ hard (`-1`: unlimited).
pub fn check(u: &Ulimit) -> anyhow::Result<()> {
    if !NAMES.contains(&u.name.as_str()) {
        bail!(
            "invalid ulimit type {:?}: one of {} expected",
            u.name,
            NAMES.join(", ")
        );
    }
    for (what, v) in [("soft", u.soft), ("hard", u.hard)] {
        if v < -1 {
            bail!(
                "invalid ulimit {}: the {what} limit {v} is negative (-1 means unlimited)",
                u.name
            );
        }
    }
    let unlimited = |v: i64| v == -1;
    if !unlimited(u.hard) && (unlimited(u.soft) || u.soft > u.hard) {
        bail!(
            "invalid ulimit {}: the soft limit must be less than or equal to the hard limit: {} > {}",
            u.name,
            u.soft,
            u.hard
        );
    }
    Ok(())
}

/// daemon.json's `"default-ulimits": {"nofile": {"Name": "nofile", "Soft":
/// 1024, "Hard": 2048}}`. A missing `Name` is taken from the key; a `Name`
/// other than the key is refused.
pub fn from_json(v: &serde_json::Value) -> anyhow::Result<Vec<Ulimit>> {
    let map: std::collections::BTreeMap<String, Ulimit> = serde_json::from_value(v.clone())
        .context(
            "daemon.json: \"default-ulimits\" must map names to {\"Name\", \"Soft\", \"Hard\"}",
        )?;
    let mut out = Vec::new();
    for (key, mut u) in map {
        if u.name.is_empty() {
            u.name.clone_from(&key);
        } else if u.name != key {
            bail!(
                "daemon.json: default-ulimits: the entry {key:?} names the limit {:?}",
                u.name
            );
        }
        check(&u).context("daemon.json: default-ulimits")?;
        out.push(u);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker() {
        let u = parse("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse("nproc=64").unwrap();
        assert_eq!((u.soft, u.hard), (64, 64));
        let u = parse("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (-1, -1));
        assert!(parse("memlock=100:-1").is_ok());
        for bad in [
            "nofile",
            "nofile=",
            "nofile=x",
            "nofile=1:2:3",
            "nofile=2048:1024",
            "nofile=-1:1024",
            "nofile=-5",
            "openfiles=10",
            "=10",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("nofile=2048:1024").unwrap_err().to_string();
        assert!(e.contains("soft limit must be less than or equal"), "{e}");
        let e = parse("files=1").unwrap_err().to_string();
        assert!(e.contains("invalid ulimit type \"files\""), "{e}");
    }

    #[test]
    fn json_form() {
        let v = serde_json::json!({
            "nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048},
            "nproc": {"Soft": 10, "Hard": 20},
        });
        let l = from_json(&v).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].name, "nproc");
        let v = serde_json::json!({"nofile": {"Name": "nproc", "Soft": 1, "Hard": 2}});
        assert!(from_json(&v).is_err());
        let v = serde_json::json!({"nofile": {"Name": "nofile", "Soft": 3, "Hard": 2}});
        assert!(from_json(&v).is_err());
        assert!(from_json(&serde_json::json!(["nofile=1"])).is_err());
    }
}
