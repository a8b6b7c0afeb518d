//! `cargo xtask fuzz`: run every cargo-fuzz target in fuzz/ for a bounded time.
//!
//! The targets are the `[[bin]]` entries of fuzz/Cargo.toml, so a new target
//! needs no change here. Each runs under libFuzzer (coverage-guided) on the
//! pinned stable toolchain: `--sanitizer none` needs no nightly compiler
//! (AddressSanitizer would, and the parsers fuzzed here are safe Rust, where
//! it adds little). Inputs found are kept in fuzz/corpus/<target>/ (ignored
//! by git); fuzz/seeds/<target>/ holds the committed seeds (real evidence).
//! A crash stops the run, names the target and leaves the input in
//! fuzz/artifacts/<target>/.

use std::path::Path;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::setup;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long to fuzz each target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only these targets (default: every [[bin]] in fuzz/Cargo.toml).
    #[arg(long)]
    target: Vec<String>,
}

/// The fuzz targets: the names of fuzz/Cargo.toml's `[[bin]]` entries.
pub fn targets(root: &Path) -> Result<Vec<String>> {
    let path = root.join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let manifest: toml::Table =
        toml::from_str(&text).with_context(|| path.display().to_string())?;
    let bins = manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .context("fuzz/Cargo.toml has no [[bin]] targets")?;
    bins.iter()
        .map(|b| {
            b.get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .context("a [[bin]] in fuzz/Cargo.toml has no name")
        })
        .collect()
}

/// Fuzz `names` (all targets when empty) for `seconds` each.
pub fn fuzz(sh: &Shell, root: &Path, names: &[String], seconds: u64) -> Result<()> {
    let all = targets(root)?;
    for name in names {
        if !all.contains(name) {
            bail!("no fuzz target {name:?}; fuzz/Cargo.toml has {all:?}");
        }
    }
    let chosen = if names.is_empty() { &all } else { names };
    let cargo_fuzz = setup::ensure_cargo_fuzz(sh, root)?;
    let fuzz_dir = root.join("fuzz");
    let _dir = sh.push_dir(&fuzz_dir);
    for target in chosen {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds: Vec<_> = [fuzz_dir.join("seeds").join(target)]
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        let time = format!("-max_total_time={seconds}");
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        cmd!(
            sh,
            "{cargo_fuzz} fuzz run {target} --sanitizer none {corpus} {seeds...} -- {time}"
        )
        .run()
        .with_context(|| {
            format!("fuzz target {target} failed: the input is in fuzz/artifacts/{target}/")
        })?;
    }
    Ok(())
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    fuzz(sh, root, &args.target, args.seconds)
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_come_from_the_fuzz_manifest() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let targets = super::targets(&root).unwrap();
        assert!(
            targets.contains(&"spdm_measurements".to_string()),
            "{targets:?}"
        );
    }
}
