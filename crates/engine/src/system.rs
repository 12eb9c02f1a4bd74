//! Facts about the host and the daemon that `/info` and `/version` report.

use std::path::Path;

/// Host facts read from /proc, /sys and /etc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Kernel release (`uname -r`).
    pub kernel_version: String,
    /// `PRETTY_NAME` of /etc/os-release.
    pub operating_system: String,
    /// `VERSION_ID` of /etc/os-release.
    pub os_version: String,
    /// `uname -m`.
    pub architecture: String,
    /// CPUs this process may run on.
    pub ncpu: usize,
    /// Memory in bytes (MemTotal).
    pub mem_total: u64,
    /// Host name.
    pub hostname: String,
    /// `"1"` or `"2"`: the unified hierarchy counts only when it is the
    /// only one mounted at /sys/fs/cgroup.
    pub cgroup_version: String,
}

impl HostInfo {
    /// Reads the host facts now.
    pub fn read() -> HostInfo {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let os_release = read("/etc/os-release");
        HostInfo {
            kernel_version: read("/proc/sys/kernel/osrelease"),
            operating_system: os_field(&os_release, "PRETTY_NAME")
                .unwrap_or_else(|| "Linux".into()),
            os_version: os_field(&os_release, "VERSION_ID").unwrap_or_default(),
            architecture: machine(),
            ncpu: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            mem_total: mem_total(&read("/proc/meminfo")),
            hostname: read("/proc/sys/kernel/hostname"),
            cgroup_version: cgroup_version(Path::new("/sys/fs/cgroup")).into(),
        }
    }
}

/// The host architecture in Go's spelling (`amd64`, `arm64`), as the API
/// reports it.
pub fn goarch() -> String {
    berth_image::store::Platform::host().architecture
}

fn machine() -> String {
    match std::env::consts::ARCH {
        "x86" => "i686".into(),
        a => a.into(),
    }
}

/// A `KEY=value` (or `KEY="value"`) field of os-release.
fn os_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// MemTotal from /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `"2"` when `root` is a cgroup2 mount, else `"1"` (v1 and hybrid hosts).
pub fn cgroup_version(root: &Path) -> &'static str {
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    match rustix::fs::statfs(root) {
        // f_type's integer type differs between targets.
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        Ok(s) if (s.f_type as u64) == CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(mem_total("MemFree: 1 kB\nMemTotal:  2048 kB\n"), 2 << 20);
        let osr =
            "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_ID=\"13\"\n";
        assert_eq!(
            os_field(osr, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(os_field(osr, "VERSION_ID").as_deref(), Some("13"));
    }

    #[test]
    fn host_facts_are_real() {
        let h = HostInfo::read();
        assert!(h.ncpu >= 1);
        assert!(h.mem_total > 0);
        assert!(!h.kernel_version.is_empty());
        assert!(h.cgroup_version == "1" || h.cgroup_version == "2");
    }
}
