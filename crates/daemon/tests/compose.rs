#![allow(clippy::unwrap_used, clippy::expect_used)]
//! berthd driven by Debian's docker-compose (1.29, Python, docker-py 5)
//! unchanged: a project of two services on its own network, one with a
//! published port, a named volume and a healthcheck, the other reaching it
//! by service name; exec, scale, recreate after a change, down -v. What
//! compose made is gone afterwards.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Daemon, busybox_archive, free_port, root};

struct Project<'a> {
    d: &'a Daemon,
    name: String,
    dir: std::path::PathBuf,
}

impl Project<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.d
            .client_cmd("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .args(args)
            .current_dir(&self.dir)
            // compose 1.x reads image inspect's ContainerConfig when it
            // recreates; dockerd, like berthd, shows it only below 1.45.
            .env("COMPOSE_API_VERSION", "1.44")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?} failed:\n{}\n{}\nberthd log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.d.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "-t", "0"]);
    }
}

fn http_get(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn compose_file(port: u16, env: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
      - "127.0.0.1:{port}:8080"
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 10
  client:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    depends_on:
      - web
    environment:
      MARK: {env}
volumes:
  data: {{}}
"#
    )
}

#[test]
fn compose_project_up_scale_recreate_down() {
    if !root() {
        return;
    }
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_err()
    {
        panic!("docker-compose is missing: scripts/install-deps.sh test installs it");
    }
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), "busybox:latest", "compose", &arch);
    d.docker_ok(&["load", "-q", "-i", arch.to_str().unwrap()]);

    let port = free_port();
    let dir = tmp.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), compose_file(port, "one")).unwrap();
    let p = Project {
        d: &d,
        name: format!("bc{}", std::process::id()),
        dir: dir.clone(),
    };

    p.ok(&["up", "-d"]);
    // The healthcheck passes, and the port serves from the host.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ps = p.ok(&["ps"]);
        if ps.contains("(healthy)") {
            break;
        }
        assert!(Instant::now() < deadline, "web never healthy:\n{ps}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(http_get(port).contains("hello-from-web"));
    // Service names resolve on the project's network; the env is set.
    let out = p.ok(&[
        "exec",
        "-T",
        "client",
        "sh",
        "-c",
        "echo $MARK; wget -q -O - http://web:8080/",
    ]);
    assert_eq!(out.trim(), "one\nhello-from-web", "{out}");
    // Data in the named volume.
    p.ok(&["exec", "-T", "web", "sh", "-c", "echo kept > /data/f"]);

    // Scale out, then a changed service is recreated (its network and
    // volume are kept as they are).
    p.ok(&["up", "-d", "--scale", "client=2"]);
    let running = d.docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", p.name),
    ]);
    assert_eq!(running.lines().count(), 3, "{running}");
    std::fs::write(dir.join("docker-compose.yml"), compose_file(port, "two")).unwrap();
    let up = p.run(&["up", "-d", "--scale", "client=1"]);
    let says = String::from_utf8_lossy(&up.stderr).into_owned();
    assert!(up.status.success(), "{says}\n{}", d.log());
    assert!(
        !says.contains("needs to be recreated"),
        "the network was seen as changed: {says}"
    );
    let out = p.ok(&["exec", "-T", "client", "sh", "-c", "echo $MARK"]);
    assert_eq!(out.trim(), "two");
    p.ok(&["restart", "web"]);
    let out = p.ok(&["exec", "-T", "web", "cat", "/data/f"]);
    assert_eq!(out.trim(), "kept");

    // down -v: containers, network and volume gone.
    p.ok(&["down", "-v", "-t", "1"]);
    let left = d.docker_ok(&["ps", "-aq"]);
    assert!(left.trim().is_empty(), "containers left: {left}");
    let nets = d.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains(&p.name), "network left: {nets}");
    let vols = d.docker_ok(&["volume", "ls", "-q"]);
    assert!(vols.trim().is_empty(), "volumes left: {vols}");
}
