//! Authentication and access: htpasswd basic auth, or bearer tokens from the
//! registry's own token endpoint, with per-repository rules.
//!
//! Each request needs either just a signed-in client (`GET /v2/`) or an
//! action on a resource ([`Need`]). [`Auth::authenticate`] answers with a
//! [`Grant`] or the error to send: 401 UNAUTHORIZED with a `WWW-Authenticate`
//! challenge when credentials are missing, wrong or short of scope, 403
//! DENIED when a signed-in basic-auth account lacks the right.

pub mod htpasswd;
pub mod token;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use oci_spec::distribution::ErrorCode;

use crate::config::{AccessRule, AuthConfig, TokenConfig};
use crate::error::ApiError;
use htpasswd::{Htpasswd, HtpasswdError};
use token::{Claims, ResourceAccess, TokenKeyError, TokenSigner, now};

/// Why auth could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The htpasswd file.
    #[error(transparent)]
    Htpasswd(#[from] HtpasswdError),
    /// The token key.
    #[error(transparent)]
    TokenKey(#[from] TokenKeyError),
    /// Token auth without an htpasswd file.
    #[error("token auth needs an htpasswd file (auth.htpasswd or --htpasswd)")]
    TokenWithoutHtpasswd,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A signed-in client, nothing more (`GET /v2/`).
    SignedIn,
    /// An action on a resource: `("repository", "a/b", "push")`,
    /// `("registry", "catalog", "*")`.
    Action {
        /// `repository` or `registry`.
        kind: &'static str,
        /// The repository, or `catalog`.
        name: String,
        /// `pull`, `push`, `delete` or `*`.
        action: &'static str,
    },
}

/// What a request was allowed as.
#[derive(Debug, Clone)]
pub enum Grant {
    /// No auth configured: everything.
    Open,
    /// Basic auth: the account, or `None` for anonymous.
    Basic(Option<String>),
    /// A verified bearer token.
    Token(Claims),
}

impl Grant {
    /// Whether this grant also covers another action (a mount's `from`).
    pub fn allows(&self, auth: Option<&Auth>, kind: &str, name: &str, action: &str) -> bool {
        match (self, auth) {
            (Grant::Open, _) | (_, None) => true,
            (Grant::Basic(account), Some(a)) => {
                a.rules_allow(account.as_deref(), kind, name, action)
            }
            (Grant::Token(claims), Some(_)) => claims.allows(kind, name, action),
        }
    }
}

/// Configured authentication.
#[derive(Debug)]
pub struct Auth {
    htpasswd: Htpasswd,
    token: Option<(TokenConfig, TokenSigner)>,
    rules: Vec<AccessRule>,
}

/// The token endpoint's answer.
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    /// The token.
    pub token: String,
    /// The same, for OAuth2 clients.
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// RFC 3339 issue time.
    pub issued_at: String,
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok());
    Some(
        decoded
            .and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
            .ok_or(()),
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn unauthorized(message: &str, challenge: String) -> ApiError {
    let e = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
    match HeaderValue::from_str(&challenge) {
        Ok(v) => e.with_header(WWW_AUTHENTICATE, v),
        Err(_) => e,
    }
}

impl Auth {
    /// Sets up auth from the configuration; `None` if no htpasswd is given.
    pub fn new(cfg: &AuthConfig, root: &Path) -> Result<Option<Self>, AuthError> {
        let Some(path) = &cfg.htpasswd else {
            if cfg.token.is_some() {
                return Err(AuthError::TokenWithoutHtpasswd);
            }
            return Ok(None);
        };
        let htpasswd = Htpasswd::load(path)?;
        let token = match &cfg.token {
            Some(t) => {
                let key = t
                    .key_file
                    .clone()
                    .unwrap_or_else(|| root.join("auth/token.key"));
                Some((t.clone(), TokenSigner::load_or_create(&key)?))
            }
            None => None,
        };
        Ok(Some(Auth {
            htpasswd,
            token,
            rules: cfg.access.clone(),
        }))
    }

    /// Whether bearer tokens are in use.
    pub fn uses_tokens(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the rules let `account` (`None`: anonymous) do `action`.
    pub fn rules_allow(&self, account: Option<&str>, kind: &str, name: &str, action: &str) -> bool {
        if self.rules.is_empty() {
            return account.is_some();
        }
        self.rules.iter().any(|r| {
            let who = match account {
                Some(a) => r.account == a || r.account == "*",
                None => r.account == "anonymous",
            };
            let what = match kind {
                "repository" => r.repositories.iter().any(|p| pattern_matches(p, name)),
                _ => r.repositories.iter().any(|p| p == "*"),
            };
            let how = r.actions.iter().any(|a| a == "*" || a == action);
            who && what && (how || kind != "repository")
        })
    }

    /// Checks a request's credentials against what it needs.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        need: &Need,
        scheme: &str,
    ) -> Result<Grant, ApiError> {
        match &self.token {
            None => self.authenticate_basic(headers, need),
            Some((cfg, signer)) => {
                let realm = cfg.realm.clone().unwrap_or_else(|| {
                    let host = headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("localhost");
                    format!("{scheme}://{host}/token")
                });
                let claims = bearer(headers).and_then(|t| signer.verify(t, &cfg.service));
                let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{}\"", cfg.service);
                match (need, claims) {
                    (Need::SignedIn, Some(c)) => Ok(Grant::Token(c)),
                    (Need::Action { kind, name, action }, Some(c))
                        if c.allows(kind, name, action) =>
                    {
                        Ok(Grant::Token(c))
                    }
                    (need, claims) => {
                        if let Need::Action { kind, name, action } = need {
                            let actions = if *action == "push" {
                                "pull,push"
                            } else {
                                action
                            };
                            challenge.push_str(&format!(",scope=\"{kind}:{name}:{actions}\""));
                            if claims.is_some() {
                                challenge.push_str(",error=\"insufficient_scope\"");
                            }
                        }
                        Err(unauthorized("authentication required", challenge))
                    }
                }
            }
        }
    }

    fn authenticate_basic(&self, headers: &HeaderMap, need: &Need) -> Result<Grant, ApiError> {
        let challenge = || "Basic realm=\"berth-registry\"".to_owned();
        let account = match basic_credentials(headers) {
            Some(Ok((user, password))) if self.htpasswd.verify(&user, &password) => Some(user),
            Some(_) => return Err(unauthorized("invalid username or password", challenge())),
            None => None,
        };
        match need {
            Need::SignedIn if account.is_none() => {
                Err(unauthorized("authentication required", challenge()))
            }
            Need::SignedIn => Ok(Grant::Basic(account)),
            Need::Action { kind, name, action } => {
                if self.rules_allow(account.as_deref(), kind, name, action) {
                    Ok(Grant::Basic(account))
                } else if account.is_none() {
                    Err(unauthorized("authentication required", challenge()))
                } else {
                    Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        ErrorCode::Denied,
                        format!("access to {kind} {name} ({action}) denied"),
                    ))
                }
            }
        }
    }

    /// Answers the token endpoint: `scopes` asked for, credentials (basic,
    /// or a password grant's fields) optional.
    pub fn issue_token(
        &self,
        headers: &HeaderMap,
        form_credentials: Option<(String, String)>,
        scopes: &[String],
    ) -> Result<TokenResponse, ApiError> {
        let Some((cfg, signer)) = &self.token else {
            return Err(ApiError::not_found("/token"));
        };
        let creds = match form_credentials {
            Some(c) => Some(Ok(c)),
            None => basic_credentials(headers),
        };
        let account = match creds {
            Some(Ok((user, password))) if self.htpasswd.verify(&user, &password) => Some(user),
            Some(_) => {
                return Err(unauthorized(
                    "invalid username or password",
                    "Basic realm=\"berth-registry\"".to_owned(),
                ));
            }
            None => None,
        };
        let mut access = Vec::new();
        for scope in scopes.iter().flat_map(|s| s.split(' ')) {
            let Some(mut asked) = ResourceAccess::parse_scope(scope) else {
                continue;
            };
            asked
                .actions
                .retain(|a| self.rules_allow(account.as_deref(), &asked.kind, &asked.name, a));
            if !asked.actions.is_empty() {
                access.push(asked);
            }
        }
        let iat = now();
        let claims = Claims {
            sub: account.unwrap_or_default(),
            aud: cfg.service.clone(),
            exp: iat + cfg.expiry_secs,
            iat,
            access,
        };
        let token = signer.sign(&claims);
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: cfg.expiry_secs,
            issued_at: rfc3339(iat),
        })
    }
}

/// Seconds since the epoch as RFC 3339 UTC.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(rules: Vec<AccessRule>) -> Auth {
        let hash = bcrypt::hash("pw", 4).unwrap();
        Auth {
            htpasswd: Htpasswd::parse(&format!("alice:{hash}\nbob:{hash}")).unwrap(),
            token: None,
            rules,
        }
    }

    fn rule(account: &str, repos: &[&str], actions: &[&str]) -> AccessRule {
        AccessRule {
            account: account.into(),
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules() {
        let a = auth(vec![]);
        assert!(a.rules_allow(Some("alice"), "repository", "x", "push"));
        assert!(!a.rules_allow(None, "repository", "x", "pull"));
        let a = auth(vec![
            rule("alice", &["alice/*"], &["*"]),
            rule("*", &["pub"], &["pull"]),
            rule("anonymous", &["open/*"], &["pull"]),
        ]);
        assert!(a.rules_allow(Some("alice"), "repository", "alice/app", "delete"));
        assert!(!a.rules_allow(Some("bob"), "repository", "alice/app", "pull"));
        assert!(a.rules_allow(Some("bob"), "repository", "pub", "pull"));
        assert!(!a.rules_allow(Some("bob"), "repository", "pub", "push"));
        assert!(a.rules_allow(None, "repository", "open/x", "pull"));
        assert!(!a.rules_allow(None, "repository", "pub", "pull"));
    }

    #[test]
    fn basic_auth_answers() {
        let a = auth(vec![
            rule("alice", &["*"], &["*"]),
            rule("bob", &["b"], &["pull"]),
        ]);
        let need = Need::Action {
            kind: "repository",
            name: "b".into(),
            action: "push",
        };
        let mut h = HeaderMap::new();
        let e = a.authenticate(&h, &need, "http").unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic Ym9iOnB3")); // bob:pw
        let e = a.authenticate(&h, &need, "http").unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.code, ErrorCode::Denied);
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cHc="),
        ); // alice:pw
        assert!(a.authenticate(&h, &need, "http").is_ok());
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6eA=="),
        ); // alice:x
        assert_eq!(
            a.authenticate(&h, &Need::SignedIn, "http")
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
