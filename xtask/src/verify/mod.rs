//! `cargo xtask verify --release DIR`: the auditor's one command. It proves
//! that a release is what its recorded commit builds, or says where not.
//!
//! Steps, each of which can stop the check:
//! 1. the bundle: signature by a trusted key, every checksum, no file
//!    added or missing (the same check as `cocoon-host boot --release`);
//! 2. the source: the signed commit, checked out clean in a worktree;
//! 3. the rebuild: `cargo xtask build` of every profile in that worktree,
//!    with that commit's own pipeline and pinned inputs;
//! 4. the comparison: every artifact byte for byte, every measurement.
//!
//! A registry check (the measurements on chain) is one more step after 4,
//! feeding the same verdict.
//!
//! Exit status: 0 every artifact and measurement matches; 1 something
//! differs; 2 the check could not be made (bad signature, tampered bundle,
//! missing commit, failed rebuild). Never 0 on doubt.

mod checkout;
mod compare;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use cocoon_release::bundle::Bundle;
use cocoon_release::keys::Keyring;
use xshell::{Shell, cmd};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The release folder (cocoon-VERSION/, unpacked from cocoon-VERSION.tar).
    #[arg(long)]
    pub release: PathBuf,
    /// A minisign public key to trust besides the ones in release/keys/
    /// (repeatable).
    #[arg(long)]
    pub pubkey: Vec<PathBuf>,
}

enum Verdict {
    Match,
    Mismatch,
}

/// `cargo xtask verify`: a release rebuild (`--release`), a chain check
/// (`--chain`), or the rebuild and then the chain check of what was rebuilt.
#[derive(clap::Args, Debug)]
pub struct CommandArgs {
    /// The release folder (cocoon-VERSION/, unpacked from cocoon-VERSION.tar).
    #[arg(long, required_unless_present = "chain")]
    pub release: Option<std::path::PathBuf>,
    /// A minisign public key to trust besides the ones in release/keys/
    /// (repeatable).
    #[arg(long)]
    pub pubkey: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub chain: crate::chain::VerifyArgs,
}

pub fn run_command(sh: &Shell, root: &Path, args: &CommandArgs) -> ExitCode {
    if let Some(release) = &args.release {
        let code = run(
            sh,
            root,
            &Args {
                release: release.clone(),
                pubkey: args.pubkey.clone(),
            },
        );
        if code != ExitCode::SUCCESS || !args.chain.chain {
            return code;
        }
    }
    if !args.chain.chain {
        return ExitCode::SUCCESS;
    }
    // Against the chain: the image named, else every profile of the
    // release (each has its own manifest and measurements).
    let images: Vec<Option<PathBuf>> = match (&args.chain.image, &args.release) {
        (None, Some(release)) => cocoon_image::profile::ALL
            .iter()
            .map(|p| release.join(p.name))
            .filter(|dir| dir.is_dir())
            .map(Some)
            .collect(),
        (image, _) => vec![image.clone()],
    };
    for image in images {
        let chain = crate::chain::VerifyArgs {
            image,
            ..args.chain.clone()
        };
        if let Err(e) = crate::chain::run_verify(root, &chain) {
            eprintln!("xtask: error: {e:#}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> ExitCode {
    let started = Instant::now();
    match check(sh, root, args) {
        Ok(Verdict::Match) => {
            eprintln!(
                "xtask: verified: every artifact and measurement of {} is what its commit builds ({:.0} s)",
                args.release.display(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok(Verdict::Mismatch) => {
            eprintln!(
                "xtask: MISMATCH: {} is not what its commit builds (details above)",
                args.release.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("xtask: verify: could not check the release: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(sh: &Shell, root: &Path, args: &Args) -> Result<Verdict> {
    let bundle = open(&args.release, &args.pubkey)?;
    eprintln!(
        "xtask: {}: signature by key {} ({}) and every checksum verified: release {}, commit {}",
        args.release.display(),
        bundle.key_id,
        bundle.key_origin,
        bundle.name.version,
        bundle.name.commit
    );
    let src = checkout::worktree(sh, root, &bundle.name.commit)?;
    let mut rows = Vec::new();
    for p in &bundle.profiles {
        let rebuilt = rebuild(sh, root, &src, &p.name)?;
        rows.extend(compare::profile(
            &p.name,
            &bundle.dir.join(&p.name),
            &rebuilt,
        )?);
    }
    compare::print(&rows);
    Ok(if rows.iter().all(|r| r.matches) {
        Verdict::Match
    } else {
        Verdict::Mismatch
    })
}

/// Step 1: the same check a provider's `boot --release` makes.
fn open(dir: &Path, pubkeys: &[PathBuf]) -> Result<Bundle> {
    let keyring = Keyring::builtin_and(pubkeys).map_err(anyhow::Error::msg)?;
    Ok(Bundle::open(dir, &keyring)?)
}

/// Step 3: the recorded commit's own `cargo xtask build`, in its worktree,
/// with a target folder of its own (kept: a second verify is incremental)
/// and a fresh output folder (nothing of an earlier result is reused).
fn rebuild(sh: &Shell, root: &Path, src: &Path, profile: &str) -> Result<PathBuf> {
    let base = root.join("target/cocoon/verify");
    let out = base.join("out").join(profile);
    let _ = std::fs::remove_dir_all(&out);
    let target = base.join("target");
    eprintln!("xtask: rebuilding profile {profile} in {}", src.display());
    let _dir = sh.push_dir(src);
    // What the caller's environment could slip into the build: the
    // commit's toolchain file and its commit time decide instead.
    let _env = sh.push_env("CARGO_TARGET_DIR", &target);
    let mut build = cmd!(sh, "cargo xtask build --profile {profile} --out {out}");
    for var in [
        "RUSTUP_TOOLCHAIN",
        "SOURCE_DATE_EPOCH",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        build = build.env_remove(var);
    }
    build
        .run()
        .with_context(|| format!("rebuilding profile {profile} from the recorded commit"))?;
    Ok(out)
}
