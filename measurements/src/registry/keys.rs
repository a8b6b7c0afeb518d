//! The wallet's secret key: a 24-word TON mnemonic or a 32-byte Ed25519
//! seed in hex, read from a file (mode 0600 or stricter) or from an
//! environment variable. The key's text never appears in an error, a log
//! or a `Debug` output.

use std::fmt;
use std::path::Path;

use tonlib_core::wallet::mnemonic::{KeyPair, Mnemonic};

use super::RegistryError;

/// An Ed25519 key pair whose `Debug` shows only the public key.
#[derive(Clone)]
pub struct SecretKey(KeyPair);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", hex::encode(&self.0.public_key))
    }
}

impl SecretKey {
    /// The key pair whose seed is these 32 bytes.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let kp = nacl::sign::generate_keypair(&seed);
        Self(KeyPair {
            public_key: kp.pkey.to_vec(),
            secret_key: kp.skey.to_vec(),
        })
    }

    /// Parses the text of a key file or variable; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RegistryError> {
        let err = |message: &str| RegistryError::Key {
            origin: origin.to_string(),
            message: message.to_string(),
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] => Err(err("is empty")),
            [one] if one.len() == 64 => {
                let bytes = hex::decode(one).map_err(|_| {
                    err("is 64 characters but not hex; expected a 32-byte Ed25519 seed in hex")
                })?;
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&bytes);
                Ok(Self::from_seed(seed))
            }
            w if w.len() == 24 => {
                let mnemonic = Mnemonic::from_str(&w.join(" "), &None).map_err(|_| {
                    err("is not a valid 24-word TON mnemonic (unknown word or bad checksum)")
                })?;
                let kp = mnemonic
                    .to_key_pair()
                    .map_err(|_| err("could not derive a key from the mnemonic"))?;
                Ok(Self(kp))
            }
            _ => Err(err(
                "is neither a 24-word TON mnemonic nor 64 hex digits (a 32-byte Ed25519 seed)",
            )),
        }
    }

    /// Reads the key from `file` when given, otherwise from the variable
    /// `env_var`. A file others can read is refused.
    pub fn load(file: Option<&Path>, env_var: &str) -> Result<Self, RegistryError> {
        if let Some(path) = file {
            let origin = format!("file {}", path.display());
            check_private(path, &origin)?;
            let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Key {
                origin: origin.clone(),
                message: format!("cannot be read: {e}"),
            })?;
            return Self::parse(&text, &origin);
        }
        match std::env::var(env_var) {
            Ok(text) => Self::parse(&text, &format!("in ${env_var}")),
            Err(_) => Err(RegistryError::Key {
                origin: format!("(--key-file or ${env_var})"),
                message: format!(
                    "is not given: pass --key-file FILE (mode 0600) or set {env_var} \
                     to a 24-word mnemonic or a 64-hex-digit seed"
                ),
            }),
        }
    }

    pub fn key_pair(&self) -> &KeyPair {
        &self.0
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(&self.0.public_key)
    }
}

#[cfg(unix)]
fn check_private(path: &Path, origin: &str) -> Result<(), RegistryError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| RegistryError::Key {
        origin: origin.to_string(),
        message: format!("cannot be read: {e}"),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(RegistryError::Key {
            origin: origin.to_string(),
            message: format!(
                "is readable by others (mode {mode:o}); run `chmod 600 {}`",
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &str) -> Result<(), RegistryError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    #[test]
    fn hex_seed_gives_the_rfc8032_public_key() {
        // RFC 8032, section 7.1, test 1.
        let k = SecretKey::parse(SEED, "test").unwrap();
        assert_eq!(
            k.public_key_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn mnemonic_gives_the_known_wallet() {
        // The mnemonic tonlib-core's own tests derive a v4r2 wallet from.
        let words = "fancy carpet hello mandate penalty trial consider property top vicious exit \
                     rebuild tragic profit urban major total month holiday sudden rib gather media vicious";
        let k = SecretKey::parse(&words.replace(' ', "\n"), "test").unwrap();
        let w = crate::registry::wallet::Wallet::new(k).unwrap();
        assert_eq!(
            w.address().to_base64_url(),
            "EQCDM_QGggZ3qMa_f3lRPk4_qLDnLTqdi6OkMAV2NB9r5TG3"
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let bad = format!("{}zz", &SEED[..62]);
        let e = SecretKey::parse(&bad, "test").unwrap_err().to_string();
        assert!(!e.contains(&bad[..20]), "{e}");
        let k = SecretKey::parse(SEED, "test").unwrap();
        assert!(!format!("{k:?}").contains(SEED));
        assert!(SecretKey::parse("one two three", "test").is_err());
    }

    #[test]
    fn world_readable_key_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, SEED).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretKey::load(Some(&path), "UNUSED_VAR")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SecretKey::load(Some(&path), "UNUSED_VAR").is_ok());
    }
}
