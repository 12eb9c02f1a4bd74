//! Docker's rules for merging a `docker create` request over the image's
//! config: the container's values win; Env and Labels merge by key;
//! setting an Entrypoint drops the image's Cmd.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::{Result, SpecError};

/// Docker's PATH when neither the image nor the request sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process to run: Entrypoint + Cmd, Docker's way. `entrypoint: None`
/// keeps the image's; `Some(vec![])` (or `[""]`, what `--entrypoint ""`
/// sends) clears it. The image's Cmd is used only when the request has
/// neither an Entrypoint nor a Cmd.
pub fn args(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Result<Vec<String>> {
    let cleared = |e: &[String]| e.is_empty() || (e.len() == 1 && e[0].is_empty());
    let mut cmd: Vec<String> = cmd.unwrap_or_default().to_vec();
    let entrypoint: Vec<String> = match entrypoint {
        Some(e) if !cleared(e) => e.to_vec(),
        user_ep => {
            if cmd.is_empty() {
                cmd = image_cmd.unwrap_or_default().to_vec();
            }
            match user_ep {
                None => image_entrypoint.unwrap_or_default().to_vec(),
                Some(_) => Vec::new(),
            }
        }
    };
    let mut out = entrypoint;
    out.extend(cmd);
    if out.is_empty() {
        return Err(SpecError::invalid("No command specified"));
    }
    Ok(out)
}

fn key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// The request's Env merged over the image's by key (request entries
/// first, then the image's entries the request does not set).
pub fn merge_env(image: &[String], request: &[String]) -> Vec<String> {
    if request.is_empty() {
        return image.to_vec();
    }
    let mut out = request.to_vec();
    for e in image {
        if !request.iter().any(|r| key(r) == key(e)) {
            out.push(e.clone());
        }
    }
    out
}

/// Docker's `ReplaceOrAppendEnvValues`: each override replaces the entry
/// with its key in place or is appended; an override without `=` removes
/// the key.
pub fn replace_or_append(base: Vec<String>, overrides: &[String]) -> Vec<String> {
    let mut out = base;
    for o in overrides {
        let k = key(o);
        if !o.contains('=') {
            out.retain(|e| key(e) != k);
            continue;
        }
        match out.iter_mut().find(|e| key(e) == k) {
            Some(e) => *e = o.clone(),
            None => out.push(o.clone()),
        }
    }
    out
}

/// The container's final environment: PATH (Docker's default), HOSTNAME,
/// TERM=xterm with a tty, then the merged Env over them, and HOME from the
/// user's passwd entry when nobody set it.
pub fn environment(merged: &[String], hostname: &str, tty: bool, home: &str) -> Vec<String> {
    let mut base = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        base.push("TERM=xterm".into());
    }
    let mut env = replace_or_append(base, merged);
    if !env.iter().any(|e| key(e) == "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Labels: the request's, plus the image's it does not set.
pub fn merge_labels(
    image: Option<&std::collections::HashMap<String, String>>,
    request: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = request.clone();
    for (k, v) in image.into_iter().flatten() {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out
}

/// `80` → `80/tcp`; `53/UDP` → `53/udp`; ranges kept; others refused.
pub fn normalize_port(p: &str) -> Result<String> {
    let bad = || SpecError::invalid(format!("invalid port specification: {p:?}"));
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(SpecError::invalid(format!("invalid proto: {proto}")));
    }
    let num = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(bad);
    match port.split_once('-') {
        Some((a, b)) if num(a)? <= num(b)? => {}
        Some(_) => return Err(bad()),
        None => {
            num(port)?;
        }
    }
    Ok(format!("{port}/{proto}"))
}

/// Exposed ports of image and request, normalised.
pub fn merge_ports(image: &[String], request: &[String]) -> Result<BTreeSet<String>> {
    image
        .iter()
        .chain(request)
        .map(|p| normalize_port(p))
        .collect()
}

/// Volumes of image and request; each must be an absolute path.
pub fn merge_volumes(image: &[String], request: &[String]) -> Result<BTreeSet<String>> {
    image
        .iter()
        .chain(request)
        .map(|v| {
            if v.starts_with('/') {
                Ok(v.clone())
            } else {
                Err(SpecError::invalid(format!(
                    "invalid volume specification: {v:?}: mount path must be absolute"
                )))
            }
        })
        .collect()
}

/// A container's health check, as Docker's API and image configs spell it
/// (durations in nanoseconds; 0 = inherit or Docker's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `[]` inherit, `["NONE"]` disabled, `["CMD", …]`, `["CMD-SHELL", "…"]`.
    #[serde(default, deserialize_with = "null_default")]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(default, deserialize_with = "null_default")]
    pub interval: i64,
    /// Time one check may take.
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: i64,
    /// Grace period after start.
    #[serde(default, deserialize_with = "null_default")]
    pub start_period: i64,
    /// Time between checks during the start period.
    #[serde(default, deserialize_with = "null_default")]
    pub start_interval: i64,
    /// Consecutive failures that make the container unhealthy.
    #[serde(default, deserialize_with = "null_default")]
    pub retries: i64,
}

/// `null` (as Go's encoder writes an unset field) or missing → the default.
fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Healthcheck {
    /// True for `["NONE"]`: the image's check is turned off.
    pub fn is_disabled(&self) -> bool {
        self.test.first().is_some_and(|t| t == "NONE")
    }

    /// The `Healthcheck` of an image config JSON (`config.Healthcheck`),
    /// which oci-spec's `ImageConfiguration` does not keep.
    pub fn from_image_config(raw: &[u8]) -> Result<Option<Healthcheck>> {
        #[derive(Deserialize)]
        struct Outer {
            #[serde(default)]
            config: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default, rename = "Healthcheck")]
            healthcheck: Option<Healthcheck>,
        }
        let o: Outer = serde_json::from_slice(raw)
            .map_err(|e| SpecError::invalid(format!("image config: {e}")))?;
        Ok(o.config.and_then(|c| c.healthcheck))
    }

    fn validate(&self) -> Result<()> {
        const MIN: i64 = 1_000_000;
        for (v, name) in [
            (self.interval, "Interval"),
            (self.timeout, "Timeout"),
            (self.start_period, "StartPeriod"),
            (self.start_interval, "StartInterval"),
        ] {
            if v != 0 && v < MIN {
                return Err(SpecError::invalid(format!(
                    "{name} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        if self.retries < 0 {
            return Err(SpecError::invalid(
                "Retries in Healthcheck cannot be negative",
            ));
        }
        Ok(())
    }
}

/// The request's health check over the image's: missing → the image's;
/// an empty test or zero field takes the image's value.
pub fn merge_healthcheck(
    image: Option<&Healthcheck>,
    request: Option<&Healthcheck>,
) -> Result<Option<Healthcheck>> {
    let merged = match (image, request) {
        (img, None) => img.cloned(),
        (None, Some(r)) => Some(r.clone()),
        (Some(i), Some(r)) => {
            let pick = |a: i64, b: i64| if a == 0 { b } else { a };
            Some(Healthcheck {
                test: if r.test.is_empty() {
                    i.test.clone()
                } else {
                    r.test.clone()
                },
                interval: pick(r.interval, i.interval),
                timeout: pick(r.timeout, i.timeout),
                start_period: pick(r.start_period, i.start_period),
                start_interval: pick(r.start_interval, i.start_interval),
                retries: pick(r.retries, i.retries),
            })
        }
    };
    if let Some(h) = &merged {
        h.validate()?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd() {
        let iep = s(&["/entry", "-x"]);
        let icmd = s(&["serve"]);
        let a = |ep: Option<&[&str]>, cmd: Option<&[&str]>| {
            let ep = ep.map(s);
            let cmd = cmd.map(s);
            args(Some(&iep), Some(&icmd), ep.as_deref(), cmd.as_deref())
        };
        assert_eq!(a(None, None).expect("image"), s(&["/entry", "-x", "serve"]));
        assert_eq!(
            a(None, Some(&["run"])).expect("cmd"),
            s(&["/entry", "-x", "run"])
        );
        // An empty Cmd is "not set".
        assert_eq!(
            a(None, Some(&[])).expect("empty cmd"),
            s(&["/entry", "-x", "serve"])
        );
        // A request Entrypoint drops the image's Cmd.
        assert_eq!(a(Some(&["/bin/sh"]), None).expect("ep"), s(&["/bin/sh"]));
        assert_eq!(
            a(Some(&["/bin/sh"]), Some(&["-c", "x"])).expect("ep+cmd"),
            s(&["/bin/sh", "-c", "x"])
        );
        // Clearing the Entrypoint keeps the image Cmd unless one is given.
        assert_eq!(a(Some(&[]), None).expect("cleared"), s(&["serve"]));
        assert_eq!(
            a(Some(&[""]), Some(&["ls"])).expect("cleared cli"),
            s(&["ls"])
        );
        let e = args(None, None, None, None).expect_err("nothing");
        assert_eq!(e.to_string(), "No command specified");
        assert!(args(Some(&iep), None, Some(&[]), None).is_err());
    }

    #[test]
    fn env_rules() {
        let image = s(&["PATH=/img/bin", "A=image", "B=image"]);
        let merged = merge_env(&image, &s(&["A=req", "C=req"]));
        assert_eq!(merged, s(&["A=req", "C=req", "PATH=/img/bin", "B=image"]));
        let env = environment(&merged, "abc", true, "/root");
        assert_eq!(
            env,
            s(&[
                "PATH=/img/bin",
                "HOSTNAME=abc",
                "TERM=xterm",
                "A=req",
                "C=req",
                "B=image",
                "HOME=/root"
            ])
        );
        // Without an image PATH, Docker's default; HOME kept if set; no tty, no TERM.
        let env = environment(&s(&["HOME=/h", "TERM=dumb"]), "x", false, "/root");
        assert_eq!(
            env,
            s(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=x",
                "HOME=/h",
                "TERM=dumb"
            ])
        );
        // A key without '=' removes it.
        let env = replace_or_append(s(&["A=1", "B=2"]), &s(&["A"]));
        assert_eq!(env, s(&["B=2"]));
        assert_eq!(merge_env(&image, &[]), image);
    }

    #[test]
    fn labels_ports_volumes() {
        let mut img = std::collections::HashMap::new();
        img.insert("a".to_string(), "img".to_string());
        img.insert("b".to_string(), "img".to_string());
        let mut req = BTreeMap::new();
        req.insert("a".to_string(), "req".to_string());
        let l = merge_labels(Some(&img), &req);
        assert_eq!(l["a"], "req");
        assert_eq!(l["b"], "img");
        let p = merge_ports(
            &s(&["80/tcp", "53/UDP"]),
            &s(&["8080", "80", "9000-9010/tcp"]),
        )
        .expect("ports");
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            s(&["53/udp", "80/tcp", "8080/tcp", "9000-9010/tcp"])
        );
        assert!(merge_ports(&[], &s(&["x"])).is_err());
        assert!(merge_ports(&[], &s(&["80/icmp"])).is_err());
        assert!(merge_ports(&[], &s(&["0"])).is_err());
        let v = merge_volumes(&s(&["/data"]), &s(&["/cache", "/data"])).expect("volumes");
        assert_eq!(v.len(), 2);
        assert!(merge_volumes(&[], &s(&["rel"])).is_err());
    }

    #[test]
    fn healthcheck_null_fields_are_unset() {
        // docker-py sends every field, null when the caller gave none.
        let h: Healthcheck = serde_json::from_str(
            r#"{"Test":["CMD","true"],"Interval":null,"Timeout":null,"StartPeriod":null,"Retries":null}"#,
        )
        .expect("null fields");
        assert_eq!(
            h,
            Healthcheck {
                test: s(&["CMD", "true"]),
                ..Healthcheck::default()
            }
        );
    }

    #[test]
    fn healthcheck_rules() {
        let img = Healthcheck {
            test: s(&["CMD", "true"]),
            interval: 30_000_000_000,
            retries: 3,
            ..Healthcheck::default()
        };
        let req = Healthcheck {
            timeout: 5_000_000_000,
            ..Healthcheck::default()
        };
        let m = merge_healthcheck(Some(&img), Some(&req))
            .expect("ok")
            .expect("some");
        assert_eq!(m.test, img.test);
        assert_eq!(
            (m.interval, m.timeout, m.retries),
            (30_000_000_000, 5_000_000_000, 3)
        );
        assert_eq!(
            merge_healthcheck(Some(&img), None).expect("ok"),
            Some(img.clone())
        );
        let none = Healthcheck {
            test: s(&["NONE"]),
            ..Healthcheck::default()
        };
        assert!(
            merge_healthcheck(Some(&img), Some(&none))
                .expect("ok")
                .expect("some")
                .is_disabled()
        );
        let bad = Healthcheck {
            interval: 10,
            ..Healthcheck::default()
        };
        let e = merge_healthcheck(None, Some(&bad)).expect_err("too short");
        assert_eq!(
            e.to_string(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        let raw = br#"{"architecture":"amd64","os":"linux","config":{"Healthcheck":{"Test":["CMD-SHELL","curl x"],"Interval":1000000000}}}"#;
        let h = Healthcheck::from_image_config(raw)
            .expect("parse")
            .expect("some");
        assert_eq!(h.test, s(&["CMD-SHELL", "curl x"]));
        assert_eq!(h.interval, 1_000_000_000);
        assert!(
            Healthcheck::from_image_config(br#"{"config":{}}"#)
                .expect("ok")
                .is_none()
        );
    }
}
