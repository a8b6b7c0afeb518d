//! The image is compiled for x86-64-v3 (AVX2, FMA, F16C: the engine's
//! kernels are selected at compile time). Every CPU model the image is
//! measured for has them; a host that hides them gets a clear error
//! instead of an illegal instruction somewhere in a matrix multiply.

use anyhow::{Result, bail};

pub fn check() -> Result<()> {
    let missing: Vec<&str> = [
        ("avx", std::arch::is_x86_feature_detected!("avx")),
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
        ("fma", std::arch::is_x86_feature_detected!("fma")),
        ("f16c", std::arch::is_x86_feature_detected!("f16c")),
        ("bmi2", std::arch::is_x86_feature_detected!("bmi2")),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(name, _)| name)
    .collect();
    if !missing.is_empty() {
        bail!(
            "this vCPU lacks {} (the image needs x86-64-v3); give QEMU a CPU model that has them",
            missing.join(", ")
        );
    }
    Ok(())
}
