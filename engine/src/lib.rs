//! The cocoon inference engine, shared by the guest's server and the host
//! tools (so "the same engine on the host" is the same code):
//!
//! | module | what it holds |
//! |---|---|
//! | [`verify`] | reading a model pack once while hashing it |
//! | [`tokenizer`] | byte-level BPE from the GGUF's metadata |
//! | [`template`] | the chat template, keeping user text apart from special tokens |
//! | [`model`] | loading the weights (llama, qwen2, qwen3) on CPU or CUDA |
//! | [`cpu`] | the engine's own CPU path: AVX2 kernels, thread team, forward pass |
//! | `cuda` | (features `cuda`, `cuda-candle`) its own CUDA path: kernels, a decode step as one graph |
//! | [`repack`] | re-encoding weights candle has no SIMD kernel for |
//! | [`generate`] | one generation: sampling, stop sequences, budgets |
//! | [`scheduler`] | serving many requests fairly from one engine thread |

pub mod cpu;
#[cfg(feature = "cuda-engine")]
pub mod cuda;
pub mod generate;
pub mod model;
pub mod repack;
pub mod scheduler;
pub mod template;
pub mod tokenizer;
pub mod verify;
