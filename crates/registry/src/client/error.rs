//! The client's error type: each message names the registry, the
//! repository or reference and, for HTTP failures, the status.

use berth_image::content::ContentError;
use berth_image::reference::ReferenceError;
use berth_image::store::StoreError;

/// Why a pull or push failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The image reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The local image store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Neither HTTPS nor (where allowed) HTTP reached the registry.
    #[error("cannot reach registry {registry}: {reason}")]
    Connect {
        /// `host[:port]`.
        registry: String,
        /// What each scheme tried said.
        reason: String,
    },
    /// A request failed below HTTP (connection dropped, timeout, TLS).
    #[error("registry {registry}: {what}: {source}")]
    Transport {
        /// `host[:port]`.
        registry: String,
        /// The request (`GET /v2/a/b/manifests/latest`).
        what: String,
        /// ureq's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry}: {what}: HTTP {status}{message}")]
    Status {
        /// `host[:port]`.
        registry: String,
        /// The request, naming the repository.
        what: String,
        /// The HTTP status.
        status: u16,
        /// `": <code>: <message>"` from the registry's error body, if any.
        message: String,
    },
    /// 401 even with the credentials given (or none were given).
    #[error(
        "unauthorized: authentication required for {repository} on {registry}{message} \
         (log in with `docker login {registry}`, or check the credentials)"
    )]
    Unauthorized {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// The registry's message.
        message: String,
    },
    /// 403: signed in, but not allowed.
    #[error("denied: {registry} refuses access to {repository}{message}")]
    Denied {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// The registry's message.
        message: String,
    },
    /// The token service refused the credentials or answered nonsense.
    #[error("get a token for {registry} from {realm}: {reason}")]
    Token {
        /// `host[:port]`.
        registry: String,
        /// The token endpoint.
        realm: String,
        /// Why.
        reason: String,
    },
    /// The manifest (tag or digest) is not in the repository.
    #[error("manifest for {reference} not found: manifest unknown")]
    ManifestUnknown {
        /// The reference as given.
        reference: String,
    },
    /// A Docker schema 1 manifest: refused as Docker 28 does.
    #[error(
        "{reference} is a Docker schema 1 image ({media_type}), which berth does not support; \
         rebuild or re-push it with a current client so that it has a schema 2 or OCI manifest"
    )]
    Schema1 {
        /// The reference.
        reference: String,
        /// The manifest's media type.
        media_type: String,
    },
    /// A manifest or index berth cannot use.
    #[error("{what} {digest} of {reference}: {reason}")]
    Invalid {
        /// The reference.
        reference: String,
        /// `manifest`, `index`, `layer`.
        what: &'static str,
        /// The blob.
        digest: String,
        /// Why.
        reason: String,
    },
    /// The index lists no manifest for the platform.
    #[error("no matching manifest for {platform} in the manifest list entries of {reference}")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// `os/arch[/variant]`.
        platform: String,
    },
    /// Bytes from the registry hash to something else than their digest.
    #[error(
        "{what} {expected} from {registry}/{repository} failed verification: \
         its content hashes to {actual}; nothing was stored"
    )]
    DigestMismatch {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// What was fetched.
        what: &'static str,
        /// The digest asked for.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// More bytes than the descriptor's size, or a body that keeps breaking off.
    #[error("{what} {digest} from {registry}/{repository}: {reason}")]
    Download {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// What was fetched.
        what: &'static str,
        /// The blob.
        digest: String,
        /// Why.
        reason: String,
    },
    /// The local image is not whole (an index with platforms never pulled).
    #[error("push {reference}: {reason}")]
    Push {
        /// The reference being pushed.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The TLS setup for a registry (certs.d) is broken.
    #[error("TLS for {registry}: {reason}")]
    Tls {
        /// `host[:port]`.
        registry: String,
        /// Which file and what is wrong with it.
        reason: String,
    },
    /// Credentials could not be read (config.json, a helper, X-Registry-Auth).
    #[error("credentials: {0}")]
    Credentials(String),
    /// The caller cancelled the operation.
    #[error("cancelled")]
    Cancelled,
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl From<ContentError> for ClientError {
    fn from(e: ContentError) -> Self {
        ClientError::Store(e.into())
    }
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }
}

/// `": CODE: message"` from a distribution error body, or the start of a
/// body that is not one; empty for an empty body.
pub(crate) fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body)
        && let Some(first) = e.errors.first()
    {
        return format!(": {}: {}", first.code, first.message);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        let cut: String = text.chars().take(200).collect();
        format!(": {cut}")
    }
}
