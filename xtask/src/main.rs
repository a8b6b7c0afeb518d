//! `cargo xtask <step>`: the cocoon pipeline as an ordinary Rust program.
//!
//! One module per step; the libraries (`cocoon-image`, ...) hold the logic,
//! this crate wires it to a command line and to the tools it runs.

mod bench;
mod bench_attest;
mod bench_inference;
mod build;
mod chain;
mod contract;
mod cuda_toolkit;
mod demo;
mod env;
mod firmware;
mod fuzz;
mod gpu;
mod gpu_bench;
mod guest;
mod inputs;
mod lock;
mod measure;
mod model;
mod nvidia_modules;
mod progress;
mod publish;
mod pypi;
mod registry;
mod release;
mod setup;
mod sign;
mod test;
mod verify;

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
    /// Build the CUDA guest and pack what the GPU benchmark runs on a lent GPU machine.
    ///
    /// Fetches a CUDA 13.0 toolkit (PyPI wheels) and libcuda (Debian), each
    /// pinned by sha256, builds `cocoon-guest --features cuda-candle` and writes a
    /// folder with it, llama.cpp's stripped sources and bench/gpu/'s
    /// scripts. See BENCHMARKS.md "GPU (device)".
    GpuBenchPrepare(gpu_bench::Args),
    /// Write a synthetic-weight GGUF of a real model's shape (for benchmarks).
    SynthGguf(SynthArgs),
    /// Time our engine against llama.cpp on the same GGUF and threads (for BENCHMARKS.md).
    BenchInference(bench_inference::Args),
    /// Time attestation: report and certificate verification, TLS handshakes.
    BenchAttest,
    /// Build the image, boot it without SEV and show it answering, then stop it.
    ///
    /// As root, installs the system packages it needs first; otherwise it
    /// prints the command that would.
    Demo(demo::Args),
    /// Print the SEV-SNP launch measurement of a built image for one launch shape.
    Measure(measure::Args),
    /// Run every fuzz target in fuzz/ (libFuzzer via cargo-fuzz) for a bounded time.
    Fuzz(fuzz::Args),
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
    /// Build every profile from a clean commit and write a signed release bundle.
    ///
    /// Writes DIR/cocoon-VERSION/ (the artifacts and manifest of each
    /// profile, SHA256SUMS, SHA256SUMS.minisig, SLSA provenance) and the
    /// deterministic DIR/cocoon-VERSION.tar. See docs/release.md.
    Release(release::Args),
    /// Check a release or an image: --release DIR rebuilds the release from
    /// its recorded commit and compares every byte and measurement; --chain
    /// compares the measurements with the registry on TON (after the
    /// rebuild, when both are given).
    ///
    /// Exit status: 0 all match, 1 something differs (or is not allowed on
    /// chain), 2 the check could not be made (bad signature, tampered
    /// bundle, missing commit, failed build).
    Verify(verify::CommandArgs),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let sh = xshell::Shell::new()?;
    let root = env::workspace_root()?;
    sh.change_dir(&root);
    match cli.command {
        Command::Bench(args) => bench::run(&sh, &root, &args),
        Command::BenchInference(args) => bench_inference::run(&sh, &root, &args),
        Command::BenchAttest => bench_attest::run(&sh, &root),
        Command::GpuBenchPrepare(args) => gpu_bench::run(&sh, &root, &args),
        Command::SynthGguf(args) => synth_gguf(&args),
        Command::Build(args) => build::run(&sh, &root, &args).map(|_| ()),
        Command::Demo(args) => demo::run(&sh, &root, &args),
        Command::Fuzz(args) => fuzz::run(&sh, &root, &args),
        Command::Measure(args) => measure::run(&sh, &root, &args),
        Command::ModelPack(args) => model::run(&sh, &root, &args),
        Command::Lock(args) => lock::run(&sh, &root, &args),
        Command::Setup(args) => setup::run(&sh, &root, &args),
        Command::Test(args) => test::run(&sh, &root, &args),
        Command::Publish(args) => publish::run(&args),
        Command::Registry(args) => registry::run(&args),
        Command::Release(args) => release::run(&sh, &root, &args),
        // Its own exit codes: 1 is a mismatch, 2 could not check.
        Command::Verify(args) => return Ok(verify::run_command(&sh, &root, &args)),
    }
    .map(|()| std::process::ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
struct SynthArgs {
    /// One of cocoon_image::synth_gguf::SHAPES: smollm2-135m, llama-3.2-1b, llama-3.1-8b.
    #[arg(long)]
    shape: String,
    #[arg(long, default_value = "q4_0")]
    quant: String,
    #[arg(long)]
    out: PathBuf,
}

/// `cargo xtask synth-gguf` (the guest binary has the same as `synth-gguf`,
/// for machines without Rust).
fn synth_gguf(args: &SynthArgs) -> Result<()> {
    use cocoon_image::synth_gguf::{self, Quant};
    let shape = synth_gguf::shape(&args.shape)
        .ok_or_else(|| anyhow::anyhow!("no shape {:?}", args.shape))?;
    let quant = Quant::parse(&args.quant)
        .ok_or_else(|| anyhow::anyhow!("--quant takes q4_0, q4_1 or q8_0"))?;
    let w = synth_gguf::write(shape, quant, &args.out)?;
    let (sha, _) = cocoon_image::digest::Sha256::of_file(&args.out)?;
    println!("{}  {}", sha.to_hex(), args.out.display());
    eprintln!(
        "xtask: {} bytes; a decode step reads {} bytes of weights",
        w.bytes, w.decode_bytes_per_token
    );
    Ok(())
}

/// `target/cocoon/<profile>`, the default place of a built image.
pub fn default_image_dir(root: &std::path::Path, profile: &str) -> PathBuf {
    root.join("target").join("cocoon").join(profile)
}
