//! The signature over `SHA256SUMS` (minisign format) and its trusted
//! comment, which names the release: `cocoon VERSION commit COMMIT profiles
//! P1,P2`. The comment is covered by the signature (minisign's "global"
//! signature), so editing it breaks verification.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::keys::{KeyId, Keyring};

/// What a release's signature says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseName {
    pub version: String,
    pub commit: String,
    pub profiles: Vec<String>,
}

impl ReleaseName {
    pub fn trusted_comment(&self) -> String {
        format!(
            "cocoon {} commit {} profiles {}",
            self.version,
            self.commit,
            self.profiles.join(",")
        )
    }

    pub fn parse(comment: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "trusted comment {comment:?} is not `cocoon VERSION commit COMMIT profiles P,...`"
            )
        };
        let words: Vec<&str> = comment.split(' ').collect();
        let ["cocoon", version, "commit", commit, "profiles", profiles] = words[..] else {
            return Err(bad());
        };
        check_version(version)?;
        let hex40 = commit.len() == 40
            && commit
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex40 {
            return Err(bad());
        }
        let profiles: Vec<String> = profiles.split(',').map(str::to_string).collect();
        let repeated = profiles
            .iter()
            .enumerate()
            .any(|(i, p)| profiles[..i].contains(p));
        if repeated || profiles.iter().any(|p| !plain_name(p)) {
            return Err(bad());
        }
        Ok(ReleaseName {
            version: version.to_string(),
            commit: commit.to_string(),
            profiles,
        })
    }
}

/// A release version: what goes after `cocoon-` in the folder name.
pub fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+_".contains(&b));
    if !ok {
        return Err(format!(
            "version {version:?}: use letters, digits and . - + _ (like 0.1.0 or 1.0.0-rc.1)"
        ));
    }
    Ok(())
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key_id: KeyId,
    pub key_origin: String,
    pub name: ReleaseName,
}

/// The key ID a minisign signature names (its second line, bytes 2..10).
fn signature_key_id(sig_text: &str) -> Option<KeyId> {
    let line = sig_text.lines().nth(1)?;
    let bytes = STANDARD.decode(line.trim()).ok()?;
    Some(KeyId(bytes.get(2..10)?.try_into().ok()?))
}

/// Checks `sig_text` (a `.minisig` file) over `data` with a trusted key.
/// The error says why, in words a provider can act on.
pub fn verify(keyring: &Keyring, data: &[u8], sig_text: &str) -> Result<Verified, String> {
    let sig = minisign_verify::Signature::decode(sig_text)
        .map_err(|e| format!("not a minisign signature: {e}"))?;
    let key_id = signature_key_id(sig_text).ok_or("not a minisign signature")?;
    if let Some(reason) = keyring.revocation(key_id) {
        return Err(format!(
            "signed with key ID {key_id}, which is revoked ({reason})"
        ));
    }
    let Some(key) = keyring.get(key_id) else {
        let trusted: Vec<String> = keyring.trusted().iter().map(|k| k.id.to_string()).collect();
        return Err(format!(
            "signed with key ID {key_id}, which is not trusted (trusted: {}); \
             pass --pubkey FILE to trust another key",
            if trusted.is_empty() {
                "none".to_string()
            } else {
                trusted.join(", ")
            }
        ));
    };
    // Legacy (non-prehashed) signatures are refused: minisign has made
    // prehashed ones by default since 0.8.
    key.minisign_key().verify(data, &sig, false).map_err(|e| {
        format!(
            "the signature by key ID {key_id} does not verify ({e}): SHA256SUMS or the \
             signature's trusted comment was changed after signing"
        )
    })?;
    let name = ReleaseName::parse(sig.trusted_comment())?;
    Ok(Verified {
        key_id,
        key_origin: key.origin.clone(),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_comment_round_trip() {
        let name = ReleaseName {
            version: "1.2.3-rc.1".into(),
            commit: "a".repeat(40),
            profiles: vec!["cpu".into(), "gpu".into()],
        };
        let c = name.trusted_comment();
        assert_eq!(
            c,
            format!(
                "cocoon 1.2.3-rc.1 commit {} profiles cpu,gpu",
                "a".repeat(40)
            )
        );
        assert_eq!(ReleaseName::parse(&c).unwrap(), name);
    }

    #[test]
    fn rejects_other_comments() {
        let c = "a".repeat(40);
        for bad in [
            "timestamp:1700000000".to_string(),
            format!("cocoon 1.0 commit {c} profiles cpu extra"),
            format!("cocoon 1.0 commit {} profiles cpu", "A".repeat(40)),
            format!("cocoon ../x commit {c} profiles cpu"),
            format!("cocoon 1.0 commit {c} profiles ../cpu"),
            format!("cocoon 1.0 commit {c} profiles "),
            format!("cocoon 1.0 commit {c} profiles cpu,cpu"),
        ] {
            assert!(ReleaseName::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        for ok in ["0.1.0", "1.0.0-rc.1", "2026.11+build_3"] {
            check_version(ok).unwrap();
        }
        for bad in ["", "-1", "a/b", "1 0", ".", "..", "v\n"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }
}
