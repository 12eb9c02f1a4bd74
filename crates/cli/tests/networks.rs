#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `berth network …` against berthd: create, ls, inspect, connect,
//! disconnect, rm, prune, and `run --network` with an alias.

mod common;

use common::Daemon;

#[test]
fn network_verbs() {
    let d = Daemon::start();
    d.load_busybox("bb:latest");
    let id = d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.147.9.0/24",
        "--ip-range",
        "10.147.9.0/25",
        "--aux-address",
        "router=10.147.9.2",
        "--label",
        "team=a",
        "front",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let ls = d.ok(&["network", "ls"]);
    let header = ls.lines().next().unwrap();
    assert!(
        header.starts_with("NETWORK ID") && header.contains("DRIVER"),
        "{ls}"
    );
    for n in ["bridge", "host", "none", "front"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)),
            "{ls}"
        );
    }
    let q = d.ok(&["network", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(q.trim(), &id.trim()[..12]);
    let subnet = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "front",
    ]);
    assert_eq!(subnet.trim(), "10.147.9.0/24");
    let ipam = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json (index .IPAM.Config 0)}}",
        "front",
    ]);
    let ipam: serde_json::Value = serde_json::from_str(ipam.trim()).unwrap();
    assert_eq!(ipam["IPRange"], "10.147.9.0/25", "{ipam}");
    assert_eq!(ipam["AuxiliaryAddresses"]["router"], "10.147.9.2", "{ipam}");
    let err = d.fails(
        &[
            "network",
            "create",
            "--subnet",
            "10.147.10.0/24",
            "--aux-address",
            "r=10.147.11.2",
            "back",
        ],
        1,
    );
    assert!(
        err.contains("no matching subnet for aux-address 10.147.11.2"),
        "{err}"
    );

    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        "bb",
        "sleep",
        "60",
    ]);
    let addr = d.ok(&[
        "exec", "web", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(addr.contains("10.147.9."), "{addr}");
    // The auxiliary address is never handed out.
    assert!(!addr.contains("10.147.9.2/"), "{addr}");
    d.ok(&["run", "-d", "--name", "other", "bb", "sleep", "60"]);
    d.ok(&[
        "network",
        "connect",
        "--ip",
        "10.147.9.50",
        "front",
        "other",
    ]);
    let addr = d.ok(&[
        "exec", "other", "busybox", "ip", "-4", "-o", "addr", "show", "eth1",
    ]);
    assert!(addr.contains("10.147.9.50/24"), "{addr}");
    // --link on a user network: an alias only the linking container has.
    let got = d.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--link",
        "web:db",
        "bb",
        "busybox",
        "nslookup",
        "db",
    ]);
    assert!(got.contains("10.147.9."), "{got}");
    let members = d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "front"]);
    assert_eq!(members.trim(), "2");
    d.ok(&["network", "disconnect", "front", "other"]);
    let err = d.fails(&["network", "rm", "front"], 1);
    assert!(err.contains("active endpoints"), "{err}");
    d.ok(&["rm", "-f", "web", "other"]);
    assert_eq!(d.ok(&["network", "rm", "front"]).trim(), "front");
    let err = d.fails(&["network", "rm", "front"], 1);
    assert!(err.contains("not found"), "{err}");
    d.ok(&["network", "rm", "-f", "front"]);
    d.ok(&["network", "create", "spare"]);
    let pruned = d.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\nspare\n");
}
