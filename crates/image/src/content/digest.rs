//! Content digests: `sha256:<64 hex>` and `sha512:<128 hex>`.
//!
//! A [`Digest`] is always valid once built: a known algorithm and lowercase
//! hex of that algorithm's length. [`Digester`] computes one as bytes arrive.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use super::ContentError;

/// A digest algorithm the store accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default for OCI content.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// Every algorithm, in the order `list` walks them.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name used in digests and in `blobs/<alg>/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ContentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(invalid(s, "unsupported algorithm")),
        }
    }
}

/// A validated content digest, displayed as `<alg>:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from its parts, checking the hex is lowercase and of
    /// the algorithm's length.
    pub fn new(alg: Algorithm, hex: &str) -> Result<Self, ContentError> {
        if hex.len() != alg.hex_len() {
            return Err(invalid(&format!("{alg}:{hex}"), "wrong hex length"));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid(&format!("{alg}:{hex}"), "not lowercase hex"));
        }
        Ok(Digest {
            alg,
            hex: hex.to_owned(),
        })
    }

    /// The digest of `data`.
    pub fn of(alg: Algorithm, data: &[u8]) -> Self {
        let mut d = Digester::new(alg);
        d.update(data);
        d.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The lowercase hex part, without the `<alg>:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg, self.hex)
    }
}

impl FromStr for Digest {
    type Err = ContentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid(s, "missing algorithm prefix"))?;
        let alg = alg
            .parse::<Algorithm>()
            .map_err(|_| invalid(s, "unsupported algorithm"))?;
        Digest::new(alg, hex)
    }
}

fn invalid(value: &str, reason: &'static str) -> ContentError {
    ContentError::InvalidDigest {
        value: value.to_owned(),
        reason,
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// A running hash that yields a [`Digest`].
#[derive(Debug, Clone)]
pub struct Digester(Inner);

#[derive(Debug, Clone)]
enum Inner {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Digester {
    /// A fresh hash of `alg`.
    pub fn new(alg: Algorithm) -> Self {
        Digester(match alg {
            Algorithm::Sha256 => Inner::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Inner::Sha512(sha2::Sha512::new()),
        })
    }

    /// The algorithm being computed.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Inner::Sha256(_) => Algorithm::Sha256,
            Inner::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Inner::Sha256(h) => h.update(data),
            Inner::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (alg, hex) = match self.0 {
            Inner::Sha256(h) => (Algorithm::Sha256, hex_encode(&h.finalize())),
            Inner::Sha512(h) => (Algorithm::Sha512, hex_encode(&h.finalize())),
        };
        Digest { alg, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_sha256() {
        let d: Digest = EMPTY256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY256);
        assert_eq!(Digest::of(Algorithm::Sha256, b""), d);
    }

    #[test]
    fn sha512_of_abc() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(
            d.hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_invalid_digests() {
        let upper = EMPTY256.to_uppercase().replacen("SHA256", "sha256", 1);
        let cases = [
            (upper.as_str(), "not lowercase hex"),
            ("sha256:abc", "wrong hex length"),
            (&EMPTY256[..EMPTY256.len() - 1], "wrong hex length"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported algorithm",
            ),
            (
                "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "unsupported algorithm",
            ),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "missing algorithm prefix",
            ),
            (
                "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "wrong hex length",
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "not lowercase hex",
            ),
        ];
        for (input, want) in cases {
            match input.parse::<Digest>() {
                Err(ContentError::InvalidDigest { value, reason }) => {
                    assert_eq!(value, input);
                    assert_eq!(reason, want, "{input}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn hex_encode_is_lowercase() {
        assert_eq!(hex_encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
