//! `cargo xtask <step>`: the cocoon pipeline as an ordinary Rust program.
//!
//! One module per step; the libraries (`cocoon-image`, ...) hold the logic,
//! this crate wires it to a command line and to the tools it runs.

mod bench;
mod bench_inference;
mod build;
mod chain;
mod contract;
mod demo;
mod env;
mod firmware;
mod guest;
mod inputs;
mod lock;
mod measure;
mod model;
mod progress;
mod publish;
mod registry;
mod setup;
mod test;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "The cocoon build pipeline", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the guest image: vmlinuz, initrd.img, cmdline and manifest.json.
    ///
    /// Inputs are fetched through a private apt configuration that uses the
    /// system's mirror, checked against image/inputs.lock and cached in
    /// $XDG_CACHE_HOME/cocoon. The result is byte-for-byte reproducible.
    Build(build::Args),
    /// Measure build and boot figures (for BENCHMARKS.md).
    Bench(bench::Args),
    /// Time our engine against llama.cpp on the same GGUF and threads (for BENCHMARKS.md).
    BenchInference(bench_inference::Args),
    /// Build the image, boot it without SEV and show it answering, then stop it.
    ///
    /// As root, installs the system packages it needs first; otherwise it
    /// prints the command that would.
    Demo(demo::Args),
    /// Print the SEV-SNP launch measurement of a built image for one launch shape.
    Measure(measure::Args),
    /// Write a model pack (a GGUF plus what serving it needs) and print its sha256.
    ModelPack(model::Args),
    /// Re-pin image/inputs.lock to what the mirror serves now.
    Lock(lock::Args),
    /// Install (as root) or list the system packages the pipeline and the tests need.
    Setup(setup::Args),
    /// Run every check CI runs: formatting, clippy, and all tests.
    Test(test::Args),
    /// Publish every measurement of a manifest to the registry on TON.
    ///
    /// Signs with a publisher's wallet (v4r2), sends through a TON HTTP API
    /// v2 and reads the records back. --dry-run prints the BOCs instead.
    Publish(publish::Args),
    /// Administer the registry contract: deploy, roles, revocations, info.
    Registry(registry::Args),
    /// Check a built image: --chain compares its measurements with the
    /// registry on TON (allowed? published by whom? endorsed how often?).
    Verify(chain::VerifyArgs),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let sh = xshell::Shell::new()?;
    let root = env::workspace_root()?;
    sh.change_dir(&root);
    match cli.command {
        Command::Bench(args) => bench::run(&sh, &root, &args),
        Command::BenchInference(args) => bench_inference::run(&sh, &root, &args),
        Command::Build(args) => build::run(&sh, &root, &args).map(|_| ()),
        Command::Demo(args) => demo::run(&sh, &root, &args),
        Command::Measure(args) => measure::run(&sh, &root, &args),
        Command::ModelPack(args) => model::run(&sh, &root, &args),
        Command::Lock(args) => lock::run(&sh, &root, &args),
        Command::Setup(args) => setup::run(&sh, &root, &args),
        Command::Test(args) => test::run(&sh, &root, &args),
        Command::Publish(args) => publish::run(&args),
        Command::Registry(args) => registry::run(&args),
        Command::Verify(args) => chain::run_verify(&root, &args),
    }
}

/// `target/cocoon/<profile>`, the default place of a built image.
pub fn default_image_dir(root: &std::path::Path, profile: &str) -> PathBuf {
    root.join("target").join("cocoon").join(profile)
}
