//! The native CPU path against candle-transformers' models on the same
//! small GGUFs: llama (interleaved rotary), qwen2 (biases, NeoX rotary),
//! qwen3 (q/k norms, own head size), each with every weight encoding the
//! native path has a kernel for and one it re-quantizes. A wrong rotary
//! layout, a missed bias or norm, a GQA mix-up or a broken kernel moves
//! the logits far beyond what the two quantizations of the activations
//! explain.

use std::io::Cursor;

use candle_core::quantized::{GgmlDType, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use cocoon_engine::cpu::{Engine, Sequence, weights::Weights};

mod common;

use common::{VOCAB, assert_logits_close, gguf};

/// One of candle's models, as a function of (input, position).
type Forward = Box<dyn FnMut(&Tensor, usize) -> Tensor>;

fn candle_logits(arch: &str, bytes: &[u8], steps: &[&[u32]]) -> Vec<Vec<f32>> {
    let mut r = Cursor::new(bytes);
    let ct = gguf_file::Content::read(&mut r).unwrap();
    let dev = Device::Cpu;
    let mut fwd: Forward = match arch {
        "llama" => {
            let mut m = quantized_llama::ModelWeights::from_gguf(ct, &mut r, &dev).unwrap();
            Box::new(move |x, p| m.forward(x, p).unwrap())
        }
        "qwen2" => {
            let mut m = quantized_qwen2::ModelWeights::from_gguf(ct, &mut r, &dev).unwrap();
            Box::new(move |x, p| m.forward(x, p).unwrap())
        }
        _ => {
            let mut m = quantized_qwen3::ModelWeights::from_gguf(ct, &mut r, &dev).unwrap();
            Box::new(move |x, p| m.forward(x, p).unwrap())
        }
    };
    let mut pos = 0;
    steps
        .iter()
        .map(|s| {
            let x = Tensor::new(*s, &dev).unwrap().unsqueeze(0).unwrap();
            let l = fwd(&x, pos).flatten_all().unwrap().to_vec1().unwrap();
            pos += s.len();
            l
        })
        .collect()
}

fn native_logits(arch: &str, bytes: &[u8], steps: &[&[u32]], threads: usize) -> Vec<Vec<f32>> {
    let ct = gguf_file::Content::read(&mut Cursor::new(bytes)).unwrap();
    let w = Weights::load(&ct, bytes, arch).unwrap();
    let mut seq = Sequence::new(std::sync::Arc::new(Engine::new(w, threads)));
    let mut pos = 0;
    steps
        .iter()
        .map(|s| {
            let l = seq.forward(s, pos).unwrap();
            pos += s.len();
            l
        })
        .collect()
}

#[test]
fn native_logits_follow_candles_for_every_architecture_and_encoding() {
    let prompt: Vec<u32> = vec![1, 17, 42, 99, 250, 3, 7, 300, 12];
    let steps: Vec<&[u32]> = vec![&prompt, &[5], &[77], &[311], &[0]];
    for arch in ["llama", "qwen2", "qwen3"] {
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::F16,
        ] {
            let bytes = gguf(arch, dtype);
            let want = candle_logits(arch, &bytes, &steps);
            for threads in [1, 3] {
                let got = native_logits(arch, &bytes, &steps, threads);
                assert_logits_close(&want, &got, &format!("{arch} {dtype:?} {threads} threads"));
            }
        }
    }
}

/// Q4 rows interleaved in groups of four (what `Engine::new` does with the
/// AVX2 kernels) give the logits of the GGUF's layout to the bit, with the
/// vocabulary's 322 rows (not a multiple of four) left as they are.
#[test]
fn interleaving_the_q4_rows_changes_no_bit() {
    let prompt: Vec<u32> = vec![1, 17, 42, 99, 250, 3, 7, 300, 12];
    let steps: Vec<&[u32]> = vec![&prompt, &[5], &[77]];
    for arch in ["llama", "qwen2", "qwen3"] {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1] {
            let bytes = gguf(arch, dtype);
            let ct = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
            let run = |interleave: bool| {
                let mut w = Weights::load(&ct, &bytes, arch).unwrap();
                let n = if interleave { w.interleave4() } else { 0 };
                let engine = Engine::with_layout(w, 3, false);
                let mut seq = Sequence::new(std::sync::Arc::new(engine));
                let mut pos = 0;
                let logits: Vec<Vec<u32>> = steps
                    .iter()
                    .map(|s| {
                        let l = seq.forward(s, pos).unwrap();
                        pos += s.len();
                        l.iter().map(|v| v.to_bits()).collect()
                    })
                    .collect();
                (n, logits)
            };
            let (none, plain) = run(false);
            let (n, grouped) = run(true);
            // Every layer matrix (7 per layer), not the 322-row embedding.
            assert_eq!((none, n), (0, 7 * common::LAYERS), "{arch} {dtype:?}");
            assert!(plain == grouped, "{arch} {dtype:?}: the logits differ");
        }
    }
}

#[test]
fn a_sequence_refuses_positions_that_do_not_continue_its_cache() {
    let bytes = gguf("llama", GgmlDType::Q8_0);
    let ct = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
    let w = Weights::load(&ct, &bytes, "llama").unwrap();
    let mut seq = Sequence::new(std::sync::Arc::new(Engine::new(w, 2)));
    assert!(seq.forward(&[1, 2], 3).is_err());
    assert!(seq.forward(&[], 0).is_err());
    assert!(
        seq.forward(&[VOCAB as u32], 0)
            .unwrap_err()
            .contains("vocabulary")
    );
    seq.forward(&[1, 2], 0).unwrap();
    assert!(seq.forward(&[3], 0).is_err());
    seq.forward(&[3], 2).unwrap();
}

#[test]
fn models_the_native_path_does_not_take_say_why() {
    let bytes = gguf("llama", GgmlDType::Q8_0);
    let ct = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
    let err = Weights::load(&ct, &bytes, "gemma").err().unwrap();
    assert!(err.contains("gemma"), "{err}");
}
