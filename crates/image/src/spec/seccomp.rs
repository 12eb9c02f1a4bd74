//! Seccomp profiles in Docker's format (`docker run --security-opt
//! seccomp=<file>`), Docker's default profile as data, and their conversion
//! to the OCI `linux.seccomp` for one container: rules are kept or dropped
//! by the container's capabilities, the native architecture and the
//! running kernel's version (`includes`/`excludes`), and `archMap` is
//! narrowed to the native architecture and its sub-architectures.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Serialize};

use super::error::{Result, SpecError};

/// A seccomp profile as Docker reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    /// Action for syscalls no rule matches. Absent with no rules: no filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<LinuxSeccompAction>,
    /// errno for an `SCMP_ACT_ERRNO` default action (EPERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures, when `archMap` is not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    /// Per native architecture, the architectures the filter covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMapEntry>,
    /// Kernel filter flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<LinuxSeccompFilterFlag>>,
    /// Seccomp agent socket for `SCMP_ACT_NOTIFY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<std::path::PathBuf>,
    /// Opaque data passed to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

/// One `archMap` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchMapEntry {
    /// The native architecture this entry applies to.
    pub architecture: Arch,
    /// The other ABIs it runs (x86 and x32 on x86_64, arm on aarch64).
    #[serde(default, rename = "subArchitectures")]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One rule of a Docker profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// A single syscall (old format); exclusive with `names`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The syscalls this rule is for.
    #[serde(default)]
    pub names: Vec<String>,
    /// What happens when the rule matches.
    pub action: LinuxSeccompAction,
    /// errno for `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument conditions, ANDed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<LinuxSeccompArg>>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The rule applies only when all of these hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Filter>,
    /// The rule is dropped when any of these holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Filter>,
}

/// Conditions on the container for a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_…`) of the container's bounding set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// Native architectures by Go/libseccomp name (`amd64`, `arm64`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    /// A kernel version, `major.minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// Where the filter will run: the container's capabilities, the native
/// architecture (Rust's `std::env::consts::ARCH` name) and kernel version.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Capabilities of the container's bounding set.
    pub caps: &'a [String],
    /// `x86_64`, `aarch64`, … as `std::env::consts::ARCH`.
    pub arch: &'a str,
    /// (major, minor) of the running kernel.
    pub kernel: (u32, u32),
}

impl Target<'_> {
    /// This host: native architecture and the running kernel.
    pub fn host(caps: &[String]) -> Target<'_> {
        Target {
            caps,
            arch: std::env::consts::ARCH,
            kernel: running_kernel(),
        }
    }
}

/// (major, minor) of `uname -r`; (0, 0) if it cannot be parsed. Read once.
pub fn running_kernel() -> (u32, u32) {
    static KERNEL: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| parse_kernel(r.trim()))
            .unwrap_or((0, 0))
    })
}

/// Docker's default profile for `target` as the runtime gets it: filtered
/// for the target, without the syscalls this host's libseccomp does not
/// know. Nearly every container wants it for the same capabilities, twice
/// (create's check and start), so the last few results are kept.
pub fn docker_default_for(target: &Target<'_>) -> Result<Option<LinuxSeccomp>> {
    type Key = (Vec<String>, String, (u32, u32));
    static KEPT: std::sync::Mutex<Vec<(Key, Option<LinuxSeccomp>)>> =
        std::sync::Mutex::new(Vec::new());
    const KEEP: usize = 8;
    let key: Key = (target.caps.to_vec(), target.arch.to_owned(), target.kernel);
    {
        let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, v)) = kept.iter().find(|(k, _)| *k == key) {
            return Ok(v.clone());
        }
    }
    let v = SeccompProfile::docker_default()
        .to_oci(target)?
        .map(without_unknown_syscalls);
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() >= KEEP {
        kept.remove(0);
    }
    kept.push((key, v.clone()));
    Ok(v)
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| {
        let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })?;
    Some((major, minor))
}

/// libseccomp's (Go's) name and the seccomp arch of a Rust target arch.
fn native_arch(arch: &str) -> Option<(&'static str, Arch)> {
    Some(match arch {
        "x86_64" => ("amd64", Arch::ScmpArchX86_64),
        "x86" => ("x86", Arch::ScmpArchX86),
        "aarch64" => ("arm64", Arch::ScmpArchAarch64),
        "arm" => ("arm", Arch::ScmpArchArm),
        "riscv64" => ("riscv64", Arch::ScmpArchRiscv64),
        "s390x" => ("s390x", Arch::ScmpArchS390x),
        "powerpc64" => ("ppc64le", Arch::ScmpArchPpc64le),
        "mips64" => ("mips64", Arch::ScmpArchMips64),
        _ => return None,
    })
}

impl SeccompProfile {
    /// Parse a profile in Docker's JSON format (what the docker CLI sends
    /// as `seccomp=<profile text>`).
    pub fn from_json(text: &str) -> Result<SeccompProfile> {
        Ok(serde_json::from_str(text)?)
    }

    /// The OCI seccomp config for a container on `target`; `None` when the
    /// profile has neither a default action nor rules (Docker: no filter).
    pub fn to_oci(&self, target: &Target<'_>) -> Result<Option<LinuxSeccomp>> {
        let err = |field: String, reason: &str| SpecError::Seccomp {
            field,
            reason: reason.to_string(),
        };
        let Some(default_action) = self.default_action else {
            if self.syscalls.is_empty() {
                return Ok(None);
            }
            return Err(err("defaultAction".into(), "missing"));
        };
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(err(
                "archMap".into(),
                "both 'architectures' and 'archMap' are specified, use either 'architectures' or 'archMap'",
            ));
        }
        let native = native_arch(target.arch);
        let mut arches = self.architectures.clone();
        if let Some((_, native)) = native {
            for m in self.arch_map.iter().filter(|m| m.architecture == native) {
                arches.push(m.architecture);
                arches.extend(m.sub_architectures.iter().flatten().copied());
            }
        }
        let arch_name = native.map_or(target.arch, |(n, _)| n);
        let kernel_at_least = |field: String, v: &str| -> Result<bool> {
            let want = parse_kernel(v).ok_or_else(|| {
                err(
                    field,
                    &format!("{v:?} is not a kernel version (major.minor)"),
                )
            })?;
            Ok(target.kernel >= want)
        };
        let has_cap = |c: &String| target.caps.contains(c);

        let mut syscalls = Vec::new();
        for (i, rule) in self.syscalls.iter().enumerate() {
            let field = format!("syscalls[{i}]");
            let mut names = rule.names.clone();
            if let Some(name) = &rule.name {
                if !names.is_empty() {
                    return Err(err(format!("{field}.name"), "use either 'name' or 'names'"));
                }
                names.push(name.clone());
            }
            if let Some(ex) = &rule.excludes {
                if ex.arches.iter().any(|a| a == arch_name) || ex.caps.iter().any(has_cap) {
                    continue;
                }
                if let Some(v) = &ex.min_kernel
                    && kernel_at_least(format!("{field}.excludes.minKernel"), v)?
                {
                    continue;
                }
            }
            if let Some(inc) = &rule.includes {
                if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == arch_name) {
                    continue;
                }
                if !inc.caps.iter().all(has_cap) {
                    continue;
                }
                if let Some(v) = &inc.min_kernel
                    && !kernel_at_least(format!("{field}.includes.minKernel"), v)?
                {
                    continue;
                }
            }
            if names.is_empty() {
                return Err(err(
                    format!("{field}.names"),
                    "must list at least one syscall",
                ));
            }
            let mut call = LinuxSyscall::default();
            call.set_names(names);
            call.set_action(rule.action);
            call.set_errno_ret(rule.errno_ret);
            call.set_args(rule.args.clone());
            syscalls.push(call);
        }

        let mut out = LinuxSeccomp::default();
        out.set_default_action(default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures((!arches.is_empty()).then_some(arches));
        out.set_flags(self.flags.clone());
        out.set_listener_path(self.listener_path.clone());
        out.set_listener_metadata(self.listener_metadata.clone());
        out.set_syscalls(Some(syscalls));
        Ok(Some(out))
    }

    /// Docker's default profile: deny by default with EPERM, an allow-list
    /// of ordinary syscalls, and the privileged ones only for containers
    /// holding the capability that makes them meaningful.
    pub fn docker_default() -> SeccompProfile {
        let mut syscalls = vec![allow(ALLOWED)];
        for (names, cap) in BY_CAPABILITY {
            let mut r = allow(names);
            r.includes = Some(Filter {
                caps: vec![cap.to_string()],
                ..Filter::default()
            });
            syscalls.push(r);
        }
        for (names, arches) in BY_ARCH {
            let mut r = allow(names);
            r.includes = Some(Filter {
                arches: arches.split_whitespace().map(str::to_string).collect(),
                ..Filter::default()
            });
            syscalls.push(r);
        }
        // ptrace and cross-process memory access are safe from 4.8 on
        // (seccomp is checked again after a tracer changes the syscall).
        let mut r = allow("ptrace process_vm_readv process_vm_writev");
        r.includes = Some(Filter {
            min_kernel: Some("4.8".into()),
            ..Filter::default()
        });
        syscalls.push(r);
        // socket(2), except AF_VSOCK (40).
        syscalls.push(with_args(
            allow("socket"),
            vec![arg(0, 40, 0, LinuxSeccompOperator::ScmpCmpNe)],
        ));
        // personality(2) only for the harmless personas: PER_LINUX,
        // PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query.
        for persona in [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
            syscalls.push(with_args(
                allow("personality"),
                vec![arg(0, persona, 0, LinuxSeccompOperator::ScmpCmpEq)],
            ));
        }
        // Without CAP_SYS_ADMIN, clone(2) may not create namespaces (the
        // flags argument is second on s390), and clone3 (whose flags seccomp
        // cannot see) fails with ENOSYS so that libc falls back to clone.
        let mut r = with_args(
            allow("clone"),
            vec![arg(0, NS_FLAGS, 0, LinuxSeccompOperator::ScmpCmpMaskedEq)],
        );
        r.excludes = Some(Filter {
            caps: vec![SYS_ADMIN.into()],
            arches: vec!["s390".into(), "s390x".into()],
            ..Filter::default()
        });
        syscalls.push(r);
        let mut r = with_args(
            allow("clone"),
            vec![arg(1, NS_FLAGS, 0, LinuxSeccompOperator::ScmpCmpMaskedEq)],
        );
        r.includes = Some(Filter {
            arches: vec!["s390".into(), "s390x".into()],
            ..Filter::default()
        });
        r.excludes = Some(Filter {
            caps: vec![SYS_ADMIN.into()],
            ..Filter::default()
        });
        syscalls.push(r);
        let mut r = allow("clone3");
        r.action = LinuxSeccompAction::ScmpActErrno;
        r.errno_ret = Some(libc::ENOSYS as u32);
        r.excludes = Some(Filter {
            caps: vec![SYS_ADMIN.into()],
            ..Filter::default()
        });
        syscalls.push(r);

        use Arch::*;
        let map = |a: Arch, subs: &[Arch]| ArchMapEntry {
            architecture: a,
            sub_architectures: Some(subs.to_vec()),
        };
        SeccompProfile {
            default_action: Some(LinuxSeccompAction::ScmpActErrno),
            default_errno_ret: Some(libc::EPERM as u32),
            architectures: Vec::new(),
            arch_map: vec![
                map(ScmpArchX86_64, &[ScmpArchX86, ScmpArchX32]),
                map(ScmpArchAarch64, &[ScmpArchArm]),
                map(ScmpArchMips64, &[ScmpArchMips, ScmpArchMips64n32]),
                map(ScmpArchMips64n32, &[ScmpArchMips, ScmpArchMips64]),
                map(ScmpArchMipsel64, &[ScmpArchMipsel, ScmpArchMipsel64n32]),
                map(ScmpArchMipsel64n32, &[ScmpArchMipsel, ScmpArchMipsel64]),
                map(ScmpArchS390x, &[ScmpArchS390]),
                map(ScmpArchRiscv64, &[]),
            ],
            flags: None,
            listener_path: None,
            listener_metadata: None,
            syscalls,
        }
    }
}

/// Drop syscall names this host's libseccomp does not know (the default
/// profile lists syscalls newer than some libseccomp releases); the runtime
/// would skip them with a warning on every container. Such syscalls still
/// fail with ENOSYS, not EPERM, through the runtime's ENOSYS stub.
pub fn without_unknown_syscalls(mut s: LinuxSeccomp) -> LinuxSeccomp {
    let known = |n: &String| libseccomp::ScmpSyscall::from_name(n).is_ok();
    let calls: Vec<LinuxSyscall> = s
        .syscalls()
        .iter()
        .flatten()
        .filter_map(|c| {
            let names: Vec<String> = c.names().iter().filter(|n| known(n)).cloned().collect();
            if names.is_empty() {
                return None;
            }
            let mut c = c.clone();
            c.set_names(names);
            Some(c)
        })
        .collect();
    s.set_syscalls(Some(calls));
    s
}

const SYS_ADMIN: &str = "CAP_SYS_ADMIN";

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
const NS_FLAGS: u64 = 0x7E02_0000;

fn allow(names: &str) -> SyscallRule {
    SyscallRule {
        name: None,
        names: names.split_whitespace().map(str::to_string).collect(),
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: None,
        comment: None,
        includes: None,
        excludes: None,
    }
}

fn with_args(mut r: SyscallRule, args: Vec<LinuxSeccompArg>) -> SyscallRule {
    r.args = Some(args);
    r
}

fn arg(index: usize, value: u64, value_two: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    if value_two != 0 {
        b = b.value_two(value_two);
    }
    // Every field is set: the builder cannot fail.
    b.build().unwrap_or_default()
}

/// Syscalls every container may make (Docker's allow-list; names unknown on
/// an architecture are skipped when the filter is compiled).
const ALLOWED: &str = "
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
    epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
    exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
    fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
    flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
    fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv
    futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
    geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
    getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
    getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
    gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init
    inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
    io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill
    landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
    lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
    lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier
    memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap
    mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
    mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd
    msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
    openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
    pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
    process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
    readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
    remap_file_pages removexattr removexattrat rename renameat renameat2 restart_syscall
    rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
    rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
    sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
    sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
    setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs
    statfs64 statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee
    tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
    timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
    timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname
    unlink unlinkat uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4
    waitid waitpid write writev
";

/// Syscalls allowed only to a container holding a capability.
const BY_CAPABILITY: [(&str, &str); 14] = [
    ("open_by_handle_at", "CAP_DAC_READ_SEARCH"),
    (
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount \
         mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname \
         sethostname setns syslog umount umount2 unshare",
        SYS_ADMIN,
    ),
    ("reboot", "CAP_SYS_BOOT"),
    ("chroot", "CAP_SYS_CHROOT"),
    ("delete_module init_module finit_module", "CAP_SYS_MODULE"),
    ("acct", "CAP_SYS_PACCT"),
    (
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
        "CAP_SYS_PTRACE",
    ),
    ("iopl ioperm", "CAP_SYS_RAWIO"),
    (
        "settimeofday stime clock_settime clock_settime64",
        "CAP_SYS_TIME",
    ),
    ("vhangup", "CAP_SYS_TTY_CONFIG"),
    (
        "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
        "CAP_SYS_NICE",
    ),
    ("syslog", "CAP_SYSLOG"),
    ("bpf", "CAP_BPF"),
    ("perf_event_open", "CAP_PERFMON"),
];

/// Architecture-specific syscalls, by native architecture names.
const BY_ARCH: [(&str, &str); 6] = [
    ("sync_file_range2 swapcontext", "ppc64le"),
    (
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
        "arm arm64",
    ),
    ("arch_prctl", "amd64 x32"),
    ("modify_ldt", "amd64 x32 x86"),
    (
        "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
        "s390 s390x",
    ),
    ("riscv_flush_icache", "riscv64"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::caps::DEFAULT_CAPABILITIES;

    fn caps(v: &[&str]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|c| c.names().iter().any(|n| n == name))
            .collect()
    }

    fn x86(c: &[String]) -> Target<'_> {
        Target {
            caps: c,
            arch: "x86_64",
            kernel: (6, 1),
        }
    }

    #[test]
    fn the_kept_default_profile_is_the_one_computed() {
        let plain = caps(&DEFAULT_CAPABILITIES);
        let mut admin = plain.clone();
        admin.push(SYS_ADMIN.to_owned());
        for c in [&plain, &admin, &plain, &admin] {
            let t = x86(c);
            let fresh = SeccompProfile::docker_default()
                .to_oci(&t)
                .expect("convert")
                .map(without_unknown_syscalls);
            assert_eq!(docker_default_for(&t).expect("kept"), fresh);
        }
        let with = docker_default_for(&x86(&admin))
            .expect("kept")
            .expect("some");
        let without = docker_default_for(&x86(&plain))
            .expect("kept")
            .expect("some");
        assert!(rules_for(&without, "mount").is_empty());
        assert!(!rules_for(&with, "mount").is_empty());
    }

    #[test]
    fn default_profile_without_sys_admin() {
        let c = caps(&DEFAULT_CAPABILITIES);
        let s = SeccompProfile::docker_default()
            .to_oci(&x86(&c))
            .expect("convert")
            .expect("some");
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().clone().expect("arches"),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        for blocked in [
            "mount", "unshare", "setns", "keyctl", "add_key", "reboot", "bpf",
        ] {
            assert!(
                rules_for(&s, blocked).is_empty(),
                "{blocked} must not be allowed"
            );
        }
        // clone only without namespace flags; clone3 → ENOSYS.
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        let a = &clone[0].args().clone().expect("args")[0];
        assert_eq!(
            (a.index(), a.value(), a.op()),
            (0, NS_FLAGS, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        let clone3 = rules_for(&s, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        assert_eq!(rules_for(&s, "personality").len(), 5);
        assert_eq!(
            rules_for(&s, "chroot").len(),
            1,
            "CAP_SYS_CHROOT is a default"
        );
        assert_eq!(rules_for(&s, "arch_prctl").len(), 1);
        assert!(rules_for(&s, "set_tls").is_empty());
        assert_eq!(rules_for(&s, "ptrace").len(), 1, "kernel >= 4.8");
        let known = without_unknown_syscalls(s.clone());
        assert!(!rules_for(&known, "read").is_empty());
        assert!(rules_for(&known, "no_such_syscall").is_empty());
        // It compiles for the running kernel.
        berth_runtime::seccomp::compile(&s).expect("libseccomp accepts it");
    }

    #[test]
    fn sys_admin_opens_the_admin_group() {
        let mut c = caps(&DEFAULT_CAPABILITIES);
        c.push(SYS_ADMIN.into());
        let s = SeccompProfile::docker_default()
            .to_oci(&x86(&c))
            .expect("convert")
            .expect("some");
        for name in ["mount", "unshare", "setns", "clone3"] {
            let r = rules_for(&s, name);
            assert_eq!(r.len(), 1, "{name}");
            assert_eq!(r[0].action(), LinuxSeccompAction::ScmpActAllow);
        }
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_none(), "unrestricted clone");
        berth_runtime::seccomp::compile(&s).expect("libseccomp accepts it");
    }

    #[test]
    fn aarch64_and_old_kernels() {
        let c = caps(&DEFAULT_CAPABILITIES);
        let t = Target {
            caps: &c,
            arch: "aarch64",
            kernel: (4, 4),
        };
        let s = SeccompProfile::docker_default()
            .to_oci(&t)
            .expect("convert")
            .expect("some");
        assert_eq!(
            s.architectures().clone().expect("arches"),
            vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
        );
        assert_eq!(rules_for(&s, "set_tls").len(), 1);
        assert!(rules_for(&s, "arch_prctl").is_empty());
        assert!(rules_for(&s, "ptrace").is_empty(), "kernel < 4.8");
    }

    #[test]
    fn docker_format_json() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"name": "chmod", "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "excludes": {"arches": ["amd64"]}},
                {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "99.0"}},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "3.10"}},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 255, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }"#;
        let p = SeccompProfile::from_json(text).expect("parse");
        let c = caps(&DEFAULT_CAPABILITIES);
        let s = p.to_oci(&x86(&c)).expect("convert").expect("some");
        assert_eq!(
            s.architectures().clone().expect("arches"),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86]
        );
        let names: Vec<String> = s
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|c| c.names().clone())
            .collect();
        assert_eq!(names, vec!["mkdir", "chmod", "write"]);
        assert_eq!(rules_for(&s, "mkdir")[0].errno_ret(), Some(13));
        let a = &rules_for(&s, "write")[0].args().clone().expect("args")[0];
        assert_eq!(a.value_two(), Some(1));
        berth_runtime::seccomp::compile(&s).expect("compiles");
    }

    #[test]
    fn profile_errors() {
        let c = caps(&[]);
        let e = SeccompProfile::from_json(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#)
            .expect_err("bad action");
        assert!(
            e.to_string().starts_with("decoding seccomp profile failed"),
            "{e}"
        );
        let p = SeccompProfile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        )
        .expect("parse");
        let e = p.to_oci(&x86(&c)).expect_err("both");
        assert!(
            e.to_string()
                .contains("use either 'architectures' or 'archMap'"),
            "{e}"
        );
        let p = SeccompProfile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .expect("parse");
        let e = p.to_oci(&x86(&c)).expect_err("name and names");
        assert_eq!(
            e.to_string(),
            "seccomp profile: syscalls[0].name: use either 'name' or 'names'"
        );
        let p = SeccompProfile::from_json(
            r#"{"syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .expect("parse");
        assert!(p.to_oci(&x86(&c)).is_err());
        // Nothing at all: no filter, as Docker.
        assert!(
            SeccompProfile::from_json("{}")
                .expect("parse")
                .to_oci(&x86(&c))
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x"), None);
        assert!(running_kernel() >= (3, 0));
    }
}
