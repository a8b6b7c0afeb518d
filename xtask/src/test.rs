//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use std::path::Path;

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use crate::setup;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Skip the two-clone reproducibility build (about ten minutes on two
    /// cores). CI never skips it.
    #[arg(long)]
    quick: bool,
    /// Extra arguments for `cargo test` (a test name filter, ...).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
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
    let _quick = args
        .quick
        .then(|| sh.push_env("COCOON_SKIP_REPRODUCIBILITY", "1"));
    let extra = &args.cargo_test_args;
    cmd!(sh, "cargo test --workspace --locked -- {extra...}")
        .run()
        .context("tests failed")?;
    Ok(())
}
