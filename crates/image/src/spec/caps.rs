//! Capabilities: Docker's default set, `--cap-add`/`--cap-drop` and
//! `--privileged`.

use super::error::{Result, SpecError};

/// Every capability Linux defines, by number.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities Docker gives a container by default.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL: &str = "ALL";

/// The capabilities in this process's bounding set (`CapBnd` of
/// /proc/self/status): what "all capabilities" can mean here. A kernel may
/// know capabilities our parent took away (root without CAP_SYS_RESOURCE).
pub fn bounding_set() -> Result<Vec<String>> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| SpecError::io("read /proc/self/status", e))?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| SpecError::invalid("/proc/self/status has no CapBnd line"))?;
    Ok(from_mask(mask))
}

/// Capability names of the bits set in `mask`.
pub fn from_mask(mask: u64) -> Vec<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Docker's normalisation of `--cap-add`/`--cap-drop`: upper case, `CAP_`
/// prefix added when missing, `ALL` kept; unknown names refused.
pub fn normalize(caps: &[String]) -> Result<Vec<String>> {
    caps.iter()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c == ALL {
                return Ok(c);
            }
            let c = if c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            };
            if ALL_CAPABILITIES.contains(&c.as_str()) {
                Ok(c)
            } else {
                Err(SpecError::UnknownCapability(c))
            }
        })
        .collect()
}

/// The container's capability set, as Docker computes it: privileged gets
/// `all`; `ALL` in cap_add adds all but cap_drop; `ALL` in cap_drop keeps
/// only cap_add; otherwise the defaults minus cap_drop plus cap_add.
pub fn tweak(
    cap_add: &[String],
    cap_drop: &[String],
    privileged: bool,
    all: &[String],
) -> Result<Vec<String>> {
    let add = normalize(cap_add)?;
    let drop = normalize(cap_drop)?;
    if privileged {
        return Ok(all.to_vec());
    }
    let mut out: Vec<String> = if add.iter().any(|c| c == ALL) {
        all.iter().filter(|c| !drop.contains(c)).cloned().collect()
    } else if drop.iter().any(|c| c == ALL) {
        add
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .chain(add)
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    fn all() -> Vec<String> {
        from_mask((1u64 << 41) - 1 - (1u64 << 24))
    }

    #[test]
    fn defaults_and_tweaks() {
        let d = tweak(&[], &[], false, &all()).expect("defaults");
        assert_eq!(d, s(&DEFAULT_CAPABILITIES));
        let t = tweak(
            &s(&["net_admin", "Cap_Sys_Ptrace"]),
            &s(&["chown", "CAP_KILL"]),
            false,
            &all(),
        )
        .expect("tweak");
        assert!(t.contains(&"CAP_NET_ADMIN".into()));
        assert!(t.contains(&"CAP_SYS_PTRACE".into()));
        assert!(!t.contains(&"CAP_CHOWN".into()));
        assert!(!t.contains(&"CAP_KILL".into()));
        assert_eq!(t.len(), 14);
        // Adding a default twice does not duplicate it.
        let t = tweak(&s(&["CHOWN"]), &[], false, &all()).expect("dup");
        assert_eq!(t.len(), 14);
    }

    #[test]
    fn all_in_add_and_drop() {
        let t = tweak(&s(&["all"]), &s(&["SYS_ADMIN"]), false, &all()).expect("add all");
        assert_eq!(t.len(), all().len() - 1);
        assert!(!t.contains(&"CAP_SYS_ADMIN".into()));
        assert!(
            !t.contains(&"CAP_SYS_RESOURCE".into()),
            "not in bounding set"
        );
        let t = tweak(&s(&["NET_BIND_SERVICE"]), &s(&["ALL"]), false, &all()).expect("drop all");
        assert_eq!(t, s(&["CAP_NET_BIND_SERVICE"]));
        let t = tweak(&[], &s(&["all"]), false, &all()).expect("none");
        assert!(t.is_empty());
    }

    #[test]
    fn privileged_is_the_bounding_set() {
        let a = all();
        assert_eq!(tweak(&[], &s(&["ALL"]), true, &a).expect("priv"), a);
        let b = bounding_set().expect("bounding");
        assert!(!b.is_empty());
        assert!(b.iter().all(|c| ALL_CAPABILITIES.contains(&c.as_str())));
    }

    #[test]
    fn unknown_capability_is_docker_error() {
        let e = tweak(&s(&["foo"]), &[], false, &all()).expect_err("unknown");
        assert_eq!(e.to_string(), "unknown capability: \"CAP_FOO\"");
        let e = tweak(&[], &s(&["CAP_NOPE"]), true, &all()).expect_err("checked even privileged");
        assert_eq!(e.to_string(), "unknown capability: \"CAP_NOPE\"");
    }
}
