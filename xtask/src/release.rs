//! `cargo xtask release`: build every profile from a clean commit and write
//! a signed bundle (`cocoon-VERSION/`) and its deterministic tarball.
//!
//! The bundle is assembled in a `.partial` folder, checked with the same
//! code `cocoon-host boot --release` runs, and only then renamed into
//! place: a folder named `cocoon-VERSION` is always complete and signed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cocoon_image::digest::Sha256;
use cocoon_image::manifest::Manifest;
use cocoon_image::profile;
use cocoon_release::bundle::{self, Bundle, PROFILE_FILES, ProfileManifest};
use cocoon_release::keys::Keyring;
use cocoon_release::signature::{self, ReleaseName};
use cocoon_release::{provenance, sums, tarball};
use xshell::Shell;

use crate::sign::SigningKey;
use crate::{build, env};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The release version, as in the tag without its `v` (0.1.0, 1.0.0-rc.1).
    #[arg(long)]
    pub version: String,
    /// A profile to include; repeat for several [default: every profile].
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// The minisign secret key [default: the contents of $COCOON_RELEASE_KEY].
    /// A password-protected key is opened with $COCOON_RELEASE_KEY_PASSWORD.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Where to write cocoon-VERSION/ and cocoon-VERSION.tar
    /// [default: target/cocoon/release].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let started = Instant::now();
    signature::check_version(&args.version).map_err(anyhow::Error::msg)?;
    if std::env::var_os("SOURCE_DATE_EPOCH").is_some() {
        bail!(
            "SOURCE_DATE_EPOCH is set: a release takes its time from the commit, so that \
             `cargo xtask verify` rebuilds the same bytes; unset it"
        );
    }
    let git = env::git_info(sh, root)?;
    if git.dirty {
        bail!(
            "refusing to release from a working tree with uncommitted changes (see `git status`): \
             nobody could rebuild it from commit {}. Commit or stash them first",
            git.commit
        );
    }
    let key = SigningKey::load(args.key.as_deref())?;
    let profiles = choose_profiles(&args.profiles)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/cocoon/release"));
    let folder = out.join(bundle::folder_name(&args.version));
    if folder.exists() {
        bail!(
            "{} already exists: a release is never overwritten; remove it or choose --out",
            folder.display()
        );
    }

    let mut built = Vec::new();
    for p in &profiles {
        let dir = build::run(
            sh,
            root,
            &build::Args {
                profile: p.to_string(),
                out: None,
                // Releases carry model-less images for now: bundling the
                // model pack (and `boot --release --model`) is still to do.
                model: None,
            },
        )?
        .dir;
        built.push((p.to_string(), dir));
    }
    // The tree must still be the commit the builds recorded.
    let after = env::git_info(sh, root)?;
    if after.dirty || after.commit != git.commit {
        bail!("the working tree changed during the build; release again from a clean commit");
    }

    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let partial = out.join(format!(".{}.partial", bundle::folder_name(&args.version)));
    let _ = fs::remove_dir_all(&partial);
    let mut manifests = Vec::new();
    for (name, dir) in &built {
        fs::create_dir_all(partial.join(name))?;
        for f in PROFILE_FILES {
            copy_0644(&dir.join(f), &partial.join(name).join(f))?;
        }
        let bytes = fs::read(
            partial
                .join(name)
                .join(cocoon_image::manifest::MANIFEST_FILE),
        )?;
        let manifest = Manifest::parse(
            std::str::from_utf8(&bytes)?,
            &format!("{name}/manifest.json"),
        )?;
        if manifest.git.commit != git.commit || manifest.git.dirty {
            bail!(
                "the {name} image was not built from commit {} alone",
                git.commit
            );
        }
        manifests.push(ProfileManifest {
            name: name.clone(),
            manifest,
            manifest_sha256: Sha256::of(&bytes),
        });
    }
    fs::write(
        partial.join(provenance::FILE),
        provenance::statement(&args.version, &manifests, &builder_id()),
    )?;
    let mut listed = Vec::new();
    for rel in files_under(&partial, "")? {
        listed.push((rel.clone(), Sha256::of_file(&partial.join(&rel))?.0));
    }
    let sums_text = sums::write(&listed);
    fs::write(partial.join(sums::FILE), &sums_text)?;
    let name = ReleaseName {
        version: args.version.clone(),
        commit: git.commit.clone(),
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
    };
    let sig = key.sign(sums_text.as_bytes(), &name.trusted_comment())?;
    fs::write(partial.join(bundle::SIGNATURE_FILE), sig)?;

    // Check the result the way a provider will, with the built-in keys and
    // the signing key (refused here if it is revoked).
    let mut keyring = Keyring::builtin().map_err(anyhow::Error::msg)?;
    keyring
        .add(key.trusted_key()?)
        .map_err(|e| anyhow::anyhow!("the signing key: {e}"))?;
    Bundle::open(&partial, &keyring).context("the bundle just written does not verify")?;
    fs::rename(&partial, &folder)?;

    let tar_path = out.join(format!("{}.tar", bundle::folder_name(&args.version)));
    let mut tmp = tempfile::NamedTempFile::new_in(&out)?;
    tarball::write(
        &folder,
        std::io::BufWriter::new(tmp.as_file_mut()),
        manifests[0].manifest.source_date_epoch,
    )?;
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(&tar_path)
        .with_context(|| format!("writing {}", tar_path.display()))?;
    let (tar_sha, tar_size) = Sha256::of_file(&tar_path)?;
    eprintln!(
        "xtask: release {} (commit {}) signed with key {} in {}",
        args.version,
        &git.commit[..12],
        key.id,
        folder.display()
    );
    eprintln!(
        "xtask: {} ({:.2} MiB, sha256 {tar_sha})",
        tar_path.display(),
        tar_size as f64 / (1 << 20) as f64
    );
    eprintln!(
        "xtask: check it with `minisign -Vm {}/SHA256SUMS -p KEY.pub` and `sha256sum -c SHA256SUMS` in the folder",
        folder.display()
    );
    eprintln!(
        "xtask: release took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The named profiles (checked, deduplicated), or all of them.
fn choose_profiles(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(profile::ALL.iter().map(|p| p.name).collect());
    }
    let mut out = Vec::new();
    for n in names {
        let p = profile::by_name(n).with_context(|| {
            let all: Vec<_> = profile::ALL.iter().map(|p| p.name).collect();
            format!("unknown profile `{n}`; profiles: {}", all.join(", "))
        })?;
        if !out.contains(&p.name) {
            out.push(p.name);
        }
    }
    Ok(out)
}

/// Who built it, for the provenance: the GitHub workflow run when there is
/// one, else a local build.
fn builder_id() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("GITHUB_ACTIONS"),
        var("GITHUB_SERVER_URL"),
        var("GITHUB_WORKFLOW_REF"),
    ) {
        (Some(a), Some(server), Some(workflow)) if a == "true" => format!("{server}/{workflow}"),
        _ => provenance::LOCAL_BUILDER.to_string(),
    }
}

fn copy_0644(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    Ok(())
}

/// Every file under `dir`, as sorted `/`-separated relative paths.
fn files_under(dir: &Path, rel: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir.join(rel))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.file_type()?.is_dir() {
            out.extend(files_under(dir, &child)?);
        } else {
            out.push(child);
        }
    }
    out.sort();
    Ok(out)
}
