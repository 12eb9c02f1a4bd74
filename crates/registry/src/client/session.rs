//! One registry, signed in: the scheme it answered on (HTTPS, or HTTP for
//! an insecure one), its TLS setup, its auth challenge and the bearer
//! tokens got so far, cached per scope until they expire.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{Method, Request};
use ureq::SendBody;

use super::error::error_message;
use super::{ClientError, ClientOptions, Credentials, tls};

/// How many times a request answered 429 TOOMANYREQUESTS is sent again.
const BUSY_RETRIES: u32 = 6;
/// The longest pause before sending it again.
const MAX_BUSY_PAUSE: Duration = Duration::from_secs(10);

/// A response from the registry.
pub(crate) type Response = http::Response<ureq::Body>;

/// How the registry asks clients to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    /// Not asked yet (or the registry is open).
    None,
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug)]
struct AuthState {
    challenge: Challenge,
    /// Scope set (space separated) → (token, valid until).
    tokens: HashMap<String, (String, Instant)>,
}

/// A request body that can be sent again (after a 401).
pub(crate) enum Body<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`; `sent` is told how many bytes
    /// have left so far.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        sent: &'a (dyn Fn(u64) + Sync),
    },
}

/// A request to send.
pub(crate) struct Req<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// For messages: `GET manifest a/b:latest`.
    pub what: String,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, url: String, what: String) -> Self {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: Body::Empty,
            what,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Body<'a>) -> Self {
        self.body = body;
        self
    }
}

/// A connection to one registry.
#[derive(Debug)]
pub(crate) struct Session {
    /// The registry as named in references: `127.0.0.1:5000`, `docker.io`.
    pub registry: String,
    /// `https://host[:port]` or `http://…`.
    pub base: String,
    agent: ureq::Agent,
    creds: Credentials,
    auth: Mutex<AuthState>,
}

/// Whether plain HTTP may be used for `registry`: listed as insecure
/// (`host[:port]`, `host`, or an IPv4/IPv6 CIDR), or loopback
/// (`localhost`, 127.0.0.0/8, ::1), as Docker's defaults have it.
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    is_loopback(registry) || is_listed(registry, insecure)
}

/// `localhost`, 127.0.0.0/8 or ::1, with or without a port.
fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `registry` is in the list (`host[:port]`, `host`, or a CIDR).
fn is_listed(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    let ip = host.parse::<IpAddr>().ok();
    insecure.iter().any(|entry| {
        let entry = entry
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        if entry == registry || entry == host {
            return true;
        }
        match (entry.split_once('/'), ip) {
            (Some((net, bits)), Some(ip)) => cidr_contains(net, bits, ip),
            _ => false,
        }
    })
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    }
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// What to do when the registry asks for a client certificate.
fn client_cert_hint(options: &ClientOptions, registry: &str) -> String {
    format!(
        " (the registry wants a client certificate: put client.cert and client.key in {}/{registry}/)",
        options.certs_dir.display()
    )
}

/// Parses `Scheme k="v",k2="v2"` into the scheme and its parameters.
fn parse_challenge(value: &str) -> (String, HashMap<String, String>) {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), val);
    }
    (scheme.to_ascii_lowercase(), params)
}

fn challenge_of(resp: &Response) -> Challenge {
    for v in resp.headers().get_all(http::header::WWW_AUTHENTICATE) {
        let Ok(v) = v.to_str() else { continue };
        let (scheme, params) = parse_challenge(v);
        match scheme.as_str() {
            "bearer" => {
                if let Some(realm) = params.get("realm") {
                    return Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                    };
                }
            }
            "basic" => return Challenge::Basic,
            _ => {}
        }
    }
    Challenge::None
}

/// Reads at most `limit` bytes of a body.
pub(crate) fn read_body(
    resp: &mut Response,
    limit: u64,
    registry: &str,
    what: &str,
) -> Result<Vec<u8>, ClientError> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| ClientError::Transport {
            registry: registry.to_owned(),
            what: what.to_owned(),
            source: Box::new(e),
        })
}

/// A reader that tells how many bytes went through it.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    sent: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.sent)(self.done);
        Ok(n)
    }
}

impl Session {
    /// Reaches `registry` and learns how it wants clients to sign in. A
    /// secure registry over HTTPS only, verified against the system's and
    /// certs.d's CAs; an insecure one, as Docker does, over HTTPS without
    /// verifying the certificate and, when that fails, over plain HTTP.
    pub fn connect(
        options: &ClientOptions,
        registry: &str,
        creds: Credentials,
    ) -> Result<Session, ClientError> {
        let insecure = (options.insecure_loopback && is_loopback(registry))
            || is_listed(registry, &options.insecure_registries);
        let tls = tls::config(&options.certs_dir, registry, !insecure)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(10)
            .user_agent(options.user_agent.as_str())
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .timeout_per_write(Some(options.read_timeout))
            .tls_config(tls)
            .build()
            .into();
        let host = if registry == "docker.io" || registry == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let ping = |base: &str| -> Result<Response, ureq::Error> {
            let mut r = agent.get(format!("{base}/v2/")).call()?;
            // Drain a small body so the connection can be reused.
            let _ = r.body_mut().with_config().limit(64 * 1024).read_to_vec();
            Ok(r)
        };
        let https = format!("https://{host}");
        let (base, resp) = match ping(&https) {
            Ok(r) => (https, r),
            Err(e) if insecure => {
                let http = format!("http://{host}");
                match ping(&http) {
                    Ok(r) => (http, r),
                    Err(e2) => {
                        let text = e.to_string();
                        let hint = if text.to_ascii_lowercase().contains("certificaterequired") {
                            client_cert_hint(options, registry)
                        } else {
                            String::new()
                        };
                        return Err(ClientError::Connect {
                            registry: registry.to_owned(),
                            reason: format!("{https}: {text}{hint}; {http}: {e2}"),
                        });
                    }
                }
            }
            Err(e) => {
                let text = e.to_string();
                let lower = text.to_ascii_lowercase();
                let hint = if lower.contains("certificaterequired")
                    || lower.contains("certificate required")
                {
                    client_cert_hint(options, registry)
                } else if matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
                    || lower.contains("certificate")
                {
                    format!(
                        " (trust its CA with {}/{registry}/ca.crt, or list it as an insecure registry)",
                        options.certs_dir.display()
                    )
                } else {
                    String::new()
                };
                return Err(ClientError::Connect {
                    registry: registry.to_owned(),
                    reason: format!("{https}: {text}{hint}"),
                });
            }
        };
        let challenge = if resp.status() == 401 {
            challenge_of(&resp)
        } else {
            Challenge::None
        };
        tracing::debug!(registry, base, ?challenge, "registry reached");
        Ok(Session {
            registry: registry.to_owned(),
            base,
            agent,
            creds,
            auth: Mutex::new(AuthState {
                challenge,
                tokens: HashMap::new(),
            }),
        })
    }

    /// The URL of `path` (`/v2/…`), or `location` as given if absolute.
    pub fn url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` header for `scope`, fetching a token if the
    /// registry wants bearer tokens and none is cached.
    fn authorization(&self, scope: &[String]) -> Result<Option<String>, ClientError> {
        if let Credentials::RegistryToken(t) = &self.creds {
            return Ok(Some(format!("Bearer {t}")));
        }
        let challenge = self.lock().challenge.clone();
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => match &self.creds {
                Credentials::Basic { username, password } => Ok(Some(format!(
                    "Basic {}",
                    STANDARD.encode(format!("{username}:{password}"))
                ))),
                _ => Ok(None),
            },
            Challenge::Bearer { realm, service } => {
                let key = scope.join(" ");
                if let Some((t, until)) = self.lock().tokens.get(&key)
                    && *until > Instant::now()
                {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), scope)?;
                // Refresh a little before the registry would refuse it.
                let until = Instant::now() + ttl.saturating_sub(Duration::from_secs(5));
                self.lock().tokens.insert(key, (token.clone(), until));
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &[String],
    ) -> Result<(String, Duration), ClientError> {
        let err = |reason: String| ClientError::Token {
            registry: self.registry.clone(),
            realm: realm.to_owned(),
            reason,
        };
        let result = match &self.creds {
            Credentials::IdentityToken(refresh) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh)
                    .append_pair("client_id", "berth");
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                if !scope.is_empty() {
                    form.append_pair("scope", &scope.join(" "));
                }
                self.agent
                    .post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(form.finish())
            }
            creds => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scope {
                    q.append_pair("scope", s);
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let mut req = self.agent.get(format!("{realm}{sep}{}", q.finish()));
                if let Credentials::Basic { username, password } = creds {
                    req = req.header(
                        "Authorization",
                        format!(
                            "Basic {}",
                            STANDARD.encode(format!("{username}:{password}"))
                        ),
                    );
                }
                req.call()
            }
        };
        let mut resp = result.map_err(|e| err(e.to_string()))?;
        let body = read_body(&mut resp, 1 << 20, &self.registry, "token")?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let who = match &self.creds {
                Credentials::Basic { username, .. } => format!("user {username:?}"),
                Credentials::Anonymous => "anonymous access".to_owned(),
                _ => "the identity token".to_owned(),
            };
            return Err(err(format!(
                "HTTP {status}{}: {who} was refused; check the username and password",
                error_message(&body)
            )));
        }
        if status != 200 {
            return Err(err(format!("HTTP {status}{}", error_message(&body))));
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: u64,
        }
        let reply: TokenReply =
            serde_json::from_slice(&body).map_err(|e| err(format!("bad token reply: {e}")))?;
        let token = if reply.token.is_empty() {
            reply.access_token
        } else {
            reply.token
        };
        if token.is_empty() {
            return Err(err("the reply holds no token".into()));
        }
        // The spec's default lifetime is 60 seconds.
        let ttl = Duration::from_secs(if reply.expires_in == 0 {
            60
        } else {
            reply.expires_in
        });
        Ok((token, ttl))
    }

    /// Sends `req` with the authorization `scope` needs; on a 401 learns the
    /// challenge (or drops a stale token) and tries once more. A 401 after
    /// that is [`ClientError::Unauthorized`], a 403 [`ClientError::Denied`].
    /// A 429 (the registry is busy; it took nothing of the request) is sent
    /// again after its `Retry-After` or a growing pause, a few times.
    pub fn send(
        &self,
        req: &Req<'_>,
        scope: &[String],
        repository: &str,
    ) -> Result<Response, ClientError> {
        let mut busy = 0;
        loop {
            let mut resp = self.send_authorized(req, scope, repository)?;
            if resp.status() != 429 || busy >= BUSY_RETRIES {
                return Ok(resp);
            }
            let pause = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_millis(500) * 2u32.pow(busy))
                .min(MAX_BUSY_PAUSE);
            let _ = read_body(&mut resp, 64 * 1024, &self.registry, &req.what);
            busy += 1;
            tracing::debug!(registry = %self.registry, what = %req.what, ?pause, "busy (429), sending again");
            std::thread::sleep(pause);
        }
    }

    fn send_authorized(
        &self,
        req: &Req<'_>,
        scope: &[String],
        repository: &str,
    ) -> Result<Response, ClientError> {
        for attempt in 0..2 {
            let authz = self.authorization(scope)?;
            let mut resp = self.run(req, authz.as_deref())?;
            let status = resp.status().as_u16();
            if status == 401 && attempt == 0 {
                let challenge = challenge_of(&resp);
                let mut state = self.lock();
                let retry = match (&challenge, &state.challenge) {
                    (Challenge::None, _) => false,
                    (new, old) if new != old => true,
                    (Challenge::Bearer { .. }, _) => {
                        // A token that expired early or lacks a scope.
                        state.tokens.remove(&scope.join(" ")).is_some()
                    }
                    _ => false,
                };
                state.challenge = challenge;
                drop(state);
                if retry {
                    let _ = read_body(&mut resp, 64 * 1024, &self.registry, &req.what);
                    continue;
                }
            }
            if status == 401 || status == 403 {
                let body = read_body(&mut resp, 64 * 1024, &self.registry, &req.what)?;
                let message = error_message(&body);
                let (registry, repository) = (self.registry.clone(), repository.to_owned());
                return Err(if status == 401 {
                    ClientError::Unauthorized {
                        registry,
                        repository,
                        message,
                    }
                } else {
                    ClientError::Denied {
                        registry,
                        repository,
                        message,
                    }
                });
            }
            return Ok(resp);
        }
        Err(ClientError::Unauthorized {
            registry: self.registry.clone(),
            repository: repository.to_owned(),
            message: String::new(),
        })
    }

    fn run(&self, req: &Req<'_>, authz: Option<&str>) -> Result<Response, ClientError> {
        let transport = |e: ureq::Error| ClientError::Transport {
            registry: self.registry.clone(),
            what: req.what.clone(),
            source: Box::new(e),
        };
        let mut builder = Request::builder().method(req.method.clone()).uri(&req.url);
        for (k, v) in &req.headers {
            builder = builder.header(*k, v);
        }
        if let Some(a) = authz {
            builder = builder.header("Authorization", a);
        }
        let bad = |e: http::Error| ClientError::Invalid {
            reference: req.url.clone(),
            what: "request",
            digest: String::new(),
            reason: e.to_string(),
        };
        match &req.body {
            Body::Empty => {
                let r = if matches!(req.method, Method::PUT | Method::POST | Method::PATCH) {
                    builder
                        .header("Content-Length", "0")
                        .body(SendBody::none())
                        .map_err(bad)?
                } else {
                    builder.body(SendBody::none()).map_err(bad)?
                };
                self.agent.run(r).map_err(transport)
            }
            Body::Bytes(b) => {
                let r = builder.body(*b).map_err(bad)?;
                self.agent.run(r).map_err(transport)
            }
            Body::File {
                path,
                offset,
                len,
                sent,
            } => {
                let mut f = std::fs::File::open(path)
                    .map_err(|e| ClientError::io(format!("open {}", path.display()), e))?;
                f.seek(SeekFrom::Start(*offset))
                    .map_err(|e| ClientError::io(format!("seek {}", path.display()), e))?;
                let mut reader = Counting {
                    inner: f.take(*len),
                    done: 0,
                    sent: *sent,
                };
                let r = builder
                    .header("Content-Length", len.to_string())
                    .body(SendBody::from_reader(&mut reader))
                    .map_err(bad)?;
                self.agent.run(r).map_err(transport)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://a/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:x:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="berth-registry""#);
        assert_eq!(s, "basic");
        assert_eq!(p["realm"], "berth-registry");
    }

    #[test]
    fn insecure_registries() {
        let none: Vec<String> = Vec::new();
        for r in [
            "localhost:5000",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_insecure(r, &none), "{r}");
        }
        for r in ["docker.io", "10.0.0.1:5000", "example.com:5000"] {
            assert!(!is_insecure(r, &none), "{r}");
        }
        let list = vec!["example.com:5000".to_owned(), "10.0.0.0/8".to_owned()];
        assert!(is_insecure("example.com:5000", &list));
        assert!(!is_insecure("example.com:5001", &list));
        assert!(is_insecure("10.1.2.3:5000", &list));
        assert!(!is_insecure("11.1.2.3:5000", &list));
    }
}
