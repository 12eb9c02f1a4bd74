//! Repository names and tags, checked with berth-image's reference grammar.

use std::fmt;

use berth_image::reference::Reference;

/// Why a repository name or tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a repository path of lowercase components.
    #[error("invalid repository name {0:?}")]
    Repository(String),
    /// Not a tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
    #[error("invalid tag {0:?}")]
    Tag(String),
}

/// A valid repository name: `library/busybox`, `a/b/c`.
///
/// Components are lowercase letters and digits joined by `.`, `_`, `__` or
/// dashes, so none starts with `_` or `.`: a name never collides with the
/// storage's `_manifests`/`_layers` folders and never climbs out with `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Checks `name` against the distribution grammar (at most 255 bytes).
    pub fn new(name: &str) -> Result<Self, NameError> {
        let bad = || NameError::Repository(name.to_owned());
        // A host-qualified reference keeps the path exactly as given.
        let parsed =
            Reference::parse_normalized(&format!("localhost/{name}")).map_err(|_| bad())?;
        if parsed.path() != name || parsed.tag() != Some("latest") || parsed.digest().is_some() {
            return Err(bad());
        }
        Ok(RepoName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a tag.
pub fn check_tag(tag: &str) -> Result<(), NameError> {
    match Reference::parse_normalized(&format!("localhost/x:{tag}")) {
        Ok(r) if r.tag() == Some(tag) => Ok(()),
        _ => Err(NameError::Tag(tag.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a/b/c", "a-b.c__d/e_f", "x1/2y"] {
            assert_eq!(RepoName::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "_a",
            "a/_manifests",
            "..",
            "a/../b",
            "a:b",
            "a@b",
            "a b",
            ".a",
        ] {
            assert!(RepoName::new(bad).is_err(), "{bad:?}");
        }
        assert!(RepoName::new(&"a".repeat(300)).is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d"] {
            check_tag(ok).unwrap();
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"t".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }
}
