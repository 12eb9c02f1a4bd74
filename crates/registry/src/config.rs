//! Configuration: a JSON file (`--config`), overridden by command-line flags.
//!
//! ```json
//! {
//!   "addr": "127.0.0.1:5000",
//!   "root": "/var/lib/berth/registry",
//!   "read_only": false,
//!   "tls": { "cert": "cert.pem", "key": "key.pem", "client_ca": "clients-ca.pem" },
//!   "auth": {
//!     "htpasswd": "/etc/berth/htpasswd",
//!     "token": { "service": "berth-registry", "expiry_secs": 300 },
//!     "access": [
//!       { "account": "alice", "repositories": ["alice/*", "shared"], "actions": ["pull", "push"] },
//!       { "account": "*", "repositories": ["*"], "actions": ["pull"] }
//!     ]
//!   },
//!   "uploads": { "ttl_secs": 86400, "purge_interval_secs": 600, "max_concurrent": 64, "wait_secs": 30 }
//! }
//! ```
//!
//! With `htpasswd` alone, clients use HTTP basic auth; with `token` too, they
//! get bearer tokens from the registry's own `/token` endpoint (authenticated
//! with the same htpasswd). `access` grants actions (`pull`, `push`, `delete`
//! or `*`) on repository patterns (exact, `prefix/*`, or `*`) to an account
//! (`*` is any signed-in account, `anonymous` is no account). Without rules,
//! every signed-in account may do everything and anonymous clients nothing.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default data root of the registry.
pub const DEFAULT_ROOT: &str = "/var/lib/berth/registry";

/// The storage root when none is given: `$BERTH_ROOT/registry` if berth's
/// data root is overridden, else [`DEFAULT_ROOT`].
pub fn default_root() -> PathBuf {
    match std::env::var_os("BERTH_ROOT") {
        Some(r) if !r.is_empty() => PathBuf::from(r).join("registry"),
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}
/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("parse config {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address.
    pub addr: Option<SocketAddr>,
    /// Storage root.
    pub root: Option<PathBuf>,
    /// Refuse every write.
    pub read_only: bool,
    /// TLS certificate and key.
    pub tls: Option<TlsConfig>,
    /// Authentication and access.
    pub auth: AuthConfig,
    /// Upload sessions.
    pub uploads: UploadConfig,
    /// Seconds to let requests in flight finish after SIGTERM.
    pub shutdown_timeout_secs: Option<u64>,
    /// Largest manifest accepted, in bytes (4 MiB by default).
    pub max_manifest_bytes: Option<u64>,
}

/// PEM files of the server's certificate chain and private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; with
    /// it, every client must present one.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// Authentication and access rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// An htpasswd file of bcrypt hashes.
    pub htpasswd: Option<PathBuf>,
    /// Issue bearer tokens from `/token` instead of taking basic auth on the API.
    pub token: Option<TokenConfig>,
    /// Who may do what; see the module docs.
    pub access: Vec<AccessRule>,
}

/// The built-in token service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// The `realm` URL in challenges; by default `<scheme>://<Host>/token`.
    pub realm: Option<String>,
    /// The `service` name in challenges and tokens.
    pub service: String,
    /// Token lifetime.
    pub expiry_secs: u64,
    /// The HMAC key file; by default `<root>/auth/token.key`, made on first use.
    pub key_file: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: None,
            service: "berth-registry".to_owned(),
            expiry_secs: 300,
            key_file: None,
        }
    }
}

/// One access rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// The account, `*` for any signed-in account, `anonymous` for none.
    pub account: String,
    /// Repository patterns: `name`, `prefix/*`, `*`.
    pub repositories: Vec<String>,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// Upload session limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Sessions idle longer than this are dropped.
    pub ttl_secs: u64,
    /// How often to look for them.
    pub purge_interval_secs: u64,
    /// Requests sending blob bytes at once; more wait for a slot.
    pub max_concurrent: usize,
    /// Seconds a request waits for a slot before it gets 429 TOOMANYREQUESTS.
    pub wait_secs: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            ttl_secs: 24 * 3600,
            purge_interval_secs: 600,
            max_concurrent: 64,
            wait_secs: 30,
        }
    }
}

impl Config {
    /// Reads a JSON config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let data = fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&data).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"{
          "addr": "127.0.0.1:5000", "read_only": true,
          "tls": { "cert": "c.pem", "key": "k.pem", "client_ca": "ca.pem" },
          "auth": { "htpasswd": "h", "token": { "expiry_secs": 60 },
                    "access": [{ "account": "*", "repositories": ["*"], "actions": ["pull"] }] },
          "uploads": { "ttl_secs": 5 }
        }"#;
        let c: Config = serde_json::from_str(text).unwrap();
        assert!(c.read_only);
        assert_eq!(c.auth.token.unwrap().service, "berth-registry");
        assert_eq!(c.uploads.ttl_secs, 5);
        assert_eq!(c.uploads.max_concurrent, 64);
        assert_eq!(c.uploads.wait_secs, 30);
        assert_eq!(c.tls.unwrap().client_ca.unwrap(), PathBuf::from("ca.pem"));
        assert!(serde_json::from_str::<Config>(r#"{"nope":1}"#).is_err());
    }
}
