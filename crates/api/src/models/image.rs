//! Image models.

use std::collections::BTreeMap;

use serde::Serialize;

/// `GET /images/json` item.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Always "" (berth has no parent chains).
    pub parent_id: String,
    /// `busybox:latest`, …
    pub repo_tags: Vec<String>,
    /// `busybox@sha256:…`, …
    pub repo_digests: Vec<String>,
    /// Unix seconds of the config's `created`.
    pub created: i64,
    /// Sum of the layer sizes.
    pub size: u64,
    /// -1: not computed.
    pub shared_size: i64,
    /// Before API 1.44 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    /// The config's labels.
    pub labels: BTreeMap<String, String>,
    /// -1: not computed.
    pub containers: i64,
}

/// `GET /images/{name}/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Tags.
    pub repo_tags: Vec<String>,
    /// Digest references.
    pub repo_digests: Vec<String>,
    /// "".
    pub parent: String,
    /// Before API 1.45 only: the container a committed image came from
    /// (the config's legacy `container`), else "".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Before API 1.45 only: that container's config (the config's legacy
    /// `container_config`), every field present. docker-compose 1.x reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_config: Option<serde_json::Value>,
    /// The last history entry's comment.
    pub comment: String,
    /// RFC 3339 (nanoseconds) from the config, "" if it has none.
    pub created: String,
    /// "".
    pub docker_version: String,
    /// The config's author.
    pub author: String,
    /// The config's `config`, with every field Docker clients read.
    pub config: serde_json::Value,
    /// GOARCH.
    pub architecture: String,
    /// Variant, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `linux`.
    pub os: String,
    /// Sum of the layer sizes.
    pub size: u64,
    /// Before API 1.44 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    /// Storage driver data.
    pub graph_driver: GraphDriver,
    /// The layers by diffID.
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    /// `LastTagTime`.
    pub metadata: Metadata,
    /// The manifest's descriptor (API 1.48+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<Descriptor>,
}

/// `GraphDriver`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    /// `overlayfs`.
    pub name: String,
    /// Nothing yet.
    pub data: BTreeMap<String, String>,
}

/// `RootFS`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// diffIDs, bottom first.
    pub layers: Vec<String>,
}

/// `Metadata`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    /// When a name was last put on the image (RFC 3339).
    pub last_tag_time: String,
}

/// An OCI descriptor.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size.
    pub size: u64,
}

/// `GET /images/{name}/history` item.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// The image id for the newest entry, `<missing>` for the others.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The command.
    pub created_by: String,
    /// Tags, on the newest entry only.
    pub tags: Option<Vec<String>>,
    /// Layer size.
    pub size: u64,
    /// Comment.
    pub comment: String,
}

/// `DELETE /images/{name}` item.
#[derive(Debug, Clone, Serialize)]
pub enum DeleteItem {
    /// A name removed.
    Untagged(String),
    /// An image removed.
    Deleted(String),
}

/// `POST /images/prune`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneResponse {
    /// What was removed (null when nothing).
    pub images_deleted: Option<Vec<DeleteItem>>,
    /// Bytes freed.
    pub space_reclaimed: u64,
}
