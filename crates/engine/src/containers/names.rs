//! Container names and ids: validation, generated names, random ids.

use std::io::Read;

use crate::error::EngineError;

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a `/` in front is allowed).
pub fn validate(name: &str) -> Result<String, EngineError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let ok = bare.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(EngineError::InvalidArgument(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(bare.to_owned())
}

const LEFT: &[&str] = &[
    "brave", "calm", "clever", "eager", "fond", "gentle", "happy", "jolly", "keen", "kind",
    "lucid", "merry", "nimble", "proud", "quiet", "sharp", "steady", "swift", "tender", "witty",
    "bold", "bright", "cosmic", "crisp", "dazzling", "elated", "fervent", "gallant", "hardy",
    "lively", "mellow", "noble", "patient", "plucky", "serene", "sturdy", "vivid", "wise",
];

const RIGHT: &[&str] = &[
    "anchor",
    "barge",
    "beacon",
    "buoy",
    "canal",
    "cargo",
    "compass",
    "current",
    "dock",
    "ferry",
    "fjord",
    "galley",
    "harbor",
    "hull",
    "jetty",
    "keel",
    "lagoon",
    "lantern",
    "marina",
    "mast",
    "mooring",
    "pier",
    "quay",
    "reef",
    "rudder",
    "sail",
    "schooner",
    "sextant",
    "skiff",
    "sloop",
    "tide",
    "tugboat",
    "wharf",
    "yacht",
    "lighthouse",
    "cove",
    "estuary",
    "inlet",
];

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], EngineError> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| EngineError::io("read /dev/urandom", e))?;
    Ok(b)
}

/// A new 64-hex id that is not all digits (Docker avoids those: they
/// would read as numbers in some places).
pub fn new_id() -> Result<String, EngineError> {
    loop {
        let b: [u8; 32] = random_bytes()?;
        let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
        if !id[..12].bytes().all(|c| c.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// A generated `adjective_noun` name; `attempt` > 0 adds a digit.
pub fn generate(attempt: u32) -> Result<String, EngineError> {
    let b: [u8; 4] = random_bytes()?;
    let l = LEFT[usize::from(b[0]) % LEFT.len()];
    let r = RIGHT[usize::from(b[1]) % RIGHT.len()];
    Ok(if attempt == 0 {
        format!("{l}_{r}")
    } else {
        format!("{l}_{r}{}", u16::from_le_bytes([b[2], b[3]]) % 10)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert_eq!(validate("/web").ok().as_deref(), Some("web"));
        assert!(validate("a").is_err());
        assert!(validate("-x").is_err());
        assert!(validate("a b").is_err());
        assert!(validate("a/b").is_err());
        assert_eq!(validate("a.b-c_1").ok().as_deref(), Some("a.b-c_1"));
        let n = generate(0).expect("name");
        assert!(validate(&n).is_ok(), "{n}");
        let id = new_id().expect("id");
        assert_eq!(id.len(), 64);
    }
}
