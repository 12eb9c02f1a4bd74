//! runc-style `-ENOSYS` stub prepended to the libseccomp program.
//!
//! A profile written for an older kernel does not know about newer syscalls,
//! so with a deny-by-default profile a new syscall would fail with the default
//! errno (usually `EPERM`) and programs would not fall back to an older
//! syscall. Like runc (`libcontainer/seccomp/patchbpf`), for every
//! architecture in the filter the stub returns `ENOSYS` for any syscall number
//! larger than the largest one the profile mentions, and hands every other
//! syscall to the libseccomp program.
//!
//! Unlike runc, the stub uses `ja` (32-bit offset) for every jump that may be
//! long, so it never needs runc's long-jump variants, and the native
//! architecture is always covered (runc only covers listed architectures).
//! Not done: runc's s390(x) `setup(2)` multiplexer special case.

use libseccomp::{ScmpArch, ScmpSyscall};

/// `AUDIT_ARCH_*` value the kernel reports in `seccomp_data.arch`.
pub(super) fn audit_arch(arch: ScmpArch) -> Option<u32> {
    Some(match arch {
        ScmpArch::Native => return audit_arch(ScmpArch::native()),
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::X8664 | ScmpArch::X32 => 0xc000_003e,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Aarch64 => 0xc000_00b7,
        ScmpArch::Mips => 0x0000_0008,
        ScmpArch::Mips64 => 0x8000_0008,
        ScmpArch::Mips64N32 => 0xa000_0008,
        ScmpArch::Mipsel => 0x4000_0008,
        ScmpArch::Mipsel64 => 0xc000_0008,
        ScmpArch::Mipsel64N32 => 0xe000_0008,
        ScmpArch::Ppc => 0x0000_0014,
        ScmpArch::Ppc64 => 0x8000_0015,
        ScmpArch::Ppc64Le => 0xc000_0015,
        ScmpArch::S390 => 0x0000_0016,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::Riscv64 => 0xc000_00f3,
        _ => return None,
    })
}

/// The x32 ABI marks its syscalls with this bit of the syscall number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JMP_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const BPF_JMP_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JMP_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const BPF_JMP_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `SECCOMP_RET_ERRNO | ENOSYS`.
const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Which syscall numbers a check applies to on an `AUDIT_ARCH_X86_64` filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Not x86-64: every syscall number.
    Any,
    /// x86-64 ABI: syscall numbers without the x32 bit.
    X8664,
    /// x32 ABI: syscall numbers with the x32 bit.
    X32,
}

/// Builds the stub for `archs` (the filter's architectures, native included)
/// and the syscall `names` the profile mentions. Returns an empty program when
/// no architecture has a known syscall.
pub(super) fn stub(archs: &[ScmpArch], names: &[&str]) -> Vec<libc::sock_filter> {
    // (audit arch, checks) in first-seen order, for a deterministic program.
    let mut sections: Vec<(u32, Vec<(Mode, u32)>)> = Vec::new();
    for &arch in archs {
        let arch = if arch == ScmpArch::Native {
            ScmpArch::native()
        } else {
            arch
        };
        let Some(audit) = audit_arch(arch) else {
            tracing::debug!(?arch, "seccomp: no -ENOSYS stub for architecture");
            continue;
        };
        let mode = match arch {
            ScmpArch::X8664 => Mode::X8664,
            ScmpArch::X32 => Mode::X32,
            _ => Mode::Any,
        };
        let largest = names
            .iter()
            .filter_map(|name| ScmpSyscall::from_name_by_arch(name, arch).ok())
            .map(i32::from)
            .filter(|&nr| nr >= 0)
            .max();
        let Some(largest) = largest.and_then(|nr| u32::try_from(nr).ok()) else {
            tracing::warn!(
                ?arch,
                "seccomp: no known syscall in profile for architecture"
            );
            continue;
        };
        let idx = match sections.iter().position(|(a, _)| *a == audit) {
            Some(idx) => idx,
            None => {
                sections.push((audit, Vec::new()));
                sections.len() - 1
            }
        };
        let checks = &mut sections[idx].1;
        if !checks.iter().any(|(m, _)| *m == mode) {
            checks.push((mode, largest));
        }
    }
    if sections.is_empty() {
        return Vec::new();
    }

    // Section bodies, each ending with a jump to the filter (patched later).
    let mut bodies: Vec<Vec<libc::sock_filter>> = Vec::new();
    for (_, checks) in &sections {
        let mut body = vec![insn(BPF_LD_W_ABS, 0, 0, OFF_NR)];
        for &(mode, largest) in checks {
            match mode {
                Mode::Any => {}
                // Skip `jgt` + `ret` when the syscall is of the other ABI.
                Mode::X8664 => body.push(insn(BPF_JMP_JSET_K, 2, 0, X32_SYSCALL_BIT)),
                Mode::X32 => body.push(insn(BPF_JMP_JSET_K, 0, 2, X32_SYSCALL_BIT)),
            }
            body.push(insn(BPF_JMP_JGT_K, 0, 1, largest));
            body.push(insn(BPF_RET_K, 0, 0, RET_ENOSYS));
        }
        body.push(insn(BPF_JMP_JA, 0, 0, 0));
        bodies.push(body);
    }

    // Header: load arch, one `jeq`/`ja` pair per section, `ja` to the filter.
    let header_len = 1 + 2 * sections.len() + 1;
    let total_len = header_len + bodies.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(total_len);
    out.push(insn(BPF_LD_W_ABS, 0, 0, OFF_ARCH));
    let mut body_start = header_len;
    for ((audit, _), body) in sections.iter().zip(&bodies) {
        out.push(insn(BPF_JMP_JEQ_K, 0, 1, *audit));
        let here = out.len();
        out.push(insn(BPF_JMP_JA, 0, 0, ja_offset(here, body_start)));
        body_start += body.len();
    }
    let here = out.len();
    out.push(insn(BPF_JMP_JA, 0, 0, ja_offset(here, total_len)));
    for body in bodies {
        let start = out.len();
        out.extend(body);
        let last = out.len() - 1;
        debug_assert!(last > start);
        out[last].k = ja_offset(last, total_len);
    }
    out
}

/// Offset for a `ja` at index `from` that lands on index `to`.
fn ja_offset(from: usize, to: usize) -> u32 {
    // Programs are at most BPF_MAXINSNS long (checked by the caller), so this
    // cannot truncate.
    (to - from - 1) as u32
}
