//! cgroup v2 device control: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built
//! from `linux.resources.devices`, loaded with the raw bpf(2) syscall and
//! attached with `BPF_F_ALLOW_MULTI` to the cgroup directory.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }` where `access_type = access << 16 | type`. Rules are
//! checked last to first (a later rule overrides an earlier one, as with
//! v1's devices.allow/deny); the first match returns 1 (allow) or 0 (deny);
//! no match denies.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// dst register in the low nibble, src in the high nibble.
    pub regs: u8,
    /// Jump offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const BPF_ALU_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const BPF_ALU_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const BPF_JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const BPF_JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const BPF_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1; // BPF_DEVCG_ACC_MKNOD
const ACC_READ: i32 = 2; // BPF_DEVCG_ACC_READ
const ACC_WRITE: i32 = 4; // BPF_DEVCG_ACC_WRITE

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// Builds the filter program for `rules` (see the module docs).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, CgroupError> {
    // r2 = type, r3 = access, r4 = major, r5 = minor
    let mut prog = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0),
        insn(BPF_ALU_AND_K, 2, 0, 0, 0xffff),
        insn(BPF_LDX_MEM_W, 3, 1, 0, 0),
        insn(BPF_ALU_RSH_K, 3, 0, 0, 16),
        insn(BPF_LDX_MEM_W, 4, 1, 4, 0),
        insn(BPF_LDX_MEM_W, 5, 1, 8, 0),
    ];
    for (i, rule) in rules.iter().enumerate().rev() {
        let block = rule_block(rule, &format!("linux.resources.devices[{i}]"))?;
        // A rule that matches every access ends the program: the rules
        // before it can never be reached (and the verifier refuses
        // unreachable instructions), nor can the default below.
        let matches_all = !block
            .iter()
            .any(|ins| ins.code == BPF_JMP_JNE_K || ins.code == BPF_JMP_JNE_X);
        prog.extend(block);
        if matches_all {
            return Ok(prog);
        }
    }
    prog.push(insn(BPF_ALU_MOV_K, 0, 0, 0, 0));
    prog.push(insn(BPF_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

/// One rule: a run of "skip to the next block unless it matches" jumps,
/// then `r0 = allow; exit`.
fn rule_block(rule: &LinuxDeviceCgroup, field: &str) -> Result<Vec<Insn>, CgroupError> {
    // (opcode, dst, src, imm) of the checks; offsets are filled in below
    let mut checks: Vec<Vec<Insn>> = Vec::new();
    match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => {}
        LinuxDeviceType::B => checks.push(vec![insn(BPF_JMP_JNE_K, 2, 0, 0, DEV_BLOCK)]),
        LinuxDeviceType::C | LinuxDeviceType::U => {
            checks.push(vec![insn(BPF_JMP_JNE_K, 2, 0, 0, DEV_CHAR)]);
        }
        LinuxDeviceType::P => {
            return Err(CgroupError::unsupported(
                format!("{field}.type"),
                "fifo (\"p\") rules cannot be expressed by the device cgroup",
            ));
        }
    }
    let access = rule.access().as_deref().unwrap_or("rwm");
    let mut mask = 0;
    for c in access.chars() {
        mask |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(CgroupError::invalid(
                    format!("{field}.access"),
                    format!("{access:?} is not a combination of r, w and m"),
                ));
            }
        };
    }
    if mask != ACC_READ | ACC_WRITE | ACC_MKNOD {
        // the requested access must be a subset of the rule's: (r3 & mask) == r3
        checks.push(vec![
            insn(BPF_ALU_MOV_X, 1, 3, 0, 0),
            insn(BPF_ALU_AND_K, 1, 0, 0, mask),
            insn(BPF_JMP_JNE_X, 1, 3, 0, 0),
        ]);
    }
    for (reg, num) in [(4u8, rule.major()), (5u8, rule.minor())] {
        if let Some(n) = num.filter(|n| *n >= 0) {
            let imm = i32::try_from(n).map_err(|_| {
                CgroupError::invalid(field.to_string(), format!("device number {n} is too large"))
            })?;
            checks.push(vec![insn(BPF_JMP_JNE_K, reg, 0, 0, imm)]);
        }
    }
    let mut block: Vec<Insn> = checks.into_iter().flatten().collect();
    block.push(insn(BPF_ALU_MOV_K, 0, 0, 0, i32::from(rule.allow())));
    block.push(insn(BPF_EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (idx, ins) in block.iter_mut().enumerate() {
        if ins.code == BPF_JMP_JNE_K || ins.code == BPF_JMP_JNE_X {
            // jump past the end of this block
            ins.off = i16::try_from(len - idx - 1).unwrap_or(i16::MAX);
        }
    }
    Ok(block)
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls bpf(2) with `attr`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] prefix of
    // `union bpf_attr` for `cmd`, and its exact size is passed, so the kernel
    // reads and writes only within it. Pointers stored inside it (insns,
    // license, log buffer, id array) are kept alive by the callers for the
    // duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a file descriptor returned by bpf(2).
fn owned_fd(ret: libc::c_long) -> std::io::Result<OwnedFd> {
    let fd = i32::try_from(ret).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: bpf(2) returned this new descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn load(prog: &[Insn], dir: &Path) -> Result<OwnedFd, CgroupError> {
    let license = c"Apache-2.0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len()).unwrap_or(u32::MAX),
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    if let Ok(ret) = bpf(BPF_PROG_LOAD, &mut attr) {
        return owned_fd(ret).map_err(|source| bpf_err(dir, "load", String::new(), source));
    }
    // again with the verifier log, for the error message
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = u32::try_from(log.len()).unwrap_or(0);
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(ret) => owned_fd(ret).map_err(|source| bpf_err(dir, "load", String::new(), source)),
        Err(source) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            let log = if text.is_empty() {
                text
            } else {
                format!(": {text}")
            };
            Err(bpf_err(dir, "load", log, source))
        }
    }
}

fn bpf_err(dir: &Path, op: &'static str, log: String, source: std::io::Error) -> CgroupError {
    CgroupError::Bpf {
        path: dir.to_path_buf(),
        op,
        log,
        source,
    }
}

/// Ids of the device programs already attached to `cgroup`.
fn attached(cgroup: &OwnedFd, dir: &Path) -> Result<Vec<u32>, CgroupError> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: u32::try_from(cgroup.as_raw_fd()).unwrap_or(0),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: u32::try_from(ids.len()).unwrap_or(0),
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|e| bpf_err(dir, "query", String::new(), e))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Loads the program for `rules` and attaches it to the cgroup `dir`, then
/// detaches the programs that were there before (so `update` replaces the
/// filter rather than stacking a new one on top).
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let prog = program(rules)?;
    let cgroup: OwnedFd = std::fs::File::open(dir)
        .map_err(|source| bpf_err(dir, "open cgroup for", String::new(), source))?
        .into();
    let old = attached(&cgroup, dir)?;
    let prog_fd = load(&prog, dir)?;
    let mut attr = AttachAttr {
        target_fd: u32::try_from(cgroup.as_raw_fd()).unwrap_or(0),
        attach_bpf_fd: u32::try_from(prog_fd.as_raw_fd()).unwrap_or(0),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| bpf_err(dir, "attach", String::new(), e))?;
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut get)
            .and_then(owned_fd)
            .map_err(|e| bpf_err(dir, "get old", String::new(), e))?;
        let mut detach = AttachAttr {
            target_fd: u32::try_from(cgroup.as_raw_fd()).unwrap_or(0),
            attach_bpf_fd: u32::try_from(old_fd.as_raw_fd()).unwrap_or(0),
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut detach)
            .map_err(|e| bpf_err(dir, "detach old", String::new(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: serde_json::Value) -> Result<Vec<LinuxDeviceCgroup>, serde_json::Error> {
        serde_json::from_value(json)
    }

    /// Runs the program on one access, as the kernel would.
    fn eval(prog: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> i64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                BPF_LDX_MEM_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                BPF_ALU_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                BPF_ALU_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                BPF_ALU_MOV_K => r[dst] = i.imm as u32 as u64,
                BPF_ALU_MOV_X => r[dst] = r[src] as u32 as u64,
                BPF_JMP_JNE_K if r[dst] != i.imm as u64 => pc += i.off as usize,
                BPF_JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                BPF_JMP_JNE_K | BPF_JMP_JNE_X => {}
                BPF_EXIT => return r[0] as i64,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn instructions_for_a_typical_allowlist() -> Result<(), Box<dyn std::error::Error>> {
        let prog = program(&rules(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rw"},
        ]))?)?;
        // prologue, last rule first: type, access subset, major; then exit
        assert_eq!(prog[0], insn(BPF_LDX_MEM_W, 2, 1, 0, 0));
        assert_eq!(prog[3], insn(BPF_ALU_RSH_K, 3, 0, 0, 16));
        assert_eq!(
            &prog[6..13],
            &[
                insn(BPF_JMP_JNE_K, 2, 0, 6, DEV_CHAR),
                insn(BPF_ALU_MOV_X, 1, 3, 0, 0),
                insn(BPF_ALU_AND_K, 1, 0, 0, ACC_READ | ACC_WRITE),
                insn(BPF_JMP_JNE_X, 1, 3, 3, 0),
                insn(BPF_JMP_JNE_K, 4, 0, 2, 136),
                insn(BPF_ALU_MOV_K, 0, 0, 0, 1),
                insn(BPF_EXIT, 0, 0, 0, 0),
            ]
        );
        assert_eq!(
            &prog[13..18],
            &[
                insn(BPF_JMP_JNE_K, 2, 0, 4, DEV_CHAR),
                insn(BPF_JMP_JNE_K, 4, 0, 3, 1),
                insn(BPF_JMP_JNE_K, 5, 0, 2, 3),
                insn(BPF_ALU_MOV_K, 0, 0, 0, 1),
                insn(BPF_EXIT, 0, 0, 0, 0),
            ]
        );
        // deny-all rule: no checks, r0 = 0
        assert_eq!(
            &prog[18..20],
            &[insn(BPF_ALU_MOV_K, 0, 0, 0, 0), insn(BPF_EXIT, 0, 0, 0, 0)]
        );
        // nothing after it: the kernel's verifier refuses unreachable code
        assert_eq!(prog.len(), 20);

        let rw = (ACC_READ | ACC_WRITE) as u32;
        let c = DEV_CHAR as u32;
        assert_eq!(eval(&prog, c, rw, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&prog, c, ACC_MKNOD as u32, 1, 3), 1, "mknod /dev/null");
        assert_eq!(eval(&prog, c, rw, 136, 7), 1, "pty");
        assert_eq!(eval(&prog, c, ACC_MKNOD as u32, 136, 7), 0, "mknod pty");
        assert_eq!(eval(&prog, DEV_BLOCK as u32, rw, 8, 0), 0, "block device");
        assert_eq!(eval(&prog, c, rw, 1, 5), 0, "/dev/zero");
        Ok(())
    }

    #[test]
    fn later_rules_win_and_empty_denies() -> Result<(), Box<dyn std::error::Error>> {
        let prog = program(&rules(serde_json::json!([
            {"allow": true, "type": "b", "access": "r"},
            {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "rwm"},
        ]))?)?;
        let b = DEV_BLOCK as u32;
        assert_eq!(eval(&prog, b, ACC_READ as u32, 8, 1), 1);
        assert_eq!(eval(&prog, b, ACC_READ as u32, 8, 0), 0);
        assert_eq!(eval(&prog, b, ACC_WRITE as u32, 8, 1), 0);
        let empty = program(&[])?;
        assert_eq!(eval(&empty, b, ACC_READ as u32, 8, 1), 0);
        let err = program(&rules(serde_json::json!([{"allow": true, "type": "p"}]))?)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "linux.resources.devices[0].type: fifo (\"p\") rules cannot be expressed by the device cgroup"
            )
        );
        Ok(())
    }
}
