//! Test helpers: start `berth-registry serve` on a free loopback port, and a
//! small HTTP client over ureq that never turns statuses into errors.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use berth_image::content::{Algorithm, Digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A running server; killed (by its PID) when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub root: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts a server on 127.0.0.1 with a free port, storage at `root`.
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        let log = root.with_extension(format!("log-{}", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth-registry"))
            .args(["serve", "--addr", "127.0.0.1:0", "--root"])
            .arg(root)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "server did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        Server {
            child,
            base,
            root: root.to_owned(),
            log,
        }
    }

    /// Sends a signal to the server (the child this test spawned).
    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn host(&self) -> String {
        self.base.split("://").nth(1).unwrap().to_owned()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not exit within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server said (its log goes with
        // the test's temporary folder).
        if std::thread::panicking() {
            eprintln!("--- server log ({}):\n{}", self.base, self.logs());
        }
    }
}

/// An HTTP client that reports every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The same, trusting one extra root certificate (DER).
pub fn tls_agent(root_der: &[u8]) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_der(root_der).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(tls)
        .build()
        .into()
}

pub type Resp = ureq::http::Response<ureq::Body>;

pub fn header(r: &Resp, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

pub fn body(r: &mut Resp) -> Vec<u8> {
    r.body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .unwrap()
}

pub fn json(r: &mut Resp) -> serde_json::Value {
    serde_json::from_slice(&body(r)).unwrap()
}

/// The first error code of an error body.
pub fn code(r: &mut Resp) -> String {
    json(r)["errors"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

pub fn sha256(data: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, data).to_string()
}

/// Pushes a blob with a single POST; returns its digest.
pub fn push_blob(a: &ureq::Agent, s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let mut r = a
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .header("Content-Type", "application/octet-stream")
        .send(data)
        .unwrap();
    if r.status() != 201 {
        // What the server said, for a failure seen once in CI (a 500).
        let body = r.body_mut().read_to_string().unwrap_or_default();
        panic!(
            "push blob to {repo}: {} {body}\nserver log:\n{}",
            r.status(),
            s.logs()
        );
    }
    d
}

/// A minimal image manifest over a config and layers (pushed first).
pub fn image_manifest(a: &ureq::Agent, s: &Server, repo: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
    let layer = format!("layer bytes of {seed}").repeat(100);
    let cd = push_blob(a, s, repo, config.as_bytes());
    let ld = push_blob(a, s, repo, layer.as_bytes());
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    }))
    .unwrap()
}

pub fn put_manifest(
    a: &ureq::Agent,
    s: &Server,
    repo: &str,
    reference: &str,
    media_type: &str,
    m: &[u8],
) -> Resp {
    a.put(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("Content-Type", media_type)
        .send(m)
        .unwrap()
}
