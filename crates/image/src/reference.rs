//! Image references, parsed and normalised as Docker does.
//!
//! `busybox` is `docker.io/library/busybox:latest`; `localhost:5000/a/b@sha256:…`
//! keeps its registry and digest; `Busybox` is refused (repositories are
//! lowercase). The grammar is distribution's reference grammar:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] component ( "/" component )*
//! domain     := host [ ":" port ]
//! component  := [a-z0-9]+ ( separator [a-z0-9]+ )*   separator := "." | "_" | "__" | "-"+
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex{32,}
//! ```

use std::fmt;

/// The registry of names without one.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The namespace of one-component names on the default registry.
pub const OFFICIAL_NAMESPACE: &str = "library";
/// The tag of references without a tag or digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest name (domain and path) accepted.
pub const MAX_NAME_LEN: usize = 255;

/// Why a reference was refused. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("invalid reference format: empty reference")]
    Empty,
    /// Uppercase letters in the repository.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// Anything else that does not parse.
    #[error("invalid reference format: {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

/// A parsed, normalised reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parse and normalise as `docker pull` does: add `docker.io`, the
    /// `library/` namespace and the `latest` tag where they are implied.
    pub fn parse_normalized(input: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|why| invalid(&why))?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A ':' after the last '/' starts the tag (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                check_tag(tag).map_err(|why| invalid(&why))?;
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        let (domain, path) = split_domain(name);
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path));
        }
        check_domain(&domain).map_err(|why| invalid(&why))?;
        for component in path.split('/') {
            check_component(component).map_err(|why| invalid(&why))?;
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "the name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path on the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The short form Docker shows: `busybox:latest`, `me/app:1`,
    /// `localhost:5000/a:b`.
    pub fn familiar(&self) -> String {
        let name = if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(&format!("{OFFICIAL_NAMESPACE}/"))
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        };
        self.with_suffix(name)
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

/// Docker's rule: the first component is a registry when it contains a
/// '.' or a ':', or is `localhost`; otherwise the name is on docker.io
/// (one component gets `library/`). `index.docker.io` is `docker.io`.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{path}")
    } else {
        path
    };
    (domain, path)
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // [IPv6]:port
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry {domain:?}: unclosed '['"))?;
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("registry {domain:?}: not an IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if after.is_empty() => ("", None),
            None => return Err(format!("registry {domain:?}: junk after ']'")),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(p) = port {
        // Docker's grammar takes any digits here; a bad port fails on use.
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("registry {domain:?}: port {p:?} is not a number"));
        }
    }
    if domain.starts_with('[') {
        return Ok(());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "registry {domain:?}: {label:?} is not a valid host name label"
            ));
        }
    }
    Ok(())
}

fn check_component(c: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "path component {c:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
        )
    };
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok
        || tag.len() > 128
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "tag {tag:?} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn check_digest(d: &str) -> Result<(), String> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("digest {d:?} has no algorithm"))?;
    // The algorithms Docker's digest package knows.
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest {d:?}: unsupported digest algorithm {alg:?}"
            ));
        }
    };
    let hex_ok = hex.len() == want
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if !hex_ok {
        return Err(format!(
            "digest {d:?}: bad hex for {alg} (want {want} lowercase hex digits)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse_normalized(s).expect(s).to_string()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            full("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b:c"), "localhost:5000/a/b:c");
        assert_eq!(full("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(full("[::1]:5000/app:v1"), "[::1]:5000/app:v1");
        assert_eq!(
            full("registry.example.com/x/y/z"),
            "registry.example.com/x/y/z:latest"
        );
        assert_eq!(
            full(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            full(&format!("busybox:1@{D}")),
            format!("docker.io/library/busybox:1@{D}")
        );
        assert_eq!(full("localhost:99999/a"), "localhost:99999/a:latest");
        assert_eq!(
            full("me/a_b__c-d---e.f"),
            "docker.io/me/a_b__c-d---e.f:latest"
        );
    }

    #[test]
    fn familiar_names() {
        let f = |s: &str| Reference::parse_normalized(s).expect(s).familiar();
        assert_eq!(f("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(f("me/app:1"), "me/app:1");
        assert_eq!(f("localhost:5000/a:b"), "localhost:5000/a:b");
    }

    #[test]
    fn parts() {
        let r = Reference::parse_normalized("localhost:5000/team/app:v2").expect("parses");
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.name(), "localhost:5000/team/app");
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.digest(), None);
    }

    #[test]
    fn refuses_bad_names_with_a_message() {
        let cases = [
            ("", "empty"),
            (
                "Busybox",
                "repository name (library/Busybox) must be lowercase",
            ),
            ("me/App", "lowercase"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("busybox:a b", "tag"),
            ("-busybox", "path component"),
            ("busy..box", "path component"),
            ("busybox/", "path component"),
            ("a//b", "path component"),
            ("localhost:x/a", "port"),
            ("local_host.com/a", "host name"),
            ("busybox@sha256:abc", "bad hex"),
            ("busybox@sha256", "no algorithm"),
            (
                "busybox@SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "unsupported digest algorithm",
            ),
            (
                "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported digest algorithm",
            ),
        ];
        for (input, want) in cases {
            let err = Reference::parse_normalized(input)
                .expect_err(input)
                .to_string();
            assert!(err.contains("invalid reference format"), "{input}: {err}");
            assert!(err.contains(want), "{input}: {err}");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(Reference::parse_normalized(&long).is_err());
    }
}
