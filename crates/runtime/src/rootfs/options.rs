use nix::mount::MsFlags;

/// Mount options of one config.json mount, split into what mount(2) takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call itself.
    pub flags: MsFlags,
    /// Flags that must be cleared (e.g. `rw`, `suid`, `dev`).
    pub clear: MsFlags,
    /// Propagation to apply after mounting (MS_SHARED, MS_SLAVE, …, maybe MS_REC).
    pub propagation: Vec<MsFlags>,
    /// Whether it is a bind mount (`bind` or `rbind`).
    pub bind: bool,
    /// Recursive bind.
    pub recursive: bool,
    /// Filesystem-specific data (`mode=755,size=65536k`).
    pub data: String,
    /// An idmapped mount was requested (`idmap`/`ridmap`).
    pub idmap: bool,
    /// Options needing mount_setattr on the whole tree (`rro`, `rnosuid`, …).
    pub recursive_attrs: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            bind: false,
            recursive: false,
            data: String::new(),
            idmap: false,
            recursive_attrs: Vec::new(),
        }
    }
}

/// Parse fstab-style options as runc does.
pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "idmap" | "ridmap" => {
                o.idmap = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let rec = opt.starts_with('r');
                let base = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                o.propagation
                    .push(if rec { base | MsFlags::MS_REC } else { base });
                continue;
            }
            r if is_recursive_attr(r) => {
                o.recursive_attrs.push(r.to_string());
                continue;
            }
            "defaults" => continue,
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o.data = data.join(",");
    o
}

fn is_recursive_attr(opt: &str) -> bool {
    matches!(
        opt,
        "rro"
            | "rrw"
            | "rnosuid"
            | "rsuid"
            | "rnodev"
            | "rdev"
            | "rnoexec"
            | "rexec"
            | "rnodiratime"
            | "rdiratime"
            | "rrelatime"
            | "rnorelatime"
            | "rnoatime"
            | "ratime"
            | "rstrictatime"
            | "rnostrictatime"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "noexec", "mode=755", "size=65536k", "ro"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!p(&["ro", "rw"]).flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn bind_and_propagation() {
        let o = p(&["rbind", "rslave", "shared", "rshared", "private"]);
        assert!(o.bind && o.recursive);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                MsFlags::MS_SHARED,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                MsFlags::MS_PRIVATE
            ]
        );
        assert_eq!(p(&["rro"]).recursive_attrs, vec!["rro"]);
        assert!(p(&["idmap"]).idmap);
    }
}
