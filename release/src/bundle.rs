//! A release bundle on disk, and the check every consumer runs before it
//! trusts one byte of it.
//!
//! ```text
//! cocoon-VERSION/
//!   SHA256SUMS               sha256 of every other file (not the signature)
//!   SHA256SUMS.minisig       minisign signature over SHA256SUMS
//!   provenance.intoto.json   SLSA v1 provenance
//!   cpu/                     one folder per profile: the image as built
//!     vmlinuz initrd.img OVMF.fd cmdline manifest.json
//! ```
//!
//! [`Bundle::open`] checks, in this order, and stops at the first problem:
//! the signature (by a trusted, unrevoked key), the trusted comment, the
//! `SHA256SUMS` syntax, that the folder holds exactly the listed files (no
//! symlink, nothing added, nothing missing), every file's sha256, and that
//! each profile's manifest agrees with `SHA256SUMS` and with the signed
//! commit. Each error names the file and the reason.

use std::fs;
use std::path::{Path, PathBuf};

use cocoon_image::digest::Sha256;
use cocoon_image::manifest::{self, MANIFEST_FILE, Manifest};

use crate::keys::{KeyId, Keyring};
use crate::signature::{self, ReleaseName};
use crate::{provenance, sums};

pub const SIGNATURE_FILE: &str = "SHA256SUMS.minisig";

/// The files each profile folder holds, the manifest last.
pub const PROFILE_FILES: &[&str] = &[
    manifest::KERNEL,
    manifest::INITRD,
    manifest::FIRMWARE,
    manifest::CMDLINE,
    MANIFEST_FILE,
];

/// `cocoon-VERSION`: the bundle's folder name (and the tarball's stem).
pub fn folder_name(version: &str) -> String {
    format!("cocoon-{version}")
}

/// A refusal: the file it is about and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct BundleError {
    pub file: String,
    pub reason: String,
}

fn refuse(dir: &Path, rel: &str, reason: impl Into<String>) -> BundleError {
    BundleError {
        file: dir.join(rel).display().to_string(),
        reason: reason.into(),
    }
}

/// One profile of a bundle: its name and manifest (as read and hashed once).
#[derive(Debug, Clone)]
pub struct ProfileManifest {
    pub name: String,
    pub manifest: Manifest,
    pub manifest_sha256: Sha256,
}

/// A bundle whose signature and every checksum held.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub name: ReleaseName,
    pub key_id: KeyId,
    pub key_origin: String,
    pub profiles: Vec<ProfileManifest>,
    /// Every file under `SHA256SUMS`, sorted by path.
    pub files: Vec<(String, Sha256)>,
}

impl Bundle {
    pub fn open(dir: &Path, keyring: &Keyring) -> Result<Bundle, BundleError> {
        let read = |rel: &str, what: &str| {
            fs::read(dir.join(rel)).map_err(|e| refuse(dir, rel, format!("{what}: {e}")))
        };
        let sig = read(SIGNATURE_FILE, "no signature (an unsigned bundle)")?;
        let sums_bytes = read(sums::FILE, "cannot read the checksums")?;
        let sig = String::from_utf8(sig).map_err(|_| refuse(dir, SIGNATURE_FILE, "not text"))?;
        let verified = signature::verify(keyring, &sums_bytes, &sig)
            .map_err(|e| refuse(dir, SIGNATURE_FILE, e))?;
        let text =
            String::from_utf8(sums_bytes).map_err(|_| refuse(dir, sums::FILE, "not text"))?;
        let files = sums::parse(&text).map_err(|e| refuse(dir, sums::FILE, e))?;

        let mut on_disk = Vec::new();
        walk(dir, "", &mut on_disk)?;
        on_disk.sort();
        for rel in &on_disk {
            let signed = files.iter().any(|(p, _)| p == rel);
            if !signed && rel != sums::FILE && rel != SIGNATURE_FILE {
                return Err(refuse(
                    dir,
                    rel,
                    "not listed in SHA256SUMS (a file was added)",
                ));
            }
        }
        for (rel, expected) in &files {
            if !on_disk.contains(rel) {
                return Err(refuse(dir, rel, "listed in SHA256SUMS but missing"));
            }
            let (actual, _) =
                Sha256::of_file(&dir.join(rel)).map_err(|e| refuse(dir, rel, e.to_string()))?;
            if actual != *expected {
                return Err(refuse(
                    dir,
                    rel,
                    format!(
                        "sha256 {actual} differs from SHA256SUMS ({expected}): the file was changed"
                    ),
                ));
            }
        }

        let name = verified.name;
        let mut profiles = Vec::new();
        for profile in &name.profiles {
            profiles.push(open_profile(dir, profile, &name, &files)?);
        }
        // Nothing besides the profiles and the provenance may ride along
        // under the signature: a consumer should never meet a file it does
        // not know what to do with.
        for (rel, _) in &files {
            let known = rel == provenance::FILE
                || profiles.iter().any(|p| {
                    PROFILE_FILES
                        .iter()
                        .any(|f| *rel == format!("{}/{f}", p.name))
                });
            if !known {
                return Err(refuse(dir, rel, "is not part of a cocoon release bundle"));
            }
        }
        let prov = fs::read_to_string(dir.join(provenance::FILE))
            .map_err(|e| refuse(dir, provenance::FILE, format!("missing: {e}")))?;
        provenance::check(&prov, &provenance::subjects(&profiles))
            .map_err(|e| refuse(dir, provenance::FILE, e))?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            name,
            key_id: verified.key_id,
            key_origin: verified.key_origin,
            profiles,
            files,
        })
    }

    pub fn profile(&self, name: &str) -> Option<&ProfileManifest> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

/// Reads one profile's manifest (hashing the bytes it parses, so nothing
/// can swap the file between check and use) and checks it against the
/// checksums and the signed name.
fn open_profile(
    dir: &Path,
    profile: &str,
    name: &ReleaseName,
    files: &[(String, Sha256)],
) -> Result<ProfileManifest, BundleError> {
    let listed = |rel: &str| files.iter().find(|(p, _)| p == rel).map(|(_, s)| *s);
    let rel = format!("{profile}/{MANIFEST_FILE}");
    let bytes = fs::read(dir.join(&rel)).map_err(|e| refuse(dir, &rel, e.to_string()))?;
    let sha = Sha256::of(&bytes);
    if listed(&rel) != Some(sha) {
        return Err(refuse(
            dir,
            &rel,
            "differs from SHA256SUMS (changed while reading)",
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| refuse(dir, &rel, "not UTF-8"))?;
    let manifest = Manifest::parse(&text, &rel).map_err(|e| refuse(dir, &rel, e.to_string()))?;
    if manifest.profile != profile {
        return Err(refuse(
            dir,
            &rel,
            format!(
                "is the manifest of profile `{}`, not `{profile}`",
                manifest.profile
            ),
        ));
    }
    if manifest.git.commit != name.commit || manifest.git.dirty {
        return Err(refuse(
            dir,
            &rel,
            format!(
                "records commit {}{}, but the signature names commit {}",
                manifest.git.commit,
                if manifest.git.dirty {
                    " with uncommitted changes"
                } else {
                    ""
                },
                name.commit
            ),
        ));
    }
    for a in &manifest.artifacts {
        let a_rel = format!("{profile}/{}", a.name);
        match listed(&a_rel) {
            Some(s) if s == a.sha256 => {}
            Some(_) => {
                return Err(refuse(
                    dir,
                    &a_rel,
                    "SHA256SUMS and manifest.json disagree on it",
                ));
            }
            None => {
                return Err(refuse(
                    dir,
                    &a_rel,
                    "in manifest.json but not in SHA256SUMS",
                ));
            }
        }
    }
    Ok(ProfileManifest {
        name: profile.to_string(),
        manifest,
        manifest_sha256: sha,
    })
}

/// Every file under `dir`, as `/`-separated relative paths. Anything that is
/// not a plain file or folder (a symlink, a device) is refused: it could
/// make a checked name read other bytes.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), BundleError> {
    let dir = root.join(rel);
    let entries = fs::read_dir(&dir).map_err(|e| refuse(root, rel, e.to_string()))?;
    for e in entries {
        let e = e.map_err(|e| refuse(root, rel, e.to_string()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kind = e
            .file_type()
            .map_err(|e| refuse(root, &child, e.to_string()))?;
        if kind.is_dir() {
            walk(root, &child, out)?;
        } else if kind.is_file() {
            out.push(child);
        } else {
            return Err(refuse(root, &child, "not a regular file (a symlink?)"));
        }
    }
    Ok(())
}
