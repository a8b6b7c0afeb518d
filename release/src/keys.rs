//! The keys a release may be signed with: the ones compiled in from
//! `release/keys/`, any the caller adds (`--pubkey`), minus the revoked.
//!
//! Keys are minisign public keys (Ed25519). A key is named by its key ID,
//! the 8 bytes minisign stores beside the key and in every signature; we
//! print it the way the minisign tool does (16 uppercase hex digits of the
//! little-endian number), so IDs in messages match `minisign`'s own.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_keys.rs"));
}

/// A minisign key ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl std::str::FromStr for KeyId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{s}` is not a key ID (16 hex digits)"));
        }
        let n = u64::from_str_radix(s, 16).map_err(|e| e.to_string())?;
        Ok(KeyId(n.to_le_bytes()))
    }
}

/// Ed25519 (`Ed`) public keys are 42 bytes: algorithm, key ID, key.
const PUBLIC_KEY_LEN: usize = 42;

/// One trusted public key.
#[derive(Clone)]
pub struct TrustedKey {
    pub id: KeyId,
    /// Where it came from (`release/keys/NAME.pub` or a file path).
    pub origin: String,
    key: minisign_verify::PublicKey,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({} from {})", self.id, self.origin)
    }
}

impl TrustedKey {
    /// Parses a minisign public key file (an untrusted comment line, then
    /// the base64 key) or a bare base64 key.
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let b64 = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| format!("{origin}: no public key in it"))?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| format!("{origin}: not a minisign public key (bad base64)"))?;
        if bytes.len() != PUBLIC_KEY_LEN || &bytes[..2] != b"Ed" {
            return Err(format!(
                "{origin}: not a minisign Ed25519 public key ({} bytes)",
                bytes.len()
            ));
        }
        let key = minisign_verify::PublicKey::from_base64(b64)
            .map_err(|e| format!("{origin}: not a minisign public key: {e}"))?;
        Ok(TrustedKey {
            id: KeyId(bytes[2..10].try_into().unwrap()),
            origin: origin.to_string(),
            key,
        })
    }

    pub fn minisign_key(&self) -> &minisign_verify::PublicKey {
        &self.key
    }
}

/// Trusted keys and revoked key IDs.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    trusted: Vec<TrustedKey>,
    /// `(id, reason)`.
    revoked: Vec<(KeyId, String)>,
}

impl Keyring {
    /// The keys compiled in from `release/keys/`.
    pub fn builtin() -> Result<Self, String> {
        Self::from_texts(builtin::TRUSTED, builtin::REVOKED)
    }

    /// The built-in keys plus the public key files in `extra` (`--pubkey`).
    pub fn builtin_and(extra: &[std::path::PathBuf]) -> Result<Self, String> {
        let mut ring = Self::builtin()?;
        for path in extra {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the public key {origin}: {e}"))?;
            ring.add(TrustedKey::parse(&text, &origin)?)?;
        }
        Ok(ring)
    }

    /// A keyring from `(file name, public key file)` pairs and the text of
    /// a revoked list (`KEY_ID reason` lines, `#` comments).
    pub fn from_texts(trusted: &[(&str, &str)], revoked: &str) -> Result<Self, String> {
        let mut ring = Keyring::default();
        for (n, line) in revoked.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let id: KeyId = id
                .parse()
                .map_err(|e| format!("release/keys/revoked line {}: {e}", n + 1))?;
            ring.revoked.push((id, reason.trim().to_string()));
        }
        for (name, text) in trusted {
            let key = TrustedKey::parse(text, &format!("release/keys/{name}"))?;
            // A revoked key stays in the folder for the record; it is
            // simply not trusted.
            if ring.revocation(key.id).is_none() {
                ring.trusted.push(key);
            }
        }
        Ok(ring)
    }

    /// Trusts one more key (`--pubkey`); a revoked key is an error, not a
    /// silent no-op, so the caller learns why its key does not work.
    pub fn add(&mut self, key: TrustedKey) -> Result<(), String> {
        if let Some(reason) = self.revocation(key.id) {
            return Err(format!(
                "{}: key ID {} is revoked ({reason}); it cannot be trusted",
                key.origin, key.id
            ));
        }
        if !self.trusted.iter().any(|k| k.id == key.id) {
            self.trusted.push(key);
        }
        Ok(())
    }

    /// Why `id` was revoked, if it was.
    pub fn revocation(&self, id: KeyId) -> Option<&str> {
        self.revoked.iter().find(|(r, _)| *r == id).map(|(_, why)| {
            if why.is_empty() {
                "revoked"
            } else {
                why.as_str()
            }
        })
    }

    pub fn get(&self, id: KeyId) -> Option<&TrustedKey> {
        self.trusted.iter().find(|k| k.id == id)
    }

    pub fn trusted(&self) -> &[TrustedKey] {
        &self.trusted
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A public key file for an arbitrary key ID (the key bytes are never
    /// used to verify here).
    pub fn fake_pub(id: u64) -> String {
        let mut bytes = b"Ed".to_vec();
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&[7u8; 32]);
        format!(
            "untrusted comment: minisign public key {id:016X}\n{}\n",
            STANDARD.encode(bytes)
        )
    }

    #[test]
    fn ids_print_like_minisign_and_parse_back() {
        let key = TrustedKey::parse(&fake_pub(0x0123_4567_89AB_CDEF), "t").unwrap();
        assert_eq!(key.id.to_string(), "0123456789ABCDEF");
        assert_eq!("0123456789ABCDEF".parse::<KeyId>().unwrap(), key.id);
        assert!("0123".parse::<KeyId>().is_err());
    }

    #[test]
    fn several_keys_and_a_revoked_one() {
        let (a, b, c) = (fake_pub(1), fake_pub(2), fake_pub(3));
        let revoked = "# comment\n0000000000000002  leaked in 2026\n";
        let mut ring = Keyring::from_texts(&[("a.pub", &a), ("b.pub", &b)], revoked).unwrap();
        assert!(ring.get(KeyId(1u64.to_le_bytes())).is_some());
        assert!(ring.get(KeyId(2u64.to_le_bytes())).is_none(), "revoked");
        assert_eq!(
            ring.revocation(KeyId(2u64.to_le_bytes())),
            Some("leaked in 2026")
        );
        ring.add(TrustedKey::parse(&c, "c.pub").unwrap()).unwrap();
        assert_eq!(ring.trusted().len(), 2);
        let err = ring
            .add(TrustedKey::parse(&b, "b.pub").unwrap())
            .unwrap_err();
        assert!(err.contains("b.pub") && err.contains("revoked"), "{err}");
    }

    #[test]
    fn rejects_garbage_keys_and_lists() {
        assert!(TrustedKey::parse("", "x").is_err());
        assert!(TrustedKey::parse("untrusted comment: x\nnot base64!\n", "x").is_err());
        assert!(TrustedKey::parse("untrusted comment: x\nRWQ=\n", "x").is_err());
        assert!(Keyring::from_texts(&[], "nothex reason\n").is_err());
    }

    #[test]
    fn the_builtin_keyring_loads() {
        Keyring::builtin().unwrap();
    }
}
