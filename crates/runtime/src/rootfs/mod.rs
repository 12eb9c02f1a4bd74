//! The container's root filesystem.
//!
//! [`prepare`] runs in the container's init before pivot_root, in its own
//! mount namespace: it makes every host mount a slave (nothing propagates
//! back), binds the rootfs onto itself, performs config.json's mounts with
//! targets resolved inside the rootfs, creates /dev, masks and
//! write-protects paths. [`pivot`] then switches root, and [`finish`] applies
//! root.readonly and rootfsPropagation.

/// Device nodes and /dev symlinks.
pub mod devices;
/// fd-based mount primitives.
pub mod mount;
/// Mount option parsing.
pub mod options;
/// Path resolution inside the rootfs.
pub mod resolve;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{Mount, Spec};
use rustix::fs::{FileType, OFlags};

use crate::error::{Context, Result, RuntimeError};

/// What [`prepare`] needs besides the spec.
pub struct RootfsPlan<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// Absolute rootfs path on the host.
    pub rootfs: &'a Path,
    /// Absolute bundle path (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// The container's cgroup directories: (name under /sys/fs/cgroup, host dir).
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    /// Whether the host is pure cgroup v2 and the container has a cgroup
    /// namespace (then cgroup2 is mounted fresh).
    pub fresh_cgroup2: bool,
    /// Whether the container runs in a new user namespace.
    pub userns: bool,
    /// Open a pty for the process (process.terminal), with this size.
    pub terminal: Option<Option<(u16, u16)>>,
    /// Idmapped trees made by the runtime (see [`idmapped_trees`]), one per
    /// `idmap` bind mount, in config.json order.
    pub idmapped: std::cell::RefCell<std::collections::VecDeque<OwnedFd>>,
    /// Called once before the first cgroup mount (or after all mounts):
    /// the init joins its cgroups only then (see `InitConfig::late_go`).
    pub join_cgroups: Option<&'a dyn Fn() -> Result<()>>,
}

impl std::fmt::Debug for RootfsPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootfsPlan")
            .field("rootfs", &self.rootfs)
            .field("bundle", &self.bundle)
            .field("cgroup_dirs", &self.cgroup_dirs)
            .finish_non_exhaustive()
    }
}

/// The detached, idmapped trees for every bind mount with `idmap` or
/// `ridmap` in config.json, in order, mapped through the user namespace
/// behind `userns`. Made on the host by the runtime and sent to the init.
pub fn idmapped_trees(spec: &Spec, bundle: &Path, userns: BorrowedFd<'_>) -> Result<Vec<OwnedFd>> {
    let mut out = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let o = options::parse(m.options().as_deref().unwrap_or(&[]));
        if !o.idmap || !is_bind(m) {
            continue;
        }
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_absolute() {
            src
        } else {
            bundle.join(src)
        };
        let recursive = o.recursive || m.options().iter().flatten().any(|x| x == "ridmap");
        let (attrs, _) = mount::attrs_of(&o);
        out.push(
            mount::idmapped_tree(&src, recursive, attrs, userns).map_err(|e| {
                RuntimeError::spec(
                    format!("mounts[{i}].options"),
                    format!("idmap {}: {e}", src.display()),
                )
            })?,
        );
    }
    Ok(out)
}

/// Whether config.json has an idmapped bind mount.
pub fn has_idmapped(spec: &Spec) -> bool {
    spec.mounts()
        .iter()
        .flatten()
        .any(|m| is_bind(m) && options::parse(m.options().as_deref().unwrap_or(&[])).idmap)
}

/// Propagation flags of `linux.rootfsPropagation`.
pub fn rootfs_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
    else {
        return Ok(None);
    };
    let f = match p.as_str() {
        "" => return Ok(None),
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(RuntimeError::spec(
                "linux.rootfsPropagation",
                format!("{other:?} is not a propagation mode"),
            ));
        }
    };
    Ok(Some(f))
}

/// Set up the root filesystem up to (not including) pivot_root. Returns
/// the console pty when the process has a terminal.
pub fn prepare(plan: &RootfsPlan<'_>) -> Result<Option<crate::process::console::Pty>> {
    // Nothing we mount may propagate to the host.
    let initial = match rootfs_propagation(plan.spec)? {
        Some(f) if f.contains(MsFlags::MS_PRIVATE) => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount::propagate("/", initial)?;
    nix::mount::mount(
        Some(plan.rootfs),
        plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind the rootfs {} onto itself", plan.rootfs.display()))?;
    let root: OwnedFd = rustix::fs::open(
        plan.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .with_context(|| format!("open rootfs {}", plan.rootfs.display()))?;

    let mounts = plan.spec.mounts().as_deref().unwrap_or(&[]);
    let mut dev_bound = false;
    let mut join = plan.join_cgroups;
    for (i, m) in mounts.iter().enumerate() {
        if m.destination() == Path::new("/dev") && is_bind(m) {
            dev_bound = true;
        }
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"))
            && let Some(f) = join.take()
        {
            f()?;
        }
        mount_one(plan, root.as_fd(), i, m)?;
    }
    if let Some(f) = join.take() {
        f()?;
    }
    if !dev_bound {
        let linux = plan.spec.linux().as_ref();
        let mut devs = devices::defaults();
        for (i, d) in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            devs.push(devices::from_spec(i, d)?);
        }
        for d in &devs {
            devices::create(root.as_fd(), d, plan.userns)?;
        }
        devices::symlinks(root.as_fd())?;
    }
    let pty = match plan.terminal {
        Some(size) => {
            let pty = crate::process::console::open_in(root.as_fd(), size)?;
            devices::console(root.as_fd(), pty.slave.as_fd())?;
            Some(pty)
        }
        None => None,
    };
    if let Some(linux) = plan.spec.linux() {
        let null = std::cell::OnceCell::new();
        for p in linux.masked_paths().iter().flatten() {
            mask(root.as_fd(), Path::new(p), &null)?;
        }
        for p in linux.readonly_paths().iter().flatten() {
            readonly(root.as_fd(), Path::new(p))?;
        }
    }
    Ok(pty)
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// Files under /proc a container may bind over (lxcfs-style), as runc allows.
const PROC_BIND_ALLOWED: [&str; 9] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/sys/kernel/ns_last_pid",
];

fn mount_one(plan: &RootfsPlan<'_>, root: BorrowedFd<'_>, i: usize, m: &Mount) -> Result<()> {
    let field = |f: &str| format!("mounts[{i}].{f}");
    let dest = m.destination();
    let o = options::parse(m.options().as_deref().unwrap_or(&[]));
    let bind = is_bind(m);
    let fstype = m
        .typ()
        .clone()
        .unwrap_or_else(|| if bind { "bind".into() } else { "none".into() });

    // CVE-2019-16884: nothing but procfs (and a few known files) over /proc.
    let clean = normalize(dest);
    if clean.starts_with("/proc") {
        let ok = (clean == Path::new("/proc") && fstype == "proc")
            || (bind && PROC_BIND_ALLOWED.iter().any(|p| clean == Path::new(p)));
        if !ok {
            return Err(RuntimeError::spec(
                field("destination"),
                format!(
                    "{} may not be mounted over (only procfs may be mounted on /proc)",
                    dest.display()
                ),
            ));
        }
    }
    if o.idmap && !plan.userns {
        return Err(RuntimeError::spec(
            field("options"),
            "idmap mounts need the container to have a user namespace",
        ));
    }

    if bind {
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_absolute() {
            src
        } else {
            plan.bundle.join(src)
        };
        let meta = std::fs::metadata(&src)
            .map_err(|e| RuntimeError::spec(field("source"), format!("{}: {e}", src.display())))?;
        let target = if meta.is_dir() {
            resolve::mkdir_all(root, dest)?
        } else {
            resolve::create_file_following(root, dest)?
        };
        let (attrs, rec) = mount::attrs_of(&o);
        if o.idmap {
            let tree = plan.idmapped.borrow_mut().pop_front().ok_or_else(|| {
                RuntimeError::spec(
                    field("options"),
                    "no idmapped tree was prepared for this mount",
                )
            })?;
            mount::attach(tree.as_fd(), target.as_fd())?;
        } else {
            mount::bind(
                rustix::fs::CWD,
                &src,
                target.as_fd(),
                o.recursive,
                attrs,
                rec,
                None,
            )
            .map_err(|e| {
                RuntimeError::spec(
                    field("source"),
                    format!("bind {} on {}: {e}", src.display(), dest.display()),
                )
            })?;
        }
        for p in &o.propagation {
            let t = resolve::open(root, dest, OFlags::PATH)
                .map_err(|e| RuntimeError::io(format!("reopen {}", dest.display()), e.into()))?;
            mount::propagate(&resolve::fd_path(&t), *p)?;
        }
        return Ok(());
    }

    if o.idmap {
        return Err(RuntimeError::spec(
            field("options"),
            format!("idmap is only supported on bind mounts, not {fstype}"),
        ));
    }
    let target = resolve::mkdir_all(root, dest)?;
    if fstype == "cgroup" || fstype == "cgroup2" {
        return mount_cgroup(plan, root, &target, dest, &o);
    }
    if !o.recursive_attrs.is_empty() {
        return Err(RuntimeError::spec(
            field("options"),
            format!(
                "{} are only supported on bind mounts",
                o.recursive_attrs.join(",")
            ),
        ));
    }
    let source = m.source().as_deref();
    mount::mount_fs(source, target.as_fd(), &fstype, o.flags, &o.data).map_err(|e| {
        RuntimeError::spec(
            field("type"),
            format!("mount {fstype} on {}: {e}", dest.display()),
        )
    })?;
    for p in &o.propagation {
        let t = resolve::open(root, dest, OFlags::PATH)
            .map_err(|e| RuntimeError::io(format!("reopen {}", dest.display()), e.into()))?;
        mount::propagate(&resolve::fd_path(&t), *p)?;
    }
    Ok(())
}

/// A cgroup mount: cgroup2 fresh when the container owns a cgroup namespace
/// on a pure v2 host; otherwise a tmpfs with the container's own cgroup
/// directories bound in (v1 and hybrid), as runc shows them.
fn mount_cgroup(
    plan: &RootfsPlan<'_>,
    root: BorrowedFd<'_>,
    target: &OwnedFd,
    dest: &Path,
    o: &options::MountOptions,
) -> Result<()> {
    let ro = o.flags.contains(MsFlags::MS_RDONLY);
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    if plan.fresh_cgroup2 {
        return mount::mount_fs(None, target.as_fd(), "cgroup2", o.flags | base, "");
    }
    if plan.cgroup_dirs.len() == 1 && plan.cgroup_dirs[0].0.is_empty() {
        // Pure v2 without a cgroup namespace: bind the container's own dir.
        let attrs = if ro {
            mount::Attrs::readonly()
        } else {
            mount::Attrs::default()
        };
        return mount::bind(
            rustix::fs::CWD,
            &plan.cgroup_dirs[0].1,
            target.as_fd(),
            false,
            attrs,
            mount::Attrs::default(),
            None,
        );
    }
    mount::mount_fs(None, target.as_fd(), "tmpfs", base, "mode=755")?;
    for (name, host) in &plan.cgroup_dirs {
        if name.is_empty() || !host.is_dir() {
            continue;
        }
        let sub = resolve::mkdir_all(root, &dest.join(name))?;
        let attrs = if ro {
            mount::Attrs::readonly()
        } else {
            mount::Attrs::default()
        };
        mount::bind(
            rustix::fs::CWD,
            host,
            sub.as_fd(),
            false,
            attrs,
            mount::Attrs::default(),
            None,
        )?;
    }
    if ro {
        let t = resolve::open(root, dest, OFlags::PATH)
            .map_err(|e| RuntimeError::io(format!("reopen {}", dest.display()), e.into()))?;
        nix::mount::mount(
            None::<&str>,
            resolve::fd_path(&t).as_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            None::<&str>,
        )
        .context("remount the cgroup tmpfs read-only")?;
    }
    Ok(())
}

/// Lexically clean a container path (no filesystem access).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Mask a path: /dev/null over files, an empty read-only tmpfs over
/// directories. The /dev/null used is checked to be the real null device
/// (CVE-2025-31133: a container-made symlink or other file at /dev/null
/// would otherwise be bound over the masked path).
fn mask(root: BorrowedFd<'_>, path: &Path, null: &std::cell::OnceCell<OwnedFd>) -> Result<()> {
    let target = match resolve::open(root, path, OFlags::PATH | OFlags::NOFOLLOW) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(RuntimeError::io(
                format!("masked path {}", path.display()),
                e.into(),
            ));
        }
    };
    let st = rustix::fs::fstat(target.as_fd())
        .with_context(|| format!("stat masked path {}", path.display()))?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return mount::mount_fs(
            None,
            target.as_fd(),
            "tmpfs",
            MsFlags::MS_RDONLY,
            "size=0,mode=755",
        )
        .map_err(|e| RuntimeError::spec("linux.maskedPaths", format!("{}: {e}", path.display())));
    }
    let null = match null.get() {
        Some(fd) => fd,
        None => {
            let fd = verified_null(root)?;
            null.get_or_init(|| fd)
        }
    };
    mount::bind_fd(null.as_fd(), target.as_fd())
        .map_err(|e| RuntimeError::spec("linux.maskedPaths", format!("{}: {e}", path.display())))
}

/// The container's /dev/null, opened without following links and checked
/// to be the 1:3 character device (opened once, for every masked file).
fn verified_null(root: BorrowedFd<'_>) -> Result<OwnedFd> {
    let null = resolve::open(
        root,
        Path::new("/dev/null"),
        OFlags::PATH | OFlags::NOFOLLOW,
    )
    .map_err(|e| RuntimeError::io("open /dev/null in the container", e.into()))?;
    let nst = rustix::fs::fstat(null.as_fd()).context("stat /dev/null")?;
    let rdev = nst.st_rdev;
    if FileType::from_raw_mode(nst.st_mode) != FileType::CharacterDevice
        || rustix::fs::major(rdev) != 1
        || rustix::fs::minor(rdev) != 3
    {
        return Err(RuntimeError::InvalidArgument(
            "/dev/null in the container is not the null device (1:3); refusing to mask with it"
                .into(),
        ));
    }
    Ok(null)
}

/// Make a path read-only (recursively).
fn readonly(root: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let target = match resolve::open(root, path, OFlags::PATH) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(RuntimeError::io(
                format!("read-only path {}", path.display()),
                e.into(),
            ));
        }
    };
    mount::make_readonly_recursive(target.as_fd())
        .map_err(|e| RuntimeError::spec("linux.readonlyPaths", format!("{}: {e}", path.display())))
}

/// Switch the root to `rootfs` with pivot_root (or, with `no_pivot`, by
/// moving the rootfs over / and chroot, for ramfs roots).
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).with_context(|| format!("chdir {}", rootfs.display()))?;
    if no_pivot {
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .context("move the rootfs onto / (--no-pivot)")?;
        nix::unistd::chroot(".").context("chroot (--no-pivot)")?;
    } else {
        nix::unistd::pivot_root(".", ".").context("pivot_root")?;
        // The old root now sits on top of the new one: detach it, after
        // making sure the unmount cannot propagate to the host.
        mount::propagate(".", MsFlags::MS_SLAVE | MsFlags::MS_REC)?;
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
            .context("detach the old root")?;
    }
    nix::unistd::chdir("/").context("chdir /")
}

/// After pivot_root: read-only root and rootfs propagation.
pub fn finish(spec: &Spec) -> Result<()> {
    if let Some(p) = rootfs_propagation(spec)? {
        mount::propagate("/", p)?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        // Keep the flags the kernel locks in a user namespace.
        let locked = nix::sys::statvfs::statvfs("/").context("statvfs /")?;
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        use nix::sys::statvfs::FsFlags;
        for (st, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if locked.flags().contains(st) {
                flags |= ms;
            }
        }
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(|e| {
            RuntimeError::spec("root.readonly", format!("remount / read-only: {e}"))
        })?;
    }
    Ok(())
}
