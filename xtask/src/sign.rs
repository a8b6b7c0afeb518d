//! The release signing key: loaded from a file (`--key`) or from the
//! environment (`COCOON_RELEASE_KEY`, for a CI secret), decrypted with
//! `COCOON_RELEASE_KEY_PASSWORD` when it is password-protected (or a prompt
//! on a terminal). The key's bytes never reach an error message or a log:
//! [`SigningKey`]'s `Debug` prints only the key ID, and errors from the
//! `minisign` crate are about the format, never the contents.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use cocoon_release::keys::{KeyId, TrustedKey};

pub const KEY_ENV: &str = "COCOON_RELEASE_KEY";
pub const PASSWORD_ENV: &str = "COCOON_RELEASE_KEY_PASSWORD";

pub struct SigningKey {
    secret: minisign::SecretKey,
    public: minisign::PublicKey,
    pub id: KeyId,
    /// Where the key came from (a path or the variable's name), for messages.
    pub origin: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({} from {}, secret withheld)",
            self.id, self.origin
        )
    }
}

impl SigningKey {
    /// `--key FILE` if given, else `$COCOON_RELEASE_KEY`.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let (text, origin) = match file {
            Some(path) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the signing key {}", path.display()))?,
                path.display().to_string(),
            ),
            None => match std::env::var(KEY_ENV) {
                Ok(v) if !v.trim().is_empty() => (v, format!("${KEY_ENV}")),
                _ => bail!(
                    "no signing key: pass --key FILE (a minisign secret key) or set {KEY_ENV} to its contents"
                ),
            },
        };
        let password = std::env::var(PASSWORD_ENV).ok();
        // The crate prompts on the terminal when given no password.
        Self::from_text(&text, &origin, password, std::io::stdin().is_terminal())
    }

    /// Opens a secret key file's text; `password` for a protected key, or
    /// a terminal prompt when `may_prompt`.
    pub fn from_text(
        text: &str,
        origin: &str,
        password: Option<String>,
        may_prompt: bool,
    ) -> Result<Self> {
        let sk_box = minisign::SecretKeyBox::from_string(text)
            .map_err(|_| anyhow::anyhow!("{origin}: not a minisign secret key"))?;
        let secret = match minisign::SecretKey::from_unencrypted_box(sk_box.clone()) {
            Ok(sk) => sk,
            // The crate refuses the unencrypted keys minisign 0.11 writes
            // with -W (their checksum does not match its own): say so
            // rather than ask for a password they do not have.
            Err(e) if e.to_string().contains("Corrupted") => bail!(
                "{origin}: the minisign crate cannot open this unencrypted key ({e}); \
                 give it a password with `minisign -C -s KEY` and set {PASSWORD_ENV}"
            ),
            Err(_) => {
                let password = match password {
                    Some(p) => Some(p),
                    None if may_prompt => None,
                    None => bail!(
                        "{origin}: the key is password-protected (or not a minisign key); set {PASSWORD_ENV}"
                    ),
                };
                minisign::SecretKey::from_box(sk_box, password)
                    .map_err(|e| anyhow::anyhow!("{origin}: cannot open the key: {e}"))?
            }
        };
        let public = minisign::PublicKey::from_secret_key(&secret)
            .map_err(|_| anyhow::anyhow!("{origin}: not a usable minisign key"))?;
        let id = TrustedKey::parse(&public.to_base64(), origin)
            .map_err(anyhow::Error::msg)?
            .id;
        Ok(SigningKey {
            secret,
            public,
            id,
            origin: origin.to_string(),
        })
    }

    /// The public half, as a key the release's own check can trust.
    pub fn trusted_key(&self) -> Result<TrustedKey> {
        TrustedKey::parse(&self.public.to_base64(), &self.origin).map_err(anyhow::Error::msg)
    }

    /// A `.minisig` over `data` with `trusted_comment`.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String> {
        let untrusted = format!("signature from cocoon release key {}", self.id);
        let sig = minisign::sign(
            Some(&self.public),
            &self.secret,
            data,
            Some(trusted_comment),
            Some(&untrusted),
        )
        .map_err(|e| anyhow::anyhow!("signing with key {}: {e}", self.id))?;
        Ok(sig.into_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_release::keys::Keyring;

    /// A password-protected key as the `minisign` crate writes it (the same
    /// format as the CLI's), and its public key file.
    fn encrypted_key(password: &str) -> (String, String) {
        let kp = minisign::KeyPair::generate_encrypted_keypair(Some(password.into())).unwrap();
        (
            kp.sk.to_box(None).unwrap().to_string(),
            kp.pk.to_box().unwrap().to_string(),
        )
    }

    #[test]
    fn a_protected_key_signs_what_the_verifier_accepts_and_never_shows_itself() {
        let (secret, public) = encrypted_key("s3cret pass");
        let key =
            SigningKey::from_text(&secret, "k.key", Some("s3cret pass".into()), false).unwrap();
        let comment = format!("cocoon 1.0 commit {} profiles cpu", "a".repeat(40));
        let sig = key.sign(b"data", &comment).unwrap();
        let mut ring = Keyring::default();
        ring.add(TrustedKey::parse(&public, "k.pub").unwrap())
            .unwrap();
        let verified = cocoon_release::signature::verify(&ring, b"data", &sig).unwrap();
        assert_eq!(verified.name.trusted_comment(), comment);
        assert!(cocoon_release::signature::verify(&ring, b"datA", &sig).is_err());
        assert_eq!(key.id, TrustedKey::parse(&public, "k.pub").unwrap().id);
        let shown = format!("{key:?}");
        let secret_line = secret.lines().nth(1).unwrap();
        assert!(
            !shown.contains(secret_line) && !shown.contains("s3cret"),
            "{shown}"
        );

        let wrong = SigningKey::from_text(&secret, "k.key", Some("nope".into()), false)
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("k.key") && !wrong.contains(secret_line),
            "{wrong}"
        );
        let missing = SigningKey::from_text(&secret, "k.key", None, false)
            .unwrap_err()
            .to_string();
        assert!(missing.contains(PASSWORD_ENV), "{missing}");
        assert!(SigningKey::from_text("garbage", "g", None, false).is_err());
    }
}
