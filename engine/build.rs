//! With `cuda` or `cuda-candle`, compiles the CUDA engine's kernels
//! (`src/cuda/kernels.cu`) ahead of time into one fatbin of SASS for the
//! GPUs below: the engine then needs no PTX compiler where it runs (the
//! GPU image carries no NVRTC and no JIT library), and a GPU of another
//! generation is told so (and served by candle's kernels in a
//! `cuda-candle` build).
//!
//! nvcc is the one on `PATH`, else `$CUDA_ROOT/bin/nvcc` (as candle's
//! build looks for it; `cargo xtask gpu-bench-prepare` sets both).

use std::path::PathBuf;
use std::process::Command;

/// Ampere (A100), Ada (L40S) and Hopper (H100, H200).
const ARCHS: &[&str] = &["80", "89", "90"];

fn main() {
    println!("cargo::rerun-if-changed=src/cuda/kernels.cu");
    println!("cargo::rerun-if-env-changed=CUDA_ROOT");
    if std::env::var_os("CARGO_FEATURE_CUDA_ENGINE").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var_os("CUDA_ROOT")
        .map(|root| PathBuf::from(root).join("bin/nvcc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "nvcc".into());
    let mut cmd = Command::new(&nvcc);
    cmd.args(["--fatbin", "-O3", "-std=c++17", "-Xptxas=-v"]);
    for a in ARCHS {
        cmd.arg(format!("-gencode=arch=compute_{a},code=sm_{a}"));
    }
    cmd.arg("-o")
        .arg(out.join("kernels.fatbin"))
        .arg("src/cuda/kernels.cu");
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "running {} (the cuda feature needs nvcc): {e}",
            nvcc.display()
        )
    });
    assert!(
        status.success(),
        "nvcc failed on src/cuda/kernels.cu: {status}"
    );
}
