use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::error::{Context, Result, RuntimeError};

/// The namespaces of a container: which are new, which are joined by path.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    entries: Vec<(LinuxNamespaceType, Option<PathBuf>)>,
}

/// Every namespace type, in the order they are joined: user first (it
/// decides what the others may do), mount last but one, pid and time last
/// (they only take effect for children).
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
];

/// The name of a namespace under `/proc/<pid>/ns/`.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The clone/unshare flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(t as i32)
}

impl Namespaces {
    /// Read `linux.namespaces`, refusing duplicates and missing paths.
    pub fn from_spec(linux: &Linux) -> Result<Self> {
        let mut entries: Vec<(LinuxNamespaceType, Option<PathBuf>)> = Vec::new();
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            if entries.iter().any(|(t, _)| *t == ns.typ()) {
                return Err(RuntimeError::spec(
                    format!("linux.namespaces[{i}].type"),
                    format!("namespace {} is listed twice", proc_name(ns.typ())),
                ));
            }
            let path = ns.path().clone().filter(|p| !p.as_os_str().is_empty());
            if let Some(p) = &path
                && !p.exists()
            {
                return Err(RuntimeError::spec(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} does not exist", p.display()),
                ));
            }
            if ns.typ() == LinuxNamespaceType::Time && !Path::new("/proc/self/ns/time").exists() {
                return Err(RuntimeError::spec(
                    format!("linux.namespaces[{i}].type"),
                    "this kernel has no time namespaces",
                ));
            }
            entries.push((ns.typ(), path));
        }
        Ok(Namespaces { entries })
    }

    /// Whether a new namespace of this type is created.
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, p)| *x == t && p.is_none())
    }

    /// The path of a namespace of this type to join, if any.
    pub fn joins(&self, t: LinuxNamespaceType) -> Option<&Path> {
        self.entries
            .iter()
            .find(|(x, _)| *x == t)
            .and_then(|(_, p)| p.as_deref())
    }

    /// Whether the container has its own namespace of this type (new or joined).
    pub fn has_new_or_joined(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, _)| *x == t)
    }

    /// Whether any namespace is joined by path.
    pub fn joins_any(&self) -> bool {
        self.entries.iter().any(|(_, p)| p.is_some())
    }

    /// Flags for namespaces created at clone time in the fast path. The
    /// cgroup namespace is left out: it must be created after the process
    /// has moved into its cgroup, so that the namespace is rooted there.
    pub fn clone_flags(&self) -> CloneFlags {
        let mut flags = CloneFlags::empty();
        for (t, p) in &self.entries {
            if p.is_none() && *t != LinuxNamespaceType::Cgroup {
                flags |= flag(*t);
            }
        }
        flags
    }

    /// Flags of the namespaces created with unshare in the general path
    /// (everything new except user, pid-related ordering handled by caller).
    pub fn unshare_flags(&self) -> CloneFlags {
        let mut flags = CloneFlags::empty();
        for (t, p) in &self.entries {
            if p.is_none() && *t != LinuxNamespaceType::User && *t != LinuxNamespaceType::Cgroup {
                flags |= flag(*t);
            }
        }
        flags
    }

    /// Whether everything can be created by one clone3 call: no time
    /// namespace (whose offsets must be written before its first process
    /// exists), and nothing joined but namespaces the runtime may enter
    /// itself around that call (see [`Namespaces::joinable_around_clone`]).
    pub fn fast_path(&self) -> bool {
        !self.creates(LinuxNamespaceType::Time)
            && self
                .entries
                .iter()
                .all(|(t, p)| p.is_none() || self.joinable_around_clone(*t))
    }

    /// Whether the runtime can join a namespace of type `t` itself for the
    /// clone of the init (which inherits it) and go back to its own right
    /// after ([`enter`]), as a `--network container:` or bridge container
    /// joins its network namespace: network, IPC and UTS namespaces, which
    /// hold nothing of the runtime's own, when no user namespace is made or
    /// joined (one would change who may join what, and in which order).
    fn joinable_around_clone(&self, t: LinuxNamespaceType) -> bool {
        matches!(
            t,
            LinuxNamespaceType::Network | LinuxNamespaceType::Ipc | LinuxNamespaceType::Uts
        ) && !self.has_new_or_joined(LinuxNamespaceType::User)
    }

    /// Open the namespace files to join, in [`JOIN_ORDER`].
    pub fn open_joined(&self) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
        let mut out = Vec::new();
        for t in JOIN_ORDER {
            if let Some(p) = self.joins(t) {
                let fd = std::fs::File::open(p)
                    .with_context(|| format!("open namespace {}", p.display()))?;
                out.push((t, OwnedFd::from(fd)));
            }
        }
        Ok(out)
    }
}

/// The calling thread's own namespaces, kept while it is in others (see
/// [`enter`]); dropped, it goes back to them.
#[derive(Debug)]
pub struct Entered {
    own: Vec<(LinuxNamespaceType, OwnedFd)>,
}

/// Moves the calling thread into the namespaces `joined` (opened by
/// [`Namespaces::open_joined`]): what it creates from now on is created in
/// them. [`Entered::leave`] goes back.
pub fn enter(joined: &[(LinuxNamespaceType, OwnedFd)]) -> Result<Entered> {
    let mut entered = Entered { own: Vec::new() };
    for (t, fd) in joined {
        let path = format!("/proc/thread-self/ns/{}", proc_name(*t));
        let own = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
        entered.own.push((*t, own.into()));
        join(*t, fd)?;
    }
    Ok(entered)
}

impl Entered {
    /// Goes back to the namespaces the thread was in before [`enter`].
    pub fn leave(mut self) -> Result<()> {
        while let Some((t, fd)) = self.own.pop() {
            join(t, &fd)?;
        }
        Ok(())
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        while let Some((t, fd)) = self.own.pop() {
            if let Err(e) = join(t, &fd) {
                tracing::warn!("go back to this process's own namespace: {e}");
            }
        }
    }
}

/// Join the namespace behind `fd`.
pub fn join(t: LinuxNamespaceType, fd: impl AsFd) -> Result<()> {
    nix::sched::setns(fd, flag(t)).with_context(|| format!("join {} namespace", proc_name(t)))
}

/// The namespaces of a running process, as open files, for `exec`: every
/// namespace of `pid` that differs from ours, in [`JOIN_ORDER`].
pub fn of_process(pid: i32) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = Vec::new();
    for t in JOIN_ORDER {
        let name = proc_name(t);
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = std::fs::File::open(&theirs).with_context(|| format!("open {theirs}"))?;
        out.push((t, OwnedFd::from(fd)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns_of_this_thread() -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
    }

    /// `enter` moves this thread into a joined network namespace, `leave`
    /// (and a drop) back into its own: the runtime must not stay in a
    /// container's namespace after the clone of its init.
    #[test]
    fn enter_then_leave_comes_back() {
        if std::env::var("BERTH_TEST_ROOT").as_deref() != Ok("1") {
            return;
        }
        // A namespace of its own, made by a thread that then ends.
        let other: OwnedFd = std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
            OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open"))
        })
        .join()
        .expect("thread");
        std::thread::spawn(move || {
            let own = netns_of_this_thread();
            let joined = vec![(LinuxNamespaceType::Network, other)];
            let entered = enter(&joined).expect("enter");
            let inside = netns_of_this_thread();
            assert_ne!(inside, own);
            entered.leave().expect("leave");
            assert_eq!(netns_of_this_thread(), own);
            drop(enter(&joined).expect("enter again"));
            assert_eq!(netns_of_this_thread(), own, "a drop goes back too");
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn joined_network_keeps_the_fast_path_unless_a_user_namespace_is_involved() {
        let ns = |entries: Vec<(LinuxNamespaceType, Option<PathBuf>)>| Namespaces { entries };
        let net = (
            LinuxNamespaceType::Network,
            Some(PathBuf::from("/run/netns/x")),
        );
        let pid = (LinuxNamespaceType::Pid, None);
        assert!(ns(vec![net.clone(), pid.clone()]).fast_path());
        assert!(!ns(vec![net.clone(), (LinuxNamespaceType::User, None)]).fast_path());
        let joined_pid = (
            LinuxNamespaceType::Pid,
            Some(PathBuf::from("/proc/1/ns/pid")),
        );
        assert!(!ns(vec![net, joined_pid]).fast_path());
        assert!(!ns(vec![(LinuxNamespaceType::Time, None)]).fast_path());
    }
}
