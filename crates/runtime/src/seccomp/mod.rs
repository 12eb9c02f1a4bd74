//! Seccomp: compile an OCI `linux.seccomp` profile early, install it late.
//!
//! [`compile`] validates the profile and turns it into a raw BPF program with
//! libseccomp (done at `create` time so errors are reported early).
//! [`SeccompProgram::install`] loads that program with the raw `seccomp(2)`
//! syscall, without allocating and without calling into libseccomp, so the
//! container's init can call it as its very last step before `execve`.
//! [`send_to_listener`] hands the notify fd to the seccomp agent at
//! `linux.seccomp.listenerPath`, and [`features`] describes what is supported
//! for the OCI features document.
//!
//! Rule semantics follow runc (`libcontainer/seccomp/seccomp_linux.go`):
//! unknown syscall names are skipped with a warning; a rule whose action
//! equals the default action is skipped; a rule's args are ANDed in one
//! libseccomp rule unless several args use the same index, in which case each
//! arg becomes its own rule; `SCMP_ACT_NOTIFY` is refused as the default
//! action and for `write`; and an `-ENOSYS` stub (see `enosys.rs`) makes
//! syscalls newer than the profile fail with `ENOSYS` instead of the default
//! errno.

mod cache;
mod enosys;
mod features;
mod listener;
#[cfg(test)]
mod tests;

pub use cache::{compile_cached, compile_with};
pub use features::features;
pub use listener::{container_process_state, send_on, send_to_listener};

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// Linux syscalls have at most six arguments.
const MAX_SYSCALL_ARGS: usize = 6;
/// Default errno for `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE` without `errnoRet`.
const DEFAULT_ERRNO_RET: u32 = libc::EPERM as u32;
/// Number of syscalls above which libseccomp's binary tree is enabled (runc).
const BINARY_TREE_THRESHOLD: usize = 32;
/// `BPF_MAXINSNS`: the kernel rejects longer programs.
const MAX_INSNS: usize = libc::BPF_MAXINSNS as usize;

/// Errors from compiling, installing or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile is invalid; `field` is the JSON path of the offending field.
    #[error("{field}: {reason}")]
    InvalidSpec {
        /// JSON path, e.g. `linux.seccomp.syscalls[3].args[0].index`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// libseccomp rejected part of the profile.
    #[error("{field}: {what}: {error}")]
    Libseccomp {
        /// JSON path of the part of the profile being applied.
        field: String,
        /// What was being done.
        what: String,
        /// The libseccomp error.
        error: libseccomp::error::SeccompError,
    },
    /// Exporting the BPF program from libseccomp failed.
    #[error("exporting seccomp bpf program: {error}")]
    Export {
        /// The underlying error.
        error: io::Error,
    },
    /// The generated program exceeds the kernel's `BPF_MAXINSNS`.
    #[error("seccomp program has {len} instructions, more than the kernel limit of {max}")]
    ProgramTooLong {
        /// Program length in instructions.
        len: usize,
        /// Kernel limit.
        max: usize,
    },
    /// `seccomp(2)` failed (`EACCES`: neither no_new_privs nor CAP_SYS_ADMIN).
    #[error("installing seccomp filter: {error}")]
    Install {
        /// The errno from `seccomp(2)`.
        error: io::Error,
    },
    /// Sending the notify fd to the seccomp agent failed.
    #[error("sending seccomp notify fd to listener {}: {error}", path.display())]
    Listener {
        /// `linux.seccomp.listenerPath`.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// Serializing the container process state failed.
    #[error("serializing container process state: {error}")]
    State {
        /// The serde error.
        error: serde_json::Error,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SeccompError {
    SeccompError::InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

fn scmp_err(
    field: impl Into<String>,
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    move |error| SeccompError::Libseccomp {
        field: field.into(),
        what: what.into(),
        error,
    }
}

/// A compiled, ready-to-install seccomp filter.
#[derive(Clone)]
pub struct SeccompProgram {
    /// Raw classic-BPF program (the `-ENOSYS` stub followed by libseccomp's).
    filter: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` passed to `seccomp(2)`.
    flags: libc::c_ulong,
    /// Whether the filter uses `SCMP_ACT_NOTIFY`.
    needs_listener: bool,
}

impl fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("instructions", &self.filter.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("needs_listener", &self.needs_listener)
            .finish()
    }
}

impl SeccompProgram {
    /// True when the default action or any rule is `SCMP_ACT_NOTIFY`:
    /// [`install`](Self::install) then returns the notify fd.
    pub fn needs_listener(&self) -> bool {
        self.needs_listener
    }

    /// The raw BPF instructions.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to `seccomp(2)`.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Installs the filter on the calling thread with the raw `seccomp(2)`
    /// syscall (`SECCOMP_SET_MODE_FILTER`). Neither allocates nor calls
    /// libseccomp, so it is safe between `fork` and `execve`. The caller
    /// decides about no_new_privs: without it the thread needs
    /// `CAP_SYS_ADMIN` (else `EACCES`). Returns the notify fd
    /// (`SECCOMP_FILTER_FLAG_NEW_LISTENER`) when [`needs_listener`](Self::needs_listener).
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let Ok(len) = u16::try_from(self.filter.len()) else {
            return Err(SeccompError::ProgramTooLong {
                len: self.filter.len(),
                max: MAX_INSNS,
            });
        };
        let prog = libc::sock_fprog {
            len,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.filter`, `len` valid instructions that
        // outlive the call; the kernel only reads (copies) the program.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(SeccompError::Install {
                error: io::Error::last_os_error(),
            });
        }
        if !self.needs_listener {
            return Ok(None);
        }
        let Ok(fd) = RawFd::try_from(ret) else {
            return Err(SeccompError::Install {
                error: io::Error::from_raw_os_error(libc::EBADF),
            });
        };
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns a
        // new notify fd that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// Maps an OCI action (with its `errnoRet`) to libseccomp's.
fn action(
    act: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
) -> Result<ScmpAction, SeccompError> {
    let ret = || -> Result<u16, SeccompError> {
        let ret = errno_ret.unwrap_or(DEFAULT_ERRNO_RET);
        u16::try_from(ret).map_err(|_| invalid(field, format!("{ret} does not fit in 16 bits")))
    };
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret()?),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

fn arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

fn flag_bits(flag: LinuxSeccompFilterFlag) -> libc::c_ulong {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    }
}

/// Whether the running kernel knows `flags`: like libseccomp, call
/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, NULL)`, which fails with `EFAULT`
/// for known flags (the NULL program) and `EINVAL` for unknown ones.
fn kernel_supports_flags(flags: libc::c_ulong) -> bool {
    // SAFETY: a NULL program is never dereferenced successfully; the kernel
    // validates flags, then fails to copy the program and installs nothing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Validate and compile an OCI `LinuxSeccomp` into a ready-to-install program.
/// Done early (before the container's setup), so errors are reported at
/// `create` time.
pub fn compile(spec: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    const P: &str = "linux.seccomp";
    if spec.default_action() == LinuxSeccompAction::ScmpActNotify {
        // As runc: the init could not hand over the notify fd if every
        // syscall it makes afterwards were waiting on the (absent) agent.
        return Err(invalid(
            format!("{P}.defaultAction"),
            "SCMP_ACT_NOTIFY cannot be used as default action",
        ));
    }
    let default_action = action(
        spec.default_action(),
        spec.default_errno_ret(),
        &format!("{P}.defaultErrnoRet"),
    )?;
    let syscalls = spec.syscalls().as_deref().unwrap_or_default();

    // Validate everything first, so errors do not depend on libseccomp.
    let mut rules: Vec<(usize, ScmpAction)> = Vec::with_capacity(syscalls.len());
    let mut needs_listener = false;
    for (i, call) in syscalls.iter().enumerate() {
        let field = format!("{P}.syscalls[{i}]");
        let act = action(
            call.action(),
            call.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        if call.names().is_empty() {
            return Err(invalid(
                format!("{field}.names"),
                "must list at least one syscall",
            ));
        }
        for (j, name) in call.names().iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(format!("{field}.names[{j}]"), "empty syscall name"));
            }
            if act == ScmpAction::Notify && name == "write" {
                // As runc: the init must still be able to hand over the fd.
                return Err(invalid(
                    format!("{field}.names[{j}]"),
                    "SCMP_ACT_NOTIFY cannot be used for the write syscall",
                ));
            }
        }
        for (k, arg) in call
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if arg.index() >= MAX_SYSCALL_ARGS {
                return Err(invalid(
                    format!("{field}.args[{k}].index"),
                    format!(
                        "{} is out of range, syscalls have at most {MAX_SYSCALL_ARGS} arguments",
                        arg.index()
                    ),
                ));
            }
        }
        if act == ScmpAction::Notify {
            needs_listener = true;
        }
        rules.push((i, act));
    }
    if needs_listener
        && spec
            .listener_path()
            .as_deref()
            .is_none_or(|p| p.as_os_str().is_empty())
    {
        return Err(invalid(
            format!("{P}.listenerPath"),
            "must be set when SCMP_ACT_NOTIFY is used",
        ));
    }

    // Kernel flags.
    let mut flags: libc::c_ulong = 0;
    match spec.flags() {
        Some(list) => {
            for (i, &flag) in list.iter().enumerate() {
                let bits = flag_bits(flag);
                if !kernel_supports_flags(bits) {
                    return Err(invalid(
                        format!("{P}.flags[{i}]"),
                        format!("{flag} is not supported by the running kernel"),
                    ));
                }
                flags |= bits;
            }
        }
        // As runc: with no flags given (not even an empty list), disable the
        // speculative store bypass mitigation seccomp would otherwise force.
        None => {
            if kernel_supports_flags(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) {
                flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
            }
        }
    }
    if needs_listener {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        // TSYNC alone cannot be combined with NEW_LISTENER (EINVAL).
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }

    // Build the libseccomp filter.
    let mut ctx = ScmpFilterContext::new(default_action)
        .map_err(scmp_err(format!("{P}.defaultAction"), "creating filter"))?;
    // The caller decides about no_new_privs.
    ctx.set_ctl_nnp(false)
        .map_err(scmp_err(P, "clearing the no_new_privs attribute"))?;
    let mut archs = vec![ScmpArch::Native];
    for (i, &a) in spec
        .architectures()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let a = arch(a);
        let field = format!("{P}.architectures[{i}]");
        let present = ctx
            .is_arch_present(a)
            .map_err(scmp_err(field.clone(), "checking architecture"))?;
        if !present {
            ctx.add_arch(a)
                .map_err(scmp_err(field, "adding architecture"))?;
        }
        archs.push(a);
    }
    if syscalls.len() > BINARY_TREE_THRESHOLD
        && let Err(err) = ctx.set_ctl_optimize(2)
    {
        tracing::debug!(%err, "seccomp binary tree optimization not available");
    }

    for (i, act) in rules {
        let call = &syscalls[i];
        let field = format!("{P}.syscalls[{i}]");
        if act == default_action {
            tracing::debug!(syscalls = ?call.names(), "seccomp rule has the default action, skipped");
            continue;
        }
        let args = call.args().as_deref().unwrap_or_default();
        let conds: Vec<ScmpArgCompare> = args
            .iter()
            .map(|arg| {
                let op = match arg.op() {
                    LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                    LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                    LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                    LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                    LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                    LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                    // (arg & value) == valueTwo; runc uses 0 when valueTwo is absent.
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        return ScmpArgCompare::new(
                            arg.index() as u32,
                            ScmpCompareOp::MaskedEqual(arg.value()),
                            arg.value_two().unwrap_or(0),
                        );
                    }
                };
                ScmpArgCompare::new(arg.index() as u32, op, arg.value())
            })
            .collect();
        let mut seen = [0usize; MAX_SYSCALL_ARGS];
        for arg in args {
            seen[arg.index()] += 1;
        }
        let separate = seen.iter().any(|&n| n > 1);

        for (j, name) in call.names().iter().enumerate() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                tracing::warn!(syscall = %name, "unknown seccomp syscall ignored");
                continue;
            };
            let what = format!("adding rule for syscall {name}");
            let field = format!("{field}.names[{j}]");
            if conds.is_empty() {
                ctx.add_rule(act, nr).map_err(scmp_err(field, what))?;
            } else if separate {
                // As runc: several conditions on one arg index would be
                // ANDed into something that never matches; one rule each.
                for cond in &conds {
                    ctx.add_rule_conditional(act, nr, std::slice::from_ref(cond))
                        .map_err(scmp_err(field.clone(), what.clone()))?;
                }
            } else {
                ctx.add_rule_conditional(act, nr, &conds)
                    .map_err(scmp_err(field, what))?;
            }
        }
    }

    let mut filter = Vec::new();
    if patch_enosys(spec) {
        let names: Vec<&str> = syscalls
            .iter()
            .flat_map(|c| c.names().iter().map(String::as_str))
            .collect();
        filter = enosys::stub(&archs, &names);
    }
    filter.extend(export_bpf(&ctx)?);
    if filter.len() > MAX_INSNS {
        return Err(SeccompError::ProgramTooLong {
            len: filter.len(),
            max: MAX_INSNS,
        });
    }
    Ok(SeccompProgram {
        filter,
        flags,
        needs_listener,
    })
}

/// As runc: the `-ENOSYS` stub is only for non-permissive default actions
/// (`TRACE` counts as permissive) and when the default errno is not `ENOSYS`.
fn patch_enosys(spec: &LinuxSeccomp) -> bool {
    let permissive = matches!(
        spec.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    !permissive && spec.default_errno_ret() != Some(libc::ENOSYS as u32)
}

/// Exports the filter's BPF through a memfd (libseccomp 2.5 only writes to
/// an fd) and parses it into instructions (host byte order).
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let export = |error| SeccompError::Export { error };
    let fd = rustix::fs::memfd_create("berth-seccomp-bpf", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| export(e.into()))?;
    ctx.export_bpf(&fd).map_err(|e| SeccompError::Libseccomp {
        field: "linux.seccomp".into(),
        what: "exporting bpf".into(),
        error: e,
    })?;
    let mut file = std::fs::File::from(fd);
    file.seek(SeekFrom::Start(0)).map_err(export)?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).map_err(export)?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if raw.is_empty() || raw.len() % size != 0 {
        return Err(export(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "program of {} bytes is not a whole number of instructions",
                raw.len()
            ),
        )));
    }
    Ok(raw
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}
