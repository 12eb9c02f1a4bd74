//! [`prepare`] end to end on a small rootfs (no containers run here; see
//! crates/runtime-cli/tests/image_spec.rs for that).

use super::*;
use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

fn rootfs() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("etc")).expect("mkdir");
    std::fs::write(
        tmp.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        tmp.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .expect("group");
    tmp
}

fn image(f: impl FnOnce(&mut ConfigBuilder)) -> ImageConfiguration {
    let mut b = ConfigBuilder::default()
        .cmd(vec!["sh".to_string()])
        .env(vec!["PATH=/bin".to_string(), "IMG=1".to_string()])
        .working_dir("/srv/app")
        .stop_signal("SIGQUIT")
        .exposed_ports(vec!["80/tcp".to_string()])
        .volumes(vec!["/data".to_string()])
        .labels(
            [("from".to_string(), "image".to_string())]
                .into_iter()
                .collect::<HashMap<_, _>>(),
        );
    f(&mut b);
    ImageConfigurationBuilder::default()
        .config(b.build().expect("config"))
        .build()
        .expect("image")
}

fn process(p: &Prepared) -> &Process {
    p.spec.process().as_ref().expect("process")
}

fn linux(p: &Prepared) -> &oci_spec::runtime::Linux {
    p.spec.linux().as_ref().expect("linux")
}

#[test]
fn defaults_from_the_image() {
    let tmp = rootfs();
    let opts = RunOptions {
        id: Some("0123456789abcdef".into()),
        ..RunOptions::default()
    };
    let p = prepare(&image(|_| {}), tmp.path(), &opts).expect("prepare");
    let pr = process(&p);
    assert_eq!(pr.args().clone().expect("args"), ["sh"]);
    assert_eq!(
        pr.env().clone().expect("env"),
        ["PATH=/bin", "HOSTNAME=0123456789ab", "IMG=1", "HOME=/root"]
    );
    assert_eq!(pr.cwd(), Path::new("/srv/app"));
    assert!(tmp.path().join("srv/app").is_dir(), "workdir created");
    assert_eq!(pr.terminal(), Some(false));
    assert_eq!(pr.no_new_privileges(), Some(false));
    assert!(pr.rlimits().is_none());
    let caps = pr.capabilities().clone().expect("caps");
    assert_eq!(caps.effective().clone().expect("eff").len(), 14);
    assert_eq!(caps.bounding(), caps.permitted());
    assert!(caps.inheritable().is_none());
    assert_eq!(p.spec.hostname().as_deref(), Some("0123456789ab"));
    assert_eq!(p.stop_signal, libc::SIGQUIT);
    assert!(p.exposed_ports.contains("80/tcp"));
    assert!(p.volumes.contains("/data"));
    assert_eq!(p.labels["from"], "image");
    let l = linux(&p);
    let ns: Vec<_> = l
        .namespaces()
        .clone()
        .expect("ns")
        .iter()
        .map(|n| n.typ())
        .collect();
    for t in [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
    ] {
        assert!(ns.contains(&t), "{t:?}");
    }
    assert_eq!(l.masked_paths().clone().expect("masked").len(), 12);
    assert_eq!(l.readonly_paths().clone().expect("ro").len(), 5);
    assert!(l.seccomp().is_some());
    assert_eq!(
        l.sysctl().clone().expect("sysctl")["net.ipv4.ip_unprivileged_port_start"],
        "0"
    );
    // The spec round-trips through JSON as config.json.
    let json = serde_json::to_string(&p.spec).expect("serialize");
    let back: Spec = serde_json::from_str(&json).expect("parse");
    berth_runtime::spec::validate(&back).expect("valid");
}

#[test]
fn request_overrides() {
    let tmp = rootfs();
    let mut opts = RunOptions {
        entrypoint: Some(vec!["/bin/env".into()]),
        env: vec!["IMG=2".into(), "NEW=x".into()],
        working_dir: Some("/w".into()),
        user: Some("app".into()),
        hostname: Some("web".into()),
        domainname: Some("example.org".into()),
        tty: true,
        stop_signal: Some("9".into()),
        readonly_rootfs: true,
        cgroups_path: Some("/berth/x".into()),
        ..RunOptions::default()
    };
    opts.labels.insert("from".into(), "request".into());
    opts.resources.ulimits.push(Ulimit {
        name: "nofile".into(),
        soft: 100,
        hard: 200,
    });
    let p = prepare(&image(|_| {}), tmp.path(), &opts).expect("prepare");
    let pr = process(&p);
    assert_eq!(
        pr.args().clone().expect("args"),
        ["/bin/env"],
        "image Cmd dropped"
    );
    assert_eq!(
        pr.env().clone().expect("env"),
        [
            "PATH=/bin",
            "HOSTNAME=web",
            "TERM=xterm",
            "IMG=2",
            "NEW=x",
            "HOME=/home/app"
        ]
    );
    assert_eq!(pr.cwd(), Path::new("/w"));
    assert_eq!((pr.user().uid(), pr.user().gid()), (1000, 1000));
    assert_eq!(pr.user().additional_gids().clone(), Some(vec![10]));
    let caps = pr.capabilities().clone().expect("caps");
    assert!(caps.effective().is_none(), "non-root: bounding only");
    assert_eq!(caps.bounding().clone().expect("bounding").len(), 14);
    assert_eq!(pr.terminal(), Some(true));
    assert_eq!(pr.rlimits().clone().expect("rlimits").len(), 1);
    assert_eq!(p.spec.domainname().as_deref(), Some("example.org"));
    assert_eq!(p.stop_signal, 9);
    assert_eq!(p.labels["from"], "request");
    assert_eq!(
        p.spec.root().as_ref().and_then(|r| r.readonly()),
        Some(true)
    );
    assert_eq!(
        linux(&p).cgroups_path().as_deref(),
        Some(Path::new("/berth/x"))
    );
}

#[test]
fn privileged_and_host_namespaces() {
    let tmp = rootfs();
    let opts = RunOptions {
        privileged: true,
        network: NamespaceMode::Host,
        pid: NamespaceMode::Host,
        ipc: NamespaceMode::Path("/proc/self/ns/ipc".into()),
        ..RunOptions::default()
    };
    let p = prepare(&image(|_| {}), tmp.path(), &opts).expect("prepare");
    let l = linux(&p);
    assert!(l.seccomp().is_none());
    assert!(l.masked_paths().clone().unwrap_or_default().is_empty());
    assert!(l.readonly_paths().clone().unwrap_or_default().is_empty());
    let caps = process(&p).capabilities().clone().expect("caps");
    assert_eq!(
        caps.effective().clone().expect("eff").len(),
        caps::bounding_set().expect("bnd").len()
    );
    let ns = l.namespaces().clone().expect("ns");
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
    let ipc = ns
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Ipc)
        .expect("ipc");
    assert_eq!(ipc.path().as_deref(), Some(Path::new("/proc/self/ns/ipc")));
    assert!(
        l.sysctl().clone().unwrap_or_default().is_empty(),
        "no net sysctls on host net"
    );
    let devs = l.devices().clone().unwrap_or_default();
    assert!(devs.iter().all(|d| d.path().starts_with("/dev")));
    assert!(!devs.iter().any(|d| d.path() == Path::new("/dev/null")));
    assert!(
        l.resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .expect("devices")[0]
            .allow()
    );
}

#[test]
fn security_opts_and_errors() {
    let tmp = rootfs();
    let run = |opts: RunOptions| prepare(&image(|_| {}), tmp.path(), &opts);
    let p = run(RunOptions {
        security_opt: vec!["seccomp=unconfined".into(), "no-new-privileges".into()],
        ..RunOptions::default()
    })
    .expect("unconfined");
    assert!(linux(&p).seccomp().is_none());
    assert_eq!(process(&p).no_new_privileges(), Some(true));
    let p = run(RunOptions {
        security_opt: vec![
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#.into(),
            "no-new-privileges:false".into(),
            "apparmor=unconfined".into(),
            "label=disable".into(),
        ],
        ..RunOptions::default()
    })
    .expect("profile");
    let s = linux(&p).seccomp().clone().expect("seccomp");
    assert_eq!(s.syscalls().clone().expect("rules").len(), 1);
    assert_eq!(process(&p).no_new_privileges(), Some(false));
    for (opt, msg) in [
        (
            "apparmor=docker-default",
            "AppArmor profiles are not supported",
        ),
        ("label=type:svirt_t", "SELinux labels are not supported"),
        ("bogus=1", "invalid --security-opt 2"),
        ("bogus", "invalid --security-opt 1"),
        ("no-new-privileges=maybe", "invalid --security-opt 2"),
        ("seccomp={", "decoding seccomp profile failed"),
    ] {
        let e = run(RunOptions {
            security_opt: vec![opt.into()],
            ..RunOptions::default()
        })
        .expect_err(opt)
        .to_string();
        assert!(e.contains(msg), "{opt}: {e}");
    }
    let cases: Vec<(RunOptions, &str)> = vec![
        (
            RunOptions {
                user: Some("ghost".into()),
                ..RunOptions::default()
            },
            "unable to find user ghost: no matching entries in passwd file",
        ),
        (
            RunOptions {
                cap_add: vec!["SUPERPOWER".into()],
                ..RunOptions::default()
            },
            "unknown capability: \"CAP_SUPERPOWER\"",
        ),
        (
            RunOptions {
                working_dir: Some("rel".into()),
                ..RunOptions::default()
            },
            "the working directory 'rel' is invalid, it needs to be an absolute path",
        ),
        (
            RunOptions {
                uts: NamespaceMode::Host,
                hostname: Some("x".into()),
                ..RunOptions::default()
            },
            "conflicting options: hostname and the UTS mode",
        ),
        (
            RunOptions {
                stop_signal: Some("SIGNOPE".into()),
                ..RunOptions::default()
            },
            "Invalid signal: SIGNOPE",
        ),
        (
            RunOptions {
                network: NamespaceMode::Host,
                sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())]
                    .into_iter()
                    .collect(),
                ..RunOptions::default()
            },
            "linux.sysctl.net.ipv4.ip_forward",
        ),
    ];
    for (opts, msg) in cases {
        let e = run(opts).expect_err(msg).to_string();
        assert!(e.contains(msg), "{msg}: {e}");
    }
    // Workdir that is a file.
    std::fs::write(tmp.path().join("file"), "").expect("write");
    let e = run(RunOptions {
        working_dir: Some("/file".into()),
        ..RunOptions::default()
    })
    .expect_err("file workdir");
    assert_eq!(e.to_string(), "Cannot mkdir: /file is not a directory");
}

#[test]
fn image_without_config() {
    let tmp = rootfs();
    let img = ImageConfigurationBuilder::default().build().expect("image");
    let e = prepare(&img, tmp.path(), &RunOptions::default()).expect_err("no cmd");
    assert_eq!(e.to_string(), "No command specified");
    let p = prepare(
        &img,
        tmp.path(),
        &RunOptions {
            cmd: Some(vec!["true".into()]),
            ..RunOptions::default()
        },
    )
    .expect("cmd");
    let env = process(&p).env().clone().expect("env");
    assert_eq!(env[0], format!("PATH={}", config::DEFAULT_PATH));
    assert_eq!(process(&p).cwd(), Path::new("/"));
    assert_eq!(p.stop_signal, libc::SIGTERM);
}
