//! The engine's error type and the kinds the API maps to HTTP statuses.

use berth_image::archive::ArchiveError;
use berth_image::store::StoreError;

/// What kind of failure an [`EngineError`] is; the API turns each kind into
/// one HTTP status, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object named does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The request is malformed (400).
    InvalidArgument,
    /// The feature does not exist yet (501).
    NotImplemented,
    /// Refused by policy (403: a predefined network, a network in use).
    Forbidden,
    /// Nothing to do: already in the asked state (304).
    NotModified,
    /// Anything else (500).
    Internal,
}

/// Why an engine operation failed. Messages follow Docker's texts where
/// clients match on them (`No such image: x`).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No image by this name or id.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// No container by this name or id.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// A path inside a container does not exist.
    #[error("{0}")]
    NotFoundPath(String),
    /// No network by this name or id.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// Refused by policy (the text is Docker's).
    #[error("{0}")]
    Forbidden(String),
    /// Setting up or tearing down container networking failed.
    #[error(transparent)]
    Net(Box<berth_net::NetError>),
    /// No exec instance by this id.
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    /// Already started, already stopped (Docker answers 304).
    #[error("{0}")]
    NotModified(String),
    /// The container's process could not be created (the runtime's words).
    #[error("failed to create task for container: {0}")]
    StartFailed(String),
    /// The shim refused a request.
    #[error("{0}")]
    ShimRefused(String),
    /// A failure of the engine itself.
    #[error("{0}")]
    Internal(String),
    /// The operation conflicts with the state (the text is Docker's).
    #[error("{0}")]
    Conflict(String),
    /// A parameter is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// Not implemented yet.
    #[error("{0}")]
    NotImplemented(String),
    /// No volume by this name (Docker's `get NAME: no such volume`).
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// The image store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An archive could not be loaded, saved or imported.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A registry operation (pull, push) failed.
    #[error(transparent)]
    Registry(Box<berth_registry::client::ClientError>),
    /// A file operation of the engine's own failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state database failed.
    #[error("state database: {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The database error.
        #[source]
        source: redb::Error,
    },
}

impl EngineError {
    /// The kind of failure, for the API's status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NoSuchImage(_)
            | EngineError::NoSuchContainer(_)
            | EngineError::NoSuchExec(_)
            | EngineError::NoSuchNetwork(_)
            | EngineError::NotFoundPath(_) => ErrorKind::NotFound,
            EngineError::Forbidden(_) => ErrorKind::Forbidden,
            EngineError::Net(e) => {
                use berth_net::NetError as N;
                use berth_net::ipam::IpamError as I;
                match e.as_ref() {
                    N::BadPortMapping { .. } | N::BadName { .. } => ErrorKind::InvalidArgument,
                    N::Ipam(I::SubnetOverlap { .. }) => ErrorKind::Forbidden,
                    N::Ipam(I::IpInUse { .. }) => ErrorKind::Conflict,
                    N::Ipam(I::Exhausted { .. } | I::PoolsExhausted { .. }) => ErrorKind::Internal,
                    N::Ipam(_) => ErrorKind::InvalidArgument,
                    _ => ErrorKind::Internal,
                }
            }
            EngineError::NotModified(_) => ErrorKind::NotModified,
            EngineError::Internal(_) => ErrorKind::Internal,
            // dockerd answers 400 for a process that cannot start.
            EngineError::StartFailed(_) => ErrorKind::InvalidArgument,
            EngineError::ShimRefused(_) => ErrorKind::Conflict,
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            EngineError::NotImplemented(_) => ErrorKind::NotImplemented,
            EngineError::Store(e) => store_kind(e),
            EngineError::Archive(e) => match e {
                ArchiveError::Invalid(_) | ArchiveError::Read(_) | ArchiveError::Blob { .. } => {
                    ErrorKind::InvalidArgument
                }
                ArchiveError::Store(e) => store_kind(e),
                _ => ErrorKind::Internal,
            },
            EngineError::Registry(e) => {
                use berth_registry::client::ClientError as C;
                match e.as_ref() {
                    C::ManifestUnknown { .. } | C::NoPlatform { .. } => ErrorKind::NotFound,
                    C::Reference(_) | C::Schema1 { .. } | C::Credentials(_) => {
                        ErrorKind::InvalidArgument
                    }
                    C::Store(e) => store_kind(e),
                    _ => ErrorKind::Internal,
                }
            }
            EngineError::NoSuchVolume(_) => ErrorKind::NotFound,
            EngineError::Io { .. } | EngineError::Db { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<berth_net::NetError> for EngineError {
    fn from(e: berth_net::NetError) -> Self {
        EngineError::Net(Box::new(e))
    }
}

impl From<berth_net::ipam::IpamError> for EngineError {
    fn from(e: berth_net::ipam::IpamError) -> Self {
        EngineError::Net(Box::new(e.into()))
    }
}

impl From<berth_registry::client::ClientError> for EngineError {
    fn from(e: berth_registry::client::ClientError) -> Self {
        EngineError::Registry(Box::new(e))
    }
}

fn store_kind(e: &StoreError) -> ErrorKind {
    match e {
        StoreError::NoSuchImage(_) => ErrorKind::NotFound,
        StoreError::Reference(_) => ErrorKind::InvalidArgument,
        StoreError::Unsupported { .. } | StoreError::NoPlatform { .. } => {
            ErrorKind::InvalidArgument
        }
        _ => ErrorKind::Internal,
    }
}
