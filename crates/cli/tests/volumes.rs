#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `berth volume …` against berthd: create, ls (table, -q, filters,
//! --format), inspect (-f), rm (in use, missing, -f), prune (-a).

mod common;

use common::Daemon;

#[test]
fn volume_verbs() {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root || std::env::var_os("BERTH_TEST_ROOT").is_none() {
        eprintln!("skipped: needs root and BERTH_TEST_ROOT=1");
        return;
    }
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    assert_eq!(
        d.ok(&["volume", "create", "--label", "k=v", "vol-a"]),
        "vol-a\n"
    );
    assert_eq!(d.ok(&["volume", "create", "--name", "vol-b"]), "vol-b\n");
    let anon = d.ok(&["volume", "create"]);
    assert_eq!(anon.trim().len(), 64, "{anon}");

    let table = d.ok(&["volume", "ls"]);
    let mut lines = table.lines();
    assert_eq!(lines.next(), Some("DRIVER    VOLUME NAME"));
    assert!(table.contains("local     vol-a\n"), "{table}");
    assert_eq!(
        d.ok(&["volume", "ls", "-q", "--filter", "label=k=v"]),
        "vol-a\n"
    );
    assert_eq!(
        d.ok(&[
            "volume",
            "ls",
            "--filter",
            "name=vol-",
            "--format",
            "{{.Name}} {{.Labels}}"
        ]),
        "vol-a k=v\nvol-b \n"
    );
    let mp = d.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}} {{.Scope}}",
        "vol-a",
    ]);
    assert_eq!(
        mp,
        format!(
            "{} local\n",
            d.data_root.join("volumes/vol-a/_data").display()
        )
    );
    let j: serde_json::Value =
        serde_json::from_str(&d.ok(&["volume", "inspect", "vol-b"])).unwrap();
    assert_eq!(j[0]["Name"], "vol-b");

    // In use: refused with Docker's words; rm of several reports each.
    d.ok(&[
        "create",
        "--name",
        "user1",
        "-v",
        "vol-a:/data",
        "bb",
        "true",
    ]);
    let err = d.fails(&["volume", "rm", "vol-a", "vol-b", "nosuch"], 1);
    assert!(err.contains("remove vol-a: volume is in use - ["), "{err}");
    assert!(err.contains("get nosuch: no such volume"), "{err}");
    d.ok(&["volume", "rm", "-f", "nosuch"]);
    d.ok(&["rm", "user1"]);

    // --mount and --volumes-from of run.
    d.ok(&[
        "run",
        "--name",
        "src1",
        "--mount",
        "type=volume,src=vol-m,dst=/m",
        "bb",
        "sh",
        "-c",
        "echo hi > /m/f",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "src1:ro",
            "bb",
            "cat",
            "/m/f"
        ]),
        "hi\n"
    );
    d.ok(&["rm", "-v", "src1"]);
    d.ok(&["volume", "rm", "vol-m"]);

    // Prune: the anonymous one, then everything with -a.
    let out = d.ok(&["volume", "prune", "-f"]);
    assert!(out.contains(anon.trim()), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "vol-a\n");
    let out = d.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Volumes:\nvol-a\n"), "{out}");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    let err = d.fails(&["volume", "create", "-o", "type", "v3"], 1);
    assert!(err.contains("invalid key/value pair"), "{err}");
}
