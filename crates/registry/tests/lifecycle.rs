#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Process lifecycle: SIGTERM lets requests in flight finish; an upload cut
//! off half-way (client gone, or server killed) leaves nothing visible and is
//! purged once idle past its time-to-live.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Starts a PATCH of `total` bytes on a raw socket and sends `sent` of them.
fn start_patch(s: &Server, loc: &str, total: usize, sent: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(s.host()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n",
        s.host()
    )
    .unwrap();
    c.write_all(sent).unwrap();
    c.flush().unwrap();
    c
}

fn new_upload(a: &ureq::Agent, s: &Server, repo: &str) -> String {
    let r = a
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 202);
    header(&r, "location").unwrap()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until a PATCH holds the upload: its status then answers 400
/// BLOB_UPLOAD_INVALID ("busy with another request").
fn wait_until_busy(a: &ureq::Agent, s: &Server, loc: &str) {
    wait_until("the PATCH to be in flight", || {
        a.get(s.url(loc))
            .call()
            .map(|r| r.status() == 400)
            .unwrap_or(false)
    });
}

fn ingest_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn upload_sessions(root: &Path, repo: &str) -> usize {
    std::fs::read_dir(root.join("repositories").join(repo).join("_uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn sigterm_finishes_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir.path().join("root"), &[]);
    let a = agent();
    let loc = new_upload(&a, &s, "term");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
    let mut c = start_patch(&s, &loc, data.len(), &data[..100_000]);
    // The server is in the request once the upload reports busy.
    wait_until_busy(&a, &s, &loc);
    s.signal(rustix::process::Signal::TERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "server exited with a request in flight"
    );
    // New connections are no longer accepted.
    assert!(agent().get(s.url("/v2/")).call().is_err());

    c.write_all(&data[100_000..]).unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    assert!(reply.to_lowercase().contains("range: 0-199999"), "{reply}");
    let status = s.terminate();
    assert!(status.success(), "{status:?}\n{}", s.logs());
    assert!(s.logs().contains("SIGTERM"));

    // The bytes were kept: a new server finishes the upload.
    let s = Server::start(&dir.path().join("root"), &[]);
    let d = sha256(&data);
    let r = a
        .put(s.url(&format!("{loc}?digest={d}")))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut r = a.get(s.url(&format!("/v2/term/blobs/{d}"))).call().unwrap();
    assert_eq!(body(&mut r), data);
}

fn purge_config(dir: &Path) -> String {
    let path = dir.join("purge.json");
    std::fs::write(
        &path,
        r#"{"uploads": {"ttl_secs": 1, "purge_interval_secs": 1}}"#,
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn upload_cut_off_by_the_client_is_invisible_then_purged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cfg = purge_config(dir.path());
    let s = Server::start(&root, &["--config", &cfg]);
    let a = agent();
    let data = vec![7u8; 100_000];
    let d = sha256(&data);
    let loc = new_upload(&a, &s, "cut");
    let c = start_patch(&s, &loc, data.len(), &data[..40_000]);
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    assert_eq!(
        a.head(s.url(&format!("/v2/cut/blobs/{d}")))
            .call()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    wait_until("the stale upload to be purged", || {
        ingest_count(&root) == 0 && upload_sessions(&root, "cut") == 0
    });
    let mut r = a.get(s.url(&loc)).call().unwrap();
    assert_eq!(code(&mut r), "BLOB_UPLOAD_UNKNOWN");
    assert!(s.logs().contains("purged stale upload"), "{}", s.logs());
}

#[test]
fn upload_cut_off_by_sigkill_is_invisible_then_purged_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let a = agent();
    let data = vec![9u8; 100_000];
    let d = sha256(&data);
    let loc;
    {
        let s = Server::start(&root, &[]);
        loc = new_upload(&a, &s, "killed");
        let _c = start_patch(&s, &loc, data.len(), &data[..60_000]);
        std::thread::sleep(Duration::from_millis(300));
        s.signal(rustix::process::Signal::KILL);
    }
    assert_eq!(
        ingest_count(&root),
        1,
        "the partial upload is in the ingest"
    );
    assert_eq!(
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    std::thread::sleep(Duration::from_millis(1200));
    let cfg = purge_config(dir.path());
    let s = Server::start(&root, &["--config", &cfg]);
    assert_eq!(
        a.head(s.url(&format!("/v2/killed/blobs/{d}")))
            .call()
            .unwrap()
            .status(),
        404
    );
    wait_until("the killed upload to be purged", || {
        ingest_count(&root) == 0 && upload_sessions(&root, "killed") == 0
    });
    let mut r = a.get(s.url(&loc)).call().unwrap();
    assert_eq!(code(&mut r), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn too_many_uploads_at_once_get_429() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limit.json");
    std::fs::write(
        &path,
        r#"{"uploads": {"max_concurrent": 1, "wait_secs": 0}}"#,
    )
    .unwrap();
    let s = Server::start(
        &dir.path().join("root"),
        &["--config", path.to_str().unwrap()],
    );
    let a = agent();
    let first = new_upload(&a, &s, "busy");
    let mut c = start_patch(&s, &first, 10, b"12345");
    wait_until_busy(&a, &s, &first);
    let second = new_upload(&a, &s, "busy");
    let mut r = a.patch(s.url(&second)).send(&b"x"[..]).unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    assert_eq!(code(&mut r), "TOOMANYREQUESTS");
    c.write_all(b"67890").unwrap();
    let mut reply = [0u8; 12];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"HTTP/1.1 202");
    let r = a.patch(s.url(&second)).send(&b"x"[..]).unwrap();
    assert_eq!(r.status(), 202);
}
