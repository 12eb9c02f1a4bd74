#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Arbitrary bodies and query strings to every route of berthd, for a
//! bounded number of requests: no crash, and no 5xx (a 5xx here would be a
//! fault of berthd's, not of the request).

mod common;

use std::time::Duration;

use common::{Daemon, busybox_archive};

/// xorshift64*: deterministic, seeded per run from the clock (the seed is
/// printed so that a failure can be replayed with BERTH_FUZZ_SEED).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const KEYS: &[&str] = &[
    "Image",
    "Cmd",
    "Entrypoint",
    "Env",
    "HostConfig",
    "Memory",
    "NanoCpus",
    "Binds",
    "Mounts",
    "RestartPolicy",
    "Name",
    "MaximumRetryCount",
    "LogConfig",
    "Type",
    "Config",
    "max-size",
    "CapAdd",
    "SecurityOpt",
    "Tmpfs",
    "Ulimits",
    "Soft",
    "Hard",
    "Healthcheck",
    "Test",
    "Tty",
    "OpenStdin",
    "User",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "ShmSize",
    "Sysctls",
    "PidsLimit",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "Devices",
    "NetworkMode",
    "ExtraHosts",
    "Detach",
    "AttachStdout",
    "ConsoleSize",
    "Privileged",
    "Dns",
    "Init",
    "AutoRemove",
];

fn value(r: &mut Rng, depth: u32) -> serde_json::Value {
    use serde_json::{Value, json};
    match r.below(if depth > 3 { 7 } else { 10 }) {
        0 => Value::Null,
        1 => json!(r.below(2) == 0),
        2 => json!(r.next() as i64),
        3 => json!(*r.pick(&[-1i64, 0, 1, 6 << 20, 1 << 62, i64::MIN])),
        4 => json!(*r.pick(&[
            "",
            "busybox",
            "x",
            "../../etc",
            "always",
            "on-failure",
            "json-file",
            "/tmp:/x:ro",
            "sh",
            "\u{0}",
            "on-failure:-3",
            "seccomp=unconfined",
            "9999999999999999999"
        ])),
        5 => json!(1.5e300),
        6 => json!("a".repeat(r.below(5000))),
        7 => Value::Array((0..r.below(4)).map(|_| value(r, depth + 1)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..r.below(6) {
                m.insert((*r.pick(KEYS)).to_owned(), value(r, depth + 1));
            }
            Value::Object(m)
        }
    }
}

fn body(r: &mut Rng) -> Vec<u8> {
    match r.below(6) {
        0 => Vec::new(),
        1 => (0..r.below(300)).map(|_| r.next() as u8).collect(),
        2 => b"{\"Image\":".to_vec(),
        _ => serde_json::to_vec(&value(r, 0)).unwrap(),
    }
}

fn query(r: &mut Rng) -> String {
    let keys = [
        "name",
        "all",
        "filters",
        "force",
        "t",
        "signal",
        "condition",
        "h",
        "w",
        "tail",
        "since",
        "until",
        "follow",
        "stdout",
        "stderr",
        "stream",
        "path",
        "ps_args",
        "repo",
        "tag",
        "changes",
        "limit",
        "v",
        "detachKeys",
        "container",
    ];
    let vals = [
        "",
        "1",
        "0",
        "true",
        "-1",
        "abc",
        "%7B%22status%22%3A%5B%22running%22%5D%7D",
        "%7B%22x%22",
        "99999999999999999999",
        "..%2F..%2Fetc",
        "%00",
        "bad%20name",
        "SIGKILL",
        "next-exit",
        "removed",
        "ctrl-x",
        "/",
        "/etc/passwd",
        "10m",
    ];
    let n = r.below(4);
    (0..n)
        .map(|_| format!("{}={}", r.pick(&keys), r.pick(&vals)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn arbitrary_requests_never_crash_berthd_or_get_a_5xx() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "busybox:latest", "fuzz", &arch);
    d.docker_ok(&["load", "-q", "-i", arch.to_str().unwrap()]);
    d.docker_ok(&["create", "--name", "target", "busybox", "true"]);

    let seed = std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fuzz seed {seed} (BERTH_FUZZ_SEED={seed} replays it)");
    let mut r = Rng(seed);
    let routes: &[(&str, &str)] = &[
        ("POST", "/containers/create"),
        ("GET", "/containers/json"),
        ("POST", "/containers/prune"),
        ("GET", "/containers/{c}/json"),
        ("POST", "/containers/{c}/stop"),
        ("POST", "/containers/{c}/kill"),
        ("POST", "/containers/{c}/pause"),
        ("POST", "/containers/{c}/rename"),
        ("POST", "/containers/{c}/resize"),
        ("GET", "/containers/{c}/logs"),
        ("GET", "/containers/{c}/changes"),
        ("HEAD", "/containers/{c}/archive"),
        ("POST", "/containers/{c}/exec"),
        ("DELETE", "/containers/{c}"),
        ("GET", "/exec/{c}/json"),
        ("POST", "/exec/{c}/resize"),
        ("POST", "/commit"),
        ("GET", "/images/json"),
        ("GET", "/images/{c}/json"),
        ("POST", "/images/{c}/tag"),
        ("DELETE", "/images/{c}"),
        ("POST", "/images/prune"),
        ("POST", "/images/load"),
        ("POST", "/images/create"),
        ("GET", "/images/search"),
        ("POST", "/build"),
        ("GET", "/info"),
        ("GET", "/version"),
        ("GET", "/system/df"),
        ("GET", "/nonexistent/route"),
    ];
    let targets = [
        "target",
        "busybox",
        "nosuch",
        "",
        "%2e%2e",
        "a%2Fb",
        "0",
        "sha256:",
        &"f".repeat(64),
    ];
    let mut failures = Vec::new();
    let n: usize = std::env::var("BERTH_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    for i in 0..n {
        let (method, route) = *r.pick(routes);
        let target = *r.pick(&targets);
        let mut path = route.replace("{c}", target);
        if r.below(3) > 0 {
            path = format!("{path}?{}", query(&mut r));
        }
        if r.below(2) == 0 {
            path = format!("/v1.{}{path}", r.below(60));
        }
        let b = body(&mut r);
        match d.try_http(method, &path, &b) {
            Ok((status, _, resp)) => {
                if status >= 500 && status != 501 {
                    failures.push(format!(
                        "#{i} {method} {path} body {:?} → {status} {}",
                        String::from_utf8_lossy(&b[..b.len().min(200)]),
                        String::from_utf8_lossy(&resp)
                    ));
                }
            }
            Err(e) => failures.push(format!("#{i} {method} {path}: no answer: {e}")),
        }
        assert!(
            d.try_http("GET", "/_ping", &[]).is_ok(),
            "berthd died after #{i} {method} {path}: {}",
            d.log()
        );
    }
    // Whatever the fuzzer made is removed by the guard; the daemon still
    // works normally.
    std::thread::sleep(Duration::from_millis(100));
    d.docker_ok(&["ps", "-a"]);
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
}
