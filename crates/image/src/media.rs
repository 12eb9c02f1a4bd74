//! Media types of image content, OCI and Docker, and what each one is.

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker manifest list (schema 2).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// What a media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OCI index or a Docker manifest list.
    Index,
    /// An OCI or Docker schema 2 image manifest.
    Manifest,
    /// An image config.
    Config,
    /// A layer that can be pulled and applied.
    Layer,
    /// A foreign or non-distributable layer (Windows base layers): refused.
    ForeignLayer,
    /// A Docker schema 1 manifest: refused, as Docker 28 does.
    Schema1,
    /// Anything else (artifacts, signatures, attestations).
    Other,
}

/// Classifies a media type, ignoring parameters (`; charset=…`).
pub fn kind(media_type: &str) -> Kind {
    let mt = media_type.split(';').next().unwrap_or("").trim();
    match mt {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Kind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        OCI_CONFIG | DOCKER_CONFIG => Kind::Config,
        OCI_LAYER | OCI_LAYER_GZIP | OCI_LAYER_ZSTD | DOCKER_LAYER | DOCKER_LAYER_GZIP => {
            Kind::Layer
        }
        "application/vnd.docker.distribution.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v1+prettyjws" => Kind::Schema1,
        _ if mt.starts_with("application/vnd.oci.image.layer.nondistributable.")
            || mt.starts_with("application/vnd.docker.image.rootfs.foreign.") =>
        {
            Kind::ForeignLayer
        }
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind(DOCKER_MANIFEST_LIST), Kind::Index);
        assert_eq!(
            kind("application/vnd.oci.image.manifest.v1+json; x=y"),
            Kind::Manifest
        );
        assert_eq!(kind(OCI_LAYER_ZSTD), Kind::Layer);
        assert_eq!(
            kind("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            Kind::ForeignLayer
        );
        assert_eq!(
            kind("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            Kind::ForeignLayer
        );
        assert_eq!(kind("application/vnd.in-toto+json"), Kind::Other);
    }
}
