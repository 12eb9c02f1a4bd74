//! htpasswd files of bcrypt hashes (`htpasswd -B`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

/// Why an htpasswd file was refused.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// The file could not be read.
    #[error("read htpasswd {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line that is not `user:$2y$…`.
    #[error("htpasswd {path} line {line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Accounts and their bcrypt hashes.
#[derive(Debug, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of `user:password` pairs that verified: bcrypt costs tens of
    /// milliseconds, and clients send credentials on every request.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    /// Loads a file; only bcrypt hashes are accepted.
    pub fn load(path: &Path) -> Result<Self, HtpasswdError> {
        let text = fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| HtpasswdError::Line {
            path: path.to_owned(),
            line,
            reason,
        })
    }

    /// Parses htpasswd text; the error is a line number and reason.
    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or((i + 1, "no ':'"))?;
            if user.is_empty() {
                return Err((i + 1, "empty user name"));
            }
            if !["$2a$", "$2b$", "$2y$", "$2x$"]
                .iter()
                .any(|p| hash.starts_with(p))
            {
                return Err((i + 1, "not a bcrypt hash (use htpasswd -B)"));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether `password` is the account's.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.contains(&key) {
            return true;
        }
        drop(cache);
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            cache.insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_bcrypt_and_refuses_others() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# comment\n\nalice:{hash}\n")).unwrap();
        assert!(h.verify("alice", "s3cret"));
        assert!(h.verify("alice", "s3cret"), "cached");
        assert!(!h.verify("alice", "wrong"));
        assert!(!h.verify("bob", "s3cret"));
        assert_eq!(Htpasswd::parse("bob:{SHA}abc").unwrap_err().0, 1);
        assert_eq!(Htpasswd::parse("\nnocolon").unwrap_err().0, 2);
    }
}
