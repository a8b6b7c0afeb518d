//! `cargo xtask verify --release DIR`: the auditor's one command. It proves
//! that a release is what its recorded commit builds, or says where not.
//!
//! Steps, each of which can stop the check:
//! 1. the bundle: signature by a trusted key, every checksum, no file
//!    added or missing (the same check as `cocoon-host boot --release`);
//! 2. the source: the signed commit, checked out clean in a worktree;
//! 3. the rebuild: `cargo xtask build` of every profile in that worktree,
//!    with that commit's own pipeline and pinned inputs, the profiles side
//!    by side ([`rebuild`]);
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
mod rebuild;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use cocoon_release::bundle::Bundle;
use cocoon_release::keys::Keyring;
use xshell::Shell;

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
    let names: Vec<&str> = bundle.profiles.iter().map(|p| p.name.as_str()).collect();
    let rebuilt = rebuild::all(root, &src, &names)?;
    let mut rows = Vec::new();
    for (name, dir) in names.iter().zip(&rebuilt) {
        rows.extend(compare::profile(name, &bundle.dir.join(name), dir)?);
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
