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
//!   launch per token instead of 259 (an 8B llama).
//!
//! The kernels are compiled ahead of time (`build.rs`, SASS for sm_80,
//! sm_89 and sm_90). Models it does not take (other block formats, gate
//! and up of different formats, heads whose size is not a multiple of 32)
//! stay on candle's CUDA implementation, and so does a GPU the SASS was
//! not built for.
//!
//! | module | what it holds |
//! |---|---|
//! | [`weights`] | the CPU engine's weights re-laid-out and uploaded |
//! | [`forward`] | the kernels' launches, a sequence's buffers and graph |

pub mod forward;
pub mod weights;

pub use forward::{Engine, Sequence, Tuning};
