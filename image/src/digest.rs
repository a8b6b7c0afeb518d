//! SHA-256 values: the one hash that names every input and artifact.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256 as Hasher};

/// A SHA-256 digest, written as 64 lowercase hex digits everywhere
/// (lock file, manifest, cache paths, messages).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn of(bytes: &[u8]) -> Self {
        Sha256(Hasher::digest(bytes).into())
    }

    /// Hashes everything `reader` yields; returns the digest and the length.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Self, u64)> {
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok((Sha256(hasher.finalize().into()), len))
    }

    pub fn of_file(path: &Path) -> io::Result<(Self, u64)> {
        Self::of_reader(File::open(path)?)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a SHA-256 value (64 lowercase hex digits)")]
pub struct ParseSha256Error(String);

impl FromStr for Sha256 {
    type Err = ParseSha256Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut out = [0u8; 32];
        if !lower || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(ParseSha256Error(s.to_string()));
        }
        Ok(Sha256(out))
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            Sha256::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_round_trip_and_rejects() {
        let h = Sha256::of(b"x");
        assert_eq!(h.to_hex().parse::<Sha256>().unwrap(), h);
        assert!("ABC".parse::<Sha256>().is_err());
        assert!(h.to_hex().to_uppercase().parse::<Sha256>().is_err());
        assert!(format!("{h}0").parse::<Sha256>().is_err());
    }

    #[test]
    fn reader_counts_length() {
        let (h, n) = Sha256::of_reader(&b"hello world"[..]).unwrap();
        assert_eq!(n, 11);
        assert_eq!(h, Sha256::of(b"hello world"));
    }
}
