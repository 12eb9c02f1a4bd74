//! Progress of a pull or push, event by event, in Docker's vocabulary so
//! that berthd can stream the JSON messages `docker pull`/`push` render.

use std::fmt;

/// What happened to one layer, or a message about the whole operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A line without a layer: "Pulling from library/busybox", "Digest: …".
    Message(String),
    /// Pull: the layer is queued.
    PullingFsLayer,
    /// Pull or push: waiting for a free download/upload slot.
    Waiting,
    /// Pull: bytes are arriving (`current`/`total`).
    Downloading,
    /// Pull: the download is whole and being verified.
    VerifyingChecksum,
    /// Pull: verified and committed to the content store.
    DownloadComplete,
    /// Pull: the layer was already in the content store.
    AlreadyExists,
    /// Pull: the layer is being unpacked into a snapshot (berthd, after
    /// the download, as dockerd does at pull time).
    Extracting,
    /// Pull: the layer is part of the stored image.
    PullComplete,
    /// A dropped connection is being retried (with a Range request).
    Retrying(u32),
    /// Push: the layer is about to be checked.
    Preparing,
    /// Push: bytes are leaving (`current`/`total`).
    Pushing,
    /// Push: uploaded.
    Pushed,
    /// Push: the registry already had it.
    LayerAlreadyExists,
    /// Push: mounted from another repository of the same registry.
    MountedFrom(String),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Message(m) => f.write_str(m),
            Status::PullingFsLayer => f.write_str("Pulling fs layer"),
            Status::Waiting => f.write_str("Waiting"),
            Status::Downloading => f.write_str("Downloading"),
            Status::VerifyingChecksum => f.write_str("Verifying Checksum"),
            Status::DownloadComplete => f.write_str("Download complete"),
            Status::AlreadyExists => f.write_str("Already exists"),
            Status::Extracting => f.write_str("Extracting"),
            Status::PullComplete => f.write_str("Pull complete"),
            Status::Retrying(n) => write!(f, "Retrying (attempt {n})"),
            Status::Preparing => f.write_str("Preparing"),
            Status::Pushing => f.write_str("Pushing"),
            Status::Pushed => f.write_str("Pushed"),
            Status::LayerAlreadyExists => f.write_str("Layer already exists"),
            Status::MountedFrom(repo) => write!(f, "Mounted from {repo}"),
        }
    }
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The layer's short id (12 hex digits of its digest), the tag for
    /// "Pulling from", or empty for a message about the whole operation.
    pub id: String,
    /// What happened.
    pub status: Status,
    /// Bytes done, for Downloading and Pushing.
    pub current: Option<u64>,
    /// Bytes in all.
    pub total: Option<u64>,
    /// Push's final `{"Tag","Digest","Size"}`.
    pub aux: Option<serde_json::Value>,
}

impl Progress {
    pub(crate) fn message(id: &str, text: impl Into<String>) -> Progress {
        Progress {
            id: id.to_owned(),
            status: Status::Message(text.into()),
            current: None,
            total: None,
            aux: None,
        }
    }

    /// An event about layer `id` (its short id).
    pub fn layer(id: &str, status: Status) -> Progress {
        Progress {
            id: id.to_owned(),
            status,
            current: None,
            total: None,
            aux: None,
        }
    }

    /// An event about layer `id` with a byte count (`current` of `total`).
    pub fn bytes(id: &str, status: Status, current: u64, total: u64) -> Progress {
        Progress {
            id: id.to_owned(),
            status,
            current: Some(current),
            total: Some(total),
            aux: None,
        }
    }

    /// The JSON message dockerd streams for this event
    /// (`{"status","progressDetail","id"}`, or `{"aux"}`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "progressDetail": {} });
        if let Some(aux) = &self.aux {
            v["aux"] = aux.clone();
            return v;
        }
        v["status"] = self.status.to_string().into();
        if !self.id.is_empty() {
            v["id"] = self.id.clone().into();
        }
        if let (Some(c), Some(t)) = (self.current, self.total) {
            v["progressDetail"] = serde_json::json!({ "current": c, "total": t });
        }
        v
    }
}

impl fmt::Display for Progress {
    /// A plain text line, as the command-line front prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(aux) = &self.aux {
            return write!(f, "{aux}");
        }
        if !self.id.is_empty() {
            write!(f, "{}: ", self.id)?;
        }
        write!(f, "{}", self.status)?;
        if let (Some(c), Some(t)) = (self.current, self.total) {
            write!(f, " {c}/{t}")?;
        }
        Ok(())
    }
}

/// Where progress goes: called from the download threads too.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

/// The short id Docker shows for a blob: 12 hex digits of its digest.
pub fn short_id(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}
