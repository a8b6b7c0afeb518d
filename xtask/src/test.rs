//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use std::path::Path;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::setup;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Skip the two-clone reproducibility build and the release tests on
    /// its result (about ten minutes on two cores). CI never skips them.
    #[arg(long)]
    quick: bool,
    /// Seconds to fuzz each target in fuzz/ after the tests (CI: the
    /// default, which keeps the fuzzing part, cargo-fuzz install and
    /// instrumented build included, near three minutes on two cores).
    #[arg(long, default_value_t = 20)]
    fuzz_seconds: u64,
    /// Extra arguments for `cargo test` (a test name filter, ...).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

/// The GitHub workflows, with actionlint. Skipped (and said so) where
/// actionlint cannot be installed (its PyPI package fetches the binary from
/// GitHub); never skipped on GitHub Actions.
fn lint_workflows(sh: &Shell, root: &Path) -> Result<()> {
    let workflows = [
        root.join(".github/workflows/ci.yml"),
        root.join(".github/workflows/release.yml"),
    ];
    match setup::actionlint(sh, root) {
        Some(actionlint) => cmd!(sh, "{actionlint} {workflows...}")
            .run()
            .context("actionlint found problems in .github/workflows"),
        None if std::env::var_os("GITHUB_ACTIONS").is_some() => {
            bail!("actionlint is not available, and CI never skips the workflow lint")
        }
        None => {
            eprintln!(
                "xtask: skipped: linting .github/workflows (actionlint is not installed and could not be)"
            );
            Ok(())
        }
    }
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let _dir = sh.push_dir(root);
    setup::ensure(sh)?;
    setup::ensure_python_tools(sh, root)?;
    cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("formatting differs: run `cargo fmt --all`")?;
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --locked -- -D warnings"
    )
    .run()
    .context("clippy found problems")?;
    crate::contract::test(sh, root)?;
    lint_workflows(sh, root)?;
    let _quick = args
        .quick
        .then(|| sh.push_env("COCOON_SKIP_REPRODUCIBILITY", "1"));
    let extra = &args.cargo_test_args;
    cmd!(sh, "cargo test --workspace --locked -- {extra...}")
        .run()
        .context("tests failed")?;
    // A short coverage-guided run of every parser that takes hostile input
    // (the first build of the instrumented crates takes a few minutes).
    crate::fuzz::fuzz(sh, root, &[], args.fuzz_seconds)?;
    Ok(())
}
