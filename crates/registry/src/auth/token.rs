//! Bearer tokens signed by the registry itself (HMAC-SHA256).
//!
//! A token is `base64url(claims) "." base64url(hmac(key, base64url(claims)))`,
//! where the claims say who, for which service, until when, and which
//! actions on which resources. The key is kept in a file so tokens survive a
//! restart.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::storage::durable;

/// Why a token key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[error("token key {path}")]
pub struct TokenKeyError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// One resource's granted actions: `repository:library/busybox:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

impl ResourceAccess {
    /// Parses a scope (`repository:a/b:pull,push`); `None` if malformed.
    pub fn parse_scope(scope: &str) -> Option<Self> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(ResourceAccess {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account (empty for anonymous).
    pub sub: String,
    /// The service the token is for.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Granted access.
    pub access: Vec<ResourceAccess>,
}

impl Claims {
    /// Whether the token grants `action` on the resource.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
        })
    }
}

/// Signs and checks tokens.
pub struct TokenSigner {
    /// HMAC-SHA256 keyed once; cloned per token.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner { key: <hidden> }")
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenSigner {
    /// A signer with this key (HMAC takes keys of any length).
    pub fn new(key: &[u8]) -> Self {
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        TokenSigner { keyed }
    }

    /// Loads the key at `path`, making a random one (mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenKeyError> {
        let err = |source| TokenKeyError {
            path: path.display().to_string(),
            source,
        };
        match fs::read(path) {
            Ok(key) if key.len() >= 32 => return Ok(TokenSigner::new(&key)),
            Ok(_) => {
                return Err(err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    "shorter than 32 bytes",
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let key = durable::random_hex(32).map_err(err)?.into_bytes();
        if let Some(dir) = path.parent() {
            durable::create_dir_all(dir).map_err(err)?;
        }
        durable::write_file(path, &key).map_err(err)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
        Ok(TokenSigner::new(&key))
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(payload.as_bytes());
        mac
    }

    /// Signs claims into a token.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The claims of a token signed with this key, for `service`, unexpired.
    pub fn verify(&self, token: &str, service: &str) -> Option<Claims> {
        let (payload, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.mac(payload).verify_slice(&sig).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.aud == service && claims.exp > now()).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            aud: "svc".into(),
            exp,
            iat: now(),
            access: vec![ResourceAccess::parse_scope("repository:a/b:pull,push").unwrap()],
        }
    }

    #[test]
    fn sign_verify_tamper_expire() {
        let s = TokenSigner::new(&b"k".repeat(32));
        let t = s.sign(&claims(now() + 60));
        let c = s.verify(&t, "svc").unwrap();
        assert!(c.allows("repository", "a/b", "push"));
        assert!(!c.allows("repository", "a/b", "delete"));
        assert!(!c.allows("repository", "a/c", "pull"));
        assert!(s.verify(&t, "other").is_none());
        assert!(
            TokenSigner::new(&b"x".repeat(32))
                .verify(&t, "svc")
                .is_none()
        );
        let mut forged = claims(now() + 60);
        forged.access[0].name = "c/d".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let sig = t.split_once('.').unwrap().1;
        assert!(
            s.verify(&format!("{forged_payload}.{sig}"), "svc")
                .is_none()
        );
        assert!(s.verify(&s.sign(&claims(now() - 1)), "svc").is_none());
    }

    #[test]
    fn scopes() {
        let a = ResourceAccess::parse_scope("repository:localhost:5000/x:pull").unwrap();
        assert_eq!(a.name, "localhost:5000/x");
        assert_eq!(a.actions, ["pull"]);
        assert!(ResourceAccess::parse_scope("nope").is_none());
    }
}
