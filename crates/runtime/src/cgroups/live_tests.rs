//! Tests against the real cgroup filesystem of this host. They run only with
//! `BERTH_TEST_ROOT=1` (and then require root), and only ever touch
//! `/berth/test-<pid>-<n>` in each hierarchy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use super::test_util::resources;
use super::{AnyCgroups, CgroupManager, CgroupRoots, Layout};

type TestResult = Result<(), Box<dyn std::error::Error>>;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn enabled() -> bool {
    if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "BERTH_TEST_ROOT=1 needs root"
    );
    true
}

/// Owns the test cgroup and our child; Drop thaws, kills the child and
/// removes the directories even when an assertion failed.
struct Live {
    cg: AnyCgroups,
    child: Option<Child>,
}

impl Live {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = format!("/berth/test-{}-{n}", std::process::id());
        let cg = AnyCgroups::open(Path::new(&path), &CgroupRoots::default())?;
        for p in cg.paths() {
            assert!(p.to_string_lossy().contains("/berth/test-"), "{p:?}");
        }
        Ok(Live { cg, child: None })
    }

    fn spawn_child(&mut self) -> Result<i32, Box<dyn std::error::Error>> {
        let child = Command::new("sleep").arg("60").spawn()?;
        let pid = i32::try_from(child.id())?;
        self.child = Some(child);
        Ok(pid)
    }

    fn kill_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The container's directory holding `file` (first hierarchy that has it).
    fn file(&self, file: &str) -> Option<PathBuf> {
        self.cg
            .paths()
            .into_iter()
            .map(|p| p.join(file))
            .find(|p| p.exists())
    }

    fn read(&self, file: &str) -> Result<String, Box<dyn std::error::Error>> {
        let p = self
            .file(file)
            .ok_or_else(|| format!("no {file} in {:?}", self.cg.paths()))?;
        Ok(std::fs::read_to_string(p)?.trim().to_string())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // a frozen task only dies once thawed
        let _ = self.cg.thaw();
        self.kill_child();
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup of {:?} failed: {e:#}", self.cg.paths());
        }
    }
}

#[test]
fn live_lifecycle() -> TestResult {
    if !enabled() {
        return Ok(());
    }
    let mut live = Live::new()?;
    let layout = live.cg.layout();
    assert!(live.cg.can_manage());
    live.cg.create()?;
    live.cg.create()?; // idempotent
    for p in live.cg.paths() {
        assert!(p.is_dir(), "{p:?}");
    }

    let v2 = layout == Layout::V2;
    let blkio_weight = live
        .file("blkio.weight")
        .or_else(|| live.file("blkio.bfq.weight"))
        .is_some()
        || live.file("io.weight").is_some()
        || live.file("io.bfq.weight").is_some();
    // On a hybrid host the cgroup2 side gets hugetlb enabled only when a
    // limit asks for it, so look at what the unified mount offers.
    let unified_offers_hugetlb =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "hugetlb"));
    let hugetlb = live.file("hugetlb.2MB.max").is_some()
        || live.file("hugetlb.2MB.limit_in_bytes").is_some()
        || (layout == Layout::Hybrid && unified_offers_hugetlb);
    if layout == Layout::Hybrid {
        assert!(hugetlb, "this host's unified mount offers hugetlb");
    }
    let mut json = serde_json::json!({
        "memory": {"limit": 64 << 20, "swap": 128 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 32},
    });
    if blkio_weight {
        json["blockIO"] = serde_json::json!({"weight": 500});
    }
    if hugetlb {
        json["hugepageLimits"] = serde_json::json!([{"pageSize": "2MB", "limit": 4 << 20}]);
    }
    live.cg.apply(&resources(json)?)?;

    if v2 {
        assert_eq!(live.read("memory.max")?, (64u64 << 20).to_string());
        if live.file("memory.swap.max").is_some() {
            assert_eq!(live.read("memory.swap.max")?, (64u64 << 20).to_string());
        }
        assert_eq!(live.read("cpu.weight")?, "59");
        assert_eq!(live.read("cpu.max")?, "50000 100000");
    } else {
        assert_eq!(
            live.read("memory.limit_in_bytes")?,
            (64u64 << 20).to_string()
        );
        assert_eq!(
            live.read("memory.memsw.limit_in_bytes")?,
            (128u64 << 20).to_string()
        );
        assert_eq!(live.read("cpu.shares")?, "512");
        assert_eq!(live.read("cpu.cfs_quota_us")?, "50000");
        assert_eq!(live.read("cpu.cfs_period_us")?, "100000");
    }
    assert_eq!(live.read("cpuset.cpus")?, "0");
    assert_eq!(live.read("cpuset.mems")?, "0");
    assert_eq!(live.read("pids.max")?, "32");
    if blkio_weight {
        let (f, want) = [
            ("blkio.weight", "500"),
            ("blkio.bfq.weight", "500"),
            ("io.bfq.weight", "500"),
            ("io.weight", "4950"),
        ]
        .into_iter()
        .find(|(f, _)| live.file(f).is_some())
        .ok_or("no weight file")?;
        let got = live.read(f)?;
        // bfq files print "default <w>" on some kernels
        assert!(got.split_whitespace().any(|w| w == want), "{f}: {got}");
    }
    if hugetlb {
        let f = if live.file("hugetlb.2MB.max").is_some() {
            "hugetlb.2MB.max"
        } else {
            "hugetlb.2MB.limit_in_bytes"
        };
        assert_eq!(live.read(f)?, (4u64 << 20).to_string());
    }

    let pid = live.spawn_child()?;
    live.cg.add_process(pid)?;
    assert_eq!(live.cg.processes()?, vec![pid]);
    for p in live.cg.paths() {
        let procs = std::fs::read_to_string(p.join("cgroup.procs"))?;
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "{p:?}: {procs}"
        );
    }

    // update on a running container: only the present field changes
    live.cg
        .apply(&resources(serde_json::json!({"pids": {"limit": 0}}))?)?;
    assert_eq!(live.read("pids.max")?, "max");
    let mem_file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(live.read(mem_file)?, (64u64 << 20).to_string());
    live.cg.apply(&resources(
        serde_json::json!({"memory": {"limit": 96 << 20, "swap": 192 << 20}}),
    )?)?;
    assert_eq!(live.read(mem_file)?, (96u64 << 20).to_string());
    live.cg.apply(&resources(
        serde_json::json!({"memory": {"limit": 32 << 20, "swap": 48 << 20}}),
    )?)?;
    assert_eq!(live.read(mem_file)?, (32u64 << 20).to_string());

    live.cg.freeze()?;
    assert!(live.cg.is_frozen()?);
    live.cg.thaw()?;
    assert!(!live.cg.is_frozen()?);

    let stats = live.cg.stats()?;
    assert_eq!(stats.pids.current, 1, "{stats:?}");
    assert_eq!(stats.pids.limit, u64::MAX);
    assert_eq!(stats.memory.usage.limit, 32 << 20);
    // v1 does not move charges with the task, so usage may be 0
    assert!(!stats.memory.raw.is_empty(), "{stats:?}");
    assert_eq!(stats.cpuset.cpus, vec![0]);
    if hugetlb {
        assert!(stats.hugetlb.contains_key("2MB"), "{:?}", stats.hugetlb);
    }
    let json = serde_json::to_value(&stats)?;
    assert!(json["memory"]["raw"].is_object());

    live.kill_child();
    live.cg.destroy()?;
    for p in live.cg.paths() {
        assert!(!p.exists(), "{p:?}");
    }
    live.cg.destroy()?; // idempotent
    Ok(())
}

#[test]
fn live_errors_name_unavailable_fields() -> TestResult {
    if !enabled() {
        return Ok(());
    }
    let live = Live::new()?;
    live.cg.create()?;
    let net = live
        .cg
        .apply(&resources(serde_json::json!({"network": {"classID": 1}}))?)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        net.starts_with("linux.resources.network.classID: net_cls controller is not available"),
        "{net}"
    );
    if live.cg.layout() != Layout::V2 {
        let err = live
            .cg
            .apply(&resources(
                serde_json::json!({"unified": {"memory.high": "1"}}),
            )?)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("linux.resources.unified.memory.high: "),
            "{err}"
        );
        if live.file("blkio.weight").is_none() && live.file("blkio.bfq.weight").is_none() {
            let err = live
                .cg
                .apply(&resources(serde_json::json!({"blockIO": {"weight": 500}}))?)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with("linux.resources.blockIO.weight: blkio.weight does not exist in "),
                "{err}"
            );
        }
        // device rules on v1: deny all, then allow /dev/null
        live.cg.apply(&resources(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        ]}))?)?;
        assert_eq!(live.read("devices.list")?, "c 1:3 rwm");
    }
    Ok(())
}

/// A second mount of this host's cgroup2 hierarchy (on the hybrid machines
/// it holds no v1-bound controller), presented to the manager as a pure v2
/// host through a fake mountinfo: exercises the v2 code live — directory
/// tree, cgroup.procs, cgroup.freeze, and the eBPF device filter.
struct V2Mount {
    dir: tempfile::TempDir,
    mountinfo: PathBuf,
}

impl V2Mount {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::Builder::new().prefix("berth-cg2-").tempdir()?;
        nix::mount::mount(
            Some("berth-test"),
            dir.path(),
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )?;
        let mountinfo = dir.path().with_extension("mountinfo");
        std::fs::write(
            &mountinfo,
            format!(
                "99 1 0:99 / {} rw,relatime - cgroup2 berth-test rw\n",
                dir.path().display()
            ),
        )?;
        Ok(V2Mount { dir, mountinfo })
    }
}

impl Drop for V2Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.mountinfo);
    }
}

#[test]
fn live_v2_freeze_and_device_filter() -> TestResult {
    if !enabled() {
        return Ok(());
    }
    let mnt = V2Mount::new()?;
    let roots = CgroupRoots {
        mountinfo: mnt.mountinfo.clone(),
        ..CgroupRoots::default()
    };
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let path = format!("/berth/test-v2-{}-{n}", std::process::id());
    let mut live = Live {
        cg: AnyCgroups::open(Path::new(&path), &roots)?,
        child: None,
    };
    assert_eq!(live.cg.layout(), Layout::V2);
    live.cg.create()?;
    let dir = live.cg.paths().remove(0);
    assert!(dir.starts_with(mnt.dir.path()) && dir.is_dir(), "{dir:?}");

    let pid = live.spawn_child()?;
    live.cg.add_process(pid)?;
    assert_eq!(live.cg.processes()?, vec![pid]);
    live.cg.freeze()?;
    assert!(live.cg.is_frozen()?);
    live.cg.thaw()?;
    assert!(!live.cg.is_frozen()?);
    live.kill_child();

    // Only /dev/null may be opened: an eBPF program attached to the cgroup.
    live.cg.apply(&resources(serde_json::json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}
        ]
    }))?)?;
    let procs = dir.join("cgroup.procs");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}; (echo x > /dev/null) && echo NULL-OK; (head -c1 /dev/zero >/dev/null) && echo ZERO-OK; true",
            procs.display()
        ))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NULL-OK"),
        "stdout {text:?} stderr {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ZERO-OK"),
        "/dev/zero was not denied: {text:?}"
    );
    drop(live);
    assert!(!dir.exists(), "{dir:?} left behind");
    Ok(())
}
