#![allow(clippy::unwrap_used)]
//! Specs made by `berth_image::spec::prepare` (Docker's semantics and
//! defaults), run by berth-runtime on the busybox rootfs: user resolution,
//! env/cwd/cmd, Docker's default capabilities and seccomp profile, masked
//! and read-only paths, the /etc/hostname, /etc/hosts, /etc/resolv.conf
//! binds, a read-only rootfs and a privileged container.
//!
//! Run: `BERTH_TEST_ROOT=1 cargo test -p berth-runtime-cli --test image_spec` as root.

mod common;

use std::fs;
use std::path::PathBuf;

use berth_image::spec::{NamespaceMode, RunOptions, prepare};
use common::*;
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

fn berth() -> Runtime {
    Runtime {
        name: "berth".into(),
        bin: PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime")),
    }
}

/// An image config like busybox's: `Cmd ["sh"]`, PATH set.
fn busybox_image() -> ImageConfiguration {
    image(ConfigBuilder::default())
}

fn image(b: ConfigBuilder) -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .config(b.build().unwrap())
        .build()
        .unwrap()
}

fn base_config() -> ConfigBuilder {
    ConfigBuilder::default()
        .cmd(vec!["sh".to_string()])
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ])
}

/// A container whose config.json is `prepare`'s spec for `img` and `opts`.
fn container(img: &ImageConfiguration, mut opts: RunOptions, setup: impl FnOnce(&Ct)) -> Ct {
    let mut ct = Ct::new(&berth());
    setup(&ct);
    opts.cgroups_path = Some(ct.cgroup.clone());
    opts.id.get_or_insert_with(|| ct.id.clone());
    let p = prepare(img, &ct.rootfs, &opts).unwrap_or_else(|e| panic!("{} prepare: {e}", ct.tag()));
    let mut v = serde_json::to_value(&p.spec).unwrap();
    v["root"]["path"] = "rootfs".into();
    ct.spec = v;
    ct
}

fn sh(script: &str) -> RunOptions {
    RunOptions {
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..RunOptions::default()
    }
}

fn run_ok(img: &ImageConfiguration, opts: RunOptions, setup: impl FnOnce(&Ct)) -> String {
    let ct = container(img, opts, setup);
    ct.run_ok()
}

#[test]
fn user_resolution_in_the_image() {
    if !require_root() {
        return;
    }
    let img = image(base_config());
    let ids = "echo $(id -u) $(id -g) $(id -G)";
    let as_user = |user: &str| RunOptions {
        user: Some(user.into()),
        ..sh(ids)
    };
    let out = run_ok(&img, as_user("nobody"), |_| {});
    assert_eq!(out.trim(), "65534 65534 65534");
    let out = run_ok(&img, as_user("1000:1000"), |_| {});
    assert_eq!(out.trim(), "1000 1000 1000");
    let out = run_ok(&img, as_user("4242"), |_| {});
    assert_eq!(out.trim(), "4242 0 0");
    let add_app = |ct: &Ct| {
        let etc = ct.rootfs.join("etc");
        let mut pw = fs::read_to_string(etc.join("passwd")).unwrap();
        pw.push_str("app:x:1000:1000:App:/home/app:/bin/sh\n");
        fs::write(etc.join("passwd"), pw).unwrap();
        let mut gr = fs::read_to_string(etc.join("group")).unwrap();
        gr.push_str("app:x:1000:\nwheel:x:10:root,app\naudio:x:29:app\n");
        fs::write(etc.join("group"), gr).unwrap();
    };
    let out = run_ok(
        &img,
        RunOptions {
            user: Some("app".into()),
            ..sh("echo $(id -u) $(id -g) $(id -G) $HOME")
        },
        add_app,
    );
    assert_eq!(out.trim(), "1000 1000 1000 10 29 /home/app");
    let out = run_ok(
        &img,
        RunOptions {
            user: Some("app:audio".into()),
            ..sh(ids)
        },
        add_app,
    );
    assert_eq!(out.trim(), "1000 29 29", "explicit group: no memberships");
    // /etc/passwd -> ../../passwd would be <bundle>/passwd on the host;
    // resolved inside the rootfs it is <rootfs>/passwd, which is absent.
    let ct = Ct::new(&berth());
    fs::write(
        ct.bundle.join("passwd"),
        "daemon:x:1:1:daemon:/usr/sbin:/bin/sh\n",
    )
    .unwrap();
    fs::remove_file(ct.rootfs.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("../../passwd", ct.rootfs.join("etc/passwd")).unwrap();
    let e = prepare(
        &img,
        &ct.rootfs,
        &RunOptions {
            user: Some("daemon".into()),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to find user daemon: no matching entries in passwd file"
    );
}

#[test]
fn entrypoint_cmd_env_and_workdir() {
    if !require_root() {
        return;
    }
    let img = image(
        base_config()
            .entrypoint(vec!["/bin/sh".to_string(), "-c".to_string()])
            .cmd(vec!["echo from-image".to_string()])
            .env(vec![
                "PATH=/bin:/usr/bin".to_string(),
                "A=image".to_string(),
                "B=image".to_string(),
            ])
            .working_dir("/srv/app"),
    );
    let out = run_ok(&img, RunOptions::default(), |_| {});
    assert_eq!(out.trim(), "from-image");
    let opts = RunOptions {
        cmd: Some(vec!["echo $A $B $C $PATH $HOSTNAME $HOME; pwd".into()]),
        env: vec!["A=request".into(), "C=request".into()],
        hostname: Some("web1".into()),
        ..RunOptions::default()
    };
    let out = run_ok(&img, opts, |_| {});
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["request image request /bin:/usr/bin web1 /root", "/srv/app"]
    );
    // A request Entrypoint drops the image's Cmd; WorkingDir overrides.
    let opts = RunOptions {
        entrypoint: Some(vec!["pwd".into()]),
        working_dir: Some("/tmp/x".into()),
        ..RunOptions::default()
    };
    let out = run_ok(&img, opts, |_| {});
    assert_eq!(out.trim(), "/tmp/x");
}

#[test]
fn docker_default_capabilities() {
    if !require_root() {
        return;
    }
    let out = run_ok(
        &busybox_image(),
        sh("grep -E '^Cap(Eff|Prm|Bnd|Inh)' /proc/self/status"),
        |_| {},
    );
    let st = status_map(&out);
    let want = cap_mask(&[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]);
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(u64::from_str_radix(&st[k], 16).unwrap(), want, "{k}: {out}");
    }
    assert_eq!(u64::from_str_radix(&st["CapInh"], 16).unwrap(), 0);
    // cap_add / cap_drop.
    let out = run_ok(
        &busybox_image(),
        RunOptions {
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into(), "kill".into()],
            ..sh("grep CapEff /proc/self/status")
        },
        |_| {},
    );
    let eff = u64::from_str_radix(&status_map(&out)["CapEff"], 16).unwrap();
    assert_eq!(
        eff,
        (want | cap_mask(&["CAP_NET_ADMIN"])) & !cap_mask(&["CAP_CHOWN", "CAP_KILL"])
    );
}

#[test]
fn docker_default_seccomp_profile() {
    if !require_root() {
        return;
    }
    let script = "echo ok; \
        unshare -U true 2>/dev/null && echo userns-allowed || echo userns-denied; \
        mount -t tmpfs t /mnt 2>/dev/null && echo mount-allowed || echo mount-denied; \
        chroot / true && echo chroot-allowed";
    let out = run_ok(&busybox_image(), sh(script), |_| {});
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "userns-denied", "mount-denied", "chroot-allowed"]
    );
    // The same without the profile: user namespaces need no capability,
    // so seccomp is what blocked them.
    let out = run_ok(
        &busybox_image(),
        RunOptions {
            security_opt: vec!["seccomp=unconfined".into()],
            ..sh(script)
        },
        |_| {},
    );
    assert!(out.contains("userns-allowed"), "{out}");
    // A Docker-format profile from the request.
    let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW",
        "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;
    let out = run_ok(
        &busybox_image(),
        RunOptions {
            security_opt: vec![format!("seccomp={profile}")],
            ..sh("mkdir /tmp/d 2>&1; echo done")
        },
        |_| {},
    );
    assert!(out.contains("Permission denied"), "{out}");
}

#[test]
fn masked_and_readonly_paths() {
    if !require_root() {
        return;
    }
    // These three exist and have content on the test host.
    let script = "for f in interrupts keys timer_list; do \
            echo $f=$(cat /proc/$f | wc -c); done; \
        echo firmware=$(ls -A /sys/firmware | wc -l); \
        grep -q ' /proc/sys ro,' /proc/self/mountinfo && echo procsys-ro; \
        grep -q ' /sys ro,' /proc/self/mountinfo && echo sys-ro; \
        touch /proc/sys/kernel/x 2>/dev/null || echo procsys-unwritable";
    let out = run_ok(&busybox_image(), sh(script), |_| {});
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "interrupts=0",
            "keys=0",
            "timer_list=0",
            "firmware=0",
            "procsys-ro",
            "sys-ro",
            "procsys-unwritable"
        ],
        "{out}"
    );
}

#[test]
fn network_files_hostname_and_readonly_rootfs() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = |name: &str, text: &str| {
        let p = dir.path().join(name);
        fs::write(&p, text).unwrap();
        p
    };
    let opts = RunOptions {
        hostname: Some("myhost".into()),
        hostname_path: Some(files("hostname", "myhost\n")),
        hosts_path: Some(files("hosts", "127.0.0.1 localhost\n10.0.0.2 myhost\n")),
        resolv_conf_path: Some(files("resolv.conf", "nameserver 127.0.0.53\n")),
        readonly_rootfs: true,
        tmpfs: [("/scratch".to_string(), "size=1m".to_string())]
            .into_iter()
            .collect(),
        ..sh(
            "cat /etc/hostname; hostname; grep myhost /etc/hosts; cat /etc/resolv.conf; \
              touch /x 2>/dev/null || echo rootfs-ro; touch /scratch/y && echo tmpfs-rw",
        )
    };
    let out = run_ok(&busybox_image(), opts, |_| {});
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "myhost",
            "myhost",
            "10.0.0.2 myhost",
            "nameserver 127.0.0.53",
            "rootfs-ro",
            "tmpfs-rw"
        ]
    );
}

#[test]
fn privileged_container() {
    if !require_root() {
        return;
    }
    let opts = RunOptions {
        privileged: true,
        network: NamespaceMode::Host,
        ..sh("grep CapEff /proc/self/status; \
              grep -q ' /sys rw,' /proc/self/mountinfo && echo sys-rw; \
              test -c /dev/kmsg && echo host-devices; \
              mount -t tmpfs t /mnt && echo mount-ok")
    };
    let out = run_ok(&busybox_image(), opts, |_| {});
    let host = status_map(&fs::read_to_string("/proc/self/status").unwrap());
    let eff = &status_map(&out)["CapEff"];
    assert_eq!(eff, &host["CapBnd"], "privileged = our bounding set: {out}");
    for want in ["sys-rw", "host-devices", "mount-ok"] {
        assert!(out.contains(want), "{want}: {out}");
    }
}
