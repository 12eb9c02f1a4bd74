use oci_spec::runtime::{
    Apparmor, Cgroup, Features, IDMap, IntelRdt, LinuxFeature, LinuxNamespaceType, MountExtensions,
    Selinux,
};

/// Mount options berth understands (see [`crate::rootfs::options`]).
const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "ratime",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// The OCI features document: what this build of berth-runtime supports.
pub fn features() -> Features {
    let mut cgroup = Cgroup::default();
    cgroup.set_systemd(Some(false));
    cgroup.set_systemd_user(Some(false));
    cgroup.set_rdma(Some(true));
    let mut apparmor = Apparmor::default();
    apparmor.set_enabled(Some(true));
    let mut selinux = Selinux::default();
    selinux.set_enabled(Some(false));
    let mut rdt = IntelRdt::default();
    rdt.set_enabled(Some(false));
    let mut idmap = IDMap::default();
    idmap.set_enabled(Some(true));
    let mut ext = MountExtensions::default();
    ext.set_idmap(Some(idmap));

    let mut linux = LinuxFeature::default();
    linux.set_namespaces(Some(vec![
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Time,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Uts,
    ]));
    linux.set_capabilities(Some(
        caps::all()
            .iter()
            .map(|c| c.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    ));
    linux.set_cgroup(Some(cgroup));
    linux.set_seccomp(Some(crate::seccomp::features()));
    linux.set_apparmor(Some(apparmor));
    linux.set_selinux(Some(selinux));
    linux.set_intel_rdt(Some(rdt));
    linux.set_mount_extensions(Some(ext));

    let mut f = Features::default();
    f.set_oci_version_min("1.0.0".to_string());
    f.set_oci_version_max(crate::state::OCI_VERSION.to_string());
    f.set_hooks(Some(
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ));
    f.set_mount_options(Some(MOUNT_OPTIONS.iter().map(|s| s.to_string()).collect()));
    f.set_linux(Some(linux));
    f
}
