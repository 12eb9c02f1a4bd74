//! Errors as the distribution spec's error bodies.
//!
//! Every failure a client sees is an [`ApiError`]: an HTTP status, one of the
//! spec's codes (oci-spec's [`ErrorCode`]) and a message naming the thing.
//! [`StorageError`](crate::storage::StorageError) maps onto it in exactly one
//! place, [`ApiError::from`].

use http::{HeaderName, HeaderValue, StatusCode};
use oci_spec::distribution::ErrorCode;

use crate::storage::StorageError;

/// An error answered to a client as `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The spec's error code.
    pub code: ErrorCode,
    /// A human readable message.
    pub message: String,
    /// Extra JSON for the client, if any.
    pub detail: Option<serde_json::Value>,
    /// Headers to add (`WWW-Authenticate`, `Range`, …).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with no detail or extra headers.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Adds a detail value.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400 DIGEST_INVALID.
    pub fn digest_invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, message)
    }

    /// 400 NAME_INVALID.
    pub fn name_invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, message)
    }

    /// 404 NAME_UNKNOWN.
    pub fn name_unknown(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            format!("repository {name} not known to registry"),
        )
        .with_detail(serde_json::json!({ "name": name }))
    }

    /// 405 UNSUPPORTED.
    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        )
    }

    /// 400 BLOB_UPLOAD_INVALID.
    pub fn upload_invalid(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BlobUploadInvalid,
            message,
        )
    }

    /// 404 for paths that are not API routes.
    pub fn not_found(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            format!("no route for {path}"),
        )
    }

    /// 500 for failures that are the registry's own.
    pub fn internal(message: impl Into<String>) -> Self {
        // The spec has no internal code; distribution answers UNKNOWN, which
        // oci-spec does not model, so the closest listed code is used.
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unsupported,
            message,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut info = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(detail) = &self.detail {
            info["detail"] = detail.clone();
        }
        serde_json::to_vec(&serde_json::json!({ "errors": [info] })).unwrap_or_default()
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        use StorageError as S;
        let message = e.to_string();
        match e {
            S::BlobUnknown(d) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::BlobUnknown, message)
                    .with_detail(serde_json::json!({ "digest": d.to_string() }))
            }
            S::ManifestUnknown { reference, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown, message)
                    .with_detail(serde_json::json!({ "reference": reference }))
            }
            S::ManifestInvalid { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
            }
            S::ManifestBlobUnknown { digest, .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ManifestBlobUnknown,
                message,
            )
            .with_detail(serde_json::json!({ "digest": digest.to_string() })),
            S::DigestMismatch { .. } | S::Digest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, message)
            }
            S::SizeMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::SizeInvalid, message)
            }
            S::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::SizeInvalid,
                message,
            ),
            S::NameUnknown(name) => ApiError::name_unknown(&name),
            S::UploadUnknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::BlobUploadUnknown, message)
            }
            S::UploadBusy(_) => ApiError::upload_invalid(message),
            S::RangeMismatch { offset, .. } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                message,
            )
            .with_header(
                http::header::RANGE,
                HeaderValue::from_str(&format!("0-{}", offset.saturating_sub(1)))
                    .unwrap_or(HeaderValue::from_static("0-0")),
            ),
            S::Locked(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unsupported,
                message,
            ),
            S::Io { .. } | S::Content(_) => ApiError::internal(message),
        }
    }
}
