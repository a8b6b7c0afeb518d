//! `cargo xtask bench-attest`: the attestation figures in BENCHMARKS.md.
//!
//! Runs `measurements/examples/bench_attest.rs` optimized (the figures are
//! about the release verifier, not a debug build): report verification
//! with a cached VCEK, certificate verification, and TLS handshakes with
//! and without the attestation extension.

use std::path::Path;

use anyhow::Result;
use xshell::{Shell, cmd};

pub fn run(sh: &Shell, root: &Path) -> Result<()> {
    let _dir = sh.push_dir(root);
    cmd!(
        sh,
        "cargo run --quiet --release --locked -p cocoon-measurements --example bench_attest"
    )
    .run()?;
    Ok(())
}
