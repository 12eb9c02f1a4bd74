//! Finds the cgroup hierarchies in a mountinfo file (proc(5)).

use std::path::{Path, PathBuf};

use super::CgroupError;

/// One cgroup v1 hierarchy: its mount point and the controllers bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where the hierarchy is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// Controllers (`cpu`, `cpuacct`); empty for a named hierarchy.
    pub controllers: Vec<String>,
    /// `Some("systemd")` for a `name=systemd` hierarchy.
    pub name: Option<String>,
}

/// Every cgroup mount found in a mountinfo file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// v1 hierarchies, first mount of each wins.
    pub v1: Vec<V1Hierarchy>,
    /// The first cgroup2 mount, if any.
    pub v2: Option<PathBuf>,
}

/// Undoes the octal escaping mountinfo uses for space, tab, newline, `\`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of a mountinfo file.
pub fn parse(content: &str) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for line in content.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 5 || fields.len() < sep + 4 {
            continue;
        }
        let mount_point = PathBuf::from(unescape(fields[4]));
        let fstype = fields[sep + 1];
        let super_opts = fields[sep + 3];
        match fstype {
            "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some(mount_point),
            "cgroup" => {
                let mut controllers = Vec::new();
                let mut name = None;
                for opt in super_opts.split(',') {
                    if let Some(n) = opt.strip_prefix("name=") {
                        name = Some(n.to_string());
                    } else if is_v1_controller(opt) {
                        controllers.push(opt.to_string());
                    }
                }
                let dup = mounts.v1.iter().any(|h| {
                    (name.is_some() && h.name == name)
                        || controllers.iter().any(|c| h.controllers.contains(c))
                });
                if !dup && (name.is_some() || !controllers.is_empty()) {
                    mounts.v1.push(V1Hierarchy {
                        mount_point,
                        controllers,
                        name,
                    });
                }
            }
            _ => {}
        }
    }
    mounts
}

/// Super options of a v1 mount that name a controller (the rest are mount
/// flags such as `rw`, `noprefix`, `clone_children`, `xattr`).
fn is_v1_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "blkio"
            | "perf_event"
            | "hugetlb"
            | "pids"
            | "rdma"
            | "misc"
    )
}

/// Reads and parses the mountinfo file at `path`.
pub fn read(path: &Path) -> Result<CgroupMounts, CgroupError> {
    let content = std::fs::read_to_string(path).map_err(|source| CgroupError::Mountinfo {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&content))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:38 / /mnt/with\\040space rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid_layout() {
        let m = parse(HYBRID);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1.len(), 3, "{m:?}");
        assert_eq!(m.v1[0].controllers, vec!["cpu"]);
        // cpu,cpuacct is dropped because cpu was already found
        assert_eq!(m.v1[1].controllers, vec!["memory"]);
        assert_eq!(m.v1[2].name.as_deref(), Some("systemd"));
        assert!(m.v1[2].controllers.is_empty());
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape("/a\\"), "/a\\");
    }
}
