#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Networks through berthd, judged by the real docker CLI: the default
//! bridge, user networks with DNS by name, alias and short id, published
//! ports reached from the host, isolation, connect/disconnect, bad input,
//! and nothing left behind after removal or a SIGKILLed daemon.
//!
//! Every daemon has its own bridge, nftables table and address space (see
//! `common`); traffic goes only to 127.0.0.1 and into the test's own
//! containers.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, busybox_archive, root};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn daemon_with_busybox() -> Daemon {
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "busybox:latest", "networks", &arch);
    d.docker_ok(&["load", "-q", "-i", arch.to_str().unwrap()]);
    d
}

fn inspect(d: &Daemon, what: &str, name: &str) -> Value {
    json(&d.docker_ok(&["inspect", "--type", what, name]))[0].clone()
}

/// A detached busybox httpd serving `body` on port 80, with `args` before
/// the image.
fn httpd(d: &Daemon, name: &str, args: &[&str], body: &str) {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut a = vec!["run", "-d", "--name", name];
    a.extend_from_slice(args);
    a.extend_from_slice(&["busybox", "sh", "-c", &script]);
    d.docker_ok(&a);
}

/// `GET /` on 127.0.0.1:`port` from the host; the body.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match r {
            Ok(out) if out.contains("\r\n\r\n") => {
                return out.split_once("\r\n\r\n").unwrap().1.to_owned();
            }
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("GET 127.0.0.1:{port}: {other:?}"),
        }
    }
}

/// The ports (veths) on a bridge.
fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|s| s.split('@').next().unwrap_or(s).to_owned())
        .collect()
}

/// The rules of this daemon's nftables table that belong to containers.
fn container_rules(d: &Daemon) -> usize {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", &d.net_tag])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"ctr:"))
        .count()
}

fn netns_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.exec_root().join("netns"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The spare namespace berthd keeps for the next start (see
/// berth_engine::networks): waits (5 s at most) for it when `wait`.
fn spare_netns(d: &Daemon, wait: bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = std::fs::read_dir(d.exec_root().join("netns-spare"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !wait || !names.is_empty() || std::time::Instant::now() > deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a link of that name exists on the host.
fn host_link(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn free_port() -> u16 {
    common::free_port()
}

#[test]
fn default_bridge_gives_an_address_hosts_and_a_route() {
    if !root() {
        return;
    }
    let d = daemon_with_busybox();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--hostname",
        "box1",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; ip route; cat /etc/hosts",
    ]);
    let subnet = format!("10.150.{}.", d.net_index);
    assert!(out.contains(&format!("inet {subnet}")), "{out}");
    assert!(out.contains(&format!("default via {subnet}1")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&subnet) && l.ends_with("box1")),
        "{out}"
    );
    // --network none: loopback only; host: the host's interfaces.
    let none = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(none.lines().count(), 1, "{none}");
    let host = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(host.contains(&d.net_tag), "{host}");
    // Inspect while running shows the address; gone after rm.
    d.docker_ok(&["run", "-d", "--name", "sl", "busybox", "sleep", "60"]);
    let c = inspect(&d, "container", "sl");
    let ip = c["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ip.starts_with(&subnet), "{c}");
    assert_eq!(
        c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"],
        Value::from(ip.clone())
    );
    assert_eq!(bridge_ports(&d.net_tag).len(), 1);
    let n = inspect(&d, "network", "bridge");
    assert!(n["Containers"].as_object().unwrap().len() == 1, "{n}");

    // --network container:sl shares sl's hostname, hosts and resolv.conf
    // (the same files), and refuses what would change them.
    let files = "cat /etc/hostname /etc/hosts /etc/resolv.conf";
    let theirs = d.docker_ok(&["exec", "sl", "sh", "-c", files]);
    let mine = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "container:sl",
        "busybox",
        "sh",
        "-c",
        &format!("{files}; hostname"),
    ]);
    let host = c["Config"]["Hostname"].as_str().unwrap();
    assert_eq!(mine, format!("{theirs}{host}\n"));
    let joined = d.docker_ok(&["create", "--network", "container:sl", "busybox", "true"]);
    d.docker_ok(&["start", joined.trim()]);
    let j = inspect(&d, "container", joined.trim());
    for k in ["HostsPath", "ResolvConfPath", "HostnamePath"] {
        assert_eq!(j[k], c[k], "{k}");
    }
    d.docker_ok(&["rm", "-f", joined.trim()]);
    for (flag, words) in [
        ("--hostname=h", "hostname and the network mode"),
        ("--dns=10.9.9.9", "dns and the network mode"),
        (
            "--add-host=a:10.9.9.9",
            "custom host-to-IP mapping and the network mode",
        ),
        (
            "-p=80",
            "port publishing and the container type network mode",
        ),
        (
            "--expose=80",
            "port exposing and the container type network mode",
        ),
        (
            "--mac-address=02:42:0a:00:00:09",
            "mac-address and the network mode",
        ),
        (
            "--link=sl:x",
            "container type network can't be used with links",
        ),
    ] {
        let e = d.docker_err(&["create", "--network", "container:sl", flag, "busybox"]);
        assert!(
            e.contains(&format!("conflicting options: {words}")),
            "{flag}: {e}"
        );
    }

    // Legacy links on the default bridge: hosts entries and variables.
    let e = d.docker_err(&["create", "--link", "nosuch:db", "busybox"]);
    assert!(
        e.contains("could not get container for nosuch: No such container: nosuch"),
        "{e}"
    );
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "lsrv",
        "-e",
        "SECRET=s1",
        "--expose",
        "80",
        "busybox",
        "sleep",
        "60",
    ]);
    let srv = inspect(&d, "container", "lsrv");
    let sip = srv["NetworkSettings"]["IPAddress"].as_str().unwrap();
    let shost = srv["Config"]["Hostname"].as_str().unwrap();
    let out = d.docker_ok(&[
        "run",
        "--name",
        "lcli",
        "--link",
        "lsrv:db",
        "busybox",
        "sh",
        "-c",
        "grep -w db /etc/hosts; env | grep ^DB_ | sort; ping -c1 -W2 db >/dev/null && echo PING",
    ]);
    assert!(out.contains(&format!("{sip}\tdb {shost} lsrv\n")), "{out}");
    for v in [
        format!("DB_PORT=tcp://{sip}:80"),
        format!("DB_PORT_80_TCP=tcp://{sip}:80"),
        format!("DB_PORT_80_TCP_ADDR={sip}"),
        "DB_PORT_80_TCP_PORT=80".to_owned(),
        "DB_PORT_80_TCP_PROTO=tcp".to_owned(),
        "DB_NAME=/lcli/db".to_owned(),
        "DB_ENV_SECRET=s1".to_owned(),
        "PING".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == v), "{v}: {out}");
    }
    assert!(!out.contains("DB_ENV_PATH"), "{out}");
    let l = inspect(&d, "container", "lcli");
    assert_eq!(
        l["HostConfig"]["Links"],
        serde_json::json!(["/lsrv:/lcli/db"])
    );
    // The linked container must run when the linking one starts.
    d.docker_ok(&["stop", "-t", "0", "lsrv"]);
    let e = d.docker_err(&["start", "lcli"]);
    assert!(
        e.contains("Cannot link to a non running container: /lsrv AS /lcli/db"),
        "{e}"
    );
    // A removed container takes its links with it.
    d.docker_ok(&["rm", "-f", "lsrv"]);
    d.docker_ok(&["start", "lcli"]);
    let l = inspect(&d, "container", "lcli");
    assert_eq!(l["HostConfig"]["Links"], Value::Null);
    d.docker_ok(&["rm", "-f", "sl", "lcli"]);
    assert!(bridge_ports(&d.net_tag).is_empty());
    assert!(netns_files(&d).is_empty());
}

#[test]
fn user_network_resolves_names_aliases_and_short_ids() {
    if !root() {
        return;
    }
    let d = daemon_with_busybox();
    d.docker_ok(&["network", "create", "appnet"]);
    httpd(
        &d,
        "web",
        &["--network", "appnet", "--network-alias", "www"],
        "hello-web",
    );
    let id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "web"]);
    let short = &id.trim()[..12];
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "busybox",
        "sh",
        "-c",
        &format!(
            "cat /etc/resolv.conf; for h in web www {short} web.appnet; do wget -qO- http://$h/ || echo FAIL $h; done; nslookup nosuchname 127.0.0.11 >/dev/null 2>&1 || echo NX"
        ),
    ]);
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    assert_eq!(out.matches("hello-web").count(), 4, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("NX"), "{out}");
    // The subnet came from this daemon's pool.
    let n = inspect(&d, "network", "appnet");
    let subnet = n["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
    assert!(
        subnet.starts_with(&format!("10.{}.", 151 + d.net_index)),
        "{n}"
    );
    let members = n["Containers"].as_object().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[id.trim()]["Name"], "web");
    // The default bridge has no embedded DNS (as with Docker).
    let plain = d.docker_ok(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]);
    assert!(!plain.contains("127.0.0.11"), "{plain}");
    // A renamed container answers to its new name.
    d.docker_ok(&["rename", "web", "web2"]);
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "busybox",
        "wget",
        "-qO-",
        "http://web2/",
    ]);
    assert!(out.contains("hello-web"), "{out}");
    // On a user network a link is an alias only the linking container
    // resolves (through the embedded DNS).
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "--link",
        "web2:backend",
        "busybox",
        "wget",
        "-qO-",
        "http://backend/",
    ]);
    assert!(out.contains("hello-web"), "{out}");
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "busybox",
        "sh",
        "-c",
        "nslookup backend 127.0.0.11 >/dev/null 2>&1 && echo FOUND || echo NX",
    ]);
    assert_eq!(out.trim(), "NX");
}

#[test]
fn published_ports_are_reached_from_the_host() {
    if !root() {
        return;
    }
    let d = daemon_with_busybox();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    httpd(&d, "pub", &["-p", &spec], "hello-published");
    assert_eq!(http_get(port).trim(), "hello-published");
    let p = d.docker_ok(&["port", "pub"]);
    assert_eq!(p.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    let ps = d.docker_ok(&["ps", "--format", "{{.Ports}}", "--filter", "name=pub"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->80/tcp"));

    // -P: every exposed port on an ephemeral one.
    httpd(&d, "all", &["--expose", "80", "-P"], "hello-all");
    let p = d.docker_ok(&["port", "all", "80"]);
    let eph: u16 = p
        .lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(eph, 0);
    assert_eq!(http_get(eph).trim(), "hello-all");

    // The same host port again: a clear error, and nothing half made.
    let before = bridge_ports(&d.net_tag).len();
    let e = d.docker_err(&[
        "run", "-d", "--name", "clash", "-p", &spec, "busybox", "sleep", "60",
    ]);
    assert!(e.contains("port is already allocated"), "{e}");
    assert!(e.contains(&port.to_string()), "{e}");
    assert_eq!(bridge_ports(&d.net_tag).len(), before);
    assert_eq!(netns_files(&d).len(), 2);
    let c = inspect(&d, "container", "clash");
    assert_eq!(c["State"]["Running"], false);
    assert_eq!(c["NetworkSettings"]["IPAddress"], "");

    // Bad specifications are refused at create.
    let e = d.docker_err(&["create", "-p", "127.0.0.1:70000:80", "busybox"]);
    assert!(e.to_lowercase().contains("invalid"), "{e}");
    let e = d.docker_err(&["create", "--network", "none", "-p", "80", "busybox"]);
    assert!(e.contains("conflicting options"), "{e}");

    // Removal takes the rules and the reservation away: the port is free.
    d.docker_ok(&["rm", "-f", "pub", "all", "clash"]);
    assert_eq!(container_rules(&d), 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port free again after rm");
    assert!(netns_files(&d).is_empty());
}

#[test]
fn networks_are_isolated_and_internal_networks_have_no_way_out() {
    if !root() {
        return;
    }
    let d = daemon_with_busybox();
    d.docker_ok(&["network", "create", "one"]);
    d.docker_ok(&["network", "create", "two"]);
    d.docker_ok(&["network", "create", "--internal", "closed"]);
    d.docker_ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "noicc",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "a1",
        "--network",
        "one",
        "busybox",
        "sleep",
        "60",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "q1",
        "--network",
        "noicc",
        "busybox",
        "sleep",
        "60",
    ]);
    let ip_of = |name: &str, net: &str| {
        d.docker_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            name,
        ])
        .trim()
        .to_owned()
    };
    let a1 = ip_of("a1", "one");
    let q1 = ip_of("q1", "noicc");
    let ping = |net: &str, ip: &str| {
        d.docker(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            ip,
        ])
        .status
        .success()
    };
    assert!(ping("one", &a1), "same network reaches");
    assert!(!ping("two", &a1), "another network does not");
    assert!(!ping("noicc", &q1), "icc=false isolates containers");
    let routes = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "closed",
        "busybox",
        "ip",
        "route",
    ]);
    assert!(!routes.contains("default"), "{routes}");
    // IPv6 where enabled: an address of the subnet, reached by name.
    let v6 = format!("fd15:{:x}::/64", d.net_index + 1);
    d.docker_ok(&["network", "create", "--ipv6", "--subnet", &v6, "six"]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "s6",
        "--network",
        "six",
        "busybox",
        "sleep",
        "60",
    ]);
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "six",
        "busybox",
        "sh",
        "-c",
        "ip -6 -o addr show eth0; ping6 -c 1 -W 2 s6",
    ]);
    assert!(
        out.contains(&format!("inet6 fd15:{:x}::", d.net_index + 1)),
        "{out}"
    );
    assert!(out.contains("1 packets received"), "{out}");
}

#[test]
fn static_addresses_connect_disconnect_and_bad_input() {
    if !root() {
        return;
    }
    let d = daemon_with_busybox();
    let net = 151 + d.net_index;
    let subnet = format!("10.{net}.200.0/24");
    d.docker_ok(&[
        "network",
        "create",
        "--subnet",
        &subnet,
        "--gateway",
        &format!("10.{net}.200.254"),
        "fixed",
    ]);
    let n = inspect(&d, "network", "fixed");
    assert_eq!(
        n["IPAM"]["Config"][0]["Gateway"],
        format!("10.{net}.200.254")
    );
    let want = format!("10.{net}.200.77");
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "st",
        "--network",
        "fixed",
        "--ip",
        &want,
        "busybox",
        "sleep",
        "60",
    ]);
    let got = d.docker_ok(&["exec", "st", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(got.contains(&format!("{want}/24")), "{got}");

    // The same address again is refused; outside the subnet too.
    let e = d.docker_err(&[
        "run",
        "-d",
        "--network",
        "fixed",
        "--ip",
        &want,
        "busybox",
        "sleep",
        "1",
    ]);
    assert!(e.contains("already in use"), "{e}");
    let e = d.docker_err(&[
        "create",
        "--network",
        "fixed",
        "--ip",
        "10.1.2.3",
        "busybox",
    ]);
    assert!(e.contains("no configured subnet"), "{e}");
    let e = d.docker_err(&[
        "create",
        "--ip",
        &format!("10.150.{}.9", d.net_index),
        "busybox",
    ]);
    assert!(e.contains("user defined networks"), "{e}");
    // (The docker CLI takes any 404 of create for a missing image and
    // tries a pull, so this one is asked over the API.)
    let (status, _, body) = d
        .try_http(
            "POST",
            "/containers/create",
            br#"{"Image":"busybox","HostConfig":{"NetworkMode":"nosuch"}}"#,
        )
        .unwrap();
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("network nosuch not found"));

    // connect / disconnect a running container.
    d.docker_ok(&["run", "-d", "--name", "mover", "busybox", "sleep", "60"]);
    d.docker_ok(&["network", "connect", "--alias", "mv", "fixed", "mover"]);
    let links = d.docker_ok(&["exec", "mover", "ip", "-4", "-o", "addr"]);
    assert!(
        links.contains("eth1") && links.contains(&format!("10.{net}.200.")),
        "{links}"
    );
    let out = d.docker_ok(&["exec", "st", "ping", "-c", "1", "-W", "2", "mv"]);
    assert!(out.contains("1 packets received"), "{out}");
    let e = d.docker_err(&["network", "connect", "fixed", "mover"]);
    assert!(e.contains("already exists"), "{e}");
    d.docker_ok(&["network", "disconnect", "fixed", "mover"]);
    let links = d.docker_ok(&["exec", "mover", "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");

    // Networks: clashes, overlaps, bad CIDRs, in-use and predefined removal.
    let before = d.docker_ok(&["network", "ls", "-q"]);
    let e = d.docker_err(&["network", "create", "fixed"]);
    assert!(e.contains("already exists"), "{e}");
    let e = d.docker_err(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{net}.200.128/25"),
        "overlap",
    ]);
    assert!(e.to_lowercase().contains("overlaps"), "{e}");
    let e = d.docker_err(&["network", "create", "--subnet", "10.0.0.300/24", "badcidr"]);
    assert!(e.contains("invalid subnet"), "{e}");
    let e = d.docker_err(&[
        "network",
        "create",
        "--subnet",
        "10.9.9.0/24",
        "--gateway",
        "10.8.0.1",
        "badgw",
    ]);
    assert!(e.contains("gateway"), "{e}");
    let e = d.docker_err(&["network", "create", "-d", "overlay", "ov"]);
    assert!(e.contains("not found"), "{e}");
    assert_eq!(
        d.docker_ok(&["network", "ls", "-q"]),
        before,
        "nothing half made"
    );
    let e = d.docker_err(&["network", "rm", "fixed"]);
    assert!(e.contains("active endpoints"), "{e}");
    let e = d.docker_err(&["network", "rm", "bridge"]);
    assert!(e.contains("pre-defined"), "{e}");
    d.docker_ok(&["rm", "-f", "st", "mover"]);
    d.docker_ok(&["network", "rm", "fixed"]);
    d.docker_ok(&["network", "create", "leftover"]);
    let pruned = d.docker_ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("leftover"), "{pruned}");
    let names = d.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["bridge", "host", "none"]);
}

#[test]
fn nothing_leaks_across_a_killed_daemon() {
    if !root() {
        return;
    }
    let mut d = daemon_with_busybox();
    d.docker_ok(&["network", "create", "keep"]);
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    httpd(&d, "srv", &["--network", "keep", "-p", &spec], "survives");
    // Exits while berthd is away: its namespace and address must go.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "brief",
        "--network",
        "keep",
        "busybox",
        "sleep",
        "1",
    ]);
    let bridge = common::user_bridge(&inspect(&d, "network", "keep")).unwrap();
    assert_eq!(bridge_ports(&bridge).len(), 2);
    // The next start's namespace is made ahead, with its veth pair.
    let spare = spare_netns(&d, true);
    assert_eq!(spare.len(), 1, "{spare:?}");
    let spare_veth = berth_net::bridge::host_veth_name(&spare[0]);
    assert!(host_link(&spare_veth), "{spare_veth}");
    d.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    // The published port works without the daemon (DNAT in the kernel).
    assert_eq!(http_get(port).trim(), "survives");
    d.spawn();
    assert_eq!(http_get(port).trim(), "survives");
    assert_eq!(netns_files(&d).len(), 1, "only srv's namespace is left");
    assert_eq!(bridge_ports(&bridge).len(), 1);
    // (the restarted one makes its own after the exit it found)
    assert!(
        !spare_netns(&d, false).contains(&spare[0]),
        "the killed berthd's spare is gone"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host_link(&spare_veth) {
        assert!(std::time::Instant::now() < deadline, "{spare_veth} stays");
        std::thread::sleep(Duration::from_millis(20));
    }
    // DNS is served again after the restart.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "keep",
        "busybox",
        "wget",
        "-qO-",
        "http://srv/",
    ]);
    assert!(out.contains("survives"), "{out}");
    // The port is still held: another container cannot take it.
    let e = d.docker_err(&["run", "-d", "-p", &spec, "busybox", "sleep", "60"]);
    assert!(e.contains("already allocated"), "{e}");
    // Addresses are given back and not lost: after everything is removed,
    // the network has no members and new containers get addresses.
    let ids = d.docker_ok(&["ps", "-aq"]);
    for id in ids.lines() {
        d.docker_ok(&["rm", "-f", id]);
    }
    assert!(bridge_ports(&bridge).is_empty());
    assert!(netns_files(&d).is_empty());
    assert_eq!(container_rules(&d), 0);
    let n = inspect(&d, "network", "keep");
    assert!(n["Containers"].as_object().unwrap().is_empty(), "{n}");
    for i in 0..3 {
        let out = d.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "keep",
            "busybox",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ]);
        assert!(out.contains("inet 10."), "run {i}: {out}");
    }
    // A stopping berthd takes its spare along.
    let spare = spare_netns(&d, true);
    assert_eq!(spare.len(), 1, "{spare:?}");
    d.docker_ok(&["network", "rm", "keep"]);
    d.terminate();
    assert!(spare_netns(&d, false).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = d.exec_root().display().to_string();
    assert!(
        !mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| m.starts_with(&root)),
        "nothing stays mounted under {root}"
    );
}

/// `wget` inside container `name` of `http://<ip>:<port>/`; the body, or the error.
fn wget_in(d: &Daemon, name: &str, ip: &str, port: u16) -> Result<String, String> {
    let url = format!("http://{ip}:{port}/");
    // Not `wget -T`: Debian's busybox 1.35 wget crashes with it.
    let out = d.docker(&["exec", name, "timeout", "10", "wget", "-qO-", &url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn containers_reach_published_ports_through_the_gateway() {
    if !root() {
        return;
    }
    let mut d = daemon_with_busybox();
    d.docker_ok(&["network", "create", "hairnet"]);
    let (port, uport, lport) = (free_port(), free_port(), free_port());
    httpd(&d, "hp", &["-p", &format!("{port}:80")], "hello-bridge");
    httpd(
        &d,
        "hpu",
        &[
            "--network",
            "hairnet",
            "-p",
            &format!("{uport}:80"),
            "-p",
            &format!("127.0.0.1:{lport}:80"),
        ],
        "hello-user",
    );
    // Both serve (DNAT from 127.0.0.1, unchanged).
    assert_eq!(http_get(port).trim(), "hello-bridge");
    assert_eq!(http_get(uport).trim(), "hello-user");
    let gw = inspect(&d, "container", "hp")["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_owned();
    let ugw = inspect(&d, "network", "hairnet")["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_owned();
    // A container reaches its own published port through its gateway, on the default
    // bridge and on a user network.
    assert_eq!(wget_in(&d, "hp", &gw, port).unwrap(), "hello-bridge");
    assert_eq!(wget_in(&d, "hpu", &ugw, uport).unwrap(), "hello-user");
    // Another container reaches them too, from its own network or another one.
    d.docker_ok(&["run", "-d", "--name", "cli", "busybox", "sleep", "60"]);
    assert_eq!(wget_in(&d, "cli", &gw, port).unwrap(), "hello-bridge");
    assert_eq!(wget_in(&d, "cli", &gw, uport).unwrap(), "hello-user");
    assert_eq!(wget_in(&d, "hpu", &ugw, port).unwrap(), "hello-bridge");
    // A port published on 127.0.0.1 only is not reachable from containers (their
    // 127.0.0.1 is their own), as with Docker.
    assert!(wget_in(&d, "hpu", &ugw, lport).is_err());

    // After a daemon restart the relays are back.
    d.kill9();
    d.spawn();
    assert_eq!(wget_in(&d, "hp", &gw, port).unwrap(), "hello-bridge");
    assert_eq!(wget_in(&d, "cli", &gw, uport).unwrap(), "hello-user");

    // Removal closes the listeners and takes the rules away: the ports are free.
    d.docker_ok(&["rm", "-f", "hp", "hpu", "cli"]);
    assert_eq!(container_rules(&d), 0);
    for p in [port, uport, lport] {
        std::net::TcpListener::bind(("127.0.0.1", p)).expect("port free again after rm");
    }
    assert!(netns_files(&d).is_empty());
}
