//! The `local` driver: a directory `<data-root>/volumes/<name>/_data`, or,
//! with the `type`/`device`/`o` options, a filesystem mounted there while a
//! container uses the volume (a tmpfs, a bind of a host directory, …).

use std::collections::BTreeMap;
use std::path::Path;

use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::error::EngineError;

/// The one driver berthd has.
pub const DRIVER: &str = "local";

/// Docker's `RestrictedNameChars`.
const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// Docker's check of a local volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn validate_name(name: &str) -> Result<(), EngineError> {
    let bad = |why: String| {
        Err(EngineError::InvalidArgument(format!(
            "create {name}: {why}"
        )))
    };
    if name.len() == 1 {
        return bad(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        );
    }
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return bad(format!(
            "{name:?} includes invalid characters for a local volume name, only {NAME_CHARS:?} are allowed. If you intended to pass a host directory, use absolute path"
        ));
    }
    Ok(())
}

/// The driver named `driver` (`""` is the default, `local`).
pub fn check_driver(name: &str, driver: &str) -> Result<(), EngineError> {
    if driver.is_empty() || driver == DRIVER {
        return Ok(());
    }
    Err(EngineError::NotFoundPath(format!(
        "create {name}: error looking up volume plugin {driver}: plugin {driver:?} not found"
    )))
}

/// Docker's checks of the local driver's options.
pub fn validate_opts(name: &str, opts: &BTreeMap<String, String>) -> Result<(), EngineError> {
    let bad = |why: String| {
        Err(EngineError::InvalidArgument(format!(
            "create {name}: {why}"
        )))
    };
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "o" | "device" | "size") {
            return bad(format!("invalid option: {k:?}"));
        }
    }
    if opts.contains_key("size") {
        return bad("quota size requested but no quota support".into());
    }
    for (opt, needs) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            for n in needs {
                if !opts.contains_key(*n) {
                    return bad(format!("missing required option: {n:?}"));
                }
            }
        }
    }
    if let Some(o) = opts.get("o") {
        let (_, _, data) = mount_flags(o);
        if data.len() > 4095 {
            return bad("mount options are too long".into());
        }
    }
    Ok(())
}

/// Whether the options ask for a mount (Docker: `type` or `device` set).
pub fn needs_mount(opts: &BTreeMap<String, String>) -> bool {
    opts.get("type").is_some_and(|s| !s.is_empty())
        || opts.get("device").is_some_and(|s| !s.is_empty())
}

/// mount(8)-style options → flags, propagation, and the data string for
/// the filesystem.
fn mount_flags(o: &str) -> (MountFlags, MountPropagationFlags, String) {
    let mut flags = MountFlags::empty();
    let mut prop = MountPropagationFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        let (set, clear) = match opt {
            "ro" => (MountFlags::RDONLY, MountFlags::empty()),
            "rw" => (MountFlags::empty(), MountFlags::RDONLY),
            "bind" => (MountFlags::BIND, MountFlags::empty()),
            "rbind" => (MountFlags::BIND | MountFlags::REC, MountFlags::empty()),
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "defaults" => (MountFlags::empty(), MountFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                prop |= match opt.trim_start_matches('r') {
                    "private" => MountPropagationFlags::PRIVATE,
                    "shared" => MountPropagationFlags::SHARED,
                    "slave" => MountPropagationFlags::DOWNSTREAM,
                    _ => MountPropagationFlags::UNBINDABLE,
                };
                if opt.starts_with('r') {
                    prop |= MountPropagationFlags::REC;
                }
                continue;
            }
            other => {
                data.push(other.to_owned());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, prop, data.join(","))
}

/// Mounts the volume's filesystem on `data` (its `_data` directory).
pub fn mount(opts: &BTreeMap<String, String>, data: &Path) -> Result<(), EngineError> {
    let fstype = opts.get("type").map(String::as_str).unwrap_or_default();
    let device = opts.get("device").map(String::as_str).unwrap_or_default();
    let (flags, prop, extra) = mount_flags(opts.get("o").map(String::as_str).unwrap_or_default());
    let fail = |e: rustix::io::Errno| {
        EngineError::Internal(format!(
            "failed to mount local volume: mount {device}:{} type {fstype}: {e}",
            data.display()
        ))
    };
    if flags.contains(MountFlags::BIND) {
        let rec = flags.contains(MountFlags::REC);
        let r = if rec {
            rustix::mount::mount_bind_recursive(device, data)
        } else {
            rustix::mount::mount_bind(device, data)
        };
        r.map_err(fail)?;
        let rest = flags & !(MountFlags::BIND | MountFlags::REC);
        if !rest.is_empty()
            && let Err(e) = rustix::mount::mount_remount(data, MountFlags::BIND | rest, c"")
        {
            let _ = unmount(data);
            return Err(fail(e));
        }
    } else {
        let extra = std::ffi::CString::new(extra)
            .map_err(|_| EngineError::InvalidArgument("mount options contain a NUL byte".into()))?;
        rustix::mount::mount(device, data, fstype, flags, extra.as_c_str()).map_err(fail)?;
    }
    if !prop.is_empty()
        && let Err(e) = rustix::mount::mount_change(data, prop)
    {
        let _ = unmount(data);
        return Err(fail(e));
    }
    Ok(())
}

/// Unmounts `data` if something is mounted there.
pub fn unmount(data: &Path) -> Result<(), EngineError> {
    while berth_image::snapshot::is_mountpoint(data) {
        rustix::mount::unmount(data, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
            EngineError::Internal(format!("unmount volume {}: {e}", data.display()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_pattern() {
        assert!(validate_name("ab").is_ok());
        assert!(validate_name("a.b_c-1").is_ok());
        let e = validate_name("a").unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
        let e = validate_name("bad/name").unwrap_err().to_string();
        assert!(e.contains("includes invalid characters"), "{e}");
        assert!(validate_name("-ab").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("").is_err());
    }

    #[test]
    fn options_are_checked() {
        let m = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(validate_opts("v", &m(&[])).is_ok());
        assert!(validate_opts("v", &m(&[("type", "tmpfs"), ("device", "tmpfs")])).is_ok());
        let e = validate_opts("v", &m(&[("bogus", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "create v: invalid option: \"bogus\"");
        let e = validate_opts("v", &m(&[("type", "tmpfs")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "create v: missing required option: \"device\""
        );
        assert!(validate_opts("v", &m(&[("o", "size=1m")])).is_err());
        assert!(needs_mount(&m(&[("type", "tmpfs"), ("device", "tmpfs")])));
        assert!(!needs_mount(&m(&[])));
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let (f, p, d) = mount_flags("bind,ro,size=10m,mode=1777,rshared");
        assert!(f.contains(MountFlags::BIND | MountFlags::RDONLY));
        assert!(p.contains(MountPropagationFlags::SHARED | MountPropagationFlags::REC));
        assert_eq!(d, "size=10m,mode=1777");
    }
}
