//! `boot --release DIR`: the signed bundle is checked (signature by a
//! trusted key, every checksum, no file added or missing) before anything
//! else, and the image to boot is the named profile's folder in it, with
//! the manifest as it was read and hashed during that check.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::manifest::Manifest;
use cocoon_release::bundle::Bundle;
use cocoon_release::keys::Keyring;

pub struct Verified {
    pub image_dir: PathBuf,
    pub manifest: Manifest,
    pub summary: String,
    /// For `--json`: version, commit, key ID.
    pub fields: serde_json::Value,
}

pub fn open(dir: &Path, profile: Option<&str>, pubkeys: &[PathBuf]) -> Result<Verified> {
    let keyring = Keyring::builtin_and(pubkeys).map_err(anyhow::Error::msg)?;
    let bundle = Bundle::open(dir, &keyring).context("refusing to boot the release")?;
    let names: Vec<&str> = bundle.profiles.iter().map(|p| p.name.as_str()).collect();
    let chosen = match profile {
        Some(p) => bundle.profile(p).with_context(|| {
            format!(
                "release {} has no profile `{p}`; it has: {}",
                bundle.name.version,
                names.join(", ")
            )
        })?,
        None if bundle.profiles.len() == 1 => &bundle.profiles[0],
        None => bail!(
            "release {} has several profiles ({}): choose one with --profile",
            bundle.name.version,
            names.join(", ")
        ),
    };
    Ok(Verified {
        image_dir: dir.join(&chosen.name),
        manifest: chosen.manifest.clone(),
        summary: format!(
            "release {} (commit {}) verified: signed with key {} ({}), {} files checked",
            bundle.name.version,
            &bundle.name.commit[..12],
            bundle.key_id,
            bundle.key_origin,
            bundle.files.len() + 2
        ),
        fields: serde_json::json!({
            "version": bundle.name.version,
            "commit": bundle.name.commit,
            "key_id": bundle.key_id.to_string(),
        }),
    })
}
