#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The distribution client against berth-registry and against Debian's
//! `docker-registry` (distribution 2.8), both on 127.0.0.1: push/pull round
//! trips, indexes and platforms, resumed and concurrent downloads, mounts,
//! chunked uploads, auth, credentials, TLS with certs.d, a lying server and
//! an interrupted pull. Images are built from the host's static busybox.

mod common;
#[path = "client/proxy.rs"]
mod proxy;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_image::content::{Algorithm, Digest, Provider};
use berth_image::media;
use berth_image::store::{ImageStore, Platform, Target};
use berth_registry::client::{
    Client, ClientError, ClientOptions, Credentials, Progress, PullOptions, PushOptions, Status,
};
use common::Server;
use proxy::Proxy;

const PW: &str = "correct horse";

// ---------------------------------------------------------------- images

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn tar_of(files: &[(&str, Vec<u8>)], links: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, name, body.as_slice()).unwrap();
    }
    for (name, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        tar.append_link(&mut h, name, target).unwrap();
    }
    tar.into_inner().unwrap()
}

/// The busybox layer: /bin/busybox and /bin/sh.
fn busybox_layer() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    tar_of(&[("bin/busybox", bb)], &[("bin/sh", "busybox")])
}

/// A layer of `size` incompressible bytes, different per seed.
fn filler_layer(seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    tar_of(&[(&format!("data/{seed}"), data)], &[])
}

struct Built {
    target: Target,
    config: String,
    layers: Vec<String>,
}

/// Writes an image (gzip layers over `tars`) for `platform` into `store`;
/// records it as `name` if given. `docker`: Docker schema 2 media types.
fn build(
    store: &ImageStore,
    name: Option<&str>,
    tars: &[Vec<u8>],
    platform: &Platform,
    docker: bool,
) -> Built {
    let lease = store.lease(None).unwrap();
    let mut layers = Vec::new();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let layer_mt = if docker {
        media::DOCKER_LAYER_GZIP
    } else {
        media::OCI_LAYER_GZIP
    };
    for t in tars {
        diff_ids.push(Digest::of(Algorithm::Sha256, t).to_string());
        let gz = gzip(t);
        let d = lease.put_bytes(&gz).unwrap();
        descs.push(
            serde_json::json!({"mediaType": layer_mt, "digest": d.to_string(), "size": gz.len()}),
        );
        layers.push(d.to_string());
    }
    let mut config = serde_json::json!({
        "architecture": platform.architecture, "os": platform.os,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(v) = &platform.variant {
        config["variant"] = v.clone().into();
    }
    let config = serde_json::to_vec(&config).unwrap();
    let cd = lease.put_bytes(&config).unwrap();
    let (mt, cmt) = if docker {
        (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
    } else {
        (media::OCI_MANIFEST, media::OCI_CONFIG)
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cmt, "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = lease.put_bytes(&manifest).unwrap();
    let target = Target {
        media_type: mt.into(),
        digest: md.to_string(),
        size: manifest.len() as u64,
    };
    if let Some(n) = name {
        store.put(n, target.clone()).unwrap();
    }
    Built {
        target,
        config: cd.to_string(),
        layers,
    }
}

/// An OCI index over built images with their platforms, recorded as `name`.
fn build_index(store: &ImageStore, name: &str, entries: &[(&Built, &Platform)]) -> Target {
    let lease = store.lease(None).unwrap();
    let manifests: Vec<_> = entries
        .iter()
        .map(|(b, p)| {
            let mut plat = serde_json::json!({"os": p.os, "architecture": p.architecture});
            if let Some(v) = &p.variant {
                plat["variant"] = v.clone().into();
            }
            serde_json::json!({"mediaType": b.target.media_type, "digest": b.target.digest,
                               "size": b.target.size, "platform": plat})
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests,
    }))
    .unwrap();
    let d = lease.put_bytes(&index).unwrap();
    let t = Target {
        media_type: media::OCI_INDEX.into(),
        digest: d.to_string(),
        size: index.len() as u64,
    };
    store.put(name, t.clone()).unwrap();
    t
}

fn has(store: &ImageStore, digest: &str) -> bool {
    store.content().exists(&digest.parse().unwrap()).unwrap()
}

fn plat(s: &str) -> Platform {
    Platform::parse(s).unwrap()
}

// ---------------------------------------------------------------- harness

fn client(dir: &Path) -> Client {
    Client::new(ClientOptions {
        certs_dir: dir.join("certs.d"),
        ..ClientOptions::default()
    })
}

#[derive(Default)]
struct Events(Mutex<Vec<Progress>>);

impl Events {
    fn push(&self, p: &Progress) {
        self.0.lock().unwrap().push(p.clone());
    }
    fn all(&self) -> Vec<Progress> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, s: &Status) -> usize {
        self.all().iter().filter(|p| p.status == *s).count()
    }
    fn text(&self) -> String {
        self.all()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn pull_opts() -> PullOptions {
    PullOptions::default()
}

fn store(dir: &Path, name: &str) -> ImageStore {
    ImageStore::open(&dir.join(name)).unwrap()
}

/// Debian's docker-registry on a free loopback port; killed by PID on drop.
struct Peer {
    child: Child,
    host: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_peer(dir: &Path) -> Option<Peer> {
    let bin = Path::new("/usr/bin/docker-registry");
    if !bin.exists() {
        if std::env::var_os("BERTH_TEST_ROOT").is_some() {
            panic!("docker-registry is not installed (scripts/install-deps.sh test installs it)");
        }
        eprintln!("skipping the docker-registry half: not installed");
        return None;
    }
    let port = free_port();
    let data = dir.join("peer-data");
    let config = dir.join("peer.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("peer.log")).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let peer = Peer {
        child,
        host: format!("127.0.0.1:{port}"),
    };
    let a = common::agent();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = a.get(format!("http://{}/v2/", peer.host)).call()
            && r.status() == 200
        {
            return Some(peer);
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.join("peer.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn berth(dir: &Path, extra: &[&str]) -> Server {
    Server::start(&dir.join("reg"), extra)
}

// ---------------------------------------------------------------- tests

/// Push an image, pull it back by tag and by digest: same digests, same
/// bytes; a second push finds every layer there.
fn round_trip(dir: &Path, host: &str, docker: bool) {
    let src = store(dir, "src");
    let name = format!("{host}/rt/app:v1");
    let host_p = Platform::host();
    let built = build(
        &src,
        Some(&name),
        &[busybox_layer(), filler_layer(1, 300_000)],
        &host_p,
        docker,
    );
    let c = client(dir);
    let ev = Events::default();
    let report = c
        .push(&src, &name, &PushOptions::default(), &|p| ev.push(p))
        .unwrap();
    assert_eq!(report.digest, built.target.digest);
    assert_eq!(report.size, built.target.size);
    assert_eq!(report.uploaded, 3, "{}", ev.text());
    assert_eq!(ev.count(&Status::Pushed), 2, "{}", ev.text());
    let aux = ev.all().into_iter().find_map(|p| p.aux).unwrap();
    assert_eq!(aux["Tag"], "v1");
    assert_eq!(aux["Digest"], built.target.digest);
    assert_eq!(aux["Size"], built.target.size);

    let dst = store(dir, "dst");
    let ev = Events::default();
    let pulled = c.pull(&dst, &name, &pull_opts(), &|p| ev.push(p)).unwrap();
    assert_eq!(pulled.digest, built.target.digest);
    assert_eq!(pulled.config, built.config);
    assert_eq!(pulled.image.target, built.target);
    assert_eq!(dst.get(&name).unwrap().target, built.target);
    assert_eq!(ev.count(&Status::PullComplete), 2, "{}", ev.text());
    assert_eq!(ev.count(&Status::DownloadComplete), 2, "{}", ev.text());
    assert!(
        ev.text().contains("Status: Downloaded newer image for"),
        "{}",
        ev.text()
    );
    let resolved = dst.resolve(&pulled.image.target, &host_p).unwrap();
    assert_eq!(resolved.config_digest.to_string(), built.config);
    for l in &built.layers {
        let a = std::fs::read(src.content().blob_path(&l.parse().unwrap())).unwrap();
        let b = std::fs::read(dst.content().blob_path(&l.parse().unwrap())).unwrap();
        assert_eq!(a, b);
    }
    // Again: nothing to download.
    let ev = Events::default();
    let again = c.pull(&dst, &name, &pull_opts(), &|p| ev.push(p)).unwrap();
    assert!(again.up_to_date);
    assert_eq!(again.downloaded, 0);
    assert_eq!(ev.count(&Status::AlreadyExists), 2, "{}", ev.text());

    // By digest, into a fresh store.
    let by_digest = format!("{host}/rt/app@{}", built.target.digest);
    let dst2 = store(dir, "dst2");
    let p2 = c.pull(&dst2, &by_digest, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(p2.digest, built.target.digest);
    assert_eq!(dst2.get(&by_digest).unwrap().target, built.target);

    // A second push: every blob is there already.
    let ev = Events::default();
    let r2 = c
        .push(&src, &name, &PushOptions::default(), &|p| ev.push(p))
        .unwrap();
    assert_eq!((r2.existing, r2.uploaded), (3, 0));
    assert_eq!(ev.count(&Status::LayerAlreadyExists), 2, "{}", ev.text());
}

#[test]
fn round_trip_berth_registry() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    round_trip(dir.path(), &s.host(), false);
}

#[test]
fn round_trip_docker_registry_schema2() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = start_peer(dir.path()) else {
        return;
    };
    round_trip(dir.path(), &peer.host, true);
}

#[test]
fn round_trip_docker_registry_oci() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = start_peer(dir.path()) else {
        return;
    };
    round_trip(dir.path(), &peer.host, false);
}

/// A three-platform index: the host's manifest is chosen by default, an
/// arm variant on request (v7 exactly, or v6 where no v7 exists); only the
/// chosen platform's blobs are fetched, the index is kept whole.
fn multi_platform(dir: &Path, host: &str) {
    let src = store(dir, "src");
    let hp = Platform::host();
    let (v7, v6) = (plat("linux/arm/v7"), plat("linux/arm/v6"));
    let a = build(&src, None, &[busybox_layer()], &hp, false);
    let b = build(&src, None, &[filler_layer(7, 50_000)], &v7, false);
    let c6 = build(&src, None, &[filler_layer(6, 50_000)], &v6, false);
    let name = format!("{host}/multi/app:v1");
    let index = build_index(&src, &name, &[(&b, &v7), (&a, &hp), (&c6, &v6)]);
    let c = client(dir);
    let report = c
        .push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(report.digest, index.digest);

    let dst = store(dir, "dst");
    let pulled = c.pull(&dst, &name, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(pulled.image.target, index);
    assert_eq!(pulled.manifest, a.target.digest);
    assert!(has(&dst, &index.digest) && has(&dst, &a.target.digest));
    assert!(has(&dst, &a.layers[0]));
    assert!(!has(&dst, &b.layers[0]) && !has(&dst, &b.target.digest));
    assert!(!has(&dst, &c6.layers[0]));
    let r = dst.resolve(&pulled.image.target, &hp).unwrap();
    assert_eq!(r.manifest_desc.digest, a.target.digest);

    // arm/v7 exactly.
    let arm = store(dir, "arm");
    let opts = PullOptions {
        platform: Some(v7.clone()),
        ..PullOptions::default()
    };
    let p = c.pull(&arm, &name, &opts, &|_| {}).unwrap();
    assert_eq!(p.manifest, b.target.digest);
    assert!(has(&arm, &b.layers[0]) && !has(&arm, &c6.layers[0]));
    assert_eq!(
        arm.resolve(&p.image.target, &v7)
            .unwrap()
            .manifest_desc
            .digest,
        b.target.digest
    );

    // An index with only v6 for arm: a v7 host takes v6, as Docker does.
    let name6 = format!("{host}/multi/old:v1");
    build_index(&src, &name6, &[(&a, &hp), (&c6, &v6)]);
    c.push(&src, &name6, &PushOptions::default(), &|_| {})
        .unwrap();
    let arm6 = store(dir, "arm6");
    let p = c.pull(&arm6, &name6, &opts, &|_| {}).unwrap();
    assert_eq!(p.manifest, c6.target.digest);
    assert_eq!(
        arm6.resolve(&p.image.target, &v7)
            .unwrap()
            .manifest_desc
            .digest,
        c6.target.digest
    );
    // No arm64 entry at all.
    let opts64 = PullOptions {
        platform: Some(plat("linux/arm64")),
        ..PullOptions::default()
    };
    let e = c
        .pull(&store(dir, "x"), &name6, &opts64, &|_| {})
        .unwrap_err();
    assert!(matches!(e, ClientError::NoPlatform { .. }), "{e}");
    assert!(e.to_string().contains("linux/arm64"), "{e}");

    // The pulled (partial) index pushed to another repository: the other
    // platforms are neither local nor there, which is said plainly.
    let e = c
        .push(
            &dst,
            &format!("{host}/elsewhere:v1"),
            &PushOptions {
                source: Some(name.clone()),
                ..PushOptions::default()
            },
            &|_| {},
        )
        .unwrap_err();
    assert!(e.to_string().contains("neither in the local store"), "{e}");
    // To its own repository it works: the registry has the other platforms.
    c.push(&dst, &name, &PushOptions::default(), &|_| {})
        .unwrap();
}

#[test]
fn multi_platform_index_berth_registry() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    multi_platform(dir.path(), &s.host());
}

#[test]
fn multi_platform_index_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = start_peer(dir.path()) else {
        return;
    };
    multi_platform(dir.path(), &peer.host);
}

#[test]
fn dropped_connection_resumes_with_range() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    let px = Proxy::start(&s.host());
    let src = store(dir.path(), "src");
    let name = format!("{}/resume/app:v1", px.host);
    let built = build(
        &src,
        Some(&name),
        &[filler_layer(3, 1_000_000)],
        &Platform::host(),
        false,
    );
    let c = client(dir.path());
    c.push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();
    let layer = built.layers[0].clone();
    *px.state.drop_after.lock().unwrap() = Some((layer.clone(), 300_000));

    let dst = store(dir.path(), "dst");
    let ev = Events::default();
    let p = c.pull(&dst, &name, &pull_opts(), &|e| ev.push(e)).unwrap();
    assert_eq!(p.digest, built.target.digest);
    assert!(has(&dst, &layer));
    let gets: Vec<_> = px
        .log()
        .into_iter()
        .filter(|l| l.method == "GET" && l.path.ends_with(&layer))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=300000-"), "{gets:?}");
    assert_eq!(ev.count(&Status::Retrying(1)), 1, "{}", ev.text());
    assert!(dst.content().ingests().unwrap().is_empty());
}

#[test]
fn three_downloads_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    let px = Proxy::start(&s.host());
    let src = store(dir.path(), "src");
    let name = format!("{}/many/app:v1", px.host);
    let tars: Vec<_> = (0..7).map(|i| filler_layer(100 + i, 120_000)).collect();
    build(&src, Some(&name), &tars, &Platform::host(), false);
    let c = client(dir.path());
    c.push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();

    // Each blob takes a while to stream, so downloads overlap.
    *px.state.throttle.lock().unwrap() = Some((16 * 1024, Duration::from_millis(15)));
    let dst = store(dir.path(), "dst");
    let ev = Events::default();
    let p = c.pull(&dst, &name, &pull_opts(), &|e| ev.push(e)).unwrap();
    assert_eq!(p.downloaded, 8); // 7 layers and the config
    assert_eq!(px.state.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(ev.count(&Status::PullingFsLayer), 7);
    assert_eq!(ev.count(&Status::Waiting), 5, "{}", ev.text()); // 8 jobs, 3 slots
    assert!(ev.count(&Status::Downloading) >= 7);
}

/// Blobs of an image another repository of the registry holds are
/// mounted, not uploaded.
fn mount(dir: &Path, host: &str) {
    let src = store(dir, "src");
    let one = format!("{host}/team/one:v1");
    let built = build(
        &src,
        Some(&one),
        &[busybox_layer(), filler_layer(9, 10_000)],
        &Platform::host(),
        false,
    );
    let c = client(dir);
    c.push(&src, &one, &PushOptions::default(), &|_| {})
        .unwrap();
    // `docker tag`: the same image under a second name.
    let two = format!("{host}/team/two:v1");
    src.put(&two, built.target.clone()).unwrap();
    let ev = Events::default();
    let r = c
        .push(&src, &two, &PushOptions::default(), &|p| ev.push(p))
        .unwrap();
    assert_eq!((r.mounted, r.uploaded), (3, 0), "{}", ev.text());
    assert_eq!(
        ev.count(&Status::MountedFrom("team/one".into())),
        2,
        "{}",
        ev.text()
    );
    let dst = store(dir, "dst");
    let p = c.pull(&dst, &two, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(p.digest, built.target.digest);
}

#[test]
fn cross_repository_mount_berth_registry() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    mount(dir.path(), &s.host());
}

#[test]
fn cross_repository_mount_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = start_peer(dir.path()) else {
        return;
    };
    mount(dir.path(), &peer.host);
}

/// Chunked uploads (PATCH with Content-Range, then PUT), seen on the wire.
fn chunked(dir: &Path, upstream: &str) {
    let px = Proxy::start(upstream);
    let src = store(dir, "src");
    let name = format!("{}/chunks/app:v1", px.host);
    let built = build(
        &src,
        Some(&name),
        &[filler_layer(11, 200_000)],
        &Platform::host(),
        false,
    );
    let c = client(dir);
    let opts = PushOptions {
        chunk_size: Some(64 * 1024),
        ..PushOptions::default()
    };
    c.push(&src, &name, &opts, &|_| {}).unwrap();
    let size = std::fs::metadata(src.content().blob_path(&built.layers[0].parse().unwrap()))
        .unwrap()
        .len();
    let ranges: Vec<String> = px
        .log()
        .into_iter()
        .filter(|l| l.method == "PATCH")
        .filter_map(|l| l.content_range)
        .collect();
    let expected_chunks = size.div_ceil(64 * 1024) + 1; // the layer's, plus the config's one
    assert_eq!(ranges.len() as u64, expected_chunks, "{ranges:?}");
    assert!(ranges.contains(&"0-65535".to_owned()), "{ranges:?}");
    assert!(ranges.contains(&"65536-131071".to_owned()), "{ranges:?}");
    assert!(
        ranges.contains(&format!("{}-{}", size / 65536 * 65536, size - 1)),
        "{ranges:?}"
    );
    let dst = store(dir, "dst");
    let p = c.pull(&dst, &name, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(p.digest, built.target.digest);
    assert!(has(&dst, &built.layers[0]));
}

#[test]
fn chunked_upload_berth_registry() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    chunked(dir.path(), &s.host());
}

#[test]
fn chunked_upload_docker_registry() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = start_peer(dir.path()) else {
        return;
    };
    chunked(dir.path(), &peer.host);
}

fn auth_config(dir: &Path, token: bool) -> PathBuf {
    let hash = bcrypt::hash(PW, 4).unwrap();
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let mut auth = serde_json::json!({ "htpasswd": htpasswd });
    if token {
        auth["token"] = serde_json::json!({"expiry_secs": 60});
    }
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::json!({ "auth": auth }).to_string()).unwrap();
    path
}

fn alice(pw: &str) -> Credentials {
    Credentials::Basic {
        username: "alice".into(),
        password: pw.into(),
    }
}

/// Push and pull as alice; a wrong password and no password fail clearly.
fn signed_in_round_trip(dir: &Path, host: &str, token: bool) {
    let src = store(dir, "src");
    let name = format!("{host}/private/app:v1");
    let built = build(
        &src,
        Some(&name),
        &[busybox_layer()],
        &Platform::host(),
        false,
    );
    let c = client(dir);
    let push = PushOptions {
        credentials: alice(PW),
        ..PushOptions::default()
    };
    c.push(&src, &name, &push, &|_| {}).unwrap();
    let dst = store(dir, "dst");
    let pull = PullOptions {
        credentials: alice(PW),
        ..PullOptions::default()
    };
    let p = c.pull(&dst, &name, &pull, &|_| {}).unwrap();
    assert_eq!(p.digest, built.target.digest);

    let wrong = PullOptions {
        credentials: alice("nope"),
        ..PullOptions::default()
    };
    let e = c
        .pull(&store(dir, "w"), &name, &wrong, &|_| {})
        .unwrap_err();
    let text = e.to_string();
    if token {
        assert!(matches!(e, ClientError::Token { .. }), "{e:?}");
        assert!(text.contains("check the username and password"), "{text}");
        assert!(text.contains("401"), "{text}");
    } else {
        assert!(matches!(e, ClientError::Unauthorized { .. }), "{e:?}");
    }
    assert!(text.contains(host), "{text}");
    let e = c
        .pull(&store(dir, "anon"), &name, &pull_opts(), &|_| {})
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Unauthorized { .. } | ClientError::Token { .. }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("private/app"), "{e}");
}

#[test]
fn basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = auth_config(dir.path(), false);
    let s = berth(dir.path(), &["--config", cfg.to_str().unwrap()]);
    signed_in_round_trip(dir.path(), &s.host(), false);
}

#[test]
fn bearer_token_flow() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = auth_config(dir.path(), true);
    let s = berth(dir.path(), &["--config", cfg.to_str().unwrap()]);
    signed_in_round_trip(dir.path(), &s.host(), true);
}

#[test]
fn x_registry_auth_header() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = auth_config(dir.path(), true);
    let s = berth(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let src = store(dir.path(), "src");
    let name = format!("{}/xra/app:v1", s.host());
    build(
        &src,
        Some(&name),
        &[busybox_layer()],
        &Platform::host(),
        false,
    );
    let json = serde_json::json!({"username": "alice", "password": PW, "serveraddress": s.host()});
    let header = base64::engine::general_purpose::URL_SAFE.encode(json.to_string());
    let (creds, server) = Credentials::from_x_registry_auth(&header).unwrap();
    assert_eq!(server.as_deref(), Some(s.host().as_str()));
    assert_eq!(creds, alice(PW));
    let c = client(dir.path());
    let opts = PushOptions {
        credentials: creds,
        ..PushOptions::default()
    };
    c.push(&src, &name, &opts, &|_| {}).unwrap();
    // `e30=` is `{}`: anonymous, refused by this registry.
    let (anon, _) = Credentials::from_x_registry_auth("e30=").unwrap();
    assert!(anon.is_anonymous());
    // Through the command-line front.
    let out = cli(
        &[
            "pull",
            &name,
            "--root",
            dir.path().join("cli").to_str().unwrap(),
            "--registry-auth",
            &header,
            "--certs-dir",
            dir.path().join("certs.d").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Pull complete"));
}

fn cli(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth-registry"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn docker_config_and_credential_helper() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = auth_config(dir.path(), true);
    let s = berth(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let src = store(dir.path(), "src");
    let name = format!("{}/helper/app:v1", s.host());
    let built = build(
        &src,
        Some(&name),
        &[busybox_layer()],
        &Platform::host(),
        false,
    );
    client(dir.path())
        .push(
            &src,
            &name,
            &PushOptions {
                credentials: alice(PW),
                ..PushOptions::default()
            },
            &|_| {},
        )
        .unwrap();

    // A credential helper on PATH that logs the server it was asked about.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = dir.path().join("asked");
    let helper = bin.join("docker-credential-berthtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat > {}\n\
             printf '{{\"ServerURL\":\"x\",\"Username\":\"alice\",\"Secret\":\"{PW}\"}}'\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();

    let run = |config: serde_json::Value, root: &str| {
        std::fs::write(docker.join("config.json"), config.to_string()).unwrap();
        cli(
            &[
                "pull",
                &name,
                "--root",
                dir.path().join(root).to_str().unwrap(),
                "--certs-dir",
                dir.path().join("certs.d").to_str().unwrap(),
                "--json",
            ],
            &[
                ("PATH", path.clone()),
                ("DOCKER_CONFIG", docker.display().to_string()),
            ],
        )
    };
    // credsStore.
    let out = run(serde_json::json!({"credsStore": "berthtest"}), "a");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), s.host());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        last["status"]
            .as_str()
            .unwrap()
            .starts_with("Status: Downloaded newer image")
    );
    assert!(stdout.contains(&format!("\"Digest: {}\"", built.target.digest)));
    // credHelpers for this registry.
    std::fs::remove_file(&asked).unwrap();
    let out = run(
        serde_json::json!({"credHelpers": {s.host(): "berthtest"}}),
        "b",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(asked.exists());
    // auths with base64 user:password.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PW}"));
    let out = run(
        serde_json::json!({"auths": {format!("http://{}", s.host()): {"auth": auth}}}),
        "c",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong password in auths: the error names the registry and says why.
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:wrong");
    let out = run(
        serde_json::json!({"auths": {s.host(): {"auth": auth}}}),
        "d",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("check the username and password"), "{err}");
    assert!(err.contains(&s.host()), "{err}");
}

/// A CA, a server certificate it signs for 127.0.0.1 and a client
/// certificate it signs, written to `dir` as ca.pem, server.pem/.key and
/// client.pem/.key.
fn make_pki(dir: &Path) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, san) in [("server", "127.0.0.1"), ("client", "berth-client")] {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![san.to_owned()]).unwrap();
        params.extended_key_usages = vec![if name == "server" {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

fn tls_server(dir: &Path, extra: &[&str]) -> Server {
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let s = berth(dir, &args);
    assert!(s.base.starts_with("https://"));
    s
}

/// A client that verifies loopback registries like any other.
fn strict_client(dir: &Path) -> Client {
    Client::new(ClientOptions {
        certs_dir: dir.join("certs.d"),
        insecure_loopback: false,
        ..ClientOptions::default()
    })
}

#[test]
fn tls_with_certs_d() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let s = tls_server(dir.path(), &[]);
    let src = store(dir.path(), "src");
    let name = format!("{}/tls/app:v1", s.host());
    let built = build(
        &src,
        Some(&name),
        &[filler_layer(5, 20_000)],
        &Platform::host(),
        false,
    );

    // Verified, without the CA: refused, and the message says what to do.
    let e = strict_client(dir.path())
        .push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&format!("https://{}", s.host())), "{text}");
    assert!(text.contains("ca.crt"), "{text}");

    let certs = dir.path().join("certs.d").join(s.host());
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.path().join("ca.pem"), certs.join("ca.crt")).unwrap();
    let c = strict_client(dir.path());
    c.push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();
    let dst = store(dir.path(), "dst");
    let p = c.pull(&dst, &name, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(p.digest, built.target.digest);
}

/// An insecure registry served over HTTPS: as Docker, the client speaks
/// HTTPS to it without verifying the certificate (no CA anywhere) rather
/// than falling back to HTTP. Loopback registries are insecure by default;
/// a listed one is insecure even when loopback ones are not.
#[test]
fn insecure_registry_over_https() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let s = tls_server(dir.path(), &[]);
    let src = store(dir.path(), "src");
    let name = format!("{}/insecure/app:v1", s.host());
    let built = build(
        &src,
        Some(&name),
        &[filler_layer(6, 20_000)],
        &Platform::host(),
        false,
    );
    client(dir.path())
        .push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();
    let listed = Client::new(ClientOptions {
        certs_dir: dir.path().join("certs.d"),
        insecure_loopback: false,
        insecure_registries: vec![s.host()],
        ..ClientOptions::default()
    });
    let dst = store(dir.path(), "dst");
    let p = listed.pull(&dst, &name, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(p.digest, built.target.digest);
    // Every request went over TLS: a plain HTTP one would have been refused
    // by the TLS listener before it reached the log.
    assert!(
        s.logs().contains("\"PUT /v2/insecure/app/manifests/v1"),
        "{}",
        s.logs()
    );
}

/// A registry that requires client certificates (`--tls-client-ca`): the
/// client presents client.cert/client.key from certs.d, verified against
/// ca.crt there (or, insecure, unverified); without one it is refused.
#[test]
fn client_certificate_from_certs_d() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let ca = dir.path().join("ca.pem");
    let s = tls_server(dir.path(), &["--tls-client-ca", ca.to_str().unwrap()]);
    let src = store(dir.path(), "src");
    let name = format!("{}/mtls/app:v1", s.host());
    let built = build(
        &src,
        Some(&name),
        &[filler_layer(8, 20_000)],
        &Platform::host(),
        false,
    );

    // The CA alone: the server wants a certificate the client does not have.
    let certs = dir.path().join("certs.d").join(s.host());
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    for c in [strict_client(dir.path()), client(dir.path())] {
        let e = c
            .push(&src, &name, &PushOptions::default(), &|_| {})
            .unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("wants a client certificate: put client.cert"),
            "{text}"
        );
    }
    // A raw request without a certificate gets no answer either.
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(&ca).unwrap()
    };
    assert!(common::tls_agent(&der).get(s.url("/v2/")).call().is_err());

    std::fs::copy(dir.path().join("client.pem"), certs.join("client.cert")).unwrap();
    std::fs::copy(dir.path().join("client.key"), certs.join("client.key")).unwrap();
    let c = strict_client(dir.path());
    let report = c
        .push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(report.digest, built.target.digest);
    let dst = store(dir.path(), "dst");
    let p = c.pull(&dst, &name, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(p.digest, built.target.digest);
    // Insecure (loopback, the default): the certificate is still presented.
    let dst2 = store(dir.path(), "dst2");
    let p = client(dir.path())
        .pull(&dst2, &name, &pull_opts(), &|_| {})
        .unwrap();
    assert_eq!(p.digest, built.target.digest);
}

#[test]
fn lying_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    let px = Proxy::start(&s.host());
    let src = store(dir.path(), "src");
    let name = format!("{}/liar/app:v1", px.host);
    let built = build(
        &src,
        Some(&name),
        &[busybox_layer(), filler_layer(5, 100_000)],
        &Platform::host(),
        false,
    );
    let c = client(dir.path());
    c.push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();
    let bad = built.layers[1].clone();
    *px.state.corrupt.lock().unwrap() = Some(bad.clone());
    let dst = store(dir.path(), "dst");
    let e = c.pull(&dst, &name, &pull_opts(), &|_| {}).unwrap_err();
    assert!(matches!(e, ClientError::DigestMismatch { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&bad) && text.contains("failed verification"),
        "{text}"
    );
    assert!(dst.list().unwrap().is_empty(), "no image record");
    assert!(!has(&dst, &bad), "the bad blob is not in the store");
    assert!(
        !dst.content()
            .ingests()
            .unwrap()
            .iter()
            .any(|r| r.contains(&bad)),
        "nor its ingest"
    );
    // No lease is left behind by this process either.
    assert!(dst.leases().unwrap().is_empty());

    // A schema 1 manifest is refused with a clear error.
    px.state.fake.lock().unwrap().insert(
        "/v2/liar/old/manifests/v1".into(),
        (
            "200 OK".into(),
            vec![(
                "Content-Type".into(),
                "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
            )],
            br#"{"schemaVersion":1,"name":"liar/old","tag":"v1","fsLayers":[]}"#.to_vec(),
        ),
    );
    let e = c
        .pull(
            &dst,
            &format!("{}/liar/old:v1", px.host),
            &pull_opts(),
            &|_| {},
        )
        .unwrap_err();
    assert!(matches!(e, ClientError::Schema1 { .. }), "{e:?}");
    assert!(e.to_string().contains("schema 1"), "{e}");
}

#[test]
fn interrupted_pull_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    let px = Proxy::start(&s.host());
    let src = store(dir.path(), "src");
    let name = format!("{}/slow/app:v1", px.host);
    let built = build(
        &src,
        Some(&name),
        &[filler_layer(21, 600_000), filler_layer(22, 600_000)],
        &Platform::host(),
        false,
    );
    let c = client(dir.path());
    c.push(&src, &name, &PushOptions::default(), &|_| {})
        .unwrap();
    drop(src);

    // A slow pull by the command-line front, killed part way.
    *px.state.throttle.lock().unwrap() = Some((8 * 1024, Duration::from_millis(20)));
    let root = dir.path().join("dst");
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth-registry"))
        .args([
            "pull",
            &name,
            "--root",
            root.to_str().unwrap(),
            "--certs-dir",
        ])
        .arg(dir.path().join("certs.d"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while px.state.blob_bytes.load(Ordering::SeqCst) < 200_000 {
        assert!(Instant::now() < deadline, "the pull did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    *px.state.throttle.lock().unwrap() = None;

    // Consistent: no image; partial bytes in ingests, no partial blob.
    let dst = ImageStore::open(&root).unwrap();
    assert!(dst.list().unwrap().is_empty());
    let ingests = dst.content().ingests().unwrap();
    assert!(!ingests.is_empty(), "the downloaded bytes are kept");
    for l in &built.layers {
        assert!(!has(&dst, l));
    }
    // The killed pull's lease is dead: gc may collect, but the store is whole.
    let before = px.log().len();
    let p = c.pull(&dst, &name, &pull_opts(), &|_| {}).unwrap();
    assert_eq!(p.digest, built.target.digest);
    dst.resolve(&p.image.target, &Platform::host()).unwrap();
    let resumed: Vec<_> = px.log()[before..]
        .iter()
        .filter(|l| l.method == "GET" && l.range.is_some())
        .cloned()
        .collect();
    assert!(!resumed.is_empty(), "the second pull resumed with Range");
    assert!(dst.content().ingests().unwrap().is_empty());
}

#[test]
fn unknown_tag_and_unreachable_registry() {
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    let c = client(dir.path());
    let e = c
        .pull(
            &store(dir.path(), "d"),
            &format!("{}/none/app:nosuch", s.host()),
            &pull_opts(),
            &|_| {},
        )
        .unwrap_err();
    assert!(matches!(e, ClientError::ManifestUnknown { .. }), "{e:?}");
    assert!(e.to_string().contains("none/app:nosuch"), "{e}");
    // A closed port on loopback.
    let port = free_port();
    let e = c
        .pull(
            &store(dir.path(), "d"),
            &format!("127.0.0.1:{port}/a:b"),
            &pull_opts(),
            &|_| {},
        )
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

/// 50 pushes of distinct images (all sharing a base layer, so the same
/// blob is uploaded to 50 repositories at once) and 50 pushes of one image
/// to one tag, all at the same time: every push succeeds, every image pulls
/// back with the digests pushed, every stored blob hashes to its name, no
/// upload is left behind, and `gc --dry-run` finds nothing unreferenced.
#[test]
fn fifty_concurrent_pushes() {
    const N: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let s = berth(dir.path(), &[]);
    let host = s.host();
    let src = store(dir.path(), "src");
    let hp = Platform::host();
    let bb = filler_layer(1, 40_000);
    let distinct: Vec<(String, Built)> = (0..N)
        .map(|i| {
            let name = format!("{host}/many/app{i}:v1");
            let tars = [bb.clone(), filler_layer(100 + i as u64, 4_000)];
            let b = build(&src, Some(&name), &tars, &hp, i % 2 == 0);
            (name, b)
        })
        .collect();
    let same_name = format!("{host}/same/app:v1");
    let same = build(
        &src,
        Some(&same_name),
        &[bb.clone(), filler_layer(99, 100_000)],
        &hp,
        false,
    );

    let c = client(dir.path());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (name, b) in &distinct {
            let (c, src, failures) = (&c, &src, &failures);
            scope.spawn(
                move || match c.push(src, name, &PushOptions::default(), &|_| {}) {
                    Ok(r) => assert_eq!(r.digest, b.target.digest, "{name}"),
                    Err(e) => failures.lock().unwrap().push(format!("{name}: {e}")),
                },
            );
        }
        for i in 0..N {
            let (src, failures, same_name, same) = (&src, &failures, &same_name, &same);
            // Half share the client (its connections and session), half have their own.
            let (shared, d) = (&c, dir.path());
            scope.spawn(move || {
                let own = (i % 2 == 1).then(|| client(d));
                let c = own.as_ref().unwrap_or(shared);
                match c.push(src, same_name, &PushOptions::default(), &|_| {}) {
                    Ok(r) => assert_eq!(r.digest, same.target.digest),
                    Err(e) => failures.lock().unwrap().push(format!("same #{i}: {e}")),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );

    // Every image pulls back, all at once into a fresh store, with the
    // digests pushed.
    let dst = store(dir.path(), "dst");
    let fresh = client(dir.path());
    let all: Vec<(&String, &Built)> = distinct
        .iter()
        .map(|(n, b)| (n, b))
        .chain([(&same_name, &same)])
        .collect();
    std::thread::scope(|scope| {
        for (name, b) in &all {
            let (fresh, dst) = (&fresh, &dst);
            scope.spawn(move || {
                let p = fresh.pull(dst, name, &pull_opts(), &|_| {}).unwrap();
                assert_eq!(p.digest, b.target.digest, "{name}");
                assert_eq!(p.config, b.config, "{name}");
                for l in &b.layers {
                    assert!(has(dst, l), "{name}: layer {l}");
                }
            });
        }
    });
    // On disk: each blob is what its name says, no upload is left over.
    let blobs = s.root.join("blobs/sha256");
    let mut count = 0;
    for e in std::fs::read_dir(&blobs).unwrap() {
        let e = e.unwrap();
        let data = std::fs::read(e.path()).unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert_eq!(
            Digest::of(Algorithm::Sha256, &data).to_string(),
            format!("sha256:{name}")
        );
        count += 1;
    }
    // 50 manifests, configs and own layers; the base; the same image's 3.
    assert_eq!(count, 3 * N + 1 + 3);
    let ingest = std::fs::read_dir(s.root.join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(ingest, 0, "uploads left in ingest/");
    let out = cli(
        &["gc", "--dry-run", "--root", s.root.to_str().unwrap()],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.trim_end().ends_with(&format!(
            "would remove 0 blobs, 0 bytes freed; 0 manifests; {count} blobs kept; 0 missing"
        )),
        "{text}"
    );
}

/// A registry with one upload slot and no wait answers 429 with
/// Retry-After while the slot is held; the client sends the upload again
/// and the push succeeds once the slot is free. With a wait, the server
/// queues the upload instead of refusing it.
#[test]
fn busy_registry_is_retried() {
    use std::io::{Read, Write};
    for (wait, refused) in [(0, true), (30, false)] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("limit.json");
        std::fs::write(
            &conf,
            format!(r#"{{"uploads": {{"max_concurrent": 1, "wait_secs": {wait}}}}}"#),
        )
        .unwrap();
        let s = berth(dir.path(), &["--config", conf.to_str().unwrap()]);
        let a = common::agent();
        // Hold the only slot: a PATCH that has sent 1 of its 2 bytes.
        let r = a
            .post(s.url("/v2/hold/blobs/uploads/"))
            .send_empty()
            .unwrap();
        let loc = common::header(&r, "location").unwrap();
        let mut held = std::net::TcpStream::connect(s.host()).unwrap();
        write!(
            held,
            "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\n\r\nx",
            s.host()
        )
        .unwrap();
        held.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while a.get(s.url(&loc)).call().unwrap().status() != 400 {
            assert!(Instant::now() < deadline, "the PATCH never held its upload");
            std::thread::sleep(Duration::from_millis(50));
        }

        let src = store(dir.path(), "src");
        let name = format!("{}/busy/app:v1", s.host());
        let built = build(
            &src,
            Some(&name),
            &[filler_layer(3, 10_000)],
            &Platform::host(),
            false,
        );
        let c = client(dir.path());
        std::thread::scope(|scope| {
            let push = scope.spawn(|| c.push(&src, &name, &PushOptions::default(), &|_| {}));
            // The push is refused (or queued) while the slot is held.
            let deadline = Instant::now() + Duration::from_secs(15);
            let seen = |what: &str| s.logs().lines().any(|l| l.contains(what));
            let marker = if refused {
                "\" 429 "
            } else {
                "\"POST /v2/busy/"
            };
            while !seen(marker) {
                assert!(Instant::now() < deadline, "no {marker} in {}", s.logs());
                std::thread::sleep(Duration::from_millis(20));
            }
            held.write_all(b"y").unwrap();
            let mut reply = [0u8; 12];
            held.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"HTTP/1.1 202");
            let report = push.join().unwrap().unwrap();
            assert_eq!(report.digest, built.target.digest);
        });
        assert_eq!(s.logs().contains("\" 429 "), refused, "{}", s.logs());
    }
}
