//! Fake cgroup layouts in a temp dir for unit tests: a mountinfo file whose
//! mount points live in the temp dir, and plain files for controller knobs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::CgroupRoots;

type TestResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Builds `LinuxResources` from its JSON form.
pub(crate) fn resources(json: serde_json::Value) -> Result<LinuxResources, serde_json::Error> {
    serde_json::from_value(json)
}

const V1_FILES: &[(&str, &[&str])] = &[
    (
        "cpu",
        &[
            "cpu.shares",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
            "cpu.cfs_burst_us",
            "cpu.rt_runtime_us",
            "cpu.rt_period_us",
            "cpu.idle",
            "cpu.stat",
        ],
    ),
    (
        "cpuacct",
        &["cpuacct.usage", "cpuacct.usage_percpu", "cpuacct.stat"],
    ),
    ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
    (
        "memory",
        &[
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
            "memory.use_hierarchy",
            "memory.stat",
            "memory.usage_in_bytes",
        ],
    ),
    ("devices", &["devices.allow", "devices.deny"]),
    ("freezer", &["freezer.state"]),
    (
        "blkio",
        &[
            "blkio.weight",
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ],
    ),
    ("pids", &["pids.max", "pids.current"]),
];

const V2_FILES: &[&str] = &[
    "cgroup.subtree_control",
    "cgroup.freeze",
    "cgroup.events",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpu.stat",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.max",
    "memory.low",
    "memory.swap.max",
    "memory.current",
    "memory.stat",
    "memory.high",
    "io.weight",
    "io.max",
    "pids.max",
    "pids.current",
    "hugetlb.2MB.max",
    "hugetlb.2MB.current",
];

/// A fake host: `kind` is `v1`, `v1-nofreezer`, `hybrid` or `v2`.
#[derive(Debug)]
pub(crate) struct FakeHost {
    tmp: tempfile::TempDir,
    kind: String,
}

impl FakeHost {
    pub(crate) fn new(kind: &str) -> TestResult<Self> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("cg");
        let mut mi = String::from("1 0 0:1 / / rw - ext4 /dev/vda rw\n");
        let mut id = 10;
        if kind.starts_with("v1") || kind == "hybrid" {
            for (ctrl, _) in V1_FILES {
                if kind == "v1-nofreezer" && *ctrl == "freezer" {
                    continue;
                }
                let d = root.join(ctrl);
                std::fs::create_dir_all(&d)?;
                std::fs::write(d.join("cgroup.procs"), "")?;
                if *ctrl == "cpuset" {
                    std::fs::write(d.join("cpuset.cpus"), "0-1\n")?;
                    std::fs::write(d.join("cpuset.mems"), "0\n")?;
                }
                mi.push_str(&format!(
                    "{id} 1 0:{id} / {} rw,relatime - cgroup cgroup rw,{ctrl}\n",
                    d.display()
                ));
                id += 1;
            }
            let sd = root.join("systemd");
            std::fs::create_dir_all(&sd)?;
            mi.push_str(&format!(
                "{id} 1 0:{id} / {} rw - cgroup cgroup rw,xattr,name=systemd\n",
                sd.display()
            ));
            id += 1;
        }
        if kind == "hybrid" || kind == "v2" {
            let d = if kind == "hybrid" {
                root.join("unified")
            } else {
                root.clone()
            };
            std::fs::create_dir_all(&d)?;
            let ctrls = if kind == "hybrid" {
                "hugetlb\n"
            } else {
                "cpuset cpu io memory hugetlb pids\n"
            };
            std::fs::write(d.join("cgroup.controllers"), ctrls)?;
            std::fs::write(d.join("cgroup.subtree_control"), "")?;
            mi.push_str(&format!(
                "{id} 1 0:{id} / {} rw - cgroup2 cgroup2 rw\n",
                d.display()
            ));
        }
        std::fs::write(tmp.path().join("mountinfo"), mi)?;
        Ok(FakeHost {
            tmp,
            kind: kind.to_string(),
        })
    }

    /// The directory all fake hierarchies live under.
    pub(crate) fn root(&self) -> PathBuf {
        self.tmp.path().join("cg")
    }

    pub(crate) fn roots(&self) -> CgroupRoots {
        CgroupRoots {
            mountinfo: self.tmp.path().join("mountinfo"),
            proc_cgroup: self.tmp.path().join("cgroup"),
        }
    }

    /// Reads a file below [`FakeHost::root`], trimmed.
    pub(crate) fn read(&self, rel: &str) -> TestResult<String> {
        Ok(std::fs::read_to_string(self.root().join(rel))?
            .trim()
            .to_string())
    }

    pub(crate) fn write(&self, rel: &str, value: &str) -> TestResult<()> {
        Ok(std::fs::write(self.root().join(rel), value)?)
    }

    /// Plays the kernel: creates the cgroup `rel` with its interface files.
    pub(crate) fn populate(&self, rel: &str) -> TestResult<()> {
        let root = self.root();
        let mut dirs: Vec<(PathBuf, Vec<&str>)> = Vec::new();
        if self.kind.starts_with("v1") || self.kind == "hybrid" {
            for (ctrl, files) in V1_FILES {
                if self.kind == "v1-nofreezer" && *ctrl == "freezer" {
                    continue;
                }
                dirs.push((root.join(ctrl).join(rel), files.to_vec()));
            }
        }
        if self.kind == "hybrid" {
            dirs.push((
                root.join("unified").join(rel),
                vec!["hugetlb.2MB.max", "hugetlb.2MB.current"],
            ));
        }
        if self.kind == "v2" {
            dirs.push((root.join(rel), V2_FILES.to_vec()));
        }
        for (dir, files) in dirs {
            std::fs::create_dir_all(&dir)?;
            touch(&dir, "cgroup.procs")?;
            for f in files {
                touch(&dir, f)?;
            }
            let unlimited = dir.join("memory.limit_in_bytes");
            if unlimited.exists() && std::fs::read_to_string(&unlimited)?.is_empty() {
                std::fs::write(unlimited, "9223372036854771712\n")?;
            }
            if self.kind == "v2" {
                std::fs::write(
                    dir.join("cgroup.controllers"),
                    "cpuset cpu io memory hugetlb pids\n",
                )?;
                std::fs::write(dir.join("cpu.max"), "max 100000\n")?;
            }
        }
        Ok(())
    }
}

fn touch(dir: &Path, f: &str) -> TestResult<()> {
    let p = dir.join(f);
    if !p.exists() {
        std::fs::write(p, "")?;
    }
    Ok(())
}
