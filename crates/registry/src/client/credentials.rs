//! Credentials: what to sign in with, from Docker's `config.json` (with
//! credential helpers) or from the Engine API's `X-Registry-Auth` header.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::Deserialize;

use super::ClientError;

/// The key Docker files Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// What to sign in to a registry with.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials: anonymous tokens, or nothing.
    #[default]
    Anonymous,
    /// A username and password (basic auth, or to get a token).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), traded at the token
    /// endpoint for access tokens.
    IdentityToken(String),
    /// A bearer token used as is (`registrytoken`).
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(***)"),
        }
    }
}

/// The JSON of `X-Registry-Auth` and of a `config.json` entry.
#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
    #[serde(default)]
    serveraddress: String,
}

impl AuthEntry {
    fn credentials(&self, what: &str) -> Result<Credentials, ClientError> {
        if !self.registrytoken.is_empty() {
            return Ok(Credentials::RegistryToken(self.registrytoken.clone()));
        }
        if !self.identitytoken.is_empty() {
            return Ok(Credentials::IdentityToken(self.identitytoken.clone()));
        }
        if !self.auth.is_empty() {
            let raw = decode_b64(self.auth.trim())
                .ok_or_else(|| ClientError::Credentials(format!("{what}: `auth` is not base64")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| ClientError::Credentials(format!("{what}: `auth` is not UTF-8")))?;
            let (u, p) = text.split_once(':').ok_or_else(|| {
                ClientError::Credentials(format!("{what}: `auth` is not user:password"))
            })?;
            return Ok(Credentials::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            });
        }
        if !self.username.is_empty() || !self.password.is_empty() {
            return Ok(Credentials::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            });
        }
        Ok(Credentials::Anonymous)
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    [&URL_SAFE, &URL_SAFE_NO_PAD, &STANDARD, &STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

impl Credentials {
    /// Decodes a Docker `X-Registry-Auth` value: base64url JSON
    /// `{"username","password","serveraddress","identitytoken"}`. An empty
    /// value or `e30=` (`{}`) is anonymous. Returns the credentials and the
    /// `serveraddress`, if any.
    pub fn from_x_registry_auth(value: &str) -> Result<(Credentials, Option<String>), ClientError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok((Credentials::Anonymous, None));
        }
        let raw = decode_b64(value).ok_or_else(|| {
            ClientError::Credentials("X-Registry-Auth is not base64url-encoded JSON".into())
        })?;
        let entry: AuthEntry = serde_json::from_slice(&raw)
            .map_err(|e| ClientError::Credentials(format!("X-Registry-Auth: {e}")))?;
        let server = Some(entry.serveraddress.clone()).filter(|s| !s.is_empty());
        Ok((entry.credentials("X-Registry-Auth")?, server))
    }

    /// Whether there is anything to sign in with.
    pub fn is_anonymous(&self) -> bool {
        *self == Credentials::Anonymous
    }
}

/// The key Docker uses in `config.json` and with credential helpers for a
/// registry: Docker Hub's aliases (`docker.io`, `index.docker.io`,
/// `registry-1.docker.io`, `https://index.docker.io/v1/`) are one key,
/// [`DOCKER_HUB_KEY`]; any other is its `host[:port]`.
pub fn config_key(registry: &str) -> String {
    let host = hostname(registry);
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB_KEY.to_owned()
        }
        _ => host,
    }
}

/// `https://host:port/v1/` → `host:port`, as Docker's `ConvertToHostname`.
fn hostname(s: &str) -> String {
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.split('/').next().unwrap_or(s).to_owned()
}

/// Docker's client configuration (`~/.docker/config.json`), the parts
/// about credentials.
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntryRaw>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntryRaw {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

impl DockerConfig {
    /// Where Docker looks: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(d).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<DockerConfig, ClientError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig {
                    path: path.to_owned(),
                    ..DockerConfig::default()
                });
            }
            Err(e) => return Err(ClientError::io(format!("read {}", path.display()), e)),
        };
        let mut c: DockerConfig = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Credentials(format!("{}: {e}", path.display())))?;
        c.path = path.to_owned();
        Ok(c)
    }

    /// Reads the default file ([`default_path`](Self::default_path)).
    pub fn load_default() -> Result<DockerConfig, ClientError> {
        match Self::default_path() {
            Some(p) => Self::load(&p),
            None => Ok(DockerConfig::default()),
        }
    }

    /// The credentials for `registry` (`host[:port]`, or a Hub alias), as
    /// the Docker CLI finds them: a `credHelpers` entry for the registry,
    /// else the `credsStore`, else the `auths` entry. A helper that has no
    /// credentials for the registry falls through to `auths`.
    pub fn credentials(&self, registry: &str) -> Result<Credentials, ClientError> {
        let key = config_key(registry);
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| config_key(k) == key)
            .map(|(_, h)| h)
            .or(self.creds_store.as_ref())
            .filter(|h| !h.is_empty());
        if let Some(h) = helper
            && let Some(c) = helper_get(h, &key)?
        {
            return Ok(c);
        }
        for (k, entry) in &self.auths {
            if config_key(k) == key {
                let e = AuthEntry {
                    username: entry.username.clone(),
                    password: entry.password.clone(),
                    auth: entry.auth.clone(),
                    identitytoken: entry.identitytoken.clone(),
                    registrytoken: entry.registrytoken.clone(),
                    serveraddress: String::new(),
                };
                return e.credentials(&format!("{} auths[{k:?}]", self.path.display()));
            }
        }
        Ok(Credentials::Anonymous)
    }
}

/// Runs `docker-credential-<helper> get` with the server on stdin, as the
/// Docker CLI does. `None` when the helper has no credentials for it.
fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>, ClientError> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ClientError::Credentials(format!("run {program} (from config.json): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| ClientError::Credentials(format!("write to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ClientError::Credentials(format!("wait for {program}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let said = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(ClientError::Credentials(format!(
            "{program} get {server}: {}: {}",
            out.status,
            said.trim()
        )));
    }
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let r: Reply = serde_json::from_str(&stdout)
        .map_err(|e| ClientError::Credentials(format!("{program} get {server}: {e}")))?;
    if r.username.is_empty() && r.secret.is_empty() {
        return Ok(None);
    }
    if r.username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(r.secret)));
    }
    Ok(Some(Credentials::Basic {
        username: r.username,
        password: r.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_aliases_share_one_key() {
        for a in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            assert_eq!(config_key(a), DOCKER_HUB_KEY, "{a}");
        }
        assert_eq!(config_key("https://localhost:5000/v2/"), "localhost:5000");
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn x_registry_auth() {
        assert_eq!(
            Credentials::from_x_registry_auth("e30=").unwrap(),
            (Credentials::Anonymous, None)
        );
        assert_eq!(
            Credentials::from_x_registry_auth("").unwrap().0,
            Credentials::Anonymous
        );
        let json = r#"{"username":"alice","password":"p?w>d~","serveraddress":"localhost:5000"}"#;
        for enc in [URL_SAFE.encode(json), URL_SAFE_NO_PAD.encode(json)] {
            assert_eq!(
                Credentials::from_x_registry_auth(&enc).unwrap(),
                (
                    Credentials::Basic {
                        username: "alice".into(),
                        password: "p?w>d~".into()
                    },
                    Some("localhost:5000".into())
                )
            );
        }
        let tok = URL_SAFE.encode(r#"{"identitytoken":"refresh"}"#);
        assert_eq!(
            Credentials::from_x_registry_auth(&tok).unwrap().0,
            Credentials::IdentityToken("refresh".into())
        );
        assert!(Credentials::from_x_registry_auth("!!!").is_err());
    }

    #[test]
    fn config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": STANDARD.encode("hub:pw")},
                "localhost:5000": {"username": "u", "password": "p"},
                "https://tok.example": {"identitytoken": "it"},
            }})
            .to_string(),
        )
        .unwrap();
        let c = DockerConfig::load(&p).unwrap();
        let basic = |u: &str, p: &str| Credentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        assert_eq!(c.credentials("docker.io").unwrap(), basic("hub", "pw"));
        assert_eq!(c.credentials("localhost:5000").unwrap(), basic("u", "p"));
        assert_eq!(
            c.credentials("tok.example").unwrap(),
            Credentials::IdentityToken("it".into())
        );
        assert_eq!(c.credentials("other:1").unwrap(), Credentials::Anonymous);
        assert_eq!(
            DockerConfig::load(&dir.path().join("none"))
                .unwrap()
                .credentials("x")
                .unwrap(),
            Credentials::Anonymous
        );
    }
}
