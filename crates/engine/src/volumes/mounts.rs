//! A container's mounts as Docker decides them at create: `--volumes-from`,
//! then `Binds` (`-v`), then `Mounts` (`--mount`), then the anonymous
//! volumes of `Config.Volumes` and the image's `VOLUME`s on what is left.
//! Everything here is checked before anything is made, so that a bad
//! request leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::local;
use crate::containers::{ContainerConfig, HostConfig, config::MountSpec};
use crate::error::EngineError;

/// One mount of a container, as recorded at create and shown by inspect's
/// `Mounts` (moby's `MountPoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// `bind`, `volume`, `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    pub name: String,
    /// Host path: a bind's source, a volume's data directory.
    pub source: String,
    /// Path in the container.
    pub destination: String,
    /// The volume driver (volumes only).
    pub driver: String,
    /// The mode as requested (`ro`, `z`, `rshared`, …).
    pub mode: String,
    /// Writable.
    pub rw: bool,
    /// Binds: `rprivate` unless asked otherwise; `""` for volumes.
    pub propagation: String,
    /// Copy the image's content at the destination into the volume when
    /// the volume is empty.
    pub copy_data: bool,
    /// Made for this container without a name (`-v /path`, `VOLUME`,
    /// `--mount type=volume` without source): `docker rm -v` removes it.
    pub anonymous: bool,
    /// Binds: make a missing host path at start (`-v`; `--mount` with
    /// `create-mountpoint`).
    pub create_source: bool,
    /// tmpfs: the mount options (`size=…,mode=…`).
    pub tmpfs_options: String,
    /// Volumes: a directory inside the volume to mount instead of its root.
    pub subpath: String,
}

/// A mount to make, before its volume exists.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// The mount; for a volume without a name, `name` is empty.
    pub mp: MountPoint,
    /// Driver options for a volume this create makes.
    pub driver_opts: BTreeMap<String, String>,
    /// Labels for a volume this create makes.
    pub labels: BTreeMap<String, String>,
    /// The volume comes from `--volumes-from` and must exist.
    pub existing: bool,
}

fn invalid(m: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(m.into())
}

/// Go's `path.Clean` for absolute paths.
pub(crate) fn clean(p: &str) -> String {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.display().to_string()
}

const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// moby's `linuxValidMountMode`: each kind of option at most once.
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let i = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            p if PROPAGATIONS.contains(&p) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[i] += 1;
    }
    counts.iter().all(|&c| c <= 1)
}

fn mode_propagation(mode: &str) -> Option<&str> {
    mode.split(',').find(|o| PROPAGATIONS.contains(o))
}

/// Target checks common to every kind.
fn check_target(kind: &str, target: &str) -> Result<String, String> {
    if target.is_empty() {
        return Err(format!(
            "invalid mount config for type {kind:?}: field Target must not be empty"
        ));
    }
    if !target.starts_with('/') {
        return Err(format!(
            "invalid mount config for type {kind:?}: invalid mount path: '{target}' mount path must be absolute"
        ));
    }
    if clean(target) == "/" {
        return Err(format!(
            "invalid mount config for type {kind:?}: invalid specification: destination can't be '/'"
        ));
    }
    Ok(clean(target))
}

/// One `-v` / `Binds` entry (moby's `ParseMountRaw`).
fn parse_bind(raw: &str, volume_driver: &str) -> Result<Planned, EngineError> {
    let spec_err = |why: String| invalid(format!("invalid volume specification: '{raw}': {why}"));
    let arr: Vec<&str> = raw.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(invalid(format!("invalid volume specification: '{raw}'")));
    }
    let (source, target, mode) = match arr.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => {
            if valid_mode(t) {
                return Err(invalid(format!("invalid volume specification: '{raw}'")));
            }
            (*s, *t, "")
        }
        [s, t, m] => (*s, *t, *m),
        _ => return Err(invalid(format!("invalid volume specification: '{raw}'"))),
    };
    if !valid_mode(mode) {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    let is_bind = source.starts_with('/');
    let kind = if is_bind { "bind" } else { "volume" };
    let destination = check_target(kind, target).map_err(spec_err)?;
    let rw = !mode.split(',').any(|o| o == "ro");
    let mut mp = MountPoint {
        kind: kind.into(),
        destination,
        rw,
        mode: mode.to_owned(),
        ..Default::default()
    };
    if is_bind {
        mp.source = clean(source);
        mp.propagation = mode_propagation(mode).unwrap_or("rprivate").to_owned();
        mp.create_source = true;
    } else {
        if mode_propagation(mode).is_some() {
            return Err(spec_err(
                "invalid mount config for type \"volume\": field BindOptions must not be specified"
                    .into(),
            ));
        }
        mp.name = source.to_owned();
        mp.anonymous = source.is_empty();
        mp.driver = if volume_driver.is_empty() {
            local::DRIVER.into()
        } else {
            volume_driver.into()
        };
        mp.copy_data = !mode.split(',').any(|o| o == "nocopy");
        if mp.mode.is_empty() {
            mp.mode = "z".into();
        }
    }
    Ok(Planned {
        mp,
        driver_opts: BTreeMap::new(),
        labels: BTreeMap::new(),
        existing: false,
    })
}

/// `BindOptions`, `VolumeOptions`, `TmpfsOptions` of a `--mount`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BindOptions {
    #[serde(default)]
    propagation: Option<String>,
    #[serde(default)]
    non_recursive: bool,
    #[serde(default)]
    create_mountpoint: bool,
    #[serde(default)]
    read_only_non_recursive: bool,
    #[serde(default)]
    read_only_force_recursive: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DriverConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeOptions {
    #[serde(default)]
    no_copy: bool,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    driver_config: Option<DriverConfig>,
    #[serde(default)]
    subpath: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TmpfsOptions {
    #[serde(default)]
    size_bytes: Option<i64>,
    #[serde(default)]
    mode: Option<u32>,
    #[serde(default)]
    options: Option<Vec<Vec<String>>>,
}

fn option<T: serde::de::DeserializeOwned>(
    m: &MountSpec,
    key: &str,
) -> Result<Option<T>, EngineError> {
    match m.extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| invalid(format!("invalid {key} of mount {}: {e}", m.target))),
    }
}

/// moby's `ConvertTmpfsOptions`.
fn tmpfs_options(o: Option<&TmpfsOptions>, read_only: bool) -> Result<String, String> {
    let mut out = Vec::new();
    if read_only {
        out.push("ro".to_owned());
    }
    if let Some(o) = o {
        if let Some(m) = o.mode.filter(|m| *m != 0) {
            out.push(format!("mode={m:o}"));
        }
        if let Some(size) = o.size_bytes.filter(|s| *s != 0) {
            let mut s = format!("size={size}");
            for (suffix, div) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
                if size % div == 0 {
                    s = format!("size={}{suffix}", size / div);
                    break;
                }
            }
            out.push(s);
        }
        for opt in o.options.iter().flatten() {
            match opt.as_slice() {
                [k] | [k, _] if k == "exec" || k == "noexec" => out.push(opt.join("=")),
                [k] | [k, _] => return Err(format!("invalid option: {k}")),
                _ => return Err("invalid option array length".into()),
            }
        }
    }
    Ok(out.join(","))
}

/// One `--mount` / `Mounts` entry (moby's `ParseMountSpec`).
fn parse_mount(m: &MountSpec, volume_driver: &str) -> Result<Planned, EngineError> {
    let kind = m.kind.as_str();
    let cfg_err = |why: &str| invalid(format!("invalid mount config for type {kind:?}: {why}"));
    let bind: Option<BindOptions> = option(m, "BindOptions")?;
    let vol: Option<VolumeOptions> = option(m, "VolumeOptions")?;
    let tmpfs: Option<TmpfsOptions> = option(m, "TmpfsOptions")?;
    if !matches!(kind, "bind" | "volume" | "tmpfs") {
        if kind == "image" {
            return Err(EngineError::NotImplemented(
                "mounts of type \"image\" are not supported by berthd yet".into(),
            ));
        }
        return Err(cfg_err("mount type unknown"));
    }
    let destination = check_target(kind, &m.target).map_err(invalid)?;
    let mut p = Planned {
        mp: MountPoint {
            kind: kind.into(),
            destination,
            rw: !m.read_only,
            ..Default::default()
        },
        driver_opts: BTreeMap::new(),
        labels: BTreeMap::new(),
        existing: false,
    };
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(cfg_err("field Source must not be empty"));
            }
            let b = bind.unwrap_or_default();
            if let Some(prop) = b.propagation.as_deref().filter(|s| !s.is_empty()) {
                if !PROPAGATIONS.contains(&prop) {
                    return Err(cfg_err(&format!("invalid propagation mode: {prop}")));
                }
                p.mp.propagation = prop.to_owned();
            } else {
                p.mp.propagation = "rprivate".into();
            }
            if vol.is_some() {
                return Err(cfg_err("field VolumeOptions must not be specified"));
            }
            if !m.source.starts_with('/') {
                return Err(cfg_err(&format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            if !Path::new(&m.source).exists() && !b.create_mountpoint {
                return Err(cfg_err(&format!(
                    "bind source path does not exist: {}",
                    m.source
                )));
            }
            if b.non_recursive || b.read_only_non_recursive || b.read_only_force_recursive {
                return Err(EngineError::NotImplemented(
                    "non-recursive bind mounts (bind-recursive other than enabled) are not supported by berthd yet".into(),
                ));
            }
            p.mp.source = clean(&m.source);
            p.mp.create_source = b.create_mountpoint;
        }
        "volume" => {
            if bind.is_some() {
                return Err(cfg_err("field BindOptions must not be specified"));
            }
            let anonymous = m.source.is_empty();
            let v = vol.unwrap_or_default();
            if let Some(sub) = v.subpath.as_deref().filter(|s| !s.is_empty()) {
                if anonymous {
                    return Err(cfg_err("must not set Subpath when using anonymous volumes"));
                }
                let local = !sub.starts_with('/')
                    && Path::new(sub)
                        .components()
                        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                if !local {
                    return Err(cfg_err("subpath must be a relative path within the volume"));
                }
                p.mp.subpath = sub.to_owned();
            }
            if m.read_only && anonymous {
                return Err(cfg_err(
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
            let driver = v
                .driver_config
                .as_ref()
                .and_then(|d| d.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| volume_driver.to_owned());
            p.mp.name = m.source.clone();
            p.mp.anonymous = anonymous;
            p.mp.driver = if driver.is_empty() {
                local::DRIVER.into()
            } else {
                driver
            };
            p.mp.copy_data = !v.no_copy;
            p.mp.mode = "z".into();
            p.driver_opts = v.driver_config.and_then(|d| d.options).unwrap_or_default();
            p.labels = v.labels.unwrap_or_default();
        }
        _ => {
            if bind.is_some() {
                return Err(cfg_err("field BindOptions must not be specified"));
            }
            if !m.source.is_empty() {
                return Err(cfg_err("field Source must not be specified"));
            }
            p.mp.tmpfs_options =
                tmpfs_options(tmpfs.as_ref(), m.read_only).map_err(|e| cfg_err(&e))?;
        }
    }
    Ok(p)
}

/// `ID[:ro|rw]` of `--volumes-from`.
fn parse_volumes_from(spec: &str) -> Result<(&str, bool), EngineError> {
    if spec.is_empty() {
        return Err(invalid(
            "volumes-from specification cannot be an empty string",
        ));
    }
    let (id, mode) = spec.split_once(':').unwrap_or((spec, ""));
    if mode.is_empty() {
        return Ok((id, true));
    }
    if !valid_mode(mode) || mode_propagation(mode).is_some() || mode.contains("nocopy") {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    Ok((id, !mode.split(',').any(|o| o == "ro")))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the request's mounts and decides what to mount where. `other`
/// gives the mount points of a `--volumes-from` container.
pub(crate) fn plan(
    config: &ContainerConfig,
    h: &HostConfig,
    image_volumes: &[String],
    other: &dyn Fn(&str) -> Result<Vec<MountPoint>, EngineError>,
) -> Result<Vec<Planned>, EngineError> {
    let volume_driver = h
        .extra
        .get("VolumeDriver")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut out: BTreeMap<String, Planned> = BTreeMap::new();
    for spec in strings(h.extra.get("VolumesFrom")) {
        let (id, rw) = parse_volumes_from(&spec)?;
        let mps = other(id).map_err(|e| match e {
            EngineError::NoSuchContainer(_) => invalid(e.to_string()),
            e => e,
        })?;
        for mut mp in mps {
            mp.rw = mp.rw && rw;
            mp.copy_data = false;
            out.insert(
                mp.destination.clone(),
                Planned {
                    mp,
                    driver_opts: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    existing: true,
                },
            );
        }
    }
    let tmpfs: BTreeSet<String> = h.tmpfs.keys().map(|k| clean(k)).collect();
    let dup = |d: &str| invalid(format!("Duplicate mount point: {d}"));
    let mut taken = BTreeSet::new();
    for b in &h.binds {
        let p = parse_bind(b, &volume_driver)?;
        let d = p.mp.destination.clone();
        if !taken.insert(d.clone()) || tmpfs.contains(&d) {
            return Err(dup(&d));
        }
        out.insert(d, p);
    }
    for m in &h.mounts {
        let p = parse_mount(m, &volume_driver)?;
        let d = p.mp.destination.clone();
        if !taken.insert(d.clone()) || (p.mp.kind == "tmpfs" && tmpfs.contains(&d)) {
            return Err(dup(&m.target));
        }
        out.insert(d, p);
    }
    let requested = config
        .volumes
        .as_ref()
        .map(|v| v.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for v in image_volumes.iter().chain(&requested) {
        if !v.starts_with('/') {
            return Err(invalid(format!(
                "invalid volume specification: {v:?}: mount path must be absolute"
            )));
        }
        let d = clean(v);
        if d == "/" {
            return Err(invalid("invalid specification: destination can't be '/'"));
        }
        if out.contains_key(&d) || tmpfs.contains(&d) {
            continue;
        }
        out.insert(
            d.clone(),
            Planned {
                mp: MountPoint {
                    kind: "volume".into(),
                    destination: d,
                    driver: if volume_driver.is_empty() {
                        local::DRIVER.into()
                    } else {
                        volume_driver.clone()
                    },
                    rw: true,
                    copy_data: true,
                    anonymous: true,
                    ..Default::default()
                },
                driver_opts: BTreeMap::new(),
                labels: BTreeMap::new(),
                existing: false,
            },
        );
    }
    for p in out.values() {
        if p.mp.kind != "volume" {
            continue;
        }
        local::check_driver(&p.mp.name, &p.mp.driver)?;
        if !p.mp.name.is_empty() && !p.existing {
            local::validate_name(&p.mp.name)?;
        }
        local::validate_opts(&p.mp.name, &p.driver_opts)?;
    }
    Ok(out.into_values().collect())
}

/// For create's dry run of the spec builder: every planned mount, with
/// `placeholder` (an empty directory) for host paths that may not exist
/// yet, so that the builder checks destinations and duplicates.
pub(crate) fn dry_run(
    planned: &[Planned],
    opts: &mut berth_image::spec::RunOptions,
    placeholder: &Path,
) {
    for p in planned {
        if p.mp.kind == "tmpfs" {
            opts.tmpfs
                .insert(p.mp.destination.clone(), p.mp.tmpfs_options.clone());
        } else {
            opts.binds.push(berth_image::spec::BindMount {
                source: placeholder.to_path_buf(),
                destination: PathBuf::from(&p.mp.destination),
                read_only: !p.mp.rw,
                propagation: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(raw: &str) -> Result<MountPoint, String> {
        parse_bind(raw, "").map(|p| p.mp).map_err(|e| e.to_string())
    }

    #[test]
    fn binds_parse_like_docker() {
        let m = bind("/a:/b:ro,rshared").unwrap();
        assert_eq!((m.kind.as_str(), m.rw), ("bind", false));
        assert_eq!(m.propagation, "rshared");
        let m = bind("data:/x").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.name.as_str(), m.mode.as_str()),
            ("volume", "data", "z")
        );
        assert!(m.copy_data && !m.anonymous);
        let m = bind("data:/x:ro,nocopy").unwrap();
        assert!(!m.rw && !m.copy_data);
        let m = bind("/anon").unwrap();
        assert!(m.anonymous && m.name.is_empty());
        assert_eq!(
            bind("/x:rw").unwrap_err(),
            "invalid volume specification: '/x:rw'"
        );
        assert_eq!(bind("/a:/b:bogus").unwrap_err(), "invalid mode: bogus");
        assert!(bind("/a:b").unwrap_err().contains("must be absolute"));
        assert!(
            bind("/a:/")
                .unwrap_err()
                .contains("destination can't be '/'")
        );
        assert!(bind("v:/x:rshared").unwrap_err().contains("BindOptions"));
        assert!(bind("/a:/b:c:d").is_err());
        assert!(bind(":/b").is_err());
    }

    #[test]
    fn mounts_parse_like_docker() {
        let spec = |v: Value| -> MountSpec { serde_json::from_value(v).unwrap() };
        let e = parse_mount(
            &spec(serde_json::json!({"Type":"bind","Source":"/no/such/dir","Target":"/x"})),
            "",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir"
        );
        let p = parse_mount(
            &spec(serde_json::json!({"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":448}})),
            "",
        )
        .unwrap();
        assert_eq!(p.mp.tmpfs_options, "mode=700,size=1m");
        let p = parse_mount(
            &spec(serde_json::json!({"Type":"volume","Source":"v1","Target":"/v","VolumeOptions":{"NoCopy":true,"DriverConfig":{"Options":{"type":"tmpfs","device":"tmpfs"}}}})),
            "",
        )
        .unwrap();
        assert!(!p.mp.copy_data);
        assert_eq!(p.driver_opts["type"], "tmpfs");
        assert!(
            parse_mount(
                &spec(serde_json::json!({"Type":"volume","Target":"/v","ReadOnly":true})),
                ""
            )
            .is_err()
        );
        assert!(
            parse_mount(&spec(serde_json::json!({"Type":"nfs","Target":"/v"})), "")
                .unwrap_err()
                .to_string()
                .contains("mount type unknown")
        );
    }

    #[test]
    fn volumes_from_modes() {
        assert_eq!(parse_volumes_from("c").unwrap(), ("c", true));
        assert_eq!(parse_volumes_from("c:ro").unwrap(), ("c", false));
        assert!(parse_volumes_from("c:rshared").is_err());
        assert!(parse_volumes_from("").is_err());
    }

    #[test]
    fn paths_clean() {
        assert_eq!(clean("/a//b/../c/"), "/a/c");
        assert_eq!(clean("/"), "/");
    }
}
