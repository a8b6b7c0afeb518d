//! `cocoon-host`: what a GPU provider runs to boot cocoon images.
//!
//! `boot --dev` boots an image without SEV (KVM when the machine really has
//! it, TCG otherwise): the development and test path. `stop` asks a running
//! VM to power off. `boot` without `--dev` launches under SEV-SNP;
//! `preflight` checks a host for it; `attest` verifies a running guest.

mod accel;
mod attest;
mod boot;
mod import_rims;
mod preflight;
mod qemu;
mod qmp;
mod release;
mod report;
mod rundir;
mod serial;
mod stop;
mod supervise;
mod verify_gpu;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cocoon-host",
    version,
    about = "Boot and supervise cocoon guest images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot an image and supervise it until it is stopped.
    ///
    /// Every artifact is checked against the image's manifest.json before
    /// QEMU starts; with --release, the bundle's signature (by a trusted
    /// key) and every checksum are checked before anything else. The command waits until the guest answers GET /health
    /// over TLS, prints its URL, and stays in the foreground: Ctrl-C (or
    /// `cocoon-host stop`) powers the VM off cleanly.
    Boot(boot::Args),
    /// Power off a VM started by `cocoon-host boot`.
    Stop(stop::Args),
    /// Check that this host can boot cocoon under SEV-SNP (with a GPU), and say what to fix.
    Preflight(preflight::Args),
    /// Verify that a guest is the measured image on genuine AMD SEV-SNP, in this TLS session.
    ///
    /// Checks the report in the guest's certificate (AMD's chain, the
    /// signature, debug and migration off, VMPL 0, minimum TCB, an allowed
    /// measurement, the TLS key binding), then a fresh report over a nonce
    /// and this connection's exporter. Exit 0 only if all of it holds.
    Attest(attest::Args),
    /// Verify a captured NVIDIA H100 attestation report and certificate chain offline.
    ///
    /// Checks the chain up to the pinned NVIDIA Device Identity CA, the
    /// report's signature, the nonce and the minimum driver version; the
    /// measurement blocks only with --reference (without it the output says
    /// they were not compared). Exit 0 only if everything checked holds.
    VerifyGpuEvidence(verify_gpu::Args),
    /// Verify NVIDIA's RIMs for a driver and a VBIOS and write them as reference values.
    ///
    /// Each RIM's XML signature (Canonical XML 1.1, ECDSA P-384) and its
    /// certificate chain up to the RIM root given are checked; the active
    /// measurements of both become a cocoon-gpu-reference-values/1 file for
    /// `verify-gpu-evidence --reference`. Nothing is written unless both hold.
    ImportRims(import_rims::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Boot(args) => boot::run(&args),
        Command::Stop(args) => stop::run(&args),
        Command::Preflight(args) => preflight::run(&args),
        Command::Attest(args) => attest::run(&args),
        Command::VerifyGpuEvidence(args) => verify_gpu::run(&args),
        Command::ImportRims(args) => import_rims::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cocoon-host: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
