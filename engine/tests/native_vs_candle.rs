//! The native CPU path against candle-transformers' models on the same
//! small GGUFs: llama (interleaved rotary), qwen2 (biases, NeoX rotary),
//! qwen3 (q/k norms, own head size), each with every weight encoding the
//! native path has a kernel for and one it re-quantizes. A wrong rotary
//! layout, a missed bias or norm, a GQA mix-up or a broken kernel moves
//! the logits far beyond what the two quantizations of the activations
//! explain.

use std::io::Cursor;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use cocoon_engine::cpu::{Engine, Sequence, weights::Weights};

const VOCAB: usize = 320;
const DIM: usize = 128;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 192;
const LAYERS: usize = 2;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tensor(&mut self, dims: &[usize], scale: f32, offset: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + scale * self.next()).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }
}

/// A GGUF of `arch` with matrices in `dtype` (vectors in f32).
fn gguf(arch: &str, dtype: GgmlDType) -> Vec<u8> {
    let head_dim = if arch == "qwen3" { 48 } else { DIM / HEADS };
    let mut rng = Rng(arch.len() as u64 * 31 + dtype.type_size() as u64);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut mat = |name: String, rows: usize, cols: usize, rng: &mut Rng| {
        let t = rng.tensor(&[rows, cols], 1.7 / (cols as f32).sqrt(), 0.0);
        tensors.push((name, QTensor::quantize(&t, dtype).unwrap()));
    };
    let (q_dim, kv_dim) = (HEADS * head_dim, KV_HEADS * head_dim);
    mat("token_embd.weight".into(), VOCAB, DIM, &mut rng);
    for l in 0..LAYERS {
        mat(format!("blk.{l}.attn_q.weight"), q_dim, DIM, &mut rng);
        mat(format!("blk.{l}.attn_k.weight"), kv_dim, DIM, &mut rng);
        mat(format!("blk.{l}.attn_v.weight"), kv_dim, DIM, &mut rng);
        mat(format!("blk.{l}.attn_output.weight"), DIM, q_dim, &mut rng);
        mat(format!("blk.{l}.ffn_gate.weight"), FFN, DIM, &mut rng);
        mat(format!("blk.{l}.ffn_up.weight"), FFN, DIM, &mut rng);
        mat(format!("blk.{l}.ffn_down.weight"), DIM, FFN, &mut rng);
    }
    if arch != "llama" {
        mat("output.weight".into(), VOCAB, DIM, &mut rng);
    }
    let mut vec = |name: String, len: usize, scale: f32, offset: f32| {
        let t = rng.tensor(&[len], scale, offset);
        tensors.push((name, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    };
    vec("output_norm.weight".into(), DIM, 0.2, 1.0);
    for l in 0..LAYERS {
        vec(format!("blk.{l}.attn_norm.weight"), DIM, 0.2, 1.0);
        vec(format!("blk.{l}.ffn_norm.weight"), DIM, 0.2, 1.0);
        if arch == "qwen2" {
            vec(format!("blk.{l}.attn_q.bias"), q_dim, 0.5, 0.0);
            vec(format!("blk.{l}.attn_k.bias"), kv_dim, 0.5, 0.0);
            vec(format!("blk.{l}.attn_v.bias"), kv_dim, 0.5, 0.0);
        }
        if arch == "qwen3" {
            vec(format!("blk.{l}.attn_q_norm.weight"), head_dim, 0.2, 1.0);
            vec(format!("blk.{l}.attn_k_norm.weight"), head_dim, 0.2, 1.0);
        }
    }
    use gguf_file::Value;
    let k = |s: &str| format!("{arch}.{s}");
    let mut md: Vec<(String, Value)> = vec![
        (k("attention.head_count"), Value::U32(HEADS as u32)),
        (k("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (k("embedding_length"), Value::U32(DIM as u32)),
        (k("block_count"), Value::U32(LAYERS as u32)),
        (k("feed_forward_length"), Value::U32(FFN as u32)),
        (k("context_length"), Value::U32(256)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (k("rope.freq_base"), Value::F32(10_000.0)),
        (k("rope.dimension_count"), Value::U32(head_dim as u32)),
        ("general.architecture".into(), Value::String(arch.into())),
    ];
    if arch == "qwen3" {
        md.push((k("attention.key_length"), Value::U32(head_dim as u32)));
        md.push((k("attention.value_length"), Value::U32(head_dim as u32)));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(a, b)| (a.as_str(), b)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(a, b)| (a.as_str(), b)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
    out.into_inner()
}

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
                for (step, (w, g)) in want.iter().zip(&got).enumerate() {
                    assert_eq!(w.len(), g.len());
                    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let worst = w.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(
                        worst <= 0.05 * scale,
                        "{arch} {dtype:?} {threads} threads, step {step}: \
                         logits differ by {worst} (largest {scale})"
                    );
                }
            }
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
