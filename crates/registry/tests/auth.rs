#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Basic auth from htpasswd, bearer tokens from the built-in token endpoint
//! with per-repository scopes, and TLS with a certificate made by the test.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use common::*;

const PW: &str = "correct horse";

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

fn write_htpasswd(dir: &Path) -> std::path::PathBuf {
    let hash = bcrypt::hash(PW, 4).unwrap();
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("alice:{hash}\nbob:{hash}\n")).unwrap();
    path
}

fn write_config(dir: &Path, token: bool) -> std::path::PathBuf {
    let htpasswd = write_htpasswd(dir);
    let mut auth = serde_json::json!({
        "htpasswd": htpasswd,
        "access": [
            {"account": "alice", "repositories": ["*"], "actions": ["*"]},
            {"account": "bob", "repositories": ["shared", "bob/*"], "actions": ["pull"]},
            {"account": "bob", "repositories": ["bob/*"], "actions": ["push"]},
            {"account": "anonymous", "repositories": ["public/*"], "actions": ["pull"]},
        ],
    });
    if token {
        auth["token"] = serde_json::json!({"expiry_secs": 60});
    }
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::json!({ "auth": auth }).to_string()).unwrap();
    path
}

#[test]
fn basic_auth_with_access_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), false);
    let s = Server::start(
        &dir.path().join("root"),
        &["--config", cfg.to_str().unwrap()],
    );
    let a = agent();

    let mut r = a.get(s.url("/v2/")).call().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate").as_deref(),
        Some("Basic realm=\"berth-registry\"")
    );
    assert_eq!(code(&mut r), "UNAUTHORIZED");
    let r = a
        .get(s.url("/v2/"))
        .header("Authorization", &basic("alice", "nope"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = a
        .get(s.url("/v2/"))
        .header("Authorization", &basic("alice", PW))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);

    let d = sha256(b"blob");
    let push = |user: &str, repo: &str| {
        a.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .header("Authorization", &basic(user, PW))
            .send(&b"blob"[..])
            .unwrap()
    };
    assert_eq!(push("alice", "shared").status(), 201);
    let mut r = push("bob", "shared");
    assert_eq!(r.status(), 403);
    assert_eq!(code(&mut r), "DENIED");
    assert_eq!(push("bob", "bob/app").status(), 201);
    let r = a
        .get(s.url(&format!("/v2/shared/blobs/{d}")))
        .header("Authorization", &basic("bob", PW))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);

    // Anonymous: only what the rules give `anonymous`.
    assert_eq!(push("alice", "public/x").status(), 201);
    assert_eq!(
        a.head(s.url(&format!("/v2/public/x/blobs/{d}")))
            .call()
            .unwrap()
            .status(),
        200
    );
    let mut r = a
        .head(s.url(&format!("/v2/shared/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = body(&mut r);
}

fn token(a: &ureq::Agent, s: &Server, creds: Option<(&str, &str)>, scope: &str) -> (u16, String) {
    let mut req = a.get(s.url(&format!("/token?service=berth-registry&scope={scope}")));
    if let Some((u, p)) = creds {
        req = req.header("Authorization", &basic(u, p));
    }
    let mut r = req.call().unwrap();
    let status = r.status().as_u16();
    let v = json(&mut r);
    (status, v["token"].as_str().unwrap_or("").to_owned())
}

#[test]
fn bearer_tokens_with_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), true);
    let s = Server::start(
        &dir.path().join("root"),
        &["--config", cfg.to_str().unwrap()],
    );
    let a = agent();

    let r = a.get(s.url("/v2/")).call().unwrap();
    assert_eq!(r.status(), 401);
    let realm = format!(
        "Bearer realm=\"{}\",service=\"berth-registry\"",
        s.url("/token")
    );
    assert_eq!(header(&r, "www-authenticate"), Some(realm.clone()));
    let r = a.get(s.url("/v2/team/app/tags/list")).call().unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(format!("{realm},scope=\"repository:team/app:pull\""))
    );
    let r = a
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send_empty()
        .unwrap();
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(format!("{realm},scope=\"repository:team/app:pull,push\""))
    );

    let (status, _) = token(&a, &s, Some(("alice", "wrong")), "repository:team/app:pull");
    assert_eq!(status, 401);

    let (status, t) = token(&a, &s, Some(("alice", PW)), "repository:team/app:pull,push");
    assert_eq!(status, 200);
    let bearer = format!("Bearer {t}");
    let d = sha256(b"tok");
    let r = a
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}")))
        .header("Authorization", &bearer)
        .send(&b"tok"[..])
        .unwrap();
    assert_eq!(r.status(), 201);
    // The token is for team/app only.
    let r = a
        .post(s.url(&format!("/v2/team/other/blobs/uploads/?digest={d}")))
        .header("Authorization", &bearer)
        .send(&b"tok"[..])
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        header(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    // A mount from a repository the token cannot pull falls back to an upload.
    let r = a
        .post(s.url(&format!(
            "/v2/team/app/blobs/uploads/?mount={d}&from=elsewhere"
        )))
        .header("Authorization", &bearer)
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 202);
    // Catalog needs its own scope; GET /v2/ any valid token.
    let r = a
        .get(s.url("/v2/"))
        .header("Authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = a
        .get(s.url("/v2/_catalog"))
        .header("Authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let (_, ct) = token(&a, &s, Some(("alice", PW)), "registry:catalog:*");
    let mut r = a
        .get(s.url("/v2/_catalog"))
        .header("Authorization", &format!("Bearer {ct}"))
        .call()
        .unwrap();
    assert_eq!(
        json(&mut r)["repositories"],
        serde_json::json!(["team/app"])
    );

    // bob asks for push on team/app: the token comes back without it.
    let (status, bt) = token(&a, &s, Some(("bob", PW)), "repository:team/app:pull,push");
    assert_eq!(status, 200);
    let r = a
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}")))
        .header("Authorization", &format!("Bearer {bt}"))
        .send(&b"tok"[..])
        .unwrap();
    assert_eq!(r.status(), 401);

    // Anonymous tokens carry only anonymous rights; forged tokens fail.
    let (status, anon) = token(&a, &s, None, "repository:team/app:pull");
    assert_eq!(status, 200);
    let r = a
        .get(s.url("/v2/team/app/tags/list"))
        .header("Authorization", &format!("Bearer {anon}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let forged = format!("{}x", &t[..t.len() - 1]);
    let r = a
        .get(s.url("/v2/"))
        .header("Authorization", &format!("Bearer {forged}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);

    // The OAuth2 password grant.
    let mut r = a
        .post(s.url("/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(
            &format!(
                "grant_type=password&username=alice&password={}&service=berth-registry&scope=repository:team/app:pull",
                PW.replace(' ', "+")
            )[..],
        )
        .unwrap();
    assert_eq!(r.status(), 200);
    let t2 = json(&mut r)["access_token"].as_str().unwrap().to_owned();
    let mut r = a
        .get(s.url("/v2/team/app/tags/list"))
        .header("Authorization", &format!("Bearer {t2}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(&mut r)["tags"], serde_json::json!([]));
}

fn make_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = make_cert(dir.path());
    let s = Server::start(
        &dir.path().join("root"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    let a = tls_agent(&der);
    let r = a.get(s.url("/v2/")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    // Untrusted by a client without the certificate; plain HTTP gets nowhere.
    assert!(agent().get(s.url("/v2/")).call().is_err());
    let plain = s.url("/v2/").replace("https://", "http://");
    assert!(agent().get(&plain).call().is_err());

    // skopeo, verifying the certificate, pushes over TLS.
    if Command::new("skopeo").arg("--version").output().is_ok() {
        let certs = dir.path().join("certs.d");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(&cert, certs.join("ca.crt")).unwrap();
        let layout = dir.path().join("layout");
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        let cfg = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
        let hex = sha256(cfg);
        std::fs::write(layout.join("blobs/sha256").join(&hex[7..]), cfg).unwrap();
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": hex, "size": cfg.len()},
            "layers": [],
        }))
        .unwrap();
        let md = sha256(&m);
        std::fs::write(layout.join("blobs/sha256").join(&md[7..]), &m).unwrap();
        std::fs::write(
            layout.join("index.json"),
            serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len(),
                "annotations": {"org.opencontainers.image.ref.name": "v1"}}]})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-cert-dir"])
            .arg(&certs)
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/tls/app:v1", s.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = a.head(s.url("/v2/tls/app/manifests/v1")).call().unwrap();
        assert_eq!(header(&r, "docker-content-digest"), Some(md));
    }
}

#[test]
fn skopeo_pushes_through_the_token_flow() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), true);
    let s = Server::start(
        &dir.path().join("root"),
        &["--config", cfg.to_str().unwrap()],
    );
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    let cd = sha256(config);
    std::fs::write(layout.join("blobs/sha256").join(&cd[7..]), config).unwrap();
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [],
    }))
    .unwrap();
    let md = sha256(&m);
    std::fs::write(layout.join("blobs/sha256").join(&md[7..]), &m).unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let run = |user: &str| {
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
            ])
            .arg(format!("{user}:{PW}"))
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/bob/app:v1", s.host()))
            .output()
            .unwrap()
    };
    let out = run("bob");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
        ])
        .arg(format!("bob:{PW}"))
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/team/denied:v1", s.host()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "bob may not push to team/denied");
}
