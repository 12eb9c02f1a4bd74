use crate::error::RuntimeError;

/// The longest id accepted; longer ids are refused (runc has no limit, but a
/// state directory name must fit in a path component).
pub const MAX_ID_LEN: usize = 1024;

/// Check a container id: non-empty, at most [`MAX_ID_LEN`] bytes, made of
/// `[A-Za-z0-9_+.-]`, and not `.` or `..` (so it is always one safe path
/// component under the state root).
pub fn validate(id: &str) -> Result<(), RuntimeError> {
    let bad = |why: &str| RuntimeError::InvalidId {
        id: id.chars().take(64).collect(),
        reason: why.to_string(),
    };
    if id.is_empty() {
        return Err(bad("id is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(bad(&format!(
            "id is {} bytes long, the limit is {MAX_ID_LEN}",
            id.len()
        )));
    }
    if id == "." || id == ".." {
        return Err(bad("id must not be . or .."));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return Err(bad(&format!(
            "character {c:?} is not allowed (use letters, digits, _ + - .)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for id in ["a", "abc-123", "x_y.z+w", &"a".repeat(1024)] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_unsafe_ids() {
        for id in ["", ".", "..", "../x", "a/b", "a b", "é", &"a".repeat(1025)] {
            let err = validate(id).expect_err(id);
            assert!(err.to_string().contains("invalid container id"), "{err}");
        }
    }
}
