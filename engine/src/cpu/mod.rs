//! The engine's own CPU path for llama-family models (llama, qwen2, qwen3).
//!
//! candle's CPU backend runs a decode step as a few hundred separately
//! scheduled tensor operations, has no SIMD kernel for Q4_1/Q5_x (so those
//! had to be re-encoded as Q8_0, doubling the bytes each token reads) and
//! parallelises each matrix product with a rayon fork-join. This path
//! keeps 4-bit weights 4-bit, runs AVX2 integer dot products against
//! int8-quantized activations, and spreads each step over a fixed team of
//! spinning threads: BENCHMARKS.md has what it bought against llama.cpp.
//!
//! | module | what it holds |
//! |---|---|
//! | [`quant`] | block formats, activation quantization, scalar dot products |
//! | [`simd`] | the AVX2 and AVX-512 VNNI dot products (checked against the scalar ones) |
//! | [`pool`] | the thread team for the parallel sections of a step |
//! | [`ops`] | norms, rotary positions, softmax, SwiGLU |
//! | [`attention`] | one row's attention for the query heads that share a KV head |
//! | [`weights`] | reading the GGUF into that layout |
//! | [`cache`] | a sequence's keys or values of one layer, each KV head's rows contiguous |
//! | [`forward`] | the forward pass |
//!
//! Models it does not take (another architecture, partial rotary, rows
//! that are not whole blocks) stay on candle's implementation. The GPU
//! twin of this path is `crate::cuda` (features `cuda`, `cuda-candle`), which loads its
//! weights through [`weights`].

pub mod attention;
pub mod cache;
pub mod forward;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod simd;
pub mod weights;

pub use forward::{Engine, Sequence, forward_batch};
