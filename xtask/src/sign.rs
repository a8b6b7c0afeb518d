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
        let sk_box = minisign::SecretKeyBox::from_string(&text)
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
                let password = match std::env::var(PASSWORD_ENV) {
                    Ok(p) => Some(p),
                    // The crate prompts on the terminal when given no password.
                    Err(_) if std::io::stdin().is_terminal() => None,
                    Err(_) => bail!(
                        "{origin}: the key is password-protected (or not a minisign key); set {PASSWORD_ENV}"
                    ),
                };
                minisign::SecretKey::from_box(sk_box, password)
                    .map_err(|e| anyhow::anyhow!("{origin}: cannot open the key: {e}"))?
            }
        };
        let public = minisign::PublicKey::from_secret_key(&secret)
            .map_err(|_| anyhow::anyhow!("{origin}: not a usable minisign key"))?;
        let id = TrustedKey::parse(&public.to_base64(), &origin)
            .map_err(anyhow::Error::msg)?
            .id;
        Ok(SigningKey {
            secret,
            public,
            id,
            origin,
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
