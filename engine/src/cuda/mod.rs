//! The engine's own CUDA path for llama-family models (llama, qwen2,
//! qwen3), the GPU twin of [`crate::cpu`].
//!
//! candle's CUDA backend runs a decode step as ~35 separately launched
//! operations per layer, each with host-side checks and an allocation; on
//! an H100 that made the step host-bound at ~0.2 ms per layer whatever
//! the model's size (BENCHMARKS.md, "GPU (device)"). This path:
//!
//! - keeps the weights in their GGUF block encoding, split into a values
//!   array and a scales array so that each lane loads a block in one
//!   aligned 16-byte read;
//! - runs a layer as eight launches (norm + quantize, q/k/v, rotary +
//!   cache store, attention + quantize, output projection into the
//!   residual, norm + quantize, gate/up + SwiGLU + quantize, down into
//!   the residual), with the same activation quantization and integer dot
//!   products as the CPU engine;
//! - reads the position and token from device memory, so a sequence's
//!   decode step is captured once into a CUDA graph and replayed: one
//!   launch per token instead of 259 (an 8B llama);
//! - launches each kernel with programmatic dependent launch (sm_90), so
//!   it loads its weights while the kernel before it finishes.
//!
//! The kernels are compiled ahead of time (`build.rs`, SASS for sm_80,
//! sm_89 and sm_90). Models it does not take (other block formats, gate
//! and up of different formats, heads whose size is not a multiple of 32),
//! and a GPU the SASS was not built for, go to candle's CUDA
//! implementation in a `cuda-candle` build, and are refused otherwise.
//!
//! cudarc is used for its driver API alone. With the `cuda` feature (the
//! images' build) it opens libcuda at run time, so the binary needs no
//! CUDA library to start; [`probe`] says whether a GPU can be used.
//!
//! | module | what it holds |
//! |---|---|
//! | [`weights`] | the CPU engine's weights re-laid-out and uploaded |
//! | [`forward`] | the kernels' launches, a sequence's buffers and graph |

pub mod forward;
pub mod weights;

pub use forward::{Decode, Engine, Sequence, Tuning};

/// The name of GPU `ordinal` if this process can run the CUDA path on it,
/// else why not. Never panics: without an NVIDIA driver (no libcuda to
/// open, as in the CPU image) or without a GPU it says so.
pub fn probe(ordinal: usize) -> Result<String, String> {
    // With the `cuda` feature libcuda is opened at run time, and cudarc
    // panics on the first call if it cannot be: look first.
    #[cfg(feature = "cuda")]
    // SAFETY: dlopen of the driver library's usual names; nothing else.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no NVIDIA driver (libcuda.so.1 does not load)".into());
    }
    let ctx = cudarc::driver::CudaContext::new(ordinal)
        .map_err(|e| format!("CUDA device {ordinal}: {e}"))?;
    Ok(ctx.name().unwrap_or_else(|_| "unknown GPU".into()))
}
