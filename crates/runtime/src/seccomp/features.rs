//! The `linux.seccomp` part of the OCI features document.

use oci_spec::runtime::{
    Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, Seccomp,
};

use super::{flag_bits, kernel_supports_flags};

/// The `linux.seccomp` part of the OCI features document.
pub fn features() -> Seccomp {
    use LinuxSeccompAction as A;
    let known = [
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    ];
    let mut f = Seccomp::default();
    f.set_enabled(Some(true));
    f.set_actions(Some(vec![
        A::ScmpActAllow,
        A::ScmpActErrno,
        A::ScmpActKill,
        A::ScmpActKillProcess,
        A::ScmpActKillThread,
        A::ScmpActLog,
        A::ScmpActNotify,
        A::ScmpActTrace,
        A::ScmpActTrap,
    ]));
    f.set_operators(Some(
        [
            LinuxSeccompOperator::ScmpCmpEq,
            LinuxSeccompOperator::ScmpCmpGe,
            LinuxSeccompOperator::ScmpCmpGt,
            LinuxSeccompOperator::ScmpCmpLe,
            LinuxSeccompOperator::ScmpCmpLt,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            LinuxSeccompOperator::ScmpCmpNe,
        ]
        .iter()
        .map(ToString::to_string)
        .collect(),
    ));
    f.set_archs(Some(vec![
        Arch::ScmpArchAarch64,
        Arch::ScmpArchArm,
        Arch::ScmpArchMips,
        Arch::ScmpArchMips64,
        Arch::ScmpArchMips64n32,
        Arch::ScmpArchMipsel,
        Arch::ScmpArchMipsel64,
        Arch::ScmpArchMipsel64n32,
        Arch::ScmpArchPpc,
        Arch::ScmpArchPpc64,
        Arch::ScmpArchPpc64le,
        Arch::ScmpArchRiscv64,
        Arch::ScmpArchS390,
        Arch::ScmpArchS390x,
        Arch::ScmpArchX32,
        Arch::ScmpArchX86,
        Arch::ScmpArchX86_64,
    ]));
    f.set_known_flags(Some(known.iter().map(ToString::to_string).collect()));
    f.set_supported_flags(Some(
        known
            .iter()
            .filter(|&&flag| kernel_supports_flags(flag_bits(flag)))
            .map(ToString::to_string)
            .collect(),
    ));
    f
}
