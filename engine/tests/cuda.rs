//! The engine's own CUDA path on a GPU (built only with `--features cuda` or `cuda-candle`;
//! the device tool runs it, CI has no GPU): its logits against the CPU
//! engine's on the same small GGUFs, a prompt in one pass against token by
//! token, and a decode step replayed as a CUDA graph against the same
//! launches one by one.

#![cfg(feature = "cuda-engine")]

use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, gguf_file};
use cocoon_engine::{cpu, cuda};

mod common;

use common::{assert_logits_close, gguf};

const ENCODINGS: [GgmlDType; 4] = [
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q8_0,
    GgmlDType::F16,
];
const PROMPT: [u32; 9] = [1, 17, 42, 99, 250, 3, 7, 300, 12];
const STEPS: [u32; 4] = [5, 77, 311, 0];

fn weights(arch: &str, dtype: GgmlDType) -> cpu::weights::Weights {
    let bytes = gguf(arch, dtype);
    let ct = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
    cpu::weights::Weights::load(&ct, &bytes, arch).unwrap()
}

fn gpu_with(arch: &str, dtype: GgmlDType, tuning: cuda::Tuning) -> Arc<cuda::Engine> {
    Arc::new(cuda::Engine::load(&weights(arch, dtype), 0, 512, tuning).unwrap())
}

fn gpu(arch: &str, dtype: GgmlDType) -> Arc<cuda::Engine> {
    gpu_with(arch, dtype, cuda::Tuning::default())
}

/// The prompt's logits, then each step's.
fn run(mut forward: impl FnMut(&[u32], usize) -> Vec<f32>) -> Vec<Vec<f32>> {
    let mut out = vec![forward(&PROMPT, 0)];
    for (i, &t) in STEPS.iter().enumerate() {
        out.push(forward(&[t], PROMPT.len() + i));
    }
    out
}

#[test]
fn cuda_logits_follow_the_cpu_engines() {
    for arch in ["llama", "qwen2"] {
        for dtype in ENCODINGS {
            let cpu_engine = Arc::new(cpu::Engine::new(weights(arch, dtype), 2));
            let mut c = cpu::Sequence::new(cpu_engine);
            let want = run(|t, p| c.forward(t, p).unwrap());
            let mut g = cuda::Sequence::new(gpu(arch, dtype));
            let got = run(|t, p| g.forward(t, p).unwrap());
            assert_logits_close(&want, &got, &format!("{arch} {dtype:?}"));
        }
    }
}

/// Every kernel computes a (row, token) pair the same way whatever the
/// other tokens of its launch, and a graph replays the very launches it
/// captured: so the bits must not move.
#[test]
fn one_pass_token_by_token_and_graphs_give_the_same_bits() {
    let plain = cuda::Tuning {
        graphs: false,
        pdl: false,
        decode: cuda::Decode::Auto,
    };
    let pdl_only = cuda::Tuning {
        graphs: false,
        pdl: true,
        decode: cuda::Decode::Auto,
    };
    let kernels = |decode| cuda::Tuning {
        decode,
        ..cuda::Tuning::default()
    };
    for arch in ["llama", "qwen2"] {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let mut graph = cuda::Sequence::new(gpu(arch, dtype));
            let with_graph = run(|t, p| graph.forward(t, p).unwrap());
            let mut launches = cuda::Sequence::new(gpu_with(arch, dtype, plain));
            let without = run(|t, p| launches.forward(t, p).unwrap());
            assert!(
                with_graph == without,
                "{arch} {dtype:?}: graph and launches differ"
            );
            // Programmatic dependent launch changes when kernels start,
            // never what they compute.
            let mut early = cuda::Sequence::new(gpu_with(arch, dtype, pdl_only));
            let with_pdl = run(|t, p| early.forward(t, p).unwrap());
            assert!(
                with_pdl == without,
                "{arch} {dtype:?}: launches with and without PDL differ"
            );
            // Every decode kernel adds a row's blocks in the same order.
            for decode in [cuda::Decode::OneRow, cuda::Decode::TwoRows] {
                let mut other = cuda::Sequence::new(gpu_with(arch, dtype, kernels(decode)));
                let got = run(|t, p| other.forward(t, p).unwrap());
                assert!(
                    got == with_graph,
                    "{arch} {dtype:?}: {decode:?} decode kernels differ"
                );
            }
            // The prompt token by token (every one a decode step, so the
            // graph replays at eight positions).
            let mut single = cuda::Sequence::new(gpu(arch, dtype));
            let mut last = Vec::new();
            for (i, &t) in PROMPT.iter().enumerate() {
                last = single.forward(&[t], i).unwrap();
            }
            assert!(
                last == with_graph[0],
                "{arch} {dtype:?}: one pass and token by token differ"
            );
        }
    }
}

/// A prompt longer than one pass (64 tokens) runs in several, to the same
/// bits as token by token.
#[test]
fn a_long_prompt_runs_in_passes() {
    let e = gpu("llama", GgmlDType::Q4_0);
    let prompt: Vec<u32> = (0..150).map(|i| (i * 37 % 322) as u32).collect();
    let mut whole = cuda::Sequence::new(e.clone());
    let a = whole.forward(&prompt, 0).unwrap();
    let mut single = cuda::Sequence::new(e);
    let mut b = Vec::new();
    for (i, &t) in prompt.iter().enumerate() {
        b = single.forward(&[t], i).unwrap();
    }
    assert!(a == b);
}

#[test]
fn bad_steps_are_refused_and_change_nothing() {
    let e = gpu("llama", GgmlDType::Q8_0);
    let mut s = cuda::Sequence::new(e.clone());
    let first = s.forward(&[1, 2], 0).unwrap();
    assert!(
        s.forward(&[3], 0).is_err(),
        "a position that does not continue"
    );
    assert!(s.forward(&[], 2).is_err(), "no tokens");
    assert!(s.forward(&[9999], 2).unwrap_err().contains("vocabulary"));
    let long = vec![1u32; 511];
    assert!(s.forward(&long, 2).unwrap_err().contains("do not fit"));
    // The sequence goes on as if none of that happened.
    let next = s.forward(&[5], 2).unwrap();
    let mut fresh = cuda::Sequence::new(e);
    assert_eq!(fresh.forward(&[1, 2], 0).unwrap(), first);
    assert_eq!(fresh.forward(&[5], 2).unwrap(), next);
}

#[test]
fn models_it_does_not_take_say_why() {
    // Qwen3's test heads are 48 wide: not whole quantization blocks.
    let tuning = cuda::Tuning::default();
    let err = cuda::Engine::load(&weights("qwen3", GgmlDType::Q8_0), 0, 512, tuning).unwrap_err();
    assert!(err.contains("heads of 48"), "{err}");
}
