//! Small GGUFs of every architecture the native path takes, for the
//! engine's tests: random weights in a chosen encoding, vectors in f32.

use std::io::Cursor;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

/// Not a multiple of four: the output matrix ends in a short group of
/// rows for the kernels (as GPT-2's 50257 does).
pub const VOCAB: usize = 322;
pub const DIM: usize = 128;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const FFN: usize = 192;
pub const LAYERS: usize = 2;

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
pub fn gguf(arch: &str, dtype: GgmlDType) -> Vec<u8> {
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

/// Each step's logits within 5 % of its largest one: two implementations
/// that both quantize the activations but sum in different orders.
#[allow(dead_code)] // not every test binary compares implementations
pub fn assert_logits_close(want: &[Vec<f32>], got: &[Vec<f32>], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: steps");
    for (step, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.len(), g.len());
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = w.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 0.05 * scale,
            "{what}, step {step}: logits differ by {worst} (largest {scale})"
        );
    }
}
